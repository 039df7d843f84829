//! A fleet instance (to come).
fn main() {}
