//! What the logs say about job ids, kept current at the cost of the records
//! written since the last look: which ids started (a `job` record), which
//! ended (an `end` record), and which recorded hand-off made which child.
//!
//! A node asks before it runs a job file from the inbox: an id that started
//! or ended runs no second time (a result file may not be written yet, or
//! may have been removed by retention: the log is what a job did), and a
//! file that says it was handed off must match a hand-off decision in the
//! log. Every log of the data dir is read once from its start, sealed
//! segments included (the first question after boot), then only what was
//! appended since, line by line; a line cut by a writer in mid-append is
//! read on the next look.
//!
//! Cost of a look, whatever the number of logs, segments and results: one
//! `stat` of `log/` and one of each log's open segment, plus a read of what
//! it gained. `log/` is listed again only when its modification time
//! changed (a node's first log, a segments directory), or while that time
//! is younger than [`LISTING_SETTLE`] (a second change within a file
//! system's timestamp granularity leaves the time as it was). Each open
//! segment is read through a handle kept open: when the writer seals it
//! (renames it away and starts a new file under its name), the handle still
//! reads the sealed file to its end, and segments sealed in between are
//! read from the segments directory, so no record between two looks is
//! missed.
//!
//! Memory: 16 bytes of an id's hash (and its mark) per job the logs hold,
//! about 40 bytes with the map's overhead, one entry per hand-off whose
//! child has not ended, and one open file per log. Two ids share a hash
//! with probability 2^-128.

use crate::canon::Digest;
use crate::datadir::DataDir;
use crate::decision::{DecisionId, JobId};
use crate::fsx::IoError;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most bytes read from a log in one go; a longer stretch is read in parts.
const READ_CHUNK_BYTES: usize = 1024 * 1024;

/// How long after `log/` is first seen with a modification time its
/// listing is taken again at every look: longer than the coarsest
/// timestamp a file system a data dir lives on keeps (1 s on some network
/// file systems), so a log created in the same tick as the listing, which
/// leaves the time unchanged, is still found.
pub(super) const LISTING_SETTLE: Duration = Duration::from_secs(2);

/// How the records this reads say their kind.
const WANTED_KINDS: [&[u8]; 3] = [
    br#""kind":"job""#,
    br#""kind":"end""#,
    br#""kind":"decision""#,
];

/// What the logs hold of a job id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// No record.
    New,
    /// A `job` record, no `end` yet.
    Started,
    /// An `end` record.
    Ended,
}

/// A hand-off decision the log records: the child it makes and what with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub parent: JobId,
    pub via: DecisionId,
    pub agent: String,
    /// The digest of the child's input (canonical JSON).
    pub input: Digest,
}

#[derive(Debug)]
pub struct Seen {
    state: Mutex<State>,
    settle: Duration,
}

impl Default for Seen {
    fn default() -> Self {
        Seen::with_settle(LISTING_SETTLE)
    }
}

#[derive(Debug, Default)]
struct State {
    listing: Listing,
    /// Where each log (by its open segment's path) was read to.
    tails: HashMap<PathBuf, Tail>,
    jobs: HashMap<u128, Known>,
    /// Children of recorded hand-offs that have not ended, by child id.
    handoffs: HashMap<JobId, Handoff>,
}

/// The logs `log/` held when last listed.
#[derive(Debug, Default)]
struct Listing {
    /// `log/`'s identity and modification time at that listing.
    stamp: Option<Stamp>,
    /// When this node first saw `log/` with that stamp.
    first_seen: Option<Instant>,
    /// Listed at least [`Seen::settle`] after the stamp was first seen: no
    /// change the stamp hides can follow.
    settled: bool,
    logs: Vec<PathBuf>,
}

