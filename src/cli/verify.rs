//! `jaros verify`: check every hash chain under the data dir.

use super::{out, out_json, CliError, CliResult, Ctx};
use crate::canon::Digest;
use crate::exit::Outcome;
use crate::log::chain::verify_chain_with;
use crate::log::stream::log_bytes;

/// Check every node's hash-chained log under the data dir: edits, inserted,
/// deleted or reordered records, and (with --anchor) truncation. Prints each
/// chain's head, and a torn tail where a crash cut the last record short:
/// its line, byte offset, kind and job, which the node cuts when it next
/// opens the log.
///
/// Keep a head from an earlier run (`jaros verify --json`) and pass it as an
/// anchor to prove nothing before it changed since.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// An earlier head, `SEQ:HASH` or `NODE@SEQ:HASH`; the record at SEQ must
    /// still have HASH. Repeat for several nodes.
    #[arg(long, value_name = "[NODE@]SEQ:HASH")]
    anchor: Vec<String>,
    /// A signed checkpoint (`jaros checkpoint`) kept elsewhere: check its
    /// signature, then prove its node's log still extends it (an RFC 6962
    /// consistency proof), or name where it was rewritten. Repeat for
    /// several; the data dir's own checkpoints narrow the place down.
    #[arg(long, value_name = "FILE", conflicts_with = "anchor")]
    checkpoint: Vec<std::path::PathBuf>,
    /// The log's verifier key (as `jaros keygen` prints it) or a file
    /// holding it; default: the node manifest's `checkpoint_key`.
    #[arg(long, value_name = "KEY_OR_FILE", requires = "checkpoint")]
    key: Option<String>,
}

struct Anchor {
    node: Option<String>,
    seq: u64,
    hash: Digest,
}

fn parse_anchor(text: &str) -> Result<Anchor, CliError> {
    let bad = || {
        CliError::bad_input(format!("--anchor '{text}': expected SEQ:HASH or NODE@SEQ:HASH with a 64-digit hex hash, as `jaros verify --json` prints"))
    };
    let (node, rest) = match text.split_once('@') {
        Some((n, r)) => (Some(n.to_string()), r),
        None => (None, text),
    };
    let (seq, hash) = rest.split_once(':').ok_or_else(bad)?;
    Ok(Anchor {
        node,
        seq: seq.parse().map_err(|_| bad())?,
        hash: Digest::from_hex(hash).ok_or_else(bad)?,
    })
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    if !args.checkpoint.is_empty() {
        return super::checkpoint::verify(ctx, &args.checkpoint, args.key.as_deref(), args.json);
    }
    let data = ctx.existing_data_dir()?;
    let anchors = args
        .anchor
        .iter()
        .map(|a| parse_anchor(a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut logs = data
        .log_files()
        .map_err(|e| CliError::bad_input(e.to_string()))?;
    let audit =
        crate::fsx::list_dir(&data.audit_dir()).map_err(|e| CliError::bad_input(e.to_string()))?;
    logs.extend(
        audit
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl")),
    );
    if logs.is_empty() {
        return Err(CliError {
            outcome: Outcome::Nothing,
            message: format!(
                "no logs under {}: nothing has run here yet",
                data.root().display()
            ),
        });
    }
    let node_of = |p: &std::path::Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if anchors.iter().any(|a| a.node.is_none())
        && data.log_files().map(|l| l.len()).unwrap_or(0) > 1
    {
        return Err(CliError::bad_input(
            "several logs here: name the node in the anchor, NODE@SEQ:HASH",
        ));
    }
    for a in &anchors {
        if let Some(node) = &a.node {
            if !logs.iter().any(|p| node_of(p) == *node) {
                return Err(CliError::bad_input(format!(
                    "--anchor names node '{node}', which has no log under {}",
                    data.log_dir().display()
                )));
            }
        }
    }
    let draw = super::progress::wanted(args.json);
    let (reports, voided) = super::progress::with("verify", draw, |progress| {
        if let Some(p) = progress {
            // Every chain once, then every node's log once more for what
            // takeovers voided.
            let nodes: u64 = data
                .log_files()
                .unwrap_or_default()
                .iter()
                .map(|l| log_bytes(l))
                .sum();
            p.expect(logs.iter().map(|l| log_bytes(l)).sum::<u64>() + nodes);
        }
        let mut reports = Vec::new();
        for path in &logs {
            let is_audit = path.parent().is_some_and(|p| p.ends_with("audit"));
            let anchor = anchors
                .iter()
                .find(|a| !is_audit && a.node.as_deref().is_none_or(|n| n == node_of(path)))
                .map(|a| (a.seq, a.hash));
            reports.push(verify_chain_with(path, anchor, progress));
        }
        // Records a node wrote after losing their job: the chain holds them
        // intact; readers leave them out.
        let voided = if reports.iter().all(|r| r.error.is_none()) {
            crate::replay::voided_records_with(&data, progress).unwrap_or_default()
        } else {
            Vec::new()
        };
        (reports, voided)
    });
    let intact = reports.iter().all(|r| r.error.is_none());
    if args.json {
        out_json(&serde_json::json!({"intact": intact, "chains": reports, "voided": voided}));
    } else {
        for r in &reports {
            let name = r
                .path
                .strip_prefix(data.root())
                .unwrap_or(&r.path)
                .display()
                .to_string();
            match &r.error {
                None => out(&format!(
                    "ok      {name}: {} records, head {}:{}\n{}",
                    r.records,
                    r.head_seq,
                    r.head_hash,
                    r.torn_tail
                        .as_ref()
                        .map(|t| torn(&name, &node_of(&r.path), t))
                        .unwrap_or_default()
                )),
                Some(e) => out(&format!("BROKEN  {name}: {e}\n")),
            }
        }
        for v in &voided {
            out(&format!(
                "voided  log/{}.jsonl: {} record(s) of job {} written after a later epoch took it over (left out of replay)\n",
                v.log, v.records, v.job
            ));
        }
        out(&format!(
            "{}\n",
            if intact {
                "all chains intact"
            } else {
                "chain broken: see above"
            }
        ));
    }
    Ok(if intact {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

/// The torn tail's line under its chain's `ok` line: which record a crash
/// cut short, where, and that the node cuts it at its next open.
fn torn(name: &str, node: &str, t: &crate::log::TornTail) -> String {
    let what = match (&t.kind, &t.job) {
        (Some(kind), Some(job)) => format!("kind '{kind}', job '{job}'"),
        (Some(kind), None) => format!("kind '{kind}'"),
        _ => format!("its kind cut off; it starts {:?}", t.starts),
    };
    format!(
        "        torn tail: line {} (from byte {}, {} bytes, no newline) is the start of record {} \
         ({what}), which a crash cut short; it is outside the chain, and node '{node}' \
         truncates {name} to {} bytes, cutting it, when it next opens the log\n",
        t.line, t.offset, t.bytes, t.seq, t.offset
    )
}
