//! The first hour of a new user, command by command: the global flags work
//! or are refused with a reason everywhere, a new hive's `$schema`
//! modelines point at files it has, the demo runs twice in one directory,
//! and `--input` reads a file or stdin.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::run_in;

/// A fresh `jaros init` hive at `<tempdir>/hive`.
fn init(dir: &Path) -> std::path::PathBuf {
    run_in(dir, &["init", "hive"]).expect(0);
    dir.join("hive")
}

// ------------------------------------------------------------ global flags

#[test]
fn validate_takes_the_global_hive_flag() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let run = run_in(dir.path(), &["validate", "--hive", "hive"]).expect(0);
    assert!(run.stdout().starts_with("ok: "), "{}", run.context());
    run_in(dir.path(), &["--hive", "hive", "validate"]).expect(0);
    // The positional HIVE and --hive agree, or the command says which two.
    run_in(dir.path(), &["validate", "hive", "--hive", "hive"]).expect(0);
    std::fs::create_dir_all(dir.path().join("other/manifests")).unwrap();
    let run = run_in(dir.path(), &["validate", "other", "--hive", "hive"]).expect(2);
    assert!(
        run.stderr().contains("two hives given"),
        "{}",
        run.context()
    );
}

#[test]
fn init_writes_where_hive_points_and_refuses_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), &["--hive", "h", "init"]).expect(0);
    assert!(dir.path().join("h/manifests/node.yaml").is_file());
    let run = run_in(dir.path(), &["init", "h2", "--data-dir", "d"]).expect(2);
    assert!(
        run.stderr().contains("drop --data-dir"),
        "{}",
        run.context()
    );
    assert!(!dir.path().join("h2").exists() && !dir.path().join("d").exists());
    let run = run_in(dir.path(), &["init", "h3", "--hive", "h4"]).expect(2);
    assert!(
        run.stderr().contains("two directories given"),
        "{}",
        run.context()
    );
    let run = run_in(dir.path(), &["init"]).expect(2);
    assert!(run.stderr().contains("jaros init DIR"), "{}", run.context());
}

#[test]
fn init_ignores_the_environment_hive_it_was_not_told_to_use() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin())
        .arg("init")
        .current_dir(dir.path())
        .env("JAROS_HIVE", dir.path().join("from-env"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("from-env").exists());
}

// ------------------------------------------------------------------ schemas

#[test]
fn every_modeline_of_a_new_hive_points_at_a_schema_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let hive = init(dir.path());
    let mut checked = 0;
    for rel in common::walk(&hive.join("manifests")) {
        let path = hive.join("manifests").join(&rel);
        let text = std::fs::read_to_string(&path).unwrap();
        let Some(target) = text
            .lines()
            .find_map(|l| l.strip_prefix("# yaml-language-server: $schema="))
        else {
            continue;
        };
        let schema = path.parent().unwrap().join(target.trim());
        assert!(
            schema.is_file(),
            "manifests/{rel} points at {target}, which does not exist"
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&schema).unwrap()).unwrap();
        assert!(v.is_object(), "{}", schema.display());
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} manifests had a modeline");
    run_in(&hive, &["schema", "--check"]).expect(0);
}

#[test]
fn schema_writes_into_the_hive_from_any_directory_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let hive = init(dir.path());
    std::fs::remove_dir_all(hive.join("schemas")).unwrap();
    std::fs::create_dir_all(hive.join("manifests/agents")).unwrap();
    run_in(&hive.join("manifests/agents"), &["schema"]).expect(0);
    assert!(hive.join("schemas/agent.json").is_file());
    assert!(!hive.join("manifests/agents/schemas").exists());
    run_in(&hive.join("manifests"), &["schema", "--check"]).expect(0);
    run_in(dir.path(), &["--hive", "hive", "schema", "--check"]).expect(0);
}

// --------------------------------------------------------------------- demo

