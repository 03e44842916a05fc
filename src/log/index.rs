//! The per-node job index: where each job's records (and each recorded
//! plan) are in its log, so a reader of one job reads only that job's
//! records instead of the whole log.
//!
//! `index/log.<node>/` in the data dir holds 256 bucket files (a job goes
//! to the bucket its id's sha256 starts with, a plan record to the one of
//! its digest) of fixed-size entries (the key, a record's seq, the first
//! seq of the segment it is in, and its byte offset there), and
//! `meta.json`: how far into the log the index covers (the seq, hash and
//! position of the last record it covers) and how many entries each bucket
//! holds.
//!
//! The index is a cache, never trusted over the log: before a lookup, the
//! record it says it covers up to must be at that position with that hash
//! (else it is rebuilt from the log), the log's tail past it is scanned
//! (its chain checked) and appended; a bucket shorter than `meta.json`
//! says is torn, and every record read through the index is hash-checked
//! and must be the job's (or the plan's), with the seq the index says. On
//! any mismatch the index is rebuilt once, and a second mismatch is an
//! error naming the segment.
//!
//! Being a cache, it is never synced (a first build of a million-decision
//! log would wait on 256 of them): an update appends to the buckets, then
//! replaces `meta.json` atomically. A crash may leave `meta.json` older
//! than the buckets (entries past its counts are ignored, then cut), or
//! missing or torn (the index is rebuilt), or buckets shorter than it
//! counts, or with entries never written (zeros): each entry carries a
//! check over its fields, and such a bucket is torn, found when it is
//! next read or appended to, and the index rebuilt.

use super::read::ChainStart;
use super::record::{check_line, members_before_a_cut, parse_line, Record};
use super::segment::{self, Segment};
use super::{Body, LogError};
use crate::canon::Digest;
use crate::fsx::{self, IoError};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes of one entry: key, seq, segment's first seq, offset and a check
/// over the four (u64 LE each).
const ENTRY_BYTES: usize = 40;

/// Buckets (files) the entries are spread over by key: a lookup reads one.
const BUCKETS: usize = 256;

/// Bytes read at a time when reading one record at an offset.
const READ_CHUNK_BYTES: usize = 4096;

/// Records of one job at most this far apart in a segment are read with
/// one read (a job's records are written close together).
const MAX_SPAN_BYTES: u64 = 64 * 1024;

/// Entries held in memory while the log is scanned, before they are
/// appended to their buckets: bounds a first build's memory.
const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;

/// The layout this code reads and writes; an index in another is rebuilt.
const VERSION: u32 = 2;

/// How far the index covers, and how many entries each bucket holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    version: u32,
    /// The last record covered (0: none).
    seq: u64,
    hash: Digest,
    /// Where it is: its segment's first seq and its offset there.
    segment: u64,
    offset: u64,
    /// Where the next record starts (in the same segment, or the next's 0).
    end: u64,
    /// Entries per bucket: a bucket file shorter is torn; entries past the
    /// count are a crashed update's, ignored and cut by the next one.
    counts: Vec<u64>,
}

fn empty_meta() -> Meta {
    Meta {
        version: VERSION,
        seq: 0,
        hash: Digest::ZERO,
        segment: 1,
        offset: 0,
        end: 0,
        counts: vec![0; BUCKETS],
    }
}

/// One entry: where one record of a job (or a plan) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    key: u64,
    seq: u64,
    segment: u64,
    offset: u64,
}

impl Entry {
    fn bytes(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[0..8].copy_from_slice(&self.key.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.segment.to_le_bytes());
        b[24..32].copy_from_slice(&self.offset.to_le_bytes());
        b[32..40].copy_from_slice(&self.check().to_le_bytes());
        b
    }

    /// The entry in `b`, `None` when its check does not match: a torn
    /// write (zeros, or a part of another) rather than an entry.
    fn parse(b: &[u8]) -> Option<Entry> {
        let u = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let entry = Entry {
            key: u(0),
            seq: u(8),
            segment: u(16),
            offset: u(24),
        };
        (entry.check() == u(32)).then_some(entry)
    }

