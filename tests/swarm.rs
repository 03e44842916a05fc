//! The support-triage swarm: hand-offs through the inbox, attribution of the
//! seeded bad hand-off to the worker and its decision, across one node or two.

mod common;

use common::{count_jobs, example_hive, run_in, wait_until, Node};
use jaros::log::record::seal;
use jaros::log::{read_log, Body};
use std::time::Duration;

fn failure_of<'a>(report: &'a serde_json::Value, job: &str) -> &'a serde_json::Value {
    report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["job"] == job)
        .unwrap_or_else(|| panic!("no failure for {job} in {report}"))
}

/// `reviewed`: how many tickets reach the reviewer (the genuine one, and
/// in the demo the refund the demo operator approved).
fn assert_swarm_verdict(report: &serde_json::Value, reviewed: u64) {
    assert_eq!(report["byte_identical"], true, "{report}");
    assert_eq!(report["chain_intact"], true);
    assert_eq!(report["deterministic"], true);
    assert_eq!(report["model_calls"], 0);
    assert_eq!(report["tool_executions"], 0);
    let bad = failure_of(report, "T3-1.0");
    assert_eq!(bad["agent"], "worker");
    assert_eq!(bad["decision"], "T3-1.0#1.0");
    assert_eq!(bad["type"], "handoff");
    assert!(bad["reason"]
        .as_str()
        .unwrap()
        .contains("role 'worker' does not grant hand-off to 'billing'"));
    let chain: Vec<&str> = bad["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["agent"].as_str().unwrap())
        .collect();
    assert_eq!(chain, ["planner", "worker"]);
    let spam = failure_of(report, "T2");
    assert_eq!(
        (spam["agent"].as_str(), spam["decision"].as_str()),
        (Some("planner"), Some("T2#1.0"))
    );
    assert_eq!(
        report["per_agent"]["reviewer"]["jobs"], reviewed,
        "only the tickets meant to reach the reviewer do"
    );
}

#[test]
fn the_demo_attributes_the_bad_hand_off_to_the_worker_and_its_decision() {
    let dir = tempfile::tempdir().unwrap();
    let hive = dir.path().join("demo");
    let run = run_in(
        dir.path(),
        &["demo", "--dir", hive.to_str().unwrap(), "--json"],
    )
    .expect(0);
    let report = run.json();
    assert_swarm_verdict(&report, 2);
    // The refund over 100 EUR waited, was approved as the demo operator, ran,
    // and replays with the rest.
    let err = run.stderr();
    // On a line of its own: the progress bar ended its line first.
    assert!(
        err.contains("\njaros demo: job T4-1.0 waits for a person: refund {\"amount\":250,\"ticket\":\"T4\"} (approvers: demo-operator)"),
        "{}",
        run.context()
    );
    assert!(
        err.contains("jaros demo: approved as demo-operator (jaros approve T4-1.0 refund --by demo-operator)"),
        "{}",
        run.context()
    );
    let log = read_log(&hive.join(".jaros-data/log/demo.jsonl")).unwrap();
    let verdicts: Vec<(String, String, String)> = log
        .records
        .iter()
        .filter_map(|r| match &r.body {
            Body::Verdict {
                decision,
                verdict,
                by,
                ..
            } => Some((decision.to_string(), verdict.clone(), by.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        verdicts,
        [(
            "T4-1.0#1.0".to_string(),
            "approve".to_string(),
            "demo-operator".to_string()
        )]
    );
    assert!(hive.join(".jaros-data/done/T4-1.0.json").is_file());
    assert_eq!(report["failures"].as_array().unwrap().len(), 2, "{report}");
    // The two seeded tickets fail, and nothing else of the tour does.
    let mut failed: Vec<&str> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["job"].as_str().unwrap())
        .collect();
    failed.sort_unstable();
    assert_eq!(failed, ["T2", "T3-1.0"], "{report}");
    let blame = run_in(&hive, &["blame", "T3-1.0", "--json"])
        .expect(0)
        .json();
    assert_eq!(blame["counterfactual"]["failure_disappears"], true);
    assert_eq!(
        blame["chain"][0]["outcome"],
        "handed off to worker (T3-1.0)"
    );
    // And the human form says it in words.
    let human = run_in(&hive, &["replay"]).expect(0).stdout();
    assert!(
        human.contains("T3-1.0 — agent worker, decision T3-1.0#1.0 (handoff)"),
        "{human}"
    );
    assert!(
        human.contains("chain: planner (T3 via T3#1.0) → worker (T3-1.0 via T3-1.0#1.0)"),
        "{human}"
    );
}

#[test]
fn two_nodes_on_one_data_dir_reach_the_same_verdict() {
    let hive = example_hive();
    let fast = [
        "--lease-ms",
        "1500",
        "--heartbeat-ms",
        "200",
        "--scan-ms",
        "20",
    ];
    let a = Node::start(hive.path(), &[&fast[..], &["--node-id", "a"]].concat());
    let b = Node::start(hive.path(), &[&fast[..], &["--node-id", "b"]].concat());
    for (id, ticket) in [
        (
            "T1",
            "My invoice for October charges me twice. Can you fix it?",
        ),
        ("T2", "BUY CHEAP WATCHES NOW!!! best prices click here"),
        ("T3", "I want a refund of 1200 EUR for my annual plan."),
    ] {
        let input = serde_json::json!({"id": id, "ticket": ticket}).to_string();
        hive.jaros(&["submit", "planner", "--id", id, "--input", &input])
            .expect(0);
    }
    // T1 → worker → reviewer; T2 fails; T3 → worker, whose hand-off fails.
    wait_until(Duration::from_secs(30), "the swarm to finish", || {
        count_jobs(&hive.data(), "done") + count_jobs(&hive.data(), "failed") == 6
    });
    assert_eq!(a.stop().0, 0);
    assert_eq!(b.stop().0, 0);
    let report = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_swarm_verdict(&report, 1);
}

#[test]
fn a_tampered_worker_record_is_named_by_replay() {
    let dir = tempfile::tempdir().unwrap();
    let hive = dir.path().join("demo");
    run_in(dir.path(), &["demo", "--dir", hive.to_str().unwrap()]).expect(0);
    let log = hive.join(".jaros-data/log/demo.jsonl");
    // Re-seal the chain after changing the worker's hand-off target, as a
    // tamperer who knows the format would: only replay can tell.
    let records = read_log(&log).unwrap().records;
    let mut prev = jaros::canon::Digest::ZERO;
    let mut out = String::new();
    let mut edited_seq = 0;
    for r in records {
        let mut body = r.body;
        if let Body::Rejected { decision, .. } = &mut body {
            if decision.id.as_str() == "T3-1.0#1.0" {
                decision.payload["agent"] = serde_json::json!("reviewer");
                edited_seq = r.seq;
            }
        }
        let (line, hash) = seal(r.seq, &prev, &body).unwrap();
        out += &line;
        out.push('\n');
        prev = hash;
    }
    assert!(edited_seq > 0);
    std::fs::write(&log, out).unwrap();
    let report = run_in(&hive, &["replay", "--json"]).expect(1).json();
    assert_eq!(report["chain_intact"], true);
    let d = &report["divergence"];
    assert_eq!(
        (
            d["job"].as_str(),
            d["agent"].as_str(),
            d["decision"].as_str()
        ),
        (Some("T3-1.0"), Some("worker"), Some("T3-1.0#1.0"))
    );
    assert_eq!(d["record"]["seq"], edited_seq);
    assert!(
        d["what"]
            .as_str()
            .unwrap()
            .contains("the gate now accepts this recorded rejection"),
        "{d}"
    );
}
