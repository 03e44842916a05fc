//! What an effect gets: an idempotency key for tools, a result recorded even
//! when a tool outlives the shutdown grace, and a job held (not failed) when
//! the node's environment fails under an effect.

mod common;

use common::{example_hive, wait_until, Hive, Node, FAST};
use jaros::datadir::DataDir;
use jaros::decision::{AgentName, Decision, JobId};
use jaros::exec::{Cx, Executor, Handler, Outcome};
use jaros::job::{ProposedTurn, Proposer, RunError, Ticket, TurnRequest};
use jaros::plan::{AgentKind, AgentSpec, Grant, HandlerSpec, Plan, TypeSpec};
use jaros::replay::{job_history, replay, Options};
use jaros::runtime::Runtime;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = FAST.to_vec();
    v.extend_from_slice(extra);
    v
}

fn executable(hive: &Hive, rel: &str, text: &str) {
    hive.write(rel, text);
    std::fs::set_permissions(
        hive.path().join(rel),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

/// How many times the node started tool `kind`: its audit entries.
fn tool_starts(hive: &Hive, kind: &str) -> usize {
    let needle = format!("\"action\":\"tool {kind} (");
    std::fs::read_dir(hive.data().join("audit"))
        .map(|dir| {
            dir.flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .map(|text| text.lines().filter(|l| l.contains(&needle)).count())
                .sum()
        })
        .unwrap_or(0)
}

/// The example hive plus `sender`, whose one decision runs the example
/// ledger tool (tests/fixtures/tools/ledger.py) on `input.dir`.
fn ledger_hive() -> Hive {
    let hive = example_hive();
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tools/ledger.py");
    executable(
        &hive,
        "tools/ledger.py",
        &std::fs::read_to_string(tool).unwrap(),
    );
    hive.write(
        "manifests/tools/ledger.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: ledger\nspec:\n  type: ledger\n  description: Sends a message once per decision.\n  command: tools/ledger.py\n  timeout: 20s\n  deterministic: false\n  payload_schema: {type: object}\n  result_schema: {type: object}\n",
    );
    hive.write(
        "manifests/roles/sender.yaml",
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: sender\nspec:\n  types: [ledger]\n  write: [\"ledger/**\"]\n",
    );
    hive.write(
        "manifests/agents/sender.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: sender\nspec:\n  role: sender\n  template: agents/sender.j2\n",
    );
    hive.write(
        "agents/sender.j2",
        r#"[{"type": "ledger", "payload": {"ledger": {{ input.dir | tojson }}, "message": "hi"}}]"#,
    );
    std::fs::create_dir_all(hive.path().join("ledger")).unwrap();
    // A root node runs its tools as nobody: the ledger is theirs to write.
    for (dir, mode) in [
        (hive.path().to_path_buf(), 0o755),
        (hive.path().join("ledger"), 0o777),
    ] {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    hive.jaros(&["validate"]).expect(0);
    hive
}

#[test]
fn every_tool_gets_an_idempotency_key_of_its_decision_and_lease_epoch() {
    let hive = ledger_hive();
    let dir = hive.path().join("ledger");
    let input = json!({"dir": dir}).to_string();
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    hive.jaros(&["submit", "sender", "--id", "send1", "--input", &input])
        .expect(0);
    let result = hive
        .jaros(&["result", "send1", "--wait", "30"])
        .expect(0)
        .json();
    assert_eq!(node.stop().0, 0);
    assert_eq!(
        result["result"]["results"][0]["result"],
        json!({"sent": "hi", "decision": "send1#1.0"}),
        "{result}"
    );
    // The first claim is epoch 1.
    let runs = std::fs::read_to_string(dir.join("runs.log")).unwrap();
    assert_eq!(runs, "send1#1.0@1\n");
}

#[test]
fn the_example_ledger_tool_sends_once_per_decision_and_refuses_a_stale_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tools/ledger.py");
    let run = |key: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(&tool)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let request = json!({"payload": {"ledger": dir.path(), "message": "hi"}, "context": {"idempotency_key": key}});
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    let first = run("j1#1.0@1");
    assert_eq!(first.0, Some(0));
    // Run again after a takeover: the same answer, nothing sent again.
    assert_eq!(run("j1#1.0@2"), first);
    // The paused node's attempt, after the takeover: refused.
    assert_eq!(run("j1#1.0@1").0, Some(3));
    let outbox = std::fs::read_to_string(dir.path().join("outbox.jsonl")).unwrap();
    let sent = outbox.lines().filter(|l| l.contains("\"result\"")).count();
    assert_eq!(sent, 1, "{outbox}");
}

#[test]
fn a_tool_still_running_when_the_shutdown_grace_ends_is_recorded_and_not_run_again() {
    let hive = example_hive();
    hive.write(
        "manifests/tools/nap.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: nap\nspec:\n  type: nap\n  description: Sleeps two seconds.\n  command: tools/nap.sh\n  timeout: 20s\n  deterministic: false\n  payload_schema: {type: object}\n  result_schema: {type: object}\n",
    );
    executable(
        &hive,
        "tools/nap.sh",
        "#!/bin/sh\ncat >/dev/null\nsleep 2\necho '{\"slept\": 2}'\n",
    );
    hive.write("manifests/roles/napper.yaml", "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: napper\nspec:\n  types: [nap, advance]\n");
    hive.write(
        "manifests/agents/napper.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: napper\nspec:\n  role: napper\n  template: agents/napper.j2\n",
    );
    hive.write("agents/napper.j2", r#"[{"type": "nap", "payload": {}}, {"type": "advance", "payload": {"events": ["start", "complete"]}}]"#);
    hive.jaros(&["validate"]).expect(0);
    let node = Node::start(hive.path(), &args(&["--node-id", "a", "--grace-ms", "200"]));
    hive.jaros(&["submit", "napper", "--id", "slow"]).expect(0);
    wait_until(Duration::from_secs(20), "the tool to start", || {
        tool_starts(&hive, "nap") == 1
    });
    // SIGTERM while the tool sleeps: the grace (200 ms) ends long before it.
    let (code, stderr) = node.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("released slow to the inbox"), "{stderr}");
    let b = Node::start(hive.path(), &args(&["--node-id", "b"]));
    let result = hive
        .jaros(&["result", "slow", "--wait", "30"])
        .expect(0)
        .json();
    assert_eq!(b.stop().0, 0);
    assert_eq!(result["state"], "DONE", "{result}");
    assert_eq!(
        result["result"]["results"][0]["result"],
        json!({"slept": 2})
    );
    assert_eq!(
        tool_starts(&hive, "nap"),
        1,
        "the tool's result was thrown away at shutdown and the tool ran again"
    );
    let report = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_eq!(report["final_states"]["DONE"], 1);
}

#[test]
fn a_torn_tail_of_the_audit_log_is_reported_when_the_node_opens_it() {
    let hive = example_hive();
    hive.jaros(&["run", "greeter", "--input", "{\"name\": \"Ada\"}"])
        .expect(0);
    let audit: Vec<_> = std::fs::read_dir(hive.data().join("audit"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    let torn = br#"{"kind":"audit","seq":9,"job":"x"#;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&audit[0])
        .unwrap();
    std::io::Write::write_all(&mut file, torn).unwrap();
    drop(file);
    let node = Node::start(hive.path(), &args(&[]));
    wait_until(Duration::from_secs(20), "the node to start", || {
        node.log().contains("serving")
    });
    let (code, stderr) = node.stop();
    assert_eq!(code, 0, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("cut a torn last record"))
        .unwrap_or_else(|| panic!("no torn tail reported:\n{stderr}"));
    assert!(
        line.contains(&format!("({} bytes)", torn.len())) && line.contains("audit"),
        "{line}"
    );
}

/// A tool whose first run meets a full disk, and whose later runs work.
struct FullOnce(Arc<AtomicUsize>);

impl Handler for FullOnce {
    fn run(&self, _: &Cx<'_>, _: &Decision) -> Result<Outcome, String> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            let full = std::io::Error::from_raw_os_error(28);
            return Err(format!("cannot write /outbox/m.json: {full}"));
        }
        Ok(Outcome::result(json!({"sent": true})))
    }
}

struct Script;

impl Proposer for Script {
    fn propose(&self, _: &TurnRequest<'_>) -> Result<ProposedTurn, String> {
        Ok(ProposedTurn {
            text: r#"[{"type":"send","payload":{}}]"#.into(),
            call: None,
        })
    }
}

fn send_plan() -> Plan {
    let mut plan = Plan::builtin();
    plan.types.insert(
        "send".into(),
        TypeSpec {
            handler: HandlerSpec::Builtin {
                name: "send".into(),
            },
            payload_schema: json!({"type": "object"}),
            result_schema: json!({}),
            deterministic: false,
            scopes: vec![],
            description: "send: an outside effect".into(),
        },
    );
    plan.roles.insert(
        "sender".into(),
        Grant {
            types: ["send".to_string()].into(),
            ..Grant::default()
        },
    );
    plan.agents.insert(
        "sender".into(),
        AgentSpec {
            role: "sender".into(),
            max_steps: 1,
            kind: AgentKind::Builtin {
                name: "sender".into(),
            },
            description: String::new(),
        },
    );
    plan
}

#[test]
fn an_effect_that_meets_a_full_disk_holds_its_job_and_the_retry_completes_it() {
    let hive = Hive::empty();
    let calls = Arc::new(AtomicUsize::new(0));
    let executor = Executor::core().with("send", Arc::new(FullOnce(calls.clone())));
    let data = DataDir::new(hive.data());
    let ticket = Ticket {
        job: JobId::new("e1").unwrap(),
        agent: AgentName::new("sender").unwrap(),
        input: json!({}),
        parent: None,
        via: None,
    };
    let rt = Runtime::open(hive.path(), data.clone(), "n1".into(), send_plan()).unwrap();
    let live = rt.live_io();
    let runner = rt.runner(&executor, &Script, &live, &|| true);
    match runner.run(&ticket, &[]) {
        Err(RunError::Held { reason, .. }) => assert!(reason.starts_with("ENOSPC"), "{reason}"),
        other => panic!("the job was not held: {other:?}"),
    }
    rt.log.flush().unwrap();
    let history = job_history(&data, &ticket.job).unwrap();
    let end = runner.run(&ticket, &history).unwrap();
    assert_eq!(end.state, jaros::state::State::Done, "{:?}", end.reason);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // One decision, one effect (the one that worked), one end.
    let records = jaros::log::read_log(&hive.data().join("log/n1.jsonl"))
        .unwrap()
        .records;
    let count = |kind: &str| {
        records
            .iter()
            .filter(|r| match &r.body {
                jaros::log::Body::Decision { .. } => kind == "decision",
                jaros::log::Body::Effect { error, .. } => kind == "effect" && error.is_none(),
                jaros::log::Body::End { .. } => kind == "end",
                _ => false,
            })
            .count()
    };
    assert_eq!(
        (count("decision"), count("effect"), count("end")),
        (1, 1, 1)
    );
    let report = replay(&data, &executor, &Options::default()).unwrap();
    assert!(report.reproducible(), "{report:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "replay ran the effect");
}
