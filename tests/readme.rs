//! The README's "Using it" walkthrough, run command by command as a new user
//! would: the ```sh block under "## Using it" is read from README.md, each
//! command runs in order in one POSIX shell (so `cd` carries over and `&`
//! starts the node in the background) in the test's own temp dir, with this
//! build's `jaros` first on the PATH, and each command's result is checked.
//! The README cannot drift from what the binary does.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

/// The heading of the walkthrough in README.md.
const SECTION: &str = "## Using it";

/// One command of the walkthrough.
#[derive(Debug)]
struct Step {
    /// The command as written, comment removed.
    command: String,
    /// Started with `&`: runs while the later commands run.
    background: bool,
}

/// The commands of the first ```sh block under [`SECTION`].
fn walkthrough(readme: &str) -> Vec<Step> {
    let start = readme
        .find(&format!("\n{SECTION}\n"))
        .unwrap_or_else(|| panic!("README.md has no '{SECTION}' section"));
    let section = &readme[start + 1..];
    let section = match section[SECTION.len()..].find("\n## ") {
        Some(end) => &section[..SECTION.len() + end],
        None => section,
    };
    let open = section
        .find("```sh\n")
        .unwrap_or_else(|| panic!("'{SECTION}' has no ```sh block"));
    let body = &section[open + "```sh\n".len()..];
    let body = &body[..body.find("```").expect("the ```sh block is closed")];
    let mut steps = Vec::new();
    let mut pending = String::new();
    for line in body.lines() {
        let line = strip_comment(line);
        if let Some(head) = line.trim_end().strip_suffix('\\') {
            pending.push_str(head.trim());
            pending.push(' ');
            continue;
        }
        pending.push_str(line.trim());
        let command = std::mem::take(&mut pending).trim().to_string();
        if command.is_empty() {
            continue;
        }
        match command.strip_suffix('&') {
            Some(head) if !head.ends_with('&') => steps.push(Step {
                command: head.trim().to_string(),
                background: true,
            }),
            _ => steps.push(Step {
                command,
                background: false,
            }),
        }
    }
    steps
}

/// `line` without a trailing `# comment` (a `#` after whitespace, outside
/// quotes).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev_blank = true;
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev_blank => return &line[..i],
            _ => {}
        }
        prev_blank = c.is_whitespace();
    }
    line
}

/// What one command left behind.
struct Outcome {
    command: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn report(&self) -> String {
        format!(
            "$ {}\nexit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// A shell script running `steps` in order in one shell, each command's
/// output and exit status into `out/<n>.{out,err,rc}`; a background
/// command's status is collected at the end (after a SIGTERM if the
/// walkthrough did not stop it itself).
fn script(steps: &[Step], out: &Path) -> String {
    let o = out.display();
    let mut text = String::new();
    for (n, step) in steps.iter().enumerate() {
        if step.background {
            text.push_str(&format!(
                "{} >'{o}/{n}.out' 2>'{o}/{n}.err' &\necho $! >'{o}/{n}.pid'\n",
                step.command
            ));
        } else {
            text.push_str(&format!(
                "{{ {}\n}} >'{o}/{n}.out' 2>'{o}/{n}.err' </dev/null\necho $? >'{o}/{n}.rc'\n",
                step.command
            ));
        }
    }
    for (n, step) in steps.iter().enumerate() {
        if step.background {
            text.push_str(&format!(
                "p=$(cat '{o}/{n}.pid')\nkill -0 \"$p\" 2>/dev/null && kill \"$p\"\nwait \"$p\"\necho $? >'{o}/{n}.rc'\n"
            ));
        }
    }
    text
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_default()
}

/// Checks the result of one command of the walkthrough by what it is.
fn check(o: &Outcome, all: &str) {
    let words: Vec<&str> = o.command.split_whitespace().collect();
    let sub = words
        .iter()
        .position(|w| *w == "jaros")
        .and_then(|i| words.get(i + 1))
        .copied()
        .unwrap_or("");
    assert_eq!(o.code, 0, "a walkthrough command failed\n{all}");
    let has = |text: &str, needle: &str| {
        assert!(
            text.contains(needle),
            "expected {needle:?} in the output of `{}`\n{all}",
            o.command
        )
    };
    match sub {
        "init" => has(&o.stdout, "wrote "),
        "validate" => has(&o.stdout, "ok: "),
        "plan" => has(&o.stdout, "planner"),
        "run" | "submit" | "result" => {
            let v: serde_json::Value = serde_json::from_str(&o.stdout)
                .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e})\n{all}", o.command));
            assert_eq!(v["state"], "DONE", "`{}`\n{all}", o.command);
        }
        "status" => has(&o.stdout, "live"),
        "replay" => has(&o.stdout, "verdict: reproducible"),
        "blame" => has(&o.stdout, "chain"),
        "eval" => has(&o.stdout, "eval cases passed"),
        "serve" => has(&o.stderr, "node stopped"),
        _ => {}
    }
}

#[test]
fn the_readme_walkthrough_runs_command_by_command() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md is readable");
    let steps = walkthrough(&readme);
    assert!(
        steps.iter().any(|s| s.background),
        "the walkthrough starts a node in the background: {steps:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let bin_dir = Path::new(common::bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let status = Command::new("sh")
        .arg("-c")
        .arg(script(&steps, &out))
        .current_dir(&work)
        .env("PATH", path)
        .env_remove("JAROS_HIVE")
        .env_remove("JAROS_DATA_DIR")
        .status()
        .expect("sh runs");
    assert!(status.success(), "the walkthrough's shell failed: {status}");
    let outcomes: Vec<Outcome> = steps
        .iter()
        .enumerate()
        .map(|(n, s)| Outcome {
            command: s.command.clone(),
            code: read(out.join(format!("{n}.rc")))
                .trim()
                .parse()
                .unwrap_or(-1),
            stdout: read(out.join(format!("{n}.out"))),
            stderr: read(out.join(format!("{n}.err"))),
        })
        .collect();
    let all = format!(
        "{}\n--- files\n{}",
        outcomes
            .iter()
            .map(Outcome::report)
            .collect::<Vec<_>>()
            .join("\n"),
        common::walk(&work).join("\n")
    );
    for o in &outcomes {
        check(o, &all);
    }
}

#[test]
fn the_walkthrough_is_read_command_by_command() {
    let readme = "# x\n\n## Using it\n\n```sh\njaros init h && cd h   # a comment\njaros serve &\njaros submit a --input '{\"a\": \"# not a comment\"}' \\\n  --wait 1\n```\n\n## Next\n\n```sh\nnot this\n```\n";
    let steps = walkthrough(readme);
    let commands: Vec<(&str, bool)> = steps
        .iter()
        .map(|s| (s.command.as_str(), s.background))
        .collect();
    assert_eq!(
        commands,
        [
            ("jaros init h && cd h", false),
            ("jaros serve", true),
            (
                "jaros submit a --input '{\"a\": \"# not a comment\"}' --wait 1",
                false
            ),
        ]
    );
}
