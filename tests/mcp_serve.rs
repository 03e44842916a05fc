//! `jaros mcp serve`: the protocol spoken as raw JSON-RPC lines to the real
//! binary (handshake, tool list, refusals, results equal to the CLI's
//! `--json`), and a real session driven by the official MCP Python SDK
//! (ignored here; scripts/mcp-serve-tests.sh runs it).

mod common;

use common::{example_hive, Hive, Node, FAST};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// How long a test waits for one answer before it fails (not a speed
/// check: a server that does not answer would hang the test otherwise).
const ANSWER_LIMIT: Duration = Duration::from_secs(60);

/// A `jaros mcp serve` process and its two pipes.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    next_id: u64,
}

impl Session {
    fn start(hive: &Hive) -> Session {
        let mut child = Command::new(common::bin())
            .args(["mcp", "serve", "--hive", hive.path().to_str().unwrap()])
            .current_dir(hive.path())
            .env_remove("JAROS_HIVE")
            .env_remove("JAROS_DATA_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Session {
            stdin: child.stdin.take(),
            child,
            lines,
            next_id: 100,
        }
    }

    /// A started session past `initialize`.
    fn ready(hive: &Hive) -> Session {
        let mut s = Session::start(hive);
        let answer = s.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}),
        );
        assert!(answer.get("result").is_some(), "initialize: {answer}");
        s.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        s
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The next message the server writes; each is one JSON line.
    fn next_message(&mut self) -> Value {
        match self.lines.recv_timeout(ANSWER_LIMIT) {
            Ok(line) => serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("the server wrote a line that is not JSON ({e}): {line}")
            }),
            Err(RecvTimeoutError::Timeout) => panic!("no answer within {ANSWER_LIMIT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the server closed its stdout"),
        }
    }

    /// Sends a request and returns the message that answers its id.
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send_line(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        loop {
            let message = self.next_message();
            if message["id"] == json!(id) {
                return message;
            }
        }
    }

    /// A tools/call's result object.
    fn call(&mut self, name: &str, arguments: Value) -> Value {
        let answer = self.request("tools/call", json!({"name": name, "arguments": arguments}));
        answer
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("tools/call {name}: no result: {answer}"))
    }

    /// Closes stdin and returns the exit code.
    fn end(mut self) -> i32 {
        drop(self.stdin.take());
        common::wait_timeout(&mut self.child, ANSWER_LIMIT)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "text")
        .map(|c| c["text"].as_str().unwrap())
        .collect()
}

fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected a JSON-RPC error: {answer}"))
}

#[test]
fn the_handshake_answers_with_2025_06_18_and_offers_only_tools() {
    let hive = example_hive();
    let mut s = Session::start(&hive);
    let answer = s.request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}),
    );
    let result = &answer["result"];
    assert_eq!(result["protocolVersion"], "2025-06-18", "{answer}");
    assert_eq!(result["serverInfo"]["name"], "jaros");
    assert_eq!(
        result["capabilities"],
        json!({"tools": {"listChanged": false}}),
        "tools only: no resources, prompts or logging"
    );
    assert_eq!(s.request("ping", json!({}))["result"], json!({}));
    let again = s.request("initialize", json!({"protocolVersion": "2025-06-18"}));
    assert_eq!(error_code(&again), -32600, "initialize twice: {again}");
    assert_eq!(s.end(), 0, "the end of stdin ends the server, exit 0");

    // A revision the server does not know: it answers with its own.
    let mut s = Session::start(&hive);
    let answer = s.request(
        "initialize",
        json!({"protocolVersion": "2099-01-01", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}),
    );
    assert_eq!(
        answer["result"]["protocolVersion"], "2025-06-18",
        "{answer}"
    );
}

#[test]
fn the_tools_are_the_cli_operations_each_with_input_and_output_schemas() {
    let hive = example_hive();
    let mut s = Session::ready(&hive);
    let answer = s.request("tools/list", json!({}));
    let tools = answer["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["validate", "plan", "submit", "result", "status", "replay", "blame", "eval"]
    );
    for t in tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        assert_eq!(t["inputSchema"]["additionalProperties"], false, "{t}");
        assert_eq!(t["outputSchema"]["type"], "object", "{t}");
        let read_only = t["annotations"]["readOnlyHint"].as_bool().unwrap();
        assert_eq!(
            read_only,
            t["name"] != "submit",
            "only submit changes anything: {t}"
        );
    }
}

