fn greeting(name: &str) -> String {
    format!("hello, {name}")
}

fn main() {
    println!("{}", greeting("cargo"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn greets() {
        assert_eq!(super::greeting("otto"), "hello, otto");
    }
}