    /// A cheap mix of the four fields (splitmix64's finaliser), against
    /// torn writes, not forgery: what an entry points at is checked
    /// against the log anyway. An all-zero entry does not pass.
    fn check(&self) -> u64 {
        let mut x = 0x9e37_79b9_7f4a_7c15u64
            ^ self.key
            ^ self.seq.rotate_left(17)
            ^ self.segment.rotate_left(31)
            ^ self.offset.rotate_left(47);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

/// What an entry is filed under.
#[derive(Clone, Copy)]
enum Name<'a> {
    Job(&'a str),
    Plan(&'a Digest),
}

/// A name's key and bucket. A plan's name starts with a byte no job id
/// has, so the two never share a key but by a hash collision (and a
/// record read is checked to be the one asked for anyway).
fn key_of(name: Name<'_>) -> (u64, usize) {
    let d = match name {
        Name::Job(job) => Digest::of_bytes(job.as_bytes()),
        Name::Plan(plan) => Digest::of_bytes(format!("\0plan {}", plan.to_hex()).as_bytes()),
    };
    let mut w = [0u8; 8];
    w.copy_from_slice(&d.0[..8]);
    (u64::from_le_bytes(w), d.0[0] as usize % BUCKETS)
}

/// The index directory of the log whose open segment is `open`:
/// `log/n1.jsonl` → `index/log.n1` beside `log/` (outside it: readers of
/// `log/` take every entry there for a log).
pub fn index_dir(open: &Path) -> PathBuf {
    let stem = open
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = open.parent().unwrap_or(Path::new("."));
    let kind = parent
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent
        .parent()
        .unwrap_or(Path::new("."))
        .join("index")
        .join(format!("{kind}.{stem}"))
}

/// What the index did, for tests and benches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// The index was missing, stale or wrong and was built from the log.
    pub rebuilt: bool,
    /// Records of the log's tail scanned into the index.
    pub scanned: u64,
    /// Records read from the log through the index (each hash-checked).
    pub read: u64,
}

/// Every record of `job` in the log whose open segment is `open`, in seq
/// order, read through the index (brought up to date first).
pub fn job_records(open: &Path, job: &str) -> Result<(Vec<Record>, LookupStats), LogError> {
    let mut index = Index::open(open)?;
    let records = index.job(job)?;
    Ok((records, index.stats()))
}

/// A segment with the seq it starts at.
struct Located {
    first: u64,
    path: PathBuf,
    sealed: bool,
}

/// One log's index, up to date with the log and locked (against another
/// process updating it) while held.
pub struct Index {
    dir: PathBuf,
    segments: Vec<Located>,
    meta: Meta,
    /// Segments opened for reading records, by first seq.
    files: BTreeMap<u64, File>,
    stats: LookupStats,
    /// A lookup found the index wrong and rebuilt it: the next is an error.
    rebuilt_for_a_mismatch: bool,
    _lock: File,
}

impl Index {
    /// Locks the index of the log whose open segment is `open` and brings
    /// it up to date (building it when it is missing, stale or torn).
    pub fn open(open: &Path) -> Result<Index, LogError> {
        let dir = index_dir(open);
        fsx::create_dir_all(&dir)?;
        // One updater at a time; readers of other processes wait for it.
        let lock_path = dir.join("lock");
        let lock = fsx::open_append(&lock_path)?;
        lock.lock()
            .map_err(|e| IoError::new("cannot lock", &lock_path, e))?;
        let segments = locate(segment::list(open)?)?;
        let mut index = Index {
            dir,
            segments,
            meta: empty_meta(),
            files: BTreeMap::new(),
            stats: LookupStats::default(),
            rebuilt_for_a_mismatch: false,
            _lock: lock,
        };
        match read_meta(&index.dir) {
            Some(meta) if index.covers(&meta) => {
                index.meta = meta;
                // A torn bucket (or a tail that does not follow) is found
                // here; the rebuild names a record the log itself breaks at.
                if index.update().is_err() {
                    index.rebuild()?;
                }
            }
            _ => index.rebuild()?,
        }
        Ok(index)
    }

    /// What this index has done so far.
    pub fn stats(&self) -> LookupStats {
        self.stats
    }

    /// The seq of the log's last record (0 for an empty log).
    pub fn last_seq(&self) -> u64 {
        self.meta.seq
    }

    /// Every record of `job` in this log, in seq order.
    pub fn job(&mut self, job: &str) -> Result<Vec<Record>, LogError> {
        self.lookup(Name::Job(job), &|body| match body.job_at() {
            Some((j, _)) => Ok(j.as_str() == job),
            None => Err("the index names a record of no job for a job".into()),
        })
    }

    /// The `plan` record of `digest` in this log, if it holds one.
    pub fn plan(&mut self, digest: &Digest) -> Result<Option<Record>, LogError> {
        let found = self.lookup(Name::Plan(digest), &|body| match body {
            Body::Plan { digest: d, .. } => Ok(d == digest),
            _ => Err("the index names a record that is not a plan for a plan".into()),
        })?;
        Ok(found.into_iter().next())
    }

    /// The records filed under `name` that `mine` says are its (a key
    /// shared by two names by a hash collision files both).
    fn lookup(
        &mut self,
        name: Name<'_>,
        mine: &dyn Fn(&Body) -> Result<bool, String>,
    ) -> Result<Vec<Record>, LogError> {
        match self.read(name, mine) {
            Ok(records) => Ok(records),
            // Rebuilt once from the log, the index is tried again.
            Err(_) if !self.rebuilt_for_a_mismatch => {
                self.rebuilt_for_a_mismatch = true;
                self.rebuild()?;
                self.read(name, mine)
            }
            Err(e) => Err(e),
        }
    }

    fn rebuild(&mut self) -> Result<(), LogError> {
        clear(&self.dir)?;
        self.files.clear();
        self.meta = empty_meta();
        self.stats.rebuilt = true;
        self.update()
    }

    fn segment(&self, first: u64) -> Option<&Located> {
        self.segments.iter().find(|s| s.first == first)
    }

    /// Whether the record `meta` says it covers up to is in the log where
    /// it says, with its hash.
    fn covers(&self, meta: &Meta) -> bool {
        if meta.version != VERSION || meta.counts.len() != BUCKETS {
            return false;
        }
        if meta.seq == 0 {
            return true;
        }
        let Some(seg) = self.segment(meta.segment) else {
            return false;
        };
        let Ok(file) = File::open(&seg.path) else {
            return false;
        };
        line_at(&file, &seg.path, meta.offset)
            .ok()
            .and_then(|line| check_line(std::str::from_utf8(&line).ok()?).ok())
            .is_some_and(|f| f.seq == meta.seq && f.hash == meta.hash)
    }

    /// Scans the log past what the index covers into the buckets, then
    /// writes the new meta.
    fn update(&mut self) -> Result<(), LogError> {
        let covered = self.meta.clone();
        let mut next = ChainStart {
            seq: covered.seq + 1,
            prev: covered.hash,
        };
        let mut m = covered.clone();
        let mut buckets = Buckets::new(&self.dir);
        let mut scanned = 0;
        for seg in &self.segments {
            let from = match covered.seq {
                0 => 0,
                _ if seg.first < covered.segment => continue,
                _ if seg.first == covered.segment => covered.end,
                _ => 0,
            };
            let bytes = match read_from(&seg.path, from) {
                Ok(b) => b,
                Err(e) if !seg.sealed && e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            let mut at = 0;
            while let Some(len) = memchr::memchr(b'\n', &bytes[at..]) {
                let line = &bytes[at..at + len];
                let offset = from + at as u64;
                let bad = |reason: String| LogError::Tampered {
                    path: seg.path.clone(),
                    line: next.seq - seg.first + 1,
                    seq: next.seq,
                    reason,
                };
                let text = std::str::from_utf8(line).map_err(|_| bad("not UTF-8".into()))?;
                let f = check_line(text).map_err(|e| bad(e.to_string()))?;
                if f.seq != next.seq || f.prev != next.prev {
                    return Err(bad(format!(
                        "seq {} does not follow the record before it (seq {})",
                        f.seq,
                        next.seq - 1
                    )));
                }
                if let Some(key) = filed_under(line) {
                    let (key, bucket) = match &key {
                        Filed::Job(job) => key_of(Name::Job(job)),
                        Filed::Plan(digest) => key_of(Name::Plan(digest)),
                    };
                    let entry = Entry {
                        key,
                        seq: f.seq,
                        segment: seg.first,
                        offset,
                    };
                    buckets.push(bucket, entry, &mut m.counts)?;
                }
                m.seq = f.seq;
                m.hash = f.hash;
                m.segment = seg.first;
                m.offset = offset;
                m.end = offset + len as u64 + 1;
                next = ChainStart {
                    seq: f.seq + 1,
                    prev: f.hash,
                };
                at += len + 1;
                scanned += 1;
            }
        }
        // Nothing new (an empty log's meta is written each time: cheap).
        if scanned == 0 && covered.seq != 0 {
            return Ok(());
        }
        buckets.flush(&mut m.counts)?;
        // Nothing is synced: a crash is found (see the module doc).
        let text = serde_json::to_vec(&m).unwrap_or_default();
        fsx::write_atomic_unsynced(&self.dir.join("meta.json"), &text)?;
        self.meta = m;
        self.stats.scanned += scanned;
        Ok(())
    }

    /// The records filed under `name`, through its bucket, each checked
    /// against the log.
    fn read(
        &mut self,
        name: Name<'_>,
        mine: &dyn Fn(&Body) -> Result<bool, String>,
    ) -> Result<Vec<Record>, LogError> {
        let (key, bucket) = key_of(name);
        let count = self.meta.counts[bucket];
        if count == 0 {
            return Ok(Vec::new());
        }
        let path = self.dir.join(format!("{bucket:02x}"));
        let len = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(ENTRY_BYTES))
            .ok_or_else(|| mismatch(&path, 0, "its entry count is impossible".into()))?;
        let mut bytes = vec![0u8; len];
        let file = File::open(&path).map_err(|e| IoError::new("cannot open", &path, e))?;
        file.read_exact_at(&mut bytes, 0)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => mismatch(
                    &path,
                    0,
                    format!("the bucket holds fewer than the {count} entries its meta.json counts"),
                ),
                _ => IoError::new("cannot read", &path, e).into(),
            })?;
        let mut entries = Vec::new();
        for (i, b) in bytes.chunks_exact(ENTRY_BYTES).enumerate() {
            match Entry::parse(b) {
                Some(e) if e.key == key => entries.push(e),
                Some(_) => {}
                None => {
                    return Err(mismatch(
                        &path,
                        0,
                        format!("entry {} of the bucket is torn", i + 1),
                    ))
                }
            }
        }
        entries.sort_by_key(|e| e.seq);
        entries.dedup_by_key(|e| e.seq);
        let mut out = Vec::with_capacity(entries.len());
        let mut i = 0;
        while i < entries.len() {
            // Entries close together in one segment: one read.
            let start = entries[i];
            let mut end = i + 1;
            while end < entries.len()
                && entries[end].segment == start.segment
                && entries[end].offset > entries[end - 1].offset
                && entries[end].offset - start.offset < MAX_SPAN_BYTES
            {
                end += 1;
            }
            let span_len = entries[end - 1].offset - start.offset + READ_CHUNK_BYTES as u64;
            let seg_path = self.open_segment(start.segment, start.seq)?;
            let file = &self.files[&start.segment];
            let span = read_span(file, &seg_path, start.offset, span_len)?;
            for e in &entries[i..end] {
                let rel = (e.offset - start.offset) as usize;
                let line = match memchr::memchr(b'\n', &span[rel..]) {
                    Some(n) => span[rel..rel + n].to_vec(),
                    // Runs past what was read: read it on its own.
                    None => line_at(file, &seg_path, e.offset)?,
                };
                self.stats.read += 1;
                let text = std::str::from_utf8(&line)
                    .map_err(|_| mismatch(&seg_path, e.seq, "not UTF-8".into()))?;
                let record =
                    parse_line(text).map_err(|err| mismatch(&seg_path, e.seq, err.to_string()))?;
                if record.seq != e.seq {
                    return Err(mismatch(
                        &seg_path,
                        e.seq,
                        format!(
                            "the index says seq {} is here, the log has seq {}",
                            e.seq, record.seq
                        ),
                    ));
                }
                if mine(&record.body).map_err(|why| mismatch(&seg_path, e.seq, why))? {
                    out.push(record);
                }
            }
            i = end;
        }
        Ok(out)
    }

