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
            started_ms: None,
            depth: None,
            tree_jobs: None,
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
            clock_ms: None,
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

// ---- Budgets: every one, for every agent kind, between decisions, across resumes.

/// `plan_with`, its role's budget set by `set`.
fn plan_budget(
    agent: &str,
    types: &[&str],
    max_steps: u32,
    set: impl Fn(&mut jaros::plan::Budget),
) -> Plan {
    let mut plan = plan_with(agent, types, &[], max_steps);
    set(&mut plan.roles.get_mut("r").unwrap().budget);
    plan
}

/// Runs one job of `agent` to its end in a fresh hive; returns the end and
/// the hive (replayed and found reproducible).
fn run_one(plan: Plan, executor: Executor, proposer: &dyn Proposer, agent: &str) -> (JobEnd, Hive) {
    let hive = Hive::empty();
    let rt = Runtime::open(hive.path(), DataDir::new(hive.data()), "n1".into(), plan).unwrap();
    let live = rt.live_io();
    let end = rt
        .runner(&executor, proposer, &live, &|| true)
        .run(&ticket("j1", agent), &[])
        .unwrap();
    drop(rt);
    reproducible(hive.data());
    (end, hive)
}

/// A built-in handler that takes `ms` to run (an effect that takes time).
struct Slow(u64);

impl jaros::exec::Handler for Slow {
    fn run(
        &self,
        _: &jaros::exec::Cx<'_>,
        _: &jaros::decision::Decision,
    ) -> Result<jaros::exec::Outcome, String> {
        std::thread::sleep(std::time::Duration::from_millis(self.0));
        Ok(jaros::exec::Outcome::result(json!({"slept": self.0})))
    }
}

fn with_slow(mut plan: Plan) -> Plan {
    let mut spec = plan.types["fs.read"].clone();
    spec.handler = jaros::plan::HandlerSpec::Builtin {
        name: "slow".into(),
    };
    spec.payload_schema = json!({"type": "object"});
    spec.scopes = vec![];
    plan.types.insert("slow".into(), spec);
    plan
}

fn blame_and_reason(end: &JobEnd) -> (String, String) {
    (
        end.blame
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_default(),
        end.reason.clone().unwrap_or_default(),
    )
}

#[test]
fn a_wall_time_budget_stops_an_agent_without_a_model_between_its_decisions() {
    let plan = with_slow(plan_budget("scribe", &["slow", "advance"], 1, |b| {
        b.wall_ms = 200
    }));
    let proposer = Fixed(decisions(&[
        json!({"type": "slow", "payload": {}}),
        json!({"type": "advance", "payload": {"events": ["start"]}}),
    ]));
    let (end, _hive) = run_one(
        plan,
        executor().with("slow", std::sync::Arc::new(Slow(400))),
        &proposer,
        "scribe",
    );
    assert_eq!(end.state, State::Failed, "{end:?}");
    let (blame, reason) = blame_and_reason(&end);
    assert_eq!(blame, "j1#1.1", "{reason}");
    assert!(
        reason.contains("decision j1#1.1 (advance) was rejected: budget: the job has run")
            && reason.contains("past its wall-time budget of 200 ms"),
        "{reason}"
    );
    assert_eq!(
        end.result["decisions"], 1,
        "the slow decision ran, the next did not"
    );
}

/// A model agent whose call takes `sleep_ms` and uses `tokens` tokens.
struct SlowModel {
    sleep_ms: u64,
    tokens: u64,
}

impl Proposer for SlowModel {
    fn propose(&self, request: &TurnRequest<'_>) -> Result<ProposedTurn, String> {
        std::thread::sleep(std::time::Duration::from_millis(self.sleep_ms));
        let mut turn = ModelLike.propose(request)?;
        if let Some(call) = &mut turn.call {
            call.tokens_in = self.tokens / 2;
            call.tokens_out = self.tokens - self.tokens / 2;
        }
        Ok(turn)
    }
}

