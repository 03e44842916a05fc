//! The per-node job index: where each job's records are in its log, so a
//! reader of one job reads only that job's records instead of the whole log.
//!
//! `index/log.<node>/` in the data dir holds 256 bucket files (a job goes
//! to the bucket its id's sha256 starts with) of fixed-size entries (the
//! job's key, a record's seq, the first seq of the segment it is in, and
//! its byte offset there), and `meta.json`: how far into the log the index
//! covers (the seq, hash and position of the last record it covers).
//!
//! The index is a cache, never trusted over the log: before a lookup, the
//! record it says it covers up to must be at that position with that hash
//! (else it is rebuilt from the log), the log's tail past it is scanned and
//! appended, and every record read through it is hash-checked and must be
//! the job's, with the seq the index says; on a mismatch the index is
//! rebuilt once, and a second mismatch is an error naming the segment.

use super::read::ChainStart;
use super::record::{check_line, members_before_a_cut, parse_line, Record};
use super::segment::{self, Segment};
use super::LogError;
use crate::canon::Digest;
use crate::fsx::{self, IoError};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes of one entry: job key, seq, segment's first seq, offset (u64 LE each).
const ENTRY_BYTES: usize = 32;

/// Buckets (files) the entries are spread over by job: a lookup reads one.
const BUCKETS: usize = 256;

/// Bytes read at a time when reading one record at an offset.
const READ_CHUNK_BYTES: usize = 4096;

/// How far the index covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Meta {
    /// The last record covered (0: none).
    seq: u64,
    hash: Digest,
    /// Where it is: its segment's first seq and its offset there.
    segment: u64,
    offset: u64,
    /// Where the next record starts (in the same segment, or the next's 0).
    end: u64,
}

const EMPTY: Meta = Meta {
    seq: 0,
    hash: Digest::ZERO,
    segment: 1,
    offset: 0,
    end: 0,
};

/// One entry: where one record of a job is.
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
        b
    }
    fn parse(b: &[u8]) -> Entry {
        let u = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Entry {
            key: u(0),
            seq: u(8),
            segment: u(16),
            offset: u(24),
        }
    }
}

/// A job id's key and bucket.
fn key_of(job: &str) -> (u64, usize) {
    let d = Digest::of_bytes(job.as_bytes());
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

/// What a lookup did, for tests and benches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// The index was missing, stale or wrong and was built from the log.
    pub rebuilt: bool,
    /// Records of the log's tail scanned into the index.
    pub scanned: u64,
}

