//! The harness's promises: default deny, handles that resolve paths before
//! checking them, executable tools within their limits (and confined by the
//! kernel where it can), results recorded so replay never runs a tool, and
//! every mediated action and refusal in the audit log.

mod common;

use common::Hive;
use jaros::canon::Digest;
use jaros::datadir::DataDir;
use jaros::decision::{AgentName, JobId};
use jaros::exec::Executor;
use jaros::harness::{self, audit, ToolRunner};
use jaros::job::{JobEnd, ProposedTurn, Proposer, Ticket, TurnRequest};
use jaros::log::{read_log, Body};
use jaros::plan::{AgentKind, AgentSpec, Grant, HandlerSpec, Plan, TypeSpec};
use jaros::replay::{replay, Options};
use jaros::runtime::Runtime;
use jaros::state::State;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FS_TYPES: [&str; 6] = [
    "fs.read",
    "fs.write",
    "fs.stat",
    "fs.disk_usage",
    "text.count",
    "sys.info",
];
/// The test tools under tests/fixtures/tools/, each registered as a decision
/// type named by its file stem.
const TOOLS: [&str; 10] = [
    "echo.sh",
    "fail.sh",
    "forever.sh",
    "flood.sh",
    "forker.sh",
    "badjson.sh",
    "wrongshape.sh",
    "greet.sh",
    "landlock_probe.py",
    "daemon.py",
];
const TOOL_TIMEOUT_MS: u64 = 800;
const TOOL_OUTPUT_CAP_BYTES: u64 = 64 * 1024;

struct Fixed(String);

