//! A full disk under a hand-off, a tool's effect and a result write: the job
//! is held (or its result retried), never failed for it, and completes once
//! space is freed; every job ends with exactly one result, and `jaros
//! verify` and `jaros replay` pass.
//!
//! Each test mounts a small tmpfs (root only), so they are ignored by
//! default and run by `scripts/fault-tests.sh`. Where the data dir is the
//! tmpfs, its logs and node status files are linked out to the hive's disk:
//! the decision log on a full disk poisons itself and stops the node by
//! design, and these tests are about what happens to the jobs.

mod common;

use common::{count_jobs, example_hive, wait_until, Hive, Node, FAST};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs this small fills in a moment.
const TMPFS_SIZE: &str = "1m";
const WAIT: Duration = Duration::from_secs(60);

/// A mounted tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs on {} (run as root: scripts/fault-tests.sh): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Fills the file system with `<dir>/filler` until it is full.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.0.join("filler")).unwrap();
        for chunk in [64 * 1024, 4096, 512, 1] {
            let bytes = vec![0u8; chunk];
            while file.write_all(&bytes).and_then(|_| file.flush()).is_ok() {}
        }
        let probe = std::fs::write(self.0.join("probe"), b"x");
        assert!(probe.is_err(), "the tmpfs is not full");
    }

    /// Frees `bytes` of a full file system (the filler's last ones).
    fn leave(&self, bytes: u64) {
        let filler = std::fs::OpenOptions::new()
            .write(true)
            .open(self.0.join("filler"))
            .unwrap();
        let len = filler.metadata().unwrap().len();
        filler.set_len(len.saturating_sub(bytes)).unwrap();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = FAST.to_vec();
    v.extend_from_slice(extra);
    v
}