#[test]
fn bad_messages_are_refused_and_the_session_goes_on() {
    let hive = example_hive();
    let mut s = Session::start(&hive);

    let early = s.request("tools/list", json!({}));
    assert_eq!(
        error_code(&early),
        -32600,
        "tools/list before initialize: {early}"
    );
    drop(s);

    let mut s = Session::ready(&hive);
    s.send_line("this is not json");
    let garbage = s.next_message();
    assert_eq!(error_code(&garbage), -32700, "{garbage}");
    assert_eq!(garbage["id"], Value::Null);

    s.send_line(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#);
    let batch = s.next_message();
    assert_eq!(error_code(&batch), -32600, "a batch: {batch}");

    s.send_line(r#"{"id":7,"method":"ping"}"#);
    let no_version = s.next_message();
    assert_eq!(
        error_code(&no_version),
        -32600,
        "no jsonrpc field: {no_version}"
    );

    let unknown_method = s.request("resources/list", json!({}));
    assert_eq!(error_code(&unknown_method), -32601, "{unknown_method}");

    let unknown_tool = s.request(
        "tools/call",
        json!({"name": "write_manifest", "arguments": {}}),
    );
    assert_eq!(error_code(&unknown_tool), -32602, "{unknown_tool}");
    assert!(
        unknown_tool["error"]["message"]
            .as_str()
            .unwrap()
            .contains("validate, plan, submit"),
        "the error lists the tools: {unknown_tool}"
    );

    let extra = s.request(
        "tools/call",
        json!({"name": "submit", "arguments": {"agent": "advance", "data_dir": "/tmp/elsewhere"}}),
    );
    assert_eq!(
        error_code(&extra),
        -32602,
        "an argument no tool takes: {extra}"
    );
    assert!(extra["error"]["message"]
        .as_str()
        .unwrap()
        .contains("data_dir"));

    let missing = s.request("tools/call", json!({"name": "blame", "arguments": {}}));
    assert_eq!(
        error_code(&missing),
        -32602,
        "a required argument missing: {missing}"
    );

    let ok = s.call("validate", json!({}));
    assert_eq!(ok["isError"], false, "the session still works: {ok}");
    assert!(
        !hive.data().join("inbox").exists(),
        "no refused call wrote a job"
    );
}

#[test]
fn a_tool_returns_what_the_cli_json_prints() {
    let hive = example_hive();
    let mut s = Session::ready(&hive);
    for (tool, args) in [
        ("validate", vec!["validate", "--json"]),
        ("plan", vec!["plan", "--json"]),
    ] {
        let result = s.call(tool, json!({}));
        let cli = hive.jaros(&args).expect(0).json();
        assert_eq!(result["isError"], false, "{result}");
        assert_eq!(
            result["structuredContent"], cli,
            "{tool}: structured content"
        );
        let text: Value = serde_json::from_str(&text_of(&result)).unwrap();
        assert_eq!(text, cli, "{tool}: the text is the same JSON");
        assert_eq!(result["_meta"]["jaros/exit"], 0);
    }

    // Invalid manifests: the CLI's report, and the CLI's exit code 1.
    hive.write(
        "manifests/roles/broken.yaml",
        "apiVersion: jaros/v1\nkind: Role\n",
    );
    let result = s.call("validate", json!({}));
    let cli = hive.jaros(&["validate", "--json"]).expect(1).json();
    assert_eq!(result["structuredContent"], cli);
    assert_eq!(result["structuredContent"]["ok"], false);
    assert_eq!(result["_meta"]["jaros/exit"], 1);
}

#[test]
fn cli_errors_come_back_as_error_results_with_the_cli_message() {
    let hive = example_hive();
    hive.jaros(&["run", "advance", "--input", "{}"]).expect(0);
    let mut s = Session::ready(&hive);
    for (tool, args, cli) in [
        (
            "blame",
            json!({"job": "no-such-job"}),
            vec!["blame", "no-such-job", "--json"],
        ),
        (
            "submit",
            json!({"agent": "nobody"}),
            vec!["submit", "nobody"],
        ),
        (
            "result",
            json!({"id": "no-such-job"}),
            vec!["result", "no-such-job"],
        ),
        (
            "replay",
            json!({"job": "no-such-job"}),
            vec!["replay", "--job", "no-such-job", "--json"],
        ),
    ] {
        let result = s.call(tool, args);
        let run = hive.jaros(&cli).expect(2);
        assert_eq!(result["isError"], true, "{tool}: {result}");
        assert_eq!(
            format!("jaros: {}\n", text_of(&result)),
            run.stderr(),
            "{tool}: the CLI's message"
        );
        assert_eq!(result["_meta"]["jaros/exit"], 2);
        assert!(result.get("structuredContent").is_none());
    }
}

#[test]
fn every_tool_but_submit_leaves_the_hive_and_its_data_dir_as_they_were() {
    let hive = example_hive();
    let ran = hive
        .jaros(&["run", "advance", "--input", "{}", "--id", "ran"])
        .expect(0);
    let before = common::fingerprint(hive.path());
    assert!(
        before
            .iter()
            .any(|(f, _)| f.starts_with(".jaros-data/log/")),
        "{}",
        ran.context()
    );
    let mut s = Session::ready(&hive);
    for (tool, args) in [
        ("validate", json!({})),
        ("plan", json!({})),
        ("status", json!({})),
        ("result", json!({"id": "ran"})),
        ("replay", json!({})),
        ("replay", json!({"job": "ran"})),
        ("blame", json!({"job": "ran"})),
        ("eval", json!({})),
    ] {
        let result = s.call(tool, args);
        assert_ne!(result["isError"], true, "{tool}: {result}");
    }
    assert_eq!(s.end(), 0);
    // The job index is a cache of the log that readers build as the CLI's
    // do (rebuilt from the log, never trusted over it): not a record.
    let records = |files: Vec<(String, String)>| -> Vec<(String, String)> {
        files
            .into_iter()
            .filter(|(f, _)| !f.starts_with(".jaros-data/index/"))
            .collect()
    };
    assert_eq!(
        records(common::fingerprint(hive.path())),
        records(before),
        "a tool changed a file of the hive or its data dir"
    );
}

#[test]
fn submit_writes_only_a_job_file_in_the_inbox() {
    let hive = example_hive();
    let mut s = Session::ready(&hive);
    let result = s.call(
        "submit",
        json!({"agent": "advance", "input": {"note": "hi"}, "id": "from-mcp"}),
    );
    assert_eq!(
        result["structuredContent"],
        json!({"id": "from-mcp"}),
        "{result}"
    );
    let files = common::walk(&hive.data());
    assert_eq!(files, ["inbox/from-mcp.json"], "nothing but the job file");
    let job: Value = serde_json::from_str(
        &std::fs::read_to_string(hive.data().join("inbox/from-mcp.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(job["agent"], "advance");
    assert_eq!(job["input"], json!({"note": "hi"}));

    let again = s.call("submit", json!({"agent": "advance", "id": "from-mcp"}));
    assert_eq!(again["isError"], true, "a job id runs once: {again}");
}

#[test]
fn a_waiting_call_does_not_hold_up_the_session() {
    let hive = example_hive();
    let mut s = Session::ready(&hive);
    s.send_line(
        &json!({"jsonrpc": "2.0", "id": "waiter", "method": "tools/call",
            "params": {"name": "submit", "arguments": {"agent": "advance", "id": "parked", "wait_seconds": 2}}})
        .to_string(),
    );
    // No node runs: the submit waits its two seconds while ping is answered.
    s.send_line(r#"{"jsonrpc":"2.0","id":"pinged","method":"ping"}"#);
    let first = s.next_message();
    assert_eq!(
        first["id"], "pinged",
        "ping answered before the wait ends: {first}"
    );
    let second = s.next_message();
    assert_eq!(second["id"], "waiter");
    assert_eq!(second["result"]["isError"], true);
    assert!(
        text_of(&second["result"]).contains("waiting in the inbox"),
        "{second}"
    );
}

#[test]
fn eval_reads_only_paths_inside_the_hive() {
    let hive = example_hive();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("evals.yaml"), "not: an eval\n").unwrap();
    std::os::unix::fs::symlink(outside.path(), hive.path().join("link-out")).unwrap();
    let mut s = Session::ready(&hive);
    for path in [
        "../".to_string(),
        outside.path().display().to_string(),
        "link-out".to_string(),
        "link-out/evals.yaml".to_string(),
    ] {
        let result = s.call("eval", json!({"paths": [path]}));
        assert_eq!(result["isError"], true, "{path}: {result}");
        assert!(
            text_of(&result).contains("not inside the hive"),
            "{path}: {result}"
        );
    }
    let result = s.call("eval", json!({"filter": "no-case-has-this-name"}));
    assert_eq!(result["isError"], true, "{result}");
    assert_eq!(
        result["_meta"]["jaros/exit"], 2,
        "no case to run, as the CLI"
    );

    let result = s.call("eval", json!({"paths": ["manifests/evals"]}));
    let cli = hive
        .jaros(&["eval", "manifests/evals", "--json"])
        .expect(0)
        .json();
    let ours = &result["structuredContent"];
    assert_eq!(ours["total"], cli["total"], "{result}");
    assert_eq!(ours["passed"], cli["passed"]);
    let names = |v: &Value| -> Vec<Value> {
        v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect()
    };
    assert_eq!(names(ours), names(&cli));
}

/// The Python SDK's session against a running node: submit and wait, then
/// result, blame, replay, status and eval on the job it ran. Needs
/// `JAROS_MCP_PYTHON`, a Python with the `mcp` package.
#[test]
#[ignore = "needs python mcp: run by scripts/mcp-serve-tests.sh"]
fn the_official_python_client_drives_a_session() {
    let python = std::env::var("JAROS_MCP_PYTHON").expect(
        "set JAROS_MCP_PYTHON to a Python with the `mcp` package (scripts/mcp-serve-tests.sh does)",
    );
    let hive = example_hive();
    let node = Node::start(hive.path(), FAST);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mcp_serve_client.py"
    );
    let out = Command::new(python)
        .args([script, common::bin(), hive.path().to_str().unwrap()])
        .current_dir(hive.path())
        .env_remove("JAROS_HIVE")
        .env_remove("JAROS_DATA_DIR")
        .output()
        .unwrap();
    let (code, log) = node.stop();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "the client failed\n--- stdout\n{}\n--- stderr\n{}\n--- node\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(code, 0, "{log}");
}
