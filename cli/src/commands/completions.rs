//! `wafer completions SHELL`: a completion script for bash, zsh, fish, elvish or PowerShell,
//! generated from the command definitions (so it never falls behind them).

use std::process::ExitCode;

use clap::Subcommand;

#[derive(clap::Args)]
pub struct Completions {
    /// The shell, e.g. `bash`: `source <(wafer completions bash)`, or write it to the shell's
    /// completion folder.
    shell: clap_complete::Shell,
}

impl Completions {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut command = super::Command::augment_subcommands(
            clap::Command::new("wafer").subcommand_required(true),
        );
        clap_complete::generate(self.shell, &mut command, "wafer", &mut std::io::stdout());
        Ok(ExitCode::SUCCESS)
    }
}
