//! The records of the log and their encoding: canonical JSON, one per line,
//! chained by `prev` and sealed by `hash`.

use crate::canon::{self, Digest, JsonText};
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
        /// When the job was accepted (Unix ms): the start its wall-time
        /// budget counts from, across resumes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_ms: Option<u64>,
        /// Hand-offs between the root of the job's hand-off tree and it
        /// (absent: 0, a root).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        depth: Option<u32>,
        /// How many jobs the job's part of its hand-off tree may hold, itself
        /// included (absent: a root's, the plan's `handoff.max_jobs`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tree_jobs: Option<u32>,
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
        /// The job's wall time (ms since its `started_ms`) when the gate
        /// checked it: the clock reading its wall-time budget was checked
        /// against, read back by replay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock_ms: Option<u64>,
    },
    /// A decision the gate refused, with the check and the reason.
    Rejected {
        job: JobId,
        at: u32,
        decision: Decision,
        check: String,
        reason: String,
        /// As a `decision` record's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock_ms: Option<u64>,
    },
    /// A decision the gate accepted that a role's approval rule holds for a
    /// person's verdict (see docs/approval.md); durable before its job parks.
    Waiting {
        job: JobId,
        at: u32,
        decision: Decision,
        /// Who may answer, as the rule said when the decision was made.
        approvers: Vec<String>,
        /// Unix ms after which the request counts as denied ("expired").
        expires_ms: u64,
        /// As a `decision` record's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock_ms: Option<u64>,
    },
    /// A person's verdict on a waiting decision: an input, recorded as a
    /// model's answer is, and read back by replay. An approval is followed
    /// by the `decision` record, a denial by a `rejected` one.
    Verdict {
        job: JobId,
        at: u32,
        decision: DecisionId,
        /// `approve` or `deny`.
        verdict: String,
        by: String,
        at_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The outcome of executing a decision and the job state after it.
    Effect {
        job: JobId,
        at: u32,
        decision: DecisionId,
        /// The handler's result (recorded so replay can read back what is not
        /// deterministic), as text: replay compares a re-executed result
        /// with it and reads back only the others.
        result: JsonText,
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
        /// What [`JobState::result`](crate::jobstate::JobState::result) gave, as
        /// text: replay only compares it.
        result: JsonText,
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
            Body::Waiting { .. } => "waiting",
            Body::Verdict { .. } => "verdict",
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
            | Body::Waiting { job, at, .. }
            | Body::Verdict { job, at, .. }
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
    /// The epoch of the lease its node held on the record's job when it
    /// wrote it (the `epoch` member); 0 when none was held (a job run in the
    /// foreground, a record outside any job, a log older than epochs).
    pub epoch: u64,
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
/// `seq`, so the writer's critical section only gives it its `seq`:
/// everything before `prev` (most of a record) is hashed here, and the line
/// is written out later from its [`Holed`] text, the hash finished once the
/// record before it is hashed.
#[derive(Debug, Clone)]
pub struct Unsealed {
    text: Holed,
    /// The hash over the text up to `prev`'s value, to be continued with
    /// the chain fields.
    head: Sha256,
}

/// What a line holds before its hash's value.
const HASH_MEMBER_HEAD: &[u8] = b",\"hash\":\"";

/// A record's text without the chain fields' values and without the hash
/// member, cut at the holes: `[..hash_at]` goes up to where `,"hash":"…"`
/// goes, `[hash_at..prev_at]` up to the opening quote of `prev`'s value,
/// `[prev_at..seq_at]` from its closing quote to `"seq":`, and the rest
/// follows `seq`'s value.
#[derive(Debug, Clone)]
pub struct Holed {
    text: String,
    hash_at: usize,
    prev_at: usize,
    seq_at: usize,
}

/// Hands the members of `body` with their keys to `m`, in canonical order
/// (the keys are ASCII, so byte order is RFC 8785's UTF-16 order); the
/// encoder places the chain fields' holes among them. One typed call per
/// member, inlined with its key as a literal (a list of keyed values built
/// and walked for every record cost a quarter of the encoding).
fn members(body: &Body, m: &mut Encoder) {
    let kind = body.kind();
    match body {
        Body::Plan {
            digest,
            blob,
            executor,
        } => {
            m.digest("blob", blob);
            m.digest("digest", digest);
            m.str("executor", executor);
            m.str("kind", kind);
        }
        Body::Job {
            job,
            at,
            agent,
            input,
            plan,
            parent,
            via,
            started_ms,
            depth,
            tree_jobs,
        } => {
            m.str("agent", agent.as_str());
            m.int("at", u64::from(*at));
            m.opt_int("depth", depth.map(u64::from));
            m.json("input", input);
            m.str("job", job.as_str());
            m.str("kind", kind);
            m.opt_str("parent", parent.as_ref().map(JobId::as_str));
            m.digest("plan", plan);
            m.opt_int("started_ms", *started_ms);
            m.opt_int("tree_jobs", tree_jobs.map(u64::from));
            m.opt_str("via", via.as_ref().map(DecisionId::as_str));
        }
        Body::Model {
            job,
            at,
            turn,
            provider,
            model,
            params,
            template,
            inputs,
            prompt,
            response,
            tokens_in,
            tokens_out,
            duration_ms,
            error,
        } => {
            m.int("at", u64::from(*at));
            m.int("duration_ms", *duration_ms);
            m.opt_str("error", error.as_deref());
            m.digest("inputs", inputs);
            m.str("job", job.as_str());
            m.str("kind", kind);
            m.str("model", model);
            m.json("params", params);
            m.digest("prompt", prompt);
            m.str("provider", provider);
            m.digest("response", response);
            m.digest("template", template);
            m.int("tokens_in", *tokens_in);
            m.int("tokens_out", *tokens_out);
            m.int("turn", u64::from(*turn));
        }
        Body::Decision {
            job,
            at,
            decision,
            clock_ms,
        } => {
            m.int("at", u64::from(*at));
            m.opt_int("clock_ms", *clock_ms);
            m.decision("decision", decision);
            m.str("job", job.as_str());
            m.str("kind", kind);
        }
        Body::Rejected {
            job,
            at,
            decision,
            check,
            reason,
            clock_ms,
        } => {
            m.int("at", u64::from(*at));
            m.str("check", check);
            m.opt_int("clock_ms", *clock_ms);
            m.decision("decision", decision);
            m.str("job", job.as_str());
            m.str("kind", kind);
            m.str("reason", reason);
        }
        Body::Waiting {
            job,
            at,
            decision,
            approvers,
            expires_ms,
            clock_ms,
        } => {
            m.json("approvers", &Value::from(approvers.clone()));
            m.int("at", u64::from(*at));
            m.opt_int("clock_ms", *clock_ms);
            m.decision("decision", decision);
            m.int("expires_ms", *expires_ms);
            m.str("job", job.as_str());
            m.str("kind", kind);
        }
        Body::Verdict {
            job,
            at,
            decision,
            verdict,
            by,
            at_ms,
            note,
            reason,
        } => {
            m.int("at", u64::from(*at));
            m.int("at_ms", *at_ms);
            m.str("by", by);
            m.str("decision", decision.as_str());
            m.str("job", job.as_str());
            m.str("kind", kind);
            m.opt_str("note", note.as_deref());
            m.opt_str("reason", reason.as_deref());
            m.str("verdict", verdict);
        }
        Body::Effect {
            job,
            at,
            decision,
            result,
            error,
            state,
        } => {
            m.int("at", u64::from(*at));
            m.str("decision", decision.as_str());
            m.opt_str("error", error.as_deref());
            m.str("job", job.as_str());
            m.str("kind", kind);
            m.raw("result", result.as_str());
            m.digest("state", state);
        }
        Body::End {
            job,
            at,
            state,
            result,
            reason,
            blame,
        } => {
            m.int("at", u64::from(*at));
            m.opt_str("blame", blame.as_ref().map(DecisionId::as_str));
            m.str("job", job.as_str());
            m.str("kind", kind);
            m.opt_str("reason", reason.as_deref());
            m.raw("result", result.as_str());
            m.str("state", state.as_str());
        }
        Body::Audit {
            job,
            agent,
            decision,
            action,
            verdict,
            reason,
            time,
        } => {
            m.str("action", action);
            m.str("agent", agent.as_str());
            m.str("decision", decision.as_str());
            m.str("job", job.as_str());
            m.str("kind", kind);
            m.str("reason", reason);
            m.str("time", time);
            m.str("verdict", verdict);
        }
    }
}

/// Writes a record's members as they come, cutting the text at the holes.
struct Encoder {
    out: String,
    /// The `epoch` member still to place (before the first key sorting
    /// after it), if the record has one.
    epoch: Option<u64>,
    /// Where the hash member goes, and where `prev`'s and `seq`'s values go.
    cuts: [usize; 3],
    /// How many of CHAIN_FIELDS have been placed.
    holes: usize,
    last_key: &'static str,
    error: Option<canon::CanonError>,
}

/// The member naming the lease epoch a job's record was written under.
const EPOCH_MEMBER: &str = "epoch";

/// The chain fields, in canonical order: holes the seal fills in.
const CHAIN_FIELDS: [&str; 3] = ["hash", "prev", "seq"];

/// `a < b` for non-empty keys, deciding by the first byte when it differs
/// (most do; a `memcmp` call per member showed in profiles).
fn sorts_before(a: &str, b: &str) -> bool {
    match (a.as_bytes()[0], b.as_bytes()[0]) {
        (x, y) if x != y => x < y,
        _ => a < b,
    }
}

impl Encoder {
    #[inline(always)]
    fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        canon::write_string(&mut self.out, value);
    }

    #[inline(always)]
    fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    /// Through the canonical number rules, without allocating. Past 2^53 an
    /// integer would be written as the double it rounds to, which reads back
    /// as another number or (near 2^64) as no `u64` at all, so the record is
    /// refused instead: every line the writer seals reads back as written.
    #[inline(always)]
    fn int(&mut self, key: &'static str, n: u64) {
        self.key(key);
        if n > canon::MAX_EXACT_INTEGER {
            self.error.get_or_insert(canon::CanonError::Inexact {
                field: key,
                value: n,
            });
        }
        canon::write_u64(&mut self.out, n);
    }

    #[inline(always)]
    fn opt_int(&mut self, key: &'static str, n: Option<u64>) {
        if let Some(n) = n {
            self.int(key, n);
        }
    }

    /// Text that is already JSON, as it is.
    #[inline(always)]
    fn raw(&mut self, key: &'static str, text: &str) {
        self.key(key);
        self.out.push_str(text);
    }

    #[inline(always)]
    fn json(&mut self, key: &'static str, value: &Value) {
        self.key(key);
        self.value(value);
    }

    /// Writes a JSON value, keeping the first error for `finish`.
    #[inline(always)]
    fn value(&mut self, value: &Value) {
        if let Err(e) = canon::write_value(&mut self.out, value) {
            self.error.get_or_insert(e);
        }
    }

    #[inline(always)]
    fn digest(&mut self, key: &'static str, digest: &Digest) {
        self.key(key);
        self.out.push('"');
        self.out
            .push_str(std::str::from_utf8(&digest.hex_bytes()).expect("hex digits are ASCII"));
        self.out.push('"');
    }

    fn decision(&mut self, key: &'static str, d: &Decision) {
        self.key(key);
        // Members in canonical order: id, payload, source, type.
        self.out.push_str("{\"id\":");
        canon::write_string(&mut self.out, d.id.as_str());
        self.out.push_str(",\"payload\":");
        self.value(&d.payload);
        let out = &mut self.out;
        out.push_str(",\"source\":");
        canon::write_string(out, d.source.as_str());
        out.push_str(",\"type\":");
        canon::write_string(out, &d.kind);
        out.push('}');
    }

    /// Writes `"key":` for one member of the body, after the holes that
    /// sort before it.
    #[inline(always)]
    fn key(&mut self, key: &'static str) {
        debug_assert!(self.last_key < key, "member {key} out of order");
        debug_assert!(!CHAIN_FIELDS.contains(&key), "{key} is a chain field");
        if self.epoch.is_some() && sorts_before(EPOCH_MEMBER, key) {
            self.place_epoch();
        }
        while self.holes < CHAIN_FIELDS.len() && sorts_before(CHAIN_FIELDS[self.holes], key) {
            self.hole();
        }
        self.name(key);
    }

    /// Places the `epoch` member; it sorts before every chain field.
    fn place_epoch(&mut self) {
        if let Some(epoch) = self.epoch.take() {
            self.name(EPOCH_MEMBER);
            canon::write_u64(&mut self.out, epoch);
        }
    }

    /// Places the next chain field's hole.
    fn hole(&mut self) {
        let name = CHAIN_FIELDS[self.holes];
        self.holes += 1;
        match name {
            // Every body has a member sorting before "hash" ("agent", "at"
            // or "blob"), so the hash member is never first.
            "hash" => {
                assert!(!self.last_key.is_empty(), "hash member would be first");
                self.cuts[0] = self.out.len();
            }
            "prev" => {
                self.name(name);
                self.out.push_str("\"\"");
                self.cuts[1] = self.out.len() - 1;
            }
            _ => {
                self.name(name);
                self.cuts[2] = self.out.len();
            }
        }
    }

    /// Writes `"key":`, opening the object or separating from the last member.
    #[inline(always)]
    fn name(&mut self, key: &'static str) {
        self.out
            .push(if self.last_key.is_empty() { '{' } else { ',' });
        self.last_key = key;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    /// The text with the holes still to place, and the object closed.
    fn finish(mut self) -> Result<(String, [usize; 3]), canon::CanonError> {
        self.place_epoch();
        while self.holes < CHAIN_FIELDS.len() {
            self.hole();
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        self.out.push('}');
        Ok((self.out, self.cuts))
    }
}

/// Encodes `body` canonically with holes for the chain fields.
pub fn prepare(body: &Body) -> Result<Unsealed, canon::CanonError> {
    prepare_in(body, String::with_capacity(512))
}

/// [`prepare`] into `buf`'s memory (its content is dropped): for a writer
/// that recycles the texts of records it has written.
pub fn prepare_in(body: &Body, buf: String) -> Result<Unsealed, canon::CanonError> {
    prepare_in_epoch(body, 0, buf)
}

/// [`prepare_in`] for a record written under lease epoch `epoch` (0: none,
/// and no `epoch` member). Only a job's records carry one.
pub fn prepare_in_epoch(
    body: &Body,
    epoch: u64,
    mut buf: String,
) -> Result<Unsealed, canon::CanonError> {
    buf.clear();
    buf.reserve(512);
    let epoch = (epoch > 0 && body.job_at().is_some()).then_some(epoch);
    let mut encoder = Encoder {
        epoch,
        out: buf,
        cuts: [0; 3],
        holes: 0,
        last_key: "",
        error: None,
    };
    members(body, &mut encoder);
    let (out, cuts) = encoder.finish()?;
    let [hash_at, prev_at, seq_at] = cuts;
    let mut head = Sha256::new();
    head.update(&out.as_bytes()[..prev_at]);
    Ok(Unsealed {
        text: Holed {
            text: out,
            hash_at,
            prev_at,
            seq_at,
        },
        head,
    })
}

impl Unsealed {
    /// The record's line (without the newline) and its hash.
    pub fn seal(&self, seq: u64, prev: &Digest) -> (String, Digest) {
        let prev_hex = prev.hex_bytes();
        let hash = self.hash(seq, &prev_hex);
        let mut line = Vec::new();
        self.text
            .write_line(seq, &prev_hex, &hash.hex_bytes(), &mut line);
        (
            String::from_utf8(line).expect("a record line is UTF-8"),
            hash,
        )
    }

    /// Bytes of the line without the chain fields' values.
    pub fn encoded_len(&self) -> usize {
        self.text.encoded_len()
    }

    /// The record's hash once its `seq` and `prev` are known: the hash
    /// over its text so far, continued with the chain fields.
    fn hash(&self, seq: u64, prev_hex: &[u8; 64]) -> Digest {
        let t = &self.text;
        let mut seq_buf = itoa::Buffer::new();
        let mut hasher = self.head.clone();
        for part in [
            prev_hex,
            &t.text.as_bytes()[t.prev_at..t.seq_at],
            seq_buf.format(seq).as_bytes(),
            &t.text.as_bytes()[t.seq_at..],
        ] {
            hasher.update(part);
        }
        Digest(hasher.finalize().into())
    }

    /// Appends the record's line (without the newline) to `out` with its
    /// `seq`, leaving the values of `hash` and `prev` as holes for
    /// [`Holes::fill`] once the record before it is hashed: lines are
    /// written out in any order, and only the chain is finished in file
    /// order. Gives back the text's memory.
    pub fn write_with_holes(self, seq: u64, out: &mut Vec<u8>) -> (Holes, String) {
        const HOLE: [u8; 64] = [b'0'; 64];
        let t = &self.text;
        let start = out.len();
        t.write_line(seq, &HOLE, &HOLE, out);
        // `,"hash":"` then the hash's value and `"` go in before prev's part.
        let hash_at = start + t.hash_at + HASH_MEMBER_HEAD.len();
        let holes = Holes {
            head: self.head,
            hash_at,
            prev_at: hash_at + 65 + (t.prev_at - t.hash_at),
            end: out.len(),
        };
        (holes, self.text.text)
    }
}

/// Where a line written by [`Unsealed::write_with_holes`] lacks its `hash`
/// and `prev` values, with the hash over its text up to `prev`'s value.
#[derive(Debug, Clone)]
pub struct Holes {
    head: Sha256,
    /// Offsets in the lines' buffer: the two values' first bytes, and the
    /// line's end.
    hash_at: usize,
    prev_at: usize,
    end: usize,
}

impl Holes {
    /// Fills the line's holes in `lines` (the buffer it was written into)
    /// given the hash, as hex, of the record before it; returns its own.
    pub fn fill(self, prev_hex: &[u8; 64], lines: &mut [u8]) -> [u8; 64] {
        // What follows prev's value to the line's end is what Unsealed::hash
        // continues with: the text between prev and seq, seq, the rest.
        let mut hasher = self.head;
        hasher.update(prev_hex);
        hasher.update(&lines[self.prev_at + 64..self.end]);
        let hex = Digest(hasher.finalize().into()).hex_bytes();
        lines[self.prev_at..self.prev_at + 64].copy_from_slice(prev_hex);
        lines[self.hash_at..self.hash_at + 64].copy_from_slice(&hex);
        hex
    }
}

impl Holed {
    /// Bytes of the line without the chain fields' values.
    pub fn encoded_len(&self) -> usize {
        self.text.len()
    }

    /// Appends the record's line (without the newline) to `out`, given its
    /// chain fields' values: `hash_hex` must be what [`Unsealed::hash`]
    /// gave for `seq` and `prev_hex`.
    fn write_line(&self, seq: u64, prev_hex: &[u8; 64], hash_hex: &[u8; 64], out: &mut Vec<u8>) {
        let text = self.text.as_bytes();
        let (upto_hash, upto_prev) = (&text[..self.hash_at], &text[self.hash_at..self.prev_at]);
        let (upto_seq, rest) = (&text[self.prev_at..self.seq_at], &text[self.seq_at..]);
        let mut seq_buf = itoa::Buffer::new();
        let seq_text = seq_buf.format(seq).as_bytes();
        out.reserve(text.len() + 160);
        out.extend_from_slice(upto_hash);
        out.extend_from_slice(HASH_MEMBER_HEAD);
        out.extend_from_slice(hash_hex);
        out.push(b'"');
        for part in [upto_prev, prev_hex, upto_seq, seq_text, rest] {
            out.extend_from_slice(part);
        }
    }
}

/// Encodes a record's line (without the newline) and its hash.
pub fn seal(seq: u64, prev: &Digest, body: &Body) -> Result<(String, Digest), canon::CanonError> {
    seal_in_epoch(seq, prev, 0, body)
}

/// [`seal`] for a record written under lease epoch `epoch`.
pub fn seal_in_epoch(
    seq: u64,
    prev: &Digest,
    epoch: u64,
    body: &Body,
) -> Result<(String, Digest), canon::CanonError> {
    Ok(prepare_in_epoch(body, epoch, String::with_capacity(512))?.seal(seq, prev))
}

/// The chain fields of a line, checked against the line's own bytes: the
/// hash covers the line with its `hash` member removed (the line is the
/// canonical record, so this is the canonical record without `hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainFields {
    pub seq: u64,
    pub prev: Digest,
    pub hash: Digest,
    /// The lease epoch (0 when the record names none).
    pub epoch: u64,
}

/// Checks one line's hash and reads its chain fields without parsing the body.
pub fn check_line(line: &str) -> Result<ChainFields, RecordError> {
    line_fields(line, true, |_, _| {})
}

/// [`check_line`] when `check_hash`, else the chain fields as written (for
/// a line whose hash was checked a moment ago); every other top-level
/// member goes to `other` as (key, value's JSON text), in the same one walk
/// over the line.
pub(crate) fn line_fields<'l>(
    line: &'l str,
    check_hash: bool,
    mut other: impl FnMut(&'l [u8], &'l str),
) -> Result<ChainFields, RecordError> {
    let bytes = line.as_bytes();
    // One pass over the members; the first of a name counts.
    let (mut hash_m, mut prev_m, mut seq_m, mut epoch_m) = (None, None, None, None);
    for_each_member(bytes, |m| {
        let slot = match &bytes[m.key.0..m.key.1] {
            b"epoch" => &mut epoch_m,
            b"hash" => &mut hash_m,
            b"prev" => &mut prev_m,
            b"seq" => &mut seq_m,
            key => {
                // Spans of a walk over `line` itself: on char boundaries.
                other(key, &line[m.value.0..m.value.1]);
                return;
            }
        };
        slot.get_or_insert(m);
    })
    .ok_or_else(|| RecordError::NotJson("not a canonical record line".into()))?;
    let string_value = |m: Member| {
        let (s, e) = m.value;
        (e - s >= 2 && bytes[s] == b'"' && bytes[e - 1] == b'"').then(|| &line[s + 1..e - 1])
    };
    let hash_m = hash_m.ok_or(RecordError::Field("hash"))?;
    let hash = string_value(hash_m)
        .and_then(Digest::from_hex)
        .ok_or(RecordError::Field("hash"))?;
    let prev = prev_m
        .and_then(string_value)
        .and_then(Digest::from_hex)
        .ok_or(RecordError::Field("prev"))?;
    let seq = seq_m
        .and_then(|m| line[m.value.0..m.value.1].parse::<u64>().ok())
        .ok_or(RecordError::Field("seq"))?;
    let epoch = match epoch_m {
        None => 0,
        Some(m) => line[m.value.0..m.value.1]
            .parse::<u64>()
            .ok()
            .filter(|&e| e > 0)
            .ok_or(RecordError::Field("epoch"))?,
    };
    // Remove `,"hash":"…"`: from the comma before the key to the value's end.
    let cut_from = hash_m.key.0 - 2;
    if bytes[cut_from] != b',' {
        return Err(RecordError::Field("hash"));
    }
    if check_hash {
        let mut hasher = Sha256::new();
        hasher.update(&bytes[..cut_from]);
        hasher.update(&bytes[hash_m.value.1..]);
        if Digest(hasher.finalize().into()) != hash {
            return Err(RecordError::HashMismatch);
        }
    }
    Ok(ChainFields {
        seq,
        prev,
        hash,
        epoch,
    })
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
        epoch: fields.epoch,
        body,
    })
}

