//! Put and get throughput (written next).
fn main() {}
