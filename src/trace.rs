//! OpenTelemetry traces derived from the log: every recorded job becomes a
//! tree of spans (job, turn, model call, decision with the gate's verdict,
//! effect), encoded as OTLP/HTTP JSON requests and sent to a collector.
//!
//! Owns the mapping from records to spans, the derived ids and the request
//! encoding. It reads records only through [`crate::replay::job_histories`]
//! and never writes to the data dir. Outside the deterministic plane: it
//! sends over the network, and nothing in the plane imports it.
//!
//! Ids are derived, never random, so exporting a log twice sends the same
//! bytes: a trace id is the first 16 bytes of sha256(`trace:<root job>`),
//! where the root is the first job of the hand-off tree; a span id is the
//! first 8 bytes of sha256(`<kind>:<id>`) for the kinds `job` (a job id),
//! `turn` (`<job>#<turn>`), `model` (`<job>@<at>`, its record's position in
//! the job's history), `decision` and `effect` (a decision id).
//!
//! Times come from the records, which carry no wall-clock time but the
//! job's: a job starts at its `started_ms` (Unix ms); a model call lasts its
//! recorded `duration_ms` from where the job's clock stands; a decision sits
//! at its `clock_ms` (ms since the job started, read when the gate checked
//! it); an effect is a point at its decision's time (effect durations are not
//! recorded); a turn and a job end at their last child's end.

use crate::canon::Digest;
use crate::decision::{DecisionId, JobId};
use crate::log::Body;
use crate::state::State;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// Spans in one OTLP request; a collector's default limit on a request's
/// size (4 MiB in the OpenTelemetry Collector) stays far away.
pub const MAX_SPANS_PER_REQUEST: usize = 512;

/// Most bytes of one request body, past which the spans go on in another
/// request: well under a collector's default limit (4 MiB in the
/// OpenTelemetry Collector), whatever a job holds.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Most bytes of a string attribute or status message (a gate's reason, a
/// tool's error); longer ones are cut at a character boundary and end in
/// `…`, so one span stays far below [`MAX_REQUEST_BYTES`].
pub const MAX_ATTRIBUTE_BYTES: usize = 4096;

/// How long one request may take, connecting included.
pub const SEND_TIMEOUT_MS: u64 = 10_000;

/// How many parent links are followed to find a job's root: a bound for a
/// log whose parent links loop (which a valid log never has).
pub const MAX_ROOT_HOPS: usize = 10_000;

/// OTLP span kinds.
const KIND_INTERNAL: u8 = 1;
const KIND_CLIENT: u8 = 3;

/// OTLP status codes.
const STATUS_OK: u8 = 1;
const STATUS_ERROR: u8 = 2;

/// The trace id of the hand-off tree whose first job is `root`.
pub fn trace_id(root: &JobId) -> [u8; 16] {
    let digest = Sha256::digest(format!("trace:{root}").as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// The id of the span of kind `kind` (`job`, `turn`, `model`, `decision`,
/// `effect`) for `id`.
pub fn span_id(kind: &str, id: &str) -> [u8; 8] {
    let digest = Sha256::digest(format!("{kind}:{id}").as_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(u64),
}

/// One span, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: u8,
    /// Unix ms.
    pub start_ms: u64,
    pub end_ms: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// Linked spans (trace id, span id): a job's hand-off parent.
    pub links: Vec<([u8; 16], [u8; 8])>,
    /// `Some(message)` marks the span an error.
    pub error: Option<String>,
}

/// Which jobs to export.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only the hand-off tree this job belongs to.
    pub job: Option<JobId>,
    /// Only jobs started at or after this Unix ms.
    pub since_ms: Option<u64>,
}

/// Why nothing can be exported.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("job '{0}' is not in any log of the data dir; `jaros status` lists the jobs")]
    UnknownJob(JobId),
}

