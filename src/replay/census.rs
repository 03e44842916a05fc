//! What a streaming reader learns of a record from its line without parsing
//! its body: its chain fields, and the job it belongs to as a compact key,
//! its place in that job and its parent. Replay's first scan counts each
//! job's records with it (to know when a job is complete) and `jaros
//! verify` finds the jobs written under several epochs with it.

use crate::canon::Digest;
use crate::log::record::{line_fields, parse_line, ChainFields, Record, RecordError};
use std::borrow::Cow;
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

/// Checks the line's hash and reads its job members, in one walk.
pub(super) fn census_checked(line: &str) -> Result<Census, RecordError> {
    census(line, true, false)
}

/// Reads the line's chain fields as written (not its hash: for a log whose
/// chain was just verified), its job members and the job's id.
pub(super) fn census_with_id(line: &str) -> Result<Census, RecordError> {
    census(line, false, true)
}

/// [`census_with_id`] without the id.
pub(super) fn census_light(line: &str) -> Result<Census, RecordError> {
    census(line, false, false)
}

fn census(line: &str, check_hash: bool, with_id: bool) -> Result<Census, RecordError> {
    let (mut kind, mut job, mut parent, mut at) = ("", None, None, None);
    let fields = line_fields(line, check_hash, |key, value| match key {
        b"kind" => kind = value,
        b"job" => job = Some(value),
        b"parent" => parent = Some(value),
        b"at" => at = Some(value),
        _ => {}
    })?;
    let mut out = Census {
        fields,
        job: None,
        at: 0,
        parent: None,
        plan: None,
        id: None,
    };
    match kind {
        // A plan is loaded as it is met: parse it whole.
        "\"plan\"" => {
            out.plan = Some(parse_line(line)?);
            return Ok(out);
        }
        // Audit records are outside any job's history (and belong in audit/).
        "\"audit\"" => return Ok(out),
        _ => {}
    }
    if let Some(value) = job {
        let id = json_string(value).ok_or(RecordError::Field("job"))?;
        out.job = Some(job_key(&id));
        if with_id {
            out.id = Some(id.as_ref().into());
        }
        out.at = match at {
            Some(text) => text.parse().map_err(|_| RecordError::Field("at"))?,
            None => 0,
        };
    }
    if kind == "\"job\"" {
        out.parent = parent.and_then(json_string).map(|p| job_key(&p));
    }
    Ok(out)
}

/// A JSON string value's text (`None` for any other value), borrowed
/// unless it holds an escape.
fn json_string(value: &str) -> Option<Cow<'_, str>> {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Some(Cow::Borrowed(inner)),
        _ => serde_json::from_str::<String>(value).ok().map(Cow::Owned),
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
        census: census(line, false, false)?,
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
