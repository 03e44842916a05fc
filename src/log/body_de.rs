//! Reading a [`Body`] straight from a record's line.
//!
//! A derived deserializer for an internally tagged enum first copies the
//! whole record into an intermediate tree to find its `kind`, then reads the
//! variant from that copy; replay reads every record of every log, and that
//! copy was a third of its time. This one reads each field once into a typed
//! slot and builds the variant when the object ends. Unknown fields (the
//! chain fields, a newer writer's additions) are skipped, as before; the
//! record's hash, checked first, vouches for every byte.

use super::record::Body;
use crate::canon::{Digest, JsonText};
use crate::decision::{AgentName, Decision, DecisionId, JobId};
use crate::state::State;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Kind,
    Job,
    At,
    Agent,
    Input,
    Plan,
    Parent,
    Via,
    Turn,
    Provider,
    Model,
    Params,
    Template,
    Inputs,
    Prompt,
    Response,
    TokensIn,
    TokensOut,
    DurationMs,
    Error,
    Decision,
    Check,
    Reason,
    Result,
    State,
    Blame,
    Action,
    Verdict,
    Time,
    Digest,
    Blob,
    Executor,
    StartedMs,
    Depth,
    TreeJobs,
    ClockMs,
    Approvers,
    ExpiresMs,
    By,
    AtMs,
    Note,
    #[serde(other)]
    Other,
}

/// A record's `kind`, read without a copy of its text.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Plan,
    Job,
    Model,
    Decision,
    Rejected,
    Effect,
    End,
    Audit,
    Waiting,
    Verdict,
}

/// `state` is a job state in `end` records and a state digest in `effect`
/// records; read without a copy of its text.
enum StateField {
    Name(State),
    Digest(Digest),
}

