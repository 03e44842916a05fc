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
const TOOLS: [&str; 14] = [
    "echo.sh",
    "fail.sh",
    "forever.sh",
    "flood.sh",
    "forker.sh",
    "badjson.sh",
    "bigint.sh",
    "wrongshape.sh",
    "greet.sh",
    "landlock_probe.py",
    "daemon.py",
    "net_probe.py",
    "privs.sh",
    "fd_probe.py",
];
/// Long enough for a Python tool to start on a loaded machine; the time-out
/// test waits this long for its tool to be killed.
const TOOL_TIMEOUT_MS: u64 = 5_000;
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
        "evals/responses.json",
        ".git/hooks/pre-commit",
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
        "evals/responses.json",
        ".git/hooks/pre-commit",
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
fn symlinks_are_refused_by_the_handle_and_no_host_path_is_shown() {
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
        ]),
    );
    // The gate saw only notes/** paths: each was refused at execution, and
    // the first failure failed the job.
    assert_eq!(end.state, State::Failed);
    let e = error_of(&steps(&end)[0]);
    assert_eq!(
        e,
        "path 'notes/passwd' is or passes through a symlink (or a file where a directory should be); file tools do not follow symlinks"
    );
    let handle_refusals = |hive: &Hive| {
        audit_lines(hive)
            .into_iter()
            .filter(|l| l.refused() && l.reason.contains("do not follow symlinks"))
            .count()
    };
    assert_eq!(
        handle_refusals(&hive),
        1,
        "the job stopped at its first failure"
    );

    // Each on its own job, so each is tried.
    let cases = [
        ("fs.read", "notes/manifest"),
        ("text.count", "notes/secret-dir/s.txt"),
        ("fs.stat", "notes/secret-dir"),
        ("fs.disk_usage", "notes/passwd"),
        ("fs.write", "notes/secret-dir/planted.txt"),
    ];
    let host = std::fs::canonicalize(hive.path()).unwrap();
    for (i, (kind, path)) in cases.iter().enumerate() {
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
        assert!(
            e.contains("file tools do not follow symlinks"),
            "{kind} {path}: {e}"
        );
        assert!(
            !e.contains(&*host.to_string_lossy()) && !e.contains("/etc"),
            "{kind} {path}: a host path in {e}"
        );
    }
    assert!(!hive.path().join("secret/planted.txt").exists());
    assert_eq!(handle_refusals(&hive), 1 + cases.len());
    // A refused write replays: the failure is read back, not redone.
    reproducible(&hive);
}

#[test]
fn a_hard_link_to_a_file_outside_the_read_grant_is_refused_unless_the_role_allows_it() {
    let hive = hive();
    let mut plan = plan(&hive);
    std::fs::hard_link(
        hive.path().join("secret/s.txt"),
        hive.path().join("notes/twin.txt"),
    )
    .unwrap();
    let read_twin = json!([decision("fs.read", json!({"path": "notes/twin.txt"}))]);
    let end = run(&hive, &plan, "writer", "hl1", read_twin.clone());
    assert_eq!(end.state, State::Failed);
    let e = error_of(&steps(&end)[0]);
    assert!(e.contains("'notes/twin.txt' has 2 hard links"), "{e}");
    assert!(!end.result.to_string().contains("top secret"));
    plan.roles.get_mut("notes").unwrap().allow_hard_links = true;
    let end = run(&hive, &plan, "writer", "hl2", read_twin);
    assert_eq!(steps(&end)[0]["result"]["content"], "top secret\n");
}

/// Most swaps the flipping thread makes, should the test never stop it.
const MAX_FLIPS: usize = 10_000_000;
/// Reads tried while a directory is swapped for a symlink.
const READ_RACE_ROUNDS: usize = 50_000;
/// Writes tried likewise (each syncs the disk).
const WRITE_RACE_ROUNDS: usize = 5_000;

/// Swaps `a` and `b` (a directory and a symlink) atomically until `stop`.
fn flip(
    a: PathBuf,
    b: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut flips = 0;
        while flips < MAX_FLIPS && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &a,
                rustix::fs::CWD,
                &b,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .unwrap();
            flips += 1;
        }
        flips
    })
}

