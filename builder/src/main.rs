//! The `vmseal` binary: the command line ([`cli`]) over the `vmseal` library.
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
