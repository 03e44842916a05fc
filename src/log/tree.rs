//! Stored tree levels: the hashes of a log's RFC 6962 tree ([`super::merkle`])
//! kept beside its sealed segments, so that a tree head or a proof reads
//! O(log n) stored nodes and the open segment instead of every record.
//!
//! **Layout.** A sealed segment never changes, so the nodes of the tree
//! that lie wholly inside it never change either. Beside
//! `log/<node>.segments/<first seq>.jsonl` (or beside the stub of an
//! archived one) is `<first seq>.tree`, holding, for the segment's leaves
//! `first..end` (leaf index = seq − 1, counted over the whole log):
//!
//! - every complete, aligned node of the *global* tree inside `first..end`
//!   at levels [`CHUNK_LEVEL`] (256 leaves) and above; nodes that straddle
//!   two segments are folded from their halves when asked for;
//! - the leaf hashes of the segment's partial chunks (the 256-leaf blocks
//!   the segment's first and last leaves fall in, when not wholly inside
//!   it), so a node straddling a boundary costs no read of the log;
//! - the byte offset in the segment of each chunk's first record: a node
//!   below the chunk level (an inclusion proof's lowest eight hashes, the
//!   leaf itself) is computed from the chunk's 256 records, read from the
//!   segment with one `pread`, hash-checked, and checked against the stored
//!   chunk node;
//! - the segment's length, the hash before its first record and of its
//!   last, and a SHA-256 of the file.
//!
//! About 0.3 MB per million records (2 × 32 bytes per 256 leaves for the
//! levels, 8 for the offset), plus at most 16 KiB of edge leaves per
//! segment: 1.2 MB for a log of 4 million records.
//!
//! **A cache, never trusted over the log.** A tree file is used only when
//! its checksum holds, it starts where the chain before it ended (seq and
//! `prev`), the segment still has the length it recorded, and the
//! segment's last record (read from the segment and hash-checked) is the
//! head it recorded; else it is rebuilt from the segment (its chain
//! checked) and rewritten. That catches a damaged, missing or stale file
//! and a segment rewritten after the file was built. It cannot catch a
//! tree file forged to match a forged log: whoever can write the data dir
//! can make the log say anything, and a tree head taken then signs what
//! the data dir says. What the signed root catches is a log that no longer
//! *is* the signed history, and that check never reads a tree file:
//! `jaros verify --checkpoint` streams the log itself ([`stream_levels`]),
//! and `jaros prove` checks its proof against a signed root.
//!
//! Owns the tree file's format, building and checking it, and reading a
//! log's tree through it ([`LogTree`]). Reads the log segment by segment,
//! block by block ([`for_each_block`]), never all of it at once.

use super::merkle::{self, Hash, Nodes, ProofError};
use super::read::{scan, ChainStart};
use super::record::{check_line, ChainFields};
use super::segment::{self, Segment};
use super::LogError;
use crate::canon::Digest;
use crate::fsx::{self, IoError};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// The lowest level stored for a segment's complete chunks: a chunk is
/// 2^8 = 256 leaves, whose records (about 100 KB) are read back from the
/// segment when a node below it is needed.
pub const CHUNK_LEVEL: u32 = 8;

/// Leaves in a chunk.
const CHUNK_LEAVES: u64 = 1 << CHUNK_LEVEL;

/// A tree file's extension, after the segment's first seq.
pub const EXTENSION: &str = "tree";

/// The first bytes of a tree file (the last one the format's version).
const MAGIC: &[u8; 8] = b"jtree\0\0\x01";

/// How much of a segment is read at once: the most of a log held in
/// memory by a reader here (plus the record being cut across blocks).
const READ_BLOCK_BYTES: usize = 16 << 20;

/// Bytes read from a segment's end at first to find its last record
/// (doubled until the record fits).
const TAIL_READ_BYTES: u64 = 4096;

/// Times a reader lists the segments again when the open one was sealed
/// while it read (it reads on from where it is: the segments it read stay
/// read), before it reports what it found.
const MAX_ROTATION_RETRIES: u32 = 16;

/// What can go wrong reading a log's tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error("{}: {reason}; a tree file is a cache of the log's tree: delete it and it is rebuilt from the log", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("internal: no node at level {level} from leaf {start} in the tree read")]
    Missing { start: u64, level: u32 },
}

// ---------------------------------------------------------------------
// Levels: the stored nodes of one range of leaves.

/// The complete, aligned nodes of the global tree inside leaves
/// `first..end`, at levels `min_level` and up, and the leaves of some
/// chunks (aligned blocks of 2^`min_level` leaves), whole or the part of
/// them inside the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Levels {
    first: u64,
    end: u64,
    min_level: u32,
    /// `levels[i]`: the nodes at level `min_level + i`, in order, the first
    /// being the first complete one inside the range.
    levels: Vec<Vec<Hash>>,
    /// Chunk index → the leaves of that chunk inside the range.
    chunks: BTreeMap<u64, Vec<Hash>>,
}

impl Levels {
    /// The leaves `first..end` it covers.
    pub fn range(&self) -> (u64, u64) {
        (self.first, self.end)
    }

    /// The index of the first complete node at `level` inside the range.
    fn base(&self, level: u32) -> u64 {
        self.first.div_ceil(1u64 << level)
    }

