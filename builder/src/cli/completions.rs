//! `vmseal completions SHELL`: a completion script from the clap definition (`clap_complete`).

use clap::Args;

use super::{Cli, Failure};

#[derive(Args, Debug)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Print completions for `shell`.
pub(crate) fn run(a: CompletionsArgs) -> Result<(), Failure> {
    use clap::CommandFactory as _;
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "vmseal", &mut std::io::stdout());
    Ok(())
}
