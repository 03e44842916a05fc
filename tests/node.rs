//! The node: work enters as files, bad input fails alone, leases and
//! resumption keep every job done exactly once across nodes and crashes.

mod common;

use common::{count_jobs, example_hive, wait_until, Node};
use jaros::log::{read_log, Body};
use std::collections::HashMap;
use std::time::Duration;

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    common::FAST
        .iter()
        .copied()
        .chain(extra.iter().copied())
        .collect()
}

#[test]
fn a_node_runs_submitted_jobs_and_stops_cleanly_on_sigterm() {
    let hive = example_hive();
    let node = Node::start(hive.path(), &args(&["--node-id", "n1"]));
    let run = hive
        .jaros(&[
            "submit",
            "advance",
            "--input",
            r#"{"note":"hi"}"#,
            "--id",
            "s1",
            "--wait",
            "20",
        ])
        .expect(0);
    assert_eq!(run.json()["state"], "DONE");
    let again = hive.jaros(&["result", "s1"]).expect(0).json();
    assert_eq!(again["job"], "s1");
    assert_eq!(again["log"]["node"], "n1");
    let status = hive.jaros(&["status", "--json"]).expect(0).json();
    assert_eq!(status["live_nodes"], 1);
    assert_eq!(status["jobs"]["done"], 1);
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("node stopped"), "{log}");
    // After the stop, status says so and exits 1 (no live node).
    let after = hive.jaros(&["status", "--json"]).expect(1).json();
    assert_eq!(after["nodes"][0]["stopped"], true);
    hive.jaros(&["replay"]).expect(0);
}

#[test]
fn malformed_job_files_fail_alone_with_a_reason_and_the_node_keeps_going() {
    let hive = example_hive();
    let inbox = hive.data().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("notjson.json"), "{nope").unwrap();
    std::fs::write(
        inbox.join("nobody.json"),
        r#"{"id":"nobody","agent":"ghost","input":{}}"#,
    )
    .unwrap();
    std::fs::write(inbox.join("shape.json"), r#"{"id":"shape","agent":7}"#).unwrap();
    std::fs::write(inbox.join("array.json"), r#"[1,2,3]"#).unwrap();
    let huge = std::fs::File::create(inbox.join("huge.json")).unwrap();
    huge.set_len(100 * 1024 * 1024).unwrap();
    drop(huge);
    std::fs::write(
        inbox.join("good.json"),
        r#"{"id":"good","agent":"advance","input":{}}"#,
    )
    .unwrap();
    let node = Node::start(hive.path(), &args(&["--node-id", "n1"]));
    wait_until(
        Duration::from_secs(20),
        "all six files to be handled",
        || count_jobs(&hive.data(), "done") + count_jobs(&hive.data(), "failed") == 6,
    );
    let reason = |id: &str| {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(hive.data().join(format!("failed/{id}.json"))).unwrap(),
        )
        .unwrap();
        v["reason"].as_str().unwrap().to_string()
    };
    assert!(
        reason("notjson").starts_with("rejected job file: not valid JSON"),
        "{}",
        reason("notjson")
    );
    assert!(
        reason("nobody").contains("unknown agent 'ghost'; this hive's agents are: advance"),
        "{}",
        reason("nobody")
    );
    assert!(
        reason("shape").contains("missing \"agent\""),
        "{}",
        reason("shape")
    );
    assert!(
        reason("array").contains("a job file is a JSON object"),
        "{}",
        reason("array")
    );
    assert!(
        reason("huge").contains("job file is 104857600 bytes, over the limit of 1048576"),
        "{}",
        reason("huge")
    );
    assert!(hive.data().join("done/good.json").exists());
    // Still serving.
    hive.jaros(&["submit", "advance", "--id", "after", "--wait", "20"])
        .expect(0);
    let (code, _) = node.stop();
    assert_eq!(code, 0);
}

