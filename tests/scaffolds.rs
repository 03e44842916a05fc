//! `jaros new`: every scaffold on a fresh hive, then `validate` and `eval`
//! pass with the files as written; names are checked and nothing is ever
//! overwritten.

mod common;
use common::run_in;

/// Every scaffold, in the order a user would make them.
const SCAFFOLDS: &[&[&str]] = &[
    &["new", "agent", "triage"],
    &["new", "agent", "triage-tpl", "--template"],
    &["new", "agent", "thinker", "--model", "local"],
    &["new", "agent", "thinker2", "--model", "ollama:llama3.2"],
    &["new", "agent", "helper", "--role", "triage"],
    &["new", "role", "ops"],
    &["new", "tool", "lookup"],
    &["new", "tool", "lookup2", "--exec"],
    &["new", "tool", "reader", "--builtin", "fs.read"],
    &[
        "new",
        "schedule",
        "nightly",
        "--agent",
        "triage",
        "--cron",
        "0 3 * * *",
    ],
    &[
        "new", "schedule", "often", "--agent", "thinker", "--every", "30m",
    ],
    &["new", "eval", "greeter-more", "--agent", "greeter"],
    &["new", "eval", "thinker-more", "--agent", "thinker"],
];

#[test]
fn every_scaffold_validates_and_its_evals_pass_as_written() {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), &["init", "hive"]).expect(0);
    let hive = dir.path().join("hive");
    for args in SCAFFOLDS {
        let run = run_in(&hive, args).expect(0);
        assert!(run.stdout().contains("wrote "), "{}", run.context());
        assert!(run.stdout().contains("\nnext: "), "{}", run.context());
        // Each step leaves a hive that validates.
        run_in(&hive, &["validate"]).expect(0);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(hive.join("tools/lookup.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
    }
    let run = run_in(&hive, &["eval", "manifests/evals", "--json"]).expect(0);
    let report = run.json();
    let names: Vec<&str> = report["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", run.context()))
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for case in [
        "triage-completes",
        "triage-tpl-completes",
        "thinker-completes",
        "thinker2-completes",
        "helper-completes",
        "greeter-more-runs",
        "thinker-more-runs",
    ] {
        assert!(names.contains(&case), "no case {case}: {names:?}");
    }
    // The new agents run for real too.
    run_in(&hive, &["run", "triage", "--input", r#"{"note": "hi"}"#]).expect(0);
}

#[test]
fn scaffolds_check_names_and_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), &["init", "hive"]).expect(0);
    let hive = dir.path().join("hive");
    let before = common::fingerprint(&hive);
    // Taken names, bad names, unknown references: refused, nothing written.
    for (args, says) in [
        (
            &["new", "agent", "greeter"][..],
            "already defines agent 'greeter'",
        ),
        (
            &["new", "role", "planner"][..],
            "already defines role 'planner'",
        ),
        (
            &["new", "tool", "greet"][..],
            "already defines decision type 'greet'",
        ),
        (&["new", "agent", "_bad"][..], "is not allowed"),
        (&["new", "agent", "a/b"][..], "is not allowed"),
        (
            &["new", "agent", "x", "--role", "nobody"][..],
            "no role 'nobody'",
        ),
        (
            &["new", "agent", "x", "--role", "observer"][..],
            "does not grant `advance`",
        ),
        (
            &["new", "agent", "x", "--model", "nowhere"][..],
            "no model provider 'nowhere'",
        ),
        (
            &["new", "tool", "t", "--builtin", "rm.rf"][..],
            "no built-in handler",
        ),
        (
            &["new", "schedule", "s", "--agent", "nobody"][..],
            "no agent 'nobody'",
        ),
        (
            &["new", "eval", "e", "--agent", "nobody"][..],
            "no agent 'nobody'",
        ),
    ] {
        let run = run_in(&hive, args).expect(2);
        assert!(run.stderr().contains(says), "{says:?}\n{}", run.context());
    }
    // A file in the way: nothing at all is written.
    std::fs::write(hive.join("agents/fresh.j2"), "mine").unwrap();
    let run = run_in(&hive, &["new", "agent", "fresh"]).expect(2);
    assert!(
        run.stderr().contains("agents/fresh.j2"),
        "{}",
        run.context()
    );
    assert!(
        run.stderr().contains("never overwrites"),
        "{}",
        run.context()
    );
    assert_eq!(
        std::fs::read_to_string(hive.join("agents/fresh.j2")).unwrap(),
        "mine"
    );
    std::fs::remove_file(hive.join("agents/fresh.j2")).unwrap();
    assert_eq!(common::fingerprint(&hive), before);
    // Twice the same: the second is refused.
    run_in(&hive, &["new", "role", "ops"]).expect(0);
    run_in(&hive, &["new", "role", "ops"]).expect(2);
}
