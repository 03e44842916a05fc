//! Signed checkpoints of a node's log: C2SP `tlog-checkpoint` notes over
//! the RFC 6962 tree of its record hashes ([`super::merkle`]), signed as
//! C2SP signed notes ([`super::note`]), kept as
//! `checkpoints/<node>/<size>.checkpoint` in the data dir.
//!
//! A checkpoint's text is three lines: the **origin** `<key name>/<node
//! id>` (the key names the hive or operator, the node id the log within
//! it), the **tree size** (records 1..=size), and the **root hash** in
//! base64. Jaros writes no extension lines and accepts them when opening.
//!
//! Owns the checkpoint text, sealing (tree head, sign, durable write) and
//! the audit of a log against checkpoints. Reads a log only through
//! [`super::tree`]: a tree head from the stored levels of the sealed
//! segments and the open segment ([`tree_head`]), an audit from whatever
//! [`Nodes`] source its caller trusts (`jaros verify --checkpoint` streams
//! the log itself).

use super::merkle::{self, Hash, Nodes};
use super::note::{NoteError, SignerKey, VerifierKey};
use super::segment::{SealHook, SealedSegment};
use super::tree::{LogTree, Stored, TreeError};
use super::LogError;
use crate::datadir::DataDir;
use crate::fsx::{self, IoError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What a checkpoint file is named with, after its tree size.
pub const EXTENSION: &str = "checkpoint";

/// Everything that can go wrong making or reading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("{}: {source}", path.display())]
    Note { path: PathBuf, source: NoteError },
    #[error("{}: line {line} of the checkpoint: {reason}", path.display())]
    Body {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}: a different checkpoint of size {size} is already there: the log's first {size} records changed since it was signed; run `jaros verify --checkpoint {}`", path.display(), path.display())]
    Conflict { path: PathBuf, size: u64 },
}

/// The text of a checkpoint (what is signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Extension lines, kept as read; Jaros writes none.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: origin, size and root, one per line, then any
    /// extension lines.
    pub fn text(&self) -> String {
        let mut t = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            t.push_str(e);
            t.push('\n');
        }
        t
    }

    /// Parses a checkpoint's note text; `path` names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = |line: usize, reason: &str| CheckpointError::Body {
            path: path.to_path_buf(),
            line,
            reason: reason.into(),
        };
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .ok_or_else(|| bad(1, "the text does not end in a newline"))?
            .split('\n')
            .collect();
        if lines.len() < 3 {
            return Err(bad(
                lines.len() + 1,
                "a checkpoint has at least three lines: origin, tree size, root hash",
            ));
        }
        if let Some(i) = lines.iter().position(|l| l.is_empty()) {
            return Err(bad(i + 1, "an empty line"));
        }
        let size_text = lines[1];
        let canonical = size_text.bytes().all(|b| b.is_ascii_digit())
            && (size_text == "0" || !size_text.starts_with('0'));
        let size = size_text
            .parse::<u64>()
            .ok()
            .filter(|_| canonical)
            .ok_or_else(|| {
                bad(
                    2,
                    "the tree size is not a decimal number without leading zeros",
                )
            })?;
        let root: Hash = B64
            .decode(lines[2])
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad(3, "the root hash is not the base64 of 32 bytes"))?;
        Ok(Checkpoint {
            origin: lines[0].into(),
            size,
            root,
            extensions: lines[3..].iter().map(|l| l.to_string()).collect(),
        })
    }

    /// The node id the origin names, when it is `<key name>/<node id>`.
    pub fn node<'a>(&'a self, key_name: &str) -> Option<&'a str> {
        self.origin
            .strip_prefix(key_name)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|n| !n.is_empty() && !n.contains('/'))
    }
}

/// The origin of `node`'s log under a key named `key_name`.
pub fn origin(key_name: &str, node: &str) -> String {
    format!("{key_name}/{node}")
}

/// Where `node`'s checkpoints are kept.
pub fn dir(data: &DataDir, node: &str) -> PathBuf {
    data.root().join("checkpoints").join(node)
}

/// The size of `node`'s log and the root of its tree at `size` (None:
/// all of it), from the sealed segments' stored levels (checked, or
/// rebuilt from the log) and the open segment: O(open segment + log n).
/// A torn tail is outside the tree.
pub fn tree_head(
    data: &DataDir,
    node: &str,
    size: Option<u64>,
) -> Result<(u64, Hash), CheckpointError> {
    let path = data.log_path(node);
    let mut tree = LogTree::open(&path, Stored::Use)?;
    let size = size.unwrap_or(tree.size());
    if size > tree.size() {
        return Err(CheckpointError::Io(IoError::new(
            "sign",
            &path,
            std::io::Error::other(format!(
                "the log holds {} records, fewer than the {size} to sign",
                tree.size()
            )),
        )));
    }
    Ok((size, tree.root(size)?))
}

