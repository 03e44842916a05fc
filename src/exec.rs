//! The executor: dispatches an accepted decision to its handler by type and
//! applies the outcome to the job's state, all or nothing.
//!
//! Owns the handler registry and the built-in handlers that need no harness
//! (`advance`, `handoff`). File-system and executable tools live in
//! [`crate::harness`] and register here. Handlers are deterministic functions
//! of (decision, state, recorded inputs); whatever is not is marked so in the
//! plan, recorded, and read back on replay instead of redone.
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use crate::canon::{Digest, JsonText};
use crate::decision::{AgentName, Decision, DecisionId, JobId};
use crate::jobstate::{JobState, StepResult};
use crate::log::LogError;
use crate::plan::{HandlerSpec, Plan};
use crate::state::Event;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What a handler produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub result: Value,
    /// State-machine events to apply, all or none.
    pub events: Vec<Event>,
}

impl Outcome {
    pub fn result(result: Value) -> Outcome {
        Outcome {
            result,
            events: Vec::new(),
        }
    }
}

/// A child job a hand-off creates.
#[derive(Debug, Clone, PartialEq)]
pub struct Spawn {
    pub job: JobId,
    pub agent: AgentName,
    pub input: Value,
    pub parent: JobId,
    pub via: DecisionId,
    /// The child's place in the hand-off tree: one deeper, with the share
    /// of the tree the gate left room for.
    pub tree: crate::jobstate::Tree,
}

/// Whether a mediated action was allowed to run or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allowed,
    Refused,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Refused => "refused",
        }
    }
}

/// One mediated action or refusal, as the node's audit log records it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub job: JobId,
    pub agent: AgentName,
    pub decision: DecisionId,
    /// What was attempted, such as `fs.write notes/a.md` or `tool greet (tools/greet.sh)`.
    pub action: String,
    pub verdict: Verdict,
    pub reason: String,
}

/// The effects a live run may have on the world. Replay passes none, so a
/// handler cannot touch anything while replaying.
pub trait LiveIo: Send + Sync {
    /// The epoch of the lease this run holds its job under (0: no lease, as
    /// in `jaros run`). Part of every effect's [`idempotency_key`].
    fn epoch(&self) -> u64 {
        0
    }
    /// Told when a live effect has run (or was attempted), so the job's next
    /// record is that effect's: a node that is giving its jobs back at
    /// shutdown still records an effect that ran rather than throw it away.
    fn effect_ran(&self) {}
    /// The hive's root directory (file tools resolve paths under it).
    fn hive(&self) -> PathBuf;
    /// Enqueues a child job; must be idempotent for the same job id.
    fn spawn(&self, spawn: &Spawn) -> Result<(), String>;
    /// The data dir, which no grant reaches wherever it lives.
    fn data_dir(&self) -> Option<PathBuf> {
        None
    }
    /// Appends to the node's audit log. An action whose entry cannot be
    /// written does not run.
    fn audit(&self, entry: &AuditEntry) -> Result<(), LogError> {
        let _ = entry;
        Ok(())
    }
}

/// The idempotency key of `decision` run under lease `epoch`:
/// `<decision id>@<epoch>`, such as `j1#2.0@3`. The decision id names the
/// effect (it is the same on every run of the decision, resumed or taken
/// over); the epoch names the attempt and grows with every takeover. A tool
/// makes its outside effect exactly-once by keeping a ledger keyed by the
/// decision id, and refuses an attempt whose epoch is below the ledger's (a
/// node paused past its lease). See `docs/harness.md`.
pub fn idempotency_key(decision: &DecisionId, epoch: u64) -> String {
    format!("{decision}@{epoch}")
}

/// The OS errors that say the node's environment failed, whatever the
/// decision asked: storage full or broken, descriptors or memory run out.
/// A live effect that fails with one of them is held and retried, not
/// recorded as the decision's failure (see [`environment_cause`]).
pub const ENVIRONMENT_ERRNOS: [(rustix::io::Errno, &str); 7] = [
    (rustix::io::Errno::NOSPC, "ENOSPC (no space left on device)"),
    (rustix::io::Errno::DQUOT, "EDQUOT (disk quota exceeded)"),
    (rustix::io::Errno::IO, "EIO (input/output error)"),
    (rustix::io::Errno::ROFS, "EROFS (read-only file system)"),
    (
        rustix::io::Errno::MFILE,
        "EMFILE (too many open files in this process)",
    ),
    (
        rustix::io::Errno::NFILE,
        "ENFILE (too many open files in the system)",
    ),
    (rustix::io::Errno::NOMEM, "ENOMEM (out of memory)"),
];