/// The spans of the selected jobs, jobs in id order, each job's spans in
/// the order of its records.
pub fn spans(
    histories: &BTreeMap<JobId, Vec<Body>>,
    selection: &Selection,
) -> Result<Vec<Span>, TraceError> {
    let parents: BTreeMap<&JobId, &JobId> = histories
        .iter()
        .filter_map(|(job, h)| match h.first() {
            Some(Body::Job {
                parent: Some(p), ..
            }) => Some((job, p)),
            _ => None,
        })
        .collect();
    let root_of = |job: &JobId| -> JobId {
        let mut at = job;
        for _ in 0..MAX_ROOT_HOPS {
            match parents.get(at) {
                Some(p) => at = p,
                None => break,
            }
        }
        at.clone()
    };
    let wanted_root = match &selection.job {
        Some(job) if !histories.contains_key(job) => {
            return Err(TraceError::UnknownJob(job.clone()))
        }
        Some(job) => Some(root_of(job)),
        None => None,
    };
    let mut out = Vec::new();
    for (job, history) in histories {
        let root = root_of(job);
        if wanted_root.as_ref().is_some_and(|w| *w != root) {
            continue;
        }
        let started = match history.first() {
            Some(Body::Job { started_ms, .. }) => started_ms.unwrap_or(0),
            _ => continue,
        };
        if selection.since_ms.is_some_and(|since| started < since) {
            continue;
        }
        job_spans(job, &root, history, &mut out);
    }
    Ok(out)
}

