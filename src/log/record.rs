//! The records of the log and their encoding: canonical JSON, one per line,
//! chained by `prev` and sealed by `hash`.

use crate::canon::{self, Digest};
use crate::decision::{AgentName, Decision, DecisionId, JobId};
use crate::state::State;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// What a record says; its `kind` is the tag.
///
/// Written by the derived serializer; read by the hand-written deserializer
/// in `body_de.rs`, which reads each field once and ignores fields it does
/// not know (a newer writer's additions): the hash, checked first, already
/// vouches for every byte of the line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Body {
    /// A compiled plan came into force on this node; its canonical JSON is the
    /// blob `blob`, its digest `digest`.
    Plan {
        digest: Digest,
        blob: Digest,
        /// The executor that wrote this log: `jaros <version> (<commit>, <profile>)`.
        executor: String,
    },
    /// A job was accepted.
    Job {
        job: JobId,
        /// Position of this record in the job's own history (0 here).
        at: u32,
        agent: AgentName,
        input: Value,
        /// The plan the job runs under.
        plan: Digest,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<JobId>,
        /// The parent's decision that created this job.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<DecisionId>,
    },
    /// A model call: prompt and response are blobs.
    Model {
        job: JobId,
        at: u32,
        turn: u32,
        provider: String,
        model: String,
        params: Value,
        template: Digest,
        inputs: Digest,
        prompt: Digest,
        response: Digest,
        tokens_in: u64,
        tokens_out: u64,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A decision the gate accepted, durable before its effect runs.
    Decision {
        job: JobId,
        at: u32,
        decision: Decision,
    },
    /// A decision the gate refused, with the check and the reason.
    Rejected {
        job: JobId,
        at: u32,
        decision: Decision,
        check: String,
        reason: String,
    },
    /// The outcome of executing a decision and the job state after it.
    Effect {
        job: JobId,
        at: u32,
        decision: DecisionId,
        /// The handler's result (recorded so replay can read back what is not
        /// deterministic).
        result: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// sha256 of the job's canonical state after this effect.
        state: Digest,
    },
    /// The job reached a terminal state.
    End {
        job: JobId,
        at: u32,
        state: State,
        result: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The decision the failure is attributed to, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blame: Option<DecisionId>,
    },
    /// A mediated action or a refusal, in a node's audit log
    /// (`audit/<node>.jsonl`), never in its decision log.
    Audit {
        job: JobId,
        agent: AgentName,
        decision: DecisionId,
        action: String,
        /// `allowed` or `refused`.
        verdict: String,
        reason: String,
        /// When it happened (RFC 3339, UTC); audit records are not replayed.
        time: String,
    },
}

impl Body {
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Plan { .. } => "plan",
            Body::Job { .. } => "job",
            Body::Model { .. } => "model",
            Body::Decision { .. } => "decision",
            Body::Rejected { .. } => "rejected",
            Body::Effect { .. } => "effect",
            Body::End { .. } => "end",
            Body::Audit { .. } => "audit",
        }
    }

    /// The job this record belongs to and its position in that job's
    /// history; `None` for records outside any job's history (plans, audit).
    pub fn job_at(&self) -> Option<(&JobId, u32)> {
        match self {
            Body::Plan { .. } | Body::Audit { .. } => None,
            Body::Job { job, at, .. }
            | Body::Model { job, at, .. }
            | Body::Decision { job, at, .. }
            | Body::Rejected { job, at, .. }
            | Body::Effect { job, at, .. }
            | Body::End { job, at, .. } => Some((job, *at)),
        }
    }
}

/// One sealed record of a node's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub prev: Digest,
    pub hash: Digest,
    pub body: Body,
}

/// Why a line is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("missing or malformed field '{0}'")]
    Field(&'static str),
    #[error("hash does not match the record's content")]
    HashMismatch,
    #[error("not a known record: {0}")]
    Body(String),
    #[error("{0}")]
    Canon(String),
}

/// A record body encoded ahead of time, with holes for `hash`, `prev` and
/// `seq`, so the writer's critical section only fills them in and hashes.
#[derive(Debug, Clone)]
pub struct Unsealed {
    /// Up to where `,"hash":"…"` goes.
    a: String,
    /// From after the hash member to the opening quote of `prev`'s value.
    b: String,
    /// From the closing quote of `prev`'s value to `"seq":`.
    c: String,
    /// After `seq`'s value to the end.
    d: String,
}

