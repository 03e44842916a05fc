//! Segments against a log from before them: a data dir `jaros demo` wrote
//! with the release before segments (`tests/fixtures/legacy-hive`, its data
//! dir under `data/`) is read, verified, replayed and appended to as it is,
//! and, once its log is sealed into a segment, every reader follows the
//! chain across segments.

mod common;

use common::run_in;
use jaros::log::{read_log, LogWriter, SegmentOptions};
use std::path::{Path, PathBuf};

/// Copies the fixture hive into a new temp dir; returns it and the hive.
fn legacy_hive() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let hive = dir.path().join("hive");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-hive"),
        &hive,
    );
    (dir, hive)
}

/// Regular files and directories only (the fixture holds no links).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// `jaros ARGS --data-dir data` in the hive.
fn jaros(hive: &Path, args: &[&str]) -> common::Run {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--data-dir", "data"]);
    run_in(hive, &all)
}

/// verify, replay, logs and audit all succeed; the records `logs` prints.
fn readers_pass(hive: &Path) -> usize {
    let verify = jaros(hive, &["verify"]).expect(0);
    assert!(verify.stdout().contains("intact"), "{}", verify.context());
    jaros(hive, &["replay"]).expect(0);
    jaros(hive, &["audit"]).expect(0);
    let logs = jaros(hive, &["logs"]).expect(0);
    logs.stdout().lines().count()
}

#[test]
fn a_data_dir_from_before_segments_is_read_verified_replayed_and_appended_to() {
    let (_dir, hive) = legacy_hive();
    let log = hive.join("data/log/demo.jsonl");
    let before = read_log(&log).unwrap().head().0;
    assert_eq!(before, 58);
    readers_pass(&hive);
    jaros(
        &hive,
        &["run", "advance", "--input", "{}", "--node-id", "demo"],
    )
    .expect(0);
    let after = read_log(&log).unwrap();
    assert!(after.head().0 > before);
    assert_eq!(
        after.open_first_seq, 1,
        "no segment sealed at the default size"
    );
    readers_pass(&hive);
}

#[test]
fn a_log_from_before_segments_is_sealed_into_one_and_every_reader_follows_the_chain() {
    let (_dir, hive) = legacy_hive();
    let log = hive.join("data/log/demo.jsonl");
    let records = read_log(&log).unwrap().records;
    let listed = readers_pass(&hive);
    // A writer with a small segment size seals the old log after its next
    // write: the last plan again, which changes nothing replay decides.
    let (writer, _) = LogWriter::open(&log).unwrap();
    writer.set_segment_options(SegmentOptions {
        segment_bytes: jaros::log::segment::MIN_SEGMENT_BYTES,
        on_seal: None,
    });
    let plan = records
        .iter()
        .rev()
        .find(|r| matches!(r.body, jaros::log::Body::Plan { .. }))
        .unwrap();
    writer.append(&plan.body).unwrap();
    drop(writer);
    let sealed = hive.join("data/log/demo.segments/00000000000000000001.jsonl");
    assert!(sealed.is_file(), "the old log was not sealed");
    assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
    // The old records are the sealed segment's, byte for byte.
    let old = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/legacy-hive/data/log/demo.jsonl"),
    )
    .unwrap();
    assert!(std::fs::read(&sealed).unwrap().starts_with(&old));
    assert_eq!(readers_pass(&hive), listed + 1);
    // New jobs go into the open segment, chained to the sealed one.
    jaros(
        &hive,
        &["run", "advance", "--input", "{}", "--node-id", "demo"],
    )
    .expect(0);
    let log_now = read_log(&log).unwrap();
    assert_eq!(log_now.open_first_seq, 60);
    assert!(log_now.head().0 > 60);
    readers_pass(&hive);
    // An edit of the sealed segment is caught and named.
    let mut perms = std::fs::metadata(&sealed).unwrap().permissions();
    #[expect(
        clippy::permissions_set_readonly_false,
        reason = "the test edits a sealed segment"
    )]
    perms.set_readonly(false);
    std::fs::set_permissions(&sealed, perms).unwrap();
    let text = std::fs::read_to_string(&sealed).unwrap();
    std::fs::write(
        &sealed,
        text.replacen("\"kind\":\"job\"", "\"kind\":\"jobs\"", 1),
    )
    .unwrap();
    let verify = jaros(&hive, &["verify"]);
    assert_ne!(verify.code(), 0);
    assert!(
        verify
            .stdout()
            .contains("demo.segments/00000000000000000001.jsonl")
            || verify
                .stderr()
                .contains("demo.segments/00000000000000000001.jsonl"),
        "{}",
        verify.context()
    );
}

