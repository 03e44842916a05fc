//! Driving the real binary on temp hives, with failures that show the
//! command, the directory and what was in it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `jaros serve` flags for tests: short leases, heartbeats and scans, so
/// takeovers and recovery happen in seconds.
pub const FAST: &[&str] = &[
    "--lease-ms",
    "1500",
    "--heartbeat-ms",
    "200",
    "--scan-ms",
    "50",
];

pub struct Hive {
    pub dir: tempfile::TempDir,
}

impl Hive {
    /// An empty hive: just `manifests/`.
    pub fn empty() -> Hive {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
        Hive { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data(&self) -> PathBuf {
        self.path().join(".jaros-data")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Runs `jaros` with `args` in the hive.
    pub fn jaros(&self, args: &[&str]) -> Run {
        run_in(self.path(), args)
    }

    /// The single log file of this hive's data dir.
    pub fn log_file(&self) -> PathBuf {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.data().join("log"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        assert_eq!(logs.len(), 1, "expected one log: {logs:?}");
        logs.pop().unwrap()
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_jaros")
}

pub struct Run {
    pub output: Output,
    pub cmd: String,
    pub cwd: PathBuf,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.context()))
    }

    pub fn context(&self) -> String {
        let listing = walk(&self.cwd);
        format!(
            "command: {}\ncwd: {}\nexit: {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- files\n{}",
            self.cmd,
            self.cwd.display(),
            self.output.status.code(),
            self.stdout(),
            self.stderr(),
            listing.join("\n")
        )
    }

    /// Asserts the exit code, showing everything when it is not.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            code,
            "unexpected exit code\n{}",
            self.context()
        );
        self
    }
}

pub fn run_in(cwd: &Path, args: &[&str]) -> Run {
    let output = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("JAROS_HIVE")
        .env_remove("JAROS_DATA_DIR")
        .output()
        .expect("the jaros binary runs");
    Run {
        output,
        cmd: format!("jaros {}", args.join(" ")),
        cwd: cwd.to_path_buf(),
    }
}

/// At most this many entries are listed, so a failing test's report stays
/// readable and a huge directory cannot stall it.
pub const MAX_LISTED_ENTRIES: usize = 500;

/// Every file below `dir`, relative, sorted: symbolic links are listed as
/// `name -> target` and never followed, so a link out of a test's temp dir
/// (to `/`, to `$TMPDIR`) cannot make a test read the rest of the machine;
/// `target/` and `.git/` are skipped; at most [`MAX_LISTED_ENTRIES`].
pub fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if out.len() >= MAX_LISTED_ENTRIES {
                out.sort();
                return out;
            }
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            // file_type() does not follow symbolic links.
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_symlink() {
                let target = std::fs::read_link(&p).unwrap_or_default();
                out.push(format!("{rel} -> {}", target.display()));
            } else if kind.is_dir() {
                if rel != "target" && rel != ".git" {
                    stack.push(p);
                }
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// sha256 of every file below `dir`, to prove a command changed nothing.
pub fn fingerprint(dir: &Path) -> Vec<(String, String)> {
    walk(dir)
        .into_iter()
        .map(|rel| {
            let bytes = std::fs::read(dir.join(&rel)).unwrap();
            (rel, jaros::canon::Digest::of_bytes(&bytes).to_hex())
        })
        .collect()
}

/// A hive written by `jaros init` (the embedded example), without its
/// schedules: a node would fire them into tests that count jobs.
/// `tests/schedules.rs` writes its own.
pub fn example_hive() -> Hive {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["init", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "jaros init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(dir.path().join("manifests/schedules")).unwrap();
    Hive { dir }
}

/// A `jaros serve` process in the background.
pub struct Node {
    pub child: std::process::Child,
    pub stderr: PathBuf,
}

impl Node {
    pub fn start(hive: &Path, args: &[&str]) -> Node {
        let stderr = hive.join(format!(
            "node-{}.stderr",
            std::process::id() as u64 * 1000 + rand_suffix()
        ));
        let child = Command::new(bin())
            .arg("serve")
            .args(args)
            .current_dir(hive)
            .env_remove("JAROS_HIVE")
            .env_remove("JAROS_DATA_DIR")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Node { child, stderr }
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn stop(mut self) -> (i32, String) {
        self.signal("TERM");
        let code = wait_timeout(&mut self.child, std::time::Duration::from_secs(30));
        (
            code,
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

pub fn wait_timeout(child: &mut std::process::Child, limit: std::time::Duration) -> i32 {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits until `cond` holds, or fails the test with `what`.
pub fn wait_until(limit: std::time::Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Job files in a stage directory (`inbox`, `claimed`, `done`, `failed`).
pub fn count_jobs(data: &Path, stage: &str) -> usize {
    std::fs::read_dir(data.join(stage))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name().to_string_lossy().ends_with(".json")
                        && !e.file_name().to_string_lossy().starts_with('.')
                })
                .count()
        })
        .unwrap_or(0)
}

/// Runs git in `dir` as a throwaway identity, outside any repository the
/// test runs in; fails the test when git fails.
pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.email=test@example.com", "-c", "user.name=test"])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Replaces the first `from` in the file at `path` with `to`; fails the test
/// when the file lacks it.
pub fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Writes an approval request for job `job` (agent `clerk`, a hand-off to
/// `billing` that approvers `ops-lead` and `finance` may answer) as a node
/// parks it, with its ticket in `approvals/parked/`.
pub fn park_request(hive: &Hive, job: &str, expires_ms: u64) -> jaros::approval::store::Request {
    use jaros::approval::store::{Link, Request, Store};
    use jaros::datadir::DataDir;
    use jaros::decision::{AgentName, Decision, DecisionId, JobId};
    let data = DataDir::new(hive.data());
    data.create().unwrap();
    let id = JobId::new(job).unwrap();
    let request = Request {
        job: id.clone(),
        agent: "clerk".into(),
        decision: Decision {
            id: DecisionId::new(&id, 1, 0),
            source: AgentName::new("clerk").unwrap(),
            kind: "handoff".into(),
            payload: serde_json::json!({"agent": "billing", "input": {"amount": 500}}),
        },
        approvers: vec!["ops-lead".into(), "finance".into()],
        requested_ms: 1,
        expires_ms,
        chain: vec![Link {
            job: id.clone(),
            agent: "clerk".into(),
            via: None,
        }],
        node: "n1".into(),
    };
    let store = Store::new(&data);
    store.write_request(&request).unwrap();
    std::fs::create_dir_all(store.parked()).unwrap();
    std::fs::write(
        store.parked_path(&id),
        format!(r#"{{"id": "{job}", "agent": "clerk", "input": {{"amount": 500}}}}"#),
    )
    .unwrap();
    request
}
