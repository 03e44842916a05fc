//! `jaros gc`: apply the node manifest's retention to the data dir.

use super::{out, out_json, CliError, CliResult, Ctx};
use crate::exit::Outcome;
use crate::manifest::types::RetentionSpec;

/// Remove result files, failed results and unreferenced blobs older than
/// the node manifest's `retention:` says to keep (a removed result leaves
/// a tombstone, so the job reads as collected), and move sealed log
/// segments to the archive directory (`--archive`, or the manifest's
/// `log.archive`), where `verify` and `replay` still read them. Logs are
/// never removed, nor any blob a log record names. Prints what it removes
/// and the bytes freed.
///
/// Example: jaros gc --dry-run
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only print what would be removed or moved.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Move sealed log segments to this directory.
    #[arg(long, value_name = "DIR")]
    archive: Option<std::path::PathBuf>,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let data = ctx.existing_data_dir()?;
    let hive = ctx.hive()?;
    let (retention, manifest_archive) = match super::load_hive(&hive) {
        Ok(loaded) => match loaded.manifests.nodes.first() {
            Some(node) => (
                node.m.spec.retention.clone().unwrap_or_default(),
                node.m
                    .spec
                    .log
                    .as_ref()
                    .and_then(|l| l.archive.as_ref())
                    .map(|a| hive.join(a)),
            ),
            None => (RetentionSpec::default(), None),
        },
        Err(e) => return Err(e),
    };
    let archive = args.archive.or(manifest_archive);
    let now_ms = crate::node::lease::now_ms();
    let report = crate::gc::run(&data, &retention, archive.as_deref(), now_ms, args.dry_run)
        .map_err(|e| CliError::failed(e.to_string()))?;
    if args.json {
        out_json(&report);
        return Ok(Outcome::Success);
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut text = String::new();
    for a in &report.actions {
        match &a.to {
            Some(to) => {
                text += &format!(
                    "{} {} ({} bytes) -> {}\n",
                    if args.dry_run {
                        "would archive"
                    } else {
                        "archived"
                    },
                    super::display(&a.path),
                    a.bytes,
                    super::display(to)
                )
            }
            None => {
                text += &format!(
                    "{verb} {} {} ({} bytes)\n",
                    a.kind,
                    super::display(&a.path),
                    a.bytes
                )
            }
        }
    }
    if retention == RetentionSpec::default() && archive.is_none() {
        text += "no retention set: add `retention:` to the node manifest (or pass --archive DIR)\n";
    }
    text += &format!(
        "{} bytes {}\n",
        report.bytes_freed,
        if args.dry_run {
            "would be freed"
        } else {
            "freed"
        }
    );
    out(&text);
    Ok(Outcome::Success)
}