/// A directory's identity and modification time, as `stat` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// One log as read so far.
#[derive(Debug, Default)]
struct Tail {
    /// Its open segment as last opened, and that file's (dev, inode): when
    /// the writer seals it, the handle still reads it.
    open: Option<(File, (u64, u64))>,
    /// Bytes of that file read, up to the end of a whole line.
    at: u64,
    /// The highest seq read from this log, in any of its segments (0: none
    /// yet): sealed segments that start past it are unread.
    seq: u64,
}

impl Seen {
    /// A `Seen` that lists `log/` again at every look until its stamp is
    /// `settle` old (tests shorten it).
    pub(super) fn with_settle(settle: Duration) -> Seen {
        Seen {
            state: Mutex::new(State::default()),
            settle,
        }
    }

    /// Reads what the logs gained since the last call, then says what they
    /// hold of job `id`, and the hand-off that made it, if one did.
    pub fn job(&self, data: &DataDir, id: &JobId) -> Result<(Known, Option<Handoff>), IoError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for path in state.logs(data, self.settle)? {
            state.catch_up(&path)?;
        }
        let known = state.jobs.get(&key(id.as_str())).copied();
        Ok((known.unwrap_or(Known::New), state.handoffs.get(id).cloned()))
    }
}

fn key(id: &str) -> u128 {
    let digest = Digest::of_bytes(id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.0[..16]);
    u128::from_le_bytes(bytes)
}

/// The fields of a log line this reads; the others are skipped unparsed.
#[derive(Deserialize)]
struct Line<'a> {
    kind: &'a str,
    #[serde(default)]
    job: Option<&'a str>,
    #[serde(default, borrow)]
    decision: Option<&'a RawValue>,
}

/// A record's seq, the rest skipped.
#[derive(Deserialize)]
struct Seq {
    #[serde(default)]
    seq: u64,
}

#[derive(Deserialize)]
struct DecisionLine {
    id: DecisionId,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: Value,
}

