package main

import "fmt"

// Greeting is what the program prints.
func Greeting(name string) string {
	return "hello, " + name
}

func main() {
	fmt.Println(Greeting("go"))
}
