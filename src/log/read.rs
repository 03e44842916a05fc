//! Reading a log file and checking its chain, without modifying anything.

use super::record::{check_line, parse_line, ChainFields, Record, RecordError};
use super::LogError;
use crate::canon::Digest;
use crate::fsx;
use std::path::{Path, PathBuf};

/// A log file read into memory.
#[derive(Debug)]
pub struct LogFile {
    pub path: PathBuf,
    pub records: Vec<Record>,
    /// Bytes after the last complete line: a write cut by a crash. A node
    /// truncates them when it opens the log.
    pub torn_tail: usize,
    /// Byte length of the valid prefix (up to and including the last newline).
    pub valid_len: u64,
}

impl LogFile {
    pub fn head(&self) -> (u64, Digest) {
        self.records
            .last()
            .map(|r| (r.seq, r.hash))
            .unwrap_or((0, Digest::ZERO))
    }
}

/// Reads and verifies a whole log file: every record's hash, `seq` counting
/// from 1 without gaps, and every `prev` naming the record before it. A torn
/// tail is reported, not an error.
pub fn read_log(path: &Path) -> Result<LogFile, LogError> {
    let bytes = fsx::read(path)?;
    parse_log(path, &bytes)
}

pub(crate) fn parse_log(path: &Path, bytes: &[u8]) -> Result<LogFile, LogError> {
    let (chunks, torn_tail, valid_len) = scan(path, bytes, parse_line, record_chain)?;
    Ok(LogFile {
        path: path.to_path_buf(),
        records: concat(chunks),
        torn_tail,
        valid_len,
    })
}

/// [`read_log`]'s records as parsed, in file order, in a few parts (one
/// per thread that parsed them): for a reader that can index parts, such
/// as replay, which this spares copying a large log's records into one
/// list (at 100,000 decisions, 70 MB less at replay's peak).
pub fn read_log_parts(path: &Path) -> Result<Vec<Vec<Record>>, LogError> {
    let bytes = fsx::read(path)?;
    Ok(scan(path, &bytes, parse_line, record_chain)?.0)
}

fn record_chain(r: &Record) -> (u64, Digest, Digest) {
    (r.seq, r.prev, r.hash)
}

/// The parts as one list: the first has room for all.
fn concat<T>(parts: Vec<Vec<T>>) -> Vec<T> {
    let mut parts = parts.into_iter();
    let mut all = parts.next().unwrap_or_default();
    for mut part in parts {
        all.append(&mut part);
    }
    all
}

/// Lines per parallel chunk when reading a log.
const CHUNK_LINES: usize = 4096;

/// Splits the complete lines, parses them in parallel, then checks the chain
/// in order: `seq` from 1 without gaps, each `prev` the hash before it.
/// Returns the parsed parts in file order, the torn tail's length and the
/// length up to it.
fn scan<T: Send>(
    path: &Path,
    bytes: &[u8],
    parse: fn(&str) -> Result<T, RecordError>,
    chain: fn(&T) -> (u64, Digest, Digest),
) -> Result<(Vec<Vec<T>>, usize, u64), LogError> {
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    // Every line, empty ones too: the writer never writes one, so an empty
    // line is an edit, and counting it keeps line numbers the file's own.
    let lines: Vec<&[u8]> = match complete {
        0 => Vec::new(),
        _ => bytes[..complete - 1].split(|&b| b == b'\n').collect(),
    };
    // Each chunk: the records parsed up to its first bad line, and why that
    // line is bad. The first chunk has room for every record, so when they
    // are joined into one list the others are appended to it rather than
    // everything copied once more.
    let parse_chunk = |part: &[&[u8]], capacity: usize| -> (Vec<T>, Option<String>) {
        let mut out = Vec::with_capacity(capacity);
        for raw in part {
            if raw.is_empty() {
                return (
                    out,
                    Some("an empty line, which the writer never writes".into()),
                );
            }
            let parsed = std::str::from_utf8(raw)
                .map_err(|_| "not UTF-8".to_string())
                .and_then(|text| parse(text).map_err(|e| e.to_string()));
            match parsed {
                Ok(t) => out.push(t),
                Err(reason) => return (out, Some(reason)),
            }
        }
        (out, None)
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunks: Vec<(Vec<T>, Option<String>)> = if lines.len() < 2 * CHUNK_LINES || threads == 1 {
        vec![parse_chunk(&lines, lines.len())]
    } else {
        let chunk = lines.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = lines
                .chunks(chunk)
                .enumerate()
                .map(|(c, part)| {
                    let capacity = if c == 0 { lines.len() } else { part.len() };
                    s.spawn(move || parse_chunk(part, capacity))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("parsing a line does not panic"))
                .collect()
        })
    };
    // The chain, in file order: the first bad line (a parse or a chain
    // error) is the one reported.
    let mut parts = Vec::with_capacity(chunks.len());
    let mut prev = Digest::ZERO;
    let mut expected_seq = 1;
    for (items, error) in chunks {
        let tampered = |seq: u64, reason: String| LogError::Tampered {
            path: path.to_path_buf(),
            line: seq,
            seq,
            reason,
        };
        for item in &items {
            let (seq, record_prev, hash) = chain(item);
            if seq != expected_seq {
                return Err(tampered(
                    expected_seq,
                    format!("seq is {seq}, expected {expected_seq}"),
                ));
            }
            if record_prev != prev {
                return Err(tampered(
                    expected_seq,
                    "prev does not name the hash of the record before it".into(),
                ));
            }
            prev = hash;
            expected_seq += 1;
        }
        if let Some(reason) = error {
            return Err(tampered(expected_seq, reason));
        }
        parts.push(items);
    }
    Ok((parts, bytes.len() - complete, complete as u64))
}