impl Proposer for Fixed {
    fn propose(&self, _: &TurnRequest<'_>) -> Result<ProposedTurn, String> {
        Ok(ProposedTurn {
            text: self.0.clone(),
            call: None,
        })
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tools")
        .join(name)
}

fn stem(file: &str) -> &str {
    file.split('.').next().unwrap()
}

/// A hive with notes/ (granted), secret/ (not granted), the test tools in
/// tools/, and a few symlinks that lead out of scope.
fn hive() -> Hive {
    let hive = Hive::empty();
    hive.write("notes/a.md", "alpha beta\ngamma\n");
    hive.write("secret/s.txt", "top secret\n");
    hive.write("manifests/m.yaml", "kind: Node\n");
    hive.write("agents/a.j2", "{{ input }}\n");
    for tool in TOOLS {
        let to = hive.path().join("tools").join(tool);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture(tool), &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let notes = hive.path().join("notes");
    std::os::unix::fs::symlink("/etc/passwd", notes.join("passwd")).unwrap();
    std::os::unix::fs::symlink("../manifests/m.yaml", notes.join("manifest")).unwrap();
    std::os::unix::fs::symlink("../secret", notes.join("secret-dir")).unwrap();
    hive
}

fn tool_type(
    hive: &Hive,
    file: &str,
    result_schema: Value,
    deterministic: bool,
    env: &[&str],
) -> TypeSpec {
    let command = format!("tools/{file}");
    let bytes = std::fs::read(hive.path().join(&command)).unwrap();
    TypeSpec {
        handler: HandlerSpec::Exec {
            command,
            sha256: Digest::of_bytes(&bytes),
            timeout_ms: TOOL_TIMEOUT_MS,
            max_output_bytes: TOOL_OUTPUT_CAP_BYTES,
            env: env.iter().map(|s| s.to_string()).collect(),
        },
        payload_schema: json!({"type": "object"}),
        result_schema,
        deterministic,
        scopes: vec![],
        description: format!("{file}: a test tool"),
    }
}

fn agent(plan: &mut Plan, name: &str, role: &str) {
    plan.agents.insert(
        name.into(),
        AgentSpec {
            role: role.into(),
            max_steps: 1,
            kind: AgentKind::Builtin { name: name.into() },
            description: String::new(),
        },
    );
}

/// `writer` may read notes/** and shared/*.txt and write notes/**; `root`
/// may read and write `**`. Both may use every file tool and test tool.
fn plan(hive: &Hive) -> Plan {
    let mut plan = Plan::builtin();
    let mut types: Vec<String> = FS_TYPES.iter().map(|s| s.to_string()).collect();
    for tool in TOOLS {
        let schema = match tool {
            "wrongshape.sh" => {
                json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
            }
            "greet.sh" => {
                json!({"type": "object", "properties": {"greeting": {"type": "string"}}, "required": ["greeting"]})
            }
            _ => json!({"type": "object"}),
        };
        plan.types.insert(
            stem(tool).into(),
            tool_type(hive, tool, schema, tool == "greet.sh", &["CARGO_PKG_NAME"]),
        );
        types.push(stem(tool).into());
    }
    let types: std::collections::BTreeSet<String> = types.into_iter().collect();
    plan.roles.insert(
        "notes".into(),
        Grant {
            types: types.clone(),
            read: vec!["notes/**".into(), "shared/*.txt".into()],
            write: vec!["notes/**".into()],
            ..Grant::default()
        },
    );
    plan.roles.insert(
        "everything".into(),
        Grant {
            types,
            read: vec!["**".into()],
            write: vec!["**".into()],
            ..Grant::default()
        },
    );
    agent(&mut plan, "writer", "notes");
    agent(&mut plan, "root", "everything");
    plan
}

fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jaros"))
}

fn executor() -> Executor {
    harness::register(Executor::core(), ToolRunner::new(Some(launcher())))
}

/// Runs one job whose single turn proposes `decisions`.
fn run_with(
    hive: &Hive,
    data: &Path,
    plan: &Plan,
    agent: &str,
    job: &str,
    decisions: &Value,
) -> JobEnd {
    let rt = Runtime::open(hive.path(), DataDir::new(data), "n1".into(), plan.clone()).unwrap();
    let live = rt.live_io();
    let executor = executor();
    let proposer = Fixed(decisions.to_string());
    let runner = rt.runner(&executor, &proposer, &live, &|| true);
    let ticket = Ticket {
        job: JobId::new(job).unwrap(),
        agent: AgentName::new(agent).unwrap(),
        input: json!({}),
        parent: None,
        via: None,
    };
    runner.run(&ticket, &[]).unwrap()
}

fn run(hive: &Hive, plan: &Plan, agent: &str, job: &str, decisions: Value) -> JobEnd {
    run_with(hive, &hive.data(), plan, agent, job, &decisions)
}

/// The results of a job's decisions, in order.
fn steps(end: &JobEnd) -> Vec<Value> {
    end.result["results"].as_array().unwrap().clone()
}

fn error_of(step: &Value) -> String {
    step["error"].as_str().unwrap_or_default().to_string()
}

fn audit_lines(hive: &Hive) -> Vec<audit::Line> {
    audit::read(&hive.data().join("audit/n1.jsonl")).unwrap()
}

fn decision(kind: &str, payload: Value) -> Value {
    json!({"type": kind, "payload": payload})
}

fn reproducible(hive: &Hive) -> jaros::replay::Report {
    let report = replay(&DataDir::new(hive.data()), &executor(), &Options::default()).unwrap();
    assert!(report.reproducible(), "{report:#?}");
    assert_eq!((report.model_calls, report.tool_executions), (0, 0));
    report
}

#[test]
fn file_tools_work_inside_the_grant_and_are_audited() {
    let hive = hive();
    let plan = plan(&hive);
    let end = run(
        &hive,
        &plan,
        "writer",
        "ok1",
        json!([
            decision(
                "fs.write",
                json!({"path": "notes/new/today.md", "content": "one two\nthree\n"})
            ),
            decision("fs.read", json!({"path": "notes/new/today.md"})),
            decision("text.count", json!({"path": "notes/a.md"})),
            decision("fs.stat", json!({"path": "notes"})),
            decision("fs.disk_usage", json!({"path": "notes/a.md"})),
            decision("sys.info", json!({})),
        ]),
    );
    assert_eq!(end.state, State::Done, "{:#?}", end.result);
    let s = steps(&end);
    assert_eq!(
        std::fs::read_to_string(hive.path().join("notes/new/today.md")).unwrap(),
        "one two\nthree\n"
    );
    assert_eq!(s[0]["result"]["bytes"], 14);
    assert_eq!(s[1]["result"]["content"], "one two\nthree\n");
    assert_eq!(s[1]["result"]["sha256"], s[0]["result"]["sha256"]);
    assert_eq!(
        s[2]["result"],
        json!({"path": "notes/a.md", "lines": 2, "words": 3, "chars": 17, "bytes": 17})
    );
    let names: Vec<&str> = s[3]["result"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["a.md", "manifest", "new", "passwd", "secret-dir"],
        "sorted, symlinks listed not followed"
    );
    assert_eq!(s[3]["result"]["entries"][3]["type"], "symlink");
    assert!(s[4]["result"]["total_bytes"].as_u64().unwrap() > 0);
    assert!(s[5]["result"]["cpus"].as_u64().unwrap() >= 1);
    assert!(s[5]["result"]["memory_total_bytes"].as_u64().unwrap() > 0);

    let lines = audit_lines(&hive);
    let actions: Vec<&str> = lines.iter().map(|l| l.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "fs.write notes/new/today.md",
            "fs.read notes/new/today.md",
            "text.count notes/a.md",
            "fs.stat notes",
            "fs.disk_usage notes/a.md",
            "sys.info"
        ]
    );
    assert!(
        lines
            .iter()
            .all(|l| l.verdict == "allowed" && l.agent == "writer" && l.job == "ok1"),
        "{lines:#?}"
    );
    assert_eq!(lines[0].decision, "ok1#1.0");
    assert!(
        lines[0]
            .reason
            .contains("inside the write grant of role 'notes'"),
        "{}",
        lines[0].reason
    );
    let report = reproducible(&hive);
    assert_eq!(
        report.effects_reexecuted, 1,
        "fs.write is re-executed and compared"
    );
    assert_eq!(report.effects_read_back, 5);
}

