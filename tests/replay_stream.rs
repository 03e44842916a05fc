//! Replay reads the logs as streams, segment by segment, and folds each job
//! once its last record is read: the report must not depend on how the log
//! is cut into segments, a job taken over in another node's log must still
//! fold once (its voided records counted), and the first divergence must be
//! named exactly wherever it sits and whichever job's fold ends first.

mod common;

use common::Hive;
use jaros::agents::LocalProposer;
use jaros::canon::{Digest, JsonText};
use jaros::datadir::DataDir;
use jaros::decision::{AgentName, JobId};
use jaros::exec::Executor;
use jaros::job::Ticket;
use jaros::log::record::{parse_line, seal_in_epoch};
use jaros::log::segment::{segments_dir, MIN_SEGMENT_BYTES};
use jaros::log::{read_log, set_thread_epoch, Body, Record, SegmentOptions};
use jaros::plan::Plan;
use jaros::replay::{replay, voided_records, Options, Report};
use jaros::runtime::Runtime;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Runs `jobs` jobs of the `advance` agent into node `node`'s log, on four
/// threads (so their records interleave), under lease epoch `epoch`,
/// sealing a segment every `segment_bytes`.
fn run_jobs(hive: &Hive, node: &str, jobs: usize, epoch: u64, segment_bytes: u64) {
    let rt = Arc::new(
        Runtime::open(
            hive.path(),
            DataDir::new(hive.data()),
            node.into(),
            Plan::builtin(),
        )
        .unwrap(),
    );
    rt.log.set_segment_options(SegmentOptions {
        segment_bytes,
        on_seal: None,
    });
    let executor = Arc::new(Executor::core());
    let threads = 4;
    std::thread::scope(|s| {
        for t in 0..threads {
            let (rt, executor) = (rt.clone(), executor.clone());
            s.spawn(move || {
                set_thread_epoch(epoch);
                let live = rt.live_io();
                let proposer = LocalProposer::default();
                let runner = rt.runner(&executor, &proposer, &live, &|| true);
                for i in (t..jobs).step_by(threads) {
                    let ticket = Ticket {
                        job: JobId::new(format!("j{i}")).unwrap(),
                        agent: AgentName::new("advance").unwrap(),
                        input: json!({ "i": i }),
                        parent: None,
                        via: None,
                    };
                    runner.run(&ticket, &[]).unwrap();
                }
            });
        }
    });
}

/// A log's files in chain order: its sealed segments, then the open one.
fn log_files(open: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(segments_dir(open))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files.push(open.to_path_buf());
    files
}

/// Rewrites the log's records with `edit` (which may reorder them) and
/// reseals the whole chain, each file keeping its number of lines (a
/// tamperer who knows the format: the chain stays intact, only replay can
/// tell).
fn rewrite_across_segments(open: &Path, edit: impl FnOnce(&mut Vec<Record>)) {
    let files = log_files(open);
    let mut counts = Vec::new();
    let mut records = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        counts.push(text.lines().count());
        records.extend(text.lines().map(|l| parse_line(l).unwrap()));
    }
    edit(&mut records);
    let mut prev = Digest::ZERO;
    let mut records = records.into_iter().enumerate();
    for (file, count) in files.iter().zip(counts) {
        let mut out = String::new();
        for (i, record) in records.by_ref().take(count) {
            let (line, hash) =
                seal_in_epoch(i as u64 + 1, &prev, record.epoch, &record.body).unwrap();
            out += &line;
            out.push('\n');
            prev = hash;
        }
        let mut perms = std::fs::metadata(file).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(file, perms).unwrap();
        std::fs::write(file, out).unwrap();
    }
}

/// Moves a one-file log's lines into sealed segments of `per` lines each
/// (the last ones stay in the open segment), as rotation would have.
fn cut_into_segments(open: &Path, per: usize) -> usize {
    let text = std::fs::read_to_string(open).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let dir = segments_dir(open);
    std::fs::create_dir_all(&dir).unwrap();
    let chunks: Vec<&[&str]> = lines.chunks(per).collect();
    let (open_part, sealed) = chunks.split_last().unwrap();
    let mut first = 1;
    for chunk in sealed {
        let body: String = chunk.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(dir.join(format!("{first:020}.jsonl")), body).unwrap();
        first += chunk.len();
    }
    let body: String = open_part.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(open, body).unwrap();
    sealed.len()
}

