//! `jaros init`: write the example hive, embedded in the binary.

use super::{out, CliError, CliResult};
use crate::exit::Outcome;
use crate::fsx;
use crate::manifest::embedded;
use std::path::PathBuf;

/// Write a ready hive into DIR: the example manifests, templates, tool and
/// eval fixtures this binary embeds (no network). Files that exist with the
/// same content are left alone; files that differ are refused unless --force.
///
/// Example: jaros init my-hive && cd my-hive && jaros validate
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the hive (created if missing).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Overwrite files whose content differs from the example's.
    #[arg(long)]
    force: bool,
}

pub fn main(args: Args) -> CliResult {
    let (written, unchanged, overwritten) = write_hive(&args.dir, args.force)?;
    let dir = args.dir.display();
    out(&format!(
        "wrote {written} files to {dir} ({unchanged} unchanged, {overwritten} overwritten)\nnext: cd {dir} && jaros validate && jaros plan && jaros run advance --input '{{\"note\": \"hello\"}}'\n",
    ));
    Ok(Outcome::Success)
}

/// Writes the embedded example hive into `dir`: returns (written, unchanged,
/// overwritten). Refuses to replace changed files unless `force`.
pub fn write_hive(dir: &std::path::Path, force: bool) -> Result<(usize, usize, usize), CliError> {
    let args = Args {
        dir: dir.to_path_buf(),
        force,
    };
    let mut changed = Vec::new();
    let mut unchanged = 0usize;
    let mut to_write = Vec::new();
    for (rel, bytes) in embedded::FILES {
        let path = args.dir.join(rel);
        match std::fs::read(&path) {
            Ok(current) if current == *bytes => {
                unchanged += 1;
                set_mode(&path, rel)?;
            }
            Ok(_) => {
                changed.push(rel.to_string());
                to_write.push((path, rel, bytes));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => to_write.push((path, rel, bytes)),
            Err(e) => {
                return Err(CliError::bad_input(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        }
    }
    if !changed.is_empty() && !args.force {
        return Err(CliError::bad_input(format!(
            "{} has files that differ from the example hive: {}; nothing was written (pass --force to overwrite them)",
            args.dir.display(),
            changed.join(", ")
        )));
    }
    for (path, rel, bytes) in &to_write {
        if let Some(parent) = path.parent() {
            fsx::create_dir_all(parent).map_err(|e| CliError::failed(e.to_string()))?;
        }
        fsx::write_durable(path, bytes).map_err(|e| CliError::failed(e.to_string()))?;
        set_mode(path, rel)?;
    }
    Ok((
        to_write.len(),
        unchanged,
        if args.force { changed.len() } else { 0 },
    ))
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, rel: &str) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    if !embedded::is_executable(rel) {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| CliError::failed(format!("cannot make {} executable: {e}", path.display())))
}

#[cfg(not(unix))]
fn set_mode(_: &std::path::Path, _: &str) -> Result<(), CliError> {
    Ok(())
}
