//! MCP servers as tools: declared in a Tool manifest, locked, gated,
//! called through the harness, recorded and read back on replay.
//!
//! The bad-server tests use `tests/fixtures/mcp/bad_server.py` (Python, no
//! dependencies). The real-server tests (`#[ignore]`) need servers from PyPI
//! and npm: `scripts/mcp-tests.sh` installs them and runs those tests.

mod common;

use common::{Hive, Node, FAST};
use serde_json::{json, Value};

const BAD_SERVER: &str = include_str!("fixtures/mcp/bad_server.py");

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = FAST.to_vec();
    a.extend_from_slice(extra);
    a
}

/// A hive with the bad server as Tool `fx` (every tool exposed, decision
/// types `fx.<tool>`), a silent one as Tool `silent`, and an agent `caller`
/// that proposes the one decision its input names.
fn fixture_hive() -> Hive {
    let hive = Hive::empty();
    hive.write("tools/bad_server.py", BAD_SERVER);
    std::fs::set_permissions(
        hive.path().join("tools/bad_server.py"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for (name, extra) in [("fx", ""), ("silent", "\n    args: [--silent]")] {
        hive.write(
            &format!("manifests/tools/{name}.yaml"),
            &format!("apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: {name}\nspec:\n  type: {name}\n  mcp:\n    command: tools/bad_server.py{extra}\n  expose: \"*\"\n  timeout: 3s\n  max_output_bytes: 10000\n"),
        );
    }
    hive.write(
        "manifests/roles/caller.yaml",
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: caller\nspec:\n  types: [\"fx.*\", silent.echo]\n",
    );
    hive.write(
        "manifests/agents/caller.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: caller\nspec:\n  role: caller\n  template: agents/caller.j2\n",
    );
    hive.write(
        "agents/caller.j2",
        r#"[{"type": {{ input.type | tojson }}, "payload": {"text": {{ input.text | default("hi") | tojson }}}}]"#,
    );
    hive
}

/// Locks every server of the hive but the silent one (which cannot be
/// locked), whose lock is written by hand from the fixture's.
fn lock(hive: &Hive) {
    hive.jaros(&["mcp", "lock", "fx"]).expect(0);
    let fx = std::fs::read_to_string(hive.path().join("manifests/tools/fx.mcp-lock.json")).unwrap();
    let mut lock: Value = serde_json::from_str(&fx).unwrap();
    lock["server"]["args"] = json!(["--silent"]);
    hive.write(
        "manifests/tools/silent.mcp-lock.json",
        &jaros::canon::to_string(&lock).unwrap(),
    );
}

/// Submits `type` to the node and waits for its result.
fn call(hive: &Hive, id: &str, ty: &str) -> Value {
    let input = json!({"type": ty}).to_string();
    hive.jaros(&["submit", "caller", "--id", id, "--input", &input])
        .expect(0);
    let out = hive.jaros(&["result", id, "--wait", "60"]);
    serde_json::from_str(&out.stdout()).unwrap_or_else(|_| panic!("{}", out.context()))
}

fn first_effect(result: &Value) -> (Value, String) {
    let r = &result["result"]["results"][0];
    (
        r["result"].clone(),
        r["error"].as_str().unwrap_or_default().to_string(),
    )
}

/// One bad call, then a good one on the same node: the bad one fails with
/// `reason`, the good one succeeds, and the audit names the reason. Returns
/// the bad call's result and the audit.
fn bad_then_good(ty: &str, reason: &str) -> (Value, String) {
    let hive = fixture_hive();
    lock(&hive);
    hive.jaros(&["validate"]).expect(0);
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    let bad = call(&hive, "bad", ty);
    let good = call(&hive, "good", "fx.echo");
    let audit = hive.jaros(&["audit"]).stdout();
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(bad["state"], "FAILED", "{bad}");
    let text = bad.to_string();
    assert!(text.contains(reason), "expected {reason:?} in {bad:#}");
    assert!(
        audit.contains(reason),
        "expected {reason:?} in the audit:\n{audit}"
    );
    assert_eq!(good["state"], "DONE", "{good}");
    assert_eq!(
        first_effect(&good).0["content"][0]["text"],
        "echo: hi",
        "{good}"
    );
    (bad, audit)
}

#[test]
fn a_server_that_never_answers_initialize_fails_only_its_decision() {
    bad_then_good("silent.echo", "initialize: no answer within 3000 ms");
}

#[test]
fn a_server_that_prints_garbage_fails_only_its_decision() {
    bad_then_good("fx.garbage", "not a JSON-RPC message on its output");
}

#[test]
fn a_server_that_logs_to_stdout_fails_only_its_decision() {
    bad_then_good("fx.log_stdout", "INFO starting the tool");
}

#[test]
fn an_is_error_answer_fails_its_decision_with_the_whole_answer_recorded() {
    let (bad, _) = bad_then_good("fx.fail", "no such branch: topic");
    let (_, error) = first_effect(&bad);
    let answer = error
        .split_once("reported an error: ")
        .map(|(_, a)| a)
        .unwrap_or_else(|| panic!("{error}"));
    let answer: Value = serde_json::from_str(answer).unwrap_or_else(|e| panic!("{e}: {error}"));
    assert_eq!(answer["isError"], true, "{answer}");
    assert_eq!(
        answer["content"][1]["text"], "known: main",
        "every block: {answer}"
    );
}

#[test]
fn a_server_that_crashes_mid_call_fails_only_its_decision() {
    bad_then_good("fx.crash", "the server exited (exit status: 3)");
}

#[test]
fn a_server_that_answers_more_than_the_cap_fails_only_its_decision() {
    bad_then_good("fx.big", "more than the output cap of 10000 bytes");
}

#[test]
fn a_result_that_breaks_its_own_output_schema_fails_only_its_decision() {
    bad_then_good("fx.bad_output", "breaks its own outputSchema");
}

#[test]
fn a_request_from_the_server_is_answered_method_not_found_audited_and_the_call_goes_on() {
    let hive = fixture_hive();
    lock(&hive);
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    let asked = call(&hive, "ask", "fx.ask");
    let audit = hive.jaros(&["audit"]).stdout();
    assert_eq!(node.stop().0, 0);
    assert_eq!(asked["state"], "DONE", "{asked}");
    assert_eq!(
        first_effect(&asked).0["content"][0]["text"],
        "the client answered error -32601"
    );
    let line = audit
        .lines()
        .find(|l| l.contains("sampling/createMessage"))
        .unwrap_or_else(|| panic!("the refused request is not audited:\n{audit}"));
    assert!(line.contains("REFUSED"), "{line}");
    assert!(line.contains("answered -32601"), "{line}");
}

#[test]
fn a_server_that_forks_a_daemon_and_exits_fails_at_once_and_the_daemon_dies() {
    // The daemon holds the server's stdout open: without watching the
    // process, the call would wait for its time-out.
    let (bad, audit) = bad_then_good(
        "fx.daemon",
        "the server exited (exit status: 0) before answering",
    );
    assert!(audit.contains("confined by Landlock"), "{audit}");
    let text = bad.to_string();
    // seccomp keeps it in the process group the node kills.
    assert!(text.contains("setsid refused"), "{text}");
    let pid: u32 = text
        .split("daemon pid ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no daemon pid in {text}"));
    common::wait_until(
        std::time::Duration::from_secs(10),
        "the daemon to be gone",
        || gone(pid),
    );
}

#[test]
fn a_server_that_floods_stderr_still_answers() {
    let hive = fixture_hive();
    lock(&hive);
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    let flooded = call(&hive, "flood", "fx.flood");
    let good = call(&hive, "good", "fx.echo");
    assert_eq!(node.stop().0, 0);
    assert_eq!(flooded["state"], "DONE", "{flooded}");
    assert_eq!(
        first_effect(&flooded).0["content"][0]["text"],
        "after the flood"
    );
    assert_eq!(good["state"], "DONE", "{good}");
}

#[test]
fn a_server_that_died_between_calls_is_started_again_and_the_next_call_succeeds() {
    let hive = fixture_hive();
    lock(&hive);
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    let pid_of = |result: &Value| -> u32 {
        let text = first_effect(result).0["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        text.strip_prefix("pid ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{result}"))
    };
    let first = call(&hive, "first", "fx.pid");
    let second = call(&hive, "second", "fx.pid");
    assert_eq!(pid_of(&first), pid_of(&second), "the server is kept warm");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid_of(&first).to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    common::wait_until(
        std::time::Duration::from_secs(10),
        "the killed server to exit",
        || gone(pid_of(&first)),
    );
    let third = call(&hive, "third", "fx.pid");
    let good = call(&hive, "good", "fx.echo");
    assert_eq!(node.stop().0, 0);
    assert_eq!(third["state"], "DONE", "{third}");
    assert_ne!(pid_of(&third), pid_of(&first), "a new server answered");
    assert_eq!(good["state"], "DONE", "{good}");
}

#[test]
fn validate_names_a_missing_lock_and_what_to_run() {
    let hive = fixture_hive();
    let out = hive.jaros(&["validate"]).expect(1);
    assert!(
        out.stdout()
            .contains("has no lock file manifests/tools/fx.mcp-lock.json; run `jaros mcp lock fx`"),
        "{}",
        out.context()
    );
}

#[test]
fn a_lock_is_stale_when_the_manifest_names_another_server() {
    let hive = fixture_hive();
    lock(&hive);
    hive.jaros(&["validate"]).expect(0);
    common::edit(
        &hive.path().join("manifests/tools/fx.yaml"),
        "command: tools/bad_server.py",
        "command: tools/bad_server.py\n    args: [--extra-tool, added]",
    );
    let out = hive.jaros(&["validate"]).expect(1);
    assert!(out.stdout().contains("is stale"), "{}", out.context());
}

#[test]
fn the_lock_is_canonical_sorted_and_covered_by_the_plan_digest() {
    let hive = fixture_hive();
    lock(&hive);
    let path = hive.path().join("manifests/tools/fx.mcp-lock.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let lock: Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = lock["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    // Both pages of tools/list are in it.
    assert_eq!(names.len(), 14, "{names:?}");
    assert_eq!(
        text,
        format!("{}\n", jaros::canon::to_string(&lock).unwrap())
    );
    let before = hive.jaros(&["plan", "--json"]).expect(0).json()["digest"].clone();
    let mut edited = lock.clone();
    edited["tools"][0]["description"] = json!("changed by hand");
    std::fs::write(&path, jaros::canon::to_string(&edited).unwrap()).unwrap();
    let after = hive.jaros(&["plan", "--json"]).expect(0).json()["digest"].clone();
    assert_ne!(before, after);
}

#[test]
fn a_live_tool_list_that_differs_from_the_lock_is_refused_naming_the_change() {
    let hive = fixture_hive();
    lock(&hive);
    // The lock says `echo` takes other arguments and lists a tool the
    // server no longer has.
    let path = hive.path().join("manifests/tools/fx.mcp-lock.json");
    let mut lock: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let tools = lock["tools"].as_array_mut().unwrap();
    for t in tools.iter_mut() {
        if t["name"] == "echo" {
            t["input_schema"] =
                json!({"type": "object", "properties": {"message": {"type": "string"}}});
        }
    }
    tools.push(json!({"name": "gone", "description": "", "input_schema": {}}));
    tools.sort_by_key(|t| t["name"].as_str().unwrap().to_string());
    std::fs::write(&path, jaros::canon::to_string(&lock).unwrap()).unwrap();
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    let refused = call(&hive, "drift", "fx.echo");
    assert_eq!(node.stop().0, 0);
    let text = refused.to_string();
    assert_eq!(refused["state"], "FAILED", "{refused}");
    assert!(
        text.contains("live tool list differs from the lock file"),
        "{text}"
    );
    assert!(text.contains("tool 'echo': input_schema changed"), "{text}");
    assert!(text.contains("removed tool 'gone'"), "{text}");
}

#[test]
fn replay_reads_mcp_calls_back_and_needs_no_server() {
    let hive = fixture_hive();
    lock(&hive);
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    let good = call(&hive, "good", "fx.echo");
    let bad = call(&hive, "bad", "fx.crash");
    assert_eq!(node.stop().0, 0);
    assert_eq!(good["state"], "DONE");
    assert_eq!(bad["state"], "FAILED");
    std::fs::remove_file(hive.path().join("tools/bad_server.py")).unwrap();
    let replay = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_eq!(replay["tool_executions"], 0, "{replay:#}");
    assert_eq!(replay["byte_identical"], true, "{replay:#}");
}

/// `jaros run caller` in `hive` calling `ty` with `text`, with the
/// environment variables `env` set: the job's result.
fn run_with_env(hive: &Hive, ty: &str, text: &str, env: &[(&str, &str)]) -> Value {
    let input = json!({"type": ty, "text": text}).to_string();
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(["run", "caller", "--input", &input])
        .current_dir(hive.path())
        .env_remove("JAROS_HIVE")
        .env_remove("JAROS_DATA_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The fixture hive with `fx` alone (its `mcp:` given `extra` lines) and a
/// role granting `fx.*` and `hosts`.
fn fx_hive(extra: &str, hosts: &str) -> Hive {
    let hive = fixture_hive();
    std::fs::remove_file(hive.path().join("manifests/tools/silent.yaml")).unwrap();
    hive.write(
        "manifests/tools/fx.yaml",
        &format!("apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: fx\nspec:\n  type: fx\n  mcp:\n    command: tools/bad_server.py\n{extra}  expose: \"*\"\n  timeout: 10s\n"),
    );
    hive.write(
        "manifests/roles/caller.yaml",
        &format!("apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: caller\nspec:\n  types: [\"fx.*\"]\n  hosts: [{hosts}]\n"),
    );
    hive.write(
        "agents/caller.j2",
        r#"[{"type": {{ input.type | tojson }}, "payload": {"text": {{ input.text | tojson }}}}]"#,
    );
    hive.jaros(&["mcp", "lock", "fx"]).expect(0);
    hive
}

fn text_of(result: &Value) -> String {
    assert_eq!(result["state"], "DONE", "{result:#}");
    first_effect(result).0["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_stdio_server_gets_a_cleared_environment_but_its_allow_list() {
    let hive = fx_hive("    env_allow: [MCP_PASSED]\n", "");
    let env = run_with_env(
        &hive,
        "fx.env",
        "",
        &[("MCP_PASSED", "yes"), ("MCP_SECRET", "no")],
    );
    let names = text_of(&env);
    let names: Vec<&str> = names.split(' ').collect();
    assert!(names.contains(&"MCP_PASSED"), "{names:?}");
    // PATH and HOME are given; Python itself adds LC_CTYPE in a C locale.
    for name in &names {
        assert!(
            ["HOME", "MCP_PASSED", "PATH", "LC_CTYPE"].contains(name),
            "{name} leaked into the server's environment: {names:?}"
        );
    }
}

#[test]
fn a_stdio_server_reaches_the_network_only_when_the_role_grants_hosts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    listener.set_nonblocking(true).unwrap();
    let hive = fx_hive("", "");
    let denied = text_of(&run_with_env(&hive, "fx.net", &port, &[]));
    assert!(denied.starts_with("not connected: "), "{denied}");
    assert!(listener.accept().is_err(), "a connection arrived: {denied}");
    let hive = fx_hive("", "127.0.0.1");
    let granted = text_of(&run_with_env(&hive, "fx.net", &port, &[]));
    assert_eq!(granted, "connected");
}

/// `jaros validate` on `hive`, expected to fail naming `what`.
fn validate_refuses(hive: &Hive, what: &str) {
    let out = hive.jaros(&["validate"]).expect(1);
    assert!(
        out.stdout().contains(what),
        "expected {what:?}:\n{}",
        out.context()
    );
}

#[test]
fn an_mcp_tool_that_would_take_a_built_in_decision_type_is_refused() {
    // Tool `type: fs` and a server tool `read` would give `fs.read`: the
    // built-in would silently handle calls meant for the server.
    let hive = fixture_hive();
    hive.write(
        "manifests/tools/fx.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: fx\nspec:\n  type: fs\n  mcp:\n    command: tools/bad_server.py\n    args: [--extra-tool, read]\n  expose: \"*\"\n  timeout: 3s\n",
    );
    hive.write(
        "manifests/roles/caller.yaml",
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: caller\nspec:\n  types: [\"fs.*\"]\n",
    );
    std::fs::remove_file(hive.path().join("manifests/tools/silent.yaml")).unwrap();
    hive.jaros(&["mcp", "lock", "fx"]).expect(0);
    validate_refuses(
        &hive,
        "tool 'read' gives decision type 'fs.read', which is already a built-in decision type",
    );
}

#[test]
fn two_mcp_tools_that_would_give_one_decision_type_are_refused() {
    // `fx` + tool `sub.echo` and `fx.sub` + tool `echo` are both `fx.sub.echo`.
    let hive = fixture_hive();
    hive.write(
        "manifests/tools/fx.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: fx\nspec:\n  type: fx\n  mcp:\n    command: tools/bad_server.py\n    args: [--extra-tool, sub.echo]\n  expose: \"*\"\n  timeout: 3s\n",
    );
    hive.write(
        "manifests/tools/silent.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: silent\nspec:\n  type: fx.sub\n  mcp:\n    command: tools/bad_server.py\n  expose: [echo]\n  timeout: 3s\n",
    );
    hive.jaros(&["mcp", "lock"]).expect(0);
    validate_refuses(
        &hive,
        "gives decision type 'fx.sub.echo', which is already the type of MCP tool",
    );
}

#[test]
fn a_tool_name_with_path_characters_is_refused_unless_left_out_of_expose() {
    let hive = fixture_hive();
    let manifest = |expose: &str| {
        format!("apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: fx\nspec:\n  type: fx\n  mcp:\n    command: tools/bad_server.py\n    args: [--extra-tool, ../../etc/passwd]\n  expose: {expose}\n  timeout: 3s\n")
    };
    hive.write("manifests/tools/fx.yaml", &manifest("\"*\""));
    std::fs::remove_file(hive.path().join("manifests/tools/silent.yaml")).unwrap();
    hive.write(
        "manifests/roles/caller.yaml",
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: caller\nspec:\n  types: [\"fx.*\"]\n",
    );
    hive.jaros(&["mcp", "lock", "fx"]).expect(0);
    let lock_text =
        std::fs::read_to_string(hive.path().join("manifests/tools/fx.mcp-lock.json")).unwrap();
    assert!(lock_text.contains("../../etc/passwd"), "{lock_text}");
    validate_refuses(
        &hive,
        "tool '../../etc/passwd' gives decision type 'fx.../../etc/passwd', which is not a valid name",
    );
    // Listing the tools to expose by name leaves it out.
    hive.write("manifests/tools/fx.yaml", &manifest("[echo, crash]"));
    hive.jaros(&["validate"]).expect(0);
}

/// Rewrites the fx lock as `edit` makes it (given the parsed lock), in
/// canonical form unless `pretty`.
fn edit_lock(hive: &Hive, pretty: bool, edit: impl FnOnce(&mut Value)) {
    let path = hive.path().join("manifests/tools/fx.mcp-lock.json");
    let mut lock: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut lock);
    let text = if pretty {
        serde_json::to_string_pretty(&lock).unwrap()
    } else {
        jaros::canon::to_string(&lock).unwrap()
    };
    std::fs::write(&path, text).unwrap();
}

#[test]
fn a_lock_edited_by_hand_is_refused_by_validate() {
    let hive = fixture_hive();
    lock(&hive);
    hive.jaros(&["validate"]).expect(0);
    // Reformatted.
    edit_lock(&hive, true, |_| {});
    validate_refuses(&hive, "fx.mcp-lock.json: not in the canonical form");
    // A tool listed twice, the second more permissive than the first.
    lock(&hive);
    edit_lock(&hive, false, |l| {
        let tools = l["tools"].as_array_mut().unwrap();
        let mut twice = tools[0].clone();
        twice["input_schema"] = json!({});
        tools.insert(1, twice);
    });
    validate_refuses(&hive, "is listed twice");
    // An input schema that is no JSON Schema.
    lock(&hive);
    edit_lock(&hive, false, |l| {
        for t in l["tools"].as_array_mut().unwrap() {
            if t["name"] == "echo" {
                t["input_schema"] = json!({"type": 5});
            }
        }
    });
    validate_refuses(
        &hive,
        "tool 'echo' in the lock file manifests/tools/fx.mcp-lock.json has an input schema that is not a valid JSON Schema",
    );
    // An unknown field.
    lock(&hive);
    edit_lock(&hive, false, |l| l["trusted"] = json!(true));
    validate_refuses(&hive, "not a lock file");
}

// ---------------------------------------------------------------- real servers

/// Where `scripts/mcp-tests.sh` installed the real servers.
fn servers() -> std::path::PathBuf {
    let dir = std::env::var("JAROS_MCP_SERVERS")
        .expect("JAROS_MCP_SERVERS is not set: run these tests through scripts/mcp-tests.sh");
    std::path::PathBuf::from(dir)
}

/// A hive whose Tool manifests name real servers (`name`, the `mcp:` block
/// as YAML lines), an agent `caller` (as in [`fixture_hive`]) whose role
/// grants all their tools and reads `read`. The hive is reachable by the
/// user a root node's tools run as.
fn real_hive(tools: &[(&str, String)], read: &[&str]) -> Hive {
    let hive = Hive::empty();
    for (name, mcp) in tools {
        hive.write(
            &format!("manifests/tools/{name}.yaml"),
            &format!("apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: {name}\nspec:\n  type: {name}\n  mcp:\n{mcp}  expose: \"*\"\n  timeout: 60s\n"),
        );
    }
    let types: Vec<String> = tools.iter().map(|(n, _)| format!("\"{n}.*\"")).collect();
    let read: Vec<String> = read.iter().map(|r| format!("\"{r}\"")).collect();
    hive.write(
        "manifests/roles/caller.yaml",
        &format!("apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: caller\nspec:\n  types: [{}]\n  read: [{}]\n", types.join(", "), read.join(", ")),
    );
    hive.write(
        "manifests/agents/caller.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: caller\nspec:\n  role: caller\n  template: agents/caller.j2\n",
    );
    hive.write(
        "agents/caller.j2",
        r#"[{"type": {{ input.type | tojson }}, "payload": {{ input.args | tojson }}}]"#,
    );
    std::fs::set_permissions(
        hive.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    hive
}

fn call_with(hive: &Hive, id: &str, ty: &str, args: Value) -> Value {
    let input = json!({"type": ty, "args": args}).to_string();
    hive.jaros(&["submit", "caller", "--id", id, "--input", &input])
        .expect(0);
    let out = hive.jaros(&["result", id, "--wait", "120"]);
    serde_json::from_str(&out.stdout()).unwrap_or_else(|_| panic!("{}", out.context()))
}

/// A server from the venv; `extra` are more paths it reads (git reads
/// `/etc/gitconfig`).
fn venv_server(name: &str, args: &[&str], extra: &[&str]) -> String {
    let s = servers();
    let mut install = vec![s.join("venv").display().to_string()];
    install.extend(extra.iter().map(|e| e.to_string()));
    let mut text = format!(
        "    command: {}\n    install: [{}]\n",
        s.join("venv/bin").join(name).display(),
        install.join(", ")
    );
    if !args.is_empty() {
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        text.push_str(&format!("    args: [{}]\n", args.join(", ")));
    }
    text
}

/// A server from node_modules (node reads its OpenSSL configuration).
fn npm_server(bin: &str, args: &[&str]) -> String {
    let s = servers();
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "    command: {}\n    args: [{}]\n    install: [{}, /etc/ssl]\n",
        s.join("node/node_modules/.bin").join(bin).display(),
        args.join(", "),
        s.join("node").display()
    )
}

#[test]
#[ignore = "needs MCP servers: run by scripts/mcp-tests.sh"]
fn an_agent_calls_the_time_server() {
    let hive = real_hive(
        &[(
            "time",
            venv_server("mcp-server-time", &["--local-timezone", "UTC"], &[]),
        )],
        &[],
    );
    hive.jaros(&["mcp", "lock"]).expect(0);
    hive.jaros(&["validate"]).expect(0);
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    let now = call_with(
        &hive,
        "now",
        "time.get_current_time",
        json!({"timezone": "Europe/Paris"}),
    );
    let audit = hive.jaros(&["audit"]).stdout();
    assert_eq!(node.stop().0, 0);
    assert_eq!(now["state"], "DONE", "{now:#}");
    let text = first_effect(&now).0["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("Europe/Paris"), "{text}");
    assert!(audit.contains("confined by Landlock"), "{audit}");
    let replay = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_eq!(replay["tool_executions"], 0, "{replay:#}");
}

#[test]
#[ignore = "needs MCP servers: run by scripts/mcp-tests.sh"]
fn git_log_on_a_repository_the_test_creates() {
    let hive = real_hive(&[], &[]);
    let repo = hive.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    common::git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("a.txt"), "a\n").unwrap();
    common::git(&repo, &["add", "a.txt"]);
    common::git(
        &repo,
        &["commit", "-q", "-m", "the first commit of the test"],
    );
    // A root node's servers run as nobody, and git refuses a repository
    // someone else owns.
    std::process::Command::new("chown")
        .args(["-R", "65534:65534", repo.to_str().unwrap()])
        .status()
        .unwrap();
    let repo_text = repo.to_str().unwrap().to_string();
    let hive2 = real_hive(
        &[(
            "git",
            venv_server(
                "mcp-server-git",
                &["--repository", &repo_text],
                &["/etc/gitconfig"],
            ),
        )],
        &["repo/**"],
    );
    // The repository moves to the second hive, which grants reading it.
    std::fs::rename(&repo, hive2.path().join("repo")).unwrap();
    let repo = hive2.path().join("repo");
    let repo_text = repo.to_str().unwrap().to_string();
    common::edit(
        &hive2.path().join("manifests/tools/git.yaml"),
        hive.path().join("repo").to_str().unwrap(),
        &repo_text,
    );
    hive2.jaros(&["mcp", "lock", "git"]).expect(0);
    let node = Node::start(hive2.path(), &args(&["--node-id", "a"]));
    let log = call_with(
        &hive2,
        "log",
        "git.git_log",
        json!({"repo_path": repo_text, "max_count": 5}),
    );
    assert_eq!(node.stop().0, 0);
    assert_eq!(log["state"], "DONE", "{log:#}");
    assert!(
        log.to_string().contains("the first commit of the test"),
        "{log:#}"
    );
}

#[test]
#[ignore = "needs MCP servers: run by scripts/mcp-tests.sh"]
fn the_kernel_stops_the_filesystem_server_outside_the_read_scope() {
    // The server itself is told it may read everything (`/`); the role
    // grants `notes/**` only.
    let hive = real_hive(
        &[("files", npm_server("mcp-server-filesystem", &["/"]))],
        &["notes/**"],
    );
    hive.write("notes/a.txt", "inside the scope\n");
    hive.write("secret/s.txt", "outside the scope\n");
    for d in ["notes", "secret"] {
        std::fs::set_permissions(
            hive.path().join(d),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    hive.jaros(&["mcp", "lock"]).expect(0);
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    let path = |rel: &str| hive.path().join(rel).to_str().unwrap().to_string();
    let inside = call_with(
        &hive,
        "inside",
        "files.read_text_file",
        json!({"path": path("notes/a.txt")}),
    );
    let outside = call_with(
        &hive,
        "outside",
        "files.read_text_file",
        json!({"path": path("secret/s.txt")}),
    );
    assert_eq!(node.stop().0, 0);
    assert_eq!(inside["state"], "DONE", "{inside:#}");
    assert!(
        inside.to_string().contains("inside the scope"),
        "{inside:#}"
    );
    assert_eq!(outside["state"], "FAILED", "{outside:#}");
    let text = outside.to_string();
    assert!(!text.contains("outside the scope\\n"), "{text}");
    assert!(
        text.contains("EACCES") || text.contains("permission denied"),
        "{text}"
    );
}

#[test]
#[ignore = "needs MCP servers: run by scripts/mcp-tests.sh"]
fn the_everything_servers_tools_are_listed_and_locked() {
    let hive = real_hive(
        &[("everything", npm_server("mcp-server-everything", &[]))],
        &[],
    );
    hive.jaros(&["mcp", "lock", "everything"]).expect(0);
    hive.jaros(&["validate"]).expect(0);
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(hive.path().join("manifests/tools/everything.mcp-lock.json"))
            .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = lock["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"echo"), "{names:?}");
    assert!(names.len() >= 5, "{names:?}");
    let plan = hive.jaros(&["plan", "--json"]).expect(0).json();
    assert!(plan.to_string().contains("everything.echo"), "{plan}");
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    let echo = call_with(
        &hive,
        "echo",
        "everything.echo",
        json!({"message": "hello"}),
    );
    assert_eq!(node.stop().0, 0);
    assert_eq!(echo["state"], "DONE", "{echo:#}");
    assert!(echo.to_string().contains("hello"), "{echo:#}");
}

#[test]
#[ignore = "needs MCP servers: run by scripts/mcp-tests.sh"]
fn a_real_server_whose_tools_drift_from_the_lock_is_refused() {
    let hive = real_hive(
        &[(
            "time",
            venv_server("mcp-server-time", &["--local-timezone", "UTC"], &[]),
        )],
        &[],
    );
    hive.jaros(&["mcp", "lock"]).expect(0);
    let path = hive.path().join("manifests/tools/time.mcp-lock.json");
    let mut lock: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let tools = lock["tools"].as_array_mut().unwrap();
    tools.retain(|t| t["name"] != "convert_time");
    for t in tools.iter_mut() {
        t["description"] = json!("what the server said last week");
    }
    std::fs::write(&path, jaros::canon::to_string(&lock).unwrap()).unwrap();
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    let refused = call_with(
        &hive,
        "drift",
        "time.get_current_time",
        json!({"timezone": "UTC"}),
    );
    assert_eq!(node.stop().0, 0);
    let text = refused.to_string();
    assert_eq!(refused["state"], "FAILED", "{text}");
    assert!(
        text.contains("tool 'get_current_time': description changed"),
        "{text}"
    );
    assert!(text.contains("added tool 'convert_time'"), "{text}");
}

/// The HTTP fixture server, killed when dropped.
struct HttpServer(std::process::Child, u16);

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_server() -> HttpServer {
    use std::io::BufRead;
    let mut child = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/mcp/http_server.py"
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no port: {line:?}"));
    HttpServer(child, port)
}

/// `jaros ARGS` in `hive` with `MCP_TEST_TOKEN` set (or not).
fn jaros_with_token(hive: &Hive, args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(args)
        .current_dir(hive.path())
        .env_remove("JAROS_HIVE")
        .env_remove("JAROS_DATA_DIR")
        .env_remove("MCP_TEST_TOKEN");
    if let Some(token) = token {
        cmd.env("MCP_TEST_TOKEN", token);
    }
    cmd.output().unwrap()
}

#[test]
fn a_streamable_http_server_is_locked_and_called_with_headers_from_the_environment() {
    let server = http_server();
    let hive = Hive::empty();
    hive.write(
        "manifests/tools/remote.yaml",
        &format!("apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: remote\nspec:\n  type: remote\n  mcp:\n    url: http://127.0.0.1:{}/mcp\n    headers_from_env: {{Authorization: MCP_TEST_TOKEN}}\n  expose: [echo]\n  timeout: 10s\n", server.1),
    );
    let role = |hosts: &str| {
        format!("apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: caller\nspec:\n  types: [remote.echo]\n  hosts: [{hosts}]\n")
    };
    hive.write(
        "manifests/roles/caller.yaml",
        &role("example.com, \"127.0.0.1:1\""),
    );
    hive.write(
        "manifests/agents/caller.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: caller\nspec:\n  role: caller\n  template: agents/caller.j2\n",
    );
    hive.write(
        "agents/caller.j2",
        r#"[{"type": "remote.echo", "payload": {"text": "over http"}}]"#,
    );
    let lock = jaros_with_token(&hive, &["mcp", "lock"], Some("Bearer s3cret"));
    assert!(
        lock.status.success(),
        "{}",
        String::from_utf8_lossy(&lock.stderr)
    );
    // The node reaches the server, so the role must grant its host.
    let refused = jaros_with_token(&hive, &["validate"], None);
    let text = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(
        text.contains("the role grants remote.echo of MCP tool 'remote', whose server is at http://127.0.0.1:")
            && text.contains("but not host '127.0.0.1'"),
        "{text}"
    );
    hive.write(
        "manifests/roles/caller.yaml",
        &role("example.com, 127.0.0.1"),
    );
    // Without the variable the call fails, naming it; with it, it goes through.
    let missing = jaros_with_token(&hive, &["run", "caller"], None);
    let missing = String::from_utf8_lossy(&missing.stdout).to_string()
        + &String::from_utf8_lossy(&missing.stderr);
    assert!(
        missing.contains("environment variable MCP_TEST_TOKEN, which is not set"),
        "{missing}"
    );
    let run = jaros_with_token(&hive, &["run", "caller"], Some("Bearer s3cret"));
    let out = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.contains("echo: over http"), "{out}");
    // The token is in no record.
    let data = hive.data();
    for rel in common::walk(&data) {
        let bytes = std::fs::read(data.join(&rel)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("s3cret"),
            "the token is in {rel}"
        );
    }
}

#[test]
fn a_role_grants_mcp_tools_by_glob_and_model_agents_see_them_in_their_decisions_schema() {
    let hive = fixture_hive();
    lock(&hive);
    let loaded = jaros::manifest::load_hive(hive.path()).unwrap();
    let granted = &loaded.plan.roles["caller"].types;
    assert!(
        granted.contains("fx.echo") && granted.contains("fx.crash"),
        "{granted:?}"
    );
    assert!(!granted.contains("fx.*"), "{granted:?}");
    let schema = jaros::model::proposer::decisions_schema(&loaded.plan, "caller");
    let shapes = schema["properties"]["decisions"]["items"]["anyOf"]
        .as_array()
        .unwrap();
    let echo = shapes
        .iter()
        .find(|s| s["properties"]["type"]["const"] == "fx.echo")
        .unwrap_or_else(|| panic!("{schema:#}"));
    assert_eq!(
        echo["properties"]["payload"]["properties"]["text"]["type"],
        "string"
    );
    // 14 tools of fx, and the one of silent granted by name.
    assert_eq!(shapes.len(), 15, "{schema:#}");
}

#[test]
fn jaros_new_tool_mcp_scaffolds_a_manifest_that_locks_and_validates() {
    let hive = fixture_hive();
    lock(&hive);
    let out = hive
        .jaros(&["new", "tool", "more", "--mcp", "tools/bad_server.py"])
        .expect(0);
    assert!(
        out.stdout().contains("jaros mcp lock more"),
        "{}",
        out.context()
    );
    hive.jaros(&["validate"]).expect(1);
    hive.jaros(&["mcp", "lock", "more"]).expect(0);
    let plan = hive.jaros(&["plan", "--json"]).expect(0).json();
    assert!(plan.to_string().contains("more.echo"), "{plan}");
}

/// Whether process `pid` is gone (or a zombie left to be reaped).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[test]
fn a_stopping_node_kills_its_servers_and_everything_they_started() {
    let hive = fixture_hive();
    lock(&hive);
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    let spawned = call(&hive, "spawn", "fx.spawn");
    assert_eq!(spawned["state"], "DONE", "{spawned}");
    let text = first_effect(&spawned).0["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let pids: Vec<u32> = text
        .strip_prefix("pids ")
        .unwrap_or_else(|| panic!("{text}"))
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{text}");
    assert!(
        pids.iter().all(|&p| !gone(p)),
        "the warm server and its child run while the node does"
    );
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    common::wait_until(
        std::time::Duration::from_secs(10),
        "the server and its child to be gone",
        || pids.iter().all(|&p| gone(p)),
    );
}

#[test]
fn a_node_killed_with_sigkill_takes_its_warm_server_with_it() {
    let hive = fixture_hive();
    // A server that outlives the end of its input.
    hive.write(
        "manifests/tools/fx.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: fx\nspec:\n  type: fx\n  mcp:\n    command: tools/bad_server.py\n    args: [--linger]\n  expose: \"*\"\n  timeout: 3s\n",
    );
    lock(&hive);
    let mut node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    let answer = call(&hive, "pid", "fx.pid");
    assert_eq!(answer["state"], "DONE", "{answer}");
    let text = first_effect(&answer).0["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let server: u32 = text
        .strip_prefix("pid ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(!gone(server), "the warm server runs while the node does");
    node.signal("KILL");
    let _ = node.child.wait();
    common::wait_until(
        std::time::Duration::from_secs(10),
        "the server to be gone with the node",
        || gone(server),
    );
}
