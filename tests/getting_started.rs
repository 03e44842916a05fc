//! `docs/getting-started.md` is run: every ```sh block, in order, in one
//! temporary directory, with this build's `jaros` first on PATH, so the
//! guide cannot go stale. A block marked `no-run: REASON` (in its info
//! string, or in an HTML comment on the line before it) is skipped with the
//! reason printed. Each block runs in `bash -euo pipefail` and starts where
//! the previous one ended (its last working directory), as a reader's shell
//! would.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

/// How long one block may run before the test calls it hung (a guard
/// against a node left running, not a speed assertion).
const BLOCK_LIMIT: Duration = Duration::from_secs(300);

/// One ```sh block of the guide.
#[derive(Debug)]
struct Block {
    /// 1-based line of its opening fence.
    line: usize,
    /// `Some(reason)` when it must not be run here.
    skip: Option<String>,
    script: String,
}

/// The reason in `no-run: REASON` (or `no-run REASON`), if `text` holds one.
fn no_run(text: &str) -> Option<String> {
    let at = text.find("no-run")?;
    let reason = text[at + "no-run".len()..]
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("-->")
        .trim();
    Some(if reason.is_empty() {
        "marked no-run".to_string()
    } else {
        reason.to_string()
    })
}

fn blocks(guide: &str) -> Vec<Block> {
    let lines: Vec<&str> = guide.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let info = lines[i].trim_start();
        let Some(rest) = info.strip_prefix("```") else {
            i += 1;
            continue;
        };
        let lang = rest.split_whitespace().next().unwrap_or("");
        let start = i;
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && !lines[i].trim_start().starts_with("```") {
            body.push(lines[i]);
            i += 1;
        }
        i += 1; // the closing fence
        if lang != "sh" {
            continue;
        }
        let before = start
            .checked_sub(1)
            .map(|b| lines[b].trim())
            .filter(|b| b.starts_with("<!--"));
        out.push(Block {
            line: start + 1,
            skip: no_run(rest).or_else(|| before.and_then(no_run)),
            script: body.join("\n") + "\n",
        });
    }
    out
}

/// The directory holding the `jaros` under test.
fn bin_dir() -> PathBuf {
    Path::new(common::bin()).parent().unwrap().to_path_buf()
}

/// Runs the guide's blocks in `root/work`; `Err` names the first block that
/// failed, with its output. Returns how many blocks ran.
fn run_guide(guide: &str, root: &Path) -> Result<usize, String> {
    let work = root.join("work");
    let out = root.join("out");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cwd = work.clone();
    let mut ran = 0;
    for (n, block) in blocks(guide).iter().enumerate() {
        if let Some(reason) = &block.skip {
            println!("skipped: block {n} (line {}): {reason}", block.line);
            continue;
        }
        let pwd_file = out.join("pwd");
        let stdout = out.join(format!("{n}.out"));
        let stderr = out.join(format!("{n}.err"));
        let script = format!("{}pwd > '{}'\n", block.script, pwd_file.display());
        let mut child = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(&cwd)
            .env("PATH", &path)
            .env("HOME", root)
            .env_remove("JAROS_HIVE")
            .env_remove("JAROS_DATA_DIR")
            .env_remove("JAROS_NODE_ID")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("bash runs");
        let code = common::wait_timeout(&mut child, BLOCK_LIMIT);
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        if code != 0 {
            return Err(format!(
                "block {n} (docs/getting-started.md line {}) exited {code} in {}\n--- block\n{}--- stdout\n{}--- stderr\n{}",
                block.line,
                cwd.display(),
                block.script,
                read(&stdout),
                read(&stderr)
            ));
        }
        println!("ran: block {n} (line {})", block.line);
        cwd = PathBuf::from(read(&pwd_file).trim());
        ran += 1;
    }
    Ok(ran)
}

fn guide() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/getting-started.md"))
        .expect("docs/getting-started.md exists")
}

/// The guide's runnable blocks, at least this many: a parser that found
/// none would pass vacuously.
const MIN_RUN_BLOCKS: usize = 10;

#[test]
fn the_guide_runs() {
    let root = tempfile::tempdir().unwrap();
    let ran = run_guide(&guide(), root.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(ran >= MIN_RUN_BLOCKS, "only {ran} blocks ran");
    // What the guide says happened, happened.
    let hive = root.path().join("work/myhive");
    assert!(hive.join("manifests/agents/triage.yaml").is_file());
    assert!(hive.join(".jaros-data/failed/T1.json").is_file());
    let impact: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hive.join("impact.json")).unwrap()).unwrap();
    assert_eq!(impact["allowed_total"], 1, "{impact:#}");
    assert_eq!(impact["allowed"][0]["examples"][0]["job"], "T1");
}

#[test]
fn marked_blocks_are_skipped_with_their_reason() {
    let guide = guide();
    let all = blocks(&guide);
    let skipped: Vec<&Block> = all.iter().filter(|b| b.skip.is_some()).collect();
    assert!(
        skipped.iter().any(|b| b.script.contains("docker compose")
            && b.skip.as_deref().unwrap().contains("container engine")),
        "{skipped:?}"
    );
    assert!(skipped.iter().any(|b| b.script.contains("kubectl")));
    let commented = blocks("<!-- no-run: needs a network -->\n```sh\nfalse\n```\n");
    assert_eq!(commented[0].skip.as_deref(), Some("needs a network"));
    assert!(blocks("```sh\ntrue\n```\n")[0].skip.is_none());
}

#[test]
fn a_broken_command_fails_the_guide() {
    let guide = guide();
    let broken = guide.replacen("jaros validate\n", "jaros validate --no-such-flag\n", 1);
    assert_ne!(broken, guide, "the guide runs `jaros validate`");
    let root = tempfile::tempdir().unwrap();
    let err = run_guide(&broken, root.path()).expect_err("a broken command fails the run");
    assert!(err.contains("--no-such-flag"), "{err}");
}
