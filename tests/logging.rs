//! The node's diagnostics through `tracing`: the plain lines people read
//! are still there in the text format (the default on a terminal), the
//! JSON format (the default otherwise) is one object a line with level,
//! target, fields and the job's span, and `JAROS_LOG` filters by level.

mod common;

use common::{bin, example_hive, wait_until, Hive};
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// `program` in `hive`, with none of the hive, data dir or log settings of
/// the environment the tests run in.
fn in_hive(program: impl AsRef<std::ffi::OsStr>, hive: &Hive) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(hive.path())
        .env_remove("JAROS_HIVE")
        .env_remove("JAROS_DATA_DIR")
        .env_remove("JAROS_LOG")
        .env_remove("RUST_LOG")
        .env_remove("JAROS_LOG_FORMAT");
    cmd
}

/// Runs a node with `log_args` (before `serve`) and `env` over one job that
/// is done and one whose agent does not exist, stops it and returns its
/// stderr.
fn node_stderr(hive: &Hive, log_args: &[&str], env: &[(&str, &str)]) -> String {
    let stderr = hive.path().join("node.stderr");
    let mut cmd = in_hive(bin(), hive);
    cmd.args(log_args)
        .arg("serve")
        .args(common::FAST)
        .args(["--node-id", "n1", "--verbose"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let inbox = hive.data().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let temp = hive.path().join("bad.tmp");
    std::fs::write(&temp, r#"{"id":"bad","agent":"nope","input":{}}"#).unwrap();
    std::fs::rename(&temp, inbox.join("bad.json")).unwrap();
    let run = hive
        .jaros(&["submit", "advance", "--id", "good", "--wait", "30"])
        .expect(0);
    assert_eq!(run.json()["state"], "DONE", "{}", run.context());
    wait_until(WAIT, "the bad file to fail", || {
        hive.data().join("failed/bad.json").exists()
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let code = common::wait_timeout(&mut child, WAIT);
    let text = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(code, 0, "{text}");
    text
}

#[test]
fn the_text_format_keeps_the_lines_the_node_always_printed() {
    let hive = example_hive();
    let text = node_stderr(&hive, &["--log-format", "text"], &[]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("jaros: node n1: bad failed: ")
                && l.ends_with("(failed/bad.json)")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("jaros: node n1: good DONE (advance, ")),
        "{text}"
    );
    assert!(
        text.contains("jaros: node stopped (1 done, 0 failed)"),
        "{text}"
    );
    assert!(!text.contains("\"level\""), "{text}");
}

#[test]
fn the_json_format_is_one_object_a_line_with_level_target_fields_and_the_jobs_span() {
    let hive = example_hive();
    // No format asked for and stderr a file: JSON.
    let text = node_stderr(&hive, &[], &[]);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{text}")))
        .collect();
    assert!(!lines.is_empty(), "{text}");
    for line in &lines {
        assert!(line["level"].is_string(), "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(
            line["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("jaros")),
            "{line}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let message = |l: &serde_json::Value| l["fields"]["message"].as_str().unwrap_or("").to_string();
    let failed = lines
        .iter()
        .find(|l| message(l).starts_with("node n1: bad failed: "))
        .unwrap_or_else(|| panic!("no failure line\n{text}"));
    assert_eq!(failed["level"], "WARN", "{failed}");
    let done = lines
        .iter()
        .find(|l| message(l).starts_with("node n1: good DONE"))
        .unwrap_or_else(|| panic!("no done line\n{text}"));
    assert_eq!(done["level"], "INFO", "{done}");
    assert_eq!(done["span"]["name"], "job", "{done}");
    assert_eq!(done["span"]["job"], "good", "{done}");
    assert_eq!(done["span"]["agent"], "advance", "{done}");
    assert_eq!(done["span"]["node"], "n1", "{done}");
}

#[test]
fn jaros_log_filters_by_level_and_the_format_comes_from_the_environment() {
    let hive = example_hive();
    let text = node_stderr(
        &hive,
        &[],
        &[("JAROS_LOG", "warn"), ("JAROS_LOG_FORMAT", "json")],
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{text}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"] == "WARN" || l["level"] == "ERROR"),
        "{text}"
    );
    assert!(text.contains("bad failed"), "{text}");
    assert!(!text.contains("good DONE"), "{text}");
}

/// An inbox file name that tries to forge log lines: a quote and a brace
/// to close a JSON object, a newline and a fake line of each format.
const HOSTILE_NAME: &str = "ev\"}\njaros: node n1: FAKE DONE\n{\"level\":\"ERROR\",\"x\":\"\r.json";

/// Runs a node over the hostile inbox file until idle, with `log_args`;
/// returns its stderr.
fn hostile_stderr(log_args: &[&str]) -> String {
    let hive = example_hive();
    let inbox = hive.data().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let temp = hive.path().join("hostile.tmp");
    std::fs::write(&temp, r#"{"id":"x","agent":"advance","input":{}}"#).unwrap();
    std::fs::rename(&temp, inbox.join(HOSTILE_NAME)).unwrap();
    let out = in_hive(bin(), &hive)
        .args(log_args)
        .args([
            "serve",
            "--node-id",
            "n1",
            "--exit-when-idle",
            "--scan-ms",
            "20",
        ])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        !inbox.join(HOSTILE_NAME).exists(),
        "the hostile file was refused: {text}"
    );
    text
}

#[test]
fn a_hostile_file_name_cannot_forge_a_line_of_the_text_format() {
    let text = hostile_stderr(&["--log-format", "text"]);
    assert!(text.contains("FAKE DONE"), "the name is logged: {text}");
    for line in text.lines() {
        assert!(
            !line.starts_with("jaros: node n1: FAKE") && !line.starts_with('{'),
            "a forged line: {line:?}\n{text}"
        );
        assert!(
            line.starts_with("jaros: ") || line.starts_with("  "),
            "a line that is neither an event nor its continuation: {line:?}\n{text}"
        );
    }
    assert!(!text.contains('\r'), "{text:?}");
}

#[test]
fn a_hostile_file_name_stays_inside_one_json_line() {
    let text = hostile_stderr(&["--log-format", "json"]);
    let mut named = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{text}"));
        assert_ne!(v["level"], "ERROR", "{line}");
        let message = v["fields"]["message"].as_str().unwrap_or("");
        if message.contains(HOSTILE_NAME.trim_end_matches(".json")) {
            named += 1;
        }
    }
    assert_eq!(named, 1, "the name, whole, in one line's message: {text}");
}

#[test]
fn on_a_terminal_the_default_is_the_text_format() {
    let hive = example_hive();
    let inbox = hive.data().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let temp = hive.path().join("bad.tmp");
    std::fs::write(&temp, r#"{"id":"bad","agent":"nope","input":{}}"#).unwrap();
    std::fs::rename(&temp, inbox.join("bad.json")).unwrap();
    // script(1) gives the node a terminal for stdout and stderr.
    let command = format!("{} serve --node-id n1 --exit-when-idle --scan-ms 20", bin());
    let out = in_hive("script", &hive)
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux runs (apt-get install -y bsdutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("jaros: node n1: bad failed: ")),
        "{text}"
    );
    assert!(lines.iter().all(|l| !l.starts_with('{')), "{text}");
}

#[test]
fn rust_log_filters_when_jaros_log_is_unset_and_jaros_log_wins_over_it() {
    let fmt = ["--log-format", "text"];
    let warn_only = node_stderr(&example_hive(), &fmt, &[("RUST_LOG", "warn")]);
    assert!(warn_only.contains("bad failed"), "{warn_only}");
    assert!(!warn_only.contains("good DONE"), "{warn_only}");
    let both = node_stderr(
        &example_hive(),
        &fmt,
        &[("RUST_LOG", "warn"), ("JAROS_LOG", "info")],
    );
    assert!(both.contains("good DONE"), "{both}");
    // A filter that does not parse is said once, naming the variable, and
    // info is used.
    let bad = node_stderr(&example_hive(), &fmt, &[("JAROS_LOG", "jaros=loud")]);
    assert!(
        bad.contains("JAROS_LOG=\"jaros=loud\" is not a log filter"),
        "{bad}"
    );
    assert!(bad.contains("good DONE"), "{bad}");
}