impl<'de> Deserialize<'de> for StateField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StateField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a job state or 64 lowercase hex digits")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StateField, E> {
                match Digest::from_hex(v) {
                    Some(digest) => Ok(StateField::Digest(digest)),
                    None => State::deserialize(de::value::StrDeserializer::<E>::new(v))
                        .map(StateField::Name),
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// `decision` is a whole decision in `decision`/`rejected` records and a
/// decision id in `effect`/`audit` records.
enum DecisionField {
    Full(Decision),
    Id(DecisionId),
}

impl<'de> Deserialize<'de> for DecisionField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DecisionField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decision or a decision id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DecisionField, E> {
                DecisionId::deserialize(de::value::StrDeserializer::<E>::new(v))
                    .map(DecisionField::Id)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DecisionField, A::Error> {
                Decision::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(DecisionField::Full)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Default)]
struct Slots {
    kind: Option<Kind>,
    job: Option<JobId>,
    at: Option<u32>,
    agent: Option<AgentName>,
    input: Option<Value>,
    plan: Option<Digest>,
    parent: Option<JobId>,
    via: Option<DecisionId>,
    turn: Option<u32>,
    provider: Option<String>,
    model: Option<String>,
    params: Option<Value>,
    template: Option<Digest>,
    inputs: Option<Digest>,
    prompt: Option<Digest>,
    response: Option<Digest>,
    tokens_in: Option<u64>,
    tokens_out: Option<u64>,
    duration_ms: Option<u64>,
    error: Option<String>,
    decision: Option<DecisionField>,
    check: Option<String>,
    reason: Option<String>,
    result: Option<Value>,
    /// An effect's or an end's result, kept as text when `kind` comes
    /// before it (as in every canonical line: keys are sorted).
    result_text: Option<JsonText>,
    state: Option<StateField>,
    blame: Option<DecisionId>,
    action: Option<String>,
    verdict: Option<String>,
    time: Option<String>,
    digest: Option<Digest>,
    blob: Option<Digest>,
    executor: Option<String>,
    started_ms: Option<u64>,
    depth: Option<u32>,
    tree_jobs: Option<u32>,
    clock_ms: Option<u64>,
    approvers: Option<Vec<String>>,
    expires_ms: Option<u64>,
    by: Option<String>,
    at_ms: Option<u64>,
    note: Option<String>,
}

impl Slots {
    fn build<E: de::Error>(self) -> Result<Body, E> {
        macro_rules! req {
            ($slot:ident) => {
                self.$slot
                    .ok_or_else(|| E::missing_field(stringify!($slot)))?
            };
        }
        Ok(match req!(kind) {
            Kind::Plan => Body::Plan {
                digest: req!(digest),
                blob: req!(blob),
                executor: req!(executor),
            },
            Kind::Job => Body::Job {
                job: req!(job),
                at: req!(at),
                agent: req!(agent),
                input: req!(input),
                plan: req!(plan),
                parent: self.parent,
                via: self.via,
                started_ms: self.started_ms,
                depth: self.depth,
                tree_jobs: self.tree_jobs,
            },
            Kind::Model => Body::Model {
                job: req!(job),
                at: req!(at),
                turn: req!(turn),
                provider: req!(provider),
                model: req!(model),
                params: req!(params),
                template: req!(template),
                inputs: req!(inputs),
                prompt: req!(prompt),
                response: req!(response),
                tokens_in: req!(tokens_in),
                tokens_out: req!(tokens_out),
                duration_ms: req!(duration_ms),
                error: self.error,
            },
            Kind::Decision => Body::Decision {
                job: req!(job),
                at: req!(at),
                decision: full_decision(req!(decision))?,
                clock_ms: self.clock_ms,
            },
            Kind::Rejected => Body::Rejected {
                job: req!(job),
                at: req!(at),
                decision: full_decision(req!(decision))?,
                check: req!(check),
                reason: req!(reason),
                clock_ms: self.clock_ms,
            },
            Kind::Effect => Body::Effect {
                job: req!(job),
                at: req!(at),
                decision: decision_id(req!(decision))?,
                result: result_text(self.result_text, self.result)?,
                error: self.error,
                state: match req!(state) {
                    StateField::Digest(digest) => digest,
                    StateField::Name(_) => {
                        return Err(E::custom("state: expected 64 lowercase hex digits"))
                    }
                },
            },
            Kind::End => Body::End {
                job: req!(job),
                at: req!(at),
                state: match req!(state) {
                    StateField::Name(state) => state,
                    StateField::Digest(_) => return Err(E::custom("state: expected a job state")),
                },
                result: result_text(self.result_text, self.result)?,
                reason: self.reason,
                blame: self.blame,
            },
            Kind::Waiting => Body::Waiting {
                job: req!(job),
                at: req!(at),
                decision: full_decision(req!(decision))?,
                approvers: req!(approvers),
                expires_ms: req!(expires_ms),
                clock_ms: self.clock_ms,
            },
            Kind::Verdict => Body::Verdict {
                job: req!(job),
                at: req!(at),
                decision: decision_id(req!(decision))?,
                verdict: req!(verdict),
                by: req!(by),
                at_ms: req!(at_ms),
                note: self.note,
                reason: self.reason,
            },
            Kind::Audit => Body::Audit {
                job: req!(job),
                agent: req!(agent),
                decision: decision_id(req!(decision))?,
                action: req!(action),
                verdict: req!(verdict),
                reason: req!(reason),
                time: req!(time),
            },
        })
    }
}

/// The result as text: as read, or encoded when it came before `kind`.
fn result_text<E: de::Error>(text: Option<JsonText>, value: Option<Value>) -> Result<JsonText, E> {
    match (text, value) {
        (Some(text), _) => Ok(text),
        (None, Some(value)) => JsonText::from_value(&value).map_err(E::custom),
        (None, None) => Err(E::missing_field("result")),
    }
}

fn full_decision<E: de::Error>(field: DecisionField) -> Result<Decision, E> {
    match field {
        DecisionField::Full(d) => Ok(d),
        DecisionField::Id(_) => Err(E::custom("decision: expected a decision object")),
    }
}

fn decision_id<E: de::Error>(field: DecisionField) -> Result<DecisionId, E> {
    match field {
        DecisionField::Id(id) => Ok(id),
        DecisionField::Full(_) => Err(E::custom("decision: expected a decision id")),
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Body;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a log record (a JSON object with a `kind`)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
        let mut s = Slots::default();
        // Each field once; a repeated one is an error, as with a derive.
        macro_rules! set {
            ($slot:ident, $name:literal) => {{
                if s.$slot.is_some() {
                    return Err(de::Error::duplicate_field($name));
                }
                s.$slot = Some(map.next_value()?);
            }};
        }
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Kind => set!(kind, "kind"),
                Field::Job => set!(job, "job"),
                Field::At => set!(at, "at"),
                Field::Agent => set!(agent, "agent"),
                Field::Input => set!(input, "input"),
                Field::Plan => set!(plan, "plan"),
                Field::Parent => s.parent = map.next_value()?,
                Field::Via => s.via = map.next_value()?,
                Field::Turn => set!(turn, "turn"),
                Field::Provider => set!(provider, "provider"),
                Field::Model => set!(model, "model"),
                Field::Params => set!(params, "params"),
                Field::Template => set!(template, "template"),
                Field::Inputs => set!(inputs, "inputs"),
                Field::Prompt => set!(prompt, "prompt"),
                Field::Response => set!(response, "response"),
                Field::TokensIn => set!(tokens_in, "tokens_in"),
                Field::TokensOut => set!(tokens_out, "tokens_out"),
                Field::DurationMs => set!(duration_ms, "duration_ms"),
                Field::Error => s.error = map.next_value()?,
                Field::Decision => set!(decision, "decision"),
                Field::Check => set!(check, "check"),
                Field::Reason => s.reason = map.next_value()?,
                Field::Result if matches!(s.kind, Some(Kind::Effect | Kind::End)) => {
                    if s.result.is_some() || s.result_text.is_some() {
                        return Err(de::Error::duplicate_field("result"));
                    }
                    s.result_text = Some(map.next_value()?);
                }
                Field::Result => set!(result, "result"),
                Field::State => set!(state, "state"),
                Field::Blame => s.blame = map.next_value()?,
                Field::Action => set!(action, "action"),
                Field::Verdict => set!(verdict, "verdict"),
                Field::Time => set!(time, "time"),
                Field::Digest => set!(digest, "digest"),
                Field::Blob => set!(blob, "blob"),
                Field::Executor => set!(executor, "executor"),
                Field::StartedMs => set!(started_ms, "started_ms"),
                Field::Depth => set!(depth, "depth"),
                Field::TreeJobs => set!(tree_jobs, "tree_jobs"),
                Field::ClockMs => set!(clock_ms, "clock_ms"),
                Field::Approvers => set!(approvers, "approvers"),
                Field::ExpiresMs => set!(expires_ms, "expires_ms"),
                Field::By => set!(by, "by"),
                Field::AtMs => set!(at_ms, "at_ms"),
                Field::Note => s.note = map.next_value()?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        s.build()
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Body, D::Error> {
        d.deserialize_map(BodyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every kind of record, with and without its optional fields.
    fn samples() -> Vec<Body> {
        let job = JobId::new("j1").unwrap();
        let agent = AgentName::new("a").unwrap();
        let id = DecisionId::new(&job, 1, 0);
        let d = Digest::of_bytes(b"x");
        let decision = Decision {
            id: id.clone(),
            source: agent.clone(),
            kind: "advance".into(),
            payload: json!({"events": ["start"]}),
        };
        vec![
            Body::Plan {
                digest: d,
                blob: d,
                executor: "jaros 0".into(),
            },
            Body::Job {
                job: job.clone(),
                at: 0,
                agent: agent.clone(),
                input: json!({"n": 1.5}),
                plan: d,
                parent: None,
                via: None,
                started_ms: None,
                depth: None,
                tree_jobs: None,
            },
            Body::Job {
                job: job.clone(),
                at: 0,
                agent: agent.clone(),
                input: json!(null),
                plan: d,
                parent: Some(JobId::new("p").unwrap()),
                via: Some(id.clone()),
                started_ms: Some(1_700_000_000_123),
                depth: Some(3),
                tree_jobs: Some(7),
            },
            Body::Model {
                job: job.clone(),
                at: 1,
                turn: 1,
                provider: "echo".into(),
                model: "m".into(),
                params: json!({"t": 0}),
                template: d,
                inputs: d,
                prompt: d,
                response: d,
                tokens_in: 1,
                tokens_out: 2,
                duration_ms: 3,
                error: Some("e".into()),
            },
            Body::Decision {
                job: job.clone(),
                at: 2,
                decision: decision.clone(),
                clock_ms: Some(12),
            },
            Body::Rejected {
                job: job.clone(),
                at: 2,
                decision,
                check: "grant".into(),
                reason: "no".into(),
                clock_ms: None,
            },
            Body::Effect {
                job: job.clone(),
                at: 3,
                decision: id.clone(),
                result: JsonText::from_value(&json!({"to": "RUNNING"})).unwrap(),
                error: None,
                state: d,
            },
            Body::End {
                job: job.clone(),
                at: 4,
                state: State::Failed,
                result: JsonText::from_value(&json!({"n": [1, "x"]})).unwrap(),
                reason: Some("r".into()),
                blame: Some(id.clone()),
            },
            Body::Audit {
                job,
                agent,
                decision: id,
                action: "fs.read".into(),
                verdict: "allowed".into(),
                reason: "".into(),
                time: "2026-01-01T00:00:00Z".into(),
            },
        ]
    }

    #[test]
    fn every_kind_reads_back_as_written_with_chain_fields_skipped() {
        for body in samples() {
            let mut value = serde_json::to_value(&body).unwrap();
            value["seq"] = json!(7);
            value["hash"] = json!("ab");
            value["newer_field"] = json!({"x": [1]});
            let text = crate::canon::to_string(&value).unwrap();
            let back: Body = serde_json::from_str(&text).unwrap();
            assert_eq!(back, body, "{text}");
        }
    }

    #[test]
    fn a_record_that_lacks_a_field_or_has_the_wrong_shape_is_refused() {
        for body in samples() {
            let value = serde_json::to_value(&body).unwrap();
            for key in ["kind", "job", "at", "decision", "state", "digest"] {
                let Some(map) = value.as_object() else {
                    continue;
                };
                if !map.contains_key(key) {
                    continue;
                }
                let mut missing = value.clone();
                missing.as_object_mut().unwrap().remove(key);
                assert!(
                    serde_json::from_value::<Body>(missing).is_err(),
                    "{} without {key}",
                    body.kind()
                );
            }
        }
        let err = serde_json::from_str::<Body>(r#"{"kind":"nope"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `nope`"), "{err}");
        let err = serde_json::from_str::<Body>(r#"{"kind":"plan","kind":"plan"}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate field `kind`"), "{err}");
        // An effect names its decision by id; a whole decision there is refused.
        let mut effect = serde_json::to_value(&samples()[6]).unwrap();
        effect["decision"] = serde_json::to_value(&samples()[4])
            .unwrap()
            .get("decision")
            .cloned()
            .unwrap();
        assert!(serde_json::from_value::<Body>(effect).is_err());
        let mut end = serde_json::to_value(&samples()[7]).unwrap();
        end["state"] = json!("SLEEPING");
        assert!(serde_json::from_value::<Body>(end.clone()).is_err());
        // A job state where a state digest belongs, and the other way round.
        end["state"] = json!(Digest::of_bytes(b"s").to_hex());
        let err = serde_json::from_value::<Body>(end).unwrap_err();
        assert!(err.to_string().contains("expected a job state"), "{err}");
        let mut effect = serde_json::to_value(&samples()[6]).unwrap();
        effect["state"] = json!("DONE");
        let err = serde_json::from_value::<Body>(effect).unwrap_err();
        assert!(err.to_string().contains("64 lowercase hex digits"), "{err}");
        // Digests are read from the line's own text, as every other field.
        let line = serde_json::to_string(&samples()[6]).unwrap();
        assert_eq!(serde_json::from_str::<Body>(&line).unwrap(), samples()[6]);
    }
}