/// Sets the fixture's node manifest's retention (and log) settings.
fn set_node_spec(hive: &Path, extra: &str) {
    let path = hive.join("manifests/node.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen("spec:\n", &format!("spec:\n{extra}"), 1);
    std::fs::write(&path, text).unwrap();
}

/// Names of the files in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn gc_collects_results_past_retention_keeps_referenced_blobs_and_the_jobs_read_as_collected() {
    let (_dir, hive) = legacy_hive();
    set_node_spec(
        &hive,
        "  retention:\n    results: 0s\n    failed: 0s\n    blobs: 0s\n",
    );
    let data = hive.join("data");
    let blobs_before = names(&data.join("blobs/sha256"));
    // A blob no record names.
    let stray = "e".repeat(64);
    std::fs::write(data.join("blobs/sha256").join(&stray), b"stray").unwrap();
    let done = names(&data.join("done"));
    let failed = names(&data.join("failed"));
    // A dry run says what goes and removes nothing.
    let dry = jaros(&hive, &["gc", "--dry-run", "--json"])
        .expect(0)
        .json();
    assert_eq!(
        dry["actions"].as_array().unwrap().len(),
        done.len() + failed.len() + 1,
        "{dry}"
    );
    assert_eq!(names(&data.join("done")), done);
    let run = jaros(&hive, &["gc"]).expect(0);
    assert!(run.stdout().contains("freed"), "{}", run.context());
    assert!(names(&data.join("done")).is_empty());
    assert!(names(&data.join("failed")).is_empty());
    // Every blob a record names is still there; the stray one is gone.
    assert_eq!(names(&data.join("blobs/sha256")), blobs_before);
    // The log is untouched and still replays, blobs and all.
    readers_pass(&hive);
    // The jobs read as collected, with how they ended.
    let t1 = jaros(&hive, &["result", "T1"]).expect(0).json();
    assert_eq!(t1["state"], "collected");
    assert_eq!(t1["was"], "done");
    let t2 = jaros(&hive, &["result", "T2"]);
    assert_ne!(t2.code(), 0);
    assert_eq!(t2.json()["was"], "failed");
    let status = jaros(&hive, &["status", "--json"]).json();
    assert_eq!(status["jobs"]["collected"], done.len() + failed.len());
}

#[test]
fn gc_archives_sealed_segments_and_readers_follow_them_there() {
    let (dir, hive) = legacy_hive();
    let log = hive.join("data/log/demo.jsonl");
    let (writer, _) = LogWriter::open(&log).unwrap();
    writer.set_segment_options(SegmentOptions {
        segment_bytes: jaros::log::segment::MIN_SEGMENT_BYTES,
        on_seal: None,
    });
    let plan = read_log(&log)
        .unwrap()
        .records
        .into_iter()
        .rev()
        .find(|r| matches!(r.body, jaros::log::Body::Plan { .. }))
        .unwrap();
    writer.append(&plan.body).unwrap();
    drop(writer);
    let listed = readers_pass(&hive);
    let archive = dir.path().join("archive");
    let archive_arg = archive.display().to_string();
    jaros(&hive, &["gc", "--archive", &archive_arg]).expect(0);
    let segments = hive.join("data/log/demo.segments");
    assert_eq!(names(&segments), vec!["00000000000000000001.archived"]);
    assert!(archive
        .join("demo.segments/00000000000000000001.jsonl")
        .is_file());
    assert_eq!(readers_pass(&hive), listed);
    // Gone from the archive, the segment is named as missing.
    std::fs::remove_file(archive.join("demo.segments/00000000000000000001.jsonl")).unwrap();
    let verify = jaros(&hive, &["verify"]);
    assert_ne!(verify.code(), 0);
    assert!(
        (verify.stdout() + &verify.stderr()).contains("restore it there"),
        "{}",
        verify.context()
    );
}

/// `retention.every`: a running node applies its retention itself, on its
/// own thread, and the jobs it collected read as collected.
#[test]
fn a_node_applies_its_retention_every_so_often_by_itself() {
    let (_dir, hive) = legacy_hive();
    set_node_spec(
        &hive,
        "  retention:\n    results: 0s\n    failed: 0s\n    every: 1s\n",
    );
    let data = hive.join("data");
    let ended = names(&data.join("done")).len() + names(&data.join("failed")).len();
    assert!(ended > 0, "the fixture holds results");
    let mut args = vec!["--data-dir", "data", "--node-id", "n1"];
    args.extend_from_slice(common::FAST);
    let node = common::Node::start(&hive, &args);
    common::wait_until(
        std::time::Duration::from_secs(30),
        "the running node to collect every result",
        || names(&data.join("done")).is_empty() && names(&data.join("failed")).is_empty(),
    );
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("retention removed or archived"), "{log}");
    let status = jaros(&hive, &["status", "--json"]).json();
    assert_eq!(status["jobs"]["collected"], ended);
    readers_pass(&hive);
}