    /// How many complete nodes at `level` lie inside the range.
    fn count(&self, level: u32) -> u64 {
        (self.end >> level).saturating_sub(self.base(level))
    }

    /// The chunks the range touches, by index.
    fn chunk_span(&self) -> std::ops::Range<u64> {
        match self.end > self.first {
            true => self.first >> self.min_level..((self.end - 1) >> self.min_level) + 1,
            false => 0..0,
        }
    }

    /// The first leaf of chunk `c` inside the range, and how many it has.
    fn chunk_leaves(&self, c: u64) -> (u64, u64) {
        let from = (c << self.min_level).max(self.first);
        let to = ((c + 1) << self.min_level).min(self.end);
        (from, to.saturating_sub(from))
    }

    /// Whether chunk `c` lies wholly inside the range.
    fn chunk_whole(&self, c: u64) -> bool {
        self.chunk_leaves(c).1 == 1 << self.min_level
    }

    /// The root of the subtree of 2^`level` leaves from `start`, when it
    /// lies inside the range and is stored or computable from kept leaves.
    pub fn node(&self, start: u64, level: u32) -> Option<Hash> {
        let width = 1u64.checked_shl(level)?;
        let end = start.checked_add(width)?;
        if start < self.first || end > self.end || !start.is_multiple_of(width) {
            return None;
        }
        let c = start >> self.min_level;
        if let Some(leaves) = self.chunks.get(&c).filter(|_| level < self.min_level) {
            let i = (start - self.chunk_leaves(c).0) as usize;
            return leaves.get(i..i + width as usize).map(merkle::root);
        }
        let row = self
            .levels
            .get(level.checked_sub(self.min_level)? as usize)?;
        let i = (start >> level).checked_sub(self.base(level))?;
        row.get(usize::try_from(i).ok()?).copied()
    }
}

impl Nodes for Levels {
    type Error = TreeError;
    fn subtree(&mut self, start: u64, level: u32) -> Result<Hash, TreeError> {
        self.node(start, level)
            .ok_or(TreeError::Missing { start, level })
    }
}

/// Builds [`Levels`] leaf by leaf, in O(log n) memory beside what it keeps.
#[derive(Debug)]
pub struct LevelsBuilder {
    out: Levels,
    /// Chunks whose leaves are kept although they lie wholly inside.
    keep: BTreeSet<u64>,
    /// Per level, a left child waiting for its right sibling: (index, root).
    pending: Vec<Option<(u64, Hash)>>,
    /// The leaves of the chunk being filled.
    chunk: Vec<Hash>,
}

impl LevelsBuilder {
    /// A builder of the levels of leaves from `first` on, keeping the
    /// leaves of the chunks in `keep`, of partial chunks, and of the last.
    pub fn new(first: u64, min_level: u32, keep: BTreeSet<u64>) -> LevelsBuilder {
        LevelsBuilder {
            out: Levels {
                first,
                end: first,
                min_level,
                levels: Vec::new(),
                chunks: BTreeMap::new(),
            },
            keep,
            pending: Vec::new(),
            chunk: Vec::new(),
        }
    }

    /// Appends the next leaf (its leaf hash).
    pub fn push(&mut self, leaf: Hash) {
        let i = self.out.end;
        let min = self.out.min_level;
        if min > 0 {
            if i.is_multiple_of(1 << min) && !self.chunk.is_empty() {
                self.flush_chunk(false);
            }
            self.chunk.push(leaf);
        }
        self.out.end += 1;
        let (mut level, mut j, mut h) = (0u32, i, leaf);
        loop {
            if level >= min {
                let row = (level - min) as usize;
                if self.out.levels.len() <= row {
                    self.out.levels.resize(row + 1, Vec::new());
                }
                self.out.levels[row].push(h);
            }
            let l = level as usize;
            if self.pending.len() <= l {
                self.pending.resize(l + 1, None);
            }
            if j % 2 == 0 {
                self.pending[l] = Some((j, h));
                break;
            }
            // The left sibling is pending unless it starts before `first`:
            // then no node above this one lies inside the range.
            match self.pending[l].take() {
                Some((left_j, left)) if left_j + 1 == j => {
                    h = merkle::node_hash(&left, &h);
                    level += 1;
                    j >>= 1;
                }
                _ => break,
            }
        }
    }

    /// Files the chunk being filled: kept when asked for, partial, or last.
    fn flush_chunk(&mut self, last: bool) {
        let c = (self.out.end - 1) >> self.out.min_level;
        let leaves = std::mem::take(&mut self.chunk);
        if last || !self.out.chunk_whole(c) || self.keep.contains(&c) {
            self.out.chunks.insert(c, leaves);
        }
    }

    /// The levels of every leaf pushed.
    pub fn finish(mut self) -> Levels {
        if !self.chunk.is_empty() {
            self.flush_chunk(true);
        }
        self.out
    }
}

// ---------------------------------------------------------------------
// Reading a segment block by block.

