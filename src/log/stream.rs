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
                Err(e) if seg.stub.is_some() => return Err(LogError::Tampered {
                    path: seg.path.clone(),
                    line: 0,
                    seq: start.seq,
                    reason: format!(
                        "the archived segment that {} names cannot be read ({e}); restore it there",
                        seg.stub.as_deref().unwrap_or(Path::new("?")).display(),
                    ),
                }),
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
        let read = stream_segment(
            seg,
            file,
            parse,
            chain,
            start,
            stop_after,
            progress,
            |batch| {
                if let Some(last) = batch.last() {
                    let (seq, _, hash) = chain(last);
                    out.head = (seq, hash);
                    out.records += batch.len() as u64;
                }
                visit(batch)
            },
        )?;
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

/// Reads one segment a block at a time from `file`, checking the chain
/// from `start`.
#[allow(clippy::too_many_arguments)]
fn stream_segment<T: Send>(
    seg: &Segment,
    mut file: File,
    parse: fn(&str) -> Result<T, RecordError>,
    chain: fn(&T) -> (u64, Digest, Digest),
    mut start: ChainStart,
    stop_after: Option<u64>,
    progress: Option<&Progress>,
    mut visit: impl FnMut(Vec<T>),
) -> Result<SegmentRead, LogError> {
    let path = &seg.path;
    let segment_first = start.seq;
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK_BYTES);
    let mut target = BLOCK_BYTES;
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
            target = buf.len() + BLOCK_BYTES;
            continue;
        };
        target = BLOCK_BYTES;
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
