//! The log at scale: verify, replay, one job's history and blame over a log
//! of JAROS_BENCH_DECISIONS decisions (default 1,000,000: about 4 million
//! records, sealed into segments), each in a child process that reports its
//! time and peak resident memory (VmHWM).
//!
//! Run: `cargo bench --bench log` (prints a Markdown table for the README;
//! needs about 2 GB of disk for the default size, removed at the end unless
//! JAROS_BENCH_KEEP names a directory to keep it in).

use jaros::agents::LocalProposer;
use jaros::datadir::DataDir;
use jaros::decision::{AgentName, JobId};
use jaros::exec::Executor;
use jaros::job::Ticket;
use jaros::log::{verify_chain, SegmentOptions};
use jaros::plan::Plan;
use jaros::runtime::Runtime;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Jobs, each of the built-in `advance` agent (four records: job,
/// decision, effect, end), run on 16 threads into one log.
fn build_log(dir: &Path, jobs: u64) {
    let hive = dir.join("hive");
    std::fs::create_dir_all(hive.join("manifests")).unwrap();
    let rt = Arc::new(
        Runtime::open(
            &hive,
            DataDir::new(dir.join("data")),
            "n1".into(),
            Plan::builtin(),
        )
        .unwrap(),
    );
    rt.log.set_segment_options(SegmentOptions::default());
    let executor = Arc::new(Executor::core());
    let threads = 16;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let rt = rt.clone();
            let executor = executor.clone();
            std::thread::spawn(move || {
                let live = rt.live_io();
                let proposer = LocalProposer::default();
                let runner = rt.runner(&executor, &proposer, &live, &|| true);
                let mut i = t;
                while i < jobs {
                    let ticket = Ticket {
                        job: JobId::new(format!("b{i}")).unwrap(),
                        agent: AgentName::new("advance").unwrap(),
                        input: json!({}),
                        parent: None,
                        via: None,
                    };
                    runner.run(&ticket, &[]).unwrap();
                    i += threads;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Peak resident memory of this process, in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// In a child: runs one measurement and prints `seconds records peak_mb`.
fn child(what: &str, dir: &Path, job: &str) {
    let data = DataDir::new(dir.join("data"));
    let log = data.log_path("n1");
    let start = Instant::now();
    let records = match what {
        "verify" => {
            let report = verify_chain(&log, None);
            assert!(report.error.is_none(), "{:?}", report.error);
            report.records
        }
        "verify-all" => {
            // What `jaros verify` does: the chain, then what takeovers voided.
            let report = verify_chain(&log, None);
            assert!(report.error.is_none(), "{:?}", report.error);
            jaros::replay::voided_records(&data).unwrap();
            report.records
        }
        "replay" => {
            let r = jaros::replay::replay(&data, &Executor::core(), &Default::default()).unwrap();
            assert!(r.reproducible());
            r.decisions * 4
        }
        "index" => jaros::log::index::job_records(&log, job).unwrap().1.scanned,
        "history" => {
            let id = JobId::new(job).unwrap();
            jaros::replay::job_history(&data, &id).unwrap().len() as u64
        }
        "blame" => {
            let id = JobId::new(job).unwrap();
            // A job that succeeded has no blame; the time to find that out
            // is the time to read its records.
            let _ = jaros::replay::blame(&data, &Executor::core(), &id);
            0
        }
        "replay-job" => {
            let options = jaros::replay::Options {
                job: Some(JobId::new(job).unwrap()),
                until: None,
            };
            let r = jaros::replay::replay(&data, &Executor::core(), &options).unwrap();
            assert!(r.reproducible() && r.jobs == 1);
            r.records
        }
        "under" => {
            // `jaros replay --under`: every decision folded once and handed
            // to a visitor (here only counted), in bounded memory.
            let mut met = 0u64;
            let walked =
                jaros::replay::each_decision(&data, &Executor::core(), |_, _| met += 1).unwrap();
            assert!(walked.stopped.is_empty() && met > 0, "{walked:?}");
            walked.jobs * 4
        }
        other => panic!("unknown measurement {other}"),
    };
    println!(
        "{} {records} {:.1}",
        start.elapsed().as_secs_f64(),
        peak_rss_mb()
    );
}

/// Runs `what` in a child process; its seconds, records and peak MB.
fn measure(what: &str, dir: &Path, job: &str) -> (f64, u64, f64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--child", what, dir.to_str().unwrap(), job])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let mut next = || parts.next().unwrap_or("0").to_string();
    (
        next().parse().unwrap_or(0.0),
        next().parse().unwrap_or(0),
        next().parse().unwrap_or(0.0),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], Path::new(&args[3]), &args[4]);
        return;
    }
    let decisions: u64 = std::env::var("JAROS_BENCH_DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // JAROS_BENCH_KEEP=DIR: the log is built in DIR (once: a DIR that holds
    // one is measured again) and kept, for profiling a measurement with
    // `log-<hash> --child replay DIR b500000`.
    let temp = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("JAROS_BENCH_KEEP").map(std::path::PathBuf::from);
    let dir = kept.as_deref().unwrap_or(temp.path());
    if dir.join("data").exists() {
        eprintln!("measuring the log kept in {}", dir.display());
    } else {
        let start = Instant::now();
        build_log(dir, decisions);
        eprintln!(
            "built a log of {decisions} jobs in {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    let log = DataDir::new(dir.join("data")).log_path("n1");
    let sealed =
        std::fs::read_dir(jaros::log::segment::segments_dir(&log)).map_or(0, |d| d.count());
    println!("| measurement ({decisions} decisions, {sealed} sealed segments + the open one) | time | records/s | peak RSS |");
    println!("|---|---|---|---|");
    let job = format!("b{}", decisions / 2);
    for (what, label) in [
        ("verify", "verify"),
        (
            "verify-all",
            "verify incl. the voided-records scan (`jaros verify`)",
        ),
        ("replay", "replay incl. second pass"),
        ("index", "job index, built from the log (first lookup)"),
        ("history", "one job's history through the index (resume)"),
        ("blame", "blame of one job (through the index)"),
        ("replay-job", "replay --job of one job (through the index)"),
        ("under", "every decision met once (`replay --under`)"),
    ] {
        // JAROS_BENCH_ONLY=index,history: only those rows.
        if std::env::var("JAROS_BENCH_ONLY").is_ok_and(|only| !only.split(',').any(|w| w == what)) {
            continue;
        }
        let (secs, records, mb) = measure(what, dir, &job);
        let rate = if records > 0 && secs > 0.0 {
            format!("{:.0}", records as f64 / secs)
        } else {
            "-".into()
        };
        // One job's rows take milliseconds: say them so.
        let time = if secs < 1.0 {
            format!("{:.1} ms", secs * 1000.0)
        } else {
            format!("{secs:.3} s")
        };
        println!("| {label} | {time} | {rate} | {mb:.0} MB |");
    }
}
