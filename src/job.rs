//! Running one job: the agent proposes, the gate decides, the log records,
//! the executor acts; turn after turn until the job ends.
//!
//! Owns the job's state (what its digest covers), the [`Proposer`] interface
//! agents implement, and the [`Runner`] that drives a job live, resuming from
//! recorded history when there is some. Replay folds the same records with the
//! same gate and executor (see [`crate::replay::fold`]).
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use crate::canon::{Digest, JsonText};
use crate::decision::{self, AgentName, Decision, DecisionId, JobId, Proposal};
use crate::exec::{AuditEntry, Executor, LiveIo, Verdict};
use crate::gate;
use crate::log::{Blobs, Body, LogError, LogWriter};
use crate::plan::{AgentSpec, Plan};
use crate::replay::{self, Folded};
use crate::state::{Event, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// Largest canonical size of the per-decision results an `end` record holds.
pub const MAX_END_RESULTS_BYTES: usize = 256 * 1024;

/// The decision type recorded for a turn whose text held no valid decisions.
pub const UNPARSED: &str = "unparsed";

/// One executed or rejected decision, as later turns and the result see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub decision: DecisionId,
    #[serde(rename = "type")]
    pub kind: String,
    pub ok: bool,
    pub result: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything a job's state digest covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobState {
    pub job: JobId,
    pub agent: AgentName,
    pub state: State,
    pub turn: u32,
    pub accepted: u32,
    pub rejected: u32,
    pub model_calls: u32,
    pub tokens: u64,
    pub results: Vec<StepResult>,
    pub error: Option<String>,
    pub blame: Option<DecisionId>,
    /// Where the job sits in its hand-off tree: from its `job` record, not
    /// state (the digest leaves it out, as it leaves out the input).
    #[serde(skip)]
    pub tree: Tree,
    /// The job's wall time (ms since its recorded start) at the clock
    /// reading recorded with the decision being gated: the only time the
    /// gate sees. `None` where no reading was recorded (an older log).
    #[serde(skip)]
    pub clock_ms: Option<u64>,
}

/// Where a job sits in its hand-off tree (a job, the jobs it hands off to,
/// theirs, …). Set by the runtime only: a root's from the plan, a child's by
/// the hand-off that created it (its job file and `job` record carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tree {
    /// Hand-offs between the tree's first job and this one.
    pub depth: u32,
    /// How many jobs this job's part of the tree may hold, itself included;
    /// `None` for a root, whose part is the whole tree.
    pub jobs: Option<u32>,
}

impl Tree {
    /// The jobs this job's part of the tree may hold, itself included:
    /// never more than the plan's `handoff.max_jobs`, whatever a job file
    /// says.
    pub fn share(&self, plan: &Plan) -> u32 {
        self.jobs
            .map_or(plan.handoff.max_jobs, |j| j.min(plan.handoff.max_jobs))
    }
}

impl JobState {
    pub fn new(job: JobId, agent: AgentName) -> JobState {
        JobState {
            job,
            agent,
            state: State::Pending,
            turn: 0,
            accepted: 0,
            rejected: 0,
            model_calls: 0,
            tokens: 0,
            results: Vec::new(),
            error: None,
            blame: None,
            tree: Tree::default(),
            clock_ms: None,
        }
    }

    /// How many more jobs this job's part of its hand-off tree has room
    /// for, below it. Each hand-off that ran gave its child half of the room
    /// (rounded up) and kept the rest, so a tree never holds more than its
    /// first job's share, a chain of hand-offs halves as it goes, and a job
    /// can still hand off to several.
    pub fn tree_room(&self, plan: &Plan) -> u32 {
        let given = self
            .results
            .iter()
            .filter(|r| r.ok && plan.is_handoff(&r.kind))
            .count();
        let room = self.tree.share(plan).saturating_sub(1);
        u32::try_from(given)
            .ok()
            .and_then(|g| room.checked_shr(g))
            .unwrap_or(0)
    }

    /// What the job's wall-time budget has left at the clock reading the
    /// gate checked the current decision against (`None` without one): an
    /// effect that can run long (a tool) runs no longer than this.
    pub fn wall_left_ms(&self, plan: &Plan) -> Option<u64> {
        let budget = plan.grant_of(self.agent.as_str())?.budget.wall_ms;
        self.clock_ms.map(|ms| budget.saturating_sub(ms))
    }

    /// The share of the tree the next hand-off gives its child.
    pub fn child_share(&self, plan: &Plan) -> u32 {
        let room = self.tree_room(plan);
        room - room / 2
    }

