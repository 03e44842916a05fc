//! `jaros replay --under DIR_OR_GIT_REV`, the policy impact check, on the
//! example hive after `jaros demo`: every recorded decision is asked again of
//! another plan's gate; a narrowed write scope reports the writes it would
//! refuse (exit 1), a widened hand-off reports the hand-off the demo's worker
//! was refused (exit 0).

use std::path::{Path, PathBuf};

mod common;
use common::{edit, git, run_in};

/// A temp dir holding `hive/`, a demo's hive with its data dir.
fn demo() -> (tempfile::TempDir, PathBuf) {
    let top = tempfile::tempdir().unwrap();
    run_in(top.path(), &["demo", "--dir", "hive"]).expect(0);
    let hive = top.path().join("hive");
    (top, hive)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A template agent `scribe` writing `notes/NAME.txt` under role `scribe`,
/// whose write grant is `write`.
fn add_scribe(hive: &Path, write_glob: &str) {
    write(
        &hive.join("manifests/roles/scribe.yaml"),
        &format!(
            "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: scribe\nspec:\n  types: [fs.write]\n  write: [\"{write_glob}\"]\n  budget:\n    decisions: 4\n    model_calls: 0\n    wall_time: 1m\n"
        ),
    );
    write(
        &hive.join("manifests/agents/scribe.yaml"),
        "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: scribe\nspec:\n  role: scribe\n  template: agents/scribe.j2\n",
    );
    write(
        &hive.join("agents/scribe.j2"),
        "[{\"type\": \"fs.write\", \"payload\": {\"path\": {{ (\"notes/\" ~ input.name ~ \".txt\") | tojson }}, \"content\": \"hello\"}}]\n",
    );
}

fn groups<'a>(report: &'a serde_json::Value, key: &str) -> &'a Vec<serde_json::Value> {
    report[key].as_array().unwrap()
}

#[test]
fn narrowing_a_write_scope_reports_the_writes_and_fails() {
    let (top, hive) = demo();
    add_scribe(&hive, "notes/**");
    for name in ["a", "b"] {
        let input = format!("{{\"name\": \"{name}\"}}");
        run_in(&hive, &["run", "scribe", "--input", &input]).expect(0);
    }
    assert!(hive.join("notes/a.txt").is_file());

    // The same plan changes nothing.
    let same = run_in(&hive, &["replay", "--under", ".", "--json"]).expect(0);
    let same = same.json();
    assert_eq!(same["refused_total"], 0, "{same:#}");
    assert_eq!(same["allowed_total"], 0, "{same:#}");
    assert!(same["decisions"].as_u64().unwrap() >= 2, "{same:#}");

    // Another hive where the scribe may write only under notes/public/.
    run_in(top.path(), &["init", "narrow"]).expect(0);
    let narrow = top.path().join("narrow");
    add_scribe(&narrow, "notes/public/**");
    let run = run_in(&hive, &["replay", "--under", "../narrow", "--json"]).expect(1);
    let report = run.json();
    assert_eq!(report["refused_total"], 2, "{report:#}");
    let refused = groups(&report, "refused");
    assert_eq!(refused.len(), 1, "{report:#}");
    assert_eq!(refused[0]["agent"], "scribe");
    assert_eq!(refused[0]["role"], "scribe");
    let examples = refused[0]["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 2, "{report:#}");
    for e in examples {
        assert_eq!(e["type"], "fs.write", "{e}");
        assert!(e["reason"].as_str().unwrap().starts_with("scope:"), "{e}");
        assert!(!e["decision"].as_str().unwrap().is_empty(), "{e}");
    }
    // Nothing the demo's agents did is touched by the change.
    assert_eq!(report["allowed_total"], 0, "{report:#}");

    let human = run_in(&hive, &["replay", "--under", "../narrow"]).expect(1);
    let text = human.stdout();
    assert!(text.contains("would now refuse 2 decisions"), "{text}");
    assert!(
        text.contains("scribe (role scribe): 2 of 2 decisions"),
        "{text}"
    );
    assert!(
        text.contains("verdict: the change would refuse decisions that succeeded"),
        "{text}"
    );
}

#[test]
fn widening_a_handoff_reports_the_refused_handoff() {
    let (top, hive) = demo();
    run_in(top.path(), &["init", "wide"]).expect(0);
    let wide = top.path().join("wide");
    run_in(&wide, &["new", "agent", "billing"]).expect(0);
    edit(
        &wide.join("manifests/roles/worker.yaml"),
        "handoff: [reviewer]",
        "handoff: [reviewer, billing]",
    );
    let run = run_in(&hive, &["replay", "--under", "../wide", "--json"]).expect(0);
    let report = run.json();
    assert_eq!(report["refused_total"], 0, "{report:#}");
    assert_eq!(report["allowed_total"], 1, "{report:#}");
    let allowed = groups(&report, "allowed");
    assert_eq!(allowed[0]["agent"], "worker", "{report:#}");
    assert_eq!(allowed[0]["role"], "worker", "{report:#}");
    let example = &allowed[0]["examples"][0];
    assert_eq!(example["job"], "T3-1.0", "{report:#}");
    assert_eq!(example["type"], "handoff", "{report:#}");
    assert!(
        example["reason"].as_str().unwrap().contains("billing"),
        "the recorded refusal names the target: {report:#}"
    );
    let text = run_in(&hive, &["replay", "--under", "../wide"])
        .expect(0)
        .stdout();
    assert!(text.contains("would now allow (refused then)"), "{text}");
    assert!(text.contains("T3-1.0"), "{text}");
}

#[test]
fn a_git_revision_is_compiled_and_asked() {
    let (_top, hive) = demo();
    add_scribe(&hive, "notes/**");
    run_in(&hive, &["run", "scribe", "--input", "{\"name\": \"a\"}"]).expect(0);
    git(&hive, &["init", "-q"]);
    git(&hive, &["add", "manifests", "agents", "tools", "evals"]);
    git(&hive, &["commit", "-q", "-m", "wide"]);
    add_scribe(&hive, "notes/public/**");
    git(&hive, &["commit", "-q", "-am", "narrow"]);
    let report = run_in(&hive, &["replay", "--under", "HEAD", "--json"])
        .expect(1)
        .json();
    assert_eq!(report["refused_total"], 1, "{report:#}");
    assert_eq!(report["under"], "HEAD");
    let report = run_in(&hive, &["replay", "--under", "HEAD~1", "--json"])
        .expect(0)
        .json();
    assert_eq!(report["refused_total"], 0, "{report:#}");
    let bad = run_in(&hive, &["replay", "--under", "no-such-rev"]).expect(2);
    assert!(bad.stderr().contains("no-such-rev"), "{}", bad.context());
}

#[test]
fn nothing_to_replay_exits_2() {
    let top = tempfile::tempdir().unwrap();
    run_in(top.path(), &["init", "h"]).expect(0);
    let hive = top.path().join("h");
    std::fs::create_dir_all(hive.join(".jaros-data/log")).unwrap();
    let run = run_in(&hive, &["replay", "--under", "."]).expect(2);
    assert!(
        run.stderr().contains("nothing to replay"),
        "{}",
        run.context()
    );
}
