//! `jaros init`: write the example hive, embedded in the binary.

use super::{out, CliError, CliResult, Ctx};
use crate::exit::Outcome;
use crate::fsx;
use crate::manifest::embedded;
use std::path::{Path, PathBuf};

/// Write a ready hive into DIR: the example manifests, templates, tool and
/// eval fixtures this binary embeds (no network). Files that exist with the
/// same content are left alone; files that differ are refused unless --force.
///
/// Example: jaros init my-hive && cd my-hive && jaros validate
///
/// `jaros --hive DIR init` is the same as `jaros init DIR`; --data-dir is
/// refused (a hive's data dir is made by the first command that needs it).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the hive (created if missing; default: --hive).
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Overwrite files whose content differs from the example's.
    #[arg(long)]
    force: bool,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    if let Some(data) = ctx.typed_data_dir() {
        return Err(CliError::bad_input(format!(
            "`jaros init` writes a hive, not a data dir: drop --data-dir {} (pass it to `jaros serve` or `jaros run`, which create it)",
            data.display()
        )));
    }
    let target = target_dir(ctx, args.dir.as_deref(), "jaros init DIR")?;
    let (written, unchanged, overwritten) = write_hive(&target, args.force)?;
    let dir = target.display();
    out(&format!(
        "wrote {written} files to {dir} ({unchanged} unchanged, {overwritten} overwritten)\nnext: cd {dir} && jaros validate && jaros plan && jaros run advance --input '{{\"note\": \"hello\"}}'\ncoding agents: start with {dir}/AGENTS.md\n",
    ));
    Ok(Outcome::Success)
}

/// Every file of a new hive: the embedded example, the JSON Schemas its
/// manifests' `$schema` modelines point at, and the kit for coding agents
/// (`AGENTS.md`, `agent-kit/`); the schemas and the kit's manifest reference
/// are generated from this binary's types, so they match what it accepts.
fn hive_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = embedded::FILES
        .iter()
        .map(|(rel, bytes)| (rel.to_string(), bytes.to_vec()))
        .collect();
    for kind in crate::manifest::Kind::ALL {
        files.push((
            format!("schemas/{}", kind.schema_file()),
            super::schema::schema_text(kind).into_bytes(),
        ));
    }
    for (rel, bytes) in super::kit::FILES {
        files.push((rel.to_string(), bytes.to_vec()));
    }
    files.push((
        super::docs::REFERENCE_FILE.to_string(),
        super::docs::reference().into_bytes(),
    ));
    files
}

/// The directory a command that creates a hive writes to: its own DIR
/// argument or a typed --hive, which must agree when both are given.
pub fn target_dir(ctx: &Ctx, arg: Option<&Path>, usage: &str) -> Result<PathBuf, CliError> {
    match (arg, ctx.typed_hive()) {
        (Some(dir), Some(flag)) if !super::same_dir(dir, flag) => {
            Err(CliError::bad_input(format!(
                "two directories given: {} and --hive {}; give one",
                dir.display(),
                flag.display()
            )))
        }
        (Some(dir), _) | (None, Some(dir)) => Ok(dir.to_path_buf()),
        (None, None) => Err(CliError::bad_input(format!(
            "where should the hive go? usage: {usage} (or --hive DIR)"
        ))),
    }
}

/// Writes the embedded example hive into `dir`: returns (written, unchanged,
/// overwritten). Refuses to replace changed files unless `force`.
pub fn write_hive(dir: &Path, force: bool) -> Result<(usize, usize, usize), CliError> {
    let mut changed = Vec::new();
    let mut unchanged = 0usize;
    let mut to_write = Vec::new();
    for (rel, bytes) in hive_files() {
        let rel = rel.as_str();
        let bytes = bytes.as_slice();
        let path = dir.join(rel);
        match std::fs::read(&path) {
            Ok(current) if current == bytes => {
                unchanged += 1;
                set_mode(&path, rel)?;
            }
            Ok(_) => {
                changed.push(rel.to_string());
                to_write.push((path, rel.to_string(), bytes.to_vec()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                to_write.push((path, rel.to_string(), bytes.to_vec()))
            }
            Err(e) => {
                return Err(CliError::bad_input(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        }
    }
    if !changed.is_empty() && !force {
        return Err(CliError::bad_input(format!(
            "{} has files that differ from the example hive: {}; nothing was written (pass --force to overwrite them)",
            dir.display(),
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
        if force { changed.len() } else { 0 },
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
