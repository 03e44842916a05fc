//! Several hosts, as far as one machine can show them: three nodes, each on
//! its own sshfs mount (attribute caching on, no inotify across mounts) of
//! one directory exported by an OpenSSH server on loopback, 3,000 jobs, one
//! node SIGKILLed and restarted. Every job gets exactly one result (never
//! done and failed), ends once in the logs, and `jaros verify` and `jaros
//! replay` pass.
//!
//! Needs the mounts: `scripts/sshfs-test.sh` sets them up (OpenSSH and sshfs
//! from Debian) and runs this test with `JAROS_SSHFS_EXPORT` (the exported
//! directory, as the server sees it) and `JAROS_SSHFS_MOUNTS` (three mount
//! points, `:`-separated).

mod common;

use common::{bin, count_jobs, example_hive, wait_until};
use jaros::log::{read_log, Body};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const JOBS: usize = 3000;
/// Longer than the mounts' attribute cache (2 s) plus the file system's
/// one-second timestamps, many times over: see docs/filesystems.md.
const LEASE_MS: &str = "10000";
const HEARTBEAT_MS: &str = "1000";

fn env_path(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: this test needs sshfs mounts; run scripts/sshfs-test.sh")
    })
}

struct Node {
    child: Child,
    stderr: PathBuf,
}

impl Node {
    fn start(hive: &Path, id: &str, data: &str, run: usize) -> Node {
        let stderr = hive.join(format!("{id}.{run}.stderr"));
        let child = Command::new(bin())
            .args(["serve", "--node-id", id, "--data-dir", data, "--pool", "4"])
            .args(["--lease-ms", LEASE_MS, "--heartbeat-ms", HEARTBEAT_MS])
            .args(["--scan-ms", "200", "--no-notify"])
            .current_dir(hive)
            .env_remove("JAROS_HIVE")
            .env_remove("JAROS_DATA_DIR")
            .env_remove("JAROS_FAULT")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Node { child, stderr }
    }

