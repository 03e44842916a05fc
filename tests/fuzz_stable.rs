//! Fuzzing on stable Rust: bounded, reproducible random-input runs of the
//! three readers that take bytes from outside (the log's line and file
//! reader, the job-file reader and the manifest loader), asserting what the
//! libFuzzer targets under `fuzz/` assert, with no nightly toolchain.
//!
//! Inputs are mutations of real seeds (a demo run's log, its jobs written as
//! job files, the example hive's manifests): byte edits, splices between
//! seeds, and edits of the JSON tree. A splitmix64 generator drives them, so
//! a run is the same for the same seed. Each test feeds
//! `JAROS_FUZZ_{LOG,JOB,MANIFEST}_INPUTS` inputs (a few thousand by default, so
//! plain `cargo test` stays quick); `scripts/fuzz.sh --stable` (run by
//! `.ci/run`) feeds millions in the `fuzz` profile, an optimised build with
//! overflow checks and debug assertions on. `JAROS_FUZZ_SEED` picks the seed.
//! A failing input is printed with the seed and its number.

mod common;

use jaros::canon::Digest;
use jaros::log::record::{check_line, parse_line, seal};
use jaros::log::{read_log, verify_chain, Body, LogError};
use jaros::manifest;
use jaros::node::inbox::read_job;
use serde_json::{json, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Inputs per test when its variable is unset: enough to exercise every
/// mutation in a debug build within a few seconds.
const DEFAULT_INPUTS: u64 = 4000;
/// The generator's seed when `JAROS_FUZZ_SEED` is unset.
const DEFAULT_SEED: u64 = 0x6a61_726f_7322;
/// One log input in this many is a whole log file read through `read_log`
/// (a file written per input); the others are single lines.
const WHOLE_LOG_ONE_IN: u64 = 16;
/// One manifest input in this many is also loaded as part of a whole hive
/// (`load_hive`: cross-references and compilation too).
const WHOLE_HIVE_ONE_IN: u64 = 512;
/// Longest job file name stem the fuzzer makes, in bytes (file systems allow
/// 255 bytes for the whole name).
const MAX_FUZZ_ID_BYTES: usize = 200;
/// Largest input the mutator grows, in bytes (as `fuzz.sh`'s `-max_len`).
const MAX_INPUT_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------- the generator

/// splitmix64: small, fast and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text}: expected a whole number")),
        Err(_) => default,
    }
}

/// Bytes that matter to JSON and YAML parsers, and values at their edges.
const PIECES: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"\\uDFFF",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\n",
    b"\r",
    b"\t",
    b" ",
    b"- ",
    b"---\n",
    b"...\n",
    b"&a ",
    b"*a",
    b"!!str ",
    b"!!binary ",
    b"? ",
    b"|\n",
    b">-\n",
    b"#",
    b"%YAML 1.2\n",
    b"<<: *a\n",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xef\xbb\xbf",
    b"0",
    b"-1",
    b"-0",
    b"1.5",
    b"1e309",
    b"-1e-400",
    b"9007199254740993",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"null",
    b"true",
    b"~",
    b"\"\"",
    b"{}",
    b"[]",
];

/// Names the readers look for: a mutation that writes one reaches further.
const WORDS: &[&str] = &[
    "kind",
    "seq",
    "prev",
    "hash",
    "job",
    "agent",
    "input",
    "id",
    "parent",
    "via",
    "resume",
    "schedule",
    "slot",
    "decision",
    "effect",
    "end",
    "model",
    "plan",
    "rejected",
    "blob",
    "digest",
    "state",
    "result",
    "apiVersion",
    "jaros/v1",
    "metadata",
    "name",
    "spec",
    "role",
    "tools",
    "grants",
    "Node",
    "Role",
    "Agent",
    "Tool",
    "Schedule",
    "Eval",
    "planner",
    "worker",
    "reviewer",
    "handoff",
    "fs.write",
    "../../etc/passwd",
];