/// A checkpoint signed and written.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub checkpoint: Checkpoint,
    /// The signed note, as written.
    pub note: String,
    pub path: PathBuf,
}

/// Signs a checkpoint of `node`'s log as it is now and writes it durably
/// to `checkpoints/<node>/<size>.checkpoint`. For the log writer when it
/// seals a segment, and for `jaros checkpoint`.
///
/// Idempotent: the same log signs to the same bytes (Ed25519 is
/// deterministic), so a second seal at the same size rewrites nothing; a
/// different checkpoint already at that size is [`CheckpointError::Conflict`].
pub fn seal(data: &DataDir, node: &str, key: &SignerKey) -> Result<Sealed, CheckpointError> {
    let (size, root) = tree_head(data, node, None)?;
    sign(data, node, key, size, root)
}

/// [`seal`] of the log's first `size` records (a sealed segment's end),
/// whatever has been appended since.
pub fn seal_at(
    data: &DataDir,
    node: &str,
    key: &SignerKey,
    size: u64,
) -> Result<Sealed, CheckpointError> {
    let (size, root) = tree_head(data, node, Some(size))?;
    sign(data, node, key, size, root)
}

/// What a node's log writer calls when it seals a segment: a signed
/// checkpoint at the segment's last record, taken on a thread of its own
/// (it reads the sealed segment once, to store its tree levels beside it,
/// and the open segment; the writer must not wait for that). Its
/// outcome is logged; a failure costs that checkpoint only (`jaros
/// checkpoint` takes one by hand).
pub fn seal_hook(data: DataDir, node: String, key: Arc<SignerKey>) -> SealHook {
    Arc::new(move |sealed: &SealedSegment| {
        sign_unsigned(
            data.clone(),
            node.clone(),
            key.clone(),
            Some(sealed.last_seq),
        );
    })
}

