//! `jaros trace --otlp` against a real OTLP receiver: the
//! `opentelemetry-proto` package's own types parse every request
//! (scripts/otel_receiver.py), and the spans' tree, names and attributes are
//! checked against a demo run's jobs and records.

mod common;

use common::run_in;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The receiver process, killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_receiver() -> Receiver {
    start_receiver_with(&[])
}

fn start_receiver_with(args: &[&str]) -> Receiver {
    let python = std::env::var("JAROS_OTEL_PYTHON").expect(
        "JAROS_OTEL_PYTHON names a python with opentelemetry-proto: run scripts/otel-tests.sh",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/otel_receiver.py");
    let mut child = Command::new(python)
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the receiver starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the receiver printed no port: {line:?}"));
    Receiver { child, port }
}

fn report(port: u16) -> Value {
    let text = ureq::get(&format!("http://127.0.0.1:{port}/report"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every record of the data dir's logs, as JSON (the test's own reading,
/// to check the export against).
fn records(data: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(data.join("log")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "jsonl") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            out.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
        }
    }
    out
}

#[test]
#[ignore = "needs opentelemetry-proto: scripts/otel-tests.sh"]
fn an_export_of_a_demo_run_parses_as_otlp_and_matches_its_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let hive = tmp.path().join("demo");
    run_in(tmp.path(), &["demo", "--dir", hive.to_str().unwrap()]).expect(0);
    let data = hive.join(".jaros-data");
    let receiver = start_receiver();
    let url = format!("http://127.0.0.1:{}", receiver.port);

    let first = run_in(&hive, &["trace", "--otlp", &url, "--json"]).expect(0);
    let summary = first.json();
    let report1 = report(receiver.port);
    assert_eq!(report1["errors"], serde_json::json!([]), "{report1}");
    let spans1 = report1["spans"].as_array().unwrap().clone();
    assert_eq!(summary["spans"].as_u64().unwrap() as usize, spans1.len());
    assert_eq!(report1["requests"], summary["requests"]);

    // A second export sends the very same spans.
    run_in(&hive, &["trace", "--otlp", &url]).expect(0);
    let report2 = report(receiver.port);
    assert_eq!(report2["errors"], serde_json::json!([]));
    let all = report2["spans"].as_array().unwrap();
    assert_eq!(all.len(), 2 * spans1.len());
    assert_eq!(all[spans1.len()..], spans1[..]);

    let spans = &spans1;
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap(), s))
        .collect();
    assert_eq!(by_id.len(), spans.len(), "span ids are unique");

    // The tree: every parent is a span of the export, in the same trace.
    for s in spans {
        assert_eq!(s["service"], "jaros");
        let parent = s["parent"].as_str().unwrap();
        if parent.is_empty() {
            assert!(s["name"].as_str().unwrap().starts_with("job "), "{s}");
            continue;
        }
        let p = by_id
            .get(parent)
            .unwrap_or_else(|| panic!("{} has a parent outside the export", s["name"]));
        assert_eq!(p["trace_id"], s["trace_id"], "{s}");
        assert!(p["start"].as_u64() <= s["start"].as_u64(), "{s}");
    }

    // One job span per job the demo ran, with its agent and final state.
    let job_spans: BTreeMap<&str, &Value> = spans
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("job "))
        .map(|s| (s["attributes"]["jaros.job.id"].as_str().unwrap(), s))
        .collect();
    let mut ended = 0;
    for stage in ["done", "failed"] {
        for e in std::fs::read_dir(data.join(stage)).unwrap().flatten() {
            let file: Value =
                serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
            let job = file["job"].as_str().unwrap();
            let span = job_spans
                .get(job)
                .unwrap_or_else(|| panic!("no span for job {job}"));
            assert_eq!(span["attributes"]["jaros.agent"], file["agent"]);
            assert_eq!(
                span["name"],
                format!("job {}", file["agent"].as_str().unwrap())
            );
            assert_eq!(span["attributes"]["jaros.job.state"], file["state"]);
            assert_eq!(
                span["status"],
                if stage == "failed" { 2 } else { 1 },
                "{job}"
            );
            ended += 1;
        }
    }
    assert!(ended >= 10, "the demo ran its jobs: {ended}");

    // Hand-offs: a child job hangs under its parent's hand-off decision and
    // links to the parent job's span; the whole tree is one trace.
    let records = records(&data);
    let mut handoffs = 0;
    for r in records.iter().filter(|r| r["kind"] == "job") {
        let Some(parent) = r["parent"].as_str() else {
            continue;
        };
        handoffs += 1;
        let child = job_spans[r["job"].as_str().unwrap()];
        let via = by_id[child["parent"].as_str().unwrap()];
        assert_eq!(via["name"], "decision handoff");
        assert_eq!(via["attributes"]["jaros.decision.id"], r["via"]);
        let parent_span = job_spans[parent];
        assert_eq!(child["links"][0]["span_id"], parent_span["span_id"]);
        assert_eq!(child["trace_id"], parent_span["trace_id"]);
    }
    assert!(handoffs > 0, "the demo's swarm hands off");

    // Model calls: GenAI attributes and token counts as recorded.
    let mut recorded: Vec<(String, String, i64, i64)> = records
        .iter()
        .filter(|r| r["kind"] == "model")
        .map(|r| {
            (
                r["provider"].as_str().unwrap().to_string(),
                r["model"].as_str().unwrap().to_string(),
                r["tokens_in"].as_i64().unwrap(),
                r["tokens_out"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut exported: Vec<(String, String, i64, i64)> = spans
        .iter()
        .filter(|s| s["attributes"]["gen_ai.operation.name"] == "chat")
        .map(|s| {
            let a = &s["attributes"];
            assert_eq!(s["kind"], 3, "a model call is a client span");
            assert_eq!(
                s["name"],
                format!("chat {}", a["gen_ai.request.model"].as_str().unwrap())
            );
            (
                a["gen_ai.system"].as_str().unwrap().to_string(),
                a["gen_ai.request.model"].as_str().unwrap().to_string(),
                a["gen_ai.usage.input_tokens"].as_i64().unwrap(),
                a["gen_ai.usage.output_tokens"].as_i64().unwrap(),
            )
        })
        .collect();
    recorded.sort();
    exported.sort();
    assert!(
        !recorded.is_empty(),
        "the demo's swarm calls its (scripted) model"
    );
    assert_eq!(exported, recorded);

    // Decisions carry the gate's verdict: one span per decision and per
    // rejection, each rejection with its check; one effect per effect record.
    let count = |kind: &str| records.iter().filter(|r| r["kind"] == kind).count();
    let verdict = |v: &str| {
        spans
            .iter()
            .filter(|s| s["attributes"]["jaros.gate.verdict"] == v)
            .count()
    };
    assert_eq!(verdict("accepted"), count("decision"));
    assert_eq!(verdict("rejected"), count("rejected"));
    assert!(
        count("rejected") > 0,
        "the demo's seeded bad hand-off is refused"
    );
    for s in spans
        .iter()
        .filter(|s| s["attributes"]["jaros.gate.verdict"] == "rejected")
    {
        assert!(s["attributes"]["jaros.gate.check"].is_string(), "{s}");
        assert_eq!(s["status"], 2);
    }
    let effects = spans
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("effect "))
        .count();
    assert_eq!(effects, count("effect"));

    // --job: only that job's hand-off tree, one trace.
    let root = records
        .iter()
        .find(|r| r["kind"] == "job" && r["parent"].is_string())
        .unwrap()["parent"]
        .as_str()
        .unwrap()
        .to_string();
    let one = run_in(&hive, &["trace", "--otlp", &url, "--job", &root, "--json"]).expect(0);
    let report3 = report(receiver.port);
    let tree = &report3["spans"].as_array().unwrap()[2 * spans1.len()..];
    assert_eq!(tree.len() as u64, one.json()["spans"].as_u64().unwrap());
    assert!(tree
        .iter()
        .all(|s| s["trace_id"] == job_spans[root.as_str()]["trace_id"]));
    assert!(tree.len() < spans1.len());
}

/// Names the collector at `url` in the hive's node manifest.
fn export_to(hive: &Path, url: &str) {
    let path = hive.join("manifests/node.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\nspec:\n"), "{text}");
    let text = text.replacen("\nspec:\n", &format!("\nspec:\n  otlp: {url}\n"), 1);
    std::fs::write(&path, text).unwrap();
}

/// Runs a node named `node` over what the inbox holds, until it is idle.
fn serve_until_idle(hive: &Path, node: &str) {
    let run = run_in(
        hive,
        &[
            "serve",
            "--node-id",
            node,
            "--exit-when-idle",
            "--scan-ms",
            "20",
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.context());
}

/// The `export` member of node `node`'s status file.
fn export_counts(data: &Path, node: &str) -> Value {
    let text = std::fs::read_to_string(data.join(format!("nodes/{node}.json"))).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["export"].clone()
}

#[test]
#[ignore = "needs opentelemetry-proto: scripts/otel-tests.sh"]
fn a_node_exports_each_jobs_spans_live_as_jaros_trace_derives_them() {
    let tmp = tempfile::tempdir().unwrap();
    let hive = tmp.path().join("demo");
    run_in(tmp.path(), &["demo", "--dir", hive.to_str().unwrap()]).expect(0);
    let data = hive.join(".jaros-data");
    let live = start_receiver();
    export_to(&hive, &format!("http://127.0.0.1:{}", live.port));
    // A plain job and a ticket whose planner hands off: a tree of jobs.
    run_in(
        &hive,
        &["submit", "advance", "--id", "live-a", "--input", "{}"],
    )
    .expect(0);
    let ticket =
        r#"{"id": "T1", "ticket": "My invoice for October charges me twice. Can you fix it?"}"#;
    run_in(
        &hive,
        &["submit", "planner", "--id", "L1", "--input", ticket],
    )
    .expect(0);
    serve_until_idle(&hive, "live");

    let report_live = report(live.port);
    assert_eq!(
        report_live["errors"],
        serde_json::json!([]),
        "{report_live}"
    );
    let spans_live = report_live["spans"].as_array().unwrap().clone();
    // Every job the node ran, and nothing else, has its job span.
    let ran: BTreeSet<String> = records_of(&data.join("log/live.jsonl"))
        .iter()
        .filter(|r| r["kind"] == "job")
        .map(|r| r["job"].as_str().unwrap().to_string())
        .collect();
    assert!(ran.len() > 2, "the ticket handed off: {ran:?}");
    let exported: BTreeSet<String> = spans_live
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("job "))
        .map(|s| {
            s["attributes"]["jaros.job.id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(exported, ran);
    let counts = export_counts(&data, "live");
    assert_eq!(
        counts["exported_spans"].as_u64().unwrap() as usize,
        spans_live.len()
    );
    assert_eq!(counts["dropped_spans"], 0);
    assert_eq!(counts["dropped_jobs"], 0);

    // `jaros trace` derives the very same spans from the log: same ids,
    // same parents, times and attributes, so the tree is the same.
    let later = start_receiver();
    let url = format!("http://127.0.0.1:{}", later.port);
    run_in(&hive, &["trace", "--otlp", &url]).expect(0);
    let spans_later = report(later.port)["spans"].as_array().unwrap().clone();
    let by_id: HashMap<&str, &Value> = spans_later
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap(), s))
        .collect();
    for s in &spans_live {
        let twin = by_id
            .get(s["span_id"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{} is not in the later export", s["name"]));
        assert_eq!(*twin, s);
    }
    let in_live_traces = spans_later
        .iter()
        .filter(|s| {
            let job = s["attributes"]["jaros.job.id"].as_str().unwrap_or("");
            s["name"].as_str().unwrap().starts_with("job ") && ran.contains(job)
        })
        .count();
    assert_eq!(in_live_traces, ran.len());

    let metrics = run_in(&hive, &["metrics"]).expect(0).stdout();
    assert!(
        metrics.contains(&format!(
            "jaros_node_export_spans_total{{node=\"live\",outcome=\"exported\"}} {}\n",
            spans_live.len()
        )),
        "{metrics}"
    );
}

#[test]
#[ignore = "needs opentelemetry-proto: scripts/otel-tests.sh"]
fn with_a_slow_or_absent_collector_jobs_finish_and_spans_are_dropped_and_counted() {
    let slow = start_receiver_with(&["--sleep", "5"]);
    let absent = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (what, port) in [("slow", slow.port), ("absent", absent)] {
        let tmp = tempfile::tempdir().unwrap();
        let hive = tmp.path().join("demo");
        run_in(tmp.path(), &["init", hive.to_str().unwrap()]).expect(0);
        std::fs::remove_dir_all(hive.join("manifests/schedules")).unwrap();
        export_to(&hive, &format!("http://127.0.0.1:{port}"));
        for i in 0..5 {
            let id = format!("j{i}");
            run_in(&hive, &["submit", "advance", "--id", &id, "--input", "{}"]).expect(0);
        }
        serve_until_idle(&hive, "n1");
        let data = hive.join(".jaros-data");
        assert_eq!(common::count_jobs(&data, "done"), 5, "{what}");
        let counts = export_counts(&data, "n1");
        assert_eq!(counts["exported_spans"], 0, "{what}: {counts}");
        let dropped = counts["dropped_spans"].as_u64().unwrap();
        assert!(dropped >= 5, "{what}: every job has a span: {counts}");
        let metrics = run_in(&hive, &["metrics"]).expect(0).stdout();
        assert!(
            metrics.contains(&format!(
                "jaros_node_export_spans_total{{node=\"n1\",outcome=\"dropped\"}} {dropped}\n"
            )),
            "{what}: {metrics}"
        );
    }
    assert_eq!(report(slow.port)["spans"], serde_json::json!([]));
}

/// The records of one log file.
fn records_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect()
}

/// A collector that accepts every connection and never answers (nor reads):
/// its listener and the connections it holds live as long as it does.
struct Silent {
    port: u16,
    _accepting: std::thread::JoinHandle<()>,
}

fn silent_collector() -> Silent {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepting = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    Silent {
        port,
        _accepting: accepting,
    }
}

/// An init'd hive with no schedules and `n` advance jobs in its inbox.
fn hive_with_jobs(root: &Path, n: usize) -> std::path::PathBuf {
    let hive = root.join("hive");
    run_in(root, &["init", hive.to_str().unwrap()]).expect(0);
    std::fs::remove_dir_all(hive.join("manifests/schedules")).unwrap();
    for i in 0..n {
        let id = format!("j{i}");
        run_in(&hive, &["submit", "advance", "--id", &id, "--input", "{}"]).expect(0);
    }
    hive
}

#[test]
fn a_collector_that_never_answers_fails_jaros_trace_with_the_endpoint_named() {
    let tmp = tempfile::tempdir().unwrap();
    let hive = hive_with_jobs(tmp.path(), 1);
    serve_until_idle(&hive, "n1");
    let silent = silent_collector();
    let url = format!("http://127.0.0.1:{}", silent.port);
    let run = run_in(&hive, &["trace", "--otlp", &url]).expect(1);
    let err = run.stderr();
    assert!(
        err.contains(&format!("request 1 of 1 to {url}/v1/traces failed")),
        "{}",
        run.context()
    );
}

#[test]
fn a_collector_that_never_answers_slows_no_job_and_its_spans_are_counted_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let hive = hive_with_jobs(tmp.path(), 5);
    let silent = silent_collector();
    export_to(&hive, &format!("http://127.0.0.1:{}", silent.port));
    serve_until_idle(&hive, "n1");
    let data = hive.join(".jaros-data");
    assert_eq!(common::count_jobs(&data, "done"), 5);
    let counts = export_counts(&data, "n1");
    assert_eq!(counts["exported_spans"], 0, "{counts}");
    // Every job's spans were in a request that timed out: all counted.
    let dropped = counts["dropped_spans"].as_u64().unwrap();
    assert!(dropped >= 5, "every job has a span: {counts}");
    assert_eq!(counts["dropped_jobs"], 0, "{counts}");
}

#[test]
fn since_and_job_select_what_jaros_trace_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let hive = hive_with_jobs(tmp.path(), 2);
    serve_until_idle(&hive, "n1");
    let job_ids = |run: &common::Run| -> BTreeSet<String> {
        run.stdout()
            .lines()
            .flat_map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                v["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| s["name"].as_str().unwrap().starts_with("job "))
                    .map(|s| {
                        s["attributes"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|a| a["key"] == "jaros.job.id")
                            .unwrap()["value"]["stringValue"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let both: BTreeSet<String> = ["j0", "j1"].iter().map(|s| s.to_string()).collect();
    let all = run_in(&hive, &["trace", "--dry-run"]).expect(0);
    assert_eq!(job_ids(&all), both);
    let recent = run_in(&hive, &["trace", "--dry-run", "--since", "1h"]).expect(0);
    assert_eq!(job_ids(&recent), both);
    let past = run_in(
        &hive,
        &["trace", "--dry-run", "--since", "2000-01-01T00:00:00Z"],
    )
    .expect(0);
    assert_eq!(job_ids(&past), both);
    // Nothing started after a time to come: nothing to export.
    let future = run_in(
        &hive,
        &["trace", "--dry-run", "--since", "2999-01-01T00:00:00Z"],
    )
    .expect(2);
    assert_eq!(future.stdout(), "");
    let one = run_in(&hive, &["trace", "--dry-run", "--job", "j1"]).expect(0);
    assert_eq!(job_ids(&one), ["j1".to_string()].into_iter().collect());
    let bad = run_in(&hive, &["trace", "--dry-run", "--since", "yesterday"]).expect(2);
    assert!(
        bad.stderr()
            .contains("--since 'yesterday' is neither an RFC 3339 time"),
        "{}",
        bad.context()
    );
    let unknown = run_in(&hive, &["trace", "--dry-run", "--job", "nope"]).expect(2);
    assert!(
        unknown.stderr().contains("job 'nope' is not in any log"),
        "{}",
        unknown.context()
    );
}
