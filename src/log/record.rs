//! The records of the log and their encoding: canonical JSON, one per line,
//! chained by `prev` and sealed by `hash`.

use crate::canon::{self, Digest};
use crate::decision::{AgentName, Decision, DecisionId, JobId};
use crate::state::State;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a record says; its `kind` is the tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
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
    Decision { job: JobId, at: u32, decision: Decision },
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

/// Encodes a record's line (without the newline) and its hash.
pub fn seal(seq: u64, prev: &Digest, body: &Body) -> Result<(String, Digest), canon::CanonError> {
    let mut map = match serde_json::to_value(body).expect("record bodies serialize") {
        Value::Object(map) => map,
        _ => unreachable!("an internally tagged enum serializes to an object"),
    };
    map.insert("seq".into(), Value::from(seq));
    map.insert("prev".into(), Value::String(prev.to_hex()));
    let mut value = Value::Object(map);
    let hash = Digest::of_json(&value)?;
    if let Value::Object(map) = &mut value {
        map.insert("hash".into(), Value::String(hash.to_hex()));
    }
    Ok((canon::to_string(&value)?, hash))
}

/// Parses one line and checks its own hash (not yet its place in the chain).
pub fn parse_line(line: &str) -> Result<Record, RecordError> {
    let value: Value = serde_json::from_str(line).map_err(|e| RecordError::NotJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(RecordError::NotJson("not an object".into()));
    };
    let hash = take_digest(&mut map, "hash")?;
    let seq = map.get("seq").and_then(Value::as_u64).ok_or(RecordError::Field("seq"))?;
    let prev = map
        .get("prev")
        .and_then(Value::as_str)
        .and_then(Digest::from_hex)
        .ok_or(RecordError::Field("prev"))?;
    let value = Value::Object(map);
    let actual = Digest::of_json(&value).map_err(|e| RecordError::Canon(e.to_string()))?;
    if actual != hash {
        return Err(RecordError::HashMismatch);
    }
    let Value::Object(mut map) = value else { unreachable!() };
    map.remove("seq");
    map.remove("prev");
    let body: Body = serde_json::from_value(Value::Object(map)).map_err(|e| RecordError::Body(e.to_string()))?;
    Ok(Record { seq, prev, hash, body })
}

fn take_digest(map: &mut Map<String, Value>, field: &'static str) -> Result<Digest, RecordError> {
    match map.remove(field) {
        Some(Value::String(s)) => Digest::from_hex(&s).ok_or(RecordError::Field(field)),
        _ => Err(RecordError::Field(field)),
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
    fn a_line_is_canonical_json() {
        let (line, _) = seal(7, &Digest::ZERO, &job_body()).unwrap();
        let reparsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(canon::to_string(&reparsed).unwrap(), line);
        assert!(line.starts_with("{\"agent\":\"advance\",\"at\":0,\"hash\":"));
    }
}
