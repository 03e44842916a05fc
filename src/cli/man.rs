//! `jaros man`: man pages (roff), generated from the CLI definition so they
//! say what `--help` says.

use super::{out, Cli, CliError, CliResult};
use crate::exit::Outcome;
use crate::fsx;
use clap::CommandFactory;
use std::path::PathBuf;

/// Write the man pages: `jaros.1` and one page per subcommand
/// (`jaros-validate.1`, …), generated from this binary's command line.
/// Without --out, print `jaros.1`.
///
/// Example: jaros man --out /usr/local/share/man/man1 && man jaros-validate
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The directory to write the pages into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Every page: (file name, roff text), the top command's first.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    fn walk(cmd: clap::Command, pages: &mut Vec<(String, Vec<u8>)>) {
        let man = clap_mangen::Man::new(cmd.clone());
        let mut text = Vec::new();
        man.render(&mut text)
            .expect("rendering into memory cannot fail");
        pages.push((man.get_filename(), text));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), pages);
        }
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Builds the display names (`jaros-validate`) the page names come from.
    cmd.build();
    let mut pages = Vec::new();
    walk(cmd, &mut pages);
    pages
}

pub fn main(args: Args) -> CliResult {
    let pages = pages();
    let Some(dir) = args.out else {
        out(&String::from_utf8_lossy(&pages[0].1));
        return Ok(Outcome::Success);
    };
    fsx::create_dir_all(&dir).map_err(|e| CliError::failed(e.to_string()))?;
    let mut report = String::new();
    for (name, text) in &pages {
        let path = dir.join(name);
        fsx::write_durable(&path, text).map_err(|e| CliError::failed(e.to_string()))?;
        report.push_str(&format!("wrote {}\n", path.display()));
    }
    out(&report);
    Ok(Outcome::Success)
}