/// Encodes `body` canonically with holes for the chain fields.
pub fn prepare(body: &Body) -> Result<Unsealed, canon::CanonError> {
    let mut map = match serde_json::to_value(body).expect("record bodies serialize") {
        Value::Object(map) => map,
        _ => unreachable!("an internally tagged enum serializes to an object"),
    };
    for key in ["hash", "prev", "seq"] {
        map.insert(key.into(), Value::Null);
    }
    let mut parts: Vec<String> = vec![String::from("{")];
    let mut first = true;
    for (key, value) in canon::sorted_entries(&map) {
        let out = parts.last_mut().expect("parts is never empty");
        match key.as_str() {
            "hash" => {
                // Every body has a member sorting before "hash" ("agent",
                // "at" or "blob"), so the hash member is never first.
                assert!(!first, "hash member would be first");
                parts.push(String::new());
                continue;
            }
            _ if !first => out.push(','),
            _ => {}
        }
        first = false;
        let out = parts.last_mut().expect("parts is never empty");
        canon::write_string(out, key);
        out.push(':');
        match key.as_str() {
            "prev" => {
                out.push('"');
                parts.push(String::from("\""));
            }
            "seq" => parts.push(String::new()),
            _ => canon::write_value(out, value)?,
        }
    }
    parts.last_mut().expect("parts is never empty").push('}');
    let [a, b, c, d]: [String; 4] = parts.try_into().expect("three holes make four parts");
    Ok(Unsealed { a, b, c, d })
}

impl Unsealed {
    /// The record's line (without the newline) and its hash.
    pub fn seal(&self, seq: u64, prev: &Digest) -> (String, Digest) {
        let prev_hex = prev.to_hex();
        let seq_text = seq.to_string();
        let mut hasher = Sha256::new();
        for part in [&self.a, &self.b, &prev_hex, &self.c, &seq_text, &self.d] {
            hasher.update(part.as_bytes());
        }
        let hash = Digest(hasher.finalize().into());
        let mut line =
            String::with_capacity(self.a.len() + self.b.len() + self.c.len() + self.d.len() + 160);
        line.push_str(&self.a);
        line.push_str(",\"hash\":\"");
        line.push_str(&hash.to_hex());
        line.push('"');
        for part in [&self.b, &prev_hex, &self.c, &seq_text, &self.d] {
            line.push_str(part);
        }
        (line, hash)
    }
}

/// Encodes a record's line (without the newline) and its hash.
pub fn seal(seq: u64, prev: &Digest, body: &Body) -> Result<(String, Digest), canon::CanonError> {
    Ok(prepare(body)?.seal(seq, prev))
}

/// The chain fields of a line, checked against the line's own bytes: the
/// hash covers the line with its `hash` member removed (the line is the
/// canonical record, so this is the canonical record without `hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainFields {
    pub seq: u64,
    pub prev: Digest,
    pub hash: Digest,
}

/// Checks one line's hash and reads its chain fields without parsing the body.
pub fn check_line(line: &str) -> Result<ChainFields, RecordError> {
    let bytes = line.as_bytes();
    let members = top_level_members(bytes)
        .ok_or_else(|| RecordError::NotJson("not a canonical record line".into()))?;
    let find = |name: &str| {
        members
            .iter()
            .find(|m| &bytes[m.key.0..m.key.1] == name.as_bytes())
    };
    let string_value = |m: &Member| {
        let (s, e) = m.value;
        (e - s >= 2 && bytes[s] == b'"' && bytes[e - 1] == b'"').then(|| &line[s + 1..e - 1])
    };
    let hash_m = find("hash").ok_or(RecordError::Field("hash"))?;
    let hash = string_value(hash_m)
        .and_then(Digest::from_hex)
        .ok_or(RecordError::Field("hash"))?;
    let prev = find("prev")
        .and_then(string_value)
        .and_then(Digest::from_hex)
        .ok_or(RecordError::Field("prev"))?;
    let seq = find("seq")
        .and_then(|m| line[m.value.0..m.value.1].parse::<u64>().ok())
        .ok_or(RecordError::Field("seq"))?;
    // Remove `,"hash":"…"`: from the comma before the key to the value's end.
    let cut_from = hash_m.key.0 - 2;
    if bytes[cut_from] != b',' {
        return Err(RecordError::Field("hash"));
    }
    let mut hasher = Sha256::new();
    hasher.update(&bytes[..cut_from]);
    hasher.update(&bytes[hash_m.value.1..]);
    if Digest(hasher.finalize().into()) != hash {
        return Err(RecordError::HashMismatch);
    }
    Ok(ChainFields { seq, prev, hash })
}