fn replay_all(hive: &Hive) -> Report {
    replay(
        &DataDir::new(hive.data()),
        &Executor::core(),
        &Options::default(),
    )
    .unwrap()
}

#[test]
fn a_log_cut_into_many_small_segments_replays_to_the_report_of_one_file() {
    let hive = Hive::empty();
    run_jobs(&hive, "n1", 120, 0, u64::MAX);
    // A failed job too: its attribution reads its records again.
    let rt = Runtime::open(
        hive.path(),
        DataDir::new(hive.data()),
        "n1".into(),
        Plan::builtin(),
    )
    .unwrap();
    let live = rt.live_io();
    let executor = Executor::core();
    struct Handoff;
    impl jaros::job::Proposer for Handoff {
        fn propose(
            &self,
            _: &jaros::job::TurnRequest<'_>,
        ) -> Result<jaros::job::ProposedTurn, String> {
            Ok(jaros::job::ProposedTurn {
                text: r#"[{"type":"handoff","payload":{"agent":"advance"}}]"#.into(),
                call: None,
            })
        }
    }
    let runner = rt.runner(&executor, &Handoff, &live, &|| true);
    let ticket = Ticket {
        job: JobId::new("f1").unwrap(),
        agent: AgentName::new("advance").unwrap(),
        input: json!({}),
        parent: None,
        via: None,
    };
    runner.run(&ticket, &[]).unwrap();
    drop(rt);
    let one = replay_all(&hive);
    assert!(one.reproducible(), "{one:?}");
    assert_eq!((one.jobs, one.failures.len()), (121, 1));
    let open = hive.log_file();
    let records = read_log(&open).unwrap().records.len();
    // Three records a segment: every job's records spread over several.
    let sealed = cut_into_segments(&open, 3);
    assert!(sealed > 100, "{sealed} sealed segments");
    assert_eq!(read_log(&open).unwrap().records.len(), records);
    let many = replay_all(&hive);
    assert_eq!(many, one);
}

#[test]
fn a_job_taken_over_in_another_nodes_log_folds_once_with_its_voided_records_counted() {
    let hive = Hive::empty();
    // n2 ran every job under epoch 1, in small segments.
    run_jobs(&hive, "n2", 40, 1, MIN_SEGMENT_BYTES);
    let old = DataDir::new(hive.data()).log_path("n2");
    assert!(log_files(&old).len() > 3);
    // n1 took j7 over under epoch 2, having seen its first two records
    // (job, decision): it wrote the effect and the end again, while n2,
    // paused past its lease, had written them too.
    let taken: Vec<Record> = read_log(&old)
        .unwrap()
        .records
        .into_iter()
        .filter(|r| {
            r.body
                .job_at()
                .is_some_and(|(j, at)| j.as_str() == "j7" && at >= 2)
        })
        .collect();
    assert_eq!(taken.len(), 2);
    let mut prev = Digest::ZERO;
    let mut text = String::new();
    for (i, r) in taken.iter().enumerate() {
        let (line, hash) = seal_in_epoch(i as u64 + 1, &prev, 2, &r.body).unwrap();
        text += &line;
        text.push('\n');
        prev = hash;
    }
    // The new owner's log is read first: j7's records there wait for n2's.
    std::fs::write(DataDir::new(hive.data()).log_path("n1"), text).unwrap();
    let report = replay_all(&hive);
    assert!(report.reproducible(), "{report:?}");
    assert_eq!(report.logs, 2);
    assert_eq!(report.jobs, 40, "j7 folds once");
    assert_eq!(report.final_states.get("DONE"), Some(&40));
    assert_eq!(report.voided_records, 2);
    let voided: Vec<(String, String, u64)> = report
        .voided
        .iter()
        .map(|v| (v.log.clone(), v.job.to_string(), v.records))
        .collect();
    assert_eq!(voided, [("n2".to_string(), "j7".to_string(), 2)]);
    // `jaros verify` counts the same.
    assert_eq!(
        voided_records(&DataDir::new(hive.data())).unwrap(),
        report.voided
    );
    let verify = hive.jaros(&["verify"]).expect(0).stdout();
    assert!(
        verify.contains("voided  log/n2.jsonl: 2 record(s) of job j7"),
        "{verify}"
    );
}

