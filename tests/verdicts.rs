//! Verdict agents: a model answers one enumerated word, and the decisions
//! the agent's manifest maps it to are proposed, gated, recorded and
//! replayed like any others. The model here is the `scripted` provider (its
//! answers chosen by the ticket in the prompt) or a stand-in proposer.

mod common;

use common::Hive;
use jaros::canon::Digest;
use jaros::datadir::DataDir;
use jaros::decision::{AgentName, JobId};
use jaros::exec::Executor;
use jaros::job::{ModelCall, ProposedTurn, Proposer, RunError, Ticket, TurnRequest};
use jaros::log::Body;
use jaros::replay::job_history;
use jaros::runtime::Runtime;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

const NODE: &str = "apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  providers:\n    p:\n      kind: scripted\n      responses: evals/answers.json\n";
const ROLES: &str = "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: triage\nspec:\n  types: [advance, handoff]\n  handoff: [worker]\n---\napiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: worker\nspec:\n  types: [advance]\n";
const WORKER: &str = "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: worker\nspec:\n  role: worker\n  template: agents/worker.j2\n";
/// The triage agent; `{SPAM_TYPE}` and `{EXAMPLE_VERDICT}` let a test break it.
const TRIAGE: &str = r#"apiVersion: jaros/v1
kind: Agent
metadata:
  name: triage
spec:
  role: triage
  model: {provider: p, model: m, temperature: 0}
  prompt: agents/triage.j2
  verdicts:
    spam:
      - type: {SPAM_TYPE}
        payload: {events: [fail], note: "spam {{ input.id }}"}
    request:
      - type: handoff
        payload: {agent: worker, input: "{{ input }}"}
  examples:
    - {verdict: {EXAMPLE_VERDICT}, input: {id: X1, ticket: "Win a prize now"}}
    - {verdict: request, input: {id: X2, ticket: "My bill is wrong"}}
"#;
/// The scripted model: its answer is chosen by the ticket in the last message.
const ANSWERS: &str = r#"{"rules": [
  {"when": "Ticket S1:", "response": {"verdict": "spam"}},
  {"when": "Ticket G1:", "response": {"verdict": "request"}},
  {"when": "Ticket B1:", "response": {"verdict": "maybe"}}
]}"#;

fn triage(spam_type: &str, example_verdict: &str) -> String {
    TRIAGE
        .replace("{SPAM_TYPE}", spam_type)
        .replace("{EXAMPLE_VERDICT}", example_verdict)
}

fn hive() -> Hive {
    let hive = Hive::empty();
    hive.write("manifests/node.yaml", NODE);
    hive.write("manifests/roles/roles.yaml", ROLES);
    hive.write("manifests/agents/worker.yaml", WORKER);
    hive.write("manifests/agents/triage.yaml", &triage("advance", "spam"));
    hive.write(
        "agents/worker.j2",
        r#"[{"type": "advance", "payload": {"events": ["start", "complete"]}}]"#,
    );
    hive.write(
        "agents/triage.j2",
        "Ticket {{ input.id }}: {{ input.ticket }}",
    );
    hive.write("evals/answers.json", ANSWERS);
    hive.jaros(&["validate"]).expect(0);
    hive
}