    /// sha256 of the state's canonical JSON. Written field by field (keys in
    /// canonical order) rather than through a `Value` tree: replay computes
    /// this at every effect. A test pins it to the generic encoding.
    pub fn digest(&self) -> Digest {
        use crate::canon::{write_string, write_u64};
        let mut s = String::with_capacity(256 + 128 * self.results.len());
        let opt = |s: &mut String, v: Option<&str>| match v {
            Some(text) => write_string(s, text),
            None => s.push_str("null"),
        };
        // Numbers by `write_u64`, not `format!`, whose machinery showed in
        // replay's profile.
        s.push_str("{\"accepted\":");
        write_u64(&mut s, self.accepted.into());
        s.push_str(",\"agent\":");
        write_string(&mut s, self.agent.as_str());
        s.push_str(",\"blame\":");
        opt(&mut s, self.blame.as_ref().map(|b| b.as_str()));
        s.push_str(",\"error\":");
        opt(&mut s, self.error.as_deref());
        s.push_str(",\"job\":");
        write_string(&mut s, self.job.as_str());
        s.push_str(",\"model_calls\":");
        write_u64(&mut s, self.model_calls.into());
        s.push_str(",\"rejected\":");
        write_u64(&mut s, self.rejected.into());
        s.push_str(",\"results\":");
        self.write_results(&mut s);
        s.push_str(",\"state\":");
        write_string(&mut s, self.state.as_str());
        s.push_str(",\"tokens\":");
        write_u64(&mut s, self.tokens);
        s.push_str(",\"turn\":");
        write_u64(&mut s, self.turn.into());
        s.push('}');
        Digest::of_bytes(s.as_bytes())
    }

    /// Appends the canonical encoding of `results` (the array of steps).
    fn write_results(&self, s: &mut String) {
        use crate::canon::{write_string, write_value};
        s.push('[');
        for (i, r) in self.results.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"decision\":");
            write_string(s, r.decision.as_str());
            if let Some(e) = &r.error {
                s.push_str(",\"error\":");
                write_string(s, e);
            }
            s.push_str(if r.ok {
                ",\"ok\":true,\"result\":"
            } else {
                ",\"ok\":false,\"result\":"
            });
            write_value(s, &r.result).expect("recorded results are canonical JSON");
            s.push_str(",\"type\":");
            write_string(s, &r.kind);
            s.push('}');
        }
        s.push(']');
    }

    /// [`result`](Self::result) as an `end` record holds it.
    pub fn result_text(&self) -> JsonText {
        JsonText::from_canonical_text(self.result_string())
    }

    /// Whether `recorded` (an `end` record's result) is what
    /// [`result`](Self::result) gives, compared as canonical text.
    pub fn result_matches(&self, recorded: &JsonText) -> bool {
        self.result_string() == recorded.as_str()
    }

    /// The canonical text of [`result`](Self::result), written field by
    /// field (keys in canonical order) rather than through a `Value` tree
    /// when the results are within their limit: replay checks every job's
    /// end. A test pins it to the generic encoding.
    fn result_string(&self) -> String {
        use crate::canon::{write_string, write_u64};
        let mut results = String::with_capacity(64 + 128 * self.results.len());
        self.write_results(&mut results);
        if results.len() > MAX_END_RESULTS_BYTES {
            return crate::canon::to_string(&self.result()).expect("a job's result is canonical");
        }
        let mut s = String::with_capacity(results.len() + 64);
        s.push_str("{\"decisions\":");
        write_u64(&mut s, self.accepted.into());
        s.push_str(",\"rejected\":");
        write_u64(&mut s, self.rejected.into());
        s.push_str(",\"results\":");
        s.push_str(&results);
        s.push_str(",\"state\":");
        write_string(&mut s, self.state.as_str());
        s.push('}');
        s
    }

    /// Moves the job to FAILED (where a transition exists) and keeps the
    /// first reason and blame.
    pub fn fail(&mut self, reason: String, blame: &DecisionId) {
        if let Some(next) = self.state.next(Event::Fail) {
            self.state = next;
        }
        if self.error.is_none() {
            self.error = Some(reason);
            self.blame = Some(blame.clone());
        }
    }

    /// Records a rejection so the agent's next turn sees it.
    pub fn note_rejection(&mut self, decision: &Decision, reason: &str) {
        self.rejected += 1;
        self.results.push(StepResult {
            decision: decision.id.clone(),
            kind: decision.kind.clone(),
            ok: false,
            result: Value::Null,
            error: Some(format!("rejected: {reason}")),
        });
    }

    /// The last rejection of the current turn, if the turn had one.
    fn rejection_in_turn(&self) -> Option<&StepResult> {
        let prefix = format!("{}#{}.", self.job, self.turn);
        self.results
            .iter()
            .rev()
            .take_while(|r| r.decision.as_str().starts_with(&prefix))
            .find(|r| {
                !r.ok
                    && r.error
                        .as_deref()
                        .is_some_and(|e| e.starts_with("rejected: "))
            })
    }

    /// The runtime's rule once an agent has no turns left: a rejection in the
    /// last turn fails the job (blamed on that decision); a job left PENDING
    /// or RUNNING is completed; one left BLOCKED fails.
    pub fn conclude(&mut self) {
        if self.state.is_terminal() {
            return;
        }
        if let Some(rejected) = self.rejection_in_turn().cloned() {
            let reason = format!(
                "decision {} ({}) was {}",
                rejected.decision,
                rejected.kind,
                rejected.error.unwrap_or_default()
            );
            self.fail(reason, &rejected.decision);
            return;
        }
        self.state = match self.state {
            State::Pending => State::Done,
            State::Running => State::Done,
            other => other,
        };
        if self.state == State::Blocked {
            self.state = State::Failed;
            self.error = Some("the job was still BLOCKED when its agent had no turns left".into());
        }
    }

    /// The job's result as `end` records and result files hold it. The
    /// per-decision results are already in the `effect` records; past
    /// [`MAX_END_RESULTS_BYTES`] they are summarized by count and digest.
    pub fn result(&self) -> Value {
        let results = serde_json::to_value(&self.results).expect("results serialize");
        let size = crate::canon::to_string(&results).map_or(usize::MAX, |t| t.len());
        if size <= MAX_END_RESULTS_BYTES {
            return json!({"state": self.state, "decisions": self.accepted, "rejected": self.rejected, "results": results});
        }
        json!({
            "state": self.state,
            "decisions": self.accepted,
            "rejected": self.rejected,
            "results_omitted": {"count": self.results.len(), "bytes": size, "sha256": Digest::of_json(&results).ok(), "see": "the job's effect records (`jaros logs --job ID`)"},
        })
    }
}

