//! The kit for coding agents: `jaros init` writes `AGENTS.md` and
//! `agent-kit/`; every example file in the skills, written into a fresh hive,
//! validates and its eval cases pass; the manifest reference is generated and
//! the committed one is current.

use std::path::Path;

mod common;
use common::run_in;

/// Hive directories an example file may go into.
const HIVE_PARTS: [&str; 4] = ["manifests/", "agents/", "tools/", "evals/"];

/// The example files of a markdown text: fenced blocks whose first or second
/// line names a hive path (`# manifests/...`, `{# agents/... #}`, or after a
/// shebang `# tools/...: what it does`).
fn examples(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = markdown;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let body_start = after.find('\n').map(|i| i + 1).unwrap_or(after.len());
        let body = &after[body_start..];
        let Some(close) = body.find("```") else { break };
        let block = &body[..close];
        rest = &body[close + 3..];
        let path = block.lines().take(2).find_map(|line| {
            let line = line.trim();
            let inner = line
                .strip_prefix("{#")
                .and_then(|l| l.strip_suffix("#}"))
                .or_else(|| line.strip_prefix("# "))?;
            let path = inner.trim().split([':', ' ']).next()?;
            HIVE_PARTS
                .iter()
                .any(|p| path.starts_with(p))
                .then(|| path.to_string())
        });
        if let Some(path) = path {
            out.push((path, block.to_string()));
        }
    }
    out
}

#[test]
fn init_writes_the_kit_and_a_current_reference() {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), &["init", "hive"]).expect(0);
    let hive = dir.path().join("hive");
    for rel in [
        "AGENTS.md",
        "agent-kit/skills/agent.md",
        "agent-kit/skills/role.md",
        "agent-kit/skills/tool.md",
        "agent-kit/skills/schedule.md",
        "agent-kit/skills/eval.md",
        "agent-kit/skills/approval.md",
        "agent-kit/reference.md",
    ] {
        assert!(hive.join(rel).is_file(), "jaros init did not write {rel}");
    }
    run_in(&hive, &["docs", "--check"]).expect(0);
    run_in(&hive, &["validate"]).expect(0);
    // A stale reference is caught.
    std::fs::write(hive.join("agent-kit/reference.md"), "# old\n").unwrap();
    let run = run_in(&hive, &["docs", "--check"]).expect(1);
    assert!(run.stderr().contains("stale"), "{}", run.context());
    run_in(&hive, &["docs"]).expect(0);
    run_in(&hive, &["docs", "--check"]).expect(0);
}

#[test]
fn the_reference_names_every_kind_and_field() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = std::fs::read_to_string(root.join("agent-kit/reference.md")).unwrap();
    for heading in [
        "## Node",
        "## Role",
        "## Agent",
        "## Tool",
        "## Schedule",
        "## Eval",
    ] {
        assert!(reference.contains(heading), "no {heading}");
    }
    for field in [
        "`max_steps`",
        "`handoff`",
        "`payload_schema`",
        "`catch_up`",
        "`responses_file`",
        "`scan_interval`",
    ] {
        assert!(reference.contains(field), "no {field}");
    }
}

#[test]
fn the_committed_reference_is_current() {
    run_in(Path::new(env!("CARGO_MANIFEST_DIR")), &["docs", "--check"]).expect(0);
}

#[test]
fn every_example_in_the_kit_validates_and_its_evals_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent-kit");
    let mut files = Vec::new();
    for rel in common::walk(&root) {
        if rel.ends_with(".md") {
            let text = std::fs::read_to_string(root.join(&rel)).unwrap();
            files.extend(examples(&text));
        }
    }
    let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    for kind in [
        "manifests/roles/",
        "manifests/agents/",
        "manifests/tools/",
        "manifests/schedules/",
        "manifests/evals/",
        "agents/",
        "tools/",
    ] {
        assert!(
            paths.iter().any(|p| p.starts_with(kind)),
            "no example under {kind}: {paths:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), &["init", "hive"]).expect(0);
    let hive = dir.path().join("hive");
    for (rel, text) in &files {
        let path = hive.join(rel);
        assert!(!path.exists(), "two examples write {rel}");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        if rel.starts_with("tools/") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    run_in(&hive, &["validate"]).expect(0);
    let run = run_in(&hive, &["eval", "manifests/evals"]).expect(0);
    for case in [
        "writes-a-note",
        "refuses-a-path-outside-notes",
        "shouts",
        "a-draft-needs-no-one",
        "a-shared-report-waits",
        "an-editor-approves",
        "an-editor-denies",
    ] {
        assert!(
            run.stdout().contains(&format!("[PASS] {case}")),
            "{}",
            run.context()
        );
    }
}