/// Checks a log's chain without parsing record bodies (for `jaros verify`).
fn read_chain(path: &Path) -> Result<(Vec<ChainFields>, Option<TornTail>), LogError> {
    let bytes = fsx::read(path)?;
    let (parts, torn, valid_len) = scan(path, &bytes, check_line, |f: &ChainFields| {
        (f.seq, f.prev, f.hash)
    })?;
    let records = concat(parts);
    let next = records.len() as u64 + 1;
    let torn = (torn > 0).then(|| TornTail::of(&bytes, valid_len, next, next));
    Ok((records, torn))
}

/// Characters of a torn tail shown to a reader, at most: enough to
/// recognise the record (its first members), not a whole payload.
const TORN_TAIL_SHOWN_CHARS: usize = 80;

/// A torn tail as `jaros verify` reports it: the record a crash cut short,
/// which the log's node cuts (truncating the file to `offset`) when it next
/// opens the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TornTail {
    /// Its line number in the file (the line after the last complete one).
    pub line: u64,
    /// The byte offset it starts at, which is the length the file is cut to.
    pub offset: u64,
    pub bytes: usize,
    /// The seq it would have had: the one after the head's.
    pub seq: u64,
    /// Its kind and job, when the cut left them whole.
    pub kind: Option<String>,
    pub job: Option<String>,
    /// Its first characters (invalid UTF-8 replaced).
    pub starts: String,
}

impl TornTail {
    fn of(file: &[u8], offset: u64, line: u64, seq: u64) -> TornTail {
        // `offset` is the length of the file's valid prefix, within `file`.
        let tail = &file[offset as usize..];
        let member = |name: &[u8]| {
            super::record::members_before_a_cut(tail)
                .into_iter()
                .find(|(key, _)| *key == name)
                .and_then(|(_, value)| serde_json::from_slice::<String>(value).ok())
        };
        // Four bytes per character at most: enough bytes for the characters shown.
        let head = &tail[..tail.len().min(4 * TORN_TAIL_SHOWN_CHARS)];
        TornTail {
            line,
            offset,
            bytes: tail.len(),
            seq,
            kind: member(b"kind"),
            job: member(b"job"),
            starts: String::from_utf8_lossy(head)
                .chars()
                .take(TORN_TAIL_SHOWN_CHARS)
                .collect(),
        }
    }
}

/// The verdict on one chain, for `jaros verify`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainReport {
    pub path: PathBuf,
    pub records: u64,
    pub head_seq: u64,
    pub head_hash: Digest,
    pub torn_tail_bytes: usize,
    /// The torn tail, if there is one: where it is and how it starts.
    pub torn_tail: Option<TornTail>,
    /// `None` when intact; otherwise what is wrong and where.
    pub error: Option<String>,
}

/// Verifies one chain, optionally against an anchor `(seq, hash)` taken
/// earlier: the record at `seq` must still exist and have that hash, which
/// catches truncation and rewriting of the history before it.
pub fn verify_chain(path: &Path, anchor: Option<(u64, Digest)>) -> ChainReport {
    match read_chain(path) {
        Ok((records, torn_tail)) => {
            let (head_seq, head_hash) = records
                .last()
                .map_or((0, Digest::ZERO), |r| (r.seq, r.hash));
            let error =
                anchor.and_then(
                    |(seq, hash)| match records.get((seq as usize).wrapping_sub(1)) {
                        None => Some(format!(
                        "anchor seq {seq} is beyond the head ({head_seq}): the log was truncated"
                    )),
                        Some(r) if r.hash != hash => Some(format!(
                            "record {seq} has hash {}, the anchor says {}: history was rewritten",
                            r.hash.short(),
                            hash.short()
                        )),
                        Some(_) => None,
                    },
                );
            ChainReport {
                path: path.to_path_buf(),
                records: records.len() as u64,
                head_seq,
                head_hash,
                torn_tail_bytes: torn_tail.as_ref().map_or(0, |t| t.bytes),
                torn_tail,
                error,
            }
        }
        Err(e) => ChainReport {
            path: path.to_path_buf(),
            records: 0,
            head_seq: 0,
            head_hash: Digest::ZERO,
            torn_tail_bytes: 0,
            torn_tail: None,
            error: Some(e.to_string()),
        },
    }
}
