//! `otto`: the user's command-line tool.

fn main() {}