#[test]
fn fs_write_into_the_hives_machinery_is_refused_even_under_a_double_star_grant() {
    let hive = hive();
    let plan = plan(&hive);
    let targets = [
        "manifests/evil.yaml",
        "agents/evil.j2",
        "tools/evil.sh",
        ".jaros-data/inbox/evil.json",
        "./tools//x.sh",
    ];
    let proposals: Vec<Value> = targets
        .iter()
        .map(|p| decision("fs.write", json!({"path": p, "content": "pwned"})))
        .collect();
    let end = run(&hive, &plan, "root", "m1", json!(proposals));
    assert_eq!(end.state, State::Failed);
    let s = steps(&end);
    assert_eq!(s.len(), targets.len());
    for (step, target) in s.iter().zip(targets) {
        let e = error_of(step);
        assert!(
            e.starts_with("rejected: scope: path '") && e.contains("which no grant reaches"),
            "{target}: {e}"
        );
    }
    for p in [
        "manifests/evil.yaml",
        "agents/evil.j2",
        "tools/evil.sh",
        ".jaros-data/inbox/evil.json",
        "tools/x.sh",
    ] {
        assert!(!hive.path().join(p).exists(), "{p} was written");
    }
    let refused: Vec<audit::Line> = audit_lines(&hive)
        .into_iter()
        .filter(|l| l.refused())
        .collect();
    assert_eq!(refused.len(), targets.len(), "every refusal is audited");
    assert!(
        refused[2].reason.contains("inside 'tools/'"),
        "{}",
        refused[2].reason
    );
    reproducible(&hive);
}