/// A job to run: what its `job` record holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub job: JobId,
    pub agent: AgentName,
    pub input: Value,
    pub parent: Option<JobId>,
    pub via: Option<DecisionId>,
}

/// What an agent sees when asked for a turn.
pub struct TurnRequest<'a> {
    pub plan: &'a Plan,
    pub agent: &'a AgentName,
    pub spec: &'a AgentSpec,
    pub input: &'a Value,
    pub state: &'a JobState,
    pub turn: u32,
}

/// A model call made for a turn, recorded as a `model` record.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCall {
    pub provider: String,
    pub model: String,
    pub params: Value,
    pub template: Digest,
    pub inputs: Digest,
    pub prompt: String,
    pub response: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// A turn's proposals as text, and the model call behind them if any.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposedTurn {
    pub text: String,
    pub call: Option<ModelCall>,
}

/// Anything that proposes decisions for an agent: built-in agents, templates,
/// models. The deterministic plane knows only this interface.
pub trait Proposer: Send + Sync {
    fn propose(&self, request: &TurnRequest<'_>) -> Result<ProposedTurn, String>;
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEnd {
    pub job: JobId,
    pub agent: AgentName,
    pub state: State,
    pub result: Value,
    pub reason: Option<String>,
    pub blame: Option<DecisionId>,
    /// Position of the `end` record in this node's log.
    pub seq: u64,
}

/// Why a job could not be driven to its end, and no `end` was recorded
/// for it: the node publishes no result and leaves the job claimed (the
/// job itself did not fail). Whatever fails a job (a history that does not
/// replay, a blob that cannot be stored or read) ends it with a recorded
/// `end` instead, so a result file always has its `end`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("lost the lease on job {0}; another node owns it now")]
    Fenced(JobId),
    /// A live effect failed for the node's environment (see
    /// [`crate::exec::environment_cause`]); its decision is recorded, its
    /// effect is not, and a resumed run executes it again.
    #[error("decision {decision} of job {job} is held for retry: {reason}")]
    Held {
        job: JobId,
        decision: DecisionId,
        reason: String,
    },
}

/// A held effect is not recorded: the job stops here, to be retried.
fn unless_held(
    job: &JobId,
    decision: &Decision,
    effect: &crate::exec::Effect,
) -> Result<(), RunError> {
    match &effect.held {
        Some(reason) => Err(RunError::Held {
            job: job.clone(),
            decision: decision.id.clone(),
            reason: reason.clone(),
        }),
        None => Ok(()),
    }
}

/// Drives jobs live under one plan, recording into one log.
pub struct Runner<'a> {
    pub plan: Arc<Plan>,
    pub plan_digest: Digest,
    pub executor: &'a Executor,
    pub log: &'a LogWriter,
    pub blobs: &'a Blobs,
    pub proposer: &'a dyn Proposer,
    pub live: &'a dyn LiveIo,
    /// Returns false once this node no longer holds the job's lease.
    pub fence: &'a (dyn Fn() -> bool + Sync),
    /// Leave the end record to become durable with a later sync
    /// ([`LogWriter::sync_through`] its `seq`): for a caller that makes the
    /// ends of several jobs durable at once before writing their results.
    pub defer_end: bool,
}