fn model_plan(set: impl Fn(&mut jaros::plan::Budget), max_steps: u32) -> Plan {
    let mut plan = plan_budget("thinker", &["advance"], max_steps, set);
    plan.agents.get_mut("thinker").unwrap().kind = AgentKind::Model {
        provider: "p".into(),
        model: "m".into(),
        template: "t".into(),
        temperature: None,
        seed: None,
        max_tokens: None,
        verdicts: None,
    };
    plan
}

#[test]
fn a_model_call_that_outlasts_the_wall_time_budget_has_its_decisions_refused() {
    let plan = model_plan(|b| b.wall_ms = 200, 1);
    let proposer = SlowModel {
        sleep_ms: 400,
        tokens: 2,
    };
    let (end, _hive) = run_one(plan, executor(), &proposer, "thinker");
    assert_eq!(end.state, State::Failed, "{end:?}");
    let (blame, reason) = blame_and_reason(&end);
    assert_eq!(blame, "j1#1.0", "{reason}");
    assert!(reason.contains("wall-time budget of 200 ms"), "{reason}");
    assert_eq!(end.result["decisions"], 0);
}

#[test]
fn a_model_call_that_overshoots_the_token_budget_has_its_decisions_refused() {
    let plan = model_plan(|b| b.tokens = 100, 1);
    let proposer = SlowModel {
        sleep_ms: 0,
        tokens: 150,
    };
    let (end, _hive) = run_one(plan, executor(), &proposer, "thinker");
    assert_eq!(end.state, State::Failed, "{end:?}");
    let (blame, reason) = blame_and_reason(&end);
    assert_eq!(blame, "j1#1.0", "{reason}");
    assert!(
        reason.contains(
            "(advance) was rejected: budget: the job has used 150 tokens, over its budget of 100"
        ),
        "{reason}"
    );
}

#[test]
fn a_model_agent_gets_no_call_past_its_model_call_budget() {
    let plan = model_plan(|b| b.model_calls = 1, 3);
    let proposer = SlowModel {
        sleep_ms: 0,
        tokens: 2,
    };
    let (end, _hive) = run_one(plan, executor(), &proposer, "thinker");
    assert_eq!(end.state, State::Failed, "{end:?}");
    let reason = end.reason.clone().unwrap_or_default();
    assert!(
        reason == "budget: the job has used its 1 model calls",
        "{reason}"
    );
    assert_eq!(end.result["decisions"], 1);
}

#[test]
fn a_decision_budget_ends_the_job_at_the_decision_that_hit_it() {
    let plan = plan_budget("scribe", &["fs.write"], 3, |b| b.decisions = 2);
    let write = |n: u32| json!({"type": "fs.write", "payload": {"path": format!("notes/{n}.md"), "content": "x"}});
    let proposer = Fixed(decisions(&[write(1), write(2), write(3)]));
    let (end, hive) = run_one(plan, executor(), &proposer, "scribe");
    assert_eq!(end.state, State::Failed, "{end:?}");
    let (blame, reason) = blame_and_reason(&end);
    assert_eq!(blame, "j1#1.2", "the turns left are not used: {reason}");
    assert!(
        reason.contains(
            "decision j1#1.2 (fs.write) was rejected: budget: the job has used its budget of 2 decisions"
        ),
        "{reason}"
    );
    assert!(!hive.path().join("notes/3.md").exists());
}

#[test]
fn the_wall_clock_counts_from_the_recorded_start_across_a_resume() {
    let hive = Hive::empty();
    let plan = plan_budget("scribe", &["advance"], 1, |b| b.wall_ms = 2_000);
    let rt = Runtime::open(hive.path(), DataDir::new(hive.data()), "n1".into(), plan).unwrap();
    let live = rt.live_io();
    let executor = executor();
    let proposer = Fixed(decisions(&[
        json!({"type": "advance", "payload": {"events": ["start"]}}),
    ]));
    let runner = rt.runner(&executor, &proposer, &live, &|| true);
    let t = ticket("r1", "scribe");
    let ten_seconds_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 10_000;
    // The job was accepted ten seconds ago and its node died: resumed now.
    let accepted = Body::Job {
        job: t.job.clone(),
        at: 0,
        agent: t.agent.clone(),
        input: json!({}),
        plan: rt.plan_digest(),
        parent: None,
        via: None,
        started_ms: Some(ten_seconds_ago),
        depth: None,
        tree_jobs: None,
    };
    rt.log.append(&accepted).unwrap();
    let end = runner.run(&t, &[accepted]).unwrap();
    assert_eq!(end.state, State::Failed, "{end:?}");
    let reason = end.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("of its 2000 ms wall time before turn 1"),
        "{reason}"
    );
    drop(runner);
    drop(rt);
    reproducible(hive.data());
}

