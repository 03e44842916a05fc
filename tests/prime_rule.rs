//! The prime rule without exceptions: a decision whose effect reaches
//! outside its job is durable before the effect starts, whoever proposed
//! it; every budget holds for every kind of agent, across resumes; a
//! hand-off tree is bounded; and the gate, not the effect, refuses a
//! payload its schema does not allow.

mod common;

use common::Hive;
use jaros::datadir::DataDir;
use jaros::decision::{AgentName, JobId};
use jaros::exec::{AuditEntry, Executor, LiveIo, Spawn, Verdict};
use jaros::harness::{self, ToolRunner};
use jaros::job::{JobEnd, ProposedTurn, Proposer, Ticket, TurnRequest};
use jaros::log::{read_log, Body, LogError, LogWriter};
use jaros::plan::{AgentKind, AgentSpec, Grant, Plan};
use jaros::replay::{replay, Options};
use jaros::runtime::{HiveIo, Runtime};
use jaros::state::State;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Mutex;

/// Proposes the same text every turn: a deterministic agent, no model.
struct Fixed(String);

impl Proposer for Fixed {
    fn propose(&self, _: &TurnRequest<'_>) -> Result<ProposedTurn, String> {
        Ok(ProposedTurn {
            text: self.0.clone(),
            call: None,
        })
    }
}

fn executor() -> Executor {
    harness::register(
        Executor::core(),
        ToolRunner::new(Some(PathBuf::from(env!("CARGO_BIN_EXE_jaros")))),
    )
}

/// A plan with agent `agent` (no model) whose role grants `types`, writes
/// under `notes/`, and hand-offs to `handoff`.
fn plan_with(agent: &str, types: &[&str], handoff: &[&str], max_steps: u32) -> Plan {
    let mut plan = Plan::builtin();
    plan.roles.insert(
        "r".into(),
        Grant {
            types: types.iter().map(|s| s.to_string()).collect(),
            write: vec!["notes/**".into()],
            read: vec!["notes/**".into()],
            handoff: handoff.iter().map(|s| s.to_string()).collect(),
            ..Grant::default()
        },
    );
    plan.agents.insert(
        agent.into(),
        AgentSpec {
            role: "r".into(),
            max_steps,
            kind: AgentKind::Builtin { name: agent.into() },
            description: String::new(),
        },
    );
    plan
}

fn ticket(job: &str, agent: &str) -> Ticket {
    Ticket {
        job: JobId::new(job).unwrap(),
        agent: AgentName::new(agent).unwrap(),
        input: json!({}),
        parent: None,
        via: None,
    }
}

fn decisions(list: &[Value]) -> String {
    json!(list).to_string()
}

fn reproducible(data: PathBuf) -> jaros::replay::Report {
    let report = replay(&DataDir::new(data), &executor(), &Options::default()).unwrap();
    assert!(report.reproducible(), "{report:#?}");
    report
}

/// A cut point at every effect that reaches outside a job: when a child
/// job is about to be written or a file about to be written (its audit
/// entry comes just before), it keeps only what a crash at that instant
/// would leave of the log (the records synced) and checks that the
/// decision behind the effect is among them.
struct CutPoint<'a> {
    inner: HiveIo,
    log: &'a LogWriter,
    /// Each cut: the decision, and whether it survived.
    cuts: Mutex<Vec<(String, bool)>>,
}

impl CutPoint<'_> {
    fn cut(&self, decision: &str) {
        let durable = self.log.durable_seq();
        let survived = read_log(self.log.path())
            .unwrap()
            .records
            .into_iter()
            .filter(|r| r.seq <= durable)
            .any(|r| matches!(&r.body, Body::Decision { decision: d, .. } if d.id.as_str() == decision));
        self.cuts
            .lock()
            .unwrap()
            .push((decision.to_string(), survived));
    }
}

impl LiveIo for CutPoint<'_> {
    fn hive(&self) -> PathBuf {
        self.inner.hive()
    }
    fn data_dir(&self) -> Option<PathBuf> {
        self.inner.data_dir()
    }
    fn spawn(&self, spawn: &Spawn) -> Result<(), String> {
        self.cut(spawn.via.as_str());
        self.inner.spawn(spawn)
    }
    fn audit(&self, entry: &AuditEntry) -> Result<(), LogError> {
        if entry.verdict == Verdict::Allowed {
            self.cut(entry.decision.as_str());
        }
        self.inner.audit(entry)
    }
}

#[test]
fn a_hand_off_or_a_write_of_an_agent_without_a_model_is_durable_before_its_effect() {
    let hive = Hive::empty();
    let plan = plan_with(
        "scribe",
        &["handoff", "fs.write", "advance"],
        &["advance"],
        1,
    );
    let rt = Runtime::open(hive.path(), DataDir::new(hive.data()), "n1".into(), plan).unwrap();
    let live = CutPoint {
        inner: rt.live_io(),
        log: &rt.log,
        cuts: Mutex::new(Vec::new()),
    };
    let executor = executor();
    let proposer = Fixed(decisions(&[
        json!({"type": "advance", "payload": {"events": ["start"]}}),
        json!({"type": "handoff", "payload": {"agent": "advance", "input": "hi"}}),
        json!({"type": "fs.write", "payload": {"path": "notes/a.md", "content": "a"}}),
    ]));
    let runner = rt.runner(&executor, &proposer, &live, &|| true);
    let end = runner.run(&ticket("j1", "scribe"), &[]).unwrap();
    assert_eq!(end.state, State::Done, "{end:?}");
    let cuts = live.cuts.lock().unwrap().clone();
    assert_eq!(
        cuts,
        vec![("j1#1.1".to_string(), true), ("j1#1.2".to_string(), true)],
        "a crash as the child job or the file appears must find its decision durable"
    );
    assert!(hive.data().join("inbox/j1-1.1.json").is_file());
    assert_eq!(
        std::fs::read_to_string(hive.path().join("notes/a.md")).unwrap(),
        "a"
    );
    drop(runner);
    drop(rt);
    reproducible(hive.data());
}

#[test]
fn fs_write_without_content_is_refused_by_the_gate() {
    let hive = Hive::empty();
    let plan = plan_with("scribe", &["fs.write"], &[], 1);
    let rt = Runtime::open(hive.path(), DataDir::new(hive.data()), "n1".into(), plan).unwrap();
    let live = rt.live_io();
    let executor = executor();
    let proposer = Fixed(decisions(&[
        json!({"type": "fs.write", "payload": {"path": "notes/a.md"}}),
    ]));
    let runner = rt.runner(&executor, &proposer, &live, &|| true);
    let end: JobEnd = runner.run(&ticket("j1", "scribe"), &[]).unwrap();
    assert_eq!(end.state, State::Failed);
    let reason = end.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("was rejected: schema:") && reason.contains("content"),
        "{reason}"
    );
    assert_eq!(end.result["decisions"], 0, "no effect ran: {end:?}");
    assert!(!hive.path().join("notes/a.md").exists());
}