#[test]
fn the_hives_root_is_listed_only_under_a_double_star_grant_and_without_its_machinery() {
    let hive = hive();
    let plan = plan(&hive);
    let end = run(
        &hive,
        &plan,
        "root",
        "root1",
        json!([
            decision("fs.stat", json!({"path": "."})),
            decision("fs.disk_usage", json!({"path": "./"}))
        ]),
    );
    assert_eq!(end.state, State::Done, "{:#?}", end.result);
    let s = steps(&end);
    let names: Vec<&str> = s[0]["result"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["notes", "secret"],
        "manifests/, agents/, tools/ and the data dir are not even named"
    );
    assert_eq!(
        (
            s[0]["result"]["path"].as_str(),
            s[0]["result"]["total"].as_u64()
        ),
        (Some("."), Some(2))
    );
    assert!(s[1]["result"]["total_bytes"].as_u64().unwrap() > 0);
    let end = run(
        &hive,
        &plan,
        "writer",
        "root2",
        json!([decision("fs.stat", json!({"path": "."}))]),
    );
    assert_eq!(
        error_of(&steps(&end)[0]),
        "rejected: scope: role 'notes' does not grant read access to '.'"
    );
    let end = run(
        &hive,
        &plan,
        "root",
        "root3",
        json!([decision("fs.write", json!({"path": ".", "content": "x"}))]),
    );
    assert_eq!(
        error_of(&steps(&end)[0]),
        "path '.' names the hive itself; a write names a file inside it"
    );
    reproducible(&hive);
}

#[test]
fn a_data_dir_with_another_name_inside_the_hive_is_refused_by_the_handle() {
    let hive = hive();
    let plan = plan(&hive);
    let data = hive.path().join("state");
    let end = run_with(
        &hive,
        &data,
        &plan,
        "root",
        "d1",
        &json!([decision(
            "fs.write",
            json!({"path": "state/inbox/evil.json", "content": "{}"})
        )]),
    );
    assert_eq!(end.state, State::Failed);
    let e = error_of(&steps(&end)[0]);
    assert!(
        e.contains("inside the data dir, which no grant reaches"),
        "{e}"
    );
    assert!(!data.join("inbox/evil.json").exists());
}

#[test]
fn dot_dot_absolute_and_nul_paths_are_refused_with_reasons() {
    let hive = hive();
    let plan = plan(&hive);
    let end = run(
        &hive,
        &plan,
        "writer",
        "p1",
        json!([
            decision("fs.read", json!({"path": "notes/../secret/s.txt"})),
            decision("fs.read", json!({"path": "/etc/passwd"})),
            decision("fs.write", json!({"path": "notes/a\u{0}b", "content": "x"})),
            decision("fs.read", json!({"path": "secret/s.txt"})),
        ]),
    );
    let errors: Vec<String> = steps(&end).iter().map(error_of).collect();
    assert!(errors[0].contains("'..' is not allowed"), "{}", errors[0]);
    assert!(
        errors[1].contains("absolute paths are not allowed"),
        "{}",
        errors[1]
    );
    assert!(errors[2].contains("NUL byte"), "{}", errors[2]);
    assert!(
        errors[3].contains("role 'notes' does not grant read access to 'secret/s.txt'"),
        "{}",
        errors[3]
    );
    assert_eq!(audit_lines(&hive).iter().filter(|l| l.refused()).count(), 4);
}