// ---- Hand-off trees: bounded in depth and in jobs, whoever hands off to whom.

/// Runs `root` and then, as a node would, every job the inbox receives,
/// in its place in its hand-off tree, until none is left (or `cap` jobs
/// ran). Returns the ends in the order run.
fn run_tree(
    hive: &Hive,
    plan: Plan,
    proposer: &dyn Proposer,
    root: &str,
    cap: usize,
) -> Vec<JobEnd> {
    let data = DataDir::new(hive.data());
    let rt = Runtime::open(hive.path(), data.clone(), "n1".into(), plan.clone()).unwrap();
    let live = rt.live_io();
    let executor = executor();
    let runner = rt.runner(&executor, proposer, &live, &|| true);
    let mut ends = vec![runner.run(&ticket("t0", root), &[]).unwrap()];
    while ends.len() < cap {
        let Some(path) = jaros::fsx::list_dir(&data.inbox())
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "json"))
        else {
            break;
        };
        let job = jaros::node::inbox::read_job(&path, &plan).unwrap();
        std::fs::remove_file(&path).unwrap();
        let t = Ticket {
            job: job.id.clone(),
            agent: job.agent.clone(),
            input: job.input.clone(),
            parent: job.parent.clone(),
            via: job.via.clone(),
        };
        ends.push(runner.run_in_tree(&t, job.tree, &[]).unwrap());
    }
    ends
}

fn looper_plan() -> Plan {
    plan_with("looper", &["handoff"], &["looper"], 1)
}

fn hand_off_to_itself() -> Fixed {
    Fixed(decisions(&[
        json!({"type": "handoff", "payload": {"agent": "looper", "input": "again"}}),
    ]))
}

#[test]
fn an_agent_that_hands_off_to_itself_stops_at_the_trees_job_budget() {
    let hive = Hive::empty();
    let ends = run_tree(&hive, looper_plan(), &hand_off_to_itself(), "looper", 200);
    // Shares 64, 32, 16, 8, 4, 2, 1: the seventh job has no room left.
    assert_eq!(ends.len(), 7, "{:#?}", ends.last());
    let last = ends.last().unwrap();
    assert_eq!(last.state, State::Failed);
    let reason = last.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("(handoff) was rejected: budget: the hand-off tree has no room left")
            && reason.contains("handoff.max_jobs, 64 per tree"),
        "{reason}"
    );
    assert!(ends[..6].iter().all(|e| e.state == State::Done));
    reproducible(hive.data());
}

#[test]
fn a_hand_off_past_the_depth_limit_is_refused_by_the_gate() {
    let hive = Hive::empty();
    let mut plan = looper_plan();
    plan.handoff = jaros::plan::HandoffLimits {
        max_depth: 2,
        max_jobs: 1000,
    };
    let ends = run_tree(&hive, plan, &hand_off_to_itself(), "looper", 200);
    assert_eq!(ends.len(), 3, "depths 0, 1, 2: {:#?}", ends.last());
    let reason = ends[2].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("scope: hand-off to 'looper' refused: this job is at depth 2 of its hand-off tree, and no tree goes deeper than 2"),
        "{reason}"
    );
    reproducible(hive.data());
}