/// The example hive plus a `wait` tool (sleeps two seconds, so a test can
/// fill the disk while it runs), a `mark` tool (answers at once) and an agent `name` that runs it and then
/// proposes `then`.
fn hive_with(name: &str, types: &str, extra_role: &str, then: &str) -> Hive {
    let hive = example_hive();
    hive.write(
        "manifests/tools/wait.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: wait\nspec:\n  type: wait\n  description: Sleeps two seconds.\n  command: tools/wait.sh\n  timeout: 20s\n  deterministic: false\n  payload_schema: {type: object}\n  result_schema: {type: object}\n",
    );
    hive.write(
        "tools/wait.sh",
        "#!/bin/sh\ncat >/dev/null\nsleep 2\necho '{\"waited\": 2}'\n",
    );
    hive.write(
        "manifests/tools/mark.yaml",
        "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: mark\nspec:\n  type: mark\n  description: Answers at once.\n  command: tools/mark.sh\n  timeout: 20s\n  deterministic: false\n  payload_schema: {type: object}\n  result_schema: {type: object}\n",
    );
    hive.write("tools/mark.sh", "#!/bin/sh\ncat >/dev/null\necho '{}'\n");
    for tool in ["tools/wait.sh", "tools/mark.sh"] {
        std::fs::set_permissions(
            hive.path().join(tool),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    hive.write(
        &format!("manifests/roles/{name}.yaml"),
        &format!("apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: {name}\nspec:\n  types: [wait, {types}]\n{extra_role}"),
    );
    hive.write(
        &format!("manifests/agents/{name}.yaml"),
        &format!("apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: {name}\nspec:\n  role: {name}\n  template: agents/{name}.j2\n"),
    );
    hive.write(
        &format!("agents/{name}.j2"),
        &format!(r#"[{{"type": "wait", "payload": {{}}}}, {then}]"#),
    );
    hive.jaros(&["validate"]).expect(0);
    hive
}

/// Mounts the tmpfs as the data dir, with the logs and node status files
/// linked out to the hive's own disk.
fn data_dir_on_tmpfs(hive: &Hive) -> Tmpfs {
    data_dir_on_tmpfs_but(hive, &["log", "audit", "nodes"])
}

/// Mounts the tmpfs as the data dir, with `outside` linked out to the
/// hive's own disk.
fn data_dir_on_tmpfs_but(hive: &Hive, outside: &[&str]) -> Tmpfs {
    let fs = Tmpfs::mount(&hive.data());
    for dir in outside {
        let outside = hive.path().join(format!("outside-{dir}"));
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, hive.data().join(dir)).unwrap();
    }
    fs
}

fn audit_has(hive: &Hive, needle: &str) -> bool {
    std::fs::read_dir(hive.path().join("outside-audit"))
        .map(|d| {
            d.flatten().any(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .contains(needle)
            })
        })
        .unwrap_or(false)
}

/// What `jaros status --json` says is held, as text.
fn held(hive: &Hive) -> String {
    let status = hive.jaros(&["status", "--json"]).json();
    status["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| n["held"].to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Every job has exactly one result, none failed; verify and replay pass.
fn all_done_once(hive: &Hive, jobs: usize) {
    let data = hive.data();
    assert_eq!(count_jobs(&data, "failed"), 0, "a job failed");
    assert_eq!(count_jobs(&data, "done"), jobs);
    for stage in ["inbox", "claimed"] {
        assert_eq!(count_jobs(&data, stage), 0, "a job is left in {stage}");
    }
    hive.jaros(&["verify"]).expect(0);
    let report = hive.jaros(&["replay", "--json"]).expect(0).json();
    assert_eq!(report["final_states"]["DONE"], jobs as u64, "{report}");
}

#[test]
#[ignore = "needs root for a tmpfs: run by scripts/fault-tests.sh"]
fn a_hand_off_that_meets_a_full_disk_is_held_and_completes_once_space_is_freed() {
    let hive = hive_with(
        "relay",
        "handoff",
        "  handoff: [advance]\n",
        r#"{"type": "handoff", "payload": {"agent": "advance", "input": {}}}"#,
    );
    let fs = data_dir_on_tmpfs(&hive);
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    hive.jaros(&["submit", "relay", "--id", "r1"]).expect(0);
    wait_until(WAIT, "the wait tool to start", || {
        audit_has(&hive, "tool wait (")
    });
    fs.fill();
    wait_until(WAIT, "the job to be held for the full disk", || {
        held(&hive).contains("ENOSPC")
    });
    assert_eq!(count_jobs(&hive.data(), "failed"), 0);
    let human = hive.jaros(&["status"]).stdout();
    assert!(
        human.contains("r1 held for retry") && human.contains("ENOSPC"),
        "{human}"
    );
    fs.free();
    wait_until(WAIT, "both jobs to finish", || {
        count_jobs(&hive.data(), "done") == 2
    });
    let (code, stderr) = node.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("holding r1 for retry: ENOSPC"), "{stderr}");
    all_done_once(&hive, 2);
}

#[test]
#[ignore = "needs root for a tmpfs: run by scripts/fault-tests.sh"]
fn a_file_write_that_meets_a_full_disk_is_held_and_completes_once_space_is_freed() {
    let hive = hive_with(
        "scribe",
        "fs.write",
        "  write: [\"out/**\"]\n",
        r#"{"type": "fs.write", "payload": {"path": "out/a.txt", "content": "written once space was freed\n"}}"#,
    );
    let fs = Tmpfs::mount(&hive.path().join("out"));
    fs.fill();
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    hive.jaros(&["submit", "scribe", "--id", "w1"]).expect(0);
    wait_until(WAIT, "the job to be held for the full disk", || {
        held(&hive).contains("ENOSPC")
    });
    assert_eq!(count_jobs(&hive.data(), "failed"), 0);
    fs.free();
    wait_until(WAIT, "the job to finish", || {
        count_jobs(&hive.data(), "done") == 1
    });
    let (code, stderr) = node.stop();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(hive.path().join("out/a.txt")).unwrap(),
        "written once space was freed\n"
    );
    all_done_once(&hive, 1);
}

#[test]
#[ignore = "needs root for a tmpfs: run by scripts/fault-tests.sh"]
fn a_result_that_meets_a_full_disk_is_written_once_space_is_freed() {
    let hive = hive_with(
        "napper",
        "advance",
        "",
        r#"{"type": "advance", "payload": {"events": ["start", "complete"]}}"#,
    );
    let fs = data_dir_on_tmpfs(&hive);
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    hive.jaros(&["submit", "napper", "--id", "n1"]).expect(0);
    wait_until(WAIT, "the wait tool to start", || {
        audit_has(&hive, "tool wait (")
    });
    fs.fill();
    wait_until(WAIT, "the job's end to be recorded", || {
        std::fs::read_dir(hive.path().join("outside-log"))
            .map(|d| {
                d.flatten().any(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .contains("\"kind\":\"end\"")
                })
            })
            .unwrap_or(false)
    });
    // Its result cannot be written: the job is neither done nor failed.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count_jobs(&hive.data(), "done"), 0);
    assert_eq!(count_jobs(&hive.data(), "failed"), 0);
    fs.free();
    wait_until(WAIT, "the job's result", || {
        count_jobs(&hive.data(), "done") == 1
    });
    let (code, stderr) = node.stop();
    assert_eq!(code, 0, "{stderr}");
    all_done_once(&hive, 1);
}

