//! Decisions: the inert data a model or template may propose, and the names
//! that identify jobs, agents and decision types once they enter the core.
//!
//! Owns parsing at the edge (names, payloads); it does not decide whether a
//! decision runs (that is [`crate::gate`]) or how (that is [`crate::exec`]).
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use crate::canon::{self, CanonError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Longest name of a job, agent, role or decision type, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} '{name}' is longer than {max} bytes")]
    TooLong {
        what: &'static str,
        name: String,
        max: usize,
    },
    #[error("{what} '{name}' may hold only letters, digits, '.', '_' and '-' and must start with a letter or digit")]
    BadChar { what: &'static str, name: String },
}

pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), NameError> {
    check_name_within(what, name, MAX_NAME_BYTES)
}

fn check_name_within(what: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > max {
        return Err(NameError::TooLong {
            what,
            name: name.chars().take(40).collect::<String>() + "…",
            max,
        });
    }
    let ok_first = name.as_bytes()[0].is_ascii_alphanumeric();
    let ok_rest = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok_first || !ok_rest {
        return Err(NameError::BadChar {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        name_type!($(#[$doc])* $ty, $what, MAX_NAME_BYTES);
    };
    ($(#[$doc:meta])* $ty:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                check_name_within($what, &name, $max)?;
                Ok($ty(name))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $ty::new(text).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $ty::new(s)
            }
        }
    };
}

name_type!(
    /// A job's id; also the stem of its inbox and result files, so at most
    /// [`crate::ids::MAX_JOB_ID_BYTES`] long.
    JobId,
    "job id",
    crate::ids::MAX_JOB_ID_BYTES
);
name_type!(
    /// An agent's name, as in its manifest.
    AgentName,
    "agent name"
);
name_type!(
    /// A role's name, as in its manifest.
    RoleName,
    "role name"
);
name_type!(
    /// A registered decision type, such as `advance` or `fs.write`.
    DecisionType,
    "decision type"
);

/// A decision's id, set by the runtime from (job, turn, position), never by the
/// agent: `<job>#<turn>.<position>`, turns from 1, positions from 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DecisionId(String);

impl DecisionId {
    pub fn new(job: &JobId, turn: u32, position: u32) -> DecisionId {
        DecisionId(format!("{job}#{turn}.{position}"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an agent proposes: a type and a payload, nothing else. The runtime
/// turns it into a [`Decision`] by adding the id and the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub payload: Value,
}

/// An accepted or proposed decision: inert, serializable data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub id: DecisionId,
    /// The agent that proposed it; set by the runtime.
    pub source: AgentName,
    /// Kept as the proposed text: an unregistered or malformed type is the
    /// gate's to reject and the log's to record, not a parse error.
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: Value,
}

impl Decision {
    /// Stamps a proposal with the runtime's id and source.
    pub fn from_proposal(
        job: &JobId,
        turn: u32,
        position: u32,
        source: &AgentName,
        proposal: Proposal,
    ) -> Decision {
        Decision {
            id: DecisionId::new(job, turn, position),
            source: source.clone(),
            kind: proposal.kind,
            payload: proposal.payload,
        }
    }
}

/// Parses proposals from a model's or template's text: either a JSON list of
/// `{type, payload}` or an object `{"decisions": [...]}`.
pub fn parse_proposals(text: &str) -> Result<Vec<Proposal>, String> {
    let value: Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("not valid JSON ({e})"))?;
    let list = match value {
        Value::Array(items) => items,
        Value::Object(mut map) => match map.remove("decisions") {
            Some(Value::Array(items)) if map.is_empty() => items,
            _ => return Err("expected a list of decisions or {\"decisions\": [...]}".into()),
        },
        _ => return Err("expected a list of decisions or {\"decisions\": [...]}".into()),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value::<Proposal>(item).map_err(|e| {
                format!("decision {i}: {e}; each decision is {{\"type\": ..., \"payload\": ...}}")
            })
        })
        .collect()
}

/// Parses a job input or payload given as JSON text, refusing what has no
/// canonical form (numbers out of range) and what exceeds the payload limit.
pub fn parse_json_arg(text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!("not valid JSON: {e} (numbers must be finite; quote strings, e.g. '{{\"note\": \"hi\"}}')")
    })?;
    check_payload(&value).map_err(|e| e.to_string())?;
    Ok(value)
}

/// Checks that a payload (or a job input, or a tool's result) has a
/// canonical form within [`canon::MAX_PAYLOAD_BYTES`] that reads back as
/// it is: no integer a double cannot hold ([`canon::inexact_integer`]).
pub fn check_payload(value: &Value) -> Result<(), CanonError> {
    canon::to_string_limited(value, canon::MAX_PAYLOAD_BYTES)?;
    match canon::inexact_integer(value) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl DecisionId {
    /// The (turn, position) this id was made from, if it is one of ours.
    pub fn turn_position(&self) -> Option<(u32, u32)> {
        let (_, tail) = self.0.rsplit_once('#')?;
        let (turn, pos) = tail.split_once('.')?;
        Some((turn.parse().ok()?, pos.parse().ok()?))
    }

    /// Whether this is the id [`new`](Self::new) gives for these, compared
    /// without building that id (the gate asks for every decision).
    pub fn is_for(&self, job: &JobId, turn: u32, position: u32) -> bool {
        let rest = self.0.strip_prefix(job.as_str());
        let rest = rest.and_then(|r| r.strip_prefix('#'));
        let rest = rest.and_then(|r| r.strip_prefix(itoa::Buffer::new().format(turn)));
        let rest = rest.and_then(|r| r.strip_prefix('.'));
        rest == Some(itoa::Buffer::new().format(position))
    }
}

/// The first `max_chars` characters of `text`, with "…" when cut: for
/// showing untrusted or large text in messages.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_refuse_path_tricks_and_empty_text() {
        assert!(JobId::new("job-1.a_b").is_ok());
        for bad in ["", "../x", ".hidden", "a/b", "a b", "é"] {
            assert!(JobId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            JobId::new("a/b").unwrap_err().to_string(),
            "job id 'a/b' may hold only letters, digits, '.', '_' and '-' and must start with a letter or digit"
        );
    }

    #[test]
    fn an_id_is_for_exactly_the_job_turn_and_position_it_was_made_from() {
        let jobs = ["a", "ab", "a1", "b"].map(|j| JobId::new(j).unwrap());
        let numbers = [0, 1, 2, 10, 11, 21, 102, u32::MAX];
        for made in &jobs {
            for &turn in &numbers {
                for &position in &numbers {
                    let id = DecisionId::new(made, turn, position);
                    for job in &jobs {
                        for &t in &numbers {
                            for &p in &numbers {
                                assert_eq!(
                                    id.is_for(job, t, p),
                                    id == DecisionId::new(job, t, p),
                                    "{id} for {job} {t} {p}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_runtime_sets_id_and_source() {
        let job = JobId::new("j1").unwrap();
        let agent = AgentName::new("worker").unwrap();
        let d = Decision::from_proposal(
            &job,
            2,
            1,
            &agent,
            Proposal {
                kind: "advance".into(),
                payload: json!({}),
            },
        );
        assert_eq!(d.id.as_str(), "j1#2.1");
        assert_eq!(d.source, agent);
    }

    #[test]
    fn a_proposal_cannot_smuggle_its_own_source() {
        let err =
            parse_proposals(r#"[{"type":"advance","payload":{},"source":"admin"}]"#).unwrap_err();
        assert!(err.contains("unknown field `source`"), "{err}");
    }

    #[test]
    fn proposals_parse_from_a_list_or_a_decisions_object() {
        let a = parse_proposals(r#"[{"type":"advance","payload":{"events":["start"]}}]"#).unwrap();
        let b =
            parse_proposals(r#"{"decisions":[{"type":"advance","payload":{"events":["start"]}}]}"#)
                .unwrap();
        assert_eq!(a, b);
        assert!(parse_proposals("not json")
            .unwrap_err()
            .starts_with("not valid JSON"));
    }

    #[test]
    fn non_finite_and_oversized_inputs_are_refused_with_a_reason() {
        let err = parse_json_arg(r#"{"x": 1e400}"#).unwrap_err();
        assert!(err.starts_with("not valid JSON"), "{err}");
        let big = format!(r#"{{"x": "{}"}}"#, "a".repeat(canon::MAX_PAYLOAD_BYTES));
        let err = parse_json_arg(&big).unwrap_err();
        assert!(err.contains("over the limit of 1048576 bytes"), "{err}");
    }
}
