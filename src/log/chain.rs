//! Verifying one chain as `jaros verify` does: streamed across its
//! segments ([`super::stream`]), holding only the head and the anchor's
//! record, with the torn tail described.

use super::record::{check_line, ChainFields};
use super::stream::{stream_log, Progress};
use crate::canon::Digest;
use std::path::{Path, PathBuf};

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
    /// `tail`: the bytes after the open segment's last newline, which
    /// starts at `offset`.
    fn of(tail: &[u8], offset: u64, line: u64, seq: u64) -> TornTail {
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
    verify_chain_with(path, anchor, None)
}

/// [`verify_chain`], reading the log a block at a time (holding only the
/// chain's head and the anchor's record, whatever the log's size) and
/// counting what it read into `progress`.
pub fn verify_chain_with(
    path: &Path,
    anchor: Option<(u64, Digest)>,
    progress: Option<&Progress>,
) -> ChainReport {
    let mut anchored: Option<Digest> = None;
    let streamed = stream_log(
        path,
        check_line,
        |f: &ChainFields| (f.seq, f.prev, f.hash),
        None,
        progress,
        |batch| {
            if let Some((seq, _)) = anchor {
                let first = batch.first().map_or(u64::MAX, |f| f.seq);
                if seq >= first {
                    if let Some(f) = batch.get((seq - first) as usize) {
                        anchored = Some(f.hash);
                    }
                }
            }
        },
    );
    match streamed {
        Ok(s) => {
            let (head_seq, head_hash) = s.head;
            let torn_tail = (!s.torn.is_empty())
                .then(|| TornTail::of(&s.torn, s.valid_len, s.open_lines + 1, head_seq + 1));
            let error = anchor.and_then(|(seq, hash)| match anchored {
                _ if seq == 0 || seq > head_seq => Some(format!(
                    "anchor seq {seq} is beyond the head ({head_seq}): the log was truncated"
                )),
                Some(h) if h != hash => Some(format!(
                    "record {seq} has hash {}, the anchor says {}: history was rewritten",
                    h.short(),
                    hash.short()
                )),
                _ => None,
            });
            ChainReport {
                path: path.to_path_buf(),
                records: s.records,
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
