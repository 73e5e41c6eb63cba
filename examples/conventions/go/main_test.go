package main

import "testing"

func TestGreeting(t *testing.T) {
	if got := Greeting("otto"); got != "hello, otto" {
		t.Fatalf("Greeting(otto) = %q", got)
	}
}