/// Signs, on a thread of its own, a checkpoint at the end of every sealed
/// segment of `node`'s log that has none (and at `also`, the segment just
/// sealed): what a seal could not sign (a full disk, a crash before its
/// thread ran) is signed at the next seal, or when the node boots.
pub fn sign_unsigned(data: DataDir, node: String, key: Arc<SignerKey>, also: Option<u64>) {
    SIGNING.fetch_add(1, Ordering::SeqCst);
    let whose = node.clone();
    let spawned = std::thread::Builder::new()
        .name("checkpoint".into())
        .spawn(move || {
            let mut ends = match unsigned_ends(&data, &node) {
                Ok(ends) => ends,
                Err(e) => {
                    tracing::error!("node {node}: cannot list the sealed segments to sign: {e}");
                    Vec::new()
                }
            };
            if let Some(end) = also.filter(|end| !ends.contains(end)) {
                ends.push(end);
            }
            for end in ends {
                match seal_at(&data, &node, &key, end) {
                    Ok(done) => tracing::info!(
                        "node {node}: log sealed through seq {end}; signed checkpoint {}",
                        done.path.display()
                    ),
                    Err(e) => tracing::error!(
                        "node {node}: no checkpoint of the log sealed through seq {end}: {e} (signed at the next seal or boot, or take one with `jaros checkpoint`)"
                    ),
                }
            }
            SIGNING.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        SIGNING.fetch_sub(1, Ordering::SeqCst);
        tracing::error!("cannot start signing the checkpoints of {whose}'s log: {e}");
    }
}

/// The ends of `node`'s sealed segments that have no checkpoint file, in
/// order: each ends just before the next begins, the last at its last
/// record.
pub fn unsigned_ends(data: &DataDir, node: &str) -> Result<Vec<u64>, CheckpointError> {
    let sealed: Vec<_> = super::segment::list(&data.log_path(node))?
        .into_iter()
        .filter(|s| s.sealed)
        .collect();
    let firsts: Vec<u64> = sealed.iter().filter_map(|s| s.first_seq).collect();
    let mut ends: Vec<u64> = firsts.windows(2).map(|pair| pair[1] - 1).collect();
    if let Some(last) = sealed.last() {
        if let Some(end) = super::index::last_seq(&last.path)? {
            ends.push(end);
        }
    }
    let signed = dir(data, node);
    ends.retain(|end| {
        std::fs::symlink_metadata(signed.join(format!("{end}.{EXTENSION}"))).is_err()
    });
    Ok(ends)
}

/// Checkpoints [`seal_hook`] is signing in this process.
static SIGNING: AtomicUsize = AtomicUsize::new(0);

/// How many checkpoints [`seal_hook`] is still signing: a stopping node
/// waits for them, so a segment sealed just before it stops still gets its
/// checkpoint.
pub fn signing() -> usize {
    SIGNING.load(Ordering::SeqCst)
}

/// Signs the checkpoint of `node`'s log at `size` with root `root` and
/// writes it.
fn sign(
    data: &DataDir,
    node: &str,
    key: &SignerKey,
    size: u64,
    root: Hash,
) -> Result<Sealed, CheckpointError> {
    let checkpoint = Checkpoint {
        origin: origin(key.name(), node),
        size,
        root,
        extensions: Vec::new(),
    };
    let dir = dir(data, node);
    let path = dir.join(format!("{}.{EXTENSION}", checkpoint.size));
    let note = key
        .sign(&checkpoint.text())
        .map_err(|source| CheckpointError::Note {
            path: path.clone(),
            source,
        })?;
    fsx::create_dir_all(&dir)?;
    if !fsx::create_durable_exclusive(&path, note.as_bytes())? {
        let existing = fsx::read(&path)?;
        if existing != note.as_bytes() {
            return Err(CheckpointError::Conflict {
                path,
                size: checkpoint.size,
            });
        }
    }
    Ok(Sealed {
        checkpoint,
        note,
        path,
    })
}

/// Reads a checkpoint file and opens it with `key`.
pub fn open_file(path: &Path, key: &VerifierKey) -> Result<(Checkpoint, String), CheckpointError> {
    let bytes = fsx::read(path)?;
    let note = String::from_utf8(bytes).map_err(|_| CheckpointError::Note {
        path: path.to_path_buf(),
        source: NoteError::Malformed("not UTF-8".into()),
    })?;
    let text = key.open(&note).map_err(|source| CheckpointError::Note {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((Checkpoint::parse(path, text)?, note))
}

/// The checkpoints that opened (smallest first), and why others did not.
pub type Kept = (Vec<(PathBuf, Checkpoint)>, Vec<String>);

/// Every checkpoint of `node` in the data dir that opens with `key` and
/// names that node, smallest first, with the files that did not (and why).
pub fn kept(data: &DataDir, node: &str, key: &VerifierKey) -> Result<Kept, CheckpointError> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let dir = dir(data, node);
    if !dir.is_dir() {
        return Ok((good, bad));
    }
    for path in fsx::list_dir(&dir)? {
        if path.extension().is_none_or(|e| e != EXTENSION) {
            continue;
        }
        match open_file(&path, key) {
            Ok((c, _)) if c.node(key.name()) == Some(node) => good.push((path, c)),
            Ok(_) => bad.push(format!(
                "{}: its origin is not {}",
                path.display(),
                origin(key.name(), node)
            )),
            Err(e) => bad.push(e.to_string()),
        }
    }
    good.sort_by_key(|(_, c)| c.size);
    Ok((good, bad))
}

/// The verdict on a log against a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Audit {
    /// The log's first `old_size` records are the checkpoint's: the
    /// consistency proof from it to the log's current tree head.
    Extends {
        old_size: u64,
        new_size: u64,
        #[serde(with = "b64")]
        old_root: Hash,
        #[serde(with = "b64")]
        new_root: Hash,
        #[serde(with = "b64_list")]
        proof: Vec<Hash>,
    },
    /// The log is not an extension of the checkpoint. The first record
    /// that differs is in `first_seq..=last_seq`: between the largest
    /// trusted checkpoint the log still matches (or the start) and the
    /// smallest it does not. One checkpoint alone commits only to a root,
    /// so it can only say "somewhere in 1..=size".
    Rewritten {
        size: u64,
        log_size: u64,
        first_seq: u64,
        last_seq: u64,
        /// The largest trusted checkpoint size the log still matches.
        matches_up_to: u64,
    },
}

/// Checks the log whose tree is `src`, of `size` leaves, against
/// `checkpoint`. When it is not an extension of it, `trusted` (other
/// checkpoints opened with the same key for the same log) narrow down where
/// the log first differs. Whoever calls this decides what `src` may be
/// trusted for: `jaros verify --checkpoint` computes it from the log.
pub fn audit<N: Nodes + ?Sized>(
    src: &mut N,
    size: u64,
    checkpoint: &Checkpoint,
    trusted: &[Checkpoint],
) -> Result<Audit, N::Error> {
    let new_size = size;
    // The root of every prefix a checkpoint names.
    let mut prefix_roots = std::collections::BTreeMap::new();
    for c in trusted.iter().chain(std::iter::once(checkpoint)) {
        if c.size <= new_size && !prefix_roots.contains_key(&c.size) {
            prefix_roots.insert(c.size, merkle::range_root(src, 0, c.size)?);
        }
    }
    let matches = |c: &Checkpoint| prefix_roots.get(&c.size) == Some(&c.root);
    let new_root = merkle::range_root(src, 0, new_size)?;
    if matches(checkpoint) {
        let proof = match checkpoint.size {
            0 => Vec::new(),
            old => merkle::consistency_proof_from(src, old, new_size)?,
        };
        return Ok(Audit::Extends {
            old_size: checkpoint.size,
            new_size,
            old_root: checkpoint.root,
            new_root,
            proof,
        });
    }
    let first_bad = trusted
        .iter()
        .chain(std::iter::once(checkpoint))
        .filter(|c| !matches(c))
        .map(|c| c.size)
        .min()
        .unwrap_or(checkpoint.size);
    let matches_up_to = trusted
        .iter()
        .filter(|c| c.size < first_bad && matches(c))
        .map(|c| c.size)
        .max()
        .unwrap_or(0);
    Ok(Audit::Rewritten {
        size: checkpoint.size,
        log_size: new_size,
        first_seq: matches_up_to + 1,
        last_seq: first_bad.min(new_size + 1),
        matches_up_to,
    })
}

/// Hashes as standard base64, as checkpoints write them.
pub mod b64 {
    use super::{Hash, B64};
    use base64::Engine as _;
    pub fn serialize<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(h))
    }
}

