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
/// `reason`, the good one succeeds, and the audit names the reason.
fn bad_then_good(ty: &str, reason: &str) {
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
fn a_request_from_the_server_is_answered_method_not_found_and_the_call_goes_on() {
    let hive = fixture_hive();
    lock(&hive);
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    let asked = call(&hive, "ask", "fx.ask");
    assert_eq!(node.stop().0, 0);
    assert_eq!(asked["state"], "DONE", "{asked}");
    assert_eq!(
        first_effect(&asked).0["content"][0]["text"],
        "the client answered error -32601"
    );
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
    assert_eq!(names.len(), 7, "{names:?}");
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
