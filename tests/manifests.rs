//! Manifests end to end: the real binary on temp hives. Broken hives get
//! every error word for word with its line and column; the gate's checks are
//! driven by manifests through `jaros run`; the schemas agree with the
//! parser; `jaros init` writes a hive that validates; no input panics.

use jaros::manifest::{self, validate, yaml};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

const JAROS: &str = env!("CARGO_BIN_EXE_jaros");

/// A hive in a temp dir.
/// A hive in a temp dir: the hive is `hive/` inside the test's own temp
/// dir, so a test may run jaros from the hive's parent without leaving it.
struct Hive {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Hive {
    fn empty() -> Hive {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("hive");
        std::fs::create_dir_all(root.join("manifests")).unwrap();
        Hive { dir, root }
    }

    /// A hive with role `worker` (grants `advance`) and template agent
    /// `hello` proposing one advance decision.
    fn minimal() -> Hive {
        let hive = Hive::empty();
        hive.write("manifests/role.yaml", ROLE);
        hive.write("manifests/agent.yaml", AGENT);
        hive.write(
            "agents/hello.j2",
            r#"[{"type": "advance", "payload": {"events": ["start", "complete"]}}]"#,
        );
        hive
    }

    fn path(&self) -> &Path {
        &self.root
    }

    /// The test's own temp dir, the hive's parent.
    fn parent(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn edit(&self, rel: &str, from: &str, to: &str) {
        let path = self.path().join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        std::fs::write(path, text.replacen(from, to, 1)).unwrap();
    }

    /// Runs jaros in the hive, with its data dir inside the temp dir.
    fn jaros(&self, args: &[&str]) -> Run {
        jaros_in(self.path(), args)
    }
}

struct Run {
    out: Output,
    /// The command and where it ran.
    context: String,
    /// The test's own temp dir, listed when the run is not what was
    /// expected (`None` for runs in the repository itself).
    listed: Option<PathBuf>,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    /// Asserts the exit code, printing everything useful when it is not.
    fn expect(self, code: i32) -> Run {
        if self.code() != code {
            let files = self.listed.as_deref().map(listing).unwrap_or_default();
            panic!(
                "exit code {} where {code} was expected\n{}\n--- stdout\n{}\n--- stderr\n{}\n--- files\n{files}",
                self.code(),
                self.context,
                self.stdout(),
                self.stderr()
            );
        }
        self
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout())
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", self.stdout(), self.context))
    }
}

/// The files of a test's own directory, for a failure report: never follows
/// a symbolic link out of it (see `common::walk`).
fn listing(dir: &Path) -> String {
    common::walk(dir).join("\n")
}

/// Runs jaros in `cwd`, a directory inside the test's own temp dir (listed
/// when the run fails).
fn jaros_in(cwd: &Path, args: &[&str]) -> Run {
    let mut run = jaros_at(cwd, args);
    run.listed = Some(cwd.to_path_buf());
    run
}

/// Runs jaros in the repository itself, the example hive: nothing is listed.
fn jaros_repo(args: &[&str]) -> Run {
    jaros_at(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn jaros_at(cwd: &Path, args: &[&str]) -> Run {
    let data: PathBuf = cwd.join(".jaros-data");
    let out = Command::new(JAROS)
        .args(args)
        .current_dir(cwd)
        .env_remove("JAROS_HIVE")
        .env("JAROS_DATA_DIR", &data)
        .output()
        .unwrap();
    let context = format!("$ jaros {}\n(in {})", args.join(" "), cwd.display());
    Run {
        out,
        context,
        listed: None,
    }
}

const ROLE: &str = "\
apiVersion: jaros/v1
kind: Role
metadata:
  name: worker
spec:
  types: [advance]
";

const AGENT: &str = "\
apiVersion: jaros/v1
kind: Agent
metadata:
  name: hello
spec:
  role: worker
  template: agents/hello.j2
";

/// Runs `jaros validate` on a hive that must fail, and returns its report.
fn errors_of(hive: &Hive) -> String {
    hive.jaros(&["validate"]).expect(1).stdout()
}

// ------------------------------------------------------- the test helpers

#[test]
#[cfg(unix)]
fn a_failure_listing_never_follows_a_link_out_of_the_test_dir() {
    let hive = Hive::minimal();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(outside.path(), hive.path().join("away")).unwrap();
    std::os::unix::fs::symlink("/", hive.path().join("root")).unwrap();
    let files = listing(hive.path());
    assert!(!files.contains("secret.txt"), "{files}");
    assert!(files.contains("away -> "), "{files}");
    assert!(files.contains("root -> /"), "{files}");
    assert!(files.contains("manifests/role.yaml"), "{files}");
}

// ------------------------------------------------------------ broken hives

#[test]
fn the_minimal_hive_is_valid() {
    let hive = Hive::minimal();
    let out = hive.jaros(&["validate"]).expect(0).stdout();
    assert!(out.starts_with("ok: 2 documents in 2 files: 0 Nodes, 1 Role, 1 Agent, 0 Tools, 0 Schedules, 0 Evals (0 cases)\nplan sha256:"), "{out}");
}

#[test]
fn a_typo_in_a_field_name_is_pointed_at_with_a_suggestion() {
    let hive = Hive::minimal();
    hive.edit("manifests/agent.yaml", "  role: worker", "  rol: worker");
    assert_eq!(
        errors_of(&hive),
        "\
manifests/agent.yaml:6:3: missing required field 'role' in spec
manifests/agent.yaml:6:3: unknown field 'rol' in spec (did you mean 'role'?); allowed: description, examples, max_steps, model, prompt, role, template, verdicts
2 errors
"
    );
}

#[test]
fn a_wrong_type_is_reported_at_the_value() {
    let hive = Hive::minimal();
    hive.write(
        "manifests/agent.yaml",
        format!("{AGENT}  max_steps: three\n"),
    );
    assert_eq!(
        errors_of(&hive),
        "manifests/agent.yaml:8:14: spec.max_steps must be an integer, not a string\n1 error\n"
    );
}

#[test]
fn a_missing_role_is_reported_at_the_role_value() {
    let hive = Hive::minimal();
    hive.edit("manifests/agent.yaml", "  role: worker", "  role: nobody");
    assert_eq!(
        errors_of(&hive),
        "manifests/agent.yaml:6:9: role 'nobody' is not defined; roles: advance, worker\n1 error\n"
    );
}

#[test]
fn a_role_granting_an_unknown_type_is_reported_at_the_list_item() {
    let hive = Hive::minimal();
    hive.edit("manifests/role.yaml", "[advance]", "[advance, frobnicate]");
    assert_eq!(
        errors_of(&hive),
        "manifests/role.yaml:6:20: decision type 'frobnicate' is not registered: it is neither built in nor handled by a Tool manifest\n1 error\n"
    );
}

#[test]
fn a_template_with_a_syntax_error_is_reported_at_the_manifest_naming_it() {
    let hive = Hive::minimal();
    hive.write("agents/hello.j2", "[{\"type\": \"advance\"}]\n{% if %}\n");
    assert_eq!(
        errors_of(&hive),
        "manifests/agent.yaml:7:13: template 'agents/hello.j2' line 2: unexpected end of block\n1 error\n"
    );
}

#[test]
fn a_tab_indented_file_is_refused_at_the_tab() {
    let hive = Hive::minimal();
    hive.write(
        "manifests/role.yaml",
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n\tname: worker\n",
    );
    // The agent's role may be in the unreadable file: no cascade of errors.
    assert_eq!(
        errors_of(&hive),
        "manifests/role.yaml:4:1: a tab character indents this line; YAML indents with spaces\n1 error\n"
    );
}

#[test]
fn an_empty_file_is_refused() {
    let hive = Hive::minimal();
    hive.write("manifests/extra.yaml", "");
    assert_eq!(
        errors_of(&hive),
        "manifests/extra.yaml:1:1: the file holds no YAML document; add a manifest (apiVersion, kind, metadata, spec) or delete the file\n1 error\n"
    );
}

#[test]
fn a_10_mb_file_is_refused_without_parsing_it() {
    let hive = Hive::minimal();
    hive.write("manifests/big.yaml", "# padding\n".repeat(1024 * 1024));
    assert_eq!(
        errors_of(&hive),
        "manifests/big.yaml:1:1: the file is 10485760 bytes, over the limit of 1048576 bytes for a manifest\n1 error\n"
    );
}

#[test]
fn a_non_utf8_file_is_refused_at_the_bad_byte() {
    let hive = Hive::minimal();
    hive.write(
        "manifests/role2.yaml",
        b"apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: caf\xe9\n",
    );
    assert_eq!(
        errors_of(&hive),
        "manifests/role2.yaml:4:12: the file is not valid UTF-8 (byte 53 is not); save it as UTF-8\n1 error\n"
    );
}

#[test]
fn duplicate_names_point_at_both_definitions() {
    let hive = Hive::minimal();
    hive.write("manifests/agent2.yaml", AGENT);
    assert_eq!(
        errors_of(&hive),
        "manifests/agent2.yaml:4:9: duplicate Agent 'hello': already defined at manifests/agent.yaml:4:9\n1 error\n"
    );
}

#[test]
fn every_error_of_every_file_is_reported_at_once_sorted() {
    let hive = Hive::minimal();
    hive.edit("manifests/agent.yaml", "  role: worker", "  role: nobody");
    hive.write("manifests/empty.yaml", "");
    hive.write("manifests/x.yaml", "apiVersion: jaros/v1\nkind: Agnet\n");
    hive.write(
        "manifests/more.yaml",
        "apiVersion: jaros/v1\nkind: Schedule\nmetadata:\n  name: s\nspec:\n  agent: ghost\n  every: 5m\n  cron: '@daily'\n\
         ---\napiVersion: jaros/v2\nkind: Role\nmetadata:\n  name: r\nspec:\n  budget: {wall_time: soon}\n",
    );
    assert_eq!(
        errors_of(&hive),
        "\
manifests/agent.yaml:6:9: role 'nobody' is not defined; roles: advance, r, worker
manifests/empty.yaml:1:1: the file holds no YAML document; add a manifest (apiVersion, kind, metadata, spec) or delete the file
manifests/more.yaml:6:3: a schedule needs exactly one of 'cron', 'every' or 'at'
manifests/more.yaml:10:13: apiVersion must be 'jaros/v1', not 'jaros/v2'
manifests/more.yaml:15:23: spec.budget.wall_time 'soon' is not a duration; write whole numbers with units d, h, m, s or ms, largest first (such as 30s, 5m or 1h30m)
manifests/x.yaml:2:7: unknown kind 'Agnet'; expected one of Node, Role, Agent, Tool, Schedule, Eval
6 errors
"
    );
}

#[test]
fn validate_json_lists_errors_with_positions() {
    let hive = Hive::minimal();
    hive.edit("manifests/agent.yaml", "  role: worker", "  role: nobody");
    let run = hive.jaros(&["validate", "--json"]).expect(1);
    let v = run.json();
    assert_eq!(v["ok"], false);
    assert_eq!(
        v["errors"][0],
        serde_json::json!({"file": "manifests/agent.yaml", "line": 6, "col": 9, "message": "role 'nobody' is not defined; roles: advance, worker"})
    );
}

#[test]
fn validate_names_files_from_the_current_directory() {
    let hive = Hive::minimal();
    hive.edit("manifests/agent.yaml", "  role: worker", "  role: nobody");
    let name = hive.path().file_name().unwrap().to_str().unwrap();
    let run = jaros_in(hive.parent(), &["validate", name]).expect(1);
    assert!(
        run.stdout()
            .starts_with(&format!("{name}/manifests/agent.yaml:6:9: role 'nobody'")),
        "{}",
        run.stdout()
    );
}

#[test]
fn references_to_files_are_checked() {
    let hive = Hive::minimal();
    hive.edit(
        "manifests/agent.yaml",
        "agents/hello.j2",
        "agents/missing.j2",
    );
    hive.write(
        "manifests/tool.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: t\nspec:\n  type: t\n  command: tools/t.sh\n---\n\
         apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: u\nspec:\n  type: u\n  command: ../outside.sh\n",
    );
    hive.write("tools/t.sh", "#!/bin/sh\necho '{}'\n");
    assert_eq!(
        errors_of(&hive),
        "\
manifests/agent.yaml:7:13: template 'agents/missing.j2' does not exist
manifests/tool.yaml:7:12: executable 'tools/t.sh' is not executable; run: chmod +x tools/t.sh
manifests/tool.yaml:15:12: executable path '../outside.sh' refused: '..' is not allowed
3 errors
"
    );
}

// ------------------------------------------------------------- the plan

#[test]
fn the_example_hive_validates_and_its_plan_has_every_part() {
    let run = jaros_repo(&["validate"]).expect(0);
    assert!(run.stdout().starts_with("ok: "), "{}", run.stdout());
    let plan = jaros_repo(&["plan", "--json"]).expect(0).json();
    let digest = plan["digest"].as_str().unwrap();
    assert!(run.stdout().contains(&format!("plan sha256:{digest}")));
    let p = &plan["plan"];
    for agent in [
        "advance",
        "system-health",
        "disk-monitor",
        "inventory",
        "text-metrics",
        "echo",
        "greeter",
    ] {
        assert!(p["agents"][agent].is_object(), "agent {agent}");
    }
    assert_eq!(p["types"]["greet"]["handler"]["kind"], "exec");
    assert_eq!(p["types"]["greet"]["handler"]["command"], "tools/greet.sh");
    assert_eq!(p["agents"]["echo"]["kind"]["kind"], "model");
    assert!(p["templates"]["agents/greeter.j2"]["source"].is_string());
    let table = jaros_repo(&["plan"]).expect(0).stdout();
    assert!(
        table.contains("greeter        template agents/greeter.j2"),
        "{table}"
    );
    assert!(table.contains("exec tools/greet.sh"), "{table}");
}

#[test]
fn the_plan_digest_covers_templates_and_executables() {
    let hive = Hive::minimal();
    hive.write(
        "manifests/tool.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: t\nspec:\n  type: t\n  command: tools/t.sh\n",
    );
    hive.write("tools/t.sh", "#!/bin/sh\necho '{}'\n");
    chmod_x(&hive.path().join("tools/t.sh"));
    let digest = |hive: &Hive| hive.jaros(&["plan", "--json"]).expect(0).json()["digest"].clone();
    let first = digest(&hive);
    hive.write("tools/t.sh", "#!/bin/sh\necho '{\"changed\": true}'\n");
    let second = digest(&hive);
    assert_ne!(first, second, "the executable's bytes are in the digest");
    hive.write(
        "agents/hello.j2",
        r#"[{"type": "advance", "payload": {"events": ["start"]}}]"#,
    );
    assert_ne!(
        second,
        digest(&hive),
        "the template's source is in the digest"
    );
}

#[test]
fn a_data_dir_inside_the_hive_is_protected() {
    let hive = Hive::minimal();
    hive.write(
        "manifests/node.yaml",
        "apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  data_dir: state\n",
    );
    let plan = hive.jaros(&["plan", "--json"]).expect(0).json();
    let protected: Vec<&str> = plan["plan"]["protected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(protected.contains(&"state"), "{protected:?}");
}

#[cfg(unix)]
fn chmod_x(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(not(unix))]
fn chmod_x(_: &Path) {}

// --------------------------------------------------- the gate, by manifests

/// A hive whose agent `a` (role `r`) renders `template`; `role_spec` is the
/// role's spec, and `extra` more manifests.
fn gate_hive(role_spec: &str, template: &str, extra: &str) -> Hive {
    let hive = Hive::empty();
    hive.write(
        "manifests/hive.yaml",
        format!(
            "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: r\nspec:\n{role_spec}\n---\n\
             apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: a\nspec:\n  role: r\n  template: agents/a.j2\n{extra}"
        ),
    );
    hive.write("agents/a.j2", template);
    hive
}

/// Runs agent `a` and returns its result file, after checking that replay
/// reproduces the run and attributes the failure to agent `a`.
fn run_a(hive: &Hive) -> Value {
    hive.jaros(&["validate"]).expect(0);
    let run = hive.jaros(&["run", "a", "--id", "job-1"]);
    let result = run.json();
    let replay = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_eq!(replay["byte_identical"], true);
    assert_eq!(replay["model_calls"], 0);
    if result["state"] == "FAILED" {
        assert_eq!(replay["failures"][0]["agent"], "a", "{replay}");
        assert_eq!(replay["failures"][0]["job"], "job-1", "{replay}");
    }
    result
}

#[test]
fn a_template_agent_proposing_advance_runs_to_done() {
    let hive = gate_hive(
        "  types: [advance]",
        r#"[{"type": "advance", "payload": {"events": ["start", "complete"], "note": {{ input | tojson }}}}]"#,
        "",
    );
    hive.jaros(&["validate"]).expect(0);
    let result = hive
        .jaros(&["run", "a", "--input", r#"{"x": 1}"#])
        .expect(0)
        .json();
    assert_eq!(result["state"], "DONE");
    assert_eq!(result["result"]["results"][0]["result"]["to"], "DONE");
}

#[test]
fn a_type_the_role_does_not_grant_is_rejected_naming_the_role() {
    let hive = gate_hive(
        "  types: [handoff]",
        r#"[{"type": "advance", "payload": {"events": ["start"]}}]"#,
        "",
    );
    let result = run_a(&hive);
    assert_eq!(result["state"], "FAILED");
    assert_eq!(
        result["reason"],
        "decision job-1#1.0 (advance) was rejected: granted: role 'r' of agent 'a' does not grant decision type 'advance'"
    );
}

#[test]
fn a_payload_failing_its_schema_is_rejected() {
    let tool = "---\napiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: greet\nspec:\n  type: greet\n  command: tools/greet.sh\n  \
                payload_schema: {type: object, properties: {name: {type: string}}, required: [name]}\n";
    let hive = gate_hive(
        "  types: [greet]",
        r#"[{"type": "greet", "payload": {"name": 5}}]"#,
        tool,
    );
    hive.write("tools/greet.sh", "#!/bin/sh\ncat\n");
    chmod_x(&hive.path().join("tools/greet.sh"));
    let result = run_a(&hive);
    assert_eq!(result["state"], "FAILED");
    assert_eq!(result["reason"], "decision job-1#1.0 (greet) was rejected: schema: payload/name: 5 is not of type \"string\"");
}

#[test]
fn a_path_outside_the_write_glob_is_rejected() {
    let hive = gate_hive(
        "  types: [fs.write]\n  write: [\"notes/*.md\"]",
        r#"[{"type": "fs.write", "payload": {"path": "elsewhere/x.md", "content": "hi"}}]"#,
        "",
    );
    let result = run_a(&hive);
    assert_eq!(result["state"], "FAILED");
    assert_eq!(
        result["reason"],
        "decision job-1#1.0 (fs.write) was rejected: scope: role 'r' does not grant write access to 'elsewhere/x.md'"
    );
}

#[test]
fn a_hand_off_to_an_agent_not_granted_is_rejected() {
    let other = "---\napiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: b\nspec:\n  role: r\n  template: agents/a.j2\n";
    let hive = gate_hive(
        "  types: [handoff]\n  handoff: [b]",
        r#"[{"type": "handoff", "payload": {"agent": "advance"}}]"#,
        other,
    );
    let result = run_a(&hive);
    assert_eq!(result["state"], "FAILED");
    assert_eq!(
        result["reason"],
        "decision job-1#1.0 (handoff) was rejected: scope: role 'r' does not grant hand-off to 'advance'"
    );
}

#[test]
fn an_exhausted_decision_budget_is_rejected() {
    let hive = gate_hive(
        "  types: [advance]\n  budget: {decisions: 1}",
        r#"[{"type": "advance", "payload": {"events": ["start"]}}, {"type": "advance", "payload": {"events": ["complete"]}}]"#,
        "",
    );
    let result = run_a(&hive);
    assert_eq!(result["state"], "FAILED");
    assert_eq!(
        result["reason"],
        "decision job-1#1.1 (advance) was rejected: budget: the job has used its budget of 1 decisions"
    );
}

#[test]
fn run_refuses_a_hive_whose_manifests_are_invalid() {
    let hive = Hive::minimal();
    hive.edit("manifests/agent.yaml", "  role: worker", "  role: nobody");
    let run = hive.jaros(&["run", "hello"]).expect(1);
    assert!(
        run.stderr()
            .contains("manifests/agent.yaml:6:9: role 'nobody' is not defined"),
        "{}",
        run.stderr()
    );
}

// ------------------------------------------------------------------ init

#[test]
fn init_writes_a_hive_that_validates_and_refuses_to_clobber_changes() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("hive");
    let t = target.to_str().unwrap();
    let run = jaros_in(dir.path(), &["init", t]).expect(0);
    assert!(
        run.stdout().contains("(0 unchanged, 0 overwritten)"),
        "{}",
        run.stdout()
    );
    jaros_in(&target, &["validate"]).expect(0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(target.join("tools/greet.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
    }
    // Again: identical files are fine.
    jaros_in(dir.path(), &["init", t]).expect(0);
    // A changed file is refused, and nothing is written.
    std::fs::write(target.join("agents/greeter.j2"), "changed").unwrap();
    std::fs::remove_file(target.join("agents/echo.j2")).unwrap();
    let run = jaros_in(dir.path(), &["init", t]).expect(2);
    assert!(
        run.stderr().contains("agents/greeter.j2"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("--force"), "{}", run.stderr());
    assert!(!target.join("agents/echo.j2").exists());
    // --force overwrites.
    jaros_in(dir.path(), &["init", t, "--force"]).expect(0);
    assert_ne!(
        std::fs::read(target.join("agents/greeter.j2")).unwrap(),
        b"changed"
    );
    jaros_in(&target, &["validate"]).expect(0);
}

// --------------------------------------------------------------- schemas

#[test]
fn the_committed_schemas_are_the_generated_ones() {
    jaros_repo(&["schema", "--check"]).expect(0);
}

#[test]
fn schema_check_names_a_stale_file() {
    let dir = tempfile::tempdir().unwrap();
    jaros_in(dir.path(), &["schema", "--out", "s"]).expect(0);
    jaros_in(dir.path(), &["schema", "--out", "s", "--check"]).expect(0);
    std::fs::write(dir.path().join("s/agent.json"), "{}").unwrap();
    let run = jaros_in(dir.path(), &["schema", "--out", "s", "--check"]).expect(1);
    assert!(run.stderr().contains("s/agent.json"), "{}", run.stderr());
    assert!(!run.stderr().contains("s/role.json"), "{}", run.stderr());
}

/// Documents that must be judged alike by the schema and by the parser.
fn agreement_fixtures() -> Vec<String> {
    let mut docs: Vec<String> = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (path, bytes) in manifest::embedded::FILES {
        if path.starts_with("manifests/") {
            docs.push(String::from_utf8(bytes.to_vec()).unwrap());
        }
    }
    assert!(root.join("manifests").is_dir());
    docs.extend([ROLE.to_string(), AGENT.to_string()]);
    let agent = |spec: &str| {
        format!("apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: a\nspec:\n{spec}")
    };
    let tool = |spec: &str| {
        format!("apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: t\nspec:\n  type: t\n{spec}")
    };
    let sched = |spec: &str| {
        format!(
            "apiVersion: jaros/v1\nkind: Schedule\nmetadata:\n  name: s\nspec:\n  agent: a\n{spec}"
        )
    };
    let eval = |case: &str| {
        format!("apiVersion: jaros/v1\nkind: Eval\nmetadata:\n  name: e\nspec:\n  cases:\n    - {{name: c, agent: a{case}}}\n")
    };
    docs.extend([
        AGENT.replace("  role: worker", "  rol: worker"),
        format!("{AGENT}  max_steps: three\n"),
        format!("{AGENT}  max_steps: 0\n"),
        format!("{AGENT}  max_steps: 33\n"),
        format!("{AGENT}  max_steps: 32\n"),
        agent("  role: r\n"),
        agent("  role: r\n  template: t.j2\n  prompt: p.j2\n"),
        agent("  role: r\n  model: {provider: p, model: m}\n"),
        agent("  role: r\n  model: {provider: p, model: m}\n  prompt: p.j2\n"),
        agent("  role: r\n  model: {provider: p, model: m, temperature: 3}\n  prompt: p.j2\n"),
        agent("  role: r\n  model: {provider: p, model: m, max_tokens: 0}\n  prompt: p.j2\n"),
        agent("  role: r\n  template: t.j2\n  model: {provider: p, model: m}\n  prompt: p.j2\n"),
        tool(""),
        tool("  builtin: fs.read\n"),
        tool("  builtin: fs.read\n  command: tools/x\n"),
        tool("  command: tools/x\n  timeout: 5 s\n"),
        tool("  command: tools/x\n  timeout: 1h30m\n"),
        tool("  command: tools/x\n  max_output_bytes: 0\n"),
        tool("  command: tools/x\n  scopes: [{pointer: /path, kind: read}]\n"),
        tool("  command: tools/x\n  scopes: [{pointer: /path, kind: delete}]\n"),
        sched("  every: 5m\n"),
        sched("  every: 5m\n  cron: '@daily'\n"),
        sched(""),
        sched("  at: '2030-01-01T00:00:00Z'\n  catch_up: sometimes\n"),
        sched("  cron: '0 3 * * *'\n  catch_up: all\n  enabled: false\n  jitter: 30s\n"),
        eval(""),
        eval(", responses: [x]"),
        eval(", responses: [x], responses_file: evals/x.json"),
        eval(", expect: {state: DONE, gate: accept}"),
        eval(", expect: {state: done}"),
        "apiVersion: jaros/v1\nkind: Eval\nmetadata:\n  name: e\nspec:\n  cases: []\n".into(),
        "apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  pool_size: 0\n".into(),
        "apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  pool_size: 300\n".into(),
        // One over u32::MAX: the schema bounds an integer by its Rust type.
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: r\nspec: {budget: {decisions: 4294967296}}\n".into(),
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: r\nspec: {budget: {decisions: 4294967295}}\n".into(),
        "apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  providers: {x: {kind: echo, api_key_env: 'not a name'}}\n".into(),
        "apiVersion: jaros/v1\nkind: Node\nmetadata:\n  name: n\nspec:\n  providers: {x: {kind: gpt}}\n".into(),
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: 'bad name'\nspec: {}\n".into(),
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: r\n  labels: {team: a}\nspec: {budget: {wall_time: 5m, tokens: 10}}\n".into(),
        "apiVersion: jaros/v2\nkind: Role\nmetadata:\n  name: r\nspec: {}\n".into(),
        "apiVersion: jaros/v1\nkind: Agnet\nmetadata:\n  name: r\nspec: {}\n".into(),
        "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: r\n".into(),
        "- just\n- a list\n".into(),
    ]);
    docs
}

#[test]
fn the_schema_and_the_parser_agree_on_every_fixture() {
    let mut checked = 0;
    let (mut accepted, mut rejected) = (0, 0);
    for text in agreement_fixtures() {
        let docs = yaml::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        for doc in docs {
            let schema = validate::Schemas::shared().accept(&doc.value);
            let parser = validate::parse_document(&doc.value);
            assert_eq!(
                schema,
                parser.is_ok(),
                "schema says {schema}, parser says {parser:?}, for:\n{text}"
            );
            // The loader's verdict is the same again.
            assert_eq!(
                schema,
                validate::Schemas::shared().check(&doc).is_ok(),
                "{text}"
            );
            checked += 1;
            if schema {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
    }
    assert!(
        checked > 50 && accepted > 15 && rejected > 25,
        "{checked} {accepted} {rejected}"
    );
}

#[test]
fn the_committed_schemas_validate_the_example_manifests() {
    // What an editor does: validate against the files in schemas/.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (path, bytes) in manifest::embedded::FILES
        .iter()
        .filter(|(p, _)| p.starts_with("manifests/"))
    {
        for doc in yaml::parse(bytes).unwrap() {
            let kind = validate::document_kind(&doc.value).unwrap();
            let schema: Value = serde_json::from_slice(
                &std::fs::read(root.join("schemas").join(kind.schema_file())).unwrap(),
            )
            .unwrap();
            let validator = jsonschema::validator_for(&schema).unwrap();
            assert!(validator.is_valid(&doc.value), "{path}");
        }
    }
}

// ------------------------------------------------------------ robustness

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    const PIECES: [&[u8]; 16] = [
        b":", b"- ", b"\t", b"\n", b"{", b"}", b"[", b"]", b"'", b"\"", b"&a ", b"*a", b"!!str ",
        b"---\n", b"\xff", b"  ",
    ];
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            1 => {
                let piece = PIECES[rng.below(PIECES.len())];
                out.splice(at..at, piece.iter().copied());
            }
            2 => out.truncate(at),
            3 => {
                let end = (at + rng.below(40)).min(out.len());
                let copy = out[at..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, copy);
            }
            4 => {
                if at < out.len() {
                    out[at] = (rng.next() & 0xff) as u8;
                }
            }
            _ => {
                let word: &[u8] = [
                    b"role".as_slice(),
                    b"spec",
                    b"kind: Tool",
                    b"true",
                    b"null",
                    b"99999999999999999999",
                    b"~",
                ][rng.below(7)];
                out.splice(at..at, word.iter().copied());
            }
        }
    }
    out
}

#[test]
fn thousands_of_mutated_manifests_never_panic_the_loader() {
    let seeds: Vec<&[u8]> = manifest::embedded::FILES
        .iter()
        .filter(|(p, _)| p.starts_with("manifests/"))
        .map(|(_, b)| *b)
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut with_errors = 0;
    for i in 0..3000 {
        let input = mutate(&mut rng, seeds[i % seeds.len()]);
        let errors = manifest::check_file_bytes(&input);
        with_errors += usize::from(!errors.is_empty());
        for (pos, message) in errors {
            assert!(pos.line >= 1 && pos.col >= 1 && !message.is_empty());
        }
    }
    assert!(
        with_errors > 1000,
        "the mutations should break most inputs: {with_errors}"
    );
}

#[test]
fn a_mutated_hive_never_panics_validate() {
    // The whole binary, on a few hive-wide mutations: exit 0 or 1, never a crash.
    let mut rng = Rng(42);
    let hive = Hive::minimal();
    for _ in 0..20 {
        let role = mutate(&mut rng, ROLE.as_bytes());
        let agent = mutate(&mut rng, AGENT.as_bytes());
        hive.write("manifests/role.yaml", &role);
        hive.write("manifests/agent.yaml", &agent);
        let run = hive.jaros(&["validate"]);
        assert!(
            matches!(run.code(), 0 | 1),
            "{}\n{}",
            run.context,
            run.stderr()
        );
    }
}

#[test]
fn a_template_rendering_invalid_json_fails_the_job_naming_the_template_and_the_text() {
    let hive = gate_hive("  types: [advance]", "this is {{ 'not' }} json", "");
    let result = run_a(&hive);
    assert_eq!(result["state"], "FAILED");
    assert_eq!(
        result["reason"],
        "template 'agents/a.j2' rendered no valid decisions (not valid JSON (expected ident at line 1 column 2)); it rendered: this is not json"
    );
}