/// Reads the segment file `path` in blocks of [`READ_BLOCK_BYTES`] and
/// checks its chain from `start` (every record's hash, seq and `prev`),
/// handing `f` each block's records with the byte offset each starts at.
/// A partial last line is a torn tail, outside the chain; in a sealed
/// segment it is tampering. Returns the length up to the last complete
/// line and where the chain stands after it. A missing file is an empty
/// segment when `missing_ok`.
pub(crate) fn for_each_block(
    path: &Path,
    start: ChainStart,
    sealed: bool,
    missing_ok: bool,
    mut f: impl FnMut(&[u64], &[ChainFields]),
) -> Result<(u64, ChainStart), TreeError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => return Ok((0, start)),
        Err(e) => return Err(IoError::new("cannot open the log segment", path, e).into()),
    };
    let mut chain = start;
    // Bytes and lines before the block being read.
    let (mut base, mut lines_before) = (0u64, 0u64);
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut block = std::mem::take(&mut carry);
        let had = block.len();
        block.resize(had + READ_BLOCK_BYTES, 0);
        let n = read_full(&mut file, &mut block[had..])
            .map_err(|e| IoError::new("cannot read the log segment", path, e))?;
        block.truncate(had + n);
        let eof = n < READ_BLOCK_BYTES;
        let cut = block.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if cut > 0 {
            let complete = &block[..cut];
            let (parts, _, _) = scan(
                path,
                complete,
                check_line,
                |f: &ChainFields| (f.seq, f.prev, f.hash),
                chain,
            )
            .map_err(|e| renumber(e, lines_before))?;
            let mut starts = Vec::new();
            let mut at = base;
            for line in complete[..cut - 1].split(|&b| b == b'\n') {
                starts.push(at);
                at += line.len() as u64 + 1;
            }
            let fields: Vec<ChainFields> = parts.into_iter().flatten().collect();
            if let Some(last) = fields.last() {
                chain = ChainStart {
                    seq: last.seq + 1,
                    prev: last.hash,
                };
            }
            f(&starts, &fields);
            lines_before += fields.len() as u64;
            base += cut as u64;
        }
        carry = block.split_off(cut);
        if eof {
            if sealed && !carry.is_empty() {
                return Err(LogError::Tampered {
                    path: path.to_path_buf(),
                    line: lines_before + 1,
                    seq: chain.seq,
                    reason: "a sealed segment ends in a partial line, which sealing never leaves"
                        .into(),
                }
                .into());
            }
            return Ok((base, chain));
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A block's error, its line counted from the segment's first line.
fn renumber(e: LogError, lines_before: u64) -> LogError {
    match e {
        LogError::Tampered {
            path,
            line,
            seq,
            reason,
        } => LogError::Tampered {
            path,
            line: line + lines_before,
            seq,
            reason,
        },
        other => other,
    }
}

/// A sealed segment's name must say the seq the chain is at (as
/// [`super::read`] checks it).
fn check_name(seg: &Segment, start: ChainStart) -> Result<(), LogError> {
    match seg.first_seq {
        Some(first) if first != start.seq => Err(LogError::Tampered {
            path: seg.path.clone(),
            line: 1,
            seq: start.seq,
            reason: format!(
                "the sealed segment's name says it starts at seq {first}, but the chain is at seq {}: a segment is missing, renamed or added",
                start.seq
            ),
        }),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------
// The tree of one segment, and its file.

/// The stored levels of one segment, and what ties them to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentTree {
    pub levels: Levels,
    /// The hash before the segment's first record (its first `prev`).
    prev: Digest,
    /// The hash of its last record (`prev` when it has none).
    head: Digest,
    /// The segment's length up to its last complete line.
    bytes: u64,
    /// The byte offset of the first record of each chunk the segment
    /// touches ([`Levels::chunk_span`]), then `bytes`.
    offsets: Vec<u64>,
}

impl SegmentTree {
    /// Builds the tree of the segment file `path`, checking its chain from
    /// `start` as it reads.
    pub(crate) fn build(
        path: &Path,
        start: ChainStart,
        sealed: bool,
        missing_ok: bool,
    ) -> Result<SegmentTree, TreeError> {
        let mut b = LevelsBuilder::new(start.seq - 1, CHUNK_LEVEL, BTreeSet::new());
        let mut offsets = Vec::new();
        let (bytes, end) = for_each_block(path, start, sealed, missing_ok, |starts, fields| {
            for (at, f) in starts.iter().zip(fields) {
                if offsets.is_empty() || (f.seq - 1).is_multiple_of(CHUNK_LEAVES) {
                    offsets.push(*at);
                }
                b.push(merkle::leaf_hash(&f.hash.0));
            }
        })?;
        offsets.push(bytes);
        Ok(SegmentTree {
            levels: b.finish(),
            prev: start.prev,
            head: end.prev,
            bytes,
            offsets,
        })
    }

    /// Where the chain stands after the segment.
    fn chain_end(&self) -> ChainStart {
        ChainStart {
            seq: self.levels.end + 1,
            prev: self.head,
        }
    }

    /// The file's bytes (see the module doc), its checksum last.
    pub fn encode(&self) -> Vec<u8> {
        let l = &self.levels;
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        for n in [l.first, l.end, u64::from(l.min_level), self.bytes] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&self.prev.0);
        out.extend_from_slice(&self.head.0);
        out.extend_from_slice(&(self.offsets.len() as u64).to_le_bytes());
        for o in &self.offsets {
            out.extend_from_slice(&o.to_le_bytes());
        }
        out.extend_from_slice(&(l.levels.len() as u64).to_le_bytes());
        for row in &l.levels {
            out.extend_from_slice(&(row.len() as u64).to_le_bytes());
            row.iter().for_each(|h| out.extend_from_slice(h));
        }
        out.extend_from_slice(&(l.chunks.len() as u64).to_le_bytes());
        for (c, leaves) in &l.chunks {
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&(leaves.len() as u64).to_le_bytes());
            leaves.iter().for_each(|h| out.extend_from_slice(h));
        }
        let sum: Hash = Sha256::digest(&out).into();
        out.extend_from_slice(&sum);
        out
    }

    /// Reads a tree file's bytes, checking its checksum and that every
    /// count agrees with the range it says it covers.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<SegmentTree, TreeError> {
        let corrupt = |reason: &str| TreeError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        let (body, sum) = bytes
            .split_at_checked(bytes.len().saturating_sub(32))
            .filter(|(b, _)| b.len() >= MAGIC.len())
            .ok_or_else(|| corrupt("too short for a tree file"))?;
        if !body.starts_with(MAGIC) {
            return Err(corrupt("not a tree file of this version"));
        }
        if Sha256::digest(body).as_slice() != sum {
            return Err(corrupt("its checksum does not match its content"));
        }
        let mut r = Cursor(&body[MAGIC.len()..]);
        let short = || corrupt("cut short");
        let (first, end) = (r.u64().ok_or_else(short)?, r.u64().ok_or_else(short)?);
        let min_level = r.u64().ok_or_else(short)?;
        let seg_bytes = r.u64().ok_or_else(short)?;
        let (prev, head) = (r.hash().ok_or_else(short)?, r.hash().ok_or_else(short)?);
        if end < first || min_level != u64::from(CHUNK_LEVEL) {
            return Err(corrupt(
                "its range or chunk level is not one this version writes",
            ));
        }
        let mut levels = Levels {
            first,
            end,
            min_level: CHUNK_LEVEL,
            levels: Vec::new(),
            chunks: BTreeMap::new(),
        };
        let span = levels.chunk_span();
        let n = r.len(8).ok_or_else(short)?;
        if n != span.end - span.start + 1 {
            return Err(corrupt("it has the wrong number of chunk offsets"));
        }
        let offsets: Vec<u64> = (0..n).map_while(|_| r.u64()).collect();
        if offsets.len() as u64 != n
            || offsets.windows(2).any(|w| w[0] > w[1])
            || offsets.last() != Some(&seg_bytes)
        {
            return Err(corrupt("its chunk offsets are out of order"));
        }
        let rows = r.len(8).ok_or_else(short)?;
        if rows > 64 {
            return Err(corrupt("it has more levels than a tree can"));
        }
        for row in 0..rows {
            let n = r.len(32).ok_or_else(short)?;
            if n != levels.count(CHUNK_LEVEL + row as u32) {
                return Err(corrupt("a level has the wrong number of nodes"));
            }
            levels.levels.push((0..n).map_while(|_| r.hash()).collect());
        }
        if levels.count(CHUNK_LEVEL + rows as u32) > 0 {
            return Err(corrupt("a level is missing"));
        }
        let chunks = r.len(16).ok_or_else(short)?;
        for _ in 0..chunks {
            let c = r.u64().ok_or_else(short)?;
            let n = r.len(32).ok_or_else(short)?;
            if !span.contains(&c) || n != levels.chunk_leaves(c).1 {
                return Err(corrupt("a chunk's leaves do not fit the range"));
            }
            let leaves = (0..n).map_while(|_| r.hash()).collect();
            levels.chunks.insert(c, leaves);
        }
        if span
            .clone()
            .any(|c| !levels.chunk_whole(c) && !levels.chunks.contains_key(&c))
        {
            return Err(corrupt("the leaves of a partial chunk are missing"));
        }
        if !r.0.is_empty() {
            return Err(corrupt("bytes after its content"));
        }
        Ok(SegmentTree {
            levels,
            prev: Digest(prev),
            head: Digest(head),
            bytes: seg_bytes,
            offsets,
        })
    }
}

