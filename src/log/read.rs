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
    let (records, torn_tail, valid_len) = scan(path, bytes, parse_line, |r: &Record| {
        (r.seq, r.prev, r.hash)
    })?;
    Ok(LogFile {
        path: path.to_path_buf(),
        records,
        torn_tail,
        valid_len,
    })
}

/// Lines per parallel chunk when reading a log.
const CHUNK_LINES: usize = 4096;

/// Splits the complete lines, parses them in parallel, then checks the chain
/// in order: `seq` from 1 without gaps, each `prev` the hash before it.
fn scan<T: Send>(
    path: &Path,
    bytes: &[u8],
    parse: fn(&str) -> Result<T, RecordError>,
    chain: fn(&T) -> (u64, Digest, Digest),
) -> Result<(Vec<T>, usize, u64), LogError> {
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    let lines: Vec<&[u8]> = bytes[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let parse_one = |(i, raw): (usize, &&[u8])| -> Result<T, (usize, String)> {
        let text = std::str::from_utf8(raw).map_err(|_| (i, "not UTF-8".to_string()))?;
        parse(text).map_err(|e| (i, e.to_string()))
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let parsed: Vec<Result<T, (usize, String)>> = if lines.len() < 2 * CHUNK_LINES || threads == 1 {
        lines.iter().enumerate().map(parse_one).collect()
    } else {
        let chunk = lines.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = lines
                .chunks(chunk)
                .enumerate()
                .map(|(c, part)| {
                    s.spawn(move || {
                        part.iter()
                            .enumerate()
                            .map(|(i, l)| parse_one((c * chunk + i, l)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("parsing a line does not panic"))
                .collect()
        })
    };
    let mut records = Vec::with_capacity(parsed.len());
    let mut prev = Digest::ZERO;
    for (i, result) in parsed.into_iter().enumerate() {
        let expected_seq = i as u64 + 1;
        let tampered = |reason: String| LogError::Tampered {
            path: path.to_path_buf(),
            line: expected_seq,
            seq: expected_seq,
            reason,
        };
        let record = result.map_err(|(_, reason)| tampered(reason))?;
        let (seq, record_prev, hash) = chain(&record);
        if seq != expected_seq {
            return Err(tampered(format!("seq is {seq}, expected {expected_seq}")));
        }
        if record_prev != prev {
            return Err(tampered(
                "prev does not name the hash of the record before it".into(),
            ));
        }
        prev = hash;
        records.push(record);
    }
    Ok((records, bytes.len() - complete, complete as u64))
}

/// Checks a log's chain without parsing record bodies (for `jaros verify`).
fn read_chain(path: &Path) -> Result<(Vec<ChainFields>, usize), LogError> {
    let bytes = fsx::read(path)?;
    let (fields, torn, _) = scan(path, &bytes, check_line, |f: &ChainFields| {
        (f.seq, f.prev, f.hash)
    })?;
    Ok((fields, torn))
}

/// The verdict on one chain, for `jaros verify`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainReport {
    pub path: PathBuf,
    pub records: u64,
    pub head_seq: u64,
    pub head_hash: Digest,
    pub torn_tail_bytes: usize,
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
                torn_tail_bytes: torn_tail,
                error,
            }
        }
        Err(e) => ChainReport {
            path: path.to_path_buf(),
            records: 0,
            head_seq: 0,
            head_hash: Digest::ZERO,
            torn_tail_bytes: 0,
            error: Some(e.to_string()),
        },
    }
}
