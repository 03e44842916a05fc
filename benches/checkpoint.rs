//! Checkpoint benchmarks: the RFC 6962 tree head over 4,000,000 leaves (a
//! log of about 1,000,000 decisions), inclusion and consistency proofs over
//! it and their verification, and sealing a checkpoint of a real log.
//!
//! Run: `cargo bench --bench checkpoint` (prints a Markdown table for the
//! README). Set JAROS_BENCH_LEAVES to change the tree size and
//! JAROS_BENCH_RECORDS the real log's.

use jaros::canon::Digest;
use jaros::datadir::DataDir;
use jaros::decision::{AgentName, JobId};
use jaros::log::checkpoint;
use jaros::log::merkle::{self, Hash, TreeBuilder};
use jaros::log::note::SignerKey;
use jaros::log::{Body, LogWriter};
use serde_json::json;
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
    // Leaves as a log gives them: SHA-256(0x00 || a record's 32-byte hash).
    let chain: Vec<[u8; 32]> = (0..n)
        .map(|i| Digest::of_bytes(&i.to_be_bytes()).0)
        .collect();

    let start = Instant::now();
    let mut b = TreeBuilder::new();
    for h in &chain {
        b.push(merkle::leaf_hash(h));
    }
    let root = b.root();
    let head = start.elapsed();

    let leaves: Vec<Hash> = chain.iter().map(|h| merkle::leaf_hash(h)).collect();
    drop(chain);
    let size = leaves.len() as u64;
    let indices = [0, size / 3, size / 2 + 7, size - 1];
    let mut proofs = Vec::new();
    let inclusion = mean(indices.len() as u32, || {
        let i = indices[proofs.len()];
        proofs.push((i, merkle::inclusion_proof(i, &leaves).unwrap()));
    });
    let verify_inclusion = mean(1000, || {
        for (i, p) in &proofs {
            merkle::verify_inclusion(*i, size, &leaves[*i as usize], p, &root).unwrap();
        }
    }) / proofs.len() as u32;

    let olds = [size / 4, size - 1000];
    let old_roots: Vec<Hash> = olds
        .iter()
        .map(|&o| merkle::root(&leaves[..o as usize]))
        .collect();
    let mut cproofs = Vec::new();
    let consistency = mean(olds.len() as u32, || {
        let o = olds[cproofs.len()];
        cproofs.push(merkle::consistency_proof(o, &leaves).unwrap());
    });
    let verify_consistency = mean(1000, || {
        for (k, p) in cproofs.iter().enumerate() {
            merkle::verify_consistency(olds[k], size, p, &old_roots[k], &root).unwrap();
        }
    }) / cproofs.len() as u32;
    drop(leaves);

    // Sealing a checkpoint of a real log: read, chain-check, tree, sign, write.
    // Written with one durable append each: 20,000 keeps the bench to minutes.
    let records = env_or("JAROS_BENCH_RECORDS", 20_000);
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    data.create().unwrap();
    {
        let (w, _) = LogWriter::open(&data.log_path("n1")).unwrap();
        for i in 0..records {
            w.append(&Body::Job {
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
            })
            .unwrap();
        }
    }
    let key = SignerKey::from_seed("bench.example/hive", [7; 32]).unwrap();
    let start = Instant::now();
    let sealed = checkpoint::seal(&data, "n1", &key).unwrap();
    let seal = start.elapsed();
    assert_eq!(sealed.checkpoint.size, records);

    println!("| checkpoint benchmark ({n} leaves) | time |");
    println!("|---|---|");
    println!(
        "| tree head, streaming (leaf hashing included; {:.1} M leaves/s) | {} |",
        n as f64 / head.as_secs_f64() / 1e6,
        ms(head)
    );
    println!(
        "| inclusion proof, mean of {} ({} hashes) | {} |",
        indices.len(),
        proofs[0].1.len(),
        ms(inclusion)
    );
    println!("| inclusion proof verified | {} |", ms(verify_inclusion));
    println!(
        "| consistency proof {}→{n} and {}→{n}, mean ({} and {} hashes) | {} |",
        olds[0],
        olds[1],
        cproofs[0].len(),
        cproofs[1].len(),
        ms(consistency)
    );
    println!(
        "| consistency proof verified | {} |",
        ms(verify_consistency)
    );
    println!(
        "| `checkpoint::seal` of a real log of {records} records (read, chain check, tree, sign, durable write) | {} |",
        ms(seal)
    );
}