/// Where a failing tool's stderr begins in its error.
pub const TOOL_STDERR_MARK: &str = "; stderr: ";
/// Where the start of a tool's unreadable stdout begins in its error.
pub const TOOL_STDOUT_MARK: &str = "; it began: ";
/// What follows one of these in an error is the tool's own to say, never
/// taken as the node's environment failing.
const TOOL_OUTPUT_MARKS: [&str; 2] = [TOOL_STDERR_MARK, TOOL_STDOUT_MARK];

/// The environment failure behind a handler's error, if it is one: the
/// first `(os error N)` (how Rust shows an OS error) of an
/// [`ENVIRONMENT_ERRNOS`] code, before any tool output in the text.
pub fn environment_cause(error: &str) -> Option<&'static str> {
    let own = TOOL_OUTPUT_MARKS
        .iter()
        .filter_map(|mark| error.find(mark))
        .min()
        .map_or(error, |end| &error[..end]);
    own.match_indices("(os error ").find_map(|(at, mark)| {
        let rest = &own[at + mark.len()..];
        let code: i32 = rest[..rest.find(')')?].parse().ok()?;
        ENVIRONMENT_ERRNOS
            .iter()
            .find(|(errno, _)| errno.raw_os_error() == code)
            .map(|(_, name)| *name)
    })
}

/// What a handler sees.
pub struct Cx<'a> {
    pub plan: &'a Plan,
    pub job: &'a JobState,
    /// `None` while replaying.
    pub live: Option<&'a dyn LiveIo>,
    /// The effect the log records for this decision (result, error) when
    /// replaying or resuming; `None` on a first live run. A deterministic
    /// handler whose live run failed for a reason outside the decision (the
    /// file system refused) reads that failure back from here.
    pub recorded: Option<(&'a JsonText, Option<&'a str>)>,
}

impl Cx<'_> {
    /// The idempotency key of `decision` in this run (see
    /// [`idempotency_key`]); the lease epoch is 0 while replaying.
    pub fn idempotency_key(&self, decision: &Decision) -> String {
        idempotency_key(&decision.id, self.live.map_or(0, |l| l.epoch()))
    }
}

/// A decision handler.
pub trait Handler: Send + Sync {
    fn run(&self, cx: &Cx<'_>, decision: &Decision) -> Result<Outcome, String>;
}

/// Runs executable tools; supplied by the harness so the executor does not
/// depend on process spawning.
pub trait ExecRunner: Send + Sync {
    fn run(&self, cx: &Cx<'_>, spec: &HandlerSpec, decision: &Decision) -> Result<Outcome, String>;
}

/// The registry of handlers by built-in name.
#[derive(Clone, Default)]
pub struct Executor {
    handlers: HashMap<String, Arc<dyn Handler>>,
    exec: Option<Arc<dyn ExecRunner>>,
}

/// The outcome of one executed decision, as the `effect` record holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    pub result: Value,
    pub error: Option<String>,
    pub state: Digest,
    /// Set when a live effect failed for its node's environment (see
    /// [`environment_cause`]): the cause and the error. Nothing was applied
    /// to the job's state and nothing is to be recorded; the job is held and
    /// the decision executed again later.
    pub held: Option<String>,
}

impl Executor {
    /// The handlers every hive has that need no harness.
    pub fn core() -> Executor {
        Executor::default()
            .with("advance", Arc::new(Advance))
            .with("handoff", Arc::new(Handoff))
    }

    /// Registers (or replaces) a built-in handler.
    pub fn with(mut self, name: &str, handler: Arc<dyn Handler>) -> Executor {
        self.handlers.insert(name.to_string(), handler);
        self
    }

    pub fn with_exec(mut self, runner: Arc<dyn ExecRunner>) -> Executor {
        self.exec = Some(runner);
        self
    }

    fn dispatch(&self, cx: &Cx<'_>, decision: &Decision) -> Result<Outcome, String> {
        let spec = cx
            .plan
            .types
            .get(&decision.kind)
            .ok_or_else(|| format!("decision type '{}' is not registered", decision.kind))?;
        match &spec.handler {
            HandlerSpec::Builtin { name } => match self.handlers.get(name) {
                Some(h) => h.run(cx, decision),
                None => Err(format!("this executor has no built-in handler '{name}'")),
            },
            exec @ HandlerSpec::Exec { .. } => match &self.exec {
                Some(runner) => runner.run(cx, exec, decision),
                None => Err("this executor cannot run executable tools".into()),
            },
        }
    }