/// Parses one line and checks its own hash (not yet its place in the chain).
pub fn parse_line(line: &str) -> Result<Record, RecordError> {
    let fields = check_line(line)?;
    // The body parses straight from the line; its chain fields are unknown
    // to every variant, so they are skipped.
    let body: Body = serde_json::from_str(line).map_err(|e| RecordError::Body(e.to_string()))?;
    Ok(Record {
        seq: fields.seq,
        prev: fields.prev,
        hash: fields.hash,
        body,
    })
}

struct Member {
    /// The key's text, without quotes.
    key: (usize, usize),
    /// The value's bytes.
    value: (usize, usize),
}

/// The members of a canonical JSON object (no whitespace), as byte spans.
fn top_level_members(b: &[u8]) -> Option<Vec<Member>> {
    let mut members = Vec::with_capacity(12);
    if b.first() != Some(&b'{') || b.last() != Some(&b'}') {
        return None;
    }
    let mut i = 1;
    if b.get(i) == Some(&b'}') {
        return (i + 1 == b.len()).then_some(members);
    }
    loop {
        let key_end = skip_string(b, i)?;
        if b.get(key_end) != Some(&b':') {
            return None;
        }
        let value_start = key_end + 1;
        let value_end = skip_value(b, value_start)?;
        members.push(Member {
            key: (i + 1, key_end - 1),
            value: (value_start, value_end),
        });
        match b.get(value_end) {
            Some(b',') => i = value_end + 1,
            Some(b'}') if value_end + 1 == b.len() => return Some(members),
            _ => return None,
        }
    }
}

fn skip_string(b: &[u8], start: usize) -> Option<usize> {
    if b.get(start) != Some(&b'"') {
        return None;
    }
    let mut j = start + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

fn skip_value(b: &[u8], start: usize) -> Option<usize> {
    match b.get(start)? {
        b'"' => skip_string(b, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = start;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let len = b[start..]
                .iter()
                .position(|&c| matches!(c, b',' | b'}' | b']'))?;
            (len > 0).then_some(start + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job_body() -> Body {
        Body::Job {
            job: JobId::new("j1").unwrap(),
            at: 0,
            agent: AgentName::new("advance").unwrap(),
            input: json!({"note": "hi"}),
            plan: Digest::ZERO,
            parent: None,
            via: None,
        }
    }

    #[test]
    fn a_sealed_record_parses_back_and_its_hash_covers_everything() {
        let (line, hash) = seal(1, &Digest::ZERO, &job_body()).unwrap();
        let record = parse_line(&line).unwrap();
        assert_eq!(record.hash, hash);
        assert_eq!(record.seq, 1);
        assert_eq!(record.body, job_body());
        let edited = line.replace("\"hi\"", "\"ho\"");
        assert_eq!(parse_line(&edited), Err(RecordError::HashMismatch));
        let reseq = line.replace("\"seq\":1", "\"seq\":2");
        assert_eq!(parse_line(&reseq), Err(RecordError::HashMismatch));
    }

    #[test]
    fn a_prepared_seal_equals_the_canonical_record_hash() {
        let (line, hash) = seal(12, &Digest::of_bytes(b"x"), &job_body()).unwrap();
        let mut value: Value = serde_json::from_str(&line).unwrap();
        value.as_object_mut().unwrap().remove("hash");
        assert_eq!(Digest::of_json(&value).unwrap(), hash);
        assert_eq!(check_line(&line).unwrap().seq, 12);
    }

    #[test]
    fn a_nested_hash_member_does_not_confuse_the_check() {
        let body = Body::Job {
            job: JobId::new("j1").unwrap(),
            at: 0,
            agent: AgentName::new("a").unwrap(),
            input: json!({"hash": "0000", "x": [{"hash": 1}], "s": "\\\",\"hash\":\""}),
            plan: Digest::ZERO,
            parent: None,
            via: None,
        };
        let (line, hash) = seal(1, &Digest::ZERO, &body).unwrap();
        assert_eq!(parse_line(&line).unwrap().hash, hash);
        assert_eq!(parse_line(&line).unwrap().body, body);
    }

    #[test]
    fn a_line_is_canonical_json() {
        let (line, _) = seal(7, &Digest::ZERO, &job_body()).unwrap();
        let reparsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(canon::to_string(&reparsed).unwrap(), line);
        assert!(line.starts_with("{\"agent\":\"advance\",\"at\":0,\"hash\":"));
    }
}