/// One to eight edits of `input`, some taking bytes from `others`.
fn mutate_bytes(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(12) {
            0 => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            1 => {
                let piece = *rng.pick(PIECES);
                out.splice(at..at, piece.iter().copied());
            }
            2 => out.truncate(at),
            3 => {
                let end = (at + rng.below(64)).min(out.len());
                let copy = out[at..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, copy);
            }
            4 => {
                if at < out.len() {
                    out[at] = rng.next() as u8;
                }
            }
            5 => {
                if at < out.len() {
                    out[at] ^= 1 << rng.below(8);
                }
            }
            6 if !others.is_empty() => {
                // Crossover: a slice of another seed.
                let other = rng.pick(others);
                let from = rng.below(other.len() + 1);
                let end = (from + rng.below(256)).min(other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
            7 => {
                let word = rng.pick(WORDS).as_bytes();
                out.splice(at..at, word.iter().copied());
            }
            8 => {
                // Deep nesting: what recursion limits are for.
                let piece = *rng.pick(&[b"[".as_slice(), b"{\"a\":", b"- ", b"a:\n "]);
                let times = 1 + rng.below(300);
                let many: Vec<u8> = piece.repeat(times);
                out.splice(at..at, many);
            }
            9 => {
                // A digit run replaced by a number at an edge.
                if let Some(start) = out[at..].iter().position(u8::is_ascii_digit) {
                    let start = at + start;
                    let len = out[start..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    let piece = *rng.pick(&PIECES[32..42]);
                    out.splice(start..start + len, piece.iter().copied());
                }
            }
            10 => {
                // A line removed or doubled (YAML and JSONL are line-shaped).
                let lines: Vec<usize> = std::iter::once(0)
                    .chain(
                        out.iter()
                            .enumerate()
                            .filter(|(_, &b)| b == b'\n')
                            .map(|(i, _)| i + 1),
                    )
                    .collect();
                let start = *rng.pick(&lines);
                let end = out[start..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(out.len(), |i| start + i + 1);
                if rng.below(2) == 0 {
                    out.drain(start..end);
                } else {
                    let line = out[start..end].to_vec();
                    out.splice(start..start, line);
                }
            }
            _ => {
                // A run of one byte (long strings, long lines).
                let byte = *rng.pick(b"a \"\\\n{[0");
                let times = 1 + rng.below(2000);
                out.splice(at..at, std::iter::repeat_n(byte, times));
            }
        }
        out.truncate(MAX_INPUT_BYTES);
    }
    out
}

/// A value at an edge of what JSON, canonical JSON or the readers allow.
fn edge_value(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(u64::MAX),
        5 => json!(i64::MIN),
        6 => json!(9_007_199_254_740_993u64),
        7 => json!(1.5e300),
        8 => json!(-0.0),
        9 => json!(""),
        10 => json!("\u{0}\u{1f}\u{7f}\u{2028}é😀"),
        11 => json!("x".repeat(1 + rng.below(5000))),
        12 => json!({}),
        13 => json!([]),
        14 => {
            let depth = 1 + rng.below(200);
            serde_json::from_str(&format!("{}1{}", "[".repeat(depth), "]".repeat(depth)))
                .unwrap_or(Value::Null)
        }
        _ => json!(*rng.pick(WORDS)),
    }
}

/// One edit somewhere in the tree of `value`.
fn mutate_value(rng: &mut Rng, value: &mut Value) {
    match value {
        Value::Object(map) if !map.is_empty() && rng.below(5) != 0 => {
            let key = map.keys().nth(rng.below(map.len())).cloned().unwrap();
            match rng.below(8) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(rng.pick(WORDS).to_string(), edge_value(rng));
                }
                2 => {
                    // A renamed member: an unknown field, or a duplicate's twin.
                    let v = map.remove(&key).unwrap();
                    map.insert(format!("{key}{}", rng.pick(&["", "_", "X", " "])), v);
                }
                _ => mutate_value(rng, map.get_mut(&key).unwrap()),
            }
        }
        Value::Array(items) if !items.is_empty() && rng.below(5) != 0 => {
            let i = rng.below(items.len());
            match rng.below(6) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.insert(i, copy);
                }
                _ => mutate_value(rng, &mut items[i]),
            }
        }
        Value::String(s) if rng.below(2) == 0 => {
            let bytes = mutate_bytes(rng, s.as_bytes(), &[]);
            *s = String::from_utf8_lossy(&bytes).into_owned();
        }
        _ => *value = edge_value(rng),
    }
}