    /// Opens the segment starting at seq `first` (once per index) into
    /// `files`; its path.
    fn open_segment(&mut self, first: u64, seq: u64) -> Result<PathBuf, LogError> {
        let path = self
            .segment(first)
            .map(|s| s.path.clone())
            .ok_or_else(|| mismatch(&self.dir, seq, "its segment is gone".into()))?;
        if let std::collections::btree_map::Entry::Vacant(slot) = self.files.entry(first) {
            let file = File::open(&path).map_err(|e| IoError::new("cannot open", &path, e))?;
            slot.insert(file);
        }
        Ok(path)
    }
}

/// What a record is filed under in the index.
enum Filed {
    Job(String),
    Plan(Digest),
}

/// A record line's job (or, for a plan record, its digest), read from its
/// members without parsing the body.
fn filed_under(line: &[u8]) -> Option<Filed> {
    let mut kind = None;
    let mut digest = None;
    for (k, v) in members_before_a_cut(line) {
        match k {
            b"job" => return serde_json::from_slice::<String>(v).ok().map(Filed::Job),
            b"kind" => kind = Some(v),
            b"digest" => digest = Some(v),
            _ => {}
        }
    }
    match (kind, digest) {
        (Some(b"\"plan\""), Some(d)) => serde_json::from_slice::<Digest>(d).ok().map(Filed::Plan),
        _ => None,
    }
}