    /// Executes an accepted decision and applies its outcome to `state`.
    ///
    /// `recorded` is the effect read from the log when replaying or resuming:
    /// deterministic handlers run again anyway (their result is compared by
    /// the caller); the others are not run and their recorded outcome is used.
    pub fn execute(
        &self,
        plan: &Plan,
        state: &mut JobState,
        decision: &Decision,
        recorded: Option<(&JsonText, Option<&str>)>,
        live: Option<&dyn LiveIo>,
    ) -> Effect {
        let deterministic = plan
            .types
            .get(&decision.kind)
            .is_some_and(|t| t.reexecuted_on_replay());
        let outcome = match recorded {
            // A recorded failure is read back for every kind of effect, as
            // for any result replay cannot recompute: it may have come from
            // the world (a full disk under a hand-off), which a re-execution
            // without it would not meet.
            Some((_, Some(error))) => Err(error.to_string()),
            Some((result, None)) if !deterministic => read_back(result),
            _ => {
                let cx = Cx {
                    plan,
                    job: state,
                    live,
                    recorded,
                };
                // A panicking handler fails its decision, not the process.
                let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.dispatch(&cx, decision)
                })) {
                    Ok(outcome) => outcome,
                    Err(panic) => Err(format!("handler panicked: {}", panic_text(&panic))),
                };
                if let Some(live) = live {
                    live.effect_ran();
                    // The node's environment failed, not the decision: hold
                    // it, state untouched, for the node to retry.
                    if let Err(e) = &outcome {
                        if let Some(cause) = environment_cause(e) {
                            return Effect {
                                result: Value::Null,
                                error: Some(e.clone()),
                                state: state.digest(),
                                held: Some(format!("{cause}: {e}")),
                            };
                        }
                    }
                }
                outcome
            }
        };
        let (result, error) = match outcome {
            Ok(outcome) => match state.state.apply_all(&outcome.events) {
                Ok(next) => {
                    // An agent that fails its own job is the cause of that
                    // failure: record it as such.
                    if next == crate::state::State::Failed
                        && state.state != next
                        && state.error.is_none()
                    {
                        let note = decision.payload.get("note").map_or(String::new(), |n| {
                            format!(": {}", n.as_str().map_or(n.to_string(), str::to_string))
                        });
                        state.error = Some(format!(
                            "decision {} ({}) failed the job{note}",
                            decision.id, decision.kind
                        ));
                        state.blame = Some(decision.id.clone());
                    }
                    state.state = next;
                    (outcome.result, None)
                }
                Err(e) => (Value::Null, Some(e.to_string())),
            },
            Err(e) => (Value::Null, Some(e)),
        };
        state.accepted += 1;
        state.results.push(StepResult {
            decision: decision.id.clone(),
            kind: decision.kind.clone(),
            ok: error.is_none(),
            result: result.clone(),
            error: error.clone(),
        });
        if let Some(e) = &error {
            state.fail(
                format!("decision {} ({}) failed: {e}", decision.id, decision.kind),
                &decision.id,
            );
        }
        Effect {
            result,
            error,
            state: state.digest(),
            held: None,
        }
    }
}

/// A recorded result, read back as the handler's outcome.
pub fn read_back(result: &JsonText) -> Result<Outcome, String> {
    result
        .to_value()
        .map(Outcome::result)
        .map_err(|e| format!("the recorded result cannot be read back: {e}"))
}

pub fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

/// `advance`: applies the payload's events to the job's state machine.
struct Advance;

impl Handler for Advance {
    fn run(&self, cx: &Cx<'_>, decision: &Decision) -> Result<Outcome, String> {
        let events: Vec<Event> = serde_json::from_value(decision.payload["events"].clone())
            .map_err(|e| format!("payload/events: {e}"))?;
        let to = cx.job.state.apply_all(&events).map_err(|e| e.to_string())?;
        Ok(Outcome {
            result: json!({"from": cx.job.state, "to": to}),
            events,
        })
    }
}

/// The id of the child job a hand-off creates: derived from the parent and
/// the decision, so a resumed or replayed hand-off names the same child.
pub fn child_job_id(decision: &DecisionId) -> JobId {
    let text = decision.as_str().replace('#', "-");
    match JobId::new(text.clone()) {
        Ok(id) => id,
        // Too long after many nested hand-offs: fall back to a hash.
        Err(_) => JobId::new(format!(
            "h-{}",
            &Digest::of_bytes(text.as_bytes()).to_hex()[..32]
        ))
        .expect("hex ids are valid job ids"),
    }
}

/// `handoff`: enqueues a job for another agent, linked to this one.
struct Handoff;

