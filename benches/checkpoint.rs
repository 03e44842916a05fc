//! Checkpoint benchmarks at JAROS_BENCH_LEAVES leaves (default 4,000,000:
//! a log of about 1,000,000 decisions).
//!
//! 1. The arithmetic, in memory: the RFC 6962 tree head streaming, and
//!    inclusion and consistency proofs made from the list of leaf hashes
//!    (O(n), as proofs were made before tree levels were stored) and from
//!    the levels stored from the chunk level up (`log::tree::Levels`).
//! 2. A real log of that many records in 64 MiB segments: `jaros
//!    checkpoint` (first with no tree files, which it builds, then with
//!    them), `jaros prove SEQ` and `jaros verify --checkpoint`, each the
//!    release binary run under GNU time (`/usr/bin/time`, Debian's `time`
//!    package) for its wall time and peak resident memory; and the proofs
//!    through the stored tree files in this process.
//!
//! Run: `cargo bench --bench checkpoint` (prints Markdown tables for the
//! README; needs about 1.5 GB of disk at the default size, removed at the
//! end).

use jaros::canon::Digest;
use jaros::datadir::DataDir;
use jaros::decision::{AgentName, JobId};
use jaros::log::merkle::{self, Hash, Leaves, TreeBuilder};
use jaros::log::tree::{LevelsBuilder, LogTree, Stored};
use jaros::log::{Body, LogWriter, SegmentOptions};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// The mean of `f` over `runs` runs.
fn mean(runs: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..runs {
        f();
    }
    start.elapsed() / runs
}

fn main() {
    let n = env_or("JAROS_BENCH_LEAVES", 4_000_000);
    arithmetic(n);
    real_log(n);
}

/// Part 1: proofs from the leaf hashes and from stored levels, in memory.
fn arithmetic(n: u64) {
    // Leaves as a log gives them: SHA-256(0x00 || a record's 32-byte hash).
    let leaves: Vec<Hash> = (0..n)
        .map(|i| merkle::leaf_hash(&Digest::of_bytes(&i.to_be_bytes()).0))
        .collect();
    let start = Instant::now();
    let mut b = TreeBuilder::new();
    for leaf in &leaves {
        b.push(*leaf);
    }
    let root = b.root();
    let head = start.elapsed();

    let indices = [0, n / 3, n / 2 + 7, n - 1];
    let olds = [n / 4, n - 1000];
    let old_roots: Vec<Hash> = olds
        .iter()
        .map(|&o| merkle::root(&leaves[..o as usize]))
        .collect();
    let (leaves_ref, old_roots_ref) = (&leaves, &old_roots);
    let inclusion_leaves = mean(indices.len() as u32, {
        let mut k = 0;
        let leaves = leaves_ref;
        move || {
            let i = indices[k];
            k += 1;
            let p = merkle::inclusion_proof(i, leaves).unwrap();
            merkle::verify_inclusion(i, n, &leaves[i as usize], &p, &root).unwrap();
        }
    });
    let consistency_leaves = mean(olds.len() as u32, {
        let mut k = 0;
        let (leaves, old_roots) = (leaves_ref, old_roots_ref);
        move || {
            let p = merkle::consistency_proof(olds[k], leaves).unwrap();
            merkle::verify_consistency(olds[k], n, &p, &old_roots[k], &root).unwrap();
            k += 1;
        }
    });

    // The levels a log's tree files hold, from the chunk level up, with the
    // chunks the proofs below need kept whole.
    let keep = indices
        .iter()
        .chain(&olds)
        .flat_map(|&i| [i.saturating_sub(1) >> 8, i >> 8])
        .collect();
    let start = Instant::now();
    let mut lb = LevelsBuilder::new(0, jaros::log::tree::CHUNK_LEVEL, keep);
    for leaf in &leaves {
        lb.push(*leaf);
    }
    let mut levels = lb.finish();
    let build = start.elapsed();
    let runs = 200;
    let inclusion_levels = mean(runs, || {
        for &i in &indices {
            let p = merkle::inclusion_proof_from(&mut levels, i, n).unwrap();
            merkle::verify_inclusion(i, n, &leaves[i as usize], &p, &root).unwrap();
        }
    }) / indices.len() as u32;
    let consistency_levels = mean(runs, || {
        for (k, &o) in olds.iter().enumerate() {
            let p = merkle::consistency_proof_from(&mut levels, o, n).unwrap();
            merkle::verify_consistency(o, n, &p, &old_roots[k], &root).unwrap();
        }
    }) / olds.len() as u32;
    // The same proofs equal, from both sources.
    for &i in &indices {
        assert_eq!(
            merkle::inclusion_proof_from(&mut levels, i, n).unwrap(),
            merkle::inclusion_proof_from(&mut Leaves(&leaves), i, n).unwrap()
        );
    }

    println!("| arithmetic, in memory ({n} leaves) | time |");
    println!("|---|---|");
    println!(
        "| tree head, streaming ({:.1} M leaves/s) | {} |",
        n as f64 / head.as_secs_f64() / 1e6,
        ms(head)
    );
    println!(
        "| inclusion proof from the leaf hashes (O(n)), made and verified, mean of {} | {} |",
        indices.len(),
        ms(inclusion_leaves)
    );
    println!(
        "| consistency proof {}→{n} and {}→{n} from the leaf hashes (O(n)), mean | {} |",
        olds[0],
        olds[1],
        ms(consistency_leaves)
    );
    println!(
        "| the levels from the chunk level (256 leaves) up, built | {} |",
        ms(build)
    );
    println!(
        "| inclusion proof from the stored levels, made and verified, mean | {} |",
        ms(inclusion_levels)
    );
    println!(
        "| consistency proof from the stored levels, made and verified, mean | {} |",
        ms(consistency_levels)
    );
    println!();
}