/// Reads little-endian numbers and hashes off the front of a slice.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn hash(&mut self) -> Option<Hash> {
        self.take(32)?.try_into().ok()
    }
    /// A count of items of `size` bytes each, which must fit what is left.
    fn len(&mut self, size: u64) -> Option<u64> {
        self.u64().filter(|n| {
            n.checked_mul(size)
                .is_some_and(|b| b <= self.0.len() as u64)
        })
    }
}

/// Where a sealed segment's tree file is: beside it, or beside its stub.
pub fn tree_path(seg: &Segment) -> PathBuf {
    seg.stub
        .as_deref()
        .unwrap_or(&seg.path)
        .with_extension(EXTENSION)
}

/// The segment's stored tree, when its file is there, intact, and still
/// the tree of the segment as it is (see the module doc); else why not.
fn load_stored(seg: &Segment, start: ChainStart) -> Result<SegmentTree, TreeError> {
    let path = tree_path(seg);
    let tree = SegmentTree::decode(&path, &fsx::read(&path)?)?;
    let stale = |reason: String| TreeError::Corrupt {
        path: path.clone(),
        reason,
    };
    if tree.levels.first + 1 != start.seq || tree.prev != start.prev {
        return Err(stale(format!(
            "it starts at seq {}, but the chain is at seq {} with another prev",
            tree.levels.first + 1,
            start.seq
        )));
    }
    let len = std::fs::metadata(&seg.path)
        .map_err(|e| IoError::new("cannot stat the sealed segment", &seg.path, e))?
        .len();
    if len != tree.bytes {
        return Err(stale(format!(
            "it was built from {} bytes of {}, which has {len} now",
            tree.bytes,
            seg.path.display()
        )));
    }
    let last = last_record(&seg.path, len)?;
    if last.hash != tree.head || last.seq != tree.levels.end {
        return Err(stale(format!(
            "{} ends in seq {} with hash {}, the tree file says seq {} with hash {}",
            seg.path.display(),
            last.seq,
            last.hash.short(),
            tree.levels.end,
            tree.head.short()
        )));
    }
    Ok(tree)
}

