//! Running one job: the agent proposes, the gate decides, the log records,
//! the executor acts; turn after turn until the job ends.
//!
//! Owns the [`Proposer`] interface agents implement and the [`Runner`] that
//! drives a job live, resuming from recorded history when there is some
//! (folded by [`crate::fold`], as replay folds it). The job's state lives
//! below, in [`crate::jobstate`]; it is re-exported here.
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use crate::canon::{Digest, JsonText};
use crate::decision::{self, AgentName, Decision, DecisionId, JobId, Proposal};
use crate::exec::{AuditEntry, Executor, LiveIo, Verdict};
use crate::fold::{self, Folded};
use crate::gate;
use crate::log::{Blobs, Body, LogError, LogWriter};
use crate::plan::{AgentSpec, Plan};
use crate::state::{Event, State};
use serde_json::{json, Value};
use std::sync::Arc;

pub use crate::jobstate::{JobEnd, JobState, StepResult, Tree, MAX_END_RESULTS_BYTES, UNPARSED};

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
    /// A decision waits for a person's verdict: its `waiting` record is
    /// durable, and the job parks without a thread until a verdict or its
    /// expiry (see docs/approval.md). A resumed run reads the verdict.
    #[error("decision {} of job {job} waits for a person's verdict", waiting.decision.id)]
    Parked {
        job: JobId,
        waiting: Box<fold::Waiting>,
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
            | Body::Effect { .. }
            | Body::Waiting { .. }
            | Body::Verdict { .. } => true,
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

    /// Runs a decision the gate (and, where a rule asks, a person) accepted:
    /// its record (durable first when its effect needs it), the fence once
    /// more, the effect, and the effect's record.
    fn run_accepted(
        &self,
        plan: &Plan,
        state: &mut JobState,
        job: &JobId,
        cursor: &mut Cursor,
        decision: &Decision,
    ) -> Result<(), RunError> {
        let body = Body::Decision {
            job: job.clone(),
            at: cursor.at,
            decision: decision.clone(),
            clock_ms: state.clock_ms,
        };
        let durable = self.durable_before_effect(state, decision);
        self.record(job, cursor, body, durable)?;
        self.fence_before_effect(job)?;
        let effect = self
            .executor
            .execute(plan, state, decision, None, Some(self.live));
        unless_held(job, decision, &effect)?;
        self.append_effect(job, cursor, decision, &effect)?;
        Ok(())
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
        // On resume the job is what its `job` record says, whatever the
        // ticket says: a ticket written by hand (a parked job's id dropped
        // into the inbox marked to resume) must not run the job's later
        // turns as another agent or on another input.
        let recorded;
        let ticket = match history.first() {
            Some(Body::Job {
                agent,
                input,
                parent,
                via,
                ..
            }) => {
                recorded = Ticket {
                    job: ticket.job.clone(),
                    agent: agent.clone(),
                    input: input.clone(),
                    parent: parent.clone(),
                    via: via.clone(),
                };
                if recorded.agent != ticket.agent || recorded.input != ticket.input {
                    tracing::warn!(
                        "job {}: its ticket (agent {}) differs from its job record (agent {}) in agent or input; the record counts",
                        ticket.job,
                        ticket.agent,
                        recorded.agent
                    );
                }
                &recorded
            }
            _ => ticket,
        };
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
            match fold::fold(plan, self.executor, &refs) {
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
        // A decision that waits for a person: read its verdict (or park
        // again), then run or refuse it and go on with the turn.
        if let Some(waiting) = folded.waiting.take() {
            let position = waiting.decision.id.turn_position().map_or(0, |(_, p)| p);
            self.answer(job, &mut cursor, &mut folded.state, waiting)?;
            folded.positions_done = position + 1;
        }
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
            let proposals = match proposals_of(spec, ticket, &text) {
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
        let Ok(mut folded) = fold::fold(&self.plan, self.executor, &refs) else {
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
                if let Some((_, rule)) = crate::approval::rule_for(plan, &decision) {
                    // Durable before the job parks: the request is the log's.
                    let waiting = fold::Waiting {
                        decision,
                        approvers: rule.approvers.clone(),
                        expires_ms: now_unix_ms().saturating_add(rule.expires_ms),
                        clock_ms: state.clock_ms,
                        verdict: None,
                    };
                    let body = Body::Waiting {
                        job: job.clone(),
                        at: cursor.at,
                        decision: waiting.decision.clone(),
                        approvers: waiting.approvers.clone(),
                        expires_ms: waiting.expires_ms,
                        clock_ms: waiting.clock_ms,
                    };
                    self.append(job, cursor, body)?;
                    return Err(RunError::Parked {
                        job: job.clone(),
                        waiting: Box::new(waiting),
                    });
                }
                self.run_accepted(plan, state, job, cursor, &decision)?;
            }
        }
        Ok(Step::Done)
    }

    /// Gives a waiting decision its verdict: the one recorded, else the one
    /// in the data dir (recorded now, durably, as an input), else "expired"
    /// once its time is up; with none, the job parks again. Then an approved
    /// decision is recorded and runs; a denied one is refused as the gate
    /// refuses, its reason for the agent's next turn.
    fn answer(
        &self,
        job: &JobId,
        cursor: &mut Cursor,
        state: &mut JobState,
        waiting: fold::Waiting,
    ) -> Result<(), RunError> {
        let plan = &*self.plan;
        let decision = waiting.decision.clone();
        let (approved, by, reason) = match waiting.verdict.clone() {
            Some(verdict) => verdict,
            None => {
                let given = match self.live.verdict(job, &decision.id, &waiting.approvers) {
                    Ok(given) => given,
                    Err(refused) => {
                        let entry = AuditEntry {
                            job: job.clone(),
                            agent: decision.source.clone(),
                            decision: decision.id.clone(),
                            action: "approval".into(),
                            verdict: Verdict::Refused,
                            reason: format!(
                                "verdict file {} refused: {}",
                                refused.path.display(),
                                refused.reason
                            ),
                        };
                        self.live.audit(&entry)?;
                        self.live.refuse_verdict(&refused, u64::from(cursor.at));
                        None
                    }
                };
                let now = now_unix_ms();
                let body = match given {
                    Some(v) => Body::Verdict {
                        job: job.clone(),
                        at: cursor.at,
                        decision: decision.id.clone(),
                        verdict: v.verdict.as_str().into(),
                        by: v.by,
                        at_ms: v.at_ms,
                        note: v.note,
                        reason: v.reason,
                    },
                    None if now >= waiting.expires_ms => Body::Verdict {
                        job: job.clone(),
                        at: cursor.at,
                        decision: decision.id.clone(),
                        verdict: "deny".into(),
                        by: crate::approval::RUNTIME_APPROVER.into(),
                        at_ms: now,
                        note: None,
                        reason: Some(crate::approval::EXPIRED_REASON.into()),
                    },
                    None => {
                        return Err(RunError::Parked {
                            job: job.clone(),
                            waiting: Box::new(waiting),
                        })
                    }
                };
                let Body::Verdict {
                    verdict,
                    by,
                    reason,
                    ..
                } = &body
                else {
                    unreachable!("built as a verdict just above")
                };
                let answer = (verdict == "approve", by.clone(), reason.clone());
                self.append(job, cursor, body)?;
                answer
            }
        };
        state.clock_ms = waiting.clock_ms;
        if approved {
            self.run_accepted(plan, state, job, cursor, &decision)?;
        } else {
            let why = crate::approval::denial_reason(&by, reason.as_deref());
            let check = gate::Check::Approval;
            state.note_rejection(&decision, &format!("{check}: {why}"));
            let body = rejected_body(job, cursor.at, &decision, check, &why, state.clock_ms);
            self.append(job, cursor, body)?;
            self.audit_refusal(job, &decision, &format!("{check}: {why}"))?;
        }
        Ok(())
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

/// The proposals of a turn's text: the decisions it lists, or for a verdict
/// agent the decisions its verdict stands for under the plan's mapping. A
/// live turn and a resumed one both come here with the recorded text, so
/// they derive the same decisions. An answer that gives none is the agent's
/// error, recorded as an unparsed turn.
fn proposals_of(spec: &AgentSpec, ticket: &Ticket, text: &str) -> Result<Vec<Proposal>, String> {
    match &spec.kind {
        crate::plan::AgentKind::Model {
            verdicts: Some(verdicts),
            ..
        } => crate::verdict::proposals(
            verdicts,
            text,
            &ticket.input,
            ticket.agent.as_str(),
            ticket.job.as_str(),
        )
        .map_err(|e| e.to_string()),
        _ => decision::parse_proposals(text),
    }
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