#[test]
fn symlinks_leading_out_of_scope_are_refused_by_the_handle() {
    let hive = hive();
    let plan = plan(&hive);
    let end = run(
        &hive,
        &plan,
        "writer",
        "s1",
        json!([
            decision("fs.read", json!({"path": "notes/passwd"})),
            decision("fs.read", json!({"path": "notes/manifest"})),
            decision("text.count", json!({"path": "notes/secret-dir/s.txt"})),
            decision(
                "fs.write",
                json!({"path": "notes/secret-dir/planted.txt", "content": "x"})
            ),
        ]),
    );
    // The gate saw only notes/** paths: each was refused at execution, and
    // the first failure failed the job.
    assert_eq!(end.state, State::Failed);
    let e = error_of(&steps(&end)[0]);
    assert!(
        e.contains("path 'notes/passwd' resolves to '/etc/passwd', outside the hive"),
        "{e}"
    );
    let handle_refusals = |hive: &Hive| {
        audit_lines(hive)
            .into_iter()
            .filter(|l| l.refused() && l.reason.contains(" resolves to "))
            .count()
    };
    assert_eq!(
        handle_refusals(&hive),
        1,
        "the job stopped at its first failure"
    );

    // Each on its own job, so each is tried.
    let cases = [
        (
            "fs.read",
            "notes/manifest",
            "resolves to 'manifests/m.yaml', which is inside 'manifests/'",
        ),
        (
            "text.count",
            "notes/secret-dir/s.txt",
            "resolves to 'secret/s.txt', which is outside what role 'notes' grants to read",
        ),
        (
            "fs.write",
            "notes/secret-dir/planted.txt",
            "resolves to 'secret/planted.txt', which is outside what role 'notes' grants to write",
        ),
    ];
    for (i, (kind, path, expected)) in cases.iter().enumerate() {
        let payload = if *kind == "fs.write" {
            json!({"path": path, "content": "x"})
        } else {
            json!({"path": path})
        };
        let end = run(
            &hive,
            &plan,
            "writer",
            &format!("s{}", i + 2),
            json!([decision(kind, payload)]),
        );
        let e = error_of(&steps(&end)[0]);
        assert!(e.contains(expected), "{kind} {path}: {e}");
    }
    assert!(!hive.path().join("secret/planted.txt").exists());
    assert_eq!(handle_refusals(&hive), 4);
    // A refused write replays: the failure is read back, not redone.
    reproducible(&hive);
}

#[test]
fn a_payload_that_does_not_match_the_schema_is_rejected_by_the_gate() {
    let hive = hive();
    let plan = plan(&hive);
    let end = run(
        &hive,
        &plan,
        "writer",
        "v1",
        json!([decision(
            "fs.write",
            json!({"path": "notes/x", "content": 5})
        )]),
    );
    let e = error_of(&steps(&end)[0]);
    assert!(e.starts_with("rejected: schema: payload/content:"), "{e}");
    assert!(!hive.path().join("notes/x").exists());
}

#[test]
fn a_50_mb_write_is_refused_with_a_clear_reason() {
    let hive = hive();
    let plan = plan(&hive);
    let content = "x".repeat(50 * 1024 * 1024);
    let end = run(
        &hive,
        &plan,
        "writer",
        "big1",
        json!([decision(
            "fs.write",
            json!({"path": "notes/big", "content": content})
        )]),
    );
    assert_eq!(end.state, State::Failed);
    let e = error_of(&steps(&end)[0]);
    assert!(e.contains("over the limit of 1048576 bytes"), "{e}");
    assert!(!hive.path().join("notes/big").exists());
    reproducible(&hive);
}

#[test]
fn an_executable_tool_gets_its_payload_and_context_in_a_cleared_environment_and_a_scratch_dir() {
    let hive = hive();
    let plan = plan(&hive);
    let started = Instant::now();
    let end = run(
        &hive,
        &plan,
        "writer",
        "t1",
        json!([decision("echo", json!({"n": 7}))]),
    );
    let elapsed = started.elapsed();
    assert_eq!(end.state, State::Done, "{:#?}", end.result);
    let r = &steps(&end)[0]["result"];
    assert_eq!(r["input"]["payload"], json!({"n": 7}));
    assert_eq!(
        r["input"]["context"],
        json!({"job": "t1", "agent": "writer", "decision": "t1#1.0", "type": "echo", "epoch": 0, "idempotency_key": "t1#1.0@0"})
    );
    let env = r["env"].as_str().unwrap();
    assert!(
        env.contains("CARGO_PKG_NAME") && env.contains("PATH"),
        "allow-listed and PATH: {env}"
    );
    assert!(
        !env.contains("HOME") && !env.contains("CARGO_MANIFEST_DIR"),
        "everything else cleared: {env}"
    );
    let cwd = PathBuf::from(r["cwd"].as_str().unwrap());
    assert!(
        cwd.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("jaros-tool-"),
        "{cwd:?}"
    );
    assert!(!cwd.exists(), "the scratch directory is removed");
    println!(
        "one tool job (open, log, run, record): {} ms",
        elapsed.as_millis()
    );
    let lines = audit_lines(&hive);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].action, "tool echo (tools/echo.sh)");
    let status = ToolRunner::new(Some(launcher())).status();
    let expected = if status.active {
        "confined by Landlock ABI"
    } else {
        "not confined"
    };
    assert!(lines[0].reason.starts_with(expected), "{}", lines[0].reason);
}