#[test]
fn a_torn_tail_is_cut_at_boot_and_a_tampered_log_refuses_to_start() {
    let hive = example_hive();
    hive.jaros(&["run", "advance", "--node-id", "n1"]).expect(0);
    let log = hive.data().join("log/n1.jsonl");
    let mut bytes = std::fs::read(&log).unwrap();
    let full_len = bytes.len();
    bytes.truncate(full_len - 10);
    std::fs::write(&log, &bytes).unwrap();
    let node = Node::start(hive.path(), &args(&["--node-id", "n1"]));
    hive.jaros(&["submit", "advance", "--id", "t1", "--wait", "20"])
        .expect(0);
    let (code, stderr) = node.stop();
    assert_eq!(code, 0);
    assert!(stderr.contains("cut a torn last record"), "{stderr}");
    hive.jaros(&["verify"]).expect(0);

    let text = std::fs::read_to_string(&log)
        .unwrap()
        .replacen("\"advance\"", "\"advancE\"", 1);
    std::fs::write(&log, text).unwrap();
    let mut node = Node::start(hive.path(), &args(&["--node-id", "n1"]));
    let code = common::wait_timeout(&mut node.child, Duration::from_secs(20));
    assert_eq!(code, 1);
    let log_text = node.log();
    assert!(
        log_text.contains("n1.jsonl: record at line 2 (seq 2) is invalid"),
        "{log_text}"
    );
}

#[test]
fn manifest_edits_take_effect_and_an_invalid_edit_keeps_the_old_plan() {
    let hive = example_hive();
    let node = Node::start(hive.path(), &args(&["--node-id", "n1"]));
    hive.jaros(&["submit", "advance", "--id", "p1", "--wait", "20"])
        .expect(0);
    hive.write(
        "manifests/agents/hello.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: hello\nspec:\n  role: echo\n  template: agents/hello.j2\n",
    );
    hive.write(
        "agents/hello.j2",
        r#"[{"type": "advance", "payload": {"events": ["start", "complete"]}}]"#,
    );
    wait_until(Duration::from_secs(20), "the new plan", || {
        node.log().contains("manifests changed; plan")
    });
    std::fs::write(
        hive.data().join("inbox/p2.json"),
        r#"{"id":"p2","agent":"hello","input":{}}"#,
    )
    .unwrap();
    wait_until(Duration::from_secs(20), "p2 to finish", || {
        hive.data().join("done/p2.json").exists()
    });
    hive.write(
        "manifests/agents/broken.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: broken\nspec:\n  rol: observer\n",
    );
    wait_until(Duration::from_secs(20), "the refusal", || {
        node.log().contains("do not validate; keeping plan")
    });
    hive.jaros(&["submit", "advance", "--id", "p3", "--wait", "20"])
        .expect(0);
    let (code, stderr) = node.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("broken.yaml:6:3:"), "{stderr}");
    let plans = read_log(&hive.data().join("log/n1.jsonl"))
        .unwrap()
        .records
        .iter()
        .filter(|r| matches!(r.body, Body::Plan { .. }))
        .count();
    assert_eq!(plans, 2, "one plan at boot, one after the valid edit");
    hive.jaros(&["replay"]).expect(0);
}

/// Ends per job across every log.
fn ends_per_job(data: &std::path::Path) -> HashMap<String, usize> {
    let mut ends = HashMap::new();
    for entry in std::fs::read_dir(data.join("log")).unwrap().flatten() {
        let log = read_log(&entry.path()).unwrap();
        for r in log.records {
            if let Body::End { job, .. } = r.body {
                *ends.entry(job.to_string()).or_default() += 1;
            }
        }
    }
    ends
}