/// Every record of `job` in the log whose open segment is `open`, in seq
/// order, read through the index (brought up to date first).
pub fn job_records(open: &Path, job: &str) -> Result<(Vec<Record>, LookupStats), LogError> {
    let dir = index_dir(open);
    fsx::create_dir_all(&dir)?;
    // One updater at a time; readers of other processes wait for it.
    let lock_path = dir.join("lock");
    let lock = fsx::open_append(&lock_path)?;
    lock.lock()
        .map_err(|e| IoError::new("cannot lock", &lock_path, e))?;
    let mut stats = LookupStats::default();
    for attempt in 0..2 {
        let segments = segment::list(open)?;
        let meta = match read_meta(&dir) {
            Some(meta) if attempt == 0 && covers(&segments, &meta) => meta,
            _ => {
                clear(&dir)?;
                stats.rebuilt = true;
                EMPTY
            }
        };
        stats.scanned += update(&dir, &segments, meta)?;
        match read_job(&dir, &segments, job) {
            Ok(records) => return Ok((records, stats)),
            // Rebuilt once from the log, the index is tried again.
            Err(_) if attempt == 0 => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns on its second attempt")
}

fn read_meta(dir: &Path) -> Option<Meta> {
    let text = fsx::read_to_string(&dir.join("meta.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The path of the segment that starts at seq `first`.
fn segment_path(segments: &[Segment], first: u64) -> Option<PathBuf> {
    located(segments)
        .ok()?
        .into_iter()
        .find(|(f, _)| *f == first)
        .map(|(_, s)| s.path.clone())
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
        if let Some(i) = chunk[..n].iter().position(|&b| b == b'\n') {
            out.extend_from_slice(&chunk[..i]);
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() > super::writer::MAX_RECORD_BYTES {
            return Ok(out);
        }
    }
}

/// Whether the record the index says it covers up to is in the log where
/// it says, with its hash.
fn covers(segments: &[Segment], meta: &Meta) -> bool {
    if meta.seq == 0 {
        return true;
    }
    let Some(path) = segment_path(segments, meta.segment) else {
        return false;
    };
    let Ok(file) = File::open(&path) else {
        return false;
    };
    line_at(&file, &path, meta.offset)
        .ok()
        .and_then(|line| check_line(std::str::from_utf8(&line).ok()?).ok())
        .is_some_and(|f| f.seq == meta.seq && f.hash == meta.hash)
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

/// The segments with the seq each starts at: a sealed one's name says
/// it; the open one starts after the last sealed one's last record.
fn located(segments: &[Segment]) -> Result<Vec<(u64, &Segment)>, LogError> {
    let mut out = Vec::with_capacity(segments.len());
    let mut next = 1;
    for seg in segments {
        match seg.first_seq {
            Some(first) => {
                out.push((first, seg));
                next = last_seq(&seg.path)?.map_or(first, |s| s + 1);
            }
            None => out.push((next, seg)),
        }
    }
    Ok(out)
}

/// The seq of a file's last complete record (reading only its end).
fn last_seq(path: &Path) -> Result<Option<u64>, LogError> {
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

/// Scans the log past `meta` into the buckets and writes the new meta.
/// Returns the records scanned.
fn update(dir: &Path, segments: &[Segment], meta: Meta) -> Result<u64, LogError> {
    let mut start = ChainStart {
        seq: meta.seq + 1,
        prev: meta.hash,
    };
    let mut m = meta;
    let mut pending: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let mut scanned = 0;
    for (first, seg) in located(segments)? {
        let from = match meta.seq {
            0 => 0,
            _ if first < meta.segment => continue,
            _ if first == meta.segment => meta.end,
            _ => 0,
        };
        let bytes = match fsx::read(&seg.path) {
            Ok(b) => b,
            Err(e) if !seg.sealed && e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut offset = (from as usize).min(bytes.len());
        while let Some(len) = bytes[offset..].iter().position(|&b| b == b'\n') {
            let line = &bytes[offset..offset + len];
            let bad = |reason: String| LogError::Tampered {
                path: seg.path.clone(),
                line: start.seq - first + 1,
                seq: start.seq,
                reason,
            };
            let text = std::str::from_utf8(line).map_err(|_| bad("not UTF-8".into()))?;
            let f = check_line(text).map_err(|e| bad(e.to_string()))?;
            if f.seq != start.seq || f.prev != start.prev {
                return Err(bad(format!(
                    "seq {} does not follow the record before it (seq {})",
                    f.seq,
                    start.seq - 1
                )));
            }
            let job = members_before_a_cut(line)
                .into_iter()
                .find(|(k, _)| *k == b"job")
                .and_then(|(_, v)| serde_json::from_slice::<String>(v).ok());
            if let Some(job) = job {
                let (key, bucket) = key_of(&job);
                pending.entry(bucket).or_default().extend_from_slice(
                    &Entry {
                        key,
                        seq: f.seq,
                        segment: first,
                        offset: offset as u64,
                    }
                    .bytes(),
                );
            }
            m = Meta {
                seq: f.seq,
                hash: f.hash,
                segment: first,
                offset: offset as u64,
                end: (offset + len + 1) as u64,
            };
            start = ChainStart {
                seq: f.seq + 1,
                prev: f.hash,
            };
            offset += len + 1;
            scanned += 1;
        }
    }
    if scanned == 0 && meta != EMPTY {
        return Ok(0);
    }
    for (bucket, bytes) in pending {
        let path = dir.join(format!("{bucket:02x}"));
        let mut file = fsx::open_append(&path)?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| IoError::new("cannot write", &path, e))?;
    }
    let text = serde_json::to_vec(&m).unwrap_or_default();
    fsx::write_durable(&dir.join("meta.json"), &text)?;
    Ok(scanned)
}

/// The job's records through its bucket, each checked against the log.
fn read_job(dir: &Path, segments: &[Segment], job: &str) -> Result<Vec<Record>, LogError> {
    let (key, bucket) = key_of(job);
    let bytes = match std::fs::read(dir.join(format!("{bucket:02x}"))) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(IoError::new("cannot read", &dir.join(format!("{bucket:02x}")), e).into())
        }
    };
    let mut entries: Vec<Entry> = bytes
        .chunks_exact(ENTRY_BYTES)
        .map(Entry::parse)
        .filter(|e| e.key == key)
        .collect();
    entries.sort_by_key(|e| e.seq);
    entries.dedup_by_key(|e| e.seq);
    let mut files: BTreeMap<u64, (PathBuf, File)> = BTreeMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        if let std::collections::btree_map::Entry::Vacant(slot) = files.entry(e.segment) {
            let path = segment_path(segments, e.segment)
                .ok_or_else(|| mismatch(dir, e.seq, "its segment is gone".into()))?;
            let file = File::open(&path).map_err(|err| IoError::new("cannot open", &path, err))?;
            slot.insert((path, file));
        }
        let (path, file) = &files[&e.segment];
        let line = line_at(file, path, e.offset)?;
        let text =
            std::str::from_utf8(&line).map_err(|_| mismatch(path, e.seq, "not UTF-8".into()))?;
        let record = parse_line(text).map_err(|err| mismatch(path, e.seq, err.to_string()))?;
        if record.seq != e.seq {
            return Err(mismatch(
                path,
                e.seq,
                format!(
                    "the index says seq {} is here, the log has seq {}",
                    e.seq, record.seq
                ),
            ));
        }
        match record.body.job_at() {
            Some((j, _)) if j.as_str() == job => {}
            // Two jobs whose keys collide: not this job's record.
            Some(_) => continue,
            None => {
                return Err(mismatch(
                    path,
                    e.seq,
                    "the index names a record of no job".into(),
                ))
            }
        }
        out.push(record);
    }
    Ok(out)
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
        assert_eq!(stats, LookupStats::default());
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
                scanned: 40
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
        let (key, bucket) = key_of("j1");
        let bucket_path = idx.join(format!("{bucket:02x}"));
        let bytes = std::fs::read(&bucket_path).unwrap();
        let shifted: Vec<u8> = bytes
            .chunks_exact(ENTRY_BYTES)
            .map(Entry::parse)
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
}