impl Handler for Handoff {
    fn run(&self, cx: &Cx<'_>, decision: &Decision) -> Result<Outcome, String> {
        let agent = decision.payload["agent"].as_str().unwrap_or_default();
        let agent = AgentName::new(agent).map_err(|e| e.to_string())?;
        let spawn = Spawn {
            job: child_job_id(&decision.id),
            agent,
            input: decision
                .payload
                .get("input")
                .cloned()
                .unwrap_or(Value::Null),
            parent: cx.job.job.clone(),
            via: decision.id.clone(),
            tree: crate::jobstate::Tree {
                depth: cx.job.tree.depth.saturating_add(1),
                jobs: Some(cx.job.child_share(cx.plan)),
            },
        };
        if let Some(live) = cx.live {
            live.spawn(&spawn)?;
        }
        Ok(Outcome::result(
            json!({"job": spawn.job, "agent": spawn.agent}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handoff_decision(job: &JobId) -> Decision {
        Decision {
            id: DecisionId::new(job, 1, 0),
            source: AgentName::new("a").unwrap(),
            kind: "handoff".into(),
            payload: json!({"agent": "b", "input": {}}),
        }
    }

    #[test]
    fn the_failures_of_the_environment_are_told_from_the_decisions() {
        let full = std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error());
        let error = format!("cannot write /d/inbox/.c.json.tmp: {full}");
        assert_eq!(
            environment_cause(&error),
            Some("ENOSPC (no space left on device)")
        );
        for errno in [
            rustix::io::Errno::IO,
            rustix::io::Errno::MFILE,
            rustix::io::Errno::NFILE,
            rustix::io::Errno::DQUOT,
            rustix::io::Errno::ROFS,
        ] {
            let e = std::io::Error::from_raw_os_error(errno.raw_os_error());
            assert!(environment_cause(&format!("x: {e}")).is_some(), "{e}");
        }
        // The decision's own failures are not the environment's.
        let missing = std::io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error());
        assert_eq!(
            environment_cause(&format!("cannot read a: {missing}")),
            None
        );
        assert_eq!(environment_cause("payload/path must be a string"), None);
        // What a tool printed is the tool's: its own full disk fails it.
        let tool = format!("tool 't' exited with status 1{TOOL_STDERR_MARK}{full}");
        assert_eq!(environment_cause(&tool), None);
        let tool = format!("tool 't' printed invalid JSON{TOOL_STDOUT_MARK}\"{full}\"");
        assert_eq!(environment_cause(&tool), None);
    }

    /// A live hand-off whose spawn meets a full disk.
    struct FullDisk;

    impl LiveIo for FullDisk {
        fn hive(&self) -> PathBuf {
            PathBuf::from("/nonexistent")
        }
        fn spawn(&self, _: &Spawn) -> Result<(), String> {
            let e = std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error());
            Err(format!("cannot write /d/inbox/.c.json.tmp: {e}"))
        }
    }

    #[test]
    fn a_live_effect_that_meets_a_full_disk_is_held_and_leaves_the_state_alone() {
        let plan = Plan::builtin();
        let job = JobId::new("j1").unwrap();
        let mut state = JobState::new(job.clone(), AgentName::new("a").unwrap());
        let before = state.clone();
        let effect = Executor::core().execute(
            &plan,
            &mut state,
            &handoff_decision(&job),
            None,
            Some(&FullDisk),
        );
        assert!(effect
            .held
            .as_deref()
            .is_some_and(|h| h.starts_with("ENOSPC")));
        assert_eq!(state, before);
    }

    #[test]
    fn a_recorded_failure_is_read_back_for_a_recomputed_effect_too() {
        let plan = Plan::builtin();
        let job = JobId::new("j1").unwrap();
        let mut state = JobState::new(job.clone(), AgentName::new("a").unwrap());
        let recorded_error = "cannot write inbox: No space left on device (os error 28)";
        let null = JsonText::from_value(&Value::Null).unwrap();
        let effect = Executor::core().execute(
            &plan,
            &mut state,
            &handoff_decision(&job),
            Some((&null, Some(recorded_error))),
            None,
        );
        assert_eq!(effect.error.as_deref(), Some(recorded_error));
        assert_eq!(effect.held, None);
        assert_eq!(state.state, crate::state::State::Failed);
    }

    #[test]
    fn the_idempotency_key_is_the_decision_and_the_epoch() {
        let job = JobId::new("j1").unwrap();
        assert_eq!(idempotency_key(&DecisionId::new(&job, 2, 0), 3), "j1#2.0@3");
    }
}
