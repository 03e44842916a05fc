//! `jaros completions`: shell completion scripts, generated from the CLI
//! definition so they cannot drift from it.

use super::{Cli, CliResult};
use crate::exit::Outcome;
use clap::CommandFactory;

/// Print a completion script for a shell, generated from this binary's
/// command line (every subcommand, option and value it knows).
///
/// Examples:
///   jaros completions bash > ~/.local/share/bash-completion/completions/jaros
///   jaros completions zsh > "${fpath[1]}/_jaros"
///   jaros completions fish > ~/.config/fish/completions/jaros.fish
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

pub fn main(args: Args) -> CliResult {
    // Without the hidden commands, which some shells' generators would offer.
    let full = Cli::command();
    let mut cmd = clap::Command::new("jaros")
        .version(crate::runtime::version_line())
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "jaros", &mut script);
    super::out(&String::from_utf8_lossy(&script));
    Ok(Outcome::Success)
}