impl State {
    /// The logs of the data dir, listed again only when `log/` changed (or
    /// may have, within a timestamp's granularity).
    fn logs(&mut self, data: &DataDir, settle: Duration) -> Result<Vec<PathBuf>, IoError> {
        let dir = data.log_dir();
        let stamp = match std::fs::metadata(&dir) {
            Ok(meta) => Some(Stamp::of(&meta)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(IoError::new("cannot read", &dir, e)),
        };
        let listing = &mut self.listing;
        if stamp.is_some() && stamp == listing.stamp {
            if listing.settled {
                return Ok(listing.logs.clone());
            }
            listing.settled = listing.first_seen.is_some_and(|t| t.elapsed() >= settle);
        } else {
            listing.stamp = stamp;
            listing.first_seen = Some(Instant::now());
            listing.settled = false;
        }
        listing.logs = data.log_files()?;
        Ok(listing.logs.clone())
    }

    /// Reads what the log whose open segment is `path` gained since the
    /// last look: the rest of the file last read, any segment sealed since,
    /// and the open segment now under that name.
    fn catch_up(&mut self, path: &Path) -> Result<(), IoError> {
        let mut tail = self.tails.remove(path).unwrap_or_default();
        let read = self.catch_up_tail(path, &mut tail);
        self.tails.insert(path.to_path_buf(), tail);
        read
    }

    fn catch_up_tail(&mut self, path: &Path, tail: &mut Tail) -> Result<(), IoError> {
        let now = match std::fs::metadata(path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(IoError::new("cannot read", path, e)),
        };
        if let (Some((file, ident)), Some(meta)) = (&tail.open, &now) {
            if *ident == (meta.dev(), meta.ino()) {
                if meta.len() < tail.at {
                    // A torn tail was cut: what was read of it was no whole
                    // line, and reading again from the start only marks
                    // ids again.
                    tail.at = 0;
                }
                if meta.len() > tail.at {
                    tail.at = self.read_range(file, path, tail.at, meta.len(), &mut tail.seq)?;
                }
                return Ok(());
            }
        }
        // The file last read is no longer the open segment (sealed, or the
        // writer is between sealing and starting the next one), or this is
        // the first look. A sealed file is complete: read it to its end.
        if let Some((file, _)) = tail.open.take() {
            let len = file
                .metadata()
                .map_err(|e| IoError::new("cannot read", path, e))?
                .len();
            self.read_range(&file, path, tail.at, len, &mut tail.seq)?;
            tail.at = 0;
        }
        // Opened before the segments are listed: every segment sealed
        // before this file began is in the listing. One sealed in between
        // may be read twice, which only marks its ids again.
        let open = match File::open(path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(IoError::new("cannot open", path, e)),
        };
        let segments = crate::log::segment::list(path).map_err(|e| match e {
            crate::log::LogError::Io(e) => e,
            // A stub that does not read (`jaros verify` names it).
            other => IoError::new(
                "cannot list the sealed segments of",
                path,
                std::io::Error::other(other.to_string()),
            ),
        })?;
        for segment in segments {
            if !segment.sealed || segment.first_seq.is_some_and(|first| first <= tail.seq) {
                continue;
            }
            let file = File::open(&segment.path)
                .map_err(|e| IoError::new("cannot open the sealed segment", &segment.path, e))?;
            let len = file
                .metadata()
                .map_err(|e| IoError::new("cannot read", &segment.path, e))?
                .len();
            self.read_range(&file, &segment.path, 0, len, &mut tail.seq)?;
        }
        if let Some(file) = open {
            let meta = file
                .metadata()
                .map_err(|e| IoError::new("cannot read", path, e))?;
            tail.at = self.read_range(&file, path, 0, meta.len(), &mut tail.seq)?;
            tail.open = Some((file, (meta.dev(), meta.ino())));
        }
        Ok(())
    }

    /// Notes the whole lines of `file` from byte `at` up to `len`; returns
    /// where the last whole line ends, and raises `seq` to the highest read.
    fn read_range(
        &mut self,
        file: &File,
        path: &Path,
        mut at: u64,
        len: u64,
        seq: &mut u64,
    ) -> Result<u64, IoError> {
        let mut buf: Vec<u8> = Vec::new();
        let mut pos = at;
        while pos < len {
            let want = usize::try_from(len - pos)
                .unwrap_or(usize::MAX)
                .min(READ_CHUNK_BYTES);
            let start = buf.len();
            buf.resize(start + want, 0);
            let got = file
                .read_at(&mut buf[start..], pos)
                .map_err(|e| IoError::new("cannot read", path, e))?;
            buf.truncate(start + got);
            if got == 0 {
                // Shorter than its size said (cut meanwhile).
                break;
            }
            pos += got as u64;
            let whole = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for line in buf[..whole].split(|&b| b == b'\n') {
                self.note(line);
            }
            if whole > 0 {
                // Records' seqs rise line by line: the last whole line has
                // the highest.
                if let Some(last) = buf[..whole - 1].rsplit(|&b| b == b'\n').next() {
                    if let Ok(Seq { seq: s }) = serde_json::from_slice::<Seq>(last) {
                        *seq = (*seq).max(s);
                    }
                }
            }
            at += whole as u64;
            buf.drain(..whole);
        }
        Ok(at)
    }

    fn note(&mut self, line: &[u8]) {
        // Records are canonical JSON (no spaces), so a line of a kind this
        // reads holds one of these; the others (model calls, effects: the
        // long lines) are skipped unparsed. A nested value that happens to
        // hold one only costs a parse.
        if !WANTED_KINDS
            .iter()
            .any(|kind| memchr::memmem::find(line, kind).is_some())
        {
            return;
        }
        // A line that does not parse is no record this needs (verify and
        // replay report a bad log; this only answers questions about ids).
        let Ok(line) = serde_json::from_slice::<Line>(line) else {
            return;
        };
        let Some(job) = line.job else {
            return;
        };
        match line.kind {
            "job" => {
                self.jobs.entry(key(job)).or_insert(Known::Started);
            }
            "end" => {
                self.jobs.insert(key(job), Known::Ended);
                if let Ok(id) = JobId::new(job) {
                    self.handoffs.remove(&id);
                }
            }
            "decision" => {
                let Some(decision) = line
                    .decision
                    .and_then(|raw| serde_json::from_str::<DecisionLine>(raw.get()).ok())
                else {
                    return;
                };
                if decision.kind != "handoff" {
                    return;
                }
                let child = crate::exec::child_job_id(&decision.id);
                let (Ok(parent), Ok(input)) = (
                    JobId::new(job),
                    Digest::of_json(decision.payload.get("input").unwrap_or(&Value::Null)),
                ) else {
                    return;
                };
                if self.jobs.get(&key(child.as_str())) == Some(&Known::Ended) {
                    return;
                }
                let agent = decision.payload["agent"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.handoffs.insert(
                    child,
                    Handoff {
                        parent,
                        via: decision.id,
                        agent,
                        input,
                    },
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_known_from_every_log_as_they_grow_and_a_cut_line_waits() {
        let (_dir, data) = crate::datadir::temp();
        let seen = Seen::default();
        let id = |s: &str| JobId::new(s).unwrap();
        let log = |node: &str| data.log_path(node);
        std::fs::write(log("a"), "{\"job\":\"j1\",\"kind\":\"job\"}\n").unwrap();
        assert_eq!(seen.job(&data, &id("j1")).unwrap().0, Known::Started);
        assert_eq!(seen.job(&data, &id("j2")).unwrap().0, Known::New);
        // Another node's log, its last line not yet whole.
        std::fs::write(
            log("b"),
            "{\"job\":\"j1\",\"kind\":\"end\"}\n{\"job\":\"j2\",\"kind\":\"e",
        )
        .unwrap();
        assert_eq!(seen.job(&data, &id("j1")).unwrap().0, Known::Ended);
        assert_eq!(seen.job(&data, &id("j2")).unwrap().0, Known::New);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(log("b"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"nd\"}\n").unwrap();
        assert_eq!(seen.job(&data, &id("j2")).unwrap().0, Known::Ended);
    }

    #[test]
    fn a_recorded_handoff_names_its_child_until_the_child_ends() {
        let (_dir, data) = crate::datadir::temp();
        let seen = Seen::default();
        let via = DecisionId::new(&JobId::new("p").unwrap(), 1, 0);
        let child = crate::exec::child_job_id(&via);
        let line = serde_json::json!({"kind": "decision", "job": "p", "decision": {
            "id": via, "type": "handoff", "source": "x",
            "payload": {"agent": "advance", "input": {"n": 1}}}});
        std::fs::write(data.log_path("a"), format!("{line}\n")).unwrap();
        let (known, handoff) = seen.job(&data, &child).unwrap();
        assert_eq!(known, Known::New);
        let handoff = handoff.unwrap();
        assert_eq!(
            (handoff.parent.as_str(), handoff.agent.as_str()),
            ("p", "advance")
        );
        assert_eq!(handoff.via, via);
        assert_eq!(
            handoff.input,
            Digest::of_json(&serde_json::json!({"n": 1})).unwrap()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.log_path("a"))
            .unwrap();
        let end = serde_json::json!({"kind": "end", "job": child});
        std::io::Write::write_all(&mut f, format!("{end}\n").as_bytes()).unwrap();
        assert_eq!(seen.job(&data, &child).unwrap(), (Known::Ended, None));
    }

    /// A record line with what this reads of it.
    fn rec(seq: u64, kind: &str, job: &str) -> String {
        format!("{{\"job\":\"{job}\",\"kind\":\"{kind}\",\"seq\":{seq}}}\n")
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    }

    /// Seals the open segment `open` as the writer does: renamed under the
    /// segments directory by its first seq; the next append starts a new
    /// file under the old name.
    fn seal(open: &Path, first_seq: u64) {
        let dir = crate::log::segment::segments_dir(open);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::rename(open, dir.join(format!("{first_seq:020}.jsonl"))).unwrap();
    }

    fn set_mtime(dir: &Path, to: std::time::SystemTime) {
        File::open(dir).unwrap().set_modified(to).unwrap();
    }

    fn known(seen: &Seen, data: &DataDir, id: &str) -> Known {
        seen.job(data, &JobId::new(id).unwrap()).unwrap().0
    }

    #[test]
    fn a_log_that_appears_after_the_listing_settled_is_read() {
        let (_dir, data) = crate::datadir::temp();
        let seen = Seen::with_settle(Duration::ZERO);
        append(&data.log_path("a"), &rec(1, "job", "j0"));
        // `log/` last changed long ago: the second look settles its listing.
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        set_mtime(&data.log_dir(), hour_ago);
        assert_eq!(known(&seen, &data, "j0"), Known::Started);
        assert_eq!(known(&seen, &data, "j1"), Known::New);
        assert!(seen.state.lock().unwrap().listing.settled);
        // Another node boots and ends j1 after the listing was cached.
        append(&data.log_path("b"), &rec(1, "end", "j1"));
        assert_eq!(known(&seen, &data, "j1"), Known::Ended);
    }

    #[test]
    fn a_log_made_in_the_tick_of_the_listing_is_found() {
        let (_dir, data) = crate::datadir::temp();
        let seen = Seen::default();
        append(&data.log_path("a"), &rec(1, "job", "j0"));
        assert_eq!(known(&seen, &data, "j0"), Known::Started);
        let listed = std::fs::metadata(data.log_dir())
            .unwrap()
            .modified()
            .unwrap();
        // A second node's log in the same timestamp tick: `log/`'s time
        // stays what the listing saw.
        append(&data.log_path("b"), &rec(1, "end", "j1"));
        set_mtime(&data.log_dir(), listed);
        assert_eq!(known(&seen, &data, "j1"), Known::Ended);
    }

    #[test]
    fn records_sealed_between_two_looks_are_read() {
        let (_dir, data) = crate::datadir::temp();
        let seen = Seen::default();
        let open = data.log_path("a");
        append(&open, &rec(1, "job", "j1"));
        assert_eq!(known(&seen, &data, "j1"), Known::Started);
        // One more record, then the segment is sealed and the next one
        // grows past where the last look stopped.
        append(&open, &rec(2, "job", "j2"));
        seal(&open, 1);
        append(&open, &(rec(3, "job", "j3") + &rec(4, "end", "j1")));
        assert_eq!(known(&seen, &data, "j2"), Known::Started);
        assert_eq!(known(&seen, &data, "j3"), Known::Started);
        assert_eq!(known(&seen, &data, "j1"), Known::Ended);
        // Two seals between looks: the one in between is read from the
        // segments directory.
        append(&open, &rec(5, "end", "j2"));
        seal(&open, 3);
        append(&open, &rec(6, "end", "j3"));
        seal(&open, 6);
        append(&open, &rec(7, "job", "j7"));
        assert_eq!(known(&seen, &data, "j2"), Known::Ended);
        assert_eq!(known(&seen, &data, "j3"), Known::Ended);
        assert_eq!(known(&seen, &data, "j7"), Known::Started);
    }

    #[test]
    fn the_first_look_reads_the_sealed_segments() {
        let (_dir, data) = crate::datadir::temp();
        let open = data.log_path("a");
        append(&open, &(rec(1, "job", "j1") + &rec(2, "end", "j1")));
        seal(&open, 1);
        append(&open, &rec(3, "job", "j3"));
        let seen = Seen::default();
        assert_eq!(known(&seen, &data, "j1"), Known::Ended);
        assert_eq!(known(&seen, &data, "j3"), Known::Started);
    }
}