/// Bucket files being appended to by one update: entries gather in memory
/// (up to [`MAX_PENDING_BYTES`]) and are written per bucket, before the
/// meta that counts them.
struct Buckets<'a> {
    dir: &'a Path,
    pending: Vec<Vec<u8>>,
    pending_bytes: usize,
    open: BTreeMap<usize, File>,
}

impl<'a> Buckets<'a> {
    fn new(dir: &'a Path) -> Buckets<'a> {
        Buckets {
            dir,
            pending: vec![Vec::new(); BUCKETS],
            pending_bytes: 0,
            open: BTreeMap::new(),
        }
    }

    fn push(&mut self, bucket: usize, entry: Entry, counts: &mut [u64]) -> Result<(), LogError> {
        self.pending[bucket].extend_from_slice(&entry.bytes());
        self.pending_bytes += ENTRY_BYTES;
        if self.pending_bytes >= MAX_PENDING_BYTES {
            self.flush(counts)?;
        }
        Ok(())
    }

    /// Appends what is pending to the bucket files (not yet synced) and
    /// counts it in `counts`.
    fn flush(&mut self, counts: &mut [u64]) -> Result<(), LogError> {
        for (bucket, pending) in self.pending.iter_mut().enumerate() {
            if pending.is_empty() {
                continue;
            }
            let path = self.dir.join(format!("{bucket:02x}"));
            let file = match self.open.entry(bucket) {
                std::collections::btree_map::Entry::Occupied(f) => f.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    let file = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .map_err(|e| IoError::new("cannot open", &path, e))?;
                    let len = file
                        .metadata()
                        .map_err(|e| IoError::new("cannot stat", &path, e))?
                        .len();
                    let counted = counts[bucket] * ENTRY_BYTES as u64;
                    if len < counted {
                        return Err(mismatch(
                            &path,
                            0,
                            format!(
                                "the bucket holds fewer than the {} entries its meta.json counts",
                                counts[bucket]
                            ),
                        ));
                    }
                    // Entries past the count: an update that crashed
                    // before its meta.json.
                    if len > counted {
                        file.set_len(counted)
                            .map_err(|e| IoError::new("cannot truncate", &path, e))?;
                    }
                    slot.insert(file)
                }
            };
            file.write_all(pending)
                .map_err(|e| IoError::new("cannot write", &path, e))?;
            counts[bucket] += (pending.len() / ENTRY_BYTES) as u64;
            pending.clear();
        }
        self.pending_bytes = 0;
        Ok(())
    }
}

