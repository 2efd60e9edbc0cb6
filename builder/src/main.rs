//! The `vmseal` command line: wires arguments to the library.
fn main() {}
