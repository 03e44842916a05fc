//! `jaros plan --diff [REV]` on a temp git repository: the hive (in a
//! subdirectory, as in a monorepo) is committed, edited, and every kind of
//! change shows as one line; `--json` says the same for bots.

mod common;
use common::{edit, git, run_in};

#[test]
fn the_plan_diff_names_every_change_since_a_revision() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    std::fs::create_dir_all(dir.path().join("ops")).unwrap();
    run_in(&dir.path().join("ops"), &["init", "hive"]).expect(0);
    let hive = dir.path().join("ops/hive");
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "the example hive"]);

    // Nothing changed yet.
    let run = run_in(&hive, &["plan", "--diff"]).expect(0);
    assert!(run.stdout().contains(": 0 changes\n"), "{}", run.context());

    let m = |rel: &str| hive.join(rel);
    edit(
        &m("manifests/roles/worker.yaml"),
        "handoff: [reviewer]",
        "handoff: [reviewer, planner]",
    );
    edit(
        &m("manifests/roles/observer.yaml"),
        "read: [\"**\"]",
        "read: [\"evals/**\"]",
    );
    edit(
        &m("manifests/roles/greeter.yaml"),
        "decisions: 4",
        "decisions: 8",
    );
    edit(
        &m("manifests/roles/planner.yaml"),
        "types: [advance, handoff]",
        "types: [advance, handoff, fs.stat]",
    );
    edit(
        &m("manifests/tools/greet.yaml"),
        "timeout: 5s",
        "timeout: 9s",
    );
    edit(
        &m("manifests/schedules/system-health.yaml"),
        "every: 5m",
        "every: 10m",
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(m("agents/planner.j2"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"Be brief.\n"))
        .unwrap();
    edit(
        &m("manifests/agents/echo.yaml"),
        "max_tokens: 512",
        "max_tokens: 256",
    );
    run_in(&hive, &["new", "agent", "triage"]).expect(0);

    let run = run_in(&hive, &["plan", "--diff", "HEAD"]).expect(0);
    let text = run.stdout();
    for line in [
        "+ role worker: may hand off to planner",
        "+ role observer: may read evals/**",
        "- role observer: may no longer read **",
        "+ role greeter: budget decisions 4 → 8",
        "+ role planner: may propose fs.stat",
        "+ role triage: added, may propose advance",
        "+ agent triage: added (role triage)",
        "~ agent echo: kind.max_tokens 512 → 256",
        "~ type greet: handler.timeout_ms 5000 → 9000",
        "~ schedule system-health-every-5m: every 5m → 10m",
        "+ template agents/triage.j2: added",
    ] {
        assert!(text.contains(line), "missing {line:?}\n{}", run.context());
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("~ template agents/planner.j2: content changed")),
        "{}",
        run.context()
    );
    assert!(text.starts_with("plan "), "{}", run.context());

    let json = run_in(&hive, &["plan", "--diff", "--json"])
        .expect(0)
        .json();
    let changes = json["changes"].as_array().unwrap();
    let lines: Vec<&str> = changes.iter().filter_map(|c| c["text"].as_str()).collect();
    assert_eq!(lines, text.lines().skip(1).collect::<Vec<_>>());
    let handoff = changes
        .iter()
        .find(|c| c["kind"] == "role" && c["name"] == "worker")
        .unwrap();
    assert_eq!(handoff["op"], "+");
    assert_eq!(handoff["what"], "handoff");
    assert_eq!(handoff["to"], "planner");
    assert_ne!(json["from"], json["to"]);

    // After a commit the working tree equals HEAD again; HEAD~1 still differs.
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "edits"]);
    let run = run_in(&hive, &["plan", "--diff"]).expect(0);
    assert!(run.stdout().contains(": 0 changes\n"), "{}", run.context());
    let run = run_in(&hive, &["plan", "--diff", "HEAD~1"]).expect(0);
    assert!(run.stdout().contains("+ agent triage"), "{}", run.context());
}

#[test]
fn the_plan_diff_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), &["init", "hive"]).expect(0);
    let hive = dir.path().join("hive");
    // No repository.
    let run = run_in(&hive, &["plan", "--diff"]).expect(2);
    assert!(
        run.stderr().contains("not in a git repository"),
        "{}",
        run.context()
    );
    git(dir.path(), &["init", "-q"]);
    std::fs::write(dir.path().join("README"), "x").unwrap();
    git(dir.path(), &["add", "README"]);
    git(dir.path(), &["commit", "-qm", "no hive yet"]);
    let run = run_in(&hive, &["plan", "--diff", "nope"]).expect(2);
    assert!(
        run.stderr().contains("'nope' is not a git revision"),
        "{}",
        run.context()
    );
    let run = run_in(&hive, &["plan", "--diff"]).expect(2);
    assert!(
        run.stderr().contains("has no manifests/"),
        "{}",
        run.context()
    );
}

#[test]
fn the_plan_diff_shows_an_approval_rule_added_and_one_removed() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    run_in(dir.path(), &["init", "hive"]).expect(0);
    let hive = dir.path().join("hive");
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "the example hive"]);
    // The worker's refund rule goes; the reviewer's hand-offs gain one.
    edit(
        &hive.join("manifests/roles/worker.yaml"),
        "  approvals:\n    # A refund over 100 EUR waits for the demo operator's verdict.\n    - type: refund\n      when: \"amount > 100\"\n      approvers: [demo-operator]\n      expires: 24h\n",
        "",
    );
    edit(
        &hive.join("manifests/roles/reviewer.yaml"),
        "  handoff: [worker]\n",
        "  handoff: [worker]\n  approvals:\n    - type: handoff\n      targets: [worker]\n      approvers: [lead, chief]\n      expires: 2h\n",
    );
    let run = run_in(&hive, &["plan", "--diff", "HEAD"]).expect(0);
    let text = run.stdout();
    // A rule added narrows what runs unattended (`-`); one removed widens it (`+`).
    for line in [
        ": 2 changes\n",
        "- role reviewer: needs approval for handoff to worker (approvers lead, chief; expires 2h)\n",
        "+ role worker: no longer needs approval for refund when amount > 100 (approvers demo-operator; expires 24h)\n",
    ] {
        assert!(text.contains(line), "missing {line:?}\n{}", run.context());
    }
    let json = run_in(&hive, &["plan", "--diff", "HEAD", "--json"])
        .expect(0)
        .json();
    let changes = json["changes"].as_array().unwrap();
    let removed = changes.iter().find(|c| c["name"] == "worker").unwrap();
    assert_eq!(removed["what"], "approvals");
    assert_eq!(removed["from"]["when"], "amount > 100", "{json}");
    let added = changes.iter().find(|c| c["name"] == "reviewer").unwrap();
    assert_eq!(
        added["to"]["targets"],
        serde_json::json!(["worker"]),
        "{json}"
    );
}
