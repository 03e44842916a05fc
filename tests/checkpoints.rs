//! Signed checkpoints: `jaros keygen`, `jaros checkpoint`, `jaros prove` and
//! `jaros verify --checkpoint` on real logs, the rewrite attack, and an
//! independent verifier (Python, from the C2SP texts) that accepts what
//! Jaros signs and rejects edits.

mod common;

use common::run_in;
use jaros::canon::Digest;
use jaros::datadir::DataDir;
use jaros::decision::{AgentName, JobId};
use jaros::log::{Body, LogWriter, SegmentOptions};
use serde_json::json;
use std::path::{Path, PathBuf};

fn body(n: u64, input: &str) -> Body {
    Body::Job {
        job: JobId::new(format!("j{n}")).unwrap(),
        at: 0,
        agent: AgentName::new("advance").unwrap(),
        input: json!({ "n": n, "note": input }),
        plan: Digest::ZERO,
        parent: None,
        via: None,
        started_ms: None,
        depth: None,
        tree_jobs: None,
    }
}

/// A data dir with a node `n1`, a key outside it, and helpers to grow the
/// log and take checkpoints.
struct Log {
    dir: tempfile::TempDir,
}

impl Log {
    fn new() -> Log {
        let log = Log {
            dir: tempfile::tempdir().unwrap(),
        };
        DataDir::new(log.data()).create().unwrap();
        let keygen = log
            .plain(&["keygen", "example.com/hive", "--out", "hive.key"])
            .expect(0);
        std::fs::write(
            log.path().join("vkey"),
            keygen.stdout().lines().next().unwrap(),
        )
        .unwrap();
        log
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn data(&self) -> PathBuf {
        self.path().join("data")
    }
    fn log_file(&self) -> PathBuf {
        self.data().join("log/n1.jsonl")
    }
    fn vkey(&self) -> String {
        std::fs::read_to_string(self.path().join("vkey")).unwrap()
    }
    /// `jaros verify --checkpoint CP --key <the verifier key>` (`--json`).
    fn verify_against(&self, checkpoint: &Path, json: bool) -> common::Run {
        let cp = checkpoint.to_str().unwrap();
        let vkey = self.vkey();
        let mut args = vec!["verify", "--checkpoint", cp, "--key", &vkey];
        if json {
            args.push("--json");
        }
        self.jaros(&args)
    }
    /// `jaros` in the temp dir, without a data dir (as keygen runs).
    fn plain(&self, args: &[&str]) -> common::Run {
        run_in(self.path(), args)
    }
    fn jaros(&self, args: &[&str]) -> common::Run {
        let mut all = vec!["--data-dir", "data"];
        all.extend_from_slice(args);
        run_in(self.path(), &all)
    }
    /// Appends records `from..=to` (job `j<n>`, input `note`).
    fn append(&self, from: u64, to: u64) {
        let (w, _) = LogWriter::open(&self.log_file()).unwrap();
        for n in from..=to {
            w.append(&body(n, "kept")).unwrap();
        }
    }
    /// Appends records `from..=to` with input `note` to the log at `open`,
    /// sealing it into 4 KiB segments (each record written on its own, so
    /// a segment ends where a record first passes the size).
    fn append_sealed_to(open: &Path, from: u64, to: u64, note: impl Fn(u64) -> &'static str) {
        let (w, _) = LogWriter::open(open).unwrap();
        w.set_segment_options(SegmentOptions {
            segment_bytes: jaros::log::segment::MIN_SEGMENT_BYTES,
            on_seal: None,
        });
        for n in from..=to {
            w.append_deferred(&body(n, note(n))).unwrap();
            w.flush().unwrap();
        }
    }
    fn append_sealed(&self, from: u64, to: u64) {
        Log::append_sealed_to(&self.log_file(), from, to, |_| "kept");
    }
    /// The sealed segments' tree files, in order, with their bytes.
    fn tree_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.data().join("log/n1.segments"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "tree"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect()
    }
    /// Signs a checkpoint now and keeps a copy outside the data dir, as an
    /// auditor would: `kept/<size>.checkpoint`.
    fn checkpoint(&self) -> PathBuf {
        let run = self
            .jaros(&["checkpoint", "--key", "hive.key", "--json"])
            .expect(0);
        let size = run.json()["size"].as_u64().unwrap();
        std::fs::create_dir_all(self.path().join("kept")).unwrap();
        let kept = self.path().join(format!("kept/{size}.checkpoint"));
        std::fs::write(&kept, run.json()["note"].as_str().unwrap()).unwrap();
        kept
    }
    /// Rewrites the whole log with record `edited`'s input changed and
    /// every later hash recomputed: a chain that verifies on its own.
    fn rewrite(&self, size: u64, edited: u64) {
        let fresh = self.path().join("forged.jsonl");
        let (w, _) = LogWriter::open(&fresh).unwrap();
        for n in 1..=size {
            w.append(&body(n, if n == edited { "forged" } else { "kept" }))
                .unwrap();
        }
        drop(w);
        std::fs::rename(&fresh, self.log_file()).unwrap();
    }
}

#[test]
fn keygen_writes_a_private_key_0600_prints_its_verifier_key_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let log = Log::new();
    let key = log.path().join("hive.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("PRIVATE+KEY+example.com/hive+"), "{text}");
    let vkey = log.vkey();
    // The verifier key names the same key id as the private key.
    assert_eq!(text.split('+').nth(3), vkey.split('+').nth(1));
    let again = log
        .plain(&["keygen", "example.com/hive", "--out", "hive.key"])
        .expect(2);
    assert!(
        again.stderr().contains("never overwritten"),
        "{}",
        again.stderr()
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
    log.plain(&["keygen", "bad name"]).expect(2);
}

#[test]
fn a_log_that_grew_extends_its_checkpoint_with_a_consistency_proof() {
    let log = Log::new();
    log.append(1, 10);
    let cp = log.checkpoint();
    log.append(11, 25);
    let run = log.verify_against(&cp, true).expect(0);
    let result = &run.json()["checkpoints"][0]["result"];
    assert_eq!(result["verdict"], "extends");
    assert_eq!(result["old_size"], 10);
    assert_eq!(result["new_size"], 25);
    assert!(!result["proof"].as_array().unwrap().is_empty());
    // The checkpoint the data dir keeps is the same signed note.
    let kept = std::fs::read_to_string(log.data().join("checkpoints/n1/10.checkpoint")).unwrap();
    assert_eq!(kept, std::fs::read_to_string(&cp).unwrap());
}

/// The attack the chain alone cannot catch: the whole log rewritten with
/// every later hash recomputed passes `jaros verify`, and fails against a
/// checkpoint taken before, which names where.
#[test]
fn a_log_rewritten_with_recomputed_hashes_passes_verify_but_fails_its_checkpoints() {
    let log = Log::new();
    log.append(1, 10);
    let cp10 = log.checkpoint();
    log.append(11, 20);
    let cp20 = log.checkpoint();
    log.rewrite(20, 15);
    log.jaros(&["verify"]).expect(0);
    // The earlier checkpoint (records 1..=10) still holds.
    log.verify_against(&cp10, false).expect(0);
    let run = log.verify_against(&cp20, true).expect(1);
    let result = &run.json()["checkpoints"][0]["result"];
    assert_eq!(result["verdict"], "rewritten", "{}", run.context());
    // The data dir's checkpoint of 10 still matches, that of 20 does not.
    assert_eq!(
        (result["first_seq"].as_u64(), result["last_seq"].as_u64()),
        (Some(11), Some(20))
    );
    let text = log.verify_against(&cp20, false).expect(1);
    assert!(
        text.stdout().contains("one of seq 11..=20"),
        "{}",
        text.context()
    );
}

#[test]
fn with_a_checkpoint_at_every_size_the_first_rewritten_record_is_named_exactly() {
    let log = Log::new();
    let mut last = PathBuf::new();
    for n in 1..=20 {
        log.append(n, n);
        last = log.checkpoint();
    }
    log.rewrite(20, 15);
    let run = log.verify_against(&last, false).expect(1);
    assert!(
        run.stdout()
            .contains("the first record that differs from the signed history is seq 15."),
        "{}",
        run.context()
    );
}

#[test]
fn a_truncated_log_fails_its_checkpoint() {
    let log = Log::new();
    log.append(1, 20);
    let cp = log.checkpoint();
    let text = std::fs::read_to_string(log.log_file()).unwrap();
    let kept: String = text.lines().take(12).map(|l| format!("{l}\n")).collect();
    std::fs::write(log.log_file(), kept).unwrap();
    log.jaros(&["verify"]).expect(0);
    let run = log.verify_against(&cp, false).expect(1);
    assert!(
        run.stdout()
            .contains("The log has 12 records, fewer than the checkpoint's 20"),
        "{}",
        run.context()
    );
}

#[test]
fn an_edited_checkpoint_or_another_key_is_refused_naming_the_line() {
    let log = Log::new();
    log.append(1, 5);
    let cp = log.checkpoint();
    let note = std::fs::read_to_string(&cp).unwrap();
    let edited = log.path().join("edited.checkpoint");
    std::fs::write(&edited, note.replacen("\n5\n", "\n4\n", 1)).unwrap();
    let run = log.verify_against(&edited, false).expect(1);
    assert!(
        run.stderr()
            .contains("edited.checkpoint: line 5 of the note"),
        "{}",
        run.stderr()
    );
    log.plain(&["keygen", "example.com/other", "--out", "other.key"])
        .expect(0);
    let run = log
        .jaros(&[
            "verify",
            "--checkpoint",
            cp.to_str().unwrap(),
            "--key",
            "other.key",
        ])
        .expect(1);
    assert!(
        run.stderr()
            .contains("has no signature by example.com/other"),
        "{}",
        run.stderr()
    );
}

#[test]
fn prove_prints_an_inclusion_proof_against_the_newest_checkpoint_that_holds_the_record() {
    let log = Log::new();
    log.append(1, 9);
    log.checkpoint();
    log.append(10, 13);
    let run = log.jaros(&["prove", "4", "--json"]).expect(0);
    let p = run.json();
    assert_eq!(p["tree_size"], 9);
    assert_eq!(p["leaf_index"], 3);
    assert_eq!(p["proof"].as_array().unwrap().len(), 4);
    // Record 12 is in no checkpoint yet: against the current tree head.
    let run = log.jaros(&["prove", "12", "--json"]).expect(0);
    assert_eq!(run.json()["tree_size"], 13);
    assert!(run.json()["checkpoint"].is_null());
    log.jaros(&["prove", "14"]).expect(2);
}

/// The first seq a segment's file is named with.
fn first_seq(path: &Path) -> u64 {
    let name = path.file_name().unwrap().to_str().unwrap();
    name.split('.').next().unwrap().parse().unwrap()
}

/// A tree file with its checksum (its last 32 bytes) recomputed: damage
/// (or a forgery) no checksum catches.
fn with_checksum(mut bytes: Vec<u8>) -> Vec<u8> {
    use sha2::Digest as _;
    let body = bytes.len() - 32;
    let sum = sha2::Sha256::digest(&bytes[..body]);
    bytes[body..].copy_from_slice(&sum);
    bytes
}

/// `prove SEQ --json` checked as an auditor checks it: against the signed
/// root of the checkpoint `cp` (a file outside the data dir).
fn proves_against(log: &Log, seq: u64, cp: &Path) {
    use base64::Engine as _;
    let b64 = |v: &serde_json::Value| -> [u8; 32] {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    };
    let run = log.jaros(&["prove", &seq.to_string(), "--json"]).expect(0);
    let p = run.json();
    let note = std::fs::read_to_string(cp).unwrap();
    assert_eq!(
        p["checkpoint"]["note"].as_str(),
        Some(note.as_str()),
        "proved against the signed checkpoint: {}",
        run.context()
    );
    let root_line = note.lines().nth(2).unwrap();
    let root = b64(&serde_json::Value::String(root_line.into()));
    assert_eq!(b64(&p["root"]), root);
    let proof: Vec<[u8; 32]> = p["proof"].as_array().unwrap().iter().map(b64).collect();
    jaros::log::merkle::verify_inclusion(
        seq - 1,
        p["tree_size"].as_u64().unwrap(),
        &b64(&p["leaf_hash"]),
        &proof,
        &root,
    )
    .unwrap();
}

/// The sealed segments' tree files are a cache: deleted, damaged, or
/// damaged with a checksum that still holds, `prove` rebuilds them from
/// the log and its proof still checks against the signed root.
#[test]
fn prove_rebuilds_a_missing_or_damaged_tree_file_and_its_proof_checks_against_the_signed_root() {
    let log = Log::new();
    log.append_sealed(1, 150);
    let cp = log.checkpoint();
    let trees = log.tree_files();
    assert!(trees.len() >= 3, "150 records in 4 KiB segments: {trees:?}");
    let (file, good) = trees[1].clone();
    proves_against(&log, 20, &cp);
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    let mut leaf = good.clone();
    leaf[good.len() - 33] ^= 1;
    let damages = [
        ("deleted", None),
        ("a bit flipped", Some(flipped)),
        (
            "a stored leaf flipped, its checksum recomputed",
            Some(with_checksum(leaf)),
        ),
    ];
    for (what, damage) in damages {
        match damage {
            None => std::fs::remove_file(&file).unwrap(),
            Some(bytes) => std::fs::write(&file, bytes).unwrap(),
        }
        proves_against(&log, 20, &cp);
        assert_eq!(
            std::fs::read(&file).unwrap(),
            good,
            "{what}: the tree file is rebuilt from the log"
        );
    }
}

/// The rewrite attack, with the stored tree levels in on it: a log
/// rewritten with recomputed hashes and its tree files rebuilt from it, or
/// the old tree files retied to the new segments (their checksums
/// recomputed), still fails against the earlier checkpoint, because
/// `verify --checkpoint` reads the log itself; and `prove` never proves a
/// rewritten record against the signed root.
#[test]
fn a_log_rewritten_with_its_tree_files_rebuilt_or_forged_still_fails_its_checkpoint() {
    let log = Log::new();
    log.append_sealed(1, 200);
    let cp = log.checkpoint();
    let old = log.tree_files();
    assert!(old.len() >= 3, "200 records in 4 KiB segments: {old:?}");
    // A checkpoint in the data dir at the end of the second segment, as a
    // node signs one when it seals it: all of it in stored levels.
    let sealed_size = first_seq(&old[2].0) - 1;
    let key = std::fs::read_to_string(log.path().join("hive.key")).unwrap();
    let key = jaros::log::note::SignerKey::parse(&key).unwrap();
    let data = DataDir::new(log.data());
    let sealed = jaros::log::checkpoint::seal_at(&data, "n1", &key, sealed_size).unwrap();
    let cp_sealed = log.path().join(format!("kept/{sealed_size}.checkpoint"));
    std::fs::write(&cp_sealed, &sealed.note).unwrap();
    // The whole log written again with record 7's input edited ("KEPT" is
    // as long as "kept": the segments end where they ended, at the same
    // bytes).
    let forged = log.path().join("forged/log/n1.jsonl");
    Log::append_sealed_to(&forged, 1, 200, |n| if n == 7 { "KEPT" } else { "kept" });
    let logs = log.data().join("log");
    std::fs::remove_file(log.log_file()).unwrap();
    for (path, _) in &old {
        std::fs::remove_file(path).unwrap();
    }
    for entry in std::fs::read_dir(forged.with_file_name("n1.segments")).unwrap() {
        let from = entry.unwrap().path();
        let to = logs.join("n1.segments").join(from.file_name().unwrap());
        std::fs::remove_file(&to).unwrap();
        std::fs::rename(&from, &to).unwrap();
    }
    std::fs::rename(&forged, log.log_file()).unwrap();
    log.jaros(&["verify"]).expect(0);
    // Tree files rebuilt from the rewritten log (prove finds none).
    log.jaros(&["prove", "3"]).expect(0);
    let rebuilt = log.tree_files();
    assert_eq!(rebuilt.len(), old.len());
    assert_ne!(rebuilt[0].1, old[0].1, "the first segment's tree changed");
    for cp in [&cp, &cp_sealed] {
        let run = log.verify_against(cp, false).expect(1);
        assert!(run.stdout().contains("REWRITTEN"), "{}", run.context());
    }
    // The old tree files (the signed history's levels) retied to the
    // rewritten segments: their length, first prev and last hash, and a
    // checksum that holds. A reader that trusted them would see the old root.
    const TIE: std::ops::Range<usize> = 32..104;
    for ((path, new), (_, was)) in rebuilt.iter().zip(&old) {
        assert_eq!(new[8..32], was[8..32], "the same segment boundaries");
        let mut bytes = was.clone();
        bytes[TIE].copy_from_slice(&new[TIE]);
        std::fs::write(path, with_checksum(bytes)).unwrap();
    }
    for cp in [&cp, &cp_sealed] {
        let run = log.verify_against(cp, false).expect(1);
        assert!(run.stdout().contains("REWRITTEN"), "{}", run.context());
    }
    // Record 7 as rewritten is never proved against the signed root, though
    // the forged levels give the sealed checkpoint's root: the leaf read
    // from the log disagrees with them, they are rebuilt, and then no
    // checkpoint matches.
    let run = log.jaros(&["prove", "7", "--json"]).expect(0);
    assert!(run.json()["checkpoint"].is_null(), "{}", run.context());
    assert_eq!(run.json()["tree_size"], 200);
}

// ---- the independent verifier ------------------------------------------

fn python() -> String {
    std::env::var("JAROS_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn verifier(args: &[&str]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/c2sp_verify.py");
    std::process::Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("python runs")
}

fn accepts(args: &[&str]) {
    let out = verifier(args);
    assert!(
        out.status.success(),
        "the independent verifier rejected {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rejects(args: &[&str]) {
    let out = verifier(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the independent verifier did not reject {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs python cryptography: run by scripts/checkpoint-tests.sh"]
fn the_independent_verifier_accepts_our_checkpoints_and_rejects_edited_ones() {
    let log = Log::new();
    log.append(1, 7);
    let cp = log.checkpoint();
    let vkey = log.vkey();
    accepts(&["checkpoint", cp.to_str().unwrap(), &vkey]);
    let note = std::fs::read_to_string(&cp).unwrap();
    let root_line = note.lines().nth(2).unwrap().to_string();
    let mut flipped = root_line.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let edits = [
        note.replacen("\n7\n", "\n8\n", 1),
        note.replacen(&root_line, &String::from_utf8(flipped).unwrap(), 1),
        note.replacen("example.com/hive/n1", "example.com/hive/n2", 1),
        note.replacen('\u{2014}', "-", 1),
    ];
    for (i, edit) in edits.iter().enumerate() {
        let path = log.path().join(format!("edit{i}.checkpoint"));
        std::fs::write(&path, edit).unwrap();
        rejects(&["checkpoint", path.to_str().unwrap(), &vkey]);
    }
    // Another key's verifier key does not open it.
    let other = log
        .plain(&["keygen", "example.com/hive", "--out", "other.key"])
        .expect(0);
    rejects(&[
        "checkpoint",
        cp.to_str().unwrap(),
        other.stdout().lines().next().unwrap(),
    ]);
}

#[test]
#[ignore = "needs python cryptography: run by scripts/checkpoint-tests.sh"]
fn the_independent_verifier_accepts_our_inclusion_proofs_and_rejects_edited_ones() {
    let log = Log::new();
    log.append(1, 11);
    log.checkpoint();
    let vkey = log.vkey();
    let log_file = log.log_file();
    for seq in 1..=11 {
        let run = log.jaros(&["prove", &seq.to_string(), "--json"]).expect(0);
        let path = log.path().join(format!("prove{seq}.json"));
        std::fs::write(&path, run.stdout()).unwrap();
        accepts(&[
            "inclusion",
            path.to_str().unwrap(),
            log_file.to_str().unwrap(),
            &vkey,
        ]);
        // A proof with one hash changed, or claimed for another record.
        let mut p = run.json();
        let first = p["proof"][0].as_str().unwrap().to_string();
        p["proof"][0] =
            json!(first.replacen(&first[..1], if &first[..1] == "A" { "B" } else { "A" }, 1));
        let bad = log.path().join("bad.json");
        std::fs::write(&bad, p.to_string()).unwrap();
        rejects(&[
            "inclusion",
            bad.to_str().unwrap(),
            log_file.to_str().unwrap(),
            &vkey,
        ]);
        let mut p = run.json();
        p["seq"] = json!(if seq == 1 { 2 } else { seq - 1 });
        std::fs::write(&bad, p.to_string()).unwrap();
        rejects(&[
            "inclusion",
            bad.to_str().unwrap(),
            log_file.to_str().unwrap(),
            &vkey,
        ]);
    }
}

#[test]
#[ignore = "needs python cryptography: run by scripts/checkpoint-tests.sh"]
fn the_independent_verifier_accepts_our_consistency_proofs_and_rejects_edited_ones() {
    let log = Log::new();
    let vkey = log.vkey();
    log.append(1, 3);
    for (old_to, new_to) in [(6u64, 13u64), (16, 16 + 17), (40, 64)] {
        let from = std::fs::read_to_string(log.log_file())
            .unwrap()
            .lines()
            .count() as u64
            + 1;
        log.append(from, old_to);
        let old = log.checkpoint();
        log.append(old_to + 1, new_to);
        let new = log.checkpoint();
        let run = log
            .jaros(&[
                "verify",
                "--json",
                "--checkpoint",
                old.to_str().unwrap(),
                "--key",
                &vkey,
            ])
            .expect(0);
        let proof = log.path().join("consistency.json");
        std::fs::write(&proof, run.stdout()).unwrap();
        let args = |p: &Path| {
            vec![
                "consistency".to_string(),
                old.display().to_string(),
                new.display().to_string(),
                p.display().to_string(),
                vkey.clone(),
            ]
        };
        let ok = args(&proof);
        accepts(&ok.iter().map(String::as_str).collect::<Vec<_>>());
        // One hash of the proof changed.
        let mut j = run.json();
        let h = j["checkpoints"][0]["result"]["proof"][0]
            .as_str()
            .unwrap()
            .to_string();
        j["checkpoints"][0]["result"]["proof"][0] =
            json!(h.replacen(&h[..1], if &h[..1] == "A" { "B" } else { "A" }, 1));
        let bad = log.path().join("bad.json");
        std::fs::write(&bad, j.to_string()).unwrap();
        let no = args(&bad);
        rejects(&no.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

/// The node manifest's `checkpoint_key` and `log.segment_bytes`, wired: a
/// node whose log seals segments signs a checkpoint at each segment's last
/// record, and every one of them verifies against the log that grew past it.
#[test]
fn a_node_signs_a_checkpoint_at_the_end_of_every_segment_it_seals() {
    let hive = common::example_hive();
    let keygen = hive
        .jaros(&["keygen", "example.com/hive", "--out", "hive.key"])
        .expect(0);
    let vkey = keygen.stdout().lines().next().unwrap().to_string();
    let node_yaml = hive.path().join("manifests/node.yaml");
    let text = std::fs::read_to_string(&node_yaml).unwrap();
    let text = text.replacen(
        "spec:\n",
        "spec:\n  checkpoint_key: hive.key\n  log:\n    segment_bytes: 4096\n",
        1,
    );
    std::fs::write(&node_yaml, text).unwrap();
    // Four runs of ten jobs, each writing past a segment's size: a run
    // seals at least once whatever its append batches (one batch may hold
    // every record of a run, and a segment is sealed after a batch).
    for wave in 0..4 {
        for n in 0..10 {
            let input = format!("{{\"n\": {}}}", wave * 10 + n);
            hive.jaros(&["submit", "advance", "--input", &input])
                .expect(0);
        }
        let run = hive.jaros(&[
            "serve",
            "--node-id",
            "n1",
            "--exit-when-idle",
            "--scan-ms",
            "20",
        ]);
        assert_eq!(run.code(), 0, "{}", run.context());
    }
    // The sealed segments, named by their first seq; each ends just before
    // the next one (or the open segment) begins.
    let sealed_dir = hive.data().join("log/n1.segments");
    let mut firsts: Vec<u64> = std::fs::read_dir(&sealed_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".jsonl").and_then(|s| s.parse().ok()))
        .collect();
    firsts.sort_unstable();
    assert!(
        firsts.len() >= 2,
        "40 jobs in 4 KiB segments seal several: {firsts:?}"
    );
    let checkpoints = hive.data().join("checkpoints/n1");
    let sizes = || -> Vec<u64> {
        let mut s: Vec<u64> = std::fs::read_dir(&checkpoints)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter_map(|n| n.strip_suffix(".checkpoint").and_then(|s| s.parse().ok()))
                    .collect()
            })
            .unwrap_or_default();
        s.sort_unstable();
        s
    };
    // Each segment's last seq is the next segment's first, less one.
    let mut ends: Vec<u64> = firsts.iter().skip(1).map(|f| f - 1).collect();
    let open_first = jaros::log::read_log(&hive.data().join("log/n1.jsonl"))
        .unwrap()
        .open_first_seq;
    ends.push(open_first - 1);
    assert_eq!(
        sizes(),
        ends,
        "one checkpoint at the end of every sealed segment"
    );
    for size in ends {
        let file = checkpoints.join(format!("{size}.checkpoint"));
        let verify = hive.jaros(&[
            "verify",
            "--checkpoint",
            file.to_str().unwrap(),
            "--key",
            &vkey,
        ]);
        assert_eq!(verify.code(), 0, "{}", verify.context());
    }
}