fn job(i: u64) -> Body {
    Body::Job {
        job: JobId::new(format!("j{i}")).unwrap(),
        at: 0,
        agent: AgentName::new("advance").unwrap(),
        input: json!({ "n": i }),
        plan: Digest::ZERO,
        parent: None,
        via: None,
        started_ms: None,
        depth: None,
        tree_jobs: None,
    }
}

/// Appends records `from..=to` in 64 MiB segments.
fn append(data: &DataDir, from: u64, to: u64) {
    let (w, _) = LogWriter::open(&data.log_path("n1")).unwrap();
    w.set_segment_options(SegmentOptions::default());
    for i in from..=to {
        w.append_deferred(&job(i)).unwrap();
    }
    w.flush().unwrap();
}

/// Runs the release binary under GNU time: wall seconds, peak MB, stdout.
fn timed(dir: &Path, args: &[&str]) -> (f64, f64, String) {
    timed_with(env!("CARGO_BIN_EXE_jaros"), dir, args)
}

/// [`timed`] with another binary (JAROS_BENCH_BEFORE: an earlier build).
fn timed_with(bin: &str, dir: &Path, args: &[&str]) -> (f64, f64, String) {
    let out = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%e %M", bin, "--data-dir", "data"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("/usr/bin/time runs (apt-get install time)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "jaros {args:?}: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    let mut it = last.split_whitespace();
    let secs = it.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let kb: f64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    (
        secs,
        kb / 1024.0,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Part 2: a real log, the commands, and the proofs through its tree files.
fn real_log(n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("data"));
    data.create().unwrap();
    let keygen = std::process::Command::new(env!("CARGO_BIN_EXE_jaros"))
        .args(["keygen", "bench.example/hive", "--out", "hive.key"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let vkey = String::from_utf8_lossy(&keygen.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let old = n - 1000;
    let start = Instant::now();
    append(&data, 1, old);
    let write = start.elapsed();
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    let (s, mb, _) = timed(dir.path(), &["checkpoint", "--key", "hive.key"]);
    rows.push((
        format!("`jaros checkpoint` at {old}, no tree files yet (builds them)"),
        s,
        mb,
    ));
    let kept = dir.path().join("old.checkpoint");
    std::fs::copy(
        data.root().join(format!("checkpoints/n1/{old}.checkpoint")),
        &kept,
    )
    .unwrap();
    append(&data, old + 1, n);
    let (s, mb, _) = timed(dir.path(), &["checkpoint", "--key", "hive.key"]);
    rows.push((
        format!("`jaros checkpoint` at {n} (stored levels + the open segment)"),
        s,
        mb,
    ));
    for seq in [1, n / 2 + 7, n] {
        let (s, mb, _) = timed(dir.path(), &["prove", &seq.to_string()]);
        rows.push((format!("`jaros prove {seq}`"), s, mb));
    }
    let (s, mb, out) = timed(
        dir.path(),
        &[
            "verify",
            "--checkpoint",
            kept.to_str().unwrap(),
            "--key",
            &vkey,
        ],
    );
    assert!(out.contains("every log extends"), "{out}");
    rows.push((
        format!("`jaros verify --checkpoint` ({old}→{n}: reads the whole log)"),
        s,
        mb,
    ));
    // The same commands by an earlier build, on the same log, when given.
    if let Ok(before) = std::env::var("JAROS_BENCH_BEFORE") {
        let kept = kept.to_str().unwrap();
        let mid = (n / 2 + 7).to_string();
        let runs: [(&str, Vec<&str>); 4] = [
            ("checkpoint", vec!["checkpoint", "--key", "hive.key"]),
            ("prove 1", vec!["prove", "1"]),
            ("prove n/2+7", vec!["prove", mid.as_str()]),
            (
                "verify --checkpoint",
                vec!["verify", "--checkpoint", kept, "--key", &vkey],
            ),
        ];
        for (what, args) in runs {
            let (s, mb, _) = timed_with(&before, dir.path(), &args);
            rows.push((
                format!("before (JAROS_BENCH_BEFORE): `jaros {what}` at {n}"),
                s,
                mb,
            ));
        }
    }

    // Through the tree files, in this process: opening the tree (the open
    // segment is read), then proofs from it.
    let log = data.log_path("n1");
    let start = Instant::now();
    let mut tree = LogTree::open(&log, Stored::Use).unwrap();
    let open = start.elapsed();
    let root = tree.root(n).unwrap();
    let indices = [0, n / 3, n / 2 + 7, n - 1];
    let inclusion = mean(indices.len() as u32, {
        let mut k = 0;
        let tree = &mut tree;
        move || {
            let i = indices[k];
            k += 1;
            let leaf = tree.leaf_from_log(i).unwrap();
            let p = merkle::inclusion_proof_from(tree, i, n).unwrap();
            merkle::verify_inclusion(i, n, &leaf, &p, &root).unwrap();
        }
    });
    let olds = [n / 4, old];
    let consistency = mean(olds.len() as u32, {
        let mut k = 0;
        let tree = &mut tree;
        move || {
            let o = olds[k];
            k += 1;
            let old_root = tree.root(o).unwrap();
            let p = merkle::consistency_proof_from(tree, o, n).unwrap();
            merkle::verify_consistency(o, n, &p, &old_root, &root).unwrap();
        }
    });
    let tree_bytes: u64 = std::fs::read_dir(data.log_dir().join("n1.segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tree"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let log_bytes: u64 = std::fs::read_dir(data.log_dir().join("n1.segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();

    println!(
        "| a real log of {n} records ({:.0} MB sealed in 64 MiB segments, written in {:.1} s; tree files {:.2} MB) | time | peak RSS |",
        log_bytes as f64 / 1e6,
        write.as_secs_f64(),
        tree_bytes as f64 / 1e6
    );
    println!("|---|---|---|");
    for (what, s, mb) in rows {
        println!("| {what} | {:.0} ms | {mb:.0} MB |", s * 1e3);
    }
    println!(
        "| `LogTree::open` (check the tree files, read the open segment) | {} | |",
        ms(open)
    );
    println!(
        "| inclusion proof through the tree files (leaf read from the log), made and verified, mean of {} | {} | |",
        indices.len(),
        ms(inclusion)
    );
    println!(
        "| consistency proof {}→{n} and {old}→{n} through the tree files (old root included), made and verified, mean | {} | |",
        olds[0],
        ms(consistency)
    );
}
