//! Reading a log as a stream: every segment in chain order (sealed ones,
//! then the open one), a block of bytes at a time, each block's lines parsed
//! in parallel and their chain checked against the block before, the parsed
//! records handed to the caller and dropped. Memory stays at a block's worth
//! whatever the log's size (`jaros verify`, `jaros replay`).
//!
//! The checks and the errors are [`super::read::scan`]'s, record for record:
//! a log read here fails where [`super::read::read_log`] fails, naming the
//! same segment, line and seq.

use super::read::{scan, ChainStart};
use super::record::RecordError;
use super::segment::{self, Segment};
use super::LogError;
use crate::canon::Digest;
use crate::fsx::IoError;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes read from a segment at a time: enough lines (about 16,000 of the
/// usual few hundred bytes) to parse them on every core, little enough that
/// a block and its parsed records stay a few tens of MB.
const BLOCK_BYTES: usize = 4 * 1024 * 1024;

/// Times a reader starts over when the writer sealed a segment while it
/// listed the segments and opened the open one.
const MAX_ROTATION_RETRIES: u32 = 3;

/// How far a long read has come, for a progress line: counters the reader
/// adds to as it goes, which another thread may read at any time.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of log read so far (every pass over a log counts).
    pub bytes: AtomicU64,
    /// Records read so far.
    pub records: AtomicU64,
    /// Bytes the whole job will read, when known (0: unknown).
    pub total_bytes: AtomicU64,
}

impl Progress {
    fn add(&self, bytes: u64, records: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
    }

    /// Adds `bytes` to the total to read.
    pub fn expect(&self, bytes: u64) {
        self.total_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The bytes of every segment of the log whose open segment is `open`: what
/// one pass over it reads.
pub fn log_bytes(open: &Path) -> u64 {
    segment::list(open)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| std::fs::metadata(&s.path).ok())
        .map(|m| m.len())
        .sum()
}

/// What a streamed log held, beside the records handed out.
#[derive(Debug, Clone)]
pub struct Streamed {
    /// Records handed out.
    pub records: u64,
    /// The last record handed out: its seq and hash ((0, zero) for none).
    pub head: (u64, Digest),
    /// The open segment's bytes after its last newline (a torn tail; empty
    /// when the read stopped early).
    pub torn: Vec<u8>,
    /// Byte length of the open segment's valid prefix.
    pub valid_len: u64,
    /// Complete lines in the open segment.
    pub open_lines: u64,
}

/// Streams the log whose open segment is `open`: checks its chain across
/// every segment and hands each run of parsed records, in file order, to
/// `visit`. Stops after the record with seq `stop_after`, if given (what
/// follows it is neither read nor checked).
pub fn stream_log<T: Send>(
    open: &Path,
    parse: fn(&str) -> Result<T, RecordError>,
    chain: fn(&T) -> (u64, Digest, Digest),
    stop_after: Option<u64>,
    progress: Option<&Progress>,
    visit: impl FnMut(Vec<T>),
) -> Result<Streamed, LogError> {
    stream_in_blocks(open, parse, chain, stop_after, progress, BLOCK_BYTES, visit)
}

/// [`stream_log`], reading `block_bytes` at a time.
fn stream_in_blocks<T: Send>(
    open: &Path,
    parse: fn(&str) -> Result<T, RecordError>,
    chain: fn(&T) -> (u64, Digest, Digest),
    stop_after: Option<u64>,
    progress: Option<&Progress>,
    block_bytes: usize,
    mut visit: impl FnMut(Vec<T>),
) -> Result<Streamed, LogError> {
    let (segments, open_file) = list_and_open(open)?;
    let any_sealed = segments.iter().any(|s| s.sealed);
    let mut out = Streamed {
        records: 0,
        head: (0, Digest::ZERO),
        torn: Vec::new(),
        valid_len: 0,
        open_lines: 0,
    };
    let mut start = ChainStart::GENESIS;
    let mut open_file = Some(open_file);
    for seg in &segments {
        if stop_after.is_some_and(|s| start.seq > s) {
            break;
        }
        let file = if seg.sealed {
            match File::open(&seg.path) {
                Ok(f) => Some(f),
                Err(e) if seg.stub.is_some() => {
                    return Err(LogError::Tampered {
                        path: seg.path.clone(),
                        line: 0,
                        seq: start.seq,
                        reason: format!(
                        "the archived segment that {} names cannot be read ({e}); restore it there",
                        seg.stub.as_deref().unwrap_or(Path::new("?")).display(),
                    ),
                    })
                }
                Err(e) => return Err(IoError::new("cannot read", &seg.path, e).into()),
            }
        } else {
            open_file.take().flatten()
        };
        let Some(file) = file else {
            // A log with sealed segments has no open file between a seal
            // and the next open: an empty open segment.
            if !any_sealed {
                return Err(IoError::new(
                    "cannot read",
                    &seg.path,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                )
                .into());
            }
            continue;
        };
        if let Some(first) = seg.first_seq {
            if first != start.seq {
                return Err(LogError::Tampered {
                    path: seg.path.clone(),
                    line: 1,
                    seq: start.seq,
                    reason: format!(
                        "the sealed segment's name says it starts at seq {first}, but the chain is at seq {}: a segment is missing, renamed or added",
                        start.seq
                    ),
                });
            }
        }
        let reader = Reader {
            parse,
            chain,
            stop_after,
            progress,
            block_bytes,
        };
        let read = reader.segment(seg, file, start, |batch| {
            if let Some(last) = batch.last() {
                let (seq, _, hash) = chain(last);
                out.head = (seq, hash);
                out.records += batch.len() as u64;
            }
            visit(batch)
        })?;
        if seg.sealed && !read.torn.is_empty() {
            return Err(LogError::Tampered {
                path: seg.path.clone(),
                line: read.lines + 1,
                seq: start.seq + read.lines,
                reason: "a sealed segment ends in a partial line, which sealing never leaves"
                    .into(),
            });
        }
        if !seg.sealed {
            out.torn = read.torn;
            out.valid_len = read.valid_len;
            out.open_lines = read.lines;
        }
        start = read.next;
    }
    Ok(out)
}

/// The segments of the log and a handle on its open segment (`None` when
/// it does not exist), both from one moment: listed again after the open
/// segment is opened, and started over if a seal moved it meanwhile.
fn list_and_open(open: &Path) -> Result<(Vec<Segment>, Option<File>), LogError> {
    let mut attempt = 0;
    loop {
        let before = segment::list(open)?;
        let file = match File::open(open) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(IoError::new("cannot read", open, e).into()),
        };
        let after = segment::list(open)?;
        if before == after || attempt >= MAX_ROTATION_RETRIES {
            return Ok((after, file));
        }
        attempt += 1;
    }
}

