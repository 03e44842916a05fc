//! What the logs say about job ids, kept current at the cost of the records
//! written since the last look: which ids started (a `job` record), which
//! ended (an `end` record), and which recorded hand-off made which child.
//!
//! A node asks before it runs a job file from the inbox: an id that started
//! or ended runs no second time (a result file may not be written yet, or
//! may have been removed by retention: the log is what a job did), and a
//! file that says it was handed off must match a hand-off decision in the
//! log. Every log of the data dir is read once from its start (the first
//! question after boot), then only what was appended since, line by line;
//! a line cut by a writer in mid-append is read on the next look.
//!
//! Memory: 16 bytes of an id's hash (and its mark) per job the logs hold,
//! about 40 bytes with the map's overhead, and one entry per hand-off whose
//! child has not ended. Two ids share a hash with probability 2^-128.

use crate::canon::Digest;
use crate::datadir::DataDir;
use crate::decision::{DecisionId, JobId};
use crate::fsx::IoError;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;

/// Most bytes read from a log in one go; a longer stretch is read in parts.
const READ_CHUNK_BYTES: usize = 1024 * 1024;

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

#[derive(Debug, Default)]
pub struct Seen {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes of each log read so far (up to the end of a whole line).
    read: HashMap<PathBuf, u64>,
    jobs: HashMap<u128, Known>,
    /// Children of recorded hand-offs that have not ended, by child id.
    handoffs: HashMap<JobId, Handoff>,
}

impl Seen {
    /// Reads what the logs gained since the last call, then says what they
    /// hold of job `id`, and the hand-off that made it, if one did.
    pub fn job(&self, data: &DataDir, id: &JobId) -> Result<(Known, Option<Handoff>), IoError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for path in data.log_files()? {
            state.catch_up(path)?;
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

#[derive(Deserialize)]
struct DecisionLine {
    id: DecisionId,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: Value,
}

impl State {
    fn catch_up(&mut self, path: PathBuf) -> Result<(), IoError> {
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(IoError::new("cannot open", &path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| IoError::new("cannot read", &path, e))?
            .len();
        let mut at = self.read.get(&path).copied().unwrap_or(0);
        if len < at {
            // A torn tail was cut: what was read of it was no whole line,
            // and reading again from the start only marks ids again.
            at = 0;
        }
        if len == at {
            return Ok(());
        }
        file.seek(SeekFrom::Start(at))
            .map_err(|e| IoError::new("cannot read", &path, e))?;
        let mut buf = Vec::new();
        loop {
            let before = buf.len();
            (&mut file)
                .take(READ_CHUNK_BYTES as u64)
                .read_to_end(&mut buf)
                .map_err(|e| IoError::new("cannot read", &path, e))?;
            let got = buf.len() - before;
            let whole = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for line in buf[..whole].split(|&b| b == b'\n') {
                self.note(line);
            }
            at += whole as u64;
            buf.drain(..whole);
            if got < READ_CHUNK_BYTES {
                break;
            }
        }
        self.read.insert(path, at);
        Ok(())
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
}