/// The chain fields of the last record of the sealed segment `path`
/// (`len` bytes, ending in a newline), its hash checked.
fn last_record(path: &Path, len: u64) -> Result<ChainFields, TreeError> {
    let file = File::open(path).map_err(|e| IoError::new("cannot open", path, e))?;
    let mut want = TAIL_READ_BYTES;
    loop {
        let from = len.saturating_sub(want);
        let mut buf = vec![0; (len - from) as usize];
        file.read_exact_at(&mut buf, from)
            .map_err(|e| IoError::new("cannot read the end of", path, e))?;
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => return parse_fields(path, &body[i + 1..]),
            None if from == 0 => return parse_fields(path, body),
            None => want *= 2,
        }
    }
}

fn parse_fields(path: &Path, line: &[u8]) -> Result<ChainFields, TreeError> {
    std::str::from_utf8(line)
        .map_err(|_| "not UTF-8".to_string())
        .and_then(|l| check_line(l).map_err(|e| e.to_string()))
        .map_err(|reason| TreeError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("its last record does not check: {reason}; run `jaros verify`"),
        })
}

// ---------------------------------------------------------------------
// A log's tree, through its segments' trees.

/// One segment's tree, and the file its chunks are read back from.
#[derive(Debug)]
struct Part {
    tree: SegmentTree,
    segment: PathBuf,
}

impl Part {
    fn node(&mut self, start: u64, level: u32) -> Result<Hash, TreeError> {
        let c = start >> CHUNK_LEVEL;
        if level < CHUNK_LEVEL && !self.tree.levels.chunks.contains_key(&c) {
            let leaves = self.read_chunk(c)?;
            self.tree.levels.chunks.insert(c, leaves);
        }
        self.tree
            .levels
            .node(start, level)
            .ok_or(TreeError::Missing { start, level })
    }

    /// Chunk `c`'s leaves, read from the segment with one `pread` and
    /// hash-checked record by record, which must agree with the stored
    /// chunk node (or the stored edge leaves).
    fn read_chunk(&self, c: u64) -> Result<Vec<Hash>, TreeError> {
        let l = &self.tree.levels;
        let span = l.chunk_span();
        let stale = |reason: String| TreeError::Corrupt {
            path: self.segment.with_extension(EXTENSION),
            reason,
        };
        if !span.contains(&c) {
            return Err(TreeError::Missing {
                start: c << CHUNK_LEVEL,
                level: CHUNK_LEVEL,
            });
        }
        let i = (c - span.start) as usize;
        let (from, to) = (self.tree.offsets[i], self.tree.offsets[i + 1]);
        let file =
            File::open(&self.segment).map_err(|e| IoError::new("cannot open", &self.segment, e))?;
        let mut buf = vec![0; (to - from) as usize];
        file.read_exact_at(&mut buf, from)
            .map_err(|e| IoError::new("cannot read a chunk of", &self.segment, e))?;
        let (first, n) = l.chunk_leaves(c);
        let mut leaves = Vec::with_capacity(n as usize);
        let lines = buf.strip_suffix(b"\n").unwrap_or(&buf);
        for (k, line) in lines.split(|&b| b == b'\n').enumerate() {
            let f = parse_fields(&self.segment, line)?;
            if f.seq != first + 1 + k as u64 {
                return Err(stale(format!(
                    "its offset of seq {} finds seq {} in {}",
                    first + 1 + k as u64,
                    f.seq,
                    self.segment.display()
                )));
            }
            leaves.push(merkle::leaf_hash(&f.hash.0));
        }
        let agrees = match l.chunks.get(&c) {
            Some(kept) => *kept == leaves,
            None => l.node(c << CHUNK_LEVEL, CHUNK_LEVEL) == Some(merkle::root(&leaves)),
        };
        if leaves.len() as u64 != n || !agrees {
            return Err(stale(format!(
                "records {}..={} of {} are not the leaves it stored",
                first + 1,
                first + n,
                self.segment.display()
            )));
        }
        Ok(leaves)
    }
}

/// A log's tree read through its stored levels: each sealed segment's tree
/// file (checked, or rebuilt from the segment and rewritten), and the open
/// segment's tree built as it is read. A [`Nodes`] source: the roots and
/// proofs of [`merkle`] read O(log n) nodes from it.
#[derive(Debug)]
pub struct LogTree {
    parts: Vec<Part>,
    size: u64,
}

/// How [`LogTree`] treats the tree files it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Use each one that checks; rebuild (and rewrite) the others.
    Use,
    /// Rebuild (and rewrite) every one from the log.
    Rebuild,
}

