//! A job cut short (a crash, a lost lease) resumes from its records: no
//! second model call, no second execution of an effect already recorded.

mod common;

use common::Hive;
use jaros::canon::Digest;
use jaros::datadir::DataDir;
use jaros::decision::{AgentName, Decision, JobId};
use jaros::exec::{Cx, Executor, Handler, Outcome};
use jaros::job::{ModelCall, ProposedTurn, Proposer, RunError, Ticket, TurnRequest};
use jaros::plan::{AgentKind, AgentSpec, Grant, HandlerSpec, Plan, TypeSpec};
use jaros::replay::{job_history, replay, Options};
use jaros::runtime::Runtime;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Tally(Arc<AtomicUsize>);

impl Handler for Tally {
    fn run(&self, _: &Cx<'_>, _: &Decision) -> Result<Outcome, String> {
        Ok(Outcome::result(
            json!({"calls": self.0.fetch_add(1, Ordering::SeqCst) + 1}),
        ))
    }
}

/// Stands in for a model: counts its calls and reports each as a model call.
struct FakeModel(AtomicUsize);

impl Proposer for FakeModel {
    fn propose(&self, _: &TurnRequest<'_>) -> Result<ProposedTurn, String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let text = r#"[{"type":"tally","payload":{}},{"type":"tally","payload":{}},{"type":"advance","payload":{"events":["start","complete"]}}]"#;
        Ok(ProposedTurn {
            text: text.into(),
            call: Some(ModelCall {
                provider: "fake".into(),
                model: "m".into(),
                params: json!({}),
                template: Digest::ZERO,
                inputs: Digest::ZERO,
                prompt: "prompt".into(),
                response: text.into(),
                tokens_in: 3,
                tokens_out: 5,
                duration_ms: 1,
                error: None,
            }),
        })
    }
}

fn plan() -> Plan {
    let mut plan = Plan::builtin();
    plan.types.insert(
        "tally".into(),
        TypeSpec {
            handler: HandlerSpec::Builtin {
                name: "tally".into(),
            },
            payload_schema: json!({"type": "object"}),
            result_schema: json!({}),
            deterministic: false,
            scopes: vec![],
            description: "tally: an external effect that must happen once".into(),
        },
    );
    plan.roles.insert(
        "thinker".into(),
        Grant {
            types: ["tally".to_string(), "advance".to_string()].into(),
            ..Grant::default()
        },
    );
    plan.agents.insert(
        "thinker".into(),
        AgentSpec {
            role: "thinker".into(),
            max_steps: 1,
            kind: AgentKind::Model {
                provider: "fake".into(),
                model: "m".into(),
                template: "t".into(),
                temperature: None,
                seed: None,
                max_tokens: None,
                verdicts: None,
            },
            description: String::new(),
        },
    );
    plan
}

#[test]
fn a_job_cut_after_its_first_effect_resumes_without_asking_the_model_again() {
    let hive = Hive::empty();
    let calls = Arc::new(AtomicUsize::new(0));
    let executor = Executor::core().with("tally", Arc::new(Tally(calls.clone())));
    let model = FakeModel(AtomicUsize::new(0));
    let ticket = Ticket {
        job: JobId::new("r1").unwrap(),
        agent: AgentName::new("thinker").unwrap(),
        input: json!({}),
        parent: None,
        via: None,
    };
    {
        let rt =
            Runtime::open(hive.path(), DataDir::new(hive.data()), "n1".into(), plan()).unwrap();
        let live = rt.live_io();
        // The lease is lost after four records: job, model, decision, effect
        // (the fence is also asked just before the effect starts).
        let appends = AtomicUsize::new(0);
        let fence = || appends.fetch_add(1, Ordering::SeqCst) < 5;
        let runner = rt.runner(&executor, &model, &live, &fence);
        assert!(matches!(runner.run(&ticket, &[]), Err(RunError::Fenced(_))));
    }
    assert_eq!(
        (model.0.load(Ordering::SeqCst), calls.load(Ordering::SeqCst)),
        (1, 1)
    );

    // Another node (another log) resumes it.
    let data = DataDir::new(hive.data());
    let history = job_history(&data, &ticket.job).unwrap();
    assert_eq!(history.len(), 4);
    let rt = Runtime::open(hive.path(), data.clone(), "n2".into(), plan()).unwrap();
    let live = rt.live_io();
    let runner = rt.runner(&executor, &model, &live, &|| true);
    let end = runner.run(&ticket, &history).unwrap();
    assert_eq!(end.state, jaros::state::State::Done);
    assert_eq!(
        model.0.load(Ordering::SeqCst),
        1,
        "the model was asked again"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the recorded effect ran again, or the second one not at all"
    );
    let results = end.result["results"].as_array().unwrap();
    assert_eq!(results[0]["result"], json!({"calls": 1}));
    assert_eq!(results[1]["result"], json!({"calls": 2}));

    // Replay over both logs: the tool's results are read back, not redone.
    let report = replay(&data, &executor, &Options::default()).unwrap();
    assert!(report.reproducible(), "{report:?}");
    assert_eq!(
        (
            report.logs,
            report.model_calls,
            report.model_records,
            report.effects_read_back
        ),
        (2, 0, 1, 2)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "replay ran the tool");
}

#[test]
fn a_finished_job_claimed_again_is_not_run_again() {
    let hive = Hive::empty();
    let calls = Arc::new(AtomicUsize::new(0));
    let executor = Executor::core().with("tally", Arc::new(Tally(calls.clone())));
    let model = FakeModel(AtomicUsize::new(0));
    let ticket = Ticket {
        job: JobId::new("r2").unwrap(),
        agent: AgentName::new("thinker").unwrap(),
        input: json!({}),
        parent: None,
        via: None,
    };
    let rt = Runtime::open(hive.path(), DataDir::new(hive.data()), "n1".into(), plan()).unwrap();
    let live = rt.live_io();
    let runner = rt.runner(&executor, &model, &live, &|| true);
    let first = runner.run(&ticket, &[]).unwrap();
    let history = job_history(&DataDir::new(hive.data()), &ticket.job).unwrap();
    let again = runner.run(&ticket, &history).unwrap();
    assert_eq!(
        (first.state, again.state),
        (again.state, jaros::state::State::Done)
    );
    assert_eq!(
        (model.0.load(Ordering::SeqCst), calls.load(Ordering::SeqCst)),
        (1, 2)
    );
    assert_eq!(read_ends(&hive), 1);
}

fn read_ends(hive: &Hive) -> usize {
    jaros::log::read_log(&hive.data().join("log/n1.jsonl"))
        .unwrap()
        .records
        .iter()
        .filter(|r| matches!(r.body, jaros::log::Body::End { .. }))
        .count()
}