struct Cursor {
    at: u32,
}

/// What became of one proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Executed, or refused for a reason another turn may mend.
    Done,
    /// Refused by a budget: the job ends.
    OverBudget,
}

/// The wall clock, Unix ms: a job's recorded start, and the readings
/// recorded with its decisions.
#[expect(
    clippy::disallowed_methods,
    reason = "the wall-time budget: the start is recorded in the job record and each reading in the decision or rejection it was checked for; replay reads them"
)]
fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Runner<'_> {
    /// Appends a job's record. Durable before returning: decisions (before
    /// their effect), effects that replay reads back (before the job moves
    /// on), and the end (before the result file; see `defer_end`). The others (acceptance,
    /// model calls, rejections, effects replay recomputes) become durable with
    /// the next of those: losing them in a crash only means redoing them.
    fn append(&self, job: &JobId, cursor: &mut Cursor, body: Body) -> Result<u64, RunError> {
        let durable = match &body {
            // An effect's record says itself whether it must be durable.
            Body::Decision { .. }
            | Body::End { .. }
            | Body::Plan { .. }
            | Body::Audit { .. }
            | Body::Effect { .. } => true,
            Body::Job { .. } | Body::Model { .. } | Body::Rejected { .. } => false,
        };
        self.record(job, cursor, body, durable)
    }

    /// Appends a job's record under the fence, durable before returning or
    /// deferred (see [`append`](Self::append)).
    fn record(
        &self,
        job: &JobId,
        cursor: &mut Cursor,
        body: Body,
        durable: bool,
    ) -> Result<u64, RunError> {
        if !(self.fence)() {
            return Err(RunError::Fenced(job.clone()));
        }
        cursor.at += 1;
        let seq = if durable {
            self.log.append(&body)?
        } else {
            self.log.append_deferred(&body)?
        };
        Ok(seq)
    }

    /// Checks the fence again just before an effect starts: a node paused
    /// between its decision's record and the effect may have lost the job,
    /// and its new owner runs the effect.
    fn fence_before_effect(&self, job: &JobId) -> Result<(), RunError> {
        if (self.fence)() {
            Ok(())
        } else {
            Err(RunError::Fenced(job.clone()))
        }
    }

    /// Appends an effect: durable before the job moves on when replay reads
    /// it back; deferred when replay recomputes it (a deterministic built-in).
    fn append_effect(
        &self,
        job: &JobId,
        cursor: &mut Cursor,
        decision: &Decision,
        effect: &crate::exec::Effect,
    ) -> Result<u64, RunError> {
        let body = effect_body(job, cursor.at, decision, effect);
        self.record(job, cursor, body, !self.recomputed(decision))
    }

    /// Whether `decision`'s record must be durable before its effect
    /// starts. The rule follows the effect, not the proposer: a decision
    /// whose effect reaches outside the job (a file, a child job, a tool)
    /// is, whoever proposed it; so is one whose effect replay reads back,
    /// and one a model call made (a crash must not cost a second call).
    /// The rest (built-ins that stay inside the job and that replay
    /// recomputes: today `advance`) become durable with the job's next
    /// durable record: a crash before that redoes decision and effect, to
    /// the same result, at no cost.
    fn durable_before_effect(&self, state: &JobState, decision: &Decision) -> bool {
        let outside = self
            .plan
            .types
            .get(&decision.kind)
            .is_none_or(|t| t.reaches_outside());
        let by_model = self
            .plan
            .agents
            .get(state.agent.as_str())
            .is_some_and(|a| matches!(a.kind, crate::plan::AgentKind::Model { .. }));
        outside || by_model || !self.recomputed(decision)
    }

    /// Whether replay recomputes `decision`'s effect (a deterministic
    /// built-in) rather than reading it back.
    fn recomputed(&self, decision: &Decision) -> bool {
        self.plan
            .types
            .get(&decision.kind)
            .is_some_and(|t| t.reexecuted_on_replay())
    }

    /// Runs `ticket` to its end. `history` holds the job's records from every
    /// log in order when the job is resumed; decisions already recorded are
    /// not asked for again and effects already recorded are not redone.
    pub fn run(&self, ticket: &Ticket, history: &[Body]) -> Result<JobEnd, RunError> {
        self.run_in_tree(ticket, Tree::default(), history)
    }

    /// [`run`](Self::run) for a job at `tree` in its hand-off tree (a job a
    /// hand-off created; `run` runs a root). On resume the tree and the
    /// start are those the job's `job` record holds.
    pub fn run_in_tree(
        &self,
        ticket: &Ticket,
        tree: Tree,
        history: &[Body],
    ) -> Result<JobEnd, RunError> {
        let plan = &*self.plan;
        let mut cursor = Cursor { at: 0 };
        let started_ms;
        let mut folded = if history.is_empty() {
            started_ms = now_unix_ms();
            let body = Body::Job {
                job: ticket.job.clone(),
                at: 0,
                agent: ticket.agent.clone(),
                input: ticket.input.clone(),
                plan: self.plan_digest,
                parent: ticket.parent.clone(),
                via: ticket.via.clone(),
                started_ms: Some(started_ms),
                depth: (tree.depth > 0).then_some(tree.depth),
                tree_jobs: tree.jobs,
            };
            if !(self.fence)() {
                return Err(RunError::Fenced(ticket.job.clone()));
            }
            // Deferred: durable with the job's first decision or its end.
            self.log.append_deferred(&body)?;
            let mut folded = Folded::new(ticket.job.clone(), ticket.agent.clone());
            folded.state.tree = tree;
            folded
        } else {
            // The wall clock counts from the recorded start, across resumes
            // (a log written before starts were recorded: from now).
            started_ms = match history.first() {
                Some(Body::Job {
                    started_ms: Some(ms),
                    ..
                }) => *ms,
                _ => now_unix_ms(),
            };
            let refs: Vec<&Body> = history.iter().collect();
            match replay::fold(plan, self.executor, &refs) {
                Ok(folded) => folded,
                Err(d) => return self.end_unreplayable(ticket, history, &d.what),
            }
        };
        cursor.at = folded.next_at;
        if let Some(end) = folded.ended.take() {
            return Ok(JobEnd { seq: 0, ..end });
        }
        let job = &ticket.job;
        let Some(spec) = plan.agents.get(ticket.agent.as_str()) else {
            let reason = format!("agent '{}' is not in the plan", ticket.agent);
            return self.end(&mut folded.state, &mut cursor, Some(reason));
        };
        let grant = plan
            .grant_of(ticket.agent.as_str())
            .cloned()
            .unwrap_or_default();
        let clock = || now_unix_ms().saturating_sub(started_ms);

        // A decision recorded without its effect: the crash came between the
        // two. Execute it now (handlers' live effects are idempotent).
        if let Some(pending) = folded.pending.take() {
            self.fence_before_effect(job)?;
            let effect =
                self.executor
                    .execute(plan, &mut folded.state, &pending, None, Some(self.live));
            unless_held(job, &pending, &effect)?;
            self.append_effect(job, &mut cursor, &pending, &effect)?;
        }

        let resume_turn = (folded.state.turn > 0).then_some(folded.state.turn);
        let first_turn = resume_turn.unwrap_or(1);
        for turn in first_turn..=spec.max_steps {
            if folded.state.state.is_terminal() {
                break;
            }
            let resuming = resume_turn == Some(turn);
            let recorded_response = folded.last_response.filter(|_| resuming);
            let text = if let Some(digest) = recorded_response {
                match self.blobs.get(&digest) {
                    Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Err(e) => {
                        let reason = format!(
                            "the recorded model response of turn {turn} cannot be read: {e}"
                        );
                        return self.end(&mut folded.state, &mut cursor, Some(reason));
                    }
                }
            } else {
                let model = matches!(spec.kind, crate::plan::AgentKind::Model { .. });
                if let Some(reason) =
                    budget_exhausted(&grant.budget, &folded.state, model, clock(), turn)
                {
                    return self.end(&mut folded.state, &mut cursor, Some(reason));
                }
                folded.state.turn = turn;
                let request = TurnRequest {
                    plan,
                    agent: &ticket.agent,
                    spec,
                    input: &ticket.input,
                    state: &folded.state,
                    turn,
                };
                let proposed = match self.proposer.propose(&request) {
                    Ok(p) => p,
                    Err(reason) => return self.end(&mut folded.state, &mut cursor, Some(reason)),
                };
                if let Some(call) = &proposed.call {
                    let body = match self.model_body(job, cursor.at, turn, call) {
                        Ok(body) => body,
                        Err(e) => {
                            let reason =
                                format!("the model call of turn {turn} cannot be recorded: {e}");
                            return self.end(&mut folded.state, &mut cursor, Some(reason));
                        }
                    };
                    self.append(job, &mut cursor, body)?;
                    folded.state.model_calls += 1;
                    folded.state.tokens += call.tokens_in + call.tokens_out;
                    if let Some(error) = &call.error {
                        let reason = format!("model call of turn {turn} failed: {error}");
                        return self.end(&mut folded.state, &mut cursor, Some(reason));
                    }
                }
                proposed.text
            };
            folded.state.turn = turn;
            let skip = if resuming { folded.positions_done } else { 0 };
            let proposals = match decision::parse_proposals(&text) {
                Ok(p) => p,
                Err(reason) => {
                    if skip == 0 {
                        let d = unparsed_decision(job, turn, &ticket.agent, &text);
                        let reason = format!("the turn's text holds no valid decisions: {reason}");
                        folded
                            .state
                            .note_rejection(&d, &format!("structure: {reason}"));
                        let body = rejected_body(
                            job,
                            cursor.at,
                            &d,
                            gate::Check::Structure,
                            &reason,
                            Some(clock()),
                        );
                        self.append(job, &mut cursor, body)?;
                        self.audit_refusal(job, &d, &format!("structure: {reason}"))?;
                    }
                    continue;
                }
            };
            if proposals.is_empty() && !resuming {
                break; // the agent has nothing more to do
            }
            for (position, proposal) in proposals.into_iter().enumerate().skip(skip as usize) {
                folded.state.clock_ms = Some(clock());
                let outcome = self.step(
                    job,
                    &mut cursor,
                    &mut folded.state,
                    turn,
                    position as u32,
                    proposal,
                )?;
                if outcome == Step::OverBudget {
                    // A budget spent stays spent: the job ends here, its
                    // failure blamed on the decision the gate refused.
                    return self.end(&mut folded.state, &mut cursor, None);
                }
            }
        }
        self.end(&mut folded.state, &mut cursor, None)
    }

    /// Records the failure of a job whose run panicked outside any handler
    /// (handlers' panics are already contained by the executor). Leaves the
    /// log alone when a decision is recorded without its effect.
    pub fn abort(&self, history: &[Body], reason: String) -> Result<Option<JobEnd>, RunError> {
        let refs: Vec<&Body> = history.iter().collect();
        let Ok(mut folded) = replay::fold(&self.plan, self.executor, &refs) else {
            return Ok(None);
        };
        if folded.ended.is_some() || folded.pending.is_some() {
            return Ok(folded.ended);
        }
        let mut cursor = Cursor { at: folded.next_at };
        self.end(&mut folded.state, &mut cursor, Some(reason))
            .map(Some)
    }

    /// Ends a job whose recorded history does not replay (a record the
    /// gate or executor now disagrees with): FAILED, with the divergence as
    /// the reason, recorded after the records it has (through the fence,
    /// like every record), so its result file and its log agree. `jaros
    /// replay` names the divergence.
    fn end_unreplayable(
        &self,
        ticket: &Ticket,
        history: &[Body],
        what: &str,
    ) -> Result<JobEnd, RunError> {
        let mut state = JobState::new(ticket.job.clone(), ticket.agent.clone());
        state.state = State::Failed;
        state.error = Some(format!(
            "the recorded history of job {} does not replay: {what}",
            ticket.job
        ));
        let at = u32::try_from(history.len()).unwrap_or(u32::MAX);
        let mut cursor = Cursor { at };
        self.end(&mut state, &mut cursor, None)
    }

    /// Gates one proposal, and records and executes it if accepted. The
    /// clock reading the gate checks the wall time against is
    /// `state.clock_ms`, recorded with the decision.
    fn step(
        &self,
        job: &JobId,
        cursor: &mut Cursor,
        state: &mut JobState,
        turn: u32,
        position: u32,
        proposal: Proposal,
    ) -> Result<Step, RunError> {
        let plan = &*self.plan;
        let decision = Decision::from_proposal(job, turn, position, &state.agent, proposal);
        match gate::check(plan, state, &decision, turn, position) {
            Err(rejection) => {
                // A payload too large to record is recorded by its start, as
                // an unparsed turn is; replay reads such a rejection back.
                let decision = if rejection.check == gate::Check::Structure
                    && decision::check_payload(&decision.payload).is_err()
                {
                    oversized_stand_in(&decision)
                } else {
                    decision
                };
                state.note_rejection(&decision, &rejection.to_string());
                self.append(
                    job,
                    cursor,
                    rejected_body(
                        job,
                        cursor.at,
                        &decision,
                        rejection.check,
                        &rejection.reason,
                        state.clock_ms,
                    ),
                )?;
                self.audit_refusal(job, &decision, &rejection.to_string())?;
                if rejection.check == gate::Check::Budget {
                    return Ok(Step::OverBudget);
                }
            }
            Ok(()) => {
                let body = Body::Decision {
                    job: job.clone(),
                    at: cursor.at,
                    decision: decision.clone(),
                    clock_ms: state.clock_ms,
                };
                let durable = self.durable_before_effect(state, &decision);
                self.record(job, cursor, body, durable)?;
                self.fence_before_effect(job)?;
                let effect = self
                    .executor
                    .execute(plan, state, &decision, None, Some(self.live));
                unless_held(job, &decision, &effect)?;
                self.append_effect(job, cursor, &decision, &effect)?;
            }
        }
        Ok(Step::Done)
    }

    /// Every gate refusal also goes to the node's audit log.
    fn audit_refusal(
        &self,
        job: &JobId,
        decision: &Decision,
        reason: &str,
    ) -> Result<(), RunError> {
        let entry = AuditEntry {
            job: job.clone(),
            agent: decision.source.clone(),
            decision: decision.id.clone(),
            action: decision.kind.clone(),
            verdict: Verdict::Refused,
            reason: reason.to_string(),
        };
        Ok(self.live.audit(&entry)?)
    }

    fn end(
        &self,
        state: &mut JobState,
        cursor: &mut Cursor,
        runtime_failure: Option<String>,
    ) -> Result<JobEnd, RunError> {
        match runtime_failure {
            Some(reason) if !state.state.is_terminal() => {
                if let Some(next) = state.state.next(Event::Fail) {
                    state.state = next;
                }
                state.error.get_or_insert(reason);
            }
            _ => state.conclude(),
        }
        let body = Body::End {
            job: state.job.clone(),
            at: cursor.at,
            state: state.state,
            result: state.result_text(),
            reason: state.error.clone(),
            blame: state.blame.clone(),
        };
        let seq = self.record(&state.job, cursor, body, !self.defer_end)?;
        Ok(JobEnd {
            job: state.job.clone(),
            agent: state.agent.clone(),
            state: state.state,
            result: state.result(),
            reason: state.error.clone(),
            blame: state.blame.clone(),
            seq,
        })
    }

    /// The `model` record of `call`, its prompt and response stored as
    /// blobs first. The error says which blob could not be stored.
    fn model_body(
        &self,
        job: &JobId,
        at: u32,
        turn: u32,
        call: &ModelCall,
    ) -> Result<Body, String> {
        let put = |text: &str| {
            self.blobs
                .put(text.as_bytes())
                .map_err(|e| format!("cannot store blob: {e}"))
        };
        Ok(Body::Model {
            job: job.clone(),
            at,
            turn,
            provider: call.provider.clone(),
            model: call.model.clone(),
            params: call.params.clone(),
            template: call.template,
            inputs: call.inputs,
            prompt: put(&call.prompt)?,
            response: put(&call.response)?,
            tokens_in: call.tokens_in,
            tokens_out: call.tokens_out,
            duration_ms: call.duration_ms,
            error: call.error.clone(),
        })
    }
}

