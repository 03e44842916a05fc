//! `jaros checkpoint`, and `jaros verify --checkpoint`: signed checkpoints
//! of a node's log, and the audit of a log against them.

use super::{out, out_json, CliError, CliResult, Ctx};
use crate::datadir::DataDir;
use crate::exit::Outcome;
use crate::log::checkpoint::{self, Audit, Checkpoint};
use crate::log::merkle;
use crate::log::note::{SignerKey, VerifierKey};
use crate::log::tree::{self, Levels};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::collections::btree_map::{BTreeMap, Entry};
use std::path::{Path, PathBuf};

/// Sign a checkpoint of a node's log as it is now: its size and the root of
/// the RFC 6962 Merkle tree over its record hashes, as a C2SP
/// tlog-checkpoint signed note. Written to
/// DATA/checkpoints/<node>/<size>.checkpoint and printed.
///
/// Keep a copy outside the data dir (--out, or the printed note): later,
/// `jaros verify --checkpoint FILE --key VERIFIER_KEY` proves the log still
/// extends it.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The node whose log to checkpoint (default: the only log).
    #[arg(long, value_name = "ID")]
    node: Option<String>,
    /// The private key file (default: the node manifest's `checkpoint_key`).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Also write the signed checkpoint here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let data = ctx.existing_data_dir()?;
    let node = pick_node(&data, args.node)?;
    let key = signer_key(ctx, args.key.as_deref())?;
    let sealed =
        checkpoint::seal(&data, &node, &key).map_err(|e| CliError::failed(e.to_string()))?;
    if let Some(path) = &args.out {
        crate::fsx::write_durable(path, sealed.note.as_bytes())
            .map_err(|e| CliError::failed(e.to_string()))?;
    }
    let c = &sealed.checkpoint;
    if args.json {
        out_json(&serde_json::json!({
            "node": node,
            "origin": c.origin,
            "size": c.size,
            "root": B64.encode(c.root),
            "path": sealed.path,
            "note": sealed.note,
            "verifier_key": key.verifier().encode(),
        }));
    } else {
        out(&sealed.note);
    }
    Ok(Outcome::Success)
}

/// The node named, whose log must exist, or the data dir's only log.
pub(super) fn pick_node(data: &DataDir, node: Option<String>) -> Result<String, CliError> {
    let logs = data
        .log_files()
        .map_err(|e| CliError::bad_input(e.to_string()))?;
    let nodes: Vec<String> = logs
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    match node {
        Some(n) if nodes.contains(&n) => Ok(n),
        Some(n) => Err(CliError::bad_input(format!(
            "node '{n}' has no log under {} (logs: {})",
            data.log_dir().display(),
            nodes.join(", ")
        ))),
        None if nodes.len() == 1 => Ok(nodes[0].clone()),
        None if nodes.is_empty() => Err(CliError {
            outcome: Outcome::Nothing,
            message: format!(
                "no logs under {}: nothing has run here yet",
                data.log_dir().display()
            ),
        }),
        None => Err(CliError::bad_input(format!(
            "several logs here ({}): pass --node ID",
            nodes.join(", ")
        ))),
    }
}

/// The private key in `explicit`, or in the file the node manifest's
/// `checkpoint_key` names (relative to the hive).
fn signer_key(ctx: &Ctx, explicit: Option<&Path>) -> Result<SignerKey, CliError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => manifest_key(ctx)?,
    };
    read_signer(&path)
}

fn manifest_key(ctx: &Ctx) -> Result<PathBuf, CliError> {
    let none = || {
        CliError::bad_input(
            "no checkpoint key: pass --key FILE, or name one in the node manifest \
             (spec: { checkpoint_key: FILE }); `jaros keygen NAME` makes one",
        )
    };
    let hive = ctx.hive().map_err(|_| none())?;
    let loaded = super::load_hive(&hive)?;
    let key = loaded
        .manifests
        .nodes
        .first()
        .and_then(|n| n.m.spec.checkpoint_key.clone())
        .ok_or_else(none)?;
    Ok(hive.join(key))
}

fn read_signer(path: &Path) -> Result<SignerKey, CliError> {
    let text = crate::fsx::read_to_string(path).map_err(|e| CliError::bad_input(e.to_string()))?;
    SignerKey::parse(&text).map_err(|e| CliError::bad_input(format!("{}: {e}", path.display())))
}

/// A verifier key given as text or as a file holding one (or a private
/// key, whose verifier key is taken); without one, the node manifest's key.
fn verifier_key(ctx: &Ctx, given: Option<&str>) -> Result<VerifierKey, CliError> {
    let Some(given) = given else {
        return Ok(signer_key(ctx, None)?.verifier());
    };
    let path = Path::new(given);
    if !path.is_file() {
        return VerifierKey::parse(given)
            .map_err(|e| CliError::bad_input(format!("--key '{given}' is no file, and {e}")));
    }
    let text = crate::fsx::read_to_string(path).map_err(|e| CliError::bad_input(e.to_string()))?;
    if text.starts_with("PRIVATE+KEY+") {
        return Ok(read_signer(path)?.verifier());
    }
    VerifierKey::parse(text.trim()).map_err(|e| CliError::bad_input(format!("{given}: {e}")))
}

