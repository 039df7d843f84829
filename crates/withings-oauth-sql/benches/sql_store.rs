//! Benchmarks of the SQL stores (filled in below).

fn main() {}