/// Whether a budget is spent before turn `turn` starts (for a `model`
/// agent, before its model call): every agent kind's wall time and
/// tokens, a model agent's model calls. The reason becomes the job's
/// recorded end, which replay reads back.
fn budget_exhausted(
    budget: &crate::plan::Budget,
    state: &JobState,
    model: bool,
    clock_ms: u64,
    turn: u32,
) -> Option<String> {
    if model && state.model_calls >= budget.model_calls {
        return Some(format!(
            "budget: the job has used its {} model calls",
            budget.model_calls
        ));
    }
    if state.tokens >= budget.tokens {
        return Some(format!(
            "budget: the job has used {} of its {} tokens before turn {turn}",
            state.tokens, budget.tokens
        ));
    }
    if clock_ms >= budget.wall_ms {
        return Some(format!(
            "budget: the job has run {clock_ms} ms of its {} ms wall time before turn {turn}",
            budget.wall_ms
        ));
    }
    None
}

/// The stand-in decision a `rejected` record holds when a turn's text could
/// not be parsed into decisions.
pub fn unparsed_decision(job: &JobId, turn: u32, agent: &AgentName, text: &str) -> Decision {
    Decision {
        id: DecisionId::new(job, turn, 0),
        source: agent.clone(),
        kind: UNPARSED.into(),
        payload: json!({"text": text.chars().take(UNPARSED_SHOWN_CHARS).collect::<String>()}),
    }
}