#[derive(Clone, Copy)]
struct Member {
    /// The key's text, without quotes.
    key: (usize, usize),
    /// The value's bytes.
    value: (usize, usize),
}

/// Hands each member of a canonical JSON object (no whitespace) to `each`,
/// as byte spans; `None` if the text is not such an object.
fn for_each_member(b: &[u8], mut each: impl FnMut(Member)) -> Option<()> {
    if b.first() != Some(&b'{') || b.last() != Some(&b'}') {
        return None;
    }
    let mut i = 1;
    if b.get(i) == Some(&b'}') {
        return (i + 1 == b.len()).then_some(());
    }
    loop {
        let key_end = skip_string(b, i)?;
        if b.get(key_end) != Some(&b':') {
            return None;
        }
        let value_start = key_end + 1;
        let value_end = skip_value(b, value_start)?;
        each(Member {
            key: (i + 1, key_end - 1),
            value: (value_start, value_end),
        });
        match b.get(value_end) {
            Some(b',') => i = value_end + 1,
            Some(b'}') if value_end + 1 == b.len() => return Some(()),
            _ => return None,
        }
    }
}

/// The members of a canonical record's line cut short (a torn tail) that
/// are whole before the cut, as (key, value) byte spans' text, in order.
pub(crate) fn members_before_a_cut(b: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    if b.first() != Some(&b'{') {
        return out;
    }
    let mut i = 1;
    while let Some(key_end) = skip_string(b, i) {
        if b.get(key_end) != Some(&b':') {
            break;
        }
        let Some(value_end) = skip_value(b, key_end + 1) else {
            break;
        };
        // A number cut short looks whole: a value counts once what follows it is there.
        let Some(&next @ (b',' | b'}')) = b.get(value_end) else {
            break;
        };
        out.push((&b[i + 1..key_end - 1], &b[key_end + 1..value_end]));
        if next == b'}' {
            break;
        }
        i = value_end + 1;
    }
    out
}

