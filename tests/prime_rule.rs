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

/// Takes the job's lease away (as a node that took the next epoch would),
/// waits for the heartbeat to see it, then panics.
struct PanicsAfterLosingTheLease {
    data: PathBuf,
    panicked: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proposer for PanicsAfterLosingTheLease {
    fn propose(&self, request: &TurnRequest<'_>) -> Result<ProposedTurn, String> {
        let job = request.state.job.as_str();
        std::fs::write(self.data.join(format!("claimed/{job}.lease.2")), "").unwrap();
        // Heartbeats come every 20 ms: this lets several see the new epoch.
        std::thread::sleep(std::time::Duration::from_millis(500));
        self.panicked
            .store(true, std::sync::atomic::Ordering::SeqCst);
        panic!("a proposer bug");
    }
}

#[test]
fn a_job_whose_run_panics_after_its_lease_is_lost_records_no_end_and_no_result() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let hive = Hive::empty();
    let data = DataDir::new(hive.data());
    data.create().unwrap();
    let plan = plan_with("scribe", &["advance"], &[], 1);
    std::fs::write(
        data.inbox().join("p1.json"),
        json!({"id": "p1", "agent": "scribe", "input": {}}).to_string(),
    )
    .unwrap();
    let panicked = Arc::new(AtomicBool::new(false));
    let proposer = PanicsAfterLosingTheLease {
        data: hive.data(),
        panicked: panicked.clone(),
    };
    let mut cfg = jaros::node::NodeConfig::new("n1".into());
    cfg.pool_size = 1;
    cfg.heartbeat_ms = 20;
    cfg.scan_ms = 20;
    cfg.lease_ms = 60_000;
    cfg.grace_ms = 1_000;
    cfg.notify = false;
    let stop = Arc::new(AtomicBool::new(false));
    let node = {
        let (hive_path, data, stop) = (hive.path().to_path_buf(), data.clone(), stop.clone());
        std::thread::spawn(move || {
            jaros::node::serve(
                cfg,
                &hive_path,
                data,
                Box::new(move || {
                    Ok(jaros::node::HiveLoad {
                        plan: plan.clone(),
                        schedules: vec![],
                    })
                }),
                executor(),
                Arc::new(proposer),
                stop,
            )
        })
    };
    common::wait_until(std::time::Duration::from_secs(20), "the panic", || {
        panicked.load(Ordering::SeqCst)
    });
    stop.store(true, Ordering::SeqCst);
    let exit = node.join().unwrap().unwrap();
    assert_eq!(exit.fatal, None);
    let ends: Vec<_> = read_log(&data.log_path("n1"))
        .unwrap()
        .records
        .into_iter()
        .filter(|r| matches!(r.body, Body::End { .. }))
        .collect();
    assert!(
        ends.is_empty(),
        "a node that lost the lease recorded an end: {ends:?}"
    );
    assert!(!data.failed().join("p1.json").exists());
    assert!(!data.done().join("p1.json").exists());
}

/// Proposes with a model call (recorded as a `model` record, whose prompt
/// and response are blobs).
struct ModelLike;

impl Proposer for ModelLike {
    fn propose(&self, _: &TurnRequest<'_>) -> Result<ProposedTurn, String> {
        let text = decisions(&[json!({"type": "advance", "payload": {"events": ["start"]}})]);
        Ok(ProposedTurn {
            text: text.clone(),
            call: Some(jaros::job::ModelCall {
                provider: "p".into(),
                model: "m".into(),
                params: json!({}),
                template: jaros::canon::Digest::ZERO,
                inputs: jaros::canon::Digest::ZERO,
                prompt: "the prompt".into(),
                response: text,
                tokens_in: 1,
                tokens_out: 1,
                duration_ms: 1,
                error: None,
            }),
        })
    }
}

/// The `end` records of job `job` in the hive's log.
fn ends_of(hive: &Hive, job: &str) -> Vec<Body> {
    read_log(&hive.log_file())
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.body)
        .filter(|b| matches!(b, Body::End { job: j, .. } if j.as_str() == job))
        .collect()
}

#[test]
fn a_blob_that_cannot_be_stored_fails_the_job_with_a_recorded_end() {
    let hive = Hive::empty();
    let plan = plan_with("scribe", &["advance"], &[], 1);
    let data = DataDir::new(hive.data());
    data.create().unwrap();
    let rt = Runtime::open(hive.path(), data, "n1".into(), plan).unwrap();
    // A file where the blob directory goes: every blob write fails.
    std::fs::remove_dir_all(hive.data().join("blobs/sha256")).unwrap();
    std::fs::write(hive.data().join("blobs/sha256"), "").unwrap();
    let live = rt.live_io();
    let executor = executor();
    let runner = rt.runner(&executor, &ModelLike, &live, &|| true);
    let end = runner.run(&ticket("b1", "scribe"), &[]).unwrap();
    assert_eq!(end.state, State::Failed);
    let reason = end.reason.clone().unwrap();
    assert!(reason.contains("cannot be recorded"), "{reason}");
    drop(runner);
    drop(rt);
    let ends = ends_of(&hive, "b1");
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert!(
        matches!(&ends[0], Body::End { state: State::Failed, reason: Some(r), .. } if *r == reason)
    );
}

#[test]
fn a_history_that_does_not_replay_fails_the_job_with_a_recorded_end() {
    let hive = Hive::empty();
    let plan = plan_with("scribe", &["advance"], &[], 1);
    let rt = Runtime::open(hive.path(), DataDir::new(hive.data()), "n1".into(), plan).unwrap();
    let live = rt.live_io();
    let executor = executor();
    let proposer = Fixed(decisions(&[]));
    let runner = rt.runner(&executor, &proposer, &live, &|| true);
    // A history whose decision the gate refuses now (the role grants no
    // fs.write).
    let t = ticket("h1", "scribe");
    let history = vec![
        Body::Job {
            job: t.job.clone(),
            at: 0,
            agent: t.agent.clone(),
            input: json!({}),
            plan: rt.plan_digest(),
            parent: None,
            via: None,
        },
        Body::Decision {
            job: t.job.clone(),
            at: 1,
            decision: jaros::decision::Decision {
                id: jaros::decision::DecisionId::new(&t.job, 1, 0),
                source: t.agent.clone(),
                kind: "fs.write".into(),
                payload: json!({"path": "notes/x", "content": "x"}),
            },
        },
    ];
    let end = runner.run(&t, &history).unwrap();
    assert_eq!(end.state, State::Failed);
    let reason = end.reason.clone().unwrap();
    assert!(reason.contains("does not replay"), "{reason}");
    drop(runner);
    drop(rt);
    let ends = ends_of(&hive, "h1");
    assert_eq!(ends.len(), 1, "{ends:?}");
}