#[test]
fn the_example_tool_greets() {
    let hive = hive();
    let plan = plan(&hive);
    let end = run(
        &hive,
        &plan,
        "writer",
        "g1",
        json!([decision("greet", json!({"name": "Ada"}))]),
    );
    assert_eq!(steps(&end)[0]["result"], json!({"greeting": "Hello, Ada!"}));
}

#[test]
fn a_failing_tool_fails_its_decision_with_a_clear_reason() {
    let hive = hive();
    let plan = plan(&hive);
    let cases = [
        ("fail", "tool 'fail' (tools/fail.sh) exited with status 3; stderr: the widget is broken"),
        ("badjson", "tool 'badjson' (tools/badjson.sh) printed invalid JSON on stdout"),
        ("wrongshape", "tool 'wrongshape' (tools/wrongshape.sh) returned a result that does not match its result schema: result/n:"),
    ];
    for (i, (tool, expected)) in cases.iter().enumerate() {
        let end = run(
            &hive,
            &plan,
            "writer",
            &format!("f{i}"),
            json!([decision(tool, json!({}))]),
        );
        assert_eq!(end.state, State::Failed);
        let e = error_of(&steps(&end)[0]);
        assert!(e.starts_with(expected), "{tool}: {e}");
        assert_eq!(
            end.reason.as_deref(),
            Some(format!("decision f{i}#1.0 ({tool}) failed: {e}").as_str())
        );
    }
    reproducible(&hive);
}

#[test]
fn a_tool_that_never_exits_is_killed_at_its_time_out() {
    let hive = hive();
    let plan = plan(&hive);
    let started = Instant::now();
    let end = run(
        &hive,
        &plan,
        "writer",
        "slow1",
        json!([decision("forever", json!({}))]),
    );
    let elapsed = started.elapsed();
    let e = error_of(&steps(&end)[0]);
    assert_eq!(
        e,
        format!(
            "tool 'forever' (tools/forever.sh) timed out after {TOOL_TIMEOUT_MS} ms and was killed"
        )
    );
    assert!(
        elapsed < Duration::from_millis(TOOL_TIMEOUT_MS + 2000),
        "took {elapsed:?}"
    );
    println!(
        "time-out of {TOOL_TIMEOUT_MS} ms: the job ended after {} ms",
        elapsed.as_millis()
    );
}

#[test]
fn a_tool_that_prints_without_end_is_stopped_at_its_output_cap() {
    let hive = hive();
    let plan = plan(&hive);
    let started = Instant::now();
    let end = run(
        &hive,
        &plan,
        "writer",
        "flood1",
        json!([decision("flood", json!({}))]),
    );
    let elapsed = started.elapsed();
    let e = error_of(&steps(&end)[0]);
    assert_eq!(e, format!("tool 'flood' (tools/flood.sh) printed more than {TOOL_OUTPUT_CAP_BYTES} bytes, its output cap, and was killed"));
    // The message says the cap stopped it (a time-out would say so); the
    // bound only catches a hang on a loaded machine.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    println!(
        "output cap of {TOOL_OUTPUT_CAP_BYTES} bytes: the job ended after {} ms",
        elapsed.as_millis()
    );
}

fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie waiting for its reaper is not running.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn a_child_a_tool_leaves_behind_is_killed_with_it() {
    let hive = hive();
    let plan = plan(&hive);
    let started = Instant::now();
    let end = run(
        &hive,
        &plan,
        "writer",
        "fork1",
        json!([decision("forker", json!({}))]),
    );
    let elapsed = started.elapsed();
    assert_eq!(end.state, State::Done, "{:#?}", end.result);
    let child = steps(&end)[0]["result"]["child"].as_u64().unwrap();
    assert!(
        ends_soon(child),
        "the tool's child {child} is still running"
    );
    // Had the child not been killed, its held-open stdout would have failed
    // the job after the drain grace; the bound only catches a hang.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

/// The runner's confinement when tools run confined and python3 (which the
/// Python test tools need) is on the tools' PATH; else `None`, saying which
/// is missing.
fn confinement_for_python_tools() -> Option<harness::ConfinementStatus> {
    let status = ToolRunner::new(Some(launcher())).status();
    if !status.active {
        println!("skipped: Landlock not available ({})", status.reason);
        return None;
    }
    if !Path::new("/usr/bin/python3").exists() && !Path::new("/bin/python3").exists() {
        println!("skipped: no python3 in /usr/bin or /bin for the Python test tool");
        return None;
    }
    Some(status)
}

/// Whether process `pid` is gone (or a zombie) within two seconds.
fn ends_soon(pid: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    !alive(pid)
}

#[test]
fn a_child_that_tries_to_leave_the_process_group_is_killed_with_the_tool_when_confined() {
    if confinement_for_python_tools().is_none() {
        return;
    }
    let hive = hive();
    let plan = plan(&hive);
    let end = run(
        &hive,
        &plan,
        "writer",
        "daemon1",
        json!([decision("daemon", json!({}))]),
    );
    assert_eq!(end.state, State::Done, "{:#?}", end.result);
    let child = steps(&end)[0]["result"]["child"].as_u64().unwrap();
    let escaped = !ends_soon(child);
    if escaped {
        // Not left running past the test.
        let _ = std::process::Command::new("kill")
            .args(["-9", &child.to_string()])
            .status();
    }
    assert!(
        !escaped,
        "the tool's child {child} left its group and outlived it"
    );
}

#[test]
fn a_tool_changed_since_the_plan_was_compiled_is_refused() {
    let hive = hive();
    let plan = plan(&hive);
    hive.write("tools/echo.sh", "#!/bin/sh\necho '{\"swapped\": true}'\n");
    let end = run(
        &hive,
        &plan,
        "writer",
        "sw1",
        json!([decision("echo", json!({}))]),
    );
    let e = error_of(&steps(&end)[0]);
    assert!(
        e.starts_with("tool 'echo' (tools/echo.sh) changed since the plan was compiled"),
        "{e}"
    );
    let lines = audit_lines(&hive);
    assert!(lines[0].refused() && lines[0].reason == e, "{lines:#?}");
}

#[test]
fn replay_never_runs_a_tool_even_when_the_executable_now_fails() {
    let hive = hive();
    let plan = plan(&hive);
    let end = run(
        &hive,
        &plan,
        "writer",
        "r1",
        json!([
            decision("echo", json!({"n": 1})),
            decision("greet", json!({"name": "Bo"}))
        ]),
    );
    assert_eq!(end.state, State::Done, "{:#?}", end.result);
    let failing = "#!/bin/sh\necho 'replay ran me' >&2\nexit 1\n";
    hive.write("tools/echo.sh", failing);
    hive.write("tools/greet.sh", failing);
    let report = reproducible(&hive);
    // greet is marked deterministic: still read back, never run again.
    assert_eq!(
        (report.effects_read_back, report.effects_reexecuted),
        (2, 0)
    );
    let run = hive.jaros(&["replay", "--json"]).expect(0);
    let json = run.json();
    assert_eq!(
        (
            json["tool_executions"].as_u64(),
            json["byte_identical"].as_bool()
        ),
        (Some(0), Some(true))
    );
}

#[test]
fn a_tool_is_confined_by_the_kernel_where_landlock_is_present() {
    let Some(status) = confinement_for_python_tools() else {
        return;
    };
    let hive = hive();
    let plan = plan(&hive);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let outside_tmp = std::env::temp_dir().join(format!("jaros-escape-{}", std::process::id()));
    let root = std::fs::canonicalize(hive.path()).unwrap();
    let payload = json!({
        "outside_read": root.join("secret/s.txt"),
        "outside_write": root.join("secret/planted.txt"),
        "tmp_write": outside_tmp,
        "granted_write": root.join("notes/from-tool.txt"),
        "granted_read": root.join("notes/a.md"),
        "symlink": root.join("notes/planted-link"),
        "port": port,
    });
    let end = run(
        &hive,
        &plan,
        "writer",
        "ll1",
        json!([decision("landlock_probe", payload)]),
    );
    assert_eq!(end.state, State::Done, "{:#?}", end.result);
    let r = &steps(&end)[0]["result"];
    println!(
        "Landlock ABI {:?}; the probe reported: {r:#}",
        status.landlock_abi
    );
    for denied in [
        "passwd",
        "outside_read",
        "outside_write",
        "tmp_write",
        "symlink",
        "setsid",
        "setpgid",
    ] {
        assert!(
            r[denied].as_str().unwrap().starts_with("denied: "),
            "{denied}: {r:#}"
        );
    }
    if status.landlock_abi.unwrap() >= 4 {
        assert!(
            r["tcp"].as_str().unwrap().starts_with("denied: "),
            "tcp: {r:#}"
        );
    }
    assert_eq!(
        (r["granted_write"].as_str(), r["granted_read"].as_str()),
        (Some("allowed"), Some("allowed")),
        "{r:#}"
    );
    assert!(!hive.path().join("secret/planted.txt").exists() && !outside_tmp.exists());
    assert!(hive.path().join("notes/from-tool.txt").exists());
}

#[test]
fn jaros_audit_prints_refusals_by_agent_and_verify_covers_the_audit_chain() {
    let hive = hive();
    let plan = plan(&hive);
    run(
        &hive,
        &plan,
        "writer",
        "a1",
        json!([
            decision("fs.read", json!({"path": "notes/a.md"})),
            decision("fs.read", json!({"path": "secret/s.txt"}))
        ]),
    );
    run(
        &hive,
        &plan,
        "root",
        "a2",
        json!([decision(
            "fs.write",
            json!({"path": "tools/x", "content": "x"})
        )]),
    );
    let all = hive.jaros(&["audit", "--json"]).expect(0).json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    let refusals = hive
        .jaros(&["audit", "--refusals", "--json", "--agent", "writer"])
        .expect(0)
        .json();
    let refusals = refusals.as_array().unwrap();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0]["decision"], "a1#1.1");
    assert_eq!(refusals[0]["verdict"], "refused");
    assert_eq!(
        refusals[0]["reason"],
        "scope: role 'notes' does not grant read access to 'secret/s.txt'"
    );
    let human = hive.jaros(&["audit", "--refusals"]).expect(0).stdout();
    assert!(human.contains("REFUSED agent=root job=a2 decision=a2#1.0 fs.write: scope: path 'tools/x' is inside 'tools/'"), "{human}");
    let verify = hive.jaros(&["verify"]).expect(0).stdout();
    assert!(verify.contains("audit/n1.jsonl: 3 records"), "{verify}");
    // Audit records never enter the decision log that replay reads.
    let log = read_log(&hive.data().join("log/n1.jsonl")).unwrap();
    assert!(!log
        .records
        .iter()
        .any(|r| matches!(r.body, Body::Audit { .. })));
    // Tampering with the audit log is caught.
    let path = hive.data().join("audit/n1.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("refused", "allowed", 1);
    std::fs::write(&path, text).unwrap();
    hive.jaros(&["verify"]).expect(1);
    hive.jaros(&["audit"]).expect(1);
}

#[test]
fn confinement_status_reports_the_kernels_landlock() {
    let status = harness::confinement_status();
    let lsm_has_landlock =
        std::fs::read_to_string("/sys/kernel/security/lsm").map(|l| l.contains("landlock"));
    if let Ok(true) = lsm_has_landlock {
        assert!(status.landlock_abi.is_some(), "{status:?}");
    }
    assert_eq!(status.active, status.landlock_abi.is_some(), "{status:?}");
    assert!(!status.reason.is_empty());
    println!("{status:?}");
}