/// Lists of hashes as standard base64.
pub mod b64_list {
    use super::{Hash, B64};
    use base64::Engine as _;
    use serde::ser::SerializeSeq;
    pub fn serialize<S: serde::Serializer>(hs: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(hs.len()))?;
        for h in hs {
            seq.serialize_element(&B64.encode(h))?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::merkle::Leaves;

    fn audit(l: &[Hash], c: &Checkpoint, trusted: &[Checkpoint]) -> Audit {
        super::audit(&mut Leaves(l), l.len() as u64, c, trusted).unwrap()
    }

    fn leaves(n: u32) -> Vec<Hash> {
        (0..n)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect()
    }

    fn cp(l: &[Hash]) -> Checkpoint {
        Checkpoint {
            origin: "example.com/hive/n1".into(),
            size: l.len() as u64,
            root: merkle::root(l),
            extensions: Vec::new(),
        }
    }

    #[test]
    fn a_checkpoint_text_round_trips_and_bad_lines_are_named() {
        let c = cp(&leaves(5));
        let p = Path::new("c");
        assert_eq!(Checkpoint::parse(p, &c.text()).unwrap(), c);
        let t = c.text();
        let line = |text: &str| match Checkpoint::parse(p, text) {
            Err(CheckpointError::Body { line, .. }) => line,
            other => panic!("{other:?}"),
        };
        assert_eq!(line(&t.replace("\n5\n", "\n05\n")), 2);
        assert_eq!(line(&t.replace("\n5\n", "\n+5\n")), 2);
        assert_eq!(line(&t.replacen('=', "", 1)), 3);
        assert_eq!(line("example.com/x\n5\n"), 3);
        assert_eq!(line(&format!("{t}\n")), 4);
        let ext = format!("{t}ext one\n");
        assert_eq!(Checkpoint::parse(p, &ext).unwrap().extensions, ["ext one"]);
    }

    #[test]
    fn an_extended_log_extends_and_a_rewritten_one_is_bracketed_by_the_checkpoints() {
        let l = leaves(40);
        let (c10, c20, c30) = (cp(&l[..10]), cp(&l[..20]), cp(&l[..30]));
        match audit(&l, &c20, &[]) {
            Audit::Extends {
                old_size,
                new_size,
                old_root,
                new_root,
                proof,
            } => merkle::verify_consistency(old_size, new_size, &proof, &old_root, &new_root)
                .unwrap(),
            other => panic!("{other:?}"),
        }
        // Record 15 (leaf 14) and everything after it rewritten.
        let mut bad = l.clone();
        for leaf in &mut bad[14..] {
            leaf[0] ^= 1;
        }
        let alone = audit(&bad, &c30, &[]);
        assert_eq!(
            alone,
            Audit::Rewritten {
                size: 30,
                log_size: 40,
                first_seq: 1,
                last_seq: 30,
                matches_up_to: 0
            }
        );
        let bracketed = audit(&bad, &c30, &[c10.clone(), c20.clone()]);
        assert!(matches!(
            bracketed,
            Audit::Rewritten {
                first_seq: 11,
                last_seq: 20,
                matches_up_to: 10,
                ..
            }
        ));
        // Checkpoints at every size name the record exactly.
        let every: Vec<Checkpoint> = (1..=40).map(|n| cp(&l[..n])).collect();
        assert!(matches!(
            audit(&bad, &c30, &every),
            Audit::Rewritten {
                first_seq: 15,
                last_seq: 15,
                ..
            }
        ));
        // A truncated log.
        assert!(matches!(
            audit(&l[..12], &c20, &[c10]),
            Audit::Rewritten {
                first_seq: 11,
                last_seq: 13,
                log_size: 12,
                ..
            }
        ));
    }
}
