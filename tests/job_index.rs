//! One job through the per-node job index: `jaros blame` and `jaros replay
//! --job` read only the job's records and those up its chain of hand-offs
//! (and the plans they name), and say what a whole read of the logs says.

mod common;

use common::run_in;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A hive `jaros demo` ran: T3-1.0 (a worker T3's planner handed off to)
/// failed on a hand-off its role does not grant; T2 failed too.
fn demo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let hive = dir.path().join("demo");
    run_in(
        dir.path(),
        &["demo", "--dir", hive.to_str().unwrap(), "--json"],
    )
    .expect(0);
    (dir, hive)
}

fn jaros(hive: &Path, args: &[&str]) -> common::Run {
    run_in(hive, args)
}

fn log_of(hive: &Path) -> PathBuf {
    hive.join(".jaros-data/log/demo.jsonl")
}

/// Every job the log holds, in order of first appearance.
fn jobs_in(log: &Path) -> Vec<String> {
    let mut jobs: Vec<String> = Vec::new();
    for line in std::fs::read_to_string(log).unwrap().lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        if let Some(job) = record["job"].as_str() {
            if !jobs.iter().any(|j| j == job) {
                jobs.push(job.to_string());
            }
        }
    }
    jobs
}

/// Breaks the hash of every record of the log but those of `keep`, the
/// plan records and the last record, keeping every line's length: a
/// reader of the whole log finds it broken at the first of them.
fn break_all_but(log: &Path, keep: &[&str]) -> usize {
    let text = std::fs::read_to_string(log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut broken = 0;
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let record: Value = serde_json::from_str(line).unwrap();
        let kept = i + 1 == lines.len()
            || record["kind"] == "plan"
            || record["job"].as_str().is_some_and(|j| keep.contains(&j));
        if kept {
            out += line;
        } else {
            let hash = record["hash"].as_str().unwrap();
            let flipped = format!(
                "{}{}",
                &hash[..63],
                if hash.ends_with('0') { "1" } else { "0" }
            );
            out += &line.replacen(hash, &flipped, 1);
            broken += 1;
        }
        out += "\n";
    }
    std::fs::write(log, out).unwrap();
    broken
}

#[test]
fn blame_reads_only_the_jobs_chain_and_its_plan_through_the_index() {
    let (_dir, hive) = demo();
    let json = jaros(&hive, &["blame", "T3-1.0", "--json"])
        .expect(0)
        .json();
    let text = jaros(&hive, &["blame", "T3-1.0"]).expect(0).stdout();
    assert_eq!(json["chain"][0]["job"], "T3", "{json}");
    assert_eq!(json["counterfactual"]["failure_disappears"], true, "{json}");
    // Every other job's records (and the rest) made unreadable: a whole
    // read of the log now stops at the first of them.
    let broken = break_all_but(&log_of(&hive), &["T3", "T3-1.0"]);
    assert!(broken > 20, "only {broken} records broken");
    let verify = jaros(&hive, &["verify"]).expect(1);
    assert!(verify.stdout().contains("BROKEN"), "{}", verify.context());
    // Blame reads T3-1.0, T3 and their plan only: the same answer.
    assert_eq!(
        jaros(&hive, &["blame", "T3-1.0", "--json"])
            .expect(0)
            .json(),
        json
    );
    assert_eq!(jaros(&hive, &["blame", "T3-1.0"]).expect(0).stdout(), text);
    // And so does replay of that one job.
    let one = jaros(&hive, &["replay", "--job", "T3-1.0", "--json"])
        .expect(0)
        .json();
    assert_eq!(one["jobs"], 1, "{one}");
    assert_eq!(one["failures"][0]["chain"][0]["agent"], "planner", "{one}");
    // A broken record read through the index is found (T2's are): the
    // index is rebuilt from the log, which breaks at the first of them,
    // and no log holds T2 (as for a whole read).
    jaros(&hive, &["blame", "T2"]).expect(2);
    jaros(&hive, &["replay", "--job", "T2"]).expect(2);
}