fn skip_string(b: &[u8], start: usize) -> Option<usize> {
    if b.get(start) != Some(&b'"') {
        return None;
    }
    let mut j = start + 1;
    loop {
        // Most of a line is strings (digests): jump to the next quote or
        // escape instead of stepping byte by byte.
        let k = j + memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[k] == b'"' {
            return Some(k + 1);
        }
        j = k + 2;
    }
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
            started_ms: None,
            depth: None,
            tree_jobs: None,
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
    fn a_jobs_record_carries_its_epoch_in_canonical_order_under_the_hash() {
        for body in every_kind_of_body() {
            let (line, hash) = seal_in_epoch(5, &Digest::ZERO, 3, &body).unwrap();
            let record = parse_line(&line).unwrap();
            assert_eq!(record.body, body);
            // Only a job's records name an epoch; canonical, hashed.
            let expected = if body.job_at().is_some() { 3 } else { 0 };
            assert_eq!(record.epoch, expected, "{line}");
            let mut value: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(crate::canon::to_string(&value).unwrap(), line, "canonical");
            value.as_object_mut().unwrap().remove("hash");
            assert_eq!(Digest::of_json(&value).unwrap(), hash, "{line}");
            if expected > 0 {
                let forged = line.replace("\"epoch\":3", "\"epoch\":4");
                assert_eq!(parse_line(&forged), Err(RecordError::HashMismatch));
            }
        }
        // Without an epoch, the line is what it always was.
        let (plain, _) = seal(5, &Digest::ZERO, &job_body()).unwrap();
        assert!(!plain.contains("epoch"));
        assert_eq!(parse_line(&plain).unwrap().epoch, 0);
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
    fn encoding_into_a_used_buffer_leaves_nothing_of_it() {
        let prev = Digest::of_bytes(b"p");
        for buf in [String::new(), "{\"stale\":".repeat(100), "z".into()] {
            for body in every_kind_of_body() {
                let fresh = prepare(&body).unwrap().seal(7, &prev);
                assert_eq!(
                    prepare_in(&body, buf.clone()).unwrap().seal(7, &prev),
                    fresh
                );
            }
        }
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
            started_ms: None,
            depth: None,
            tree_jobs: None,
        };
        let (line, hash) = seal(1, &Digest::ZERO, &body).unwrap();
        assert_eq!(parse_line(&line).unwrap().hash, hash);
        assert_eq!(parse_line(&line).unwrap().body, body);
    }

    /// The sealed line by the generic path: every field through serde, the
    /// whole object through the canonical encoder.
    fn reference_line(seq: u64, prev: &Digest, body: &Body) -> String {
        let mut value = serde_json::to_value(body).unwrap();
        let map = value.as_object_mut().unwrap();
        map.insert("seq".into(), json!(seq));
        map.insert("prev".into(), json!(prev.to_hex()));
        let hash = Digest::of_json(&value).unwrap();
        value
            .as_object_mut()
            .unwrap()
            .insert("hash".into(), json!(hash.to_hex()));
        canon::to_string(&value).unwrap()
    }

    fn every_kind_of_body() -> Vec<Body> {
        let job = JobId::new("j-1").unwrap();
        let agent = AgentName::new("writer").unwrap();
        let decision = Decision {
            id: DecisionId::new(&job, 1, 0),
            source: agent.clone(),
            kind: "note \u{e9}\"\n".into(),
            payload: json!({"z": 1, "a": [1.5, -2.5, 1e21, "\u{1f600}"], "\u{e9}": null, "B": {"y": true, "x": false}}),
        };
        let mut bodies = vec![
            Body::Plan {
                digest: Digest::of_bytes(b"p"),
                blob: Digest::of_bytes(b"b"),
                executor: "jaros 0.1.0 (abc, release)".into(),
            },
            job_body(),
            Body::Job {
                job: job.clone(),
                at: 0,
                agent: agent.clone(),
                input: json!([{"\u{10000}": 1, "\u{ffff}": 2}, 9007199254740992u64]),
                plan: Digest::of_bytes(b"plan"),
                parent: Some(JobId::new("parent").unwrap()),
                via: Some(decision.id.clone()),
                started_ms: Some(1_700_000_000_123),
                depth: Some(1),
                tree_jobs: Some(0),
            },
        ];
        for error in [None, Some("timed out \u{7}".to_string())] {
            bodies.push(Body::Model {
                job: job.clone(),
                at: 1,
                turn: 1,
                provider: "ollama".into(),
                model: "m".into(),
                params: json!({"temperature": 0.2}),
                template: Digest::of_bytes(b"t"),
                inputs: Digest::of_bytes(b"i"),
                prompt: Digest::of_bytes(b"q"),
                response: Digest::of_bytes(b"r"),
                tokens_in: 1 << 53,
                tokens_out: 7,
                duration_ms: 12,
                error: error.clone(),
            });
            bodies.push(Body::Effect {
                job: job.clone(),
                at: 3,
                decision: decision.id.clone(),
                result: JsonText::from_value(&json!({"b": "x", "a": 1})).unwrap(),
                error,
                state: Digest::of_bytes(b"s"),
            });
        }
        bodies.push(Body::Decision {
            job: job.clone(),
            at: 2,
            decision: decision.clone(),
            clock_ms: Some(0),
        });
        bodies.push(Body::Rejected {
            job: job.clone(),
            at: 2,
            decision: decision.clone(),
            check: "schema".into(),
            reason: "payload.x: expected string".into(),
            clock_ms: Some(u64::from(u32::MAX) + 1),
        });
        for (reason, blame) in [
            (None, None),
            (Some("boom".to_string()), Some(decision.id.clone())),
        ] {
            bodies.push(Body::End {
                job: job.clone(),
                at: 4,
                state: State::Failed,
                result: JsonText::from_value(&json!({"ok": [true, 1.5]})).unwrap(),
                reason,
                blame,
            });
        }
        bodies.push(Body::Audit {
            job,
            agent,
            decision: decision.id,
            action: "http GET https://example.org/".into(),
            verdict: "refused".into(),
            reason: "not granted".into(),
            time: "2026-11-30T00:00:00Z".into(),
        });
        bodies
    }

    #[test]
    fn the_direct_encoding_equals_the_generic_canonical_record_for_every_kind() {
        let prev = Digest::of_bytes(b"prev");
        let bodies = every_kind_of_body();
        let kinds: std::collections::HashSet<&str> = bodies.iter().map(Body::kind).collect();
        assert_eq!(kinds.len(), 8, "a body kind is missing from the test");
        for (i, body) in bodies.iter().enumerate() {
            for seq in [1, 10, 999_999_999_999] {
                let (line, hash) = seal(seq, &prev, body).unwrap();
                assert_eq!(
                    line,
                    reference_line(seq, &prev, body),
                    "body {i} at seq {seq}"
                );
                let record = parse_line(&line).unwrap();
                assert_eq!((record.seq, record.prev, record.hash), (seq, prev, hash));
                assert_eq!(&record.body, body);
            }
        }
    }

    #[test]
    fn a_count_past_2_pow_53_is_refused_when_sealing_not_written_to_a_line_that_does_not_read_back()
    {
        // Found by tests/fuzz_stable.rs: a model record with tokens_in near
        // 2^64 was sealed as `18446744073709552000`, which no reader takes for
        // a u64, so the node's log no longer opened. Past 2^53 the number
        // cannot be written exactly; the record is refused, naming the field.
        let prev = Digest::of_bytes(b"prev");
        let model = every_kind_of_body()
            .into_iter()
            .find(|b| b.kind() == "model")
            .unwrap();
        for (field, value) in [
            ("tokens_in", u64::MAX),
            ("tokens_out", (1 << 53) + 1),
            ("duration_ms", u64::MAX - 1024),
        ] {
            let mut big = model.clone();
            let Body::Model {
                tokens_in,
                tokens_out,
                duration_ms,
                ..
            } = &mut big
            else {
                unreachable!("found by kind")
            };
            *match field {
                "tokens_in" => tokens_in,
                "tokens_out" => tokens_out,
                _ => duration_ms,
            } = value;
            let error = seal(5, &prev, &big).unwrap_err().to_string();
            assert!(
                error.contains(field) && error.contains("2^53"),
                "{field}: {error}"
            );
        }
        // 2^53 itself is exact, and reads back as itself.
        let mut edge = model;
        if let Body::Model { duration_ms, .. } = &mut edge {
            *duration_ms = 1 << 53;
        }
        let (line, _) = seal(5, &prev, &edge).unwrap();
        assert_eq!(parse_line(&line).unwrap().body, edge);
    }

    #[test]
    fn the_members_before_a_cut_are_the_whole_top_level_ones() {
        let line =
            br#"{"agent":"a","at":12,"input":{"job":"inner"},"job":"outer","kind":"job","seq":5}"#;
        let whole = members_before_a_cut(line);
        let keys: Vec<&[u8]> = whole.iter().map(|(k, _)| *k).collect();
        let want: [&[u8]; 6] = [b"agent", b"at", b"input", b"job", b"kind", b"seq"];
        assert_eq!(keys, want);
        assert_eq!(whole[3].1, b"\"outer\"");
        for cut in 0..line.len() {
            let some = members_before_a_cut(&line[..cut]);
            assert_eq!(some, whole[..some.len()], "cut at {cut}");
        }
        // Cut inside a number: `"at":1` is not yet a whole member.
        assert_eq!(members_before_a_cut(&line[..19]).len(), 1);
    }

    #[test]
    fn lines_written_with_holes_and_filled_in_order_are_the_sealed_lines() {
        // Every kind of body, one after the other in one buffer, as a batch
        // is written: filled in order, each line and hash is what sealing
        // it after the one before gives.
        let first_prev = Digest::of_bytes(b"prev");
        for seq_from in [1, 999_999_999_990] {
            let bodies = every_kind_of_body();
            let mut lines = Vec::new();
            let mut holes = Vec::new();
            for (i, body) in bodies.iter().enumerate() {
                let (h, _) = prepare(body)
                    .unwrap()
                    .write_with_holes(seq_from + i as u64, &mut lines);
                lines.push(b'\n');
                holes.push(h);
            }
            let mut prev = first_prev.hex_bytes();
            for h in holes {
                prev = h.fill(&prev, &mut lines);
            }
            let mut prev = first_prev;
            let written = String::from_utf8(lines).unwrap();
            for (i, (line, body)) in written.lines().zip(&bodies).enumerate() {
                let (sealed, hash) = seal(seq_from + i as u64, &prev, body).unwrap();
                assert_eq!(line, sealed, "body {i}");
                prev = hash;
            }
            assert_eq!(written.lines().count(), bodies.len());
        }
    }

    #[test]
    fn a_line_is_canonical_json() {
        let (line, _) = seal(7, &Digest::ZERO, &job_body()).unwrap();
        let reparsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(canon::to_string(&reparsed).unwrap(), line);
        assert!(line.starts_with("{\"agent\":\"advance\",\"at\":0,\"hash\":"));
    }
}