/// Appends one job's spans (its history as [`crate::replay::job_history`]
/// gives it; `root` the first job of its hand-off tree).
pub fn job_spans(job: &JobId, root: &JobId, history: &[Body], out: &mut Vec<Span>) {
    let trace = trace_id(root);
    let Some(Body::Job {
        agent,
        parent,
        via,
        started_ms,
        ..
    }) = history.first()
    else {
        return;
    };
    let start = started_ms.unwrap_or(0);
    let job_span = span_id("job", job.as_str());
    let mut attributes = vec![
        ("jaros.job.id", AttrValue::Str(job.to_string())),
        ("jaros.agent", AttrValue::Str(agent.to_string())),
    ];
    let mut links = Vec::new();
    if let Some(p) = parent {
        attributes.push(("jaros.job.parent", AttrValue::Str(p.to_string())));
        links.push((trace, span_id("job", p.as_str())));
    }
    if let Some(v) = via {
        attributes.push(("jaros.job.via", AttrValue::Str(v.to_string())));
    }
    let job_index = out.len();
    out.push(Span {
        trace_id: trace,
        span_id: job_span,
        // A child job hangs under the hand-off decision that created it.
        parent: via
            .as_ref()
            .map(|v| span_id("decision", v.as_str()))
            .or_else(|| parent.as_ref().map(|p| span_id("job", p.as_str()))),
        name: format!("job {agent}"),
        kind: KIND_INTERNAL,
        start_ms: start,
        end_ms: start,
        attributes,
        links,
        error: None,
    });

    // The job's clock, in ms since it started.
    let mut clock: u64 = 0;
    // Per turn: its span's index in `out`.
    let mut turns: BTreeMap<u32, usize> = BTreeMap::new();
    let mut decision_types: BTreeMap<&DecisionId, &str> = BTreeMap::new();
    let first_span = out.len();
    for (at, body) in history.iter().enumerate() {
        match body {
            Body::Model {
                turn,
                provider,
                model,
                tokens_in,
                tokens_out,
                duration_ms,
                prompt,
                response,
                error,
                ..
            } => {
                let parent = turn_span(job, trace, job_span, *turn, start + clock, &mut turns, out);
                out.push(Span {
                    trace_id: trace,
                    span_id: span_id("model", &format!("{job}@{at}")),
                    parent: Some(parent),
                    name: format!("chat {model}"),
                    kind: KIND_CLIENT,
                    start_ms: start + clock,
                    end_ms: start + clock + duration_ms,
                    attributes: vec![
                        ("gen_ai.operation.name", AttrValue::Str("chat".into())),
                        ("gen_ai.system", AttrValue::Str(provider.clone())),
                        ("gen_ai.request.model", AttrValue::Str(model.clone())),
                        ("gen_ai.usage.input_tokens", AttrValue::Int(*tokens_in)),
                        ("gen_ai.usage.output_tokens", AttrValue::Int(*tokens_out)),
                        ("jaros.model.prompt", AttrValue::Str(hex(prompt))),
                        ("jaros.model.response", AttrValue::Str(hex(response))),
                    ],
                    links: Vec::new(),
                    error: error.clone(),
                });
                clock += duration_ms;
            }
            Body::Decision {
                decision, clock_ms, ..
            }
            | Body::Rejected {
                decision, clock_ms, ..
            } => {
                clock = clock.max(clock_ms.unwrap_or(0));
                decision_types.insert(&decision.id, &decision.kind);
                let turn = decision.id.turn_position().map_or(0, |(t, _)| t);
                let parent = turn_span(job, trace, job_span, turn, start + clock, &mut turns, out);
                let mut attributes = vec![
                    ("jaros.decision.id", AttrValue::Str(decision.id.to_string())),
                    ("jaros.decision.type", AttrValue::Str(decision.kind.clone())),
                    (
                        "jaros.decision.source",
                        AttrValue::Str(decision.source.to_string()),
                    ),
                ];
                let mut error = None;
                if let Body::Rejected { check, reason, .. } = body {
                    attributes.push(("jaros.gate.verdict", AttrValue::Str("rejected".into())));
                    attributes.push(("jaros.gate.check", AttrValue::Str(check.clone())));
                    attributes.push(("jaros.gate.reason", AttrValue::Str(reason.clone())));
                    error = Some(format!("the gate rejected it ({check}): {reason}"));
                } else {
                    attributes.push(("jaros.gate.verdict", AttrValue::Str("accepted".into())));
                }
                out.push(Span {
                    trace_id: trace,
                    span_id: span_id("decision", decision.id.as_str()),
                    parent: Some(parent),
                    name: format!("decision {}", decision.kind),
                    kind: KIND_INTERNAL,
                    start_ms: start + clock,
                    end_ms: start + clock,
                    attributes,
                    links: Vec::new(),
                    error,
                });
            }
            Body::Effect {
                decision,
                error,
                state,
                ..
            } => {
                let kind = decision_types.get(decision).copied().unwrap_or("unknown");
                out.push(Span {
                    trace_id: trace,
                    span_id: span_id("effect", decision.as_str()),
                    parent: Some(span_id("decision", decision.as_str())),
                    name: format!("effect {kind}"),
                    kind: KIND_INTERNAL,
                    start_ms: start + clock,
                    end_ms: start + clock,
                    attributes: vec![
                        ("jaros.decision.id", AttrValue::Str(decision.to_string())),
                        ("jaros.effect.state", AttrValue::Str(hex(state))),
                    ],
                    links: Vec::new(),
                    error: error.clone(),
                });
            }
            Body::End {
                state,
                reason,
                blame,
                ..
            } => {
                let span = &mut out[job_index];
                span.attributes
                    .push(("jaros.job.state", AttrValue::Str(state.to_string())));
                if let Some(b) = blame {
                    span.attributes
                        .push(("jaros.job.blame", AttrValue::Str(b.to_string())));
                }
                if *state == State::Failed {
                    span.error = Some(reason.clone().unwrap_or_else(|| "failed".into()));
                }
            }
            // A wait for a person is not a span of work; the verdict shows
            // in the decision or rejection that follows it.
            Body::Job { .. }
            | Body::Plan { .. }
            | Body::Audit { .. }
            | Body::Waiting { .. }
            | Body::Verdict { .. } => {}
        }
    }
    // A turn and the job end where their last child ends.
    let ends: Vec<([u8; 8], u64)> = out[first_span..]
        .iter()
        .filter_map(|s| s.parent.map(|p| (p, s.end_ms)))
        .collect();
    for &index in turns.values() {
        let id = out[index].span_id;
        let end = ends.iter().filter(|(p, _)| *p == id).map(|(_, e)| *e).max();
        if let Some(end) = end {
            out[index].end_ms = out[index].end_ms.max(end);
        }
    }
    let end = out[first_span..]
        .iter()
        .map(|s| s.end_ms)
        .max()
        .unwrap_or(start);
    out[job_index].end_ms = out[job_index].end_ms.max(end);
}

/// The span id of `turn`'s span, pushing the span the first time the turn
/// is seen (turn 0: records outside any turn hang under the job).
fn turn_span(
    job: &JobId,
    trace: [u8; 16],
    job_span: [u8; 8],
    turn: u32,
    at_ms: u64,
    turns: &mut BTreeMap<u32, usize>,
    out: &mut Vec<Span>,
) -> [u8; 8] {
    if turn == 0 {
        return job_span;
    }
    if let Some(&index) = turns.get(&turn) {
        return out[index].span_id;
    }
    let id = span_id("turn", &format!("{job}#{turn}"));
    turns.insert(turn, out.len());
    out.push(Span {
        trace_id: trace,
        span_id: id,
        parent: Some(job_span),
        name: format!("turn {turn}"),
        kind: KIND_INTERNAL,
        start_ms: at_ms,
        end_ms: at_ms,
        attributes: vec![("jaros.turn", AttrValue::Int(u64::from(turn)))],
        links: Vec::new(),
        error: None,
    });
    id
}