    fn stop(mut self) -> (i32, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let code = common::wait_timeout(&mut self.child, Duration::from_secs(120));
        (
            code,
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ends that count per job (the takeover rule applied), over every log.
fn ends_per_job(data: &Path) -> HashMap<String, usize> {
    let mut per_job: BTreeMap<String, Vec<(u64, u32, bool)>> = BTreeMap::new();
    for entry in std::fs::read_dir(data.join("log")).unwrap().flatten() {
        if entry.path().extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        for r in read_log(&entry.path()).unwrap().records {
            if let Some((job, at)) = r.body.job_at() {
                let end = matches!(r.body, Body::End { .. });
                per_job
                    .entry(job.to_string())
                    .or_default()
                    .push((r.epoch, at, end));
            }
        }
    }
    let mut ends = HashMap::new();
    for (job, mut records) in per_job {
        records.sort_by_key(|r| r.1);
        let keys: Vec<(u64, u32)> = records.iter().map(|r| (r.0, r.1)).collect();
        let n = records
            .iter()
            .zip(jaros::takeover::voided(&keys))
            .filter(|(r, void)| r.2 && !void)
            .count();
        ends.insert(job, n);
    }
    ends
}

#[test]
#[ignore = "needs sshfs mounts: run by scripts/sshfs-test.sh"]
fn three_nodes_on_their_own_sshfs_mounts_run_every_job_exactly_once() {
    let export = PathBuf::from(env_path("JAROS_SSHFS_EXPORT"));
    let mounts: Vec<String> = env_path("JAROS_SSHFS_MOUNTS")
        .split(':')
        .map(String::from)
        .collect();
    assert_eq!(mounts.len(), 3, "JAROS_SSHFS_MOUNTS names three mounts");
    let hive = example_hive();
    // Jobs go in on the server's side (fast); the nodes see them through
    // their mounts.
    let server = jaros::datadir::DataDir::new(export.clone());
    for i in 0..JOBS {
        let job = jaros::node::inbox::JobFile {
            id: jaros::decision::JobId::new(format!("s{i:05}")).unwrap(),
            agent: jaros::decision::AgentName::new("advance").unwrap(),
            input: serde_json::json!({"i": i}),
            parent: None,
            via: None,
            resume: false,
            tree: Default::default(),
        };
        jaros::node::inbox::submit(&server, &job).unwrap();
    }
    let ids = ["n1", "n2", "n3"];
    let mut nodes: Vec<Option<Node>> = ids
        .iter()
        .zip(&mounts)
        .map(|(id, m)| Some(Node::start(hive.path(), id, m, 0)))
        .collect();
    let finished = || count_jobs(&export, "done") + count_jobs(&export, "failed");
    wait_until(Duration::from_secs(600), "a third of the jobs", || {
        finished() >= JOBS / 3
    });
    // n2 dies mid-run, holding claims, and comes back on its own mount.
    let mut killed = nodes[1].take().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    drop(killed);
    wait_until(Duration::from_secs(600), "two thirds of the jobs", || {
        finished() >= 2 * JOBS / 3
    });
    nodes[1] = Some(Node::start(hive.path(), "n2", &mounts[1], 1));
    wait_until(
        Duration::from_secs(900),
        "every job to have a result",
        || finished() >= JOBS,
    );
    wait_until(
        Duration::from_secs(120),
        "every claim to be retired",
        || count_jobs(&export, "claimed") == 0,
    );
    for node in nodes.into_iter().flatten() {
        let (code, log) = node.stop();
        assert_eq!(code, 0, "{log}");
    }
    let mut both = Vec::new();
    for i in 0..JOBS {
        let id = format!("s{i:05}");
        let done = export.join(format!("done/{id}.json")).exists();
        let failed = export.join(format!("failed/{id}.json")).exists();
        if done == failed {
            both.push((id, done, failed));
        }
    }
    let reasons: Vec<String> = both
        .iter()
        .take(3)
        .filter_map(|(id, _, _)| {
            std::fs::read_to_string(export.join(format!("failed/{id}.json"))).ok()
        })
        .collect();
    assert!(
        both.is_empty(),
        "{} jobs without exactly one result: {:?}; failed as: {reasons:#?}",
        both.len(),
        &both[..both.len().min(5)]
    );
    assert_eq!(count_jobs(&export, "failed"), 0);
    let ends = ends_per_job(&export);
    assert_eq!(ends.len(), JOBS);
    let wrong: Vec<_> = ends.iter().filter(|(_, &n)| n != 1).take(5).collect();
    assert!(wrong.is_empty(), "jobs not ended exactly once: {wrong:?}");
    let data = export.to_str().unwrap();
    let verify = hive.jaros(&["verify", "--data-dir", data]);
    assert_eq!(verify.code(), 0, "{}", verify.context());
    let replay = hive.jaros(&["replay", "--json", "--data-dir", data]);
    assert_eq!(replay.code(), 0, "{}", replay.context());
    assert_eq!(replay.json()["jobs"], JOBS as u64);
}

/// Exclusive creates raced from the three mounts at once, so that each
/// mount's kernel has not yet seen the name the others make: one wins and
/// the others lose cleanly, never with an error. An SFTP server has no code
/// for "already exists", and sshfs reports the losing link as "Operation not
/// permitted"; a node that took that for a failure died at start (three
/// nodes storing the same plan blob) or gave up a claim.
#[test]
#[ignore = "needs sshfs mounts: run by scripts/sshfs-test.sh"]
fn exclusive_creates_raced_across_sshfs_mounts_have_one_winner_and_no_error() {
    const ROUNDS: usize = 200;
    let export = PathBuf::from(env_path("JAROS_SSHFS_EXPORT"));
    let mounts: Vec<PathBuf> = env_path("JAROS_SSHFS_MOUNTS")
        .split(':')
        .map(PathBuf::from)
        .collect();
    let run = format!("race-{}", std::process::id());
    std::fs::create_dir_all(export.join(&run).join("claimed")).unwrap();
    let beats: Vec<_> = mounts
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let data = jaros::datadir::DataDir::new(m.join(&run));
            let beat = jaros::node::lease::Beat::start(&data, &format!("r{i}"), 10_000).unwrap();
            (data, beat)
        })
        .collect();
    let barrier = std::sync::Barrier::new(mounts.len());
    // Per mount, per round: the create's and the lease's outcome.
    type Outcome = (Result<bool, String>, Result<bool, String>);
    let outcomes: Vec<Vec<Outcome>> = std::thread::scope(|s| {
        let threads: Vec<_> = beats
            .iter()
            .map(|(data, beat)| {
                let barrier = &barrier;
                s.spawn(move || {
                    (0..ROUNDS)
                        .map(|r| {
                            barrier.wait();
                            let file = data.root().join(format!("f{r}"));
                            let created = jaros::fsx::create_durable_exclusive(&file, b"x")
                                .map_err(|e| e.to_string());
                            barrier.wait();
                            let leased = beat
                                .take(data, &format!("j{r}"), 1)
                                .map(|l| l.is_some())
                                .map_err(|e| e.to_string());
                            (created, leased)
                        })
                        .collect()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut errors = Vec::new();
    for r in 0..ROUNDS {
        let round: Vec<_> = outcomes.iter().map(|o| &o[r]).collect();
        for (what, pick) in [("create", 0), ("lease", 1)] {
            let results: Vec<&Result<bool, String>> = round
                .iter()
                .map(|(c, l)| if pick == 0 { c } else { l })
                .collect();
            errors.extend(
                results
                    .iter()
                    .filter_map(|x| x.as_ref().err())
                    .map(|e| format!("{what} {r}: {e}")),
            );
            let wins = results.iter().filter(|x| matches!(x, Ok(true))).count();
            if results.iter().all(|x| x.is_ok()) {
                assert_eq!(wins, 1, "{what} round {r}: {results:?}");
            }
        }
    }
    assert!(
        errors.is_empty(),
        "{} of {} raced creates failed instead of losing: {:?}",
        errors.len(),
        2 * ROUNDS * mounts.len(),
        &errors[..errors.len().min(5)]
    );
    let _ = std::fs::remove_dir_all(export.join(&run));
}
