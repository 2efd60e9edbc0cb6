//! `vmseal man`: man pages from the clap definition (`clap_mangen`).

use std::path::PathBuf;

use clap::Args;

use super::{Cli, Failure};

#[derive(Args, Debug)]
pub(crate) struct ManArgs {
    /// The directory to write into (created).
    #[arg(long, default_value = "man")]
    out: PathBuf,
}

/// Write `vmseal.1` and `vmseal-VERB.1` (nested verbs `vmseal-VERB-SUB.1`) into `a.out`.
pub(crate) fn run(a: ManArgs) -> Result<(), Failure> {
    use clap::CommandFactory as _;
    let io = |e: std::io::Error| Failure {
        code: 1,
        error: anyhow::anyhow!("{}: {e}", a.out.display()),
    };
    std::fs::create_dir_all(&a.out).map_err(io)?;
    fn write(
        cmd: clap::Command,
        name: &str,
        dir: &std::path::Path,
    ) -> std::io::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let mut page = Vec::new();
        clap_mangen::Man::new(
            cmd.clone()
                .display_name(name.to_string())
                .bin_name(name.replace('-', " ")),
        )
        .render(&mut page)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page)?;
        written.push(path);
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let sub_name = format!("{name}-{}", sub.get_name());
            written.extend(write(sub.clone(), &sub_name, dir)?);
        }
        Ok(written)
    }
    for p in write(Cli::command(), "vmseal", &a.out).map_err(io)? {
        println!("{}", p.display());
    }
    Ok(())
}