fn hex(d: &Digest) -> String {
    d.to_hex()
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The OTLP/HTTP JSON request bodies for `spans`, in order: at most
/// [`MAX_SPANS_PER_REQUEST`] spans and about [`MAX_REQUEST_BYTES`] each
/// (a request holds at least one span). Ids are hex, as OTLP/JSON writes
/// them; 64-bit integers are decimal strings.
pub fn requests(spans: &[Span]) -> Vec<String> {
    batches(spans).into_iter().map(|(_, body)| body).collect()
}

/// [`requests`], each with how many spans it holds.
pub fn batches(spans: &[Span]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut batch: Vec<String> = Vec::new();
    let mut bytes = 0;
    for span in spans {
        let encoded = encode_span(span).to_string();
        let full = batch.len() >= MAX_SPANS_PER_REQUEST
            || bytes + encoded.len() + REQUEST_FRAME_BYTES > MAX_REQUEST_BYTES;
        if full && !batch.is_empty() {
            out.push((batch.len(), request(&batch)));
            batch.clear();
            bytes = 0;
        }
        bytes += encoded.len() + 1;
        batch.push(encoded);
    }
    if !batch.is_empty() {
        out.push((batch.len(), request(&batch)));
    }
    out
}

/// Room for what a request holds besides its spans (resource, scope).
const REQUEST_FRAME_BYTES: usize = 256;

/// One request around spans already encoded.
fn request(spans: &[String]) -> String {
    let frame = json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                attribute("service.name", &AttrValue::Str("jaros".into())),
            ]},
            "scopeSpans": [{
                "scope": {"name": "jaros", "version": env!("CARGO_PKG_VERSION")},
                "spans": [],
            }],
        }],
    })
    .to_string();
    // The spans go where the empty array is; the frame holds no other.
    let (head, tail) = frame
        .split_once("\"spans\":[]")
        .expect("the frame holds an empty span array");
    format!("{head}\"spans\":[{}]{tail}", spans.join(","))
}

/// `text` cut to at most [`MAX_ATTRIBUTE_BYTES`] at a character boundary,
/// ending in `…` when cut.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_ATTRIBUTE_BYTES {
        return text.to_string();
    }
    let mut end = MAX_ATTRIBUTE_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn attribute(key: &str, value: &AttrValue) -> Value {
    let value = match value {
        AttrValue::Str(s) => json!({"stringValue": bounded(s)}),
        AttrValue::Int(n) => json!({"intValue": n.to_string()}),
    };
    json!({"key": key, "value": value})
}

fn encode_span(s: &Span) -> Value {
    let mut span = json!({
        "traceId": hex_bytes(&s.trace_id),
        "spanId": hex_bytes(&s.span_id),
        "name": bounded(&s.name),
        "kind": s.kind,
        "startTimeUnixNano": (u128::from(s.start_ms) * 1_000_000).to_string(),
        "endTimeUnixNano": (u128::from(s.end_ms) * 1_000_000).to_string(),
        "attributes": s.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
        "status": match &s.error {
            Some(message) => json!({"code": STATUS_ERROR, "message": bounded(message)}),
            None => json!({"code": STATUS_OK}),
        },
    });
    if let Some(p) = s.parent {
        span["parentSpanId"] = json!(hex_bytes(&p));
    }
    if !s.links.is_empty() {
        span["links"] = s
            .links
            .iter()
            .map(|(t, id)| {
                json!({
                    "traceId": hex_bytes(t),
                    "spanId": hex_bytes(id),
                    "attributes": [attribute("jaros.link", &AttrValue::Str("handoff".into()))],
                })
            })
            .collect();
    }
    span
}

/// The traces endpoint for `url`: a base URL gets `/v1/traces` appended (as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` does); a URL already ending in it is kept.
pub fn endpoint(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/v1/traces") {
        url.to_string()
    } else {
        format!("{url}/v1/traces")
    }
}

