//! What a streaming reader learns of a record from its line without parsing
//! its body: its chain fields, and the job it belongs to as a compact key,
//! its place in that job and its parent. Replay's first scan counts each
//! job's records with it (to know when a job is complete) and `jaros
//! verify` finds the jobs written under several epochs with it.

use crate::canon::Digest;
use crate::log::record::{
    check_line, members_before_a_cut, parse_line, ChainFields, Record, RecordError,
};
use std::hash::{BuildHasher, BuildHasherDefault};

/// A job's compact key: a hash of its id. Two jobs may share one; every
/// reader that groups by key tells them apart by id where it matters.
pub(super) type JobKey = u64;

/// The key of the job with id `job`.
pub(super) fn job_key(job: &str) -> JobKey {
    // A fixed hasher: the same id gives the same key in every scan.
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(job)
}

/// One line, as a census sees it.
#[derive(Debug)]
pub(super) struct Census {
    pub(super) fields: ChainFields,
    /// The job's key, for a record of a job's history.
    pub(super) job: Option<JobKey>,
    /// Its `at` in that job.
    pub(super) at: u32,
    /// For a `job` record: its parent's key.
    pub(super) parent: Option<JobKey>,
    /// A `plan` record, parsed whole (there are a few per log).
    pub(super) plan: Option<Record>,
    /// The job's id, when the reader asked for it.
    pub(super) id: Option<Box<str>>,
}

/// Checks the line's hash, then reads its job members.
pub(super) fn census_checked(line: &str) -> Result<Census, RecordError> {
    let fields = check_line(line)?;
    census(line, fields, false)
}

/// Reads the line's chain fields as written (not its hash: for a log whose
/// chain was just verified), its job members and the job's id.
pub(super) fn census_with_id(line: &str) -> Result<Census, RecordError> {
    census_unchecked(line, true)
}

/// [`census_with_id`] without the id.
pub(super) fn census_light(line: &str) -> Result<Census, RecordError> {
    census_unchecked(line, false)
}

fn census_unchecked(line: &str, with_id: bool) -> Result<Census, RecordError> {
    let mut fields = ChainFields {
        seq: 0,
        prev: Digest::ZERO,
        hash: Digest::ZERO,
        epoch: 0,
    };
    for (key, value) in members_before_a_cut(line.as_bytes()) {
        let text = std::str::from_utf8(value).unwrap_or("");
        let digest = || Digest::from_hex(text.trim_matches('"'));
        match key {
            b"seq" => fields.seq = text.parse().map_err(|_| RecordError::Field("seq"))?,
            b"prev" => fields.prev = digest().ok_or(RecordError::Field("prev"))?,
            b"hash" => fields.hash = digest().ok_or(RecordError::Field("hash"))?,
            b"epoch" => fields.epoch = text.parse().map_err(|_| RecordError::Field("epoch"))?,
            _ => {}
        }
    }
    census(line, fields, with_id)
}

fn census(line: &str, fields: ChainFields, with_id: bool) -> Result<Census, RecordError> {
    let mut out = Census {
        fields,
        job: None,
        at: 0,
        parent: None,
        plan: None,
        id: None,
    };
    let mut kind: &[u8] = b"";
    for (key, value) in members_before_a_cut(line.as_bytes()) {
        match key {
            b"kind" => kind = value,
            b"job" => {
                let id = json_string(value).ok_or(RecordError::Field("job"))?;
                out.job = Some(job_key(&id));
                if with_id {
                    out.id = Some(id.into());
                }
            }
            b"parent" => out.parent = json_string(value).map(|p| job_key(&p)),
            b"at" => {
                out.at = std::str::from_utf8(value)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or(RecordError::Field("at"))?
            }
            _ => {}
        }
    }
    match kind {
        // A plan is loaded as it is met: parse it whole.
        b"\"plan\"" => {
            out.plan = Some(parse_line(line)?);
            out.job = None;
        }
        // Audit records are outside any job's history (and belong in audit/).
        b"\"audit\"" => out.job = None,
        _ => {}
    }
    if kind != b"\"job\"" {
        out.parent = None;
    }
    Ok(out)
}

/// A JSON string value's text (`None` for any other value).
fn json_string(value: &[u8]) -> Option<String> {
    match value {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => {
            std::str::from_utf8(inner).ok().map(str::to_owned)
        }
        _ => serde_json::from_slice::<String>(value).ok(),
    }
}

/// A line's census and the line itself, for a reader that parses a few
/// records whole.
pub(super) struct KeyedLine {
    pub(super) census: Census,
    pub(super) line: Box<str>,
}

/// [`census_with_id`] and the line.
pub(super) fn keyed_line(line: &str) -> Result<KeyedLine, RecordError> {
    Ok(KeyedLine {
        census: census_unchecked(line, false)?,
        line: line.into(),
    })
}

/// A census's chain fields, for the streaming reader.
pub(super) fn census_chain(c: &Census) -> (u64, Digest, Digest) {
    (c.fields.seq, c.fields.prev, c.fields.hash)
}

/// A parsed record's chain fields, for the streaming reader.
pub(super) fn record_chain(r: &Record) -> (u64, Digest, Digest) {
    (r.seq, r.prev, r.hash)
}

/// Parses a record (its hash checked): the streaming reader's parser.
pub(super) fn record_line(line: &str) -> Result<Record, RecordError> {
    parse_line(line)
}
