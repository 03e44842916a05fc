//! The log's promises under tampering and crashes: every edit, insertion,
//! deletion and reordering is caught; a torn tail at any byte is cut and
//! never corrupts later appends.

mod common;

use jaros::canon::Digest;
use jaros::decision::{AgentName, JobId};
use jaros::log::{read_log, verify_chain, Body, LogError, LogWriter};
use serde_json::json;
use std::path::Path;

fn body(n: u32) -> Body {
    Body::Job {
        job: JobId::new(format!("j{n}")).unwrap(),
        at: 0,
        agent: AgentName::new("advance").unwrap(),
        input: json!({"n": n, "text": "some text to make the line longer"}),
        plan: Digest::ZERO,
        parent: None,
        via: None,
        started_ms: None,
        depth: None,
        tree_jobs: None,
    }
}

fn write_log(path: &Path, n: u32) {
    let (w, _) = LogWriter::open(path).unwrap();
    for i in 1..=n {
        w.append(&body(i)).unwrap();
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn assert_tampered_at(path: &Path, expected_line: u64) {
    match LogWriter::open(path) {
        Err(LogError::Tampered { line, .. }) => assert_eq!(line, expected_line),
        Err(e) => panic!("expected tampering at line {expected_line}, got {e}"),
        Ok(_) => panic!("a tampered log opened for appending"),
    }
    let report = verify_chain(path, None);
    let error = report.error.expect("verify must report the tampering");
    assert!(error.contains(&format!("line {expected_line}")), "{error}");
}

#[test]
fn an_edited_record_is_tampering_and_the_writer_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.jsonl");
    write_log(&path, 5);
    let mut l = lines(&path);
    l[2] = l[2].replace("\"n\":3", "\"n\":4");
    rewrite(&path, &l);
    assert_tampered_at(&path, 3);
}

#[test]
fn an_inserted_record_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.jsonl");
    write_log(&path, 5);
    let mut l = lines(&path);
    let copy = l[1].clone();
    l.insert(3, copy);
    rewrite(&path, &l);
    assert_tampered_at(&path, 4);
}

#[test]
fn an_inserted_empty_line_is_tampering_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.jsonl");
    write_log(&path, 5);
    let mut l = lines(&path);
    l.insert(2, String::new());
    rewrite(&path, &l);
    assert_tampered_at(&path, 3);
    let error = verify_chain(&path, None).error.unwrap();
    assert!(error.contains("empty line"), "{error}");
}

#[test]
fn a_deleted_record_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.jsonl");
    write_log(&path, 5);
    let mut l = lines(&path);
    l.remove(1);
    rewrite(&path, &l);
    assert_tampered_at(&path, 2);
}

#[test]
fn reordered_records_are_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.jsonl");
    write_log(&path, 5);
    let mut l = lines(&path);
    l.swap(1, 2);
    rewrite(&path, &l);
    assert_tampered_at(&path, 2);
}

#[test]
fn truncation_is_caught_only_with_an_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.jsonl");
    write_log(&path, 5);
    let head = read_log(&path).unwrap().records[4].hash;
    let l = lines(&path);
    rewrite(&path, &l[..3]);
    assert!(
        verify_chain(&path, None).error.is_none(),
        "a clean prefix is a valid chain"
    );
    let error = verify_chain(&path, Some((5, head)))
        .error
        .expect("the anchor catches truncation");
    assert!(error.contains("beyond the head"), "{error}");
}

#[test]
fn a_torn_tail_at_every_byte_of_the_last_record_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.jsonl");
    write_log(&full, 3);
    let bytes = std::fs::read(&full).unwrap();
    let last_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    for cut in last_start + 1..bytes.len() {
        let path = dir.path().join(format!("cut{cut}.jsonl"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        {
            let (w, report) = LogWriter::open(&path).unwrap();
            assert_eq!(report.records, 2, "cut at {cut}");
            assert_eq!(report.truncated_bytes, cut - last_start);
            assert_eq!(w.append(&body(9)).unwrap(), 3);
        }
        assert!(verify_chain(&path, None).error.is_none(), "cut at {cut}");
        // Reopen twice: the repaired log stays whole.
        for _ in 0..2 {
            let (_, report) = LogWriter::open(&path).unwrap();
            assert_eq!(
                (report.records, report.truncated_bytes),
                (3, 0),
                "cut at {cut}"
            );
        }
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn a_log_cut_at_any_record_boundary_or_inside_any_record_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.jsonl");
    write_log(&full, 6);
    let bytes = std::fs::read(&full).unwrap();
    let boundaries: Vec<usize> = std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let mut cuts: Vec<usize> = boundaries.clone();
    for pair in boundaries.windows(2) {
        cuts.extend([pair[0] + 1, (pair[0] + pair[1]) / 2, pair[1] - 1]);
    }
    for cut in cuts {
        let path = dir.path().join("cut.jsonl");
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let complete = boundaries.iter().filter(|&&b| b <= cut && b > 0).count() as u64;
        {
            let (w, report) = LogWriter::open(&path).unwrap();
            assert_eq!(report.records, complete, "cut at {cut}");
            w.append(&body(99)).unwrap();
        }
        let report = verify_chain(&path, None);
        assert!(report.error.is_none(), "cut at {cut}: {:?}", report.error);
        assert_eq!(report.records, complete + 1);
        let (_, again) = LogWriter::open(&path).unwrap();
        assert_eq!(again.truncated_bytes, 0);
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn a_log_that_is_not_jsonl_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.jsonl");
    std::fs::write(&path, "hello\nworld\n").unwrap();
    let err = LogWriter::open(&path).err().expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("line 1") && text.contains("n.jsonl"),
        "{text}"
    );
}

#[test]
fn a_long_log_read_in_parallel_chunks_reports_the_first_bad_line_in_file_order() {
    // Long enough to be parsed in several chunks (the reader splits past
    // 8,192 lines); written deferred, then made durable once.
    const N: u32 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.jsonl");
    {
        let (w, _) = LogWriter::open(&path).unwrap();
        for i in 1..N {
            w.append_deferred(&body(i)).unwrap();
        }
        w.append(&body(N)).unwrap();
    }
    let log = read_log(&path).unwrap();
    assert_eq!(log.records.len(), N as usize);
    assert!(log
        .records
        .iter()
        .enumerate()
        .all(|(i, r)| r.seq == i as u64 + 1));
    let good = lines(&path);
    // A broken chain late in the file and an unparsable line after it: the
    // chain error, earlier in the file, is the one reported.
    let mut l = good.clone();
    l.swap(15_000, 15_001);
    l[18_000] = "not json".into();
    rewrite(&path, &l);
    assert_tampered_at(&path, 15_001);
    // An unparsable line in the last chunk, the chain intact before it.
    let mut l = good;
    l[19_990] = l[19_990].replace("some text", "other text");
    rewrite(&path, &l);
    assert_tampered_at(&path, 19_991);
}