#[test]
#[ignore = "needs root for a tmpfs: run by scripts/fault-tests.sh"]
fn jaros_run_holds_a_file_write_on_a_full_disk_and_finishes_it_once_space_is_freed() {
    let hive = hive_with(
        "scribe",
        "fs.write",
        "  write: [\"out/**\"]\n",
        r#"{"type": "fs.write", "payload": {"path": "out/a.txt", "content": "written once space was freed\n"}}"#,
    );
    let fs = Tmpfs::mount(&hive.path().join("out"));
    fs.fill();
    // `jaros run` in the background; space is freed once it says it holds.
    let stderr_path = hive.path().join("run.stderr");
    let mut run = Command::new(common::bin())
        .args(["run", "scribe"])
        .current_dir(hive.path())
        .env_remove("JAROS_HIVE")
        .env_remove("JAROS_DATA_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(&stderr_path)
        .unwrap_or_default()
        .contains("held for retry")
    {
        let exited = run.try_wait().unwrap();
        assert!(
            exited.is_none() && std::time::Instant::now() < deadline,
            "jaros run did not hold the job ({exited:?}): {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    fs.free();
    let code = common::wait_timeout(&mut run, WAIT);
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(code, 0, "{stderr}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut run.stdout.take().unwrap(), &mut stdout).unwrap();
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["state"], "DONE", "{stdout}");
    all_done_once(&hive, 1);
}

#[test]
#[ignore = "needs root for a tmpfs: run by scripts/fault-tests.sh"]
fn an_audit_log_on_a_full_disk_stops_the_node_and_a_restart_completes_the_job() {
    // Twenty quick tool runs after the first: their audit records outgrow
    // the page the audit log has, whatever its slack.
    let quick = vec![r#"{"type": "mark", "payload": {}}"#; 20].join(", ");
    let hive = hive_with("marker", "mark", "  budget:\n    decisions: 64\n", &quick);
    let fs = data_dir_on_tmpfs_but(&hive, &["log", "nodes"]);
    let mut node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    hive.jaros(&["submit", "marker", "--id", "m1"]).expect(0);
    wait_until(WAIT, "the wait tool to start", || {
        std::fs::read_dir(hive.data().join("audit"))
            .map(|d| {
                d.flatten().any(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .contains("tool wait (")
                })
            })
            .unwrap_or(false)
    });
    fs.fill();
    let code = common::wait_timeout(&mut node.child, WAIT);
    let stderr = node.log();
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("the audit log"), "{stderr}");
    assert_eq!(count_jobs(&hive.data(), "failed"), 0);
    fs.free();
    let node = Node::start(hive.path(), &args(&["--node-id", "a"]));
    wait_until(WAIT, "the job to finish", || {
        count_jobs(&hive.data(), "done") == 1
    });
    let (code, stderr) = node.stop();
    assert_eq!(code, 0, "{stderr}");
    all_done_once(&hive, 1);
}

/// A node whose log seals a segment (and signs a checkpoint of it) every
/// few jobs meets a full disk at whatever write comes next (an append, a
/// seal's rename, a new open segment, a checkpoint file), for several
/// amounts of space left. Whatever it meets, nothing is lost: once space is
/// freed and the node restarted, every job has one result, the chain runs
/// across every segment, replay passes, and every checkpoint written
/// verifies against the log that grew past it, and every sealed segment
/// has one (what a seal could not sign, the restarted node signs).
#[test]
#[ignore = "needs root for a tmpfs: run by scripts/fault-tests.sh"]
fn a_log_that_meets_a_full_disk_while_it_seals_and_signs_loses_nothing() {
    const JOBS: usize = 24;
    for room in [2 * 4096, 6 * 4096, 12 * 4096, 20 * 4096] {
        let hive = example_hive();
        let keygen = hive
            .jaros(&["keygen", "example.com/hive", "--out", "hive.key"])
            .expect(0);
        let vkey = keygen.stdout().lines().next().unwrap().to_string();
        let node_yaml = hive.path().join("manifests/node.yaml");
        let text = std::fs::read_to_string(&node_yaml).unwrap().replacen(
            "spec:\n",
            "spec:\n  checkpoint_key: hive.key\n  log:\n    segment_bytes: 4096\n",
            1,
        );
        std::fs::write(&node_yaml, text).unwrap();
        let fs = data_dir_on_tmpfs_but(&hive, &["nodes"]);
        for n in 0..JOBS {
            hive.jaros(&["submit", "advance", "--id", &format!("j{n}")])
                .expect(0);
        }
        fs.fill();
        fs.leave(room);
        // The first run stops at the full disk (a poisoned log stops the
        // node) or holds jobs until it is stopped; either way it is cut
        // short there.
        let mut first = Command::new(common::bin())
            .args(["serve", "--node-id", "n1", "--exit-when-idle"])
            .args(FAST)
            .current_dir(hive.path())
            .env_remove("JAROS_HIVE")
            .env_remove("JAROS_DATA_DIR")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while first.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if first.try_wait().unwrap().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &first.id().to_string()])
                .status();
            common::wait_timeout(&mut first, WAIT);
        }
        let done_before = count_jobs(&hive.data(), "done");
        assert!(
            done_before < JOBS,
            "room {room}: the disk filled too late to matter ({done_before} done)"
        );
        fs.free();
        let mut again = vec!["serve", "--node-id", "n1", "--exit-when-idle"];
        again.extend_from_slice(FAST);
        let run = hive.jaros(&again);
        assert_eq!(run.code(), 0, "room {room}: {}", run.context());
        all_done_once(&hive, JOBS);
        let sealed = std::fs::read_dir(hive.data().join("log/n1.segments"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(sealed >= 2, "room {room}: {sealed} segments sealed");
        let checkpoints: Vec<PathBuf> = std::fs::read_dir(hive.data().join("checkpoints/n1"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "checkpoint"))
            .collect();
        assert!(!checkpoints.is_empty(), "room {room}: no checkpoint");
        // A seal that met the full disk signed nothing; the restarted node
        // signed it.
        let unsigned =
            jaros::log::checkpoint::unsigned_ends(&jaros::datadir::DataDir::new(hive.data()), "n1")
                .unwrap();
        assert!(
            unsigned.is_empty(),
            "room {room}: unsigned ends {unsigned:?}"
        );
        for file in checkpoints {
            let verify = hive.jaros(&[
                "verify",
                "--checkpoint",
                file.to_str().unwrap(),
                "--key",
                &vkey,
            ]);
            assert_eq!(verify.code(), 0, "room {room}: {}", verify.context());
        }
    }
}