#[test]
fn a_job_may_hand_off_to_several_within_its_share_of_the_tree() {
    let hive = Hive::empty();
    let mut plan = plan_with("planner", &["handoff"], &["advance"], 1);
    plan.handoff.max_jobs = 8;
    let to = json!({"type": "handoff", "payload": {"agent": "advance", "input": "x"}});
    let proposer = Fixed(decisions(&[to.clone(), to.clone(), to.clone(), to]));
    let ends = run_tree(&hive, plan, &proposer, "planner", 50);
    let root = &ends[0];
    // Room 7: children of 4, 2 and 1 jobs; the fourth finds none left.
    assert_eq!(root.result["decisions"], 3, "{root:?}");
    assert_eq!(root.blame.as_ref().unwrap().as_str(), "t0#1.3");
    let shares: Vec<(String, Option<u32>, Option<u32>)> = read_log(&hive.log_file())
        .unwrap()
        .records
        .into_iter()
        .filter_map(|r| match r.body {
            Body::Job {
                job,
                depth,
                tree_jobs,
                ..
            } => Some((job.to_string(), depth, tree_jobs)),
            _ => None,
        })
        .collect();
    assert_eq!(
        shares,
        vec![
            ("t0".to_string(), None, None),
            ("t0-1.0".to_string(), Some(1), Some(4)),
            ("t0-1.1".to_string(), Some(1), Some(2)),
            ("t0-1.2".to_string(), Some(1), Some(1)),
        ]
    );
    assert_eq!(ends.len(), 4);
}

#[test]
fn a_tool_runs_no_longer_than_the_wall_time_budget_has_left() {
    use std::os::unix::fs::PermissionsExt;
    let hive = Hive::empty();
    let tool = hive.path().join("tools/forever.sh");
    std::fs::create_dir_all(tool.parent().unwrap()).unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tools/forever.sh"),
        &tool,
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut plan = plan_budget("scribe", &["forever"], 1, |b| b.wall_ms = 500);
    plan.types.insert(
        "forever".into(),
        jaros::plan::TypeSpec {
            handler: jaros::plan::HandlerSpec::Exec {
                command: "tools/forever.sh".into(),
                sha256: jaros::canon::Digest::of_bytes(&std::fs::read(&tool).unwrap()),
                timeout_ms: 5_000,
                max_output_bytes: 1024,
                env: vec![],
            },
            payload_schema: json!({"type": "object"}),
            result_schema: json!({}),
            deterministic: false,
            scopes: vec![],
            description: "forever: never exits".into(),
        },
    );
    let rt = Runtime::open(hive.path(), DataDir::new(hive.data()), "n1".into(), plan).unwrap();
    let live = rt.live_io();
    let executor = executor();
    let proposer = Fixed(decisions(&[json!({"type": "forever", "payload": {}})]));
    let end = rt
        .runner(&executor, &proposer, &live, &|| true)
        .run(&ticket("j1", "scribe"), &[])
        .unwrap();
    assert_eq!(end.state, State::Failed, "{end:?}");
    let reason = end.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("what was left of the job's wall-time budget"),
        "killed at the budget, not at its own 5 s time-out: {reason}"
    );
}

#[test]
fn the_node_manifest_sets_the_hand_off_limits_of_the_plan() {
    let hive = Hive::empty();
    let node = "apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  handoff:\n    max_depth: 3\n    max_jobs: 10\n";
    hive.write("manifests/node.yaml", node);
    let plan = hive.jaros(&["plan", "--json"]).expect(0).json();
    assert_eq!(
        plan["plan"]["handoff"],
        json!({"max_depth": 3, "max_jobs": 10})
    );
    // The defaults are left out of the plan, so its digest stays.
    hive.write(
        "manifests/node.yaml",
        "apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  handoff:\n    max_depth: 8\n",
    );
    let plan = hive.jaros(&["plan", "--json"]).expect(0).json();
    assert!(plan["plan"].get("handoff").is_none(), "{plan}");
    hive.write(
        "manifests/node.yaml",
        "apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  handoff:\n    max_hops: 3\n",
    );
    let refused = hive.jaros(&["validate"]).expect(1).stdout();
    assert!(refused.contains("max_hops"), "{refused}");
}