#[test]
fn a_directory_swapped_for_a_symlink_mid_operation_never_leads_out_of_the_hive() {
    let hive = hive();
    let plan = plan(&hive);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("s.txt"), "outside\n").unwrap();
    let notes = hive.path().join("notes");
    std::fs::create_dir(notes.join("flip")).unwrap();
    std::fs::write(notes.join("flip/s.txt"), "inside\n").unwrap();
    std::os::unix::fs::symlink(outside.path(), notes.join("flop")).unwrap();
    let data = hive.data();
    let read = harness::fs::Handle::new(
        hive.path(),
        Some(&data),
        &plan,
        "writer",
        harness::fs::Access::Read,
    )
    .unwrap();
    let write = harness::fs::Handle::new(
        hive.path(),
        Some(&data),
        &plan,
        "writer",
        harness::fs::Access::Write,
    )
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = flip(notes.join("flip"), notes.join("flop"), stop.clone());
    let (mut read_inside, mut wrote, mut last_error) = (0, 0, String::new());
    for _ in 0..READ_RACE_ROUNDS {
        match read.read("notes/flip/s.txt", "fs.read", 1024) {
            Ok((_, bytes)) => {
                assert_eq!(bytes, b"inside\n", "an outside file was read");
                read_inside += 1;
            }
            Err(e) => last_error = e,
        }
    }
    for _ in 0..WRITE_RACE_ROUNDS {
        if let Ok(target) = write.target("notes/flip/w.txt") {
            if write.write(target, b"w").is_ok() {
                wrote += 1;
            }
        }
        assert!(
            !outside.path().join("w.txt").exists(),
            "a write landed outside the hive"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    println!(
        "{READ_RACE_ROUNDS} reads and {WRITE_RACE_ROUNDS} writes against {flips} swaps: {read_inside} reads and {wrote} writes inside, none outside; last refusal: {last_error}"
    );
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
        json!({"job": "t1", "agent": "writer", "decision": "t1#1.0", "type": "echo",
               "epoch": 0, "idempotency_key": "t1#1.0@0"})
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
    let scratch = cwd.parent().unwrap();
    assert!(
        scratch
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("jaros-tool-")
            && cwd.ends_with("work"),
        "{cwd:?}"
    );
    assert!(!scratch.exists(), "the scratch directory is removed");
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
        ("bigint", "tool 'bigint' (tools/bigint.sh) returned a result that cannot be recorded: /id is 9007199254740993, an integer no double holds"),
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

/// The runner's confinement, for the tests run by
/// scripts/confinement-tests.sh: they fail (never skip) when tools do not
/// run confined here or python3 (the Python test tools need it) is missing.
fn require_confinement() -> harness::ConfinementStatus {
    let status = ToolRunner::new(Some(launcher())).status();
    assert!(
        status.active,
        "tools do not run confined here: {}",
        status.reason
    );
    assert!(
        Path::new("/usr/bin/python3").exists() || Path::new("/bin/python3").exists(),
        "no python3 in /usr/bin or /bin for the Python test tools"
    );
    status
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
#[ignore = "needs Landlock, python3 and root: run by scripts/confinement-tests.sh"]
fn a_child_that_tries_to_leave_the_process_group_is_killed_with_the_tool_when_confined() {
    require_confinement();
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
    // The node recompiles its plan by itself: no restart to ask for.
    assert!(
        !e.contains("restart") && e.contains("jaros validate"),
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
#[ignore = "needs Landlock, python3 and root: run by scripts/confinement-tests.sh"]
fn a_tool_is_confined_by_the_kernel_where_landlock_is_present() {
    let status = require_confinement();
    let hive = hive();
    let plan = plan(&hive);
    // A root node's tool runs as nobody: the granted directory is its to write.
    std::fs::set_permissions(
        hive.path().join("notes"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // A directory of this test's own outside the hive that anyone may write
    // (as /tmp): only the kernel's confinement keeps the tool out of it.
    let outside = tempfile::tempdir().unwrap();
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let outside_tmp = outside.path().join("escape");
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
#[ignore = "needs Landlock, python3 and root: run by scripts/confinement-tests.sh"]
fn confinement_status_names_every_layer_in_place() {
    let status = require_confinement();
    let Some(Ok(layers)) = &status.layers else {
        panic!("{status:?}");
    };
    assert!(
        status.landlock_abi.is_some_and(|abi| abi >= 1),
        "{status:?}"
    );
    assert!(
        layers.netns.is_ok() && layers.seccomp && layers.caps_dropped && layers.no_new_privs,
        "{status:?}"
    );
    assert_eq!(layers.uid, 65534, "a root node's tools run as nobody");
    for words in [
        "Landlock ABI",
        "a network namespace of its own",
        "seccomp",
        "capabilities dropped",
        "runs as uid 65534",
    ] {
        assert!(status.reason.contains(words), "{words}: {}", status.reason);
    }
    println!("{}", status.reason);
}

/// Runs `tool` for `agent` with `payload` and returns its result (the job
/// must end DONE).
fn tool_result(
    hive: &Hive,
    plan: &Plan,
    agent: &str,
    job: &str,
    tool: &str,
    payload: Value,
) -> Value {
    let end = run(hive, plan, agent, job, json!([decision(tool, payload)]));
    assert_eq!(end.state, State::Done, "{:#?}", end.result);
    steps(&end)[0]["result"].clone()
}

#[test]
#[ignore = "needs Landlock, python3 and root: run by scripts/confinement-tests.sh"]
fn a_tool_whose_role_grants_no_host_sends_no_udp_no_dns_and_reaches_no_unix_socket() {
    require_confinement();
    let hive = hive();
    let mut plan = plan(&hive);
    let mut net = plan.roles["notes"].clone();
    net.hosts = ["example.com".to_string()].into();
    plan.roles.insert("net".into(), net);
    agent(&mut plan, "fetcher", "net");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let sock = hive.path().join("secret/s.sock");
    let unix = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    unix.set_nonblocking(true).unwrap();
    let payload = json!({"udp_port": udp.local_addr().unwrap().port(), "unix_path": sock});

    let r = tool_result(&hive, &plan, "writer", "net1", "net_probe", payload.clone());
    println!("no host granted: {r:#}");
    for denied in [
        "udp", "udp6", "dns", "raw_icmp", "netlink", "packet", "unix",
    ] {
        assert!(
            r[denied].as_str().unwrap().starts_with("denied: "),
            "{denied}: {r:#}"
        );
    }
    assert_eq!(r["socketpair"], "allowed", "{r:#}");
    // A namespace of its own (root, or a user namespace, can make one).
    assert_eq!(r["interfaces"], json!(["lo"]), "{r:#}");
    let mut buf = [0u8; 64];
    assert!(udp.recv_from(&mut buf).is_err(), "a datagram arrived");
    assert!(unix.accept().is_err(), "the UNIX socket was reached");

    // With a host granted, IPv4 and IPv6 sockets open; nothing else does.
    let r = tool_result(&hive, &plan, "fetcher", "net2", "net_probe", payload);
    println!("a host granted: {r:#}");
    assert_eq!(r["udp"], "allowed", "{r:#}");
    for denied in ["raw_icmp", "netlink", "packet", "unix"] {
        assert!(
            r[denied].as_str().unwrap().starts_with("denied: "),
            "{denied}: {r:#}"
        );
    }
    assert!(unix.accept().is_err(), "the UNIX socket was reached");
}

#[test]
#[ignore = "needs Landlock, python3 and root: run by scripts/confinement-tests.sh"]
fn a_tool_of_a_root_node_runs_as_nobody_without_any_capability() {
    require_confinement();
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs a node running as root"
    );
    let hive = hive();
    let plan = plan(&hive);
    let r = tool_result(&hive, &plan, "writer", "priv1", "privs", json!({}));
    println!("{r:#}");
    let none = "0000000000000000";
    assert_eq!(
        r,
        json!({
            "Uid": "65534 65534 65534 65534",
            "Gid": "65534 65534 65534 65534",
            "Groups": "",
            "CapInh": none,
            "CapPrm": none,
            "CapEff": none,
            "CapBnd": none,
            "CapAmb": none,
            "NoNewPrivs": "1",
        })
    );
    // Another user, where the node says so.
    let rt_plan = plan.clone();
    let runner = ToolRunner::new(Some(launcher())).run_as(Some(harness::launcher::RunAs {
        uid: 4242,
        gid: 4343,
    }));
    let rt = Runtime::open(
        hive.path(),
        DataDir::new(hive.data()),
        "n1".into(),
        rt_plan.clone(),
    )
    .unwrap();
    let live = rt.live_io();
    let executor = harness::register(Executor::core(), runner);
    let proposer = Fixed(json!([decision("privs", json!({}))]).to_string());
    let end = rt
        .runner(&executor, &proposer, &live, &|| true)
        .run(
            &Ticket {
                job: JobId::new("priv2").unwrap(),
                agent: AgentName::new("writer").unwrap(),
                input: json!({}),
                parent: None,
                via: None,
            },
            &[],
        )
        .unwrap();
    assert_eq!(end.state, State::Done, "{:#?}", end.result);
    let r = &steps(&end)[0]["result"];
    assert_eq!(
        (r["Uid"].as_str(), r["Gid"].as_str(), r["CapBnd"].as_str()),
        (
            Some("4242 4242 4242 4242"),
            Some("4343 4343 4343 4343"),
            Some(none)
        )
    );
}

#[test]
#[ignore = "needs Landlock, python3 and root: run by scripts/confinement-tests.sh"]
fn a_descriptor_the_node_holds_without_close_on_exec_is_closed_before_the_tool_runs() {
    require_confinement();
    let hive = hive();
    let plan = plan(&hive);
    let outside = hive.path().join("secret/s.txt");
    // As a careless parent would hand it to the node: open across exec.
    let file = std::fs::File::open(&outside).unwrap();
    rustix::io::fcntl_setfd(&file, rustix::io::FdFlags::empty()).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let r = tool_result(&hive, &plan, "writer", "fd1", "fd_probe", json!({"fd": fd}));
    drop(file);
    assert!(
        r["closed"]
            .as_str()
            .is_some_and(|e| e.contains("Bad file descriptor")),
        "descriptor {fd}: {r:#}"
    );
}

#[test]
#[ignore = "needs Landlock, python3 and root: run by scripts/confinement-tests.sh"]
fn the_node_manifest_names_the_user_a_root_nodes_tools_run_as() {
    require_confinement();
    let hive = common::example_hive();
    hive.write(
        "tools/greet.sh",
        "#!/bin/sh\ncat >/dev/null\nprintf '{\"greeting\": \"%s\"}\\n' \"$(id -u):$(id -g)\"\n",
    );
    let greet = hive.path().join("tools/greet.sh");
    std::fs::set_permissions(&greet, std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = hive.path().join("manifests/node.yaml");
    let text = std::fs::read_to_string(&node).unwrap();
    let greeting = |hive: &Hive, job: &str| {
        let run = hive
            .jaros(&["run", "greeter", "--id", job, "--input", r#"{"name": "x"}"#])
            .expect(0)
            .json();
        run["result"]["results"][0]["result"]["greeting"].clone()
    };
    assert_eq!(greeting(&hive, "u1"), "65534:65534", "the default: nobody");
    std::fs::write(
        &node,
        format!("{text}  tools:\n    run_as: \"4242:4343\"\n"),
    )
    .unwrap();
    assert_eq!(greeting(&hive, "u2"), "4242:4343");
    std::fs::write(&node, format!("{text}  tools:\n    run_as: no-such-user\n")).unwrap();
    let refused = hive
        .jaros(&["run", "greeter", "--id", "u3", "--input", "{}"])
        .expect(2);
    assert!(
        refused.stderr().contains("manifests/node.yaml:")
            && refused
                .stderr()
                .contains("no user 'no-such-user' in /etc/passwd"),
        "{}",
        refused.stderr()
    );
}

#[test]
fn the_launcher_refuses_a_descriptor_left_open_across_exec() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "outside secret\n").unwrap();
    // The shell opens descriptor 5 without close-on-exec, as a careless
    // parent of a node would, and the launcher is asked to run a tool that
    // reads it.
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"exec 5<"$1"; shift; exec "$@""#)
        .arg("sh")
        .arg(&outside)
        .arg(launcher())
        .args([
            "__sandbox-exec",
            "--ro",
            "/usr",
            "--ro",
            "/bin",
            "--ro",
            "/lib",
            "--",
        ])
        .args(["/bin/sh", "-c", "cat <&5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("outside secret"),
        "the tool read it: {stdout}"
    );
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("jaros sandbox: cannot confine the tool: descriptor")
            && stderr.contains(" 5")
            && stderr.contains("open without close-on-exec and would reach the tool"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs Landlock, python3 and root: run by scripts/confinement-tests.sh"]
fn an_unprivileged_node_gets_its_tools_a_network_namespace_through_a_user_namespace() {
    require_confinement();
    // The launcher as an unprivileged node would run it: as nobody, from a
    // directory nobody can reach.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("jaros");
    std::fs::copy(launcher(), &bin).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&bin)
        .args(["__sandbox-exec", "--probe", "--deny-net"])
        .output()
        .expect("setpriv (util-linux) runs a command as another user");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let layers: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        layers,
        json!({"netns": {"Ok": "user namespace"}, "seccomp": true, "caps_dropped": true, "uid": 65534, "no_new_privs": true})
    );
}
