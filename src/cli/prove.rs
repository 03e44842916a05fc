//! `jaros prove`: an inclusion proof for one record of a node's log.

use super::checkpoint::pick_node;
use super::{out, out_json, CliError, CliResult, Ctx};
use crate::datadir::DataDir;
use crate::exit::Outcome;
use crate::log::checkpoint::{self, Checkpoint};
use crate::log::merkle::{self, Hash};
use crate::log::note;
use crate::log::tree::{LogTree, Stored, TreeError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::path::PathBuf;

/// Print an RFC 6962 inclusion proof that record SEQ is in the log: against
/// the newest checkpoint in the data dir that holds it (so the proof checks
/// against a signed root), else against the log's current tree head.
///
/// The leaf is the record's chain hash (its `hash`, 32 bytes); the leaf
/// hash is SHA-256(0x00 || those bytes); leaf index = SEQ - 1.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The record's seq (1 is the first).
    seq: u64,
    /// The node whose log holds it (default: the only log).
    #[arg(long, value_name = "ID")]
    node: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// A proof made, and what it is against.
struct Made {
    leaf: Hash,
    tree_size: u64,
    root: Hash,
    proof: Vec<Hash>,
    chosen: Option<(PathBuf, String, Checkpoint)>,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let data = ctx.existing_data_dir()?;
    let node = pick_node(&data, args.node)?;
    let log = data.log_path(&node);
    let index = args.seq.wrapping_sub(1);
    // From the stored tree levels; when they lead nowhere (a damaged node
    // no checksum caught: no checkpoint matches, or the proof does not
    // verify), once more with every level rebuilt from the log. A proof is
    // printed only once it verifies against the root it names.
    let mut made = None;
    for stored in [Stored::Use, Stored::Rebuild] {
        let mut tree = LogTree::open(&log, stored).map_err(|e| CliError::failed(e.to_string()))?;
        let size = tree.size();
        if args.seq == 0 || args.seq > size {
            return Err(CliError::bad_input(format!(
                "seq {} is not in log/{node}.jsonl, which has records 1..={size}",
                args.seq
            )));
        }
        let candidates = candidates(&data, &node, args.seq, size)?;
        let had_candidates = !candidates.is_empty();
        match prove(&mut tree, index, candidates) {
            Ok(m) => {
                let settled = m.chosen.is_some() || !had_candidates;
                made = Some(m);
                if settled {
                    break;
                }
            }
            Err(e) if stored == Stored::Rebuild => return Err(CliError::failed(e)),
            Err(e) => tracing::warn!("{e}: rebuilding the tree levels from the log"),
        }
    }
    let Made {
        leaf,
        tree_size,
        root,
        proof,
        chosen,
    } = made.ok_or_else(|| CliError::failed("internal: no proof made"))?;
    let proof_b64: Vec<String> = proof.iter().map(|h| B64.encode(h)).collect();
    if args.json {
        out_json(&serde_json::json!({
            "node": node,
            "seq": args.seq,
            "leaf_index": index,
            "leaf_hash": B64.encode(leaf),
            "tree_size": tree_size,
            "root": B64.encode(root),
            "proof": proof_b64,
            "checkpoint": chosen.as_ref().map(|(path, text, _)| serde_json::json!({"path": path, "note": text})),
        }));
    } else {
        let against = match &chosen {
            Some((path, _, _)) => format!("checkpoint {}", path.display()),
            None => "the current tree head (no checkpoint holds it yet: `jaros checkpoint`)".into(),
        };
        out(&format!(
            "record {} of log/{node}.jsonl (leaf index {index}, leaf hash {})\n\
             in the tree of {tree_size} records, root {}, against {against}\n\
             proof ({} hashes, nearest the leaf first):\n",
            args.seq,
            B64.encode(leaf),
            B64.encode(root),
            proof.len()
        ));
        for h in &proof_b64 {
            out(&format!("  {h}\n"));
        }
    }
    Ok(Outcome::Success)
}

/// The checkpoints in the data dir that hold record `seq` of a log of
/// `size` records, smallest first (their signatures are the auditor's to
/// check, with the note).
fn candidates(
    data: &DataDir,
    node: &str,
    seq: u64,
    size: u64,
) -> Result<Vec<(PathBuf, String, Checkpoint)>, CliError> {
    let mut found = Vec::new();
    let dir = checkpoint::dir(data, node);
    if !dir.is_dir() {
        return Ok(found);
    }
    for path in crate::fsx::list_dir(&dir).map_err(|e| CliError::failed(e.to_string()))? {
        let Ok(text) = crate::fsx::read_to_string(&path) else {
            continue;
        };
        let parsed = note::unverified_text(&text).map(|body| Checkpoint::parse(&path, body));
        if let Some(Ok(c)) = parsed {
            if c.size >= seq && c.size <= size {
                found.push((path, text, c));
            }
        }
    }
    found.sort_by_key(|(_, _, c)| c.size);
    Ok(found)
}

/// The proof of leaf `index` against the newest of `candidates` whose
/// root the tree has at its size, else against the tree's current head;
/// checked before it is returned.
fn prove(
    tree: &mut LogTree,
    index: u64,
    candidates: Vec<(PathBuf, String, Checkpoint)>,
) -> Result<Made, String> {
    let e = |e: TreeError| e.to_string();
    let mut chosen = None;
    for candidate in candidates.into_iter().rev() {
        if tree.root(candidate.2.size).map_err(e)? == candidate.2.root {
            chosen = Some(candidate);
            break;
        }
    }
    let tree_size = chosen.as_ref().map_or(tree.size(), |(_, _, c)| c.size);
    let root = match &chosen {
        Some((_, _, c)) => c.root,
        None => tree.root(tree_size).map_err(e)?,
    };
    let leaf = tree.leaf_from_log(index).map_err(e)?;
    let proof = merkle::inclusion_proof_from(tree, index, tree_size).map_err(e)?;
    merkle::verify_inclusion(index, tree_size, &leaf, &proof, &root)
        .map_err(|e| format!("the proof does not verify against its root ({e})"))?;
    Ok(Made {
        leaf,
        tree_size,
        root,
        proof,
        chosen,
    })
}
