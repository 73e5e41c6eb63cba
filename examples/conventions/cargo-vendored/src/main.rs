fn main() {
    println!("{} from cargo", greet::hi());
}

#[cfg(test)]
mod tests {
    #[test]
    fn greets() {
        assert_eq!(greet::hi(), "hi");
    }
}