/// How much of an unrecordable proposal's text its `rejected` record keeps.
const UNPARSED_SHOWN_CHARS: usize = 2000;

/// The stand-in a `rejected` record holds for a decision whose payload is
/// too large to record: its id and the start of its text.
fn oversized_stand_in(decision: &Decision) -> Decision {
    let text = serde_json::to_string(&json!({"type": decision.kind, "payload": decision.payload}))
        .unwrap_or_default();
    Decision {
        id: decision.id.clone(),
        source: decision.source.clone(),
        kind: UNPARSED.into(),
        payload: json!({"text": text.chars().take(UNPARSED_SHOWN_CHARS).collect::<String>()}),
    }
}

pub fn rejected_body(
    job: &JobId,
    at: u32,
    decision: &Decision,
    check: gate::Check,
    reason: &str,
    clock_ms: Option<u64>,
) -> Body {
    Body::Rejected {
        job: job.clone(),
        at,
        decision: decision.clone(),
        check: check.as_str().into(),
        reason: reason.into(),
        clock_ms,
    }
}

pub fn effect_body(
    job: &JobId,
    at: u32,
    decision: &Decision,
    effect: &crate::exec::Effect,
) -> Body {
    Body::Effect {
        job: job.clone(),
        at,
        decision: decision.id.clone(),
        result: JsonText::from_value(&effect.result).expect("a JSON value has a canonical form"),
        error: effect.error.clone(),
        state: effect.state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An accepted step whose result has a float, a null and an escape.
    fn advance_step(job: &JobId) -> StepResult {
        StepResult {
            decision: DecisionId::new(job, 1, 0),
            kind: "advance".into(),
            ok: true,
            result: json!({"to": "DONE", "n": 1.5, "z": [null, "é\n"]}),
            error: None,
        }
    }

    #[test]
    fn the_fast_digest_equals_the_canonical_encoding_of_the_state() {
        let mut state = JobState::new(
            JobId::new("j\"1").unwrap_or(JobId::new("j1").unwrap()),
            AgentName::new("a").unwrap(),
        );
        assert_eq!(state.digest(), Digest::of(&state).unwrap());
        state.results.push(advance_step(&state.job));
        state.results.push(StepResult {
            decision: DecisionId::new(&state.job, 1, 1),
            kind: "fs.read".into(),
            ok: false,
            result: Value::Null,
            error: Some("rejected: scope: \"x\"".into()),
        });
        state.fail(
            "decision j1#1.1 failed".into(),
            &DecisionId::new(&state.job, 1, 1),
        );
        state.tokens = 12;
        state.turn = 3;
        state.model_calls = 2;
        assert_eq!(state.digest(), Digest::of(&state).unwrap());
    }

    #[test]
    fn a_result_matches_exactly_what_result_gives() {
        let text = |v: &Value| JsonText::from_value(v).unwrap();
        let mut state = JobState::new(JobId::new("j1").unwrap(), AgentName::new("a").unwrap());
        state.results.push(advance_step(&state.job));
        state.accepted = 1;
        state.conclude();
        let recorded = state.result();
        // The text written field by field is the generic canonical encoding.
        assert_eq!(state.result_text(), text(&recorded));
        assert!(state.result_matches(&text(&recorded)));
        let mut failed = state.clone();
        failed.results.push(StepResult {
            decision: DecisionId::new(&failed.job, 1, 1),
            kind: "tool.ü".into(),
            ok: false,
            result: json!({"b": 1e21, "a": "\u{1f600}\n"}),
            error: Some("\"quoted\"".into()),
        });
        failed.rejected = 12;
        failed.fail("boom".into(), &DecisionId::new(&failed.job, 1, 1));
        assert_eq!(failed.result_text(), text(&failed.result()));
        let mut changed = recorded.clone();
        changed["results"][0]["result"]["n"] = json!(2);
        assert!(!state.result_matches(&text(&changed)));
        for key in ["state", "decisions", "rejected", "results"] {
            let mut missing = recorded.clone();
            missing.as_object_mut().unwrap().remove(key);
            assert!(!state.result_matches(&text(&missing)), "without {key}");
        }
        let mut extra = recorded.clone();
        extra["note"] = json!(1);
        assert!(!state.result_matches(&text(&extra)));
        let mut wrong = recorded.clone();
        wrong["rejected"] = json!(1);
        assert!(!state.result_matches(&text(&wrong)));
        // The same value in other than canonical text does not match: a
        // log's lines are canonical, and the comparison is of text.
        let spaced: JsonText =
            serde_json::from_str(&serde_json::to_string_pretty(&recorded).unwrap()).unwrap();
        assert!(!state.result_matches(&spaced));
        // Past the limit the summary form is compared as a whole.
        let big = "x".repeat(MAX_END_RESULTS_BYTES);
        state.results[0].result = json!({"text": big});
        let summary = state.result();
        assert!(summary.get("results_omitted").is_some());
        assert_eq!(state.result_text(), text(&summary));
        state.rejected = 3;
        assert!(!state.result_matches(&text(&summary)));
    }

    #[test]
    fn an_end_result_past_its_limit_is_summarized_not_inlined() {
        let mut state = JobState::new(JobId::new("j").unwrap(), AgentName::new("a").unwrap());
        let big = "x".repeat(MAX_END_RESULTS_BYTES / 4);
        for i in 0..3 {
            state.results.push(StepResult {
                decision: DecisionId::new(&state.job, 1, i),
                kind: "fs.read".into(),
                ok: true,
                result: json!({"text": big}),
                error: None,
            });
        }
        assert!(
            state.result().get("results").is_some(),
            "three quarters of the limit are inlined"
        );
        state.results.push(state.results[0].clone());
        state.results.push(state.results[0].clone());
        let summary = state.result();
        assert!(summary.get("results").is_none());
        assert_eq!(summary["results_omitted"]["count"], 5);
    }
}
