//! The fold: one job's records, in `at` order, folded into its state with
//! the gate and the executor, each record checked against what they give.
//! The live runner resumes a job with it, replay runs it over every job, and
//! blame's counterfactual runs it leniently over edited records.
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use crate::canon::Digest;
use crate::decision::{AgentName, Decision, DecisionId, JobId};
use crate::exec::Executor;
use crate::gate;
use crate::jobstate::{JobEnd, JobState, Tree, UNPARSED};
use crate::log::Body;
use crate::plan::Plan;
use crate::state::State;
use serde::Serialize;
use serde_json::Value;

/// A job's records folded into its state.
#[derive(Debug)]
pub struct Folded {
    pub state: JobState,
    /// The `at` the job's next record takes.
    pub next_at: u32,
    pub ended: Option<JobEnd>,
    /// A decision recorded without its effect.
    pub pending: Option<Decision>,
    /// Positions of the current turn already recorded.
    pub positions_done: u32,
    /// The response blob of the current turn's model call.
    pub last_response: Option<Digest>,
    pub counts: FoldCounts,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FoldCounts {
    pub decisions: u64,
    pub rejected: u64,
    /// Deterministic effects executed again and compared.
    pub reexecuted: u64,
    /// Recorded results read back instead of running a tool.
    pub read_back: u64,
    pub model_records: u64,
}

impl Folded {
    pub fn new(job: JobId, agent: AgentName) -> Folded {
        Folded {
            state: JobState::new(job, agent),
            next_at: 1,
            ended: None,
            pending: None,
            positions_done: 0,
            last_response: None,
            counts: FoldCounts::default(),
        }
    }
}

/// Where a fold stopped agreeing with the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Index of the record in the slice given to [`fold`].
    pub index: usize,
    pub decision: Option<DecisionId>,
    pub what: String,
}

/// Folds one job's records (in `at` order, starting with its `job` record)
/// into its state, checking each against the gate and executor.
pub fn fold(plan: &Plan, executor: &Executor, records: &[&Body]) -> Result<Folded, Divergence> {
    fold_records(plan, executor, records, Checks::All, true, None)
}

/// How much of the record a fold checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checks {
    /// Every record against the gate and the executor: replay, resuming.
    All,
    /// None of the gate's verdicts, re-executed results or state digests:
    /// the records were edited on purpose (blame's counterfactual), so only
    /// the state they lead to is wanted.
    Lenient,
}

/// Folds records into a job state like [`fold`], without comparing the
/// gate's verdicts, results or state digests with the record (the records
/// were edited on purpose); `None` where they cannot be folded at all.
pub fn fold_lenient(plan: &Plan, executor: &Executor, records: &[&Body]) -> Option<JobState> {
    fold_records(plan, executor, records, Checks::Lenient, false, None)
        .ok()
        .map(|f| f.state)
}

/// A recorded decision, met while its job is folded under its recorded
/// plan: what the gate judged, and the job's state it judged it in.
#[derive(Debug)]
pub struct Met<'a> {
    /// The job's state just before the gate's check (its `clock_ms` is the
    /// recorded reading).
    pub state: &'a JobState,
    pub decision: &'a Decision,
    pub turn: u32,
    pub position: u32,
    /// `None` when the gate accepted it; the recorded check and reason when
    /// it refused it.
    pub refused: Option<(&'a str, &'a str)>,
}