#[test]
fn the_demo_runs_again_in_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), &["demo", "--dir", "d"]).expect(0);
    let run = run_in(dir.path(), &["demo", "--dir", "d"]).expect(0);
    assert!(
        run.stderr().contains("earlier run's data dir is kept at"),
        "{}",
        run.context()
    );
    assert!(dir.path().join("d/.jaros-data.1/done").is_dir());
    assert!(
        run.stdout().contains("jaros blame T3-1.0"),
        "{}",
        run.context()
    );
    // --hive names the demo's directory, --data-dir its data dir.
    run_in(dir.path(), &["--hive", "e", "--data-dir", "ed", "demo"]).expect(0);
    assert!(dir.path().join("ed/done/T1.json").is_file());
    let run = run_in(dir.path(), &["--hive", "e", "--data-dir", "ed", "demo"]).expect(2);
    assert!(
        run.stderr().contains("holds an earlier run"),
        "{}",
        run.context()
    );
}

/// On a terminal the progress bar redraws one line; the node's banner must
/// not land on it. Runs the demo under `script(1)` for a terminal.
#[test]
fn the_demo_banner_and_progress_bar_have_lines_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let command = format!("{} demo --dir d", common::bin());
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir.path())
        .env_remove("JAROS_HIVE")
        .env_remove("JAROS_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux runs (apt-get install -y bsdutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let banner = text
        .split(['\r', '\n'])
        .find(|l| l.contains(" serving "))
        .unwrap_or_else(|| panic!("no banner in\n{text}"));
    assert!(
        banner.starts_with("jaros: node ") && !banner.contains("jobs finished"),
        "banner shares a line: {banner:?}"
    );
}

// -------------------------------------------------------------------- input

/// Every log of the hive's data dir, as text: a job's input is in its
/// `job` record.
fn log_text(hive: &Path) -> String {
    let logs = hive.join(".jaros-data/log");
    common::walk(&logs)
        .iter()
        .filter(|rel| rel.ends_with(".jsonl"))
        .map(|rel| std::fs::read_to_string(logs.join(rel)).unwrap())
        .collect()
}

#[test]
fn input_is_read_from_a_file_or_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let hive = init(dir.path());
    std::fs::write(hive.join("in.json"), r#"{"note": "from a file"}"#).unwrap();
    run_in(&hive, &["run", "advance", "--input", "@in.json"]).expect(0);
    assert!(log_text(&hive).contains("from a file"));
    let run = run_in(&hive, &["run", "advance", "--input", "@missing.json"]).expect(2);
    assert!(run.stderr().contains("missing.json"), "{}", run.context());

    for command in ["run", "submit"] {
        let mut child = Command::new(common::bin())
            .args([command, "advance", "--input", "-"])
            .current_dir(&hive)
            .env_remove("JAROS_HIVE")
            .env_remove("JAROS_DATA_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!(r#"{{"note": "{command} from stdin"}}"#).as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if command == "run" {
            assert!(log_text(&hive).contains("run from stdin"));
        }
    }
    // The submitted job waits in the inbox with the input read from stdin.
    let inbox = common::walk(&hive.join(".jaros-data/inbox"));
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let job = std::fs::read_to_string(hive.join(".jaros-data/inbox").join(&inbox[0])).unwrap();
    assert!(job.contains("submit from stdin"), "{job}");
}

// ------------------------------------------------------------- deployments

