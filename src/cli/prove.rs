//! `jaros prove`: an inclusion proof for one record of a node's log.

use super::checkpoint::pick_node;
use super::{out, out_json, CliError, CliResult, Ctx};
use crate::exit::Outcome;
use crate::log::checkpoint::{self, Checkpoint};
use crate::log::merkle;
use crate::log::note;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

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

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let data = ctx.existing_data_dir()?;
    let node = pick_node(&data, args.node)?;
    let leaves =
        checkpoint::leaf_hashes(&data, &node).map_err(|e| CliError::failed(e.to_string()))?;
    let size = leaves.len() as u64;
    if args.seq == 0 || args.seq > size {
        return Err(CliError::bad_input(format!(
            "seq {} is not in log/{node}.jsonl, which has records 1..={size}",
            args.seq
        )));
    }
    // The newest checkpoint that holds the record and still matches the
    // log (its signature is the auditor's to check, with the note). The
    // roots of the prefixes they name come from one streaming pass.
    let mut candidates: Vec<(std::path::PathBuf, String, Checkpoint)> = Vec::new();
    let dir = checkpoint::dir(&data, &node);
    if dir.is_dir() {
        for path in crate::fsx::list_dir(&dir).map_err(|e| CliError::failed(e.to_string()))? {
            let Ok(text) = crate::fsx::read_to_string(&path) else {
                continue;
            };
            let parsed = note::unverified_text(&text).map(|body| Checkpoint::parse(&path, body));
            if let Some(Ok(c)) = parsed {
                if c.size >= args.seq && c.size <= size {
                    candidates.push((path, text, c));
                }
            }
        }
    }
    candidates.sort_by_key(|(_, _, c)| c.size);
    let mut roots = std::collections::BTreeMap::new();
    let mut tree = merkle::TreeBuilder::new();
    let mut wanted = candidates.iter().map(|(_, _, c)| c.size).peekable();
    for leaf in &leaves {
        tree.push(*leaf);
        while wanted.peek() == Some(&tree.size()) {
            roots.insert(tree.size(), tree.root());
            wanted.next();
        }
    }
    let chosen = candidates
        .into_iter()
        .rev()
        .find(|(_, _, c)| roots.get(&c.size) == Some(&c.root));
    let tree_size = chosen.as_ref().map_or(size, |(_, _, c)| c.size);
    let tree = &leaves[..tree_size as usize];
    let index = args.seq - 1;
    let proof =
        merkle::inclusion_proof(index, tree).map_err(|e| CliError::failed(e.to_string()))?;
    let root = merkle::root(tree);
    let leaf = leaves[index as usize];
    merkle::verify_inclusion(index, tree_size, &leaf, &proof, &root)
        .map_err(|e| CliError::failed(format!("internal: the proof does not verify ({e})")))?;
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
