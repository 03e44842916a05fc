//! Bad input to the core commands: one clear line on stderr naming the file
//! and what to do, a non-zero exit, nothing modified.

mod common;

use common::{fingerprint, run_in, Hive};

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {stderr}");
    lines[0]
}

#[test]
fn a_log_file_that_is_not_jsonl_is_named_and_nothing_is_modified() {
    let hive = Hive::empty();
    hive.jaros(&["run", "advance"]).expect(0);
    let log = hive.log_file();
    std::fs::write(&log, "this is not a log\n").unwrap();
    let before = fingerprint(hive.path());
    let verify = hive.jaros(&["verify"]).expect(1);
    assert!(
        verify.stdout().contains("BROKEN") && verify.stdout().contains("line 1"),
        "{}",
        verify.stdout()
    );
    let replay = hive.jaros(&["replay", "--json"]).expect(1);
    let errors = replay.json()["chain_errors"].to_string();
    assert!(errors.contains(&log.display().to_string()), "{errors}");
    let run = hive.jaros(&["run", "advance"]).expect(1);
    let line = one_line(&run.stderr()).to_string();
    assert!(
        line.contains(&log.display().to_string())
            && line.contains("line 1")
            && line.contains("restore the file from a backup"),
        "{line}"
    );
    assert_eq!(fingerprint(hive.path()), before);
}

#[test]
fn a_missing_data_dir_is_one_line_naming_it() {
    let hive = Hive::empty();
    for args in [&["replay"][..], &["verify"][..]] {
        let run = hive.jaros(args).expect(2);
        let line = one_line(&run.stderr()).to_string();
        assert!(
            line.contains(".jaros-data does not exist") && line.contains("--data-dir"),
            "{line}"
        );
    }
    assert!(
        !hive.data().exists(),
        "a read-only command created the data dir"
    );
}

#[test]
fn an_unknown_job_id_is_one_line() {
    let hive = Hive::empty();
    hive.jaros(&["run", "advance"]).expect(0);
    let before = fingerprint(hive.path());
    let run = hive.jaros(&["replay", "--job", "nope"]).expect(2);
    let line = one_line(&run.stderr()).to_string();
    assert!(
        line.contains("job 'nope' is not in any log under") && line.contains("jaros status"),
        "{line}"
    );
    // Looking a job up builds the job index, a cache beside the logs
    // (docs/log.md): everything else is as it was.
    let after: Vec<_> = fingerprint(hive.path())
        .into_iter()
        .filter(|(path, _)| !path.starts_with(".jaros-data/index/"))
        .collect();
    assert_eq!(after, before);
}

#[test]
fn until_beyond_the_end_is_one_line() {
    let hive = Hive::empty();
    hive.jaros(&["run", "advance"]).expect(0);
    let run = hive.jaros(&["replay", "--until", "999"]).expect(2);
    let line = one_line(&run.stderr()).to_string();
    assert_eq!(
        line,
        "jaros: --until 999 is beyond the end of every log (the highest seq is 5)"
    );
    let partial = hive
        .jaros(&["replay", "--until", "3", "--json"])
        .expect(0)
        .json();
    assert_eq!(partial["unfinished_jobs"], 1);
}

#[test]
fn no_hive_is_one_line_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(dir.path(), &["run", "advance"]).expect(2);
    let line = one_line(&run.stderr()).to_string();
    assert!(
        line.contains("no hive found") && line.contains("jaros init DIR"),
        "{line}"
    );
}

#[test]
fn bad_json_input_is_refused_before_anything_is_written() {
    let hive = Hive::empty();
    let run = hive
        .jaros(&["run", "advance", "--input", "{nope"])
        .expect(2);
    assert!(one_line(&run.stderr()).starts_with("jaros: --input: not valid JSON"));
    assert!(!hive.data().exists());
}

#[test]
fn verify_with_an_anchor_catches_truncation() {
    let hive = Hive::empty();
    hive.jaros(&["run", "advance"]).expect(0);
    let head = hive.jaros(&["verify", "--json"]).expect(0).json();
    let chain = &head["chains"][0];
    let anchor = format!(
        "{}:{}",
        chain["head_seq"],
        chain["head_hash"].as_str().unwrap()
    );
    hive.jaros(&["verify", "--anchor", &anchor]).expect(0);
    let log = hive.log_file();
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = text.lines().take(3).collect();
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    hive.jaros(&["verify"]).expect(0);
    let broken = hive.jaros(&["verify", "--anchor", &anchor]).expect(1);
    assert!(
        broken.stdout().contains("the log was truncated"),
        "{}",
        broken.stdout()
    );
}

#[test]
fn verify_names_the_torn_record_and_that_its_node_cuts_it_at_open() {
    let hive = Hive::empty();
    hive.jaros(&["run", "advance", "--node-id", "n1"]).expect(0);
    let log = hive.log_file();
    let whole = std::fs::read(&log).unwrap();
    let lines = whole.iter().filter(|&&b| b == b'\n').count();
    let offset = whole[..whole.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let last: serde_json::Value = serde_json::from_slice(&whole[offset..]).unwrap();
    let (kind, job) = (
        last["kind"].as_str().unwrap(),
        last["job"].as_str().unwrap(),
    );
    let place = format!("torn tail: line {lines} (from byte {offset}, ");
    let cut = format!(
        "which a crash cut short; it is outside the chain, and node 'n1' truncates \
         log/n1.jsonl to {offset} bytes, cutting it, when it next opens the log"
    );

    // Cut 25 bytes into the last record, as a crash mid-write would: its
    // kind is not there yet, so verify shows how it starts.
    std::fs::write(&log, &whole[..offset + 25]).unwrap();
    let out = hive.jaros(&["verify"]).expect(0).stdout();
    let starts = String::from_utf8_lossy(&whole[offset..offset + 25]).into_owned();
    for want in [
        format!("{place}25 bytes, no newline) is the start of record {lines} (its kind cut off; it starts {starts:?}), "),
        cut.clone(),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    // Cut 10 bytes before its end: its kind and job are whole.
    let torn = whole.len() - offset - 10;
    std::fs::write(&log, &whole[..whole.len() - 10]).unwrap();
    let out = hive.jaros(&["verify"]).expect(0).stdout();
    for want in [
        format!("{place}{torn} bytes, no newline) is the start of record {lines} (kind '{kind}', job '{job}'), "),
        cut,
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    let json = hive.jaros(&["verify", "--json"]).expect(0).json();
    let chain = &json["chains"][0];
    assert_eq!(chain["records"], lines as u64 - 1, "{json}");
    assert_eq!(chain["torn_tail_bytes"], torn, "{json}");
    let t = &chain["torn_tail"];
    assert_eq!(
        (
            &t["line"],
            &t["offset"],
            &t["bytes"],
            &t["seq"],
            &t["kind"],
            &t["job"]
        ),
        (
            &lines.into(),
            &offset.into(),
            &torn.into(),
            &lines.into(),
            &kind.into(),
            &job.into()
        ),
        "{json}"
    );

    // What it said happens: the next open cuts the file at that byte (had
    // the torn bytes stayed, the next record would follow them on their line
    // and the chain would be broken).
    hive.jaros(&["run", "advance", "--node-id", "n1"]).expect(0);
    let after = std::fs::read(&log).unwrap();
    assert_eq!(after[..offset], whole[..offset]);
    let out = hive.jaros(&["verify"]).expect(0).stdout();
    assert!(!out.contains("torn tail"), "{out}");
}