#[test]
fn replay_of_one_job_says_what_the_whole_replay_says_of_it() {
    let (_dir, hive) = demo();
    let whole = jaros(&hive, &["replay", "--json"]).expect(0).json();
    let jobs = jobs_in(&log_of(&hive));
    assert!(jobs.len() >= 8, "{jobs:?}");
    let (mut decisions, mut rejected, mut records) = (0, 0, 0);
    let mut failures = Vec::new();
    let mut states: std::collections::BTreeMap<String, u64> = Default::default();
    for job in &jobs {
        let one = jaros(&hive, &["replay", "--job", job, "--json"])
            .expect(0)
            .json();
        assert_eq!(one["jobs"], 1, "{job}: {one}");
        for key in ["byte_identical", "chain_intact", "deterministic", "logs"] {
            assert_eq!(one[key], whole[key], "{job}: {key}: {one}");
        }
        decisions += one["decisions"].as_u64().unwrap();
        rejected += one["rejected"].as_u64().unwrap();
        records += one["records"].as_u64().unwrap();
        for (state, n) in one["final_states"].as_object().unwrap() {
            *states.entry(state.clone()).or_default() += n.as_u64().unwrap();
        }
        failures.extend(one["failures"].as_array().unwrap().iter().cloned());
        let agent = one["per_agent"].as_object().unwrap();
        assert_eq!(agent.len(), 1, "{job}: {one}");
    }
    assert_eq!(decisions, whole["decisions"].as_u64().unwrap());
    assert_eq!(rejected, whole["rejected"].as_u64().unwrap());
    assert_eq!(
        serde_json::to_value(&states).unwrap(),
        whole["final_states"],
        "{whole}"
    );
    // Each failure with its whole chain of hand-offs, as the whole replay
    // attributes it (agents, decisions, states of the jobs up the chain).
    let key = |f: &Value| f["job"].as_str().unwrap().to_string();
    let mut expected = whole["failures"].as_array().unwrap().clone();
    expected.sort_by_key(key);
    failures.sort_by_key(key);
    assert_eq!(failures, expected);
    // Every record of a job is one job's: plan records are the rest.
    let plans = std::fs::read_to_string(log_of(&hive))
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""kind":"plan""#))
        .count() as u64;
    assert_eq!(records + plans, whole["records"].as_u64().unwrap());
}

/// The example hive plus `flaky`, a non-deterministic tool that fails when
/// its payload says so, and two agents proposing it: `steady` (it works)
/// and `shaky` (it fails).
fn hive_with_a_flaky_tool() -> common::Hive {
    let hive = common::example_hive();
    hive.write(
        "manifests/tools/flaky.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: flaky\nspec:\n  type: flaky\n  description: Fails when asked to.\n  command: tools/flaky.sh\n  timeout: 20s\n  deterministic: false\n  payload_schema: {type: object}\n  result_schema: {type: object}\n",
    );
    hive.write(
        "tools/flaky.sh",
        "#!/bin/sh\nif grep -q fail; then echo broken >&2; exit 1; fi\necho '{\"worked\": true}'\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        hive.path().join("tools/flaky.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    hive.write(
        "manifests/roles/flaky.yaml",
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: flaky\nspec:\n  types: [flaky, advance]\n",
    );
    for (agent, payload) in [("steady", "{}"), ("shaky", r#"{"fail": true}"#)] {
        hive.write(
            &format!("manifests/agents/{agent}.yaml"),
            &format!("apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: {agent}\nspec:\n  role: flaky\n  template: agents/{agent}.j2\n"),
        );
        hive.write(
            &format!("agents/{agent}.j2"),
            &format!(r#"[{{"type": "flaky", "payload": {payload}}}, {{"type": "advance", "payload": {{"events": ["start", "complete"]}}}}]"#),
        );
    }
    hive.jaros(&["validate"]).expect(0);
    hive
}

/// A failed tool run's counterfactual takes a successful sibling's result
/// (another decision of its type, in another job): blame finds it by
/// reading the logs as streams, after jobs of other types.
#[test]
fn blame_of_a_failed_tool_run_substitutes_a_successful_siblings_result() {
    let hive = hive_with_a_flaky_tool();
    for n in 0..5 {
        hive.jaros(&["submit", "advance", "--id", &format!("a{n}")])
            .expect(0);
    }
    hive.jaros(&["submit", "steady", "--id", "good"]).expect(0);
    hive.jaros(&["submit", "shaky", "--id", "bad"]).expect(0);
    hive.jaros(&["serve", "--exit-when-idle", "--scan-ms", "20"])
        .expect(0);
    assert!(hive.data().join("done/good.json").exists());
    assert!(hive.data().join("failed/bad.json").exists());
    let blame = hive.jaros(&["blame", "bad", "--json"]).expect(0).json();
    let method = blame["counterfactual"]["method"]
        .as_str()
        .unwrap_or_default();
    assert!(method.starts_with("sibling result from good#"), "{blame:#}");
}