/// One segment read.
struct SegmentRead {
    /// Complete lines read (up to the stop).
    lines: u64,
    torn: Vec<u8>,
    valid_len: u64,
    /// Where the chain stands after it.
    next: ChainStart,
}

/// How a log is read: its records' parser and chain fields, where to stop,
/// what to count into, how much to read at a time.
struct Reader<'p, T> {
    parse: fn(&str) -> Result<T, RecordError>,
    chain: fn(&T) -> (u64, Digest, Digest),
    stop_after: Option<u64>,
    progress: Option<&'p Progress>,
    block_bytes: usize,
}

impl<T: Send> Reader<'_, T> {
    /// Reads one segment a block at a time from `file`, checking the chain
    /// from `start`.
    fn segment(
        &self,
        seg: &Segment,
        mut file: File,
        mut start: ChainStart,
        mut visit: impl FnMut(Vec<T>),
    ) -> Result<SegmentRead, LogError> {
        let Reader {
            parse,
            chain,
            stop_after,
            progress,
            block_bytes,
        } = *self;
        let path = &seg.path;
        let segment_first = start.seq;
        let mut buf: Vec<u8> = Vec::with_capacity(block_bytes);
        let mut target = block_bytes;
        let mut offset: u64 = 0;
        let mut lines: u64 = 0;
        let mut eof = false;
        loop {
            while !eof && buf.len() < target {
                let want = (target - buf.len()) as u64;
                let n = (&mut file)
                    .take(want)
                    .read_to_end(&mut buf)
                    .map_err(|e| LogError::from(IoError::new("cannot read", path, e)))?;
                eof = n == 0;
            }
            let Some(complete) = buf.iter().rposition(|&b| b == b'\n').map(|i| i + 1) else {
                if eof {
                    break;
                }
                // A line longer than a block: read on.
                target = buf.len() + block_bytes;
                continue;
            };
            target = block_bytes;
            let block_first = start.seq;
            let (parts, _, _) =
                scan(path, &buf[..complete], parse, chain, start).map_err(|e| match e {
                    // The block's line numbers count from its start.
                    LogError::Tampered {
                        path,
                        line,
                        seq,
                        reason,
                    } => LogError::Tampered {
                        path,
                        line: line + (block_first - segment_first),
                        seq,
                        reason,
                    },
                    other => other,
                })?;
            let mut stop = false;
            for mut part in parts {
                if let Some(s) = stop_after {
                    if part.last().is_some_and(|t| chain(t).0 >= s) {
                        part.truncate(part.partition_point(|t| chain(t).0 <= s));
                        stop = true;
                    }
                }
                if let Some((seq, _, hash)) = part.last().map(chain) {
                    start = ChainStart {
                        seq: seq + 1,
                        prev: hash,
                    };
                }
                lines += part.len() as u64;
                if let Some(p) = progress {
                    p.add(0, part.len() as u64);
                }
                if !part.is_empty() {
                    visit(part);
                }
                if stop {
                    break;
                }
            }
            if let Some(p) = progress {
                p.add(complete as u64, 0);
            }
            offset += complete as u64;
            if stop {
                // What follows is not read: no torn tail to speak of.
                return Ok(SegmentRead {
                    lines,
                    torn: Vec::new(),
                    valid_len: offset,
                    next: start,
                });
            }
            buf.drain(..complete);
            if eof {
                break;
            }
        }
        Ok(SegmentRead {
            lines,
            valid_len: offset,
            torn: buf,
            next: start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{AgentName, JobId};
    use crate::log::record::{parse_line, Record};
    use crate::log::{read_log, Body, LogWriter, SegmentOptions};
    use serde_json::json;

    /// A log of `n` records, some much longer than others, sealed every
    /// MIN_SEGMENT_BYTES.
    fn log(n: u32) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log/n1.jsonl");
        let (writer, _) = LogWriter::open(&path).unwrap();
        writer.set_segment_options(SegmentOptions {
            segment_bytes: segment::MIN_SEGMENT_BYTES,
            on_seal: None,
        });
        for i in 0..n {
            writer
                .append(&Body::Job {
                    job: JobId::new(format!("j{}", i % 7)).unwrap(),
                    at: i,
                    agent: AgentName::new("advance").unwrap(),
                    input: json!({"pad": "x".repeat((i as usize * 37) % 900)}),
                    plan: Digest::ZERO,
                    parent: None,
                    via: None,
                    started_ms: None,
                    depth: None,
                    tree_jobs: None,
                })
                .unwrap();
        }
        (dir, path)
    }

    fn chain_of(r: &Record) -> (u64, Digest, Digest) {
        (r.seq, r.prev, r.hash)
    }

    fn streamed(path: &Path, block: usize, stop: Option<u64>) -> Result<Vec<Record>, LogError> {
        let mut out = Vec::new();
        stream_in_blocks(path, parse_line, chain_of, stop, None, block, |b| {
            out.extend(b)
        })?;
        Ok(out)
    }

    #[test]
    fn a_log_streamed_in_blocks_of_any_size_is_the_log_read_whole() {
        let (_dir, path) = log(300);
        let whole = read_log(&path).unwrap();
        assert!(segment::list(&path).unwrap().len() > 10);
        // Blocks shorter than a line, a few lines, a segment, the default.
        for block in [16, 700, 5000, BLOCK_BYTES] {
            assert_eq!(
                streamed(&path, block, None).unwrap(),
                whole.records,
                "{block}"
            );
            let cut = streamed(&path, block, Some(123)).unwrap();
            assert_eq!(cut, whole.records[..123], "{block}");
        }
        // A torn tail is left out and reported as read whole reports it.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, b"{\"at\":9,\"job\":\"j1").unwrap();
        let whole = read_log(&path).unwrap();
        let s = stream_in_blocks(&path, parse_line, chain_of, None, None, 700, |_| {}).unwrap();
        assert_eq!(s.torn.len(), whole.torn_tail);
        assert_eq!(s.valid_len, whole.valid_len);
        assert_eq!(s.head, whole.head());
    }

    #[test]
    fn a_bad_record_deep_in_a_segment_is_named_as_a_whole_read_names_it() {
        let (_dir, path) = log(300);
        // The open segment's fourth line from the end, edited.
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 5, "{}", lines.len());
        let k = lines.len() - 4;
        let edited: String = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let l = if i == k {
                    l.replacen("advance", "advancf", 1)
                } else {
                    l.to_string()
                };
                format!("{l}\n")
            })
            .collect();
        std::fs::write(&path, edited).unwrap();
        let whole = read_log(&path).unwrap_err().to_string();
        assert!(whole.contains(&format!("line {}", k + 1)), "{whole}");
        for block in [16, 700, BLOCK_BYTES] {
            let e = streamed(&path, block, None).unwrap_err().to_string();
            assert_eq!(e, whole, "{block}");
        }
    }
}