/// A mutation of a JSON seed: its tree edited and written back (compact or
/// pretty), then sometimes its bytes edited too.
fn mutate_json(rng: &mut Rng, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<Value>(seed) else {
        return mutate_bytes(rng, seed, others);
    };
    for _ in 0..=rng.below(3) {
        mutate_value(rng, &mut value);
    }
    let text = if rng.below(8) == 0 {
        serde_json::to_vec_pretty(&value)
    } else {
        serde_json::to_vec(&value)
    }
    .unwrap();
    if rng.below(4) == 0 {
        mutate_bytes(rng, &text, others)
    } else {
        text
    }
}

// ---------------------------------------------------------------- the driver

/// One generated input: its bytes, and where they go (a file name, a
/// manifest path), for the report of a failure.
struct Input {
    bytes: Vec<u8>,
    place: String,
}

/// Makes `JAROS_FUZZ_<var>` inputs with `make` and checks each with `check`
/// under `catch_unwind`, so that any panic (a property in `check`, or one of
/// the code under test) is reported with the input, the seed and its number.
fn drive(
    name: &str,
    var: &str,
    mut make: impl FnMut(&mut Rng, u64) -> Input,
    mut check: impl FnMut(&Input, u64),
) {
    let inputs = env_u64(var, DEFAULT_INPUTS);
    let seed = env_u64("JAROS_FUZZ_SEED", DEFAULT_SEED);
    let mut rng = Rng(seed ^ fnv(name));
    let started = Instant::now();
    let cpu_at_start = thread_cpu_secs();
    for n in 0..inputs {
        let input = make(&mut rng, n);
        if catch_unwind(AssertUnwindSafe(|| check(&input, n))).is_err() {
            panic!(
                "{name}: input {n} of JAROS_FUZZ_SEED={seed} broke a property (see the panic above); \
                 place {:?}, {} bytes: {:?}",
                input.place,
                input.bytes.len(),
                String::from_utf8_lossy(&input.bytes[..input.bytes.len().min(8192)])
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // CPU time too: on a shared machine the wall clock says little of the rate.
    let cpu = match (cpu_at_start, thread_cpu_secs()) {
        (Some(start), Some(end)) => format!(
            ", {:.1} s on a CPU ({:.0}/CPU-s)",
            end - start,
            inputs as f64 / (end - start).max(1e-9)
        ),
        _ => String::new(),
    };
    eprintln!(
        "fuzz {name}: {inputs} inputs in {secs:.1} s ({:.0}/s){cpu}, seed {seed}",
        inputs as f64 / secs.max(1e-9)
    );
}

/// Seconds this thread has run on a CPU (Linux: the first field of
/// /proc/thread-self/schedstat, in nanoseconds), where that file exists.
fn thread_cpu_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// FNV-1a, to give each test its own stream from one seed.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A demo run's hive: its log's lines are the log seeds, its jobs the job
/// file seeds, its manifests the manifest seeds.
struct Demo {
    _dir: tempfile::TempDir,
    hive: PathBuf,
    log: Vec<u8>,
}

fn demo() -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let hive = dir.path().join("hive");
    let hive_arg = hive.to_str().unwrap();
    common::run_in(dir.path(), &["demo", "--dir", hive_arg]).expect(0);
    let log_dir = hive.join(".jaros-data/log");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = std::fs::read(logs.pop().unwrap()).unwrap();
    Demo {
        _dir: dir,
        hive,
        log,
    }
}

fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

// ---------------------------------------------------------------- the log

/// A line: `check_line` and `parse_line` return, and agree; a body that
/// deserializes seals to a line that reads back as the same kind, with the
/// same chain fields, and seals to the same line again.
fn check_log_line(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let checked = check_line(text);
    let parsed = parse_line(text);
    if let Ok(record) = &parsed {
        let fields = checked.as_ref().ok();
        assert!(
            fields
                .is_some_and(|f| (f.seq, f.prev, f.hash) == (record.seq, record.prev, record.hash)),
            "parse_line accepted a line check_line refuses, or read other chain fields"
        );
    }
    let Ok(body) = serde_json::from_str::<Body>(text) else {
        return;
    };
    // Over the size limit: refused with an error, which is fine.
    let Ok((line, hash)) = seal(7, &Digest::ZERO, &body) else {
        return;
    };
    let record = parse_line(&line).unwrap_or_else(|e| {
        panic!("sealed line does not read back ({e}): {line}\ninput: {text:?}")
    });
    assert!(
        std::mem::discriminant(&record.body) == std::mem::discriminant(&body),
        "the sealed line reads back as another kind"
    );
    assert!(
        (record.seq, record.prev, record.hash) == (7, Digest::ZERO, hash),
        "the sealed line reads back with other chain fields"
    );
    assert!(
        seal(7, &Digest::ZERO, &record.body).unwrap().0 == line,
        "the body read back seals to another line"
    );
}

/// A whole file: `read_log` and `verify_chain` agree; an accepted log's
/// records count from 1 and its torn tail is the bytes after the last
/// newline; a refused one names a line of the file.
fn check_log_file(path: &Path, input: &[u8]) {
    std::fs::write(path, input).unwrap();
    let read = read_log(path);
    let verified = verify_chain(path, None);
    let last_newline = input.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    match &read {
        Ok(log) => {
            assert!(
                verified.error.is_none(),
                "read_log accepts what verify refuses"
            );
            assert!(
                log.valid_len == last_newline as u64 && log.torn_tail == input.len() - last_newline,
                "the torn tail is not the bytes after the last newline"
            );
            assert!(
                verified.torn_tail_bytes == log.torn_tail
                    && verified.records == log.records.len() as u64,
                "verify and read_log count differently"
            );
            assert!(
                log.records
                    .iter()
                    .enumerate()
                    .all(|(i, r)| r.seq == i as u64 + 1),
                "an accepted log's records do not count from 1"
            );
        }
        Err(LogError::Tampered { line, seq, .. }) => {
            let file_lines = input[..last_newline]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            assert!(
                verified.error.is_some(),
                "verify accepts what read_log refuses"
            );
            assert!(
                *line >= 1 && *line <= file_lines && *seq >= 1,
                "{}",
                format!("refused at line {line} (seq {seq}) of a file of {file_lines} lines")
            );
        }
        Err(e) => panic!("read_log failed for another reason than the content: {e}"),
    }
}

#[test]
fn mutated_log_lines_and_files_never_break_the_readers_properties() {
    let demo = demo();
    let seeds = lines(&demo.log);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fuzz.jsonl");
    drive(
        "log",
        "JAROS_FUZZ_LOG_INPUTS",
        |rng, n| {
            let bytes = if n % WHOLE_LOG_ONE_IN == 0 {
                // A prefix of the real log, edited: a cut, a line edited, or
                // whole lines dropped, doubled or swapped.
                let upto = rng.below(seeds.len()) + 1;
                let log: Vec<u8> = seeds[..upto].join(&b'\n');
                let mut log = [log.as_slice(), b"\n"].concat();
                if rng.below(4) != 0 {
                    log = mutate_bytes(rng, &log, &seeds);
                }
                log
            } else {
                let seed = &seeds[rng.below(seeds.len())];
                if rng.below(2) == 0 {
                    mutate_json(rng, seed, &seeds)
                } else {
                    mutate_bytes(rng, seed, &seeds)
                }
            };
            let place = if n % WHOLE_LOG_ONE_IN == 0 {
                "a whole log"
            } else {
                "a line"
            };
            Input {
                bytes,
                place: place.into(),
            }
        },
        |input, n| {
            if n % WHOLE_LOG_ONE_IN == 0 {
                check_log_file(&file, &input.bytes);
            } else {
                check_log_line(&input.bytes);
            }
        },
    );
}

// ---------------------------------------------------------------- job files

/// A job file: `read_job` returns; a refusal gives a reason; an accepted job
/// has the file's id and one of the hive's agents, and written back as a job
/// file reads the same.
fn check_job_file(dir: &Path, name: &[u8], input: &[u8], plan: &jaros::plan::Plan) {
    use std::os::unix::ffi::OsStrExt;
    let mut file_name = name.to_vec();
    file_name.extend_from_slice(b".json");
    let path = dir.join(std::ffi::OsStr::from_bytes(&file_name));
    std::fs::write(&path, input).unwrap();
    match read_job(&path, plan) {
        Err(jaros::node::inbox::Unread::Bad(reason)) => {
            assert!(!reason.trim().is_empty(), "refused without a reason")
        }
        // The file was just written: it cannot be gone.
        Err(jaros::node::inbox::Unread::Gone) => panic!("a job file just written reads as gone"),
        Ok(job) => {
            assert!(
                job.id.as_str().as_bytes() == name,
                "the job's id is not its file name"
            );
            assert!(
                plan.agents.contains_key(job.agent.as_str()),
                "the job names an agent the hive lacks"
            );
            // Lineage may be refused from outside; a job without it reads back alike.
            if job.parent.is_none() && job.via.is_none() {
                std::fs::write(&path, serde_json::to_vec(&job.to_json()).unwrap()).unwrap();
                let again = read_job(&path, plan);
                assert!(
                    again.as_ref() == Ok(&job),
                    "{}",
                    format!("written back, the job reads as {again:?}")
                );
            }
        }
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn mutated_job_files_are_read_or_refused_with_a_reason() {
    let demo = demo();
    let plan = manifest::load_hive(&demo.hive)
        .unwrap_or_else(|e| panic!("the demo hive loads: {e:?}"))
        .plan;
    // The demo's jobs, as the job files that would start them, and the same
    // with each optional field set.
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for line in lines(&demo.log) {
        let record: Value = serde_json::from_slice(&line).unwrap();
        if record["kind"] == "job" {
            let file =
                json!({"id": record["job"], "agent": record["agent"], "input": record["input"]});
            seeds.push(serde_json::to_vec(&file).unwrap());
            let mut full = file.clone();
            full["parent"] = json!("T0");
            full["via"] = json!("T0/d1.0");
            full["resume"] = json!(true);
            full["schedule"] = json!("nightly");
            full["slot"] = json!("2026-01-01T00:00:00Z");
            seeds.push(serde_json::to_vec(&full).unwrap());
        }
    }
    assert!(seeds.len() >= 4, "the demo log has jobs");
    let ids: Vec<Vec<u8>> = seeds
        .iter()
        .map(|s| {
            let v: Value = serde_json::from_slice(s).unwrap();
            v["id"].as_str().unwrap().as_bytes().to_vec()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    drive(
        "job",
        "JAROS_FUZZ_JOB_INPUTS",
        |rng, _| {
            let i = rng.below(seeds.len());
            let bytes = if rng.below(3) == 0 {
                mutate_bytes(rng, &seeds[i], &seeds)
            } else {
                mutate_json(rng, &seeds[i], &seeds)
            };
            // Mostly the id the file claims; sometimes an edited one (no '/'
            // or NUL, which no file name holds).
            let mut name = ids[i].clone();
            if rng.below(8) == 0 {
                let edited = mutate_bytes(rng, &name, &ids);
                let mut text: String = String::from_utf8_lossy(&edited)
                    .chars()
                    .filter(|&c| c != '/' && c != '\0')
                    .collect();
                while text.len() > MAX_FUZZ_ID_BYTES {
                    text.pop();
                }
                if text.is_empty() || text == "." || text == ".." {
                    text = "x".into();
                }
                name = text.into_bytes();
            }
            Input {
                bytes,
                place: String::from_utf8(name).expect("made from UTF-8 above"),
            }
        },
        |input, _| {
            check_job_file(dir.path(), input.place.as_bytes(), &input.bytes, &plan);
        },
    );
}

// ---------------------------------------------------------------- manifests

/// One manifest file's bytes: every error has a line and column inside the
/// input and a message, and no document the typed parser accepts is refused
/// by its kind's JSON Schema (the loader trusts the parser, and runs the
/// schema only for the errors of a document the parser refuses). The other
/// way may differ: to a JSON Schema `5.0` is an integer; to the parser it is
/// not.
fn check_manifest(input: &[u8]) {
    if let Ok(docs) = manifest::yaml::parse(input) {
        for doc in docs {
            let parsed = manifest::validate::parse_document(&doc.value).is_ok();
            assert!(
                !parsed || manifest::validate::Schemas::shared().accept(&doc.value),
                "{}",
                format!(
                    "the parser accepts a document its schema refuses:\n{}",
                    String::from_utf8_lossy(input)
                )
            );
        }
    }
    let errors = manifest::check_file_bytes(input);
    let line_breaks = input.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    for (pos, message) in &errors {
        assert!(
            pos.line >= 1
                && pos.line <= line_breaks + 1
                && pos.col >= 1
                && pos.col <= input.len() + 1,
            "{}",
            format!(
                "error at {}:{} outside the input: {message}",
                pos.line, pos.col
            )
        );
        assert!(!message.trim().is_empty(), "an error without a message");
    }
}

/// The same bytes as `file` in a whole hive: `load_hive` returns, and every
/// error names a file and a position.
fn check_manifest_in_hive(hive: &Path, file: &str, input: &[u8], original: &[u8]) {
    let path = hive.join(file);
    std::fs::write(&path, input).unwrap();
    if let Err(diagnostics) = manifest::load_hive(hive) {
        for d in &diagnostics {
            assert!(
                !d.file.is_empty() && d.line >= 1 && d.col >= 1 && !d.message.trim().is_empty(),
                "{}",
                format!("a load error without a place: {d:?}")
            );
        }
    }
    std::fs::write(&path, original).unwrap();
}

#[test]
fn mutated_manifests_get_errors_with_a_place_and_never_panic_the_loader() {
    let hive = common::example_hive();
    let files: Vec<(&str, Vec<u8>)> = manifest::embedded::FILES
        .iter()
        .filter(|(p, _)| p.starts_with("manifests/") && !p.starts_with("manifests/schedules/"))
        .map(|(p, b)| (*p, b.to_vec()))
        .collect();
    let seeds: Vec<Vec<u8>> = files.iter().map(|(_, b)| b.clone()).collect();
    assert!(
        manifest::load_hive(hive.path()).is_ok(),
        "the example hive loads before it is mutated"
    );
    drive(
        "manifest",
        "JAROS_FUZZ_MANIFEST_INPUTS",
        |rng, _| {
            let i = rng.below(files.len());
            Input {
                bytes: mutate_bytes(rng, &seeds[i], &seeds),
                place: files[i].0.to_string(),
            }
        },
        |input, n| {
            check_manifest(&input.bytes);
            if n % WHOLE_HIVE_ONE_IN == 0 {
                let original = &files.iter().find(|(p, _)| *p == input.place).unwrap().1;
                check_manifest_in_hive(hive.path(), &input.place, &input.bytes, original);
            }
        },
    );
}