/// A pod's probe runs `jaros status` with JAROS_NODE_ID set to its own
/// node: another live node on the shared data dir must not make it pass.
#[test]
fn status_checks_one_node_when_told_which() {
    let hive = common::example_hive();
    let node = common::Node::start(hive.path(), &["--node-id", "pod-a"]);
    common::wait_until(
        std::time::Duration::from_secs(30),
        "node pod-a to be live",
        || hive.jaros(&["status", "--node", "pod-a"]).code() == 0,
    );
    hive.jaros(&["status"]).expect(0);
    let run = hive.jaros(&["status", "--node", "pod-b"]).expect(1);
    assert!(
        run.stderr().contains("no node 'pod-b'"),
        "{}",
        run.context()
    );
    assert!(run.stderr().contains("pod-a"), "{}", run.context());
    // The same through the environment, as the probes and health checks do.
    let out = Command::new(common::bin())
        .arg("status")
        .current_dir(hive.path())
        .env_remove("JAROS_HIVE")
        .env_remove("JAROS_DATA_DIR")
        .env("JAROS_NODE_ID", "pod-b")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (code, _) = node.stop();
    assert_eq!(code, 0);
    let run = hive.jaros(&["status", "--node", "pod-a"]).expect(1);
    assert!(run.stderr().contains("not live"), "{}", run.context());
}

/// The deployment files say what the probes, the CronJob and the unit need.
#[test]
fn the_deployments_probe_their_own_node_and_mount_what_they_read() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).unwrap();
    let deployment = read("k8s/deployment.yaml");
    assert!(
        deployment.contains("- name: JAROS_NODE_ID\n              valueFrom:\n                fieldRef:\n                  fieldPath: metadata.name"),
        "{deployment}"
    );
    assert!(deployment.contains(r#"args: ["--node-id", "$(JAROS_NODE_ID)"]"#));
    let cronjob = read("k8s/cronjob.yaml");
    assert!(cronjob.contains("JAROS_HIVE") && cronjob.contains("mountPath: /hive/manifests"));
    assert!(cronjob.contains("configMap:\n                name: jaros-manifests"));
    let compose = read("compose.yaml");
    for n in 1..=3 {
        assert!(
            compose.contains(&format!("JAROS_NODE_ID: node-{n}")),
            "{compose}"
        );
    }
    let unit = read("systemd/jaros.service");
    assert!(unit.contains("\nUMask=0007\n") && unit.contains("\nStateDirectoryMode=0770\n"));
    let license = std::fs::read_to_string(root.parent().unwrap().join("LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));
}

// ------------------------------------------------------------ shell and man

/// The subcommands `jaros --help` lists.
fn subcommands() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let help = run_in(dir.path(), &["--help"]).expect(0).stdout();
    let list = help
        .split("\nCommands:\n")
        .nth(1)
        .expect("--help lists the commands");
    let names: Vec<String> = list
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 18, "{names:?}");
    names
}

#[test]
fn completions_name_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let names = subcommands();
    assert!(names.iter().any(|n| n == "completions") && names.iter().any(|n| n == "man"));
    for shell in ["bash", "zsh", "fish"] {
        let script = run_in(dir.path(), &["completions", shell])
            .expect(0)
            .stdout();
        for name in &names {
            assert!(
                script.contains(name.as_str()),
                "the {shell} completions miss `{name}`"
            );
        }
        assert!(
            !script.contains("__sandbox-exec"),
            "{shell}: a hidden command"
        );
    }
    run_in(dir.path(), &["completions", "tcsh"]).expect(2);
    let run = run_in(dir.path(), &["--hive", "h", "completions", "bash"]).expect(2);
    assert!(
        run.stderr().contains("does not use --hive"),
        "{}",
        run.context()
    );
}

#[test]
fn man_pages_list_every_subcommand_and_one_page_each() {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), &["man", "--out", "man1"]).expect(0);
    let page = std::fs::read_to_string(dir.path().join("man1/jaros.1")).unwrap();
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH jaros"),
        "{page}"
    );
    for name in subcommands() {
        assert!(
            page.contains(&format!("jaros\\-{name}(1)")),
            "jaros.1 does not list `{name}`"
        );
        let sub = dir.path().join(format!("man1/jaros-{name}.1"));
        assert!(sub.is_file(), "no page {}", sub.display());
    }
    let printed = run_in(dir.path(), &["man"]).expect(0).stdout();
    assert_eq!(printed, page);
}