/// `jaros verify --checkpoint FILE… [--key KEY]`: each checkpoint's
/// signature, then whether its node's log still extends it.
pub(super) fn verify(ctx: &Ctx, files: &[PathBuf], key: Option<&str>, json: bool) -> CliResult {
    let data = ctx.existing_data_dir()?;
    let key = verifier_key(ctx, key)?;
    let mut given: Vec<(PathBuf, Checkpoint, String)> = Vec::new();
    for file in files {
        let (c, _) =
            checkpoint::open_file(file, &key).map_err(|e| CliError::failed(e.to_string()))?;
        let node = c.node(key.name()).map(str::to_string).ok_or_else(|| {
            CliError::failed(format!(
                "{}: its origin '{}' is not '{}/<node id>': it is a checkpoint of another log",
                file.display(),
                c.origin,
                key.name()
            ))
        })?;
        given.push((file.clone(), c, node));
    }
    // Each node's log is read once, from the log itself (never from its
    // stored tree levels: a log rewritten together with them must still
    // disagree with the signed root), keeping what the proofs need.
    let mut logs: BTreeMap<String, (Levels, Vec<Checkpoint>, Vec<String>)> = BTreeMap::new();
    let mut reports = Vec::new();
    let mut intact = true;
    for (file, c, node) in &given {
        if !data.log_path(node).is_file() {
            return Err(CliError::failed(format!(
                "{}: checkpoint of node '{node}', which has no log under {}: the log was removed",
                file.display(),
                data.log_dir().display()
            )));
        }
        let (levels, trusted, unreadable) = match logs.entry(node.clone()) {
            Entry::Occupied(read) => read.into_mut(),
            Entry::Vacant(slot) => {
                let (kept, unreadable) = checkpoint::kept(&data, node, &key)
                    .map_err(|e| CliError::failed(e.to_string()))?;
                let trusted: Vec<Checkpoint> = kept
                    .into_iter()
                    .map(|(_, k)| k)
                    .chain(given.iter().filter(|g| g.2 == *node).map(|g| g.1.clone()))
                    .collect();
                let sizes: Vec<u64> = trusted.iter().map(|t| t.size).collect();
                let levels = tree::stream_levels(&data.log_path(node), &sizes).map_err(|e| {
                    CliError::failed(format!(
                        "{e}\n(`jaros verify` names where the chain breaks)"
                    ))
                })?;
                slot.insert((levels, trusted, unreadable))
            }
        };
        let size = levels.range().1;
        let audit = checkpoint::audit(levels, size, c, trusted)
            .map_err(|e| CliError::failed(format!("internal: {e}")))?;
        if let Audit::Extends {
            old_size,
            new_size,
            old_root,
            new_root,
            proof,
        } = &audit
        {
            // Our own proof, checked as an auditor would check it.
            if old_size > &0 {
                merkle::verify_consistency(*old_size, *new_size, proof, old_root, new_root)
                    .map_err(|e| {
                        CliError::failed(format!(
                            "internal: the consistency proof does not verify ({e})"
                        ))
                    })?;
            }
        } else {
            intact = false;
        }
        reports.push((file, node, c, audit, unreadable.clone(), trusted.len()));
    }
    if json {
        let list: Vec<_> = reports
            .iter()
            .map(|(file, node, c, audit, unreadable, trusted)| {
                serde_json::json!({
                    "checkpoint": file,
                    "node": node,
                    "log": data.log_path(node),
                    "origin": c.origin,
                    "size": c.size,
                    "root": B64.encode(c.root),
                    "result": audit,
                    "trusted_checkpoints": trusted,
                    "unreadable_checkpoints": unreadable,
                })
            })
            .collect();
        out_json(&serde_json::json!({"intact": intact, "key": key.encode(), "checkpoints": list}));
    } else {
        for (file, node, c, audit, unreadable, _) in &reports {
            out(&describe(&file.display().to_string(), node, c, audit));
            for u in unreadable {
                out(&format!("        skipped {u}\n"));
            }
        }
        out(if intact {
            "every log extends its checkpoint\n"
        } else {
            "history rewritten: see above\n"
        });
    }
    Ok(if intact {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

fn describe(file: &str, node: &str, c: &Checkpoint, audit: &Audit) -> String {
    let log = format!("log/{node}.jsonl");
    match audit {
        Audit::Extends {
            new_size, proof, ..
        } => format!(
            "ok      {log} extends {file} ({} records, root {}): now {new_size} records, \
             consistency proof of {} hashes verified\n",
            c.size,
            B64.encode(c.root),
            proof.len()
        ),
        Audit::Rewritten {
            size,
            log_size,
            first_seq,
            last_seq,
            matches_up_to,
        } => {
            let short = if log_size < size {
                format!(" The log has {log_size} records, fewer than the checkpoint's {size}.")
            } else {
                String::new()
            };
            let where_ = if first_seq == last_seq {
                format!("the first record that differs from the signed history is seq {first_seq}")
            } else {
                format!(
                    "the first record that differs from the signed history is one of seq \
                     {first_seq}..={last_seq} ({}; a checkpoint commits only to a root, so \
                     keep more of them, one per sealed segment, to narrow it)",
                    if *matches_up_to > 0 {
                        format!("the checkpoint of {matches_up_to} records still matches")
                    } else {
                        "no smaller checkpoint to compare".to_string()
                    }
                )
            };
            format!(
                "REWRITTEN {log} does not extend {file} ({size} records): {where_}.{short} \
                 Restore the log from a copy that matches the checkpoint, or investigate who \
                 could write the data dir.\n"
            )
        }
    }
}