fn read_meta(dir: &Path) -> Option<Meta> {
    let text = fsx::read_to_string(&dir.join("meta.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The bytes of `path` from `offset` to its end.
fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>, IoError> {
    let mut file = File::open(path).map_err(|e| IoError::new("cannot open", path, e))?;
    let mut out = Vec::new();
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_to_end(&mut out))
        .map_err(|e| IoError::new("cannot read", path, e))?;
    Ok(out)
}

/// Up to `len` bytes of `file` from `offset` (fewer at its end).
fn read_span(file: &File, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, LogError> {
    let mut buf = vec![0u8; len as usize];
    let mut filled = 0;
    while filled < buf.len() {
        let n = file
            .read_at(&mut buf[filled..], offset + filled as u64)
            .map_err(|e| IoError::new("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Reads the line at `offset` of `path` (without its newline).
fn line_at(file: &File, path: &Path, offset: u64) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let n = file
            .read_at(&mut chunk, offset + out.len() as u64)
            .map_err(|e| IoError::new("cannot read", path, e))?;
        if n == 0 {
            return Ok(out);
        }
        if let Some(i) = memchr::memchr(b'\n', &chunk[..n]) {
            out.extend_from_slice(&chunk[..i]);
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() > super::writer::MAX_RECORD_BYTES {
            return Ok(out);
        }
    }
}

fn clear(dir: &Path) -> Result<(), IoError> {
    for path in fsx::list_dir(dir)? {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name != "lock" {
            std::fs::remove_file(&path).map_err(|e| IoError::new("cannot remove", &path, e))?;
        }
    }
    Ok(())
}

/// The segments with the seq each starts at: a sealed one's name says it;
/// the open one starts at its first record's seq, or (while empty) after
/// the last sealed one's last record. Only those two files are read.
fn locate(segments: Vec<Segment>) -> Result<Vec<Located>, LogError> {
    let mut out: Vec<Located> = Vec::with_capacity(segments.len());
    for seg in segments {
        let first = match seg.first_seq {
            Some(first) => first,
            None => match out.last() {
                None => 1,
                Some(last) => match first_seq(&seg.path) {
                    Some(first) => first,
                    None => last_seq(&last.path)?.map_or(last.first, |s| s + 1),
                },
            },
        };
        out.push(Located {
            first,
            path: seg.path,
            sealed: seg.sealed,
        });
    }
    Ok(out)
}

/// The seq of a file's first record, if it has a whole one.
fn first_seq(path: &Path) -> Option<u64> {
    let file = File::open(path).ok()?;
    let line = line_at(&file, path, 0).ok()?;
    seq_of(&line)
}

/// The seq of a file's last complete record (reading only its end).
pub(crate) fn last_seq(path: &Path) -> Result<Option<u64>, LogError> {
    let file = File::open(path).map_err(|e| IoError::new("cannot open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| IoError::new("cannot stat", path, e))?
        .len();
    let mut take = READ_CHUNK_BYTES as u64;
    loop {
        let from = len.saturating_sub(take);
        let mut buf = vec![0u8; (len - from) as usize];
        file.read_exact_at(&mut buf, from)
            .map_err(|e| IoError::new("cannot read", path, e))?;
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => return Ok(seq_of(&body[i + 1..])),
            None if from == 0 => return Ok(seq_of(body)),
            None if take > 2 * super::writer::MAX_RECORD_BYTES as u64 => return Ok(None),
            None => take *= 2,
        }
    }
}

fn seq_of(line: &[u8]) -> Option<u64> {
    check_line(std::str::from_utf8(line).ok()?)
        .ok()
        .map(|f| f.seq)
}

fn mismatch(path: &Path, seq: u64, reason: String) -> LogError {
    LogError::Tampered {
        path: path.to_path_buf(),
        line: 0,
        seq,
        reason: format!("read through the job index: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{AgentName, JobId};
    use crate::log::{read_log, Body, LogWriter, SegmentOptions};
    use serde_json::json;

    fn body(n: u32) -> Body {
        Body::Job {
            job: JobId::new(format!("j{}", n % 5)).unwrap(),
            at: n,
            agent: AgentName::new("advance").unwrap(),
            input: json!({"n": n}),
            plan: Digest::ZERO,
            parent: None,
            via: None,
            started_ms: None,
            depth: None,
            tree_jobs: None,
        }
    }

    /// A log of `n` records over five jobs, sealed every MIN_SEGMENT_BYTES.
    fn log(n: u32) -> (tempfile::TempDir, PathBuf, LogWriter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log/n1.jsonl");
        let (writer, _) = LogWriter::open(&path).unwrap();
        writer.set_segment_options(SegmentOptions {
            segment_bytes: segment::MIN_SEGMENT_BYTES,
            on_seal: None,
        });
        for i in 0..n {
            writer.append(&body(i)).unwrap();
        }
        (dir, path, writer)
    }

    /// The job's records as a full read of the log has them.
    fn by_scan(path: &Path, job: &str) -> Vec<u64> {
        read_log(path)
            .unwrap()
            .records
            .iter()
            .filter(|r| r.body.job_at().is_some_and(|(j, _)| j.as_str() == job))
            .map(|r| r.seq)
            .collect()
    }

    fn seqs(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn a_jobs_records_through_the_index_are_the_logs_across_segments_and_only_the_tail_is_scanned()
    {
        let (_dir, path, writer) = log(80);
        assert!(segment::has_sealed(&path));
        let (records, stats) = job_records(&path, "j2").unwrap();
        assert_eq!(seqs(&records), by_scan(&path, "j2"));
        assert_eq!(records.len(), 16);
        assert!(stats.rebuilt);
        assert_eq!(stats.scanned, 80);
        let (again, stats) = job_records(&path, "j3").unwrap();
        assert_eq!(seqs(&again), by_scan(&path, "j3"));
        // Only the job's own records were read from the log.
        assert_eq!(
            stats,
            LookupStats {
                rebuilt: false,
                scanned: 0,
                read: 16
            }
        );
        // More records, another seal or two: only they are scanned.
        for i in 80..120 {
            writer.append(&body(i)).unwrap();
        }
        let (tail, stats) = job_records(&path, "j2").unwrap();
        assert_eq!(seqs(&tail), by_scan(&path, "j2"));
        assert_eq!(
            stats,
            LookupStats {
                rebuilt: false,
                scanned: 40,
                read: 24
            }
        );
        assert!(job_records(&path, "nobody").unwrap().0.is_empty());
    }

    #[test]
    fn a_missing_stale_or_wrong_index_is_rebuilt_from_the_log() {
        let (_dir, path, _writer) = log(60);
        job_records(&path, "j1").unwrap();
        let idx = index_dir(&path);
        // Wrong: every entry of j1's bucket points one record further on.
        let (key, bucket) = key_of(Name::Job("j1"));
        let bucket_path = idx.join(format!("{bucket:02x}"));
        let bytes = std::fs::read(&bucket_path).unwrap();
        let shifted: Vec<u8> = bytes
            .chunks_exact(ENTRY_BYTES)
            .map(|b| Entry::parse(b).unwrap())
            .flat_map(|mut e| {
                if e.key == key {
                    e.seq += 1;
                }
                e.bytes()
            })
            .collect();
        std::fs::write(&bucket_path, shifted).unwrap();
        let (records, stats) = job_records(&path, "j1").unwrap();
        assert_eq!(seqs(&records), by_scan(&path, "j1"));
        assert!(stats.rebuilt, "a wrong entry was trusted");
        // Stale: the index covers a log that is no longer this one.
        let meta_path = idx.join("meta.json");
        let mut meta: Meta = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
        meta.hash = Digest::of_bytes(b"another log");
        std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
        let (records, stats) = job_records(&path, "j4").unwrap();
        assert_eq!(seqs(&records), by_scan(&path, "j4"));
        assert!(stats.rebuilt, "a stale index was trusted");
        // Missing.
        std::fs::remove_dir_all(&idx).unwrap();
        let (records, stats) = job_records(&path, "j0").unwrap();
        assert_eq!(seqs(&records), by_scan(&path, "j0"));
        assert!(stats.rebuilt);
    }

    #[test]
    fn a_torn_bucket_is_rebuilt_and_entries_past_the_count_are_ignored_then_cut() {
        let (_dir, path, writer) = log(60);
        job_records(&path, "j1").unwrap();
        let (_, bucket) = key_of(Name::Job("j1"));
        let bucket_path = index_dir(&path).join(format!("{bucket:02x}"));
        // Torn: the bucket lost its last entry, which meta.json counts.
        let len = std::fs::metadata(&bucket_path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&bucket_path)
            .unwrap()
            .set_len(len - ENTRY_BYTES as u64)
            .unwrap();
        let (records, stats) = job_records(&path, "j1").unwrap();
        assert_eq!(seqs(&records), by_scan(&path, "j1"));
        assert!(stats.rebuilt, "a torn bucket was trusted");
        // Torn inside: an entry never written reads as zeros.
        let mut bytes = std::fs::read(&bucket_path).unwrap();
        bytes[ENTRY_BYTES..2 * ENTRY_BYTES].fill(0);
        std::fs::write(&bucket_path, &bytes).unwrap();
        let (records, stats) = job_records(&path, "j1").unwrap();
        assert_eq!(seqs(&records), by_scan(&path, "j1"));
        assert!(stats.rebuilt, "a zeroed entry was trusted");
        // An update that crashed before its meta.json: an entry past the
        // count (pointing at a record of j1 the count does not cover).
        let (key, _) = key_of(Name::Job("j1"));
        let stray = Entry {
            key,
            seq: 3,
            segment: 1,
            offset: 0,
        };
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&bucket_path)
            .unwrap();
        file.write_all(&stray.bytes()).unwrap();
        drop(file);
        let (records, stats) = job_records(&path, "j1").unwrap();
        assert_eq!(seqs(&records), by_scan(&path, "j1"));
        assert!(!stats.rebuilt);
        for i in 60..70 {
            writer.append(&body(i)).unwrap();
        }
        let (records, stats) = job_records(&path, "j1").unwrap();
        assert_eq!(seqs(&records), by_scan(&path, "j1"));
        assert!(
            !stats.rebuilt,
            "the stray entry was not cut before appending"
        );
        let meta: Meta =
            serde_json::from_slice(&std::fs::read(index_dir(&path).join("meta.json")).unwrap())
                .unwrap();
        assert_eq!(
            std::fs::metadata(&bucket_path).unwrap().len(),
            meta.counts[bucket] * ENTRY_BYTES as u64
        );
    }

    #[test]
    fn a_plan_record_is_found_by_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log/n1.jsonl");
        let (writer, _) = LogWriter::open(&path).unwrap();
        let plan = |n: u8| Body::Plan {
            digest: Digest::of_bytes(&[n]),
            blob: Digest::of_bytes(&[n, n]),
            executor: "test".into(),
        };
        writer.append(&plan(1)).unwrap();
        for i in 0..10 {
            writer.append(&body(i)).unwrap();
        }
        writer.append(&plan(2)).unwrap();
        let mut index = Index::open(&path).unwrap();
        let found = index.plan(&Digest::of_bytes(&[2])).unwrap().unwrap();
        assert_eq!(found.seq, 12);
        assert_eq!(found.body, plan(2));
        assert_eq!(index.plan(&Digest::of_bytes(&[1])).unwrap().unwrap().seq, 1);
        assert!(index.plan(&Digest::of_bytes(&[3])).unwrap().is_none());
        assert_eq!(index.last_seq(), 12);
    }

    #[test]
    fn a_record_changed_in_the_log_after_indexing_is_an_error_naming_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log/n1.jsonl");
        let (writer, _) = LogWriter::open(&path).unwrap();
        for i in 0..20 {
            writer.append(&body(i)).unwrap();
        }
        drop(writer);
        job_records(&path, "j1").unwrap();
        // j1's record at seq 2: same length, another input.
        let text = std::fs::read_to_string(&path).unwrap();
        let line = text.lines().nth(1).unwrap();
        assert!(line.contains(r#""n":1"#), "{line}");
        let edited = text.replacen(line, &line.replacen(r#""n":1"#, r#""n":7"#, 1), 1);
        std::fs::write(&path, edited).unwrap();
        let err = job_records(&path, "j1").unwrap_err().to_string();
        assert!(err.contains("n1.jsonl"), "{err}");
    }
}
