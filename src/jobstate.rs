//! A job's state: what its digest covers, how it moves (fail, rejection,
//! the runtime's concluding rule), its place in a hand-off tree, its result
//! as `end` records hold it, and how a job ended. The gate judges against
//! it, the executor changes it, the fold and the runner carry it; it
//! stands below all of them.
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use crate::canon::{Digest, JsonText};
use crate::decision::{AgentName, Decision, DecisionId, JobId};
use crate::plan::Plan;
use crate::state::{Event, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

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