/// POSTs each request body to `url`'s traces endpoint, in order; stops at
/// the first that fails, saying which and why.
pub fn send(url: &str, bodies: &[String]) -> Result<(), String> {
    send_within(url, bodies, SEND_TIMEOUT_MS)
}

/// [`send`], each request given at most `timeout_ms`.
pub fn send_within(url: &str, bodies: &[String], timeout_ms: u64) -> Result<(), String> {
    let endpoint = endpoint(url);
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(std::time::Duration::from_millis(timeout_ms)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    for (i, body) in bodies.iter().enumerate() {
        let which = format!("request {} of {} to {endpoint}", i + 1, bodies.len());
        let mut resp = agent
            .post(&endpoint)
            .header("Content-Type", "application/json")
            .send(body.as_str())
            .map_err(|e| format!("{which} failed: {e}; is the collector listening there?"))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let text = resp
                .body_mut()
                .read_to_string()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect::<String>();
            return Err(format!(
                "{which} was refused with HTTP {status}: {text}; check the URL (OTLP/HTTP JSON, e.g. http://127.0.0.1:4318)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canon::JsonText;
    use crate::datadir::DataDir;
    use crate::decision::{AgentName, Decision};
    use crate::log::LogWriter;

    fn job(id: &str) -> JobId {
        JobId::new(id).unwrap()
    }

    /// The `job` record of a root job of the planner's, started at a fixed time.
    fn planner_job(job: JobId) -> Body {
        Body::Job {
            job,
            at: 0,
            agent: AgentName::new("planner").unwrap(),
            input: serde_json::json!({}),
            plan: Digest::ZERO,
            parent: None,
            via: None,
            started_ms: Some(1_700_000_000_000),
            depth: None,
            tree_jobs: None,
        }
    }

    fn decision(job_id: &str, turn: u32, kind: &str) -> Decision {
        Decision {
            id: DecisionId::new(&job(job_id), turn, 0),
            source: AgentName::new("planner").unwrap(),
            kind: kind.into(),
            payload: serde_json::json!({}),
        }
    }

    /// A log holding a root job (a model call, a hand-off) and its child.
    fn write_log(data: &DataDir) {
        let (log, _) = LogWriter::open(&data.log_path("n1")).unwrap();
        let handoff = decision("root", 1, "handoff");
        let bodies = vec![
            planner_job(job("root")),
            Body::Model {
                job: job("root"),
                at: 1,
                turn: 1,
                provider: "ollama".into(),
                model: "qwen".into(),
                params: serde_json::json!({}),
                template: Digest::ZERO,
                inputs: Digest::ZERO,
                prompt: Digest::ZERO,
                response: Digest::ZERO,
                tokens_in: 12,
                tokens_out: 34,
                duration_ms: 250,
                error: None,
            },
            Body::Decision {
                job: job("root"),
                at: 2,
                decision: handoff.clone(),
                clock_ms: Some(300),
            },
            Body::Effect {
                job: job("root"),
                at: 3,
                decision: handoff.id.clone(),
                result: JsonText::from_value(&serde_json::json!({})).unwrap(),
                error: None,
                state: Digest::ZERO,
            },
            Body::Job {
                job: job("child"),
                at: 0,
                agent: AgentName::new("advance").unwrap(),
                input: serde_json::json!({}),
                plan: Digest::ZERO,
                parent: Some(job("root")),
                via: Some(handoff.id.clone()),
                started_ms: Some(1_700_000_000_400),
                depth: Some(1),
                tree_jobs: None,
            },
            Body::Rejected {
                job: job("child"),
                at: 1,
                decision: decision("child", 1, "fs.write"),
                check: "grant".into(),
                reason: "not granted".into(),
                clock_ms: Some(5),
            },
        ];
        for body in &bodies {
            log.append(body).unwrap();
        }
    }

    fn hex_of(bytes: &[u8]) -> String {
        hex_bytes(bytes)
    }

    #[test]
    fn two_exports_of_one_log_are_byte_identical_and_ids_are_derived() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        write_log(&data);
        let export = || {
            let histories = crate::replay::job_histories(&data).unwrap();
            requests(&spans(&histories, &Selection::default()).unwrap())
        };
        let first = export();
        assert_eq!(first, export());
        assert_eq!(first.len(), 1);

        // As documented: trace id = 16 bytes of sha256("trace:<root>"),
        // span id = 8 bytes of sha256("<kind>:<id>").
        let trace = hex_of(&Sha256::digest(b"trace:root")[..16]);
        let root_span = hex_of(&Sha256::digest(b"job:root")[..8]);
        let handoff_span = hex_of(&Sha256::digest(b"decision:root#1.0")[..8]);
        let request: Value = serde_json::from_str(&first[0]).unwrap();
        let spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .unwrap();
        let named = |name: &str| spans.iter().find(|s| s["name"] == name).unwrap();
        assert!(spans.iter().all(|s| s["traceId"] == trace.as_str()));
        assert_eq!(named("job planner")["spanId"], root_span.as_str());
        assert_eq!(named("decision handoff")["spanId"], handoff_span.as_str());
        // The child hangs under the hand-off and links to its parent job.
        let child = named("job advance");
        assert_eq!(child["parentSpanId"], handoff_span.as_str());
        assert_eq!(child["links"][0]["spanId"], root_span.as_str());
        // Times from the records: the model call lasts its duration from
        // the job's start; the rejected decision is an error.
        let model = named("chat qwen");
        assert_eq!(model["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(model["endTimeUnixNano"], "1700000000250000000");
        assert_eq!(named("decision fs.write")["status"]["code"], 2);
    }

    #[test]
    fn a_huge_job_is_sent_in_bounded_requests_that_keep_every_span_in_order() {
        let id = job("huge");
        let mut history = vec![planner_job(id.clone())];
        // 2,000 refusals in 20 turns, each with a long reason, some with a
        // reason of a megabyte (a multi-byte character straddling the cut):
        // more bytes than a request may hold long before 512 spans.
        let long = format!("x{}", "é".repeat(512 * 1024));
        for i in 0..2_000u32 {
            history.push(Body::Rejected {
                job: id.clone(),
                at: i + 1,
                decision: decision("huge", 1 + i / 100, &format!("t{i}")),
                check: "grant".into(),
                reason: if i % 250 == 0 {
                    long.clone()
                } else {
                    "n".repeat(3_000)
                },
                clock_ms: Some(u64::from(i)),
            });
        }
        let histories: BTreeMap<JobId, Vec<Body>> = [(id, history)].into_iter().collect();
        let spans = spans(&histories, &Selection::default()).unwrap();
        assert_eq!(spans.len(), 1 + 20 + 2_000);
        let bodies = requests(&spans);
        assert!(bodies.len() >= 8, "{} requests", bodies.len());
        let mut names = Vec::new();
        for body in &bodies {
            assert!(body.len() <= MAX_REQUEST_BYTES, "{} bytes", body.len());
            let v: Value = serde_json::from_str(body).unwrap();
            let sent = v["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap();
            assert!(!sent.is_empty() && sent.len() <= MAX_SPANS_PER_REQUEST);
            for s in sent {
                for a in s["attributes"].as_array().unwrap() {
                    let text = a["value"]["stringValue"].as_str().unwrap_or("");
                    assert!(text.len() <= MAX_ATTRIBUTE_BYTES, "{}", a["key"]);
                }
                let message = s["status"]["message"].as_str().unwrap_or("");
                assert!(message.len() <= MAX_ATTRIBUTE_BYTES);
                names.push(s["name"].as_str().unwrap().to_string());
            }
        }
        let want: Vec<String> = spans.iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, want);
        let cut = bounded(&long);
        assert!(cut.ends_with('…') && cut.starts_with("xé"), "{}", &cut[..8]);
        assert!(cut.len() <= MAX_ATTRIBUTE_BYTES);
    }

    #[test]
    fn a_job_selects_its_whole_hand_off_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        write_log(&data);
        let histories = crate::replay::job_histories(&data).unwrap();
        let selection = Selection {
            job: Some(job("child")),
            since_ms: None,
        };
        let names: Vec<String> = spans(&histories, &selection)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert!(names.contains(&"job planner".to_string()), "{names:?}");
        let later = Selection {
            job: None,
            since_ms: Some(1_700_000_000_100),
        };
        let names: Vec<String> = spans(&histories, &later)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names[0], "job advance");
        assert!(!names.contains(&"job planner".to_string()));
        let unknown = Selection {
            job: Some(job("nope")),
            since_ms: None,
        };
        assert!(spans(&histories, &unknown).is_err());
    }
}