impl LogTree {
    /// The tree of the log whose open segment is `log`. A segment sealed
    /// while it reads is read as sealed: the tree is of the log as it was
    /// at some moment during the call.
    pub fn open(log: &Path, stored: Stored) -> Result<LogTree, TreeError> {
        let mut start = ChainStart::GENESIS;
        let mut parts = Vec::new();
        let mut attempt = 0;
        loop {
            let segments = segment::list(log)?;
            let any_sealed = segments.iter().any(|s| s.sealed);
            for seg in segments.iter().filter(|s| s.sealed) {
                if seg.first_seq.is_some_and(|f| f < start.seq) {
                    continue;
                }
                check_name(seg, start)?;
                let tree = Self::sealed(seg, start, stored)?;
                start = tree.chain_end();
                parts.push(Part {
                    tree,
                    segment: seg.path.clone(),
                });
            }
            let open = segments
                .last()
                .filter(|s| !s.sealed)
                .map(|s| s.path.clone());
            let open = open.unwrap_or_else(|| log.to_path_buf());
            match SegmentTree::build(&open, start, false, any_sealed) {
                Ok(tree) => {
                    start = tree.chain_end();
                    parts.push(Part {
                        tree,
                        segment: open,
                    });
                    return Ok(LogTree {
                        size: start.seq - 1,
                        parts,
                    });
                }
                // The open segment was sealed under it: read on.
                Err(_) if attempt < MAX_ROTATION_RETRIES && segment::list(log)? != segments => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A sealed segment's tree: its file when it checks, else rebuilt.
    fn sealed(seg: &Segment, start: ChainStart, stored: Stored) -> Result<SegmentTree, TreeError> {
        let path = tree_path(seg);
        if stored == Stored::Use {
            match load_stored(seg, start) {
                Ok(tree) => return Ok(tree),
                Err(TreeError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(why) => tracing::warn!("{why}: rebuilding it"),
            }
        }
        let tree = SegmentTree::build(&seg.path, start, true, false)?;
        // A cache: a data dir we cannot write only costs the next reader
        // this rebuild, and a file a crash cut or lost is rebuilt the same
        // way (its checksum fails), so no fsync.
        if let Err(e) = fsx::write_atomic_unsynced(&path, &tree.encode()) {
            tracing::warn!("cannot store the tree of {}: {e}", seg.path.display());
        }
        Ok(tree)
    }

    /// The log's records, which are the tree's leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree of the first `size` records.
    pub fn root(&mut self, size: u64) -> Result<Hash, TreeError> {
        if size > self.size {
            return Err(ProofError::IndexOutOfRange {
                index: size - 1,
                size: self.size,
            }
            .into());
        }
        merkle::range_root(self, 0, size)
    }

    /// The leaf of record `index + 1`, read from its segment and
    /// hash-checked (never from a stored leaf alone).
    pub fn leaf_from_log(&mut self, index: u64) -> Result<Hash, TreeError> {
        let p = self.part_of(index)?;
        let c = index >> CHUNK_LEVEL;
        let part = &mut self.parts[p];
        let leaves = part.read_chunk(c)?;
        part.tree.levels.chunks.insert(c, leaves);
        part.node(index, 0)
    }

    fn part_of(&self, index: u64) -> Result<usize, TreeError> {
        if index >= self.size {
            return Err(ProofError::IndexOutOfRange {
                index,
                size: self.size,
            }
            .into());
        }
        Ok(self.parts.partition_point(|p| p.tree.levels.end <= index))
    }
}

impl Nodes for LogTree {
    type Error = TreeError;
    fn subtree(&mut self, start: u64, level: u32) -> Result<Hash, TreeError> {
        let p = self.part_of(start)?;
        let end = start.saturating_add(1u64 << level);
        if end > self.size {
            return Err(ProofError::IndexOutOfRange {
                index: end - 1,
                size: self.size,
            }
            .into());
        }
        if end <= self.parts[p].tree.levels.end {
            return self.parts[p].node(start, level);
        }
        // It straddles a segment boundary (so level > 0): from its halves.
        let half = 1u64 << (level - 1);
        let left = self.subtree(start, level - 1)?;
        let right = self.subtree(start + half, level - 1)?;
        Ok(merkle::node_hash(&left, &right))
    }
}

/// The levels of the whole log whose open segment is `log`, computed from
/// the log itself as it is read (every record's hash and the chain across
/// segments checked; no tree file read), keeping the leaves of the chunks
/// around each of `sizes` so that roots of those prefixes and proofs
/// between them need nothing more. One segment block in memory at a time.
pub fn stream_levels(log: &Path, sizes: &[u64]) -> Result<Levels, TreeError> {
    let keep: BTreeSet<u64> = sizes
        .iter()
        .filter(|&&s| s > 0)
        .flat_map(|&s| [(s - 1) >> CHUNK_LEVEL, s >> CHUNK_LEVEL])
        .collect();
    let mut b = LevelsBuilder::new(0, CHUNK_LEVEL, keep);
    let mut start = ChainStart::GENESIS;
    let mut attempt = 0;
    loop {
        let segments = segment::list(log)?;
        let any_sealed = segments.iter().any(|s| s.sealed);
        for seg in &segments {
            if seg.first_seq.is_some_and(|f| f < start.seq) {
                continue;
            }
            check_name(seg, start)?;
            let missing_ok = !seg.sealed && any_sealed;
            let mut read = 0u64;
            let done = for_each_block(&seg.path, start, seg.sealed, missing_ok, |_, fields| {
                for f in fields {
                    b.push(merkle::leaf_hash(&f.hash.0));
                }
                read += fields.len() as u64;
            });
            match done {
                Ok((_, end)) => start = end,
                // The open segment was sealed under it, before a record of
                // it was taken: read on from where it is.
                Err(_)
                    if !seg.sealed
                        && read == 0
                        && attempt < MAX_ROTATION_RETRIES
                        && segment::list(log)? != segments =>
                {
                    attempt += 1;
                    break;
                }
                Err(e) => return Err(e),
            }
            if !seg.sealed {
                return Ok(b.finish());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::merkle::tests::{reference_path, reference_proof, reference_root};

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect()
    }

    /// Levels built from `leaves[first..end]` with `min_level`, keeping
    /// every chunk (so nodes below the stored levels can be asked for).
    fn levels(all: &[Hash], first: u64, end: u64, min_level: u32) -> Levels {
        let keep = (0..=all.len() as u64 >> min_level).collect();
        let mut b = LevelsBuilder::new(first, min_level, keep);
        for leaf in &all[first as usize..end as usize] {
            b.push(*leaf);
        }
        b.finish()
    }

    fn job(n: u64) -> crate::log::Body {
        crate::log::Body::Job {
            job: crate::decision::JobId::new(format!("j{n}")).unwrap(),
            at: 0,
            agent: crate::decision::AgentName::new("advance").unwrap(),
            input: serde_json::json!({ "n": n }),
            plan: Digest::ZERO,
            parent: None,
            via: None,
            started_ms: None,
            depth: None,
            tree_jobs: None,
        }
    }

    /// A log of `n` records in a new temp dir, sealed into segments past
    /// `segment_bytes`; its leaf hashes, and the first leaf of each segment
    /// after the first (none of them a power of two, with these sizes).
    fn segmented_log(
        n: u64,
        segment_bytes: u64,
    ) -> (tempfile::TempDir, PathBuf, Vec<Hash>, Vec<u64>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log/n1.jsonl");
        let (w, _) = crate::log::LogWriter::open(&path).unwrap();
        w.set_segment_options(crate::log::SegmentOptions {
            segment_bytes,
            on_seal: None,
        });
        // Each record written on its own (no fsync): the segments end
        // wherever a record first passes the size.
        for i in 0..n {
            w.append_deferred(&job(i)).unwrap();
            w.flush().unwrap();
        }
        drop(w);
        let log = crate::log::read_log(&path).unwrap();
        let leaves = log
            .records
            .iter()
            .map(|r| merkle::leaf_hash(&r.hash.0))
            .collect();
        let bounds = segment::list(&path)
            .unwrap()
            .iter()
            .filter_map(|s| s.first_seq)
            .filter(|&f| f > 1)
            .chain([log.open_first_seq])
            .map(|f| f - 1)
            .collect();
        (dir, path, leaves, bounds)
    }

    /// Sizes worth proving at: around every segment boundary and chunk
    /// edge, and the ends.
    fn edges(bounds: &[u64], n: u64) -> Vec<u64> {
        let mut s: Vec<u64> = bounds
            .iter()
            .chain(&[1, 2, 3, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, n])
            .flat_map(|&b| [b.saturating_sub(1), b, b + 1])
            .filter(|&x| x >= 1 && x <= n)
            .collect();
        s.sort_unstable();
        s.dedup();
        s
    }

    /// Every root, inclusion proof and consistency proof taken through the
    /// stored tree files (and through the streamed levels) is the one RFC
    /// 6962 defines over the leaves themselves, for sizes and indices around
    /// every segment boundary (none aligned to a power of two) and chunk edge.
    fn proofs_from_stored_levels_equal_proofs_from_the_leaf_hashes(n: u64, segment_bytes: u64) {
        {
            let (_dir, path, leaves, bounds) = segmented_log(n, segment_bytes);
            assert!(
                bounds.len() >= 2,
                "{n} records in {segment_bytes}-byte segments: {bounds:?}"
            );
            assert!(bounds.iter().all(|b| !b.is_power_of_two()), "{bounds:?}");
            // Built and stored, then read back from the files.
            LogTree::open(&path, Stored::Use).unwrap();
            let files = std::fs::read_dir(segment::segments_dir(&path))
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension() == Some(EXTENSION.as_ref()))
                .count();
            assert_eq!(files, bounds.len(), "a tree file per sealed segment");
            let mut tree = LogTree::open(&path, Stored::Use).unwrap();
            assert_eq!(tree.size(), n);
            let sizes = edges(&bounds, n);
            let mut streamed = stream_levels(&path, &sizes).unwrap();
            for &size in &sizes {
                let d = &leaves[..size as usize];
                assert_eq!(
                    tree.root(size).unwrap(),
                    reference_root(d),
                    "root of {size}"
                );
                for &i in sizes.iter().filter(|&&i| i < size).chain(&[0]) {
                    let proof = merkle::inclusion_proof_from(&mut tree, i, size).unwrap();
                    assert_eq!(
                        proof,
                        reference_path(i as usize, d),
                        "path of {i} in {size}"
                    );
                }
                let last = size - 1;
                assert_eq!(tree.leaf_from_log(last).unwrap(), leaves[last as usize]);
                assert_eq!(
                    merkle::range_root(&mut streamed, 0, size).unwrap(),
                    reference_root(d)
                );
                for &m in sizes.iter().filter(|&&m| m <= size) {
                    let want = reference_proof(m as usize, d, true);
                    let proof = merkle::consistency_proof_from(&mut tree, m, size).unwrap();
                    assert_eq!(proof, want, "proof {m} -> {size}");
                    if size == n {
                        let proof = merkle::consistency_proof_from(&mut streamed, m, n).unwrap();
                        assert_eq!(proof, want, "streamed proof {m} -> {n}");
                    }
                }
            }
        }
    }

    /// Segments of about 16 records: every node above a few leaves
    /// straddles a boundary.
    #[test]
    fn proofs_from_stored_levels_equal_proofs_from_the_leaf_hashes_in_small_segments() {
        proofs_from_stored_levels_equal_proofs_from_the_leaf_hashes(
            300,
            segment::MIN_SEGMENT_BYTES,
        );
    }

    /// Segments of about 600 records: stored chunk nodes and the levels
    /// above them, chunks read back from the segment.
    #[test]
    fn proofs_from_stored_levels_equal_proofs_from_the_leaf_hashes_in_large_segments() {
        proofs_from_stored_levels_equal_proofs_from_the_leaf_hashes(1100, 150_000);
    }

    /// Rewrites the tree file of the segment holding leaf `index` with
    /// `edit` applied to its decoded content, its checksum recomputed: a
    /// damage no checksum catches.
    fn forge(path: &Path, index: u64, edit: impl FnOnce(&mut SegmentTree)) -> PathBuf {
        let seg = segment::list(path)
            .unwrap()
            .into_iter()
            .rfind(|s| s.first_seq.is_some_and(|f| f <= index + 1))
            .unwrap();
        let file = tree_path(&seg);
        let mut t = SegmentTree::decode(&file, &std::fs::read(&file).unwrap()).unwrap();
        edit(&mut t);
        std::fs::write(&file, t.encode()).unwrap();
        file
    }

    #[test]
    fn a_missing_or_damaged_tree_file_is_rebuilt_from_the_log() {
        let (_dir, path, leaves, bounds) = segmented_log(1500, 150_000);
        let root = reference_root(&leaves);
        LogTree::open(&path, Stored::Use).unwrap();
        let seg = segment::list(&path).unwrap()[1].clone();
        let file = tree_path(&seg);
        let good = std::fs::read(&file).unwrap();
        // Deleted: rebuilt, the same bytes.
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            LogTree::open(&path, Stored::Use)
                .unwrap()
                .root(1500)
                .unwrap(),
            root
        );
        assert_eq!(std::fs::read(&file).unwrap(), good);
        // One bit of a stored node flipped: the checksum fails, rebuilt.
        let mut bad = good.clone();
        bad[good.len() / 2] ^= 1;
        std::fs::write(&file, &bad).unwrap();
        assert_eq!(
            LogTree::open(&path, Stored::Use)
                .unwrap()
                .root(1500)
                .unwrap(),
            root
        );
        assert_eq!(std::fs::read(&file).unwrap(), good);
        // Cut short, or another segment's file: rebuilt.
        std::fs::write(&file, &good[..100]).unwrap();
        assert_eq!(
            LogTree::open(&path, Stored::Use)
                .unwrap()
                .root(1500)
                .unwrap(),
            root
        );
        let other = tree_path(&segment::list(&path).unwrap()[0]);
        std::fs::copy(&other, &file).unwrap();
        assert_eq!(
            LogTree::open(&path, Stored::Use)
                .unwrap()
                .root(1500)
                .unwrap(),
            root
        );
        assert_eq!(std::fs::read(&file).unwrap(), good);
        // A chunk node forged with a fresh checksum: a proof that needs the
        // chunk's records reads them from the segment and refuses.
        let first = bounds[0];
        let chunk = first.div_ceil(CHUNK_LEAVES);
        forge(&path, chunk * CHUNK_LEAVES, |t| {
            t.levels.levels[0][0][0] ^= 1
        });
        let mut tree = LogTree::open(&path, Stored::Use).unwrap();
        let i = chunk * CHUNK_LEAVES + 3;
        let err = merkle::inclusion_proof_from(&mut tree, i, 1500).unwrap_err();
        assert!(matches!(err, TreeError::Corrupt { .. }), "{err}");
        assert!(tree.leaf_from_log(i).is_err());
        // Every level rebuilt from the log: right again.
        let mut tree = LogTree::open(&path, Stored::Rebuild).unwrap();
        assert_eq!(
            merkle::inclusion_proof_from(&mut tree, i, 1500).unwrap(),
            reference_path(i as usize, &leaves)
        );
        assert_eq!(std::fs::read(&file).unwrap(), good);
    }

    #[test]
    fn levels_hold_every_complete_aligned_node_inside_their_range() {
        let all = leaves(300);
        for (first, end, min) in [
            (0, 300, 0),
            (0, 300, 3),
            (5, 77, 2),
            (64, 128, 4),
            (7, 8, 0),
        ] {
            let l = levels(&all, first, end, min);
            for level in 0..10u32 {
                let w = 1u64 << level;
                for s in (0..300).step_by(w as usize) {
                    let inside = s >= first && s + w <= end;
                    let want = inside.then(|| merkle::root(&all[s as usize..(s + w) as usize]));
                    assert_eq!(
                        l.node(s, level),
                        want,
                        "{first}..{end} min {min}: {s}@{level}"
                    );
                }
            }
        }
    }
}