/// What to call at each recorded decision of a fold.
type Visit<'v> = Option<&'v mut dyn FnMut(&Met<'_>)>;

/// [`fold`] with `checks`, building the end's result in `Folded::ended` only when
/// `end_result` (a replay pass never reads it; copying each job's was one
/// of the copies that, gone, took replay 15–20% faster).
pub(crate) fn fold_records(
    plan: &Plan,
    executor: &Executor,
    records: &[&Body],
    checks: Checks,
    end_result: bool,
    mut visit: Visit<'_>,
) -> Result<Folded, Divergence> {
    let strict = checks == Checks::All;
    let diverge = |index: usize, decision: Option<&DecisionId>, what: String| Divergence {
        index,
        decision: decision.cloned(),
        what,
    };
    let Some(Body::Job {
        job,
        agent,
        depth,
        tree_jobs,
        ..
    }) = records.first()
    else {
        return Err(diverge(
            0,
            None,
            "the job's history does not start with its job record".into(),
        ));
    };
    let mut f = Folded::new(job.clone(), agent.clone());
    f.state.tree = Tree {
        depth: depth.unwrap_or(0),
        jobs: *tree_jobs,
    };
    // The decision awaiting its effect, borrowed until the fold ends.
    let mut pending: Option<&Decision> = None;
    for (index, body) in records.iter().enumerate().skip(1) {
        if f.ended.is_some() {
            return Err(diverge(
                index,
                None,
                format!("a {} record follows the job's end", body.kind()),
            ));
        }
        if let Some((_, at)) = body.job_at() {
            if at != index as u32 {
                return Err(diverge(index, None, format!("record has at={at}, expected {index}: a record of this job is missing or duplicated")));
            }
        }
        if let (Some(d), false) = (pending, matches!(body, Body::Effect { .. })) {
            return Err(diverge(
                index,
                Some(&d.id),
                "a decision is followed by something other than its effect".into(),
            ));
        }
        match body {
            Body::Plan { .. } | Body::Job { .. } | Body::Audit { .. } => {
                return Err(diverge(
                    index,
                    None,
                    format!("unexpected {} record inside the job", body.kind()),
                ));
            }
            Body::Model {
                turn,
                tokens_in,
                tokens_out,
                response,
                ..
            } => {
                enter_turn(&mut f, *turn);
                f.state.model_calls += 1;
                f.state.tokens += tokens_in + tokens_out;
                f.last_response = Some(*response);
                f.counts.model_records += 1;
            }
            Body::Decision {
                decision, clock_ms, ..
            } => {
                let (turn, position) = turn_position(index, decision)?;
                enter_turn(&mut f, turn);
                // The gate checks the wall time against the reading the
                // live run recorded.
                f.state.clock_ms = *clock_ms;
                if let Some(visit) = &mut visit {
                    visit(&Met {
                        state: &f.state,
                        decision,
                        turn,
                        position,
                        refused: None,
                    });
                }
                if let (true, Err(rejection)) = (
                    strict,
                    gate::check(plan, &f.state, decision, turn, position),
                ) {
                    return Err(diverge(
                        index,
                        Some(&decision.id),
                        format!("the gate now rejects this recorded decision ({rejection})"),
                    ));
                }
                f.positions_done = position + 1;
                pending = Some(decision);
                f.counts.decisions += 1;
            }
            Body::Effect {
                decision: id,
                result,
                error,
                state,
                ..
            } => {
                let Some(decision) = pending.take() else {
                    return Err(diverge(
                        index,
                        Some(id),
                        "an effect without its decision".into(),
                    ));
                };
                if decision.id != *id {
                    return Err(diverge(
                        index,
                        Some(id),
                        format!("effect names {id}, the pending decision is {}", decision.id),
                    ));
                }
                let deterministic = plan
                    .types
                    .get(&decision.kind)
                    .is_some_and(|t| t.reexecuted_on_replay());
                let effect = executor.execute(
                    plan,
                    &mut f.state,
                    decision,
                    Some((result, error.as_deref())),
                    None,
                );
                if !strict {
                    // Edited records: the state they lead to is all that counts.
                } else if deterministic {
                    f.counts.reexecuted += 1;
                    // Compared as canonical text, as the log holds it.
                    let same_result = crate::canon::to_string(&effect.result)
                        .is_ok_and(|ours| ours == result.as_str());
                    if !same_result || effect.error != *error {
                        return Err(diverge(
                            index,
                            Some(id),
                            format!(
                                "re-executing '{}' gave {} but the log records {}",
                                decision.kind,
                                short_json(&effect.result, effect.error.as_deref()),
                                short_text(result.as_str(), error.as_deref())
                            ),
                        ));
                    }
                } else {
                    f.counts.read_back += 1;
                }
                if strict && effect.state != *state {
                    return Err(diverge(
                        index,
                        Some(id),
                        format!(
                            "job state after the effect hashes to {}, the log records {}",
                            effect.state.short(),
                            state.short()
                        ),
                    ));
                }
            }
            Body::Rejected {
                decision,
                check,
                reason,
                clock_ms,
                ..
            } => {
                let (turn, position) = turn_position(index, decision)?;
                enter_turn(&mut f, turn);
                f.state.clock_ms = *clock_ms;
                if let (Some(visit), false) = (&mut visit, decision.kind == UNPARSED) {
                    visit(&Met {
                        state: &f.state,
                        decision,
                        turn,
                        position,
                        refused: Some((check.as_str(), reason.as_str())),
                    });
                }
                if strict && decision.kind != UNPARSED {
                    match gate::check(plan, &f.state, decision, turn, position) {
                        Ok(()) => {
                            return Err(diverge(
                                index,
                                Some(&decision.id),
                                "the gate now accepts this recorded rejection".into(),
                            ))
                        }
                        Err(r) if r.check.as_str() != check || r.reason != *reason => {
                            return Err(diverge(index, Some(&decision.id), format!("the gate now rejects with '{r}', the log records '{check}: {reason}'")));
                        }
                        Err(_) => {}
                    }
                }
                f.state
                    .note_rejection(decision, &format!("{check}: {reason}"));
                f.positions_done = position + 1;
                f.counts.rejected += 1;
            }
            Body::End {
                state,
                reason,
                blame,
                result,
                ..
            } => {
                if !f.state.state.is_terminal()
                    && *state == State::Failed
                    && reason.is_some()
                    && f.state.error.is_none()
                    && blame.is_none()
                {
                    // A failure the runtime decided from outside the records
                    // (a model error, a budget of wall time): recorded, read back.
                    if let Some(next) = f.state.state.next(crate::state::Event::Fail) {
                        f.state.state = next;
                    }
                    f.state.error = reason.clone();
                } else {
                    f.state.conclude();
                }
                if f.state.state != *state || f.state.blame != *blame {
                    return Err(diverge(
                        index,
                        blame.as_ref(),
                        format!(
                            "the job ends {} (blame {}), the log records {} (blame {})",
                            f.state.state,
                            f.state
                                .blame
                                .as_ref()
                                .map_or("none".into(), |b| b.to_string()),
                            state,
                            blame.as_ref().map_or("none".into(), |b| b.to_string())
                        ),
                    ));
                }
                if !f.state.result_matches(result) {
                    return Err(diverge(
                        index,
                        blame.as_ref(),
                        format!(
                            "the job's result is {}, the log records {}",
                            short_text(f.state.result_text().as_str(), None),
                            short_text(result.as_str(), None)
                        ),
                    ));
                }
                f.ended = Some(JobEnd {
                    job: f.state.job.clone(),
                    agent: f.state.agent.clone(),
                    state: *state,
                    result: if end_result {
                        // The same value: the recorded text matched it.
                        f.state.result()
                    } else {
                        Value::Null
                    },
                    reason: reason.clone(),
                    blame: blame.clone(),
                    seq: 0,
                });
            }
        }
        f.next_at = index as u32 + 1;
    }
    f.pending = pending.cloned();
    Ok(f)
}

fn enter_turn(f: &mut Folded, turn: u32) {
    if turn != f.state.turn {
        f.state.turn = turn;
        f.positions_done = 0;
        f.last_response = None;
    }
}

fn turn_position(index: usize, decision: &Decision) -> Result<(u32, u32), Divergence> {
    decision.id.turn_position().ok_or_else(|| Divergence {
        index,
        decision: Some(decision.id.clone()),
        what: format!("decision id '{}' is not a runtime id", decision.id),
    })
}

/// How much of a value a divergence shows.
const SHOWN: usize = 200;

fn short_json(value: &Value, error: Option<&str>) -> String {
    short_text(&crate::canon::to_string(value).unwrap_or_default(), error)
}

fn short_text(text: &str, error: Option<&str>) -> String {
    match error {
        Some(e) => crate::decision::excerpt(&format!("error '{e}'"), SHOWN),
        None => crate::decision::excerpt(text, SHOWN),
    }
}
