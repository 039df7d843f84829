//! The campaign (to come).
fn main() {}