#[test]
fn a_divergence_planted_in_late_segments_is_named_exactly() {
    let hive = Hive::empty();
    run_jobs(&hive, "n1", 200, 0, MIN_SEGMENT_BYTES);
    let open = hive.log_file();
    let records = read_log(&open).unwrap().records;
    let sealed = log_files(&open).len() - 1;
    assert!(sealed > 20, "{sealed} sealed segments");
    let late = records.len() * 2 / 3;
    let job_of = |r: &Record| r.body.job_at().map(|(j, _)| j.to_string());
    // Two jobs' effects in the last third of the log, `a`'s before `b`'s;
    // `a`'s end moved to the log's very end, so `b`'s fold finishes first
    // and its divergence is found first: it is still not the first.
    let a = job_of(
        records[late..]
            .iter()
            .find(|r| r.body.kind() == "effect")
            .unwrap(),
    )
    .unwrap();
    let b = job_of(
        records[late..]
            .iter()
            .filter(|r| r.body.kind() == "effect")
            .nth(20)
            .unwrap(),
    )
    .unwrap();
    let is = |r: &Record, job: &str, kind: &str| {
        r.body.kind() == kind && job_of(r).as_deref() == Some(job)
    };
    rewrite_across_segments(&open, |records| {
        let end = records.iter().position(|r| is(r, &a, "end")).unwrap();
        let moved = records.remove(end);
        records.push(moved);
        for r in records.iter_mut() {
            if is(r, &a, "effect") || is(r, &b, "effect") {
                if let Body::Effect { result, .. } = &mut r.body {
                    *result =
                        JsonText::from_value(&json!({"from": "PENDING", "to": "FAILED"})).unwrap();
                }
            }
        }
    });
    let records = read_log(&open).unwrap().records;
    let seq_of = |job: &str, kind: &str| records.iter().find(|r| is(r, job, kind)).unwrap().seq;
    let planted = [seq_of(&a, "effect"), seq_of(&b, "effect")];
    assert!(planted[0] < planted[1] && seq_of(&b, "end") < seq_of(&a, "end"));
    let report = replay_all(&hive);
    assert!(report.chain_intact, "{:?}", report.chain_errors);
    let d = report.divergence.expect("the edits are found");
    assert_eq!(
        (d.record.log.as_ref(), d.record.seq, d.job.as_str()),
        ("n1", planted[0], a.as_str())
    );
    assert_eq!(d.decision.map(|x| x.to_string()), Some(format!("{a}#1.0")));
    // The same through the binary.
    let json = hive.jaros(&["replay", "--json"]).expect(1).json();
    assert_eq!(json["divergence"]["record"]["seq"], planted[0]);
    assert_eq!(json["divergence"]["job"], a.as_str());
    assert_eq!(report.jobs, 200);
}

/// A line whose hash holds but whose body no reader knows (a tamperer who
/// recomputed the hash, or a record from a newer writer): the chain check
/// passes it, the parse does not, and the whole log is left out and named,
/// as when logs were read whole.
#[test]
fn a_log_with_a_sealed_but_unreadable_record_is_left_out_whole_and_named() {
    let hive = Hive::empty();
    run_jobs(&hive, "n1", 10, 0, u64::MAX);
    let intact = replay_all(&hive);
    run_jobs(&hive, "n2", 10, 0, u64::MAX);
    let path = DataDir::new(hive.data()).log_path("n2");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // The last line: no record after it names its hash.
    let k = lines.len() - 1;
    let record = parse_line(&lines[k]).unwrap();
    // The same line with another kind, its hash recomputed over it.
    let hash = format!(",\"hash\":\"{}\"", record.hash.to_hex());
    let edited = lines[k]
        .replace(hash.as_str(), "")
        .replacen("\"kind\":\"", "\"kind\":\"x", 1);
    let digest = Digest::of_bytes(edited.as_bytes());
    let at = edited.find(",\"kind\"").unwrap();
    lines[k] = format!(
        "{},\"hash\":\"{}\"{}",
        &edited[..at],
        digest.to_hex(),
        &edited[at..]
    );
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    // The chain itself is intact.
    hive.jaros(&["verify"]).expect(0);
    let report = replay_all(&hive);
    assert!(!report.chain_intact);
    assert_eq!(report.chain_errors.len(), 1, "{:?}", report.chain_errors);
    let error = &report.chain_errors[0];
    assert!(
        error.contains(&format!("n2.jsonl: line {} (seq {})", k + 1, k + 1))
            && error.contains("not a known record"),
        "{error}"
    );
    // Nothing of n2 is counted: the report is n1's alone.
    assert_eq!(
        (report.logs, report.records, report.jobs),
        (2, intact.records, intact.jobs)
    );
    assert_eq!(report.final_states, intact.final_states);
}
