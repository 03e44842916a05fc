//! Reading a log file and checking its chain, without modifying anything.

use super::record::{parse_line, Record};
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
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    let mut records = Vec::new();
    let mut prev = Digest::ZERO;
    let mut line_no = 0u64;
    for raw in bytes[..complete].split(|&b| b == b'\n') {
        if raw.is_empty() {
            continue; // the split after the final newline
        }
        line_no += 1;
        let expected_seq = records.len() as u64 + 1;
        let tampered = |reason: String| LogError::Tampered {
            path: path.to_path_buf(),
            line: line_no,
            seq: expected_seq,
            reason,
        };
        let text = std::str::from_utf8(raw).map_err(|_| tampered("not UTF-8".into()))?;
        let record = parse_line(text).map_err(|e| tampered(e.to_string()))?;
        if record.seq != expected_seq {
            return Err(tampered(format!("seq is {}, expected {expected_seq}", record.seq)));
        }
        if record.prev != prev {
            return Err(tampered("prev does not name the hash of the record before it".into()));
        }
        prev = record.hash;
        records.push(record);
    }
    Ok(LogFile {
        path: path.to_path_buf(),
        records,
        torn_tail: bytes.len() - complete,
        valid_len: complete as u64,
    })
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
    match read_log(path) {
        Ok(log) => {
            let (head_seq, head_hash) = log.head();
            let error = anchor.and_then(|(seq, hash)| {
                match log.records.get((seq as usize).wrapping_sub(1)) {
                    None => Some(format!(
                        "anchor seq {seq} is beyond the head ({head_seq}): the log was truncated"
                    )),
                    Some(r) if r.hash != hash => Some(format!(
                        "record {seq} has hash {}, the anchor says {}: history was rewritten",
                        r.hash.short(),
                        hash.short()
                    )),
                    Some(_) => None,
                }
            });
            ChainReport {
                path: path.to_path_buf(),
                records: log.records.len() as u64,
                head_seq,
                head_hash,
                torn_tail_bytes: log.torn_tail,
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