#[test]
fn three_nodes_share_a_data_dir_and_a_killed_node_loses_no_job() {
    const JOBS: usize = 3000;
    let hive = example_hive();
    let data = jaros::datadir::DataDir::new(hive.data());
    for i in 0..JOBS {
        let job = jaros::node::inbox::JobFile {
            id: jaros::decision::JobId::new(format!("m{i:05}")).unwrap(),
            agent: jaros::decision::AgentName::new("advance").unwrap(),
            input: serde_json::json!({"i": i}),
            parent: None,
            via: None,
            resume: false,
            tree: Default::default(),
        };
        jaros::node::inbox::submit(&data, &job).unwrap();
    }
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Node::start(hive.path(), &args(&["--node-id", id, "--pool", "4"])))
        .collect();
    wait_until(Duration::from_secs(120), "a third of the jobs", || {
        count_jobs(&hive.data(), "done") >= JOBS / 3
    });
    nodes[1].signal("KILL");
    wait_until(Duration::from_secs(180), "every job to finish", || {
        count_jobs(&hive.data(), "done") + count_jobs(&hive.data(), "failed") == JOBS
    });
    assert_eq!(count_jobs(&hive.data(), "failed"), 0);
    // A result is written before its claim is retired: allow that moment.
    wait_until(
        Duration::from_secs(10),
        "the last claims to be retired",
        || count_jobs(&hive.data(), "claimed") == 0,
    );
    let mut nodes = nodes.into_iter();
    let (n1, _killed, n3) = (
        nodes.next().unwrap(),
        nodes.next().unwrap(),
        nodes.next().unwrap(),
    );
    assert_eq!(n1.stop().0, 0);
    assert_eq!(n3.stop().0, 0);
    let ends = ends_per_job(&hive.data());
    assert_eq!(ends.len(), JOBS, "every job ended in the logs");
    assert!(
        ends.values().all(|&n| n == 1),
        "a job ended twice: {:?}",
        ends.iter()
            .filter(|(_, &n)| n > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    hive.jaros(&["verify"]).expect(0);
    let report = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_eq!(report["jobs"], JOBS as u64);
    assert_eq!(report["byte_identical"], true);
    assert_eq!(report["logs"], 3);
}

#[test]
fn sigterm_releases_a_job_still_running_after_the_grace_period_and_another_node_resumes_it() {
    let hive = example_hive();
    hive.write(
        "manifests/tools/nap.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: nap\nspec:\n  type: nap\n  description: Sleeps two seconds.\n  command: tools/nap.sh\n  timeout: 10s\n  deterministic: false\n  payload_schema: {type: object}\n  result_schema: {type: object}\n",
    );
    hive.write(
        "tools/nap.sh",
        "#!/bin/sh\ncat >/dev/null\nsleep 2\necho '{\"slept\": 2}'\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        hive.path().join("tools/nap.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    hive.write("manifests/roles/napper.yaml", "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: napper\nspec:\n  types: [nap, advance]\n");
    hive.write(
        "manifests/agents/napper.yaml",
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: napper\nspec:\n  role: napper\n  template: agents/napper.j2\n",
    );
    hive.write("agents/napper.j2", r#"[{"type": "nap", "payload": {}}, {"type": "advance", "payload": {"events": ["start", "complete"]}}]"#);
    hive.jaros(&["validate"]).expect(0);
    let node = Node::start(hive.path(), &args(&["--node-id", "a", "--grace-ms", "200"]));
    hive.jaros(&["submit", "napper", "--id", "slow"]).expect(0);
    wait_until(Duration::from_secs(20), "the job to be claimed", || {
        hive.data().join("claimed/slow.json").exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    let (code, stderr) = node.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("released slow to the inbox"), "{stderr}");
    let back: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(hive.data().join("inbox/slow.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(back["resume"], true);
    // Another node resumes it from its records and finishes it.
    let b = Node::start(hive.path(), &args(&["--node-id", "b"]));
    let result = hive
        .jaros(&["result", "slow", "--wait", "30"])
        .expect(0)
        .json();
    assert_eq!(result["log"]["node"], "b");
    assert_eq!(b.stop().0, 0);
    let report = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_eq!(report["logs"], 2);
    assert_eq!(report["final_states"]["DONE"], 1);
}

#[test]
fn a_deferred_record_reaches_the_file_within_a_heartbeat_while_its_job_waits() {
    // A model server that takes the connection and never answers: the job's
    // first record (deferred) is followed by nothing durable for seconds.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let hive = common::Hive::empty();
    hive.write("manifests/node.yaml", &format!("apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  providers:\n    p:\n      kind: openai\n      base_url: http://127.0.0.1:{port}\n      max_retries: 0\n      timeout: 6s\n"));
    hive.write(
        "manifests/roles/talker.yaml",
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: talker\nspec:\n  types: [advance]\n",
    );
    hive.write("manifests/agents/talker.yaml", "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: talker\nspec:\n  role: talker\n  model:\n    provider: p\n    model: m\n  prompt: agents/talker.j2\n");
    hive.write("agents/talker.j2", "hello");
    hive.jaros(&["validate"]).expect(0);
    let node = Node::start(hive.path(), &args(&["--node-id", "a", "--grace-ms", "200"]));
    hive.jaros(&["submit", "talker", "--id", "waits"]).expect(0);
    // The heartbeat (every 200 ms here) flushes it; the model call would
    // not end for six seconds.
    wait_until(Duration::from_secs(3), "the job record in the log", || {
        read_log(&hive.data().join("log/a.jsonl"))
            .map(|log| {
                log.records
                    .iter()
                    .any(|r| matches!(&r.body, Body::Job { job, .. } if job.as_str() == "waits"))
            })
            .unwrap_or(false)
    });
    node.stop();
}