/// Every record of one kind in the hive's node log (`jaros run` writes one log).
fn bodies(hive: &Hive) -> Vec<Body> {
    let log = std::fs::read_dir(hive.data().join("log"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("a node log");
    jaros::log::read_log(&log)
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.body)
        .collect()
}

fn decisions_of(bodies: &[Body], job: &str) -> Vec<(String, String, Value)> {
    bodies
        .iter()
        .filter_map(|b| match b {
            Body::Decision {
                job: j, decision, ..
            } if j.as_str() == job => Some((
                decision.id.to_string(),
                decision.kind.clone(),
                decision.payload.clone(),
            )),
            _ => None,
        })
        .collect()
}

fn blob(hive: &Hive, digest: &Digest) -> String {
    std::fs::read_to_string(hive.data().join(format!("blobs/sha256/{digest}"))).unwrap()
}

#[test]
fn a_verdict_becomes_the_decisions_it_maps_to_and_replays_with_zero_model_calls() {
    let hive = hive();
    let input = json!({"id": "G1", "ticket": "The export fails"});
    let input_text = input.to_string();
    hive.jaros(&["run", "triage", "--id", "g", "--input", &input_text])
        .expect(0);
    hive.jaros(&[
        "run",
        "triage",
        "--id",
        "s",
        "--input",
        r#"{"id": "S1", "ticket": "Cheap pills"}"#,
    ])
    .expect(1);
    let bodies = bodies(&hive);
    assert_eq!(
        decisions_of(&bodies, "g"),
        vec![(
            "g#1.0".into(),
            "handoff".into(),
            json!({"agent": "worker", "input": input})
        )],
        "the hand-off carries the job input as an object"
    );
    assert_eq!(
        decisions_of(&bodies, "s"),
        vec![(
            "s#1.0".into(),
            "advance".into(),
            json!({"events": ["fail"], "note": "spam S1"})
        )]
    );
    // What the model was sent: the examples as earlier turns (no system
    // message), the job's ticket last, and the verdicts as an enum.
    let (prompt, response) = bodies
        .iter()
        .find_map(|b| match b {
            Body::Model {
                job,
                prompt,
                response,
                ..
            } if job.as_str() == "g" => Some((*prompt, *response)),
            _ => None,
        })
        .expect("a model record for g");
    assert_eq!(blob(&hive, &response), r#"{"verdict":"request"}"#);
    let sent: Value = serde_json::from_str(&blob(&hive, &prompt)).unwrap();
    let turns: Vec<(&str, &str)> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        turns,
        [
            ("user", "Ticket X1: Win a prize now"),
            ("assistant", r#"{"verdict": "spam"}"#),
            ("user", "Ticket X2: My bill is wrong"),
            ("assistant", r#"{"verdict": "request"}"#),
            ("user", "Ticket G1: The export fails"),
        ]
    );
    assert_eq!(
        sent["schema"]["properties"]["verdict"]["enum"],
        json!(["request", "spam"])
    );

    // Replay derives nothing from today's manifests: with the mapping
    // changed it still rebuilds both jobs byte for byte, without a model.
    hive.write(
        "manifests/agents/triage.yaml",
        &triage("advance", "spam").replace("spam {{ input.id }}", "changed"),
    );
    let report = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_eq!(report["model_calls"], 0, "{report:#}");
    assert_eq!(report["byte_identical"], true, "{report:#}");
    assert_eq!(report["failures"][0]["agent"], "triage", "{report:#}");
}

#[test]
fn an_answer_outside_the_verdicts_is_the_agents_error_and_proposes_nothing() {
    let hive = hive();
    let result = hive
        .jaros(&[
            "run",
            "triage",
            "--id",
            "b",
            "--input",
            r#"{"id": "B1", "ticket": "?"}"#,
        ])
        .expect(1)
        .json();
    let error = result["result"]["results"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "rejected: structure: the turn's text holds no valid decisions: the answer is not one of the verdicts request, spam"
        ),
        "{error}"
    );
    assert!(decisions_of(&bodies(&hive), "b").is_empty());
    let report = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_eq!(report["failures"][0]["agent"], "triage", "{report:#}");
    assert_eq!(report["failures"][0]["decision"], "b#1.0", "{report:#}");
}

#[test]
fn validate_refuses_a_verdict_of_an_ungranted_type_and_an_example_without_a_verdict() {
    let hive = hive();
    hive.write("manifests/agents/triage.yaml", &triage("fs.write", "ham"));
    let out = hive.jaros(&["validate"]).expect(1).stdout();
    assert!(
        out.contains("triage.yaml:11:15: verdict 'spam' stands for a 'fs.write' decision, which the agent's role does not grant"),
        "{out}"
    );
    assert!(
        out.contains("verdict 'ham' is not one of the agent's verdicts: request, spam"),
        "{out}"
    );
    // Verdicts belong to model agents.
    hive.write("manifests/agents/triage.yaml", &triage("advance", "spam"));
    hive.write(
        "manifests/agents/worker.yaml",
        &format!("{WORKER}  verdicts:\n    ok: []\n"),
    );
    let out = hive.jaros(&["validate"]).expect(1).stdout();
    assert!(out.contains("verdicts are for a model agent"), "{out}");
}

/// Stands in for the model: counts its calls, answers `request`.
struct OneVerdict(AtomicUsize);

impl Proposer for OneVerdict {
    fn propose(&self, _: &TurnRequest<'_>) -> Result<ProposedTurn, String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let text = r#"{"verdict": "request"}"#;
        Ok(ProposedTurn {
            text: text.into(),
            call: Some(ModelCall {
                provider: "p".into(),
                model: "m".into(),
                params: json!({}),
                template: Digest::ZERO,
                inputs: Digest::ZERO,
                prompt: "prompt".into(),
                response: text.into(),
                tokens_in: 1,
                tokens_out: 1,
                duration_ms: 1,
                error: None,
            }),
        })
    }
}

#[test]
fn a_job_cut_between_its_model_record_and_its_decisions_resumes_to_the_same_decisions() {
    let hive = hive();
    let plan = jaros::manifest::load_hive(hive.path()).unwrap().plan;
    let executor = Executor::core();
    let model = OneVerdict(AtomicUsize::new(0));
    let input = json!({"id": "G1", "ticket": "The export fails"});
    let ticket = Ticket {
        job: JobId::new("cut").unwrap(),
        agent: AgentName::new("triage").unwrap(),
        input: input.clone(),
        parent: None,
        via: None,
    };
    {
        let rt = Runtime::open(
            hive.path(),
            DataDir::new(hive.data()),
            "n1".into(),
            plan.clone(),
        )
        .unwrap();
        let live = rt.live_io();
        // The lease is lost after two records: the job and the model call.
        let asked = AtomicUsize::new(0);
        let fence = || asked.fetch_add(1, Ordering::SeqCst) < 2;
        let runner = rt.runner(&executor, &model, &live, &fence);
        assert!(matches!(runner.run(&ticket, &[]), Err(RunError::Fenced(_))));
    }
    let data = DataDir::new(hive.data());
    let history = job_history(&data, &ticket.job).unwrap();
    let kinds: Vec<&str> = history.iter().map(Body::kind).collect();
    assert_eq!(
        kinds,
        ["job", "model"],
        "the cut came after the model record"
    );

    let rt = Runtime::open(hive.path(), data, "n2".into(), plan).unwrap();
    let live = rt.live_io();
    let runner = rt.runner(&executor, &model, &live, &|| true);
    let end = runner.run(&ticket, &history).unwrap();
    assert_eq!(end.state, jaros::state::State::Done, "{end:?}");
    assert_eq!(
        model.0.load(Ordering::SeqCst),
        1,
        "the model was asked again"
    );
    let history = job_history(&DataDir::new(hive.data()), &ticket.job).unwrap();
    assert_eq!(
        decisions_of(&history, "cut"),
        vec![(
            "cut#1.0".into(),
            "handoff".into(),
            json!({"agent": "worker", "input": input})
        )]
    );
}
