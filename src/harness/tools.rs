//! Executable tools: a program under the hive's `tools/` that a tool
//! manifest names. It gets `{"payload": ..., "context": {job, agent,
//! decision, type, epoch, idempotency_key}}` as JSON on stdin and answers
//! one JSON value on stdout, which must match the type's result schema.
//! A tool may run more than once for one decision (at-least-once: see
//! [`crate::exec::idempotency_key`] for how it makes its effect
//! exactly-once).
//!
//! Each run: the executable's sha256 checked against the plan's (a tool
//! swapped under a running plan is refused) and those very bytes run, from a
//! copy in the run's scratch directory (reachable by the user the tool runs
//! as, wherever the hive lies); a cleared environment plus the manifest's
//! allow-list; a fresh working directory (removed after); its own process
//! group (killed as a whole at the time-out, when the output cap is passed,
//! and after the tool exits, so forked children do not outlive it); and
//! where the kernel has Landlock, the launcher's layers (see
//! [`super::launcher`]): its agent's grant, no network unless hosts are
//! granted, no capabilities, an unprivileged user under a root node, no
//! inherited descriptors, and nothing it starts can leave that group.
//! Replay never runs a tool: it reads the recorded result back.
//!
//! Not covered: without Landlock (tools unconfined), a child that leaves the
//! process group (`setsid`) escapes the group kill; its held-open output is
//! abandoned after [`DRAIN_GRACE_MS`].

use super::landlock::{self, LAUNCHER_PREFIX, SANDBOX_SUBCOMMAND};
use super::launcher::{self, RunAs};
use super::status::{self, ConfinementStatus};
use super::{read_back, refuse};
use crate::canon::Digest;
use crate::decision::Decision;
use crate::exec::{Cx, ExecRunner, Outcome, Verdict};
use crate::gate::normalize_path;
use crate::plan::HandlerSpec;
use rustix::process::{kill_process_group, waitid, Pid, Signal, WaitId, WaitIdOptions};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// `PATH` for a tool whose allow-list does not pass one through.
pub const DEFAULT_PATH: &str = "/usr/bin:/bin";
/// The most output any tool may print, whatever its manifest says: a result
/// must fit a log record (and the payload limit) anyway.
pub const HARD_MAX_OUTPUT_BYTES: u64 = 4 * 1024 * 1024;
/// How much of a failing tool's stderr its error shows.
pub const STDERR_SHOWN_BYTES: usize = 2000;
/// How long to wait for a tool's output to close once its process group was
/// killed (only a process that left the group can hold it open).
pub const DRAIN_GRACE_MS: u64 = 1000;
/// How much of a non-JSON stdout an error shows.
const STDOUT_SHOWN_CHARS: usize = 200;
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Runs executable tools; registered with [`crate::exec::Executor::with_exec`].
#[derive(Debug, Clone)]
pub struct ToolRunner {
    /// The `jaros` binary, re-executed as the confining launcher.
    launcher: Option<PathBuf>,
    /// Who confined tools run as.
    run_as: Option<RunAs>,
}

impl ToolRunner {
    /// `launcher` is the `jaros` binary (`std::env::current_exe()` in the
    /// CLI); without one, tools run unconfined. Confined tools of a root
    /// node run as [`launcher::NOBODY`] unless [`ToolRunner::run_as`] says
    /// otherwise.
    pub fn new(launcher: Option<PathBuf>) -> ToolRunner {
        ToolRunner {
            launcher,
            run_as: launcher::default_run_as(),
        }
    }

    /// Confined tools run as `run_as` (only a root node can change user;
    /// `None` keeps the node's own).
    pub fn run_as(mut self, run_as: Option<RunAs>) -> ToolRunner {
        self.run_as = run_as;
        self
    }

    /// The `jaros` binary that confines what this runner starts, if any.
    pub fn launcher(&self) -> Option<&Path> {
        self.launcher.as_deref()
    }

    /// Who confined tools (and MCP servers) run as.
    pub fn run_as_user(&self) -> Option<RunAs> {
        self.run_as
    }

    /// Whether this runner confines the tools it starts, and how.
    pub fn status(&self) -> ConfinementStatus {
        status::status_with(self.launcher.as_deref(), self.run_as)
    }
}

/// A tool run's scratch directory, removed when dropped: `work/`, the
/// tool's working directory (owned by the user it runs as), and `bin/`,
/// holding the copy of the tool it runs: the very bytes whose digest was
/// checked, reachable by that user wherever the hive lies.
struct Scratch {
    root: PathBuf,
    work: PathBuf,
    tool: PathBuf,
}

impl Scratch {
    fn create(tool_name: &str, bytes: &[u8], run_as: Option<RunAs>) -> Result<Scratch, String> {
        let root = std::env::temp_dir().join(format!("jaros-tool-{}", crate::ids::random_hex(12)));
        let dir = |path: &Path, mode: u32| {
            std::fs::DirBuilder::new()
                .mode(mode)
                .create(path)
                .map_err(|e| format!("cannot create a scratch directory {}: {e}", path.display()))
        };
        dir(&root, 0o755)?;
        let scratch = Scratch {
            work: root.join("work"),
            tool: root.join("bin").join(tool_name),
            root,
        };
        dir(&scratch.work, 0o700)?;
        dir(&scratch.root.join("bin"), 0o755)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&scratch.tool)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| format!("cannot copy the tool into {}: {e}", scratch.tool.display()))?;
        if let Some(RunAs { uid, gid }) = run_as {
            rustix::fs::chown(
                &scratch.work,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(|e| format!("cannot give {} to uid {uid}: {e}", scratch.work.display()))?;
        }
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover directory in the temp dir harms nothing.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Finds the tool's executable and checks it is the one the plan was
/// compiled with: its bytes.
fn locate(hive: &Path, command: &str, expected: &Digest) -> Result<Vec<u8>, String> {
    let rel = normalize_path(command).map_err(|why| format!("names an invalid path: {why}"))?;
    if !rel.starts_with("tools/") {
        return Err("is not under tools/".into());
    }
    let tools = std::fs::canonicalize(hive.join("tools"))
        .map_err(|e| format!("cannot be found: the hive's tools/: {e}"))?;
    let path =
        std::fs::canonicalize(hive.join(&rel)).map_err(|e| format!("cannot be found: {e}"))?;
    if !path.starts_with(&tools) {
        return Err("resolves outside tools/ (through a symlink)".into());
    }
    let bytes = crate::fsx::read(&path).map_err(|e| e.to_string())?;
    let actual = Digest::of_bytes(&bytes);
    if actual != *expected {
        return Err(format!(
            "changed since the plan was compiled (its sha256 is {}, the plan has {}); a running node recompiles its plan when a manifest changes and then runs the new version; run `jaros validate` to check it",
            actual.short(),
            expected.short()
        ));
    }
    Ok(bytes)
}

/// What a finished (or stopped) process left.
#[derive(Debug)]
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    timed_out: bool,
    oversize: bool,
    /// Output still held open by a process outside the group.
    undrained: bool,
}

fn kill_group(pid: Pid) {
    // ESRCH (nothing left) is the usual and wanted outcome.
    let _ = kill_process_group(pid, Signal::KILL);
}

/// Reads a stream to its end, keeping at most `keep` bytes; past `cap`
/// bytes in total it kills the process group and stops.
fn reader(
    mut stream: impl Read + Send + 'static,
    cap: u64,
    keep: usize,
    pid: Pid,
    oversize: Arc<AtomicBool>,
) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut total = 0u64;
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    total += n as u64;
                    let room = keep.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..n.min(room)]);
                    if total > cap {
                        oversize.store(true, Ordering::SeqCst);
                        kill_group(pid);
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(kept);
    });
    rx
}

/// Runs `cmd` in its own process group with `input` on stdin, within
/// `timeout` and `cap` bytes of output, and kills the whole group at the end.
fn run_process(
    mut cmd: Command,
    input: Vec<u8>,
    timeout: Duration,
    cap: u64,
) -> Result<Finished, String> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not be started: {e}"))?;
    let pid = Pid::from_child(&child);
    let oversize = Arc::new(AtomicBool::new(false));
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        kill_group(pid);
        let _ = child.wait();
        return Err("could not be given its pipes".into());
    };
    // A tool that does not read its input just closes the pipe: not an error.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = reader(stdout, cap, cap as usize, pid, oversize.clone());
    let err = reader(stderr, cap, STDERR_SHOWN_BYTES, pid, oversize.clone());

    // Wait for the group leader to exit without reaping it, so its pid
    // still names the group when the group is killed.
    let (exited_tx, exited_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        loop {
            match waitid(
                WaitId::Pid(pid),
                WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
            ) {
                Err(e) if e == rustix::io::Errno::INTR => continue,
                _ => break,
            }
        }
        let _ = exited_tx.send(());
    });
    let timed_out = match exited_rx.recv_timeout(timeout) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => false,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            kill_group(pid);
            true
        }
    };
    let _ = waiter.join();
    kill_group(pid);
    let status = child
        .wait()
        .map_err(|e| format!("could not be waited for: {e}"))?;

    let deadline = Instant::now() + Duration::from_millis(DRAIN_GRACE_MS);
    let drain = |rx: mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    };
    let stdout = drain(out);
    let stderr = drain(err);
    let undrained = stdout.is_none() || stderr.is_none();
    if !undrained {
        let _ = writer.join();
    }
    Ok(Finished {
        status,
        stdout: stdout.unwrap_or_default(),
        stderr: stderr.unwrap_or_default(),
        timed_out,
        oversize: oversize.load(Ordering::SeqCst),
        undrained,
    })
}

fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("{}{text}", crate::exec::TOOL_STDERR_MARK)
    }
}

impl ExecRunner for ToolRunner {
    fn run(&self, cx: &Cx<'_>, spec: &HandlerSpec, decision: &Decision) -> Result<Outcome, String> {
        let HandlerSpec::Exec {
            command,
            sha256,
            timeout_ms,
            max_output_bytes,
            env,
        } = spec
        else {
            return Err(format!(
                "decision type '{}' is not an executable tool",
                decision.kind
            ));
        };
        // Replay never starts a tool.
        let Some(live) = cx.live else {
            return read_back(cx);
        };
        let name = format!("tool '{}' ({command})", decision.kind);
        let action = format!("tool {} ({command})", decision.kind);
        let hive = live.hive();
        let bytes = match locate(&hive, command, sha256) {
            Ok(bytes) => bytes,
            Err(why) => return Err(refuse(live, cx, decision, &action, format!("{name} {why}"))),
        };
        let status = self.status();
        // Where the kernel has Landlock every tool goes through the
        // launcher, even when its probe failed: the launcher then refuses
        // this run with the reason, rather than it running unconfined.
        let launcher = self
            .launcher
            .as_ref()
            .filter(|_| status.landlock_abi.is_some());
        let run_as = launcher.and(self.run_as);
        let file_name = Path::new(command)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("tool");
        let scratch = Scratch::create(file_name, &bytes, run_as)?;
        let (mut cmd, how) = match launcher {
            Some(launcher) => {
                let mut c = landlock::confinement_for(
                    &hive,
                    live.data_dir().as_deref(),
                    cx.plan,
                    cx.job.agent.as_str(),
                    &scratch.tool,
                    &scratch.work,
                );
                c.run_as = run_as;
                let mut cmd = launcher::command(launcher);
                cmd.args(launcher_args(&c, &scratch.tool));
                let abi = status.landlock_abi.unwrap_or_default();
                let layers = match &status.layers {
                    Some(Ok(layers)) => status::describe_layers(layers),
                    Some(Err(why)) => format!("the launcher's probe failed: {why}"),
                    None => String::new(),
                };
                (
                    cmd,
                    format!(
                        "confined by Landlock ABI {abi}: {}; {layers}",
                        c.describe(&std::fs::canonicalize(&hive).unwrap_or(hive.clone()))
                    ),
                )
            }
            None => (
                Command::new(&scratch.tool),
                format!("not confined: {}", status.reason),
            ),
        };
        cmd.env_clear().current_dir(&scratch.work);
        for var in env {
            if let Some(value) = std::env::var_os(var) {
                cmd.env(var, value);
            }
        }
        if !env.iter().any(|v| v == "PATH") {
            cmd.env("PATH", DEFAULT_PATH);
        }
        super::audit(live, cx, decision, &action, Verdict::Allowed, how)?;

        let input = json!({
            "payload": decision.payload,
            "context": {
                "job": cx.job.job,
                "agent": cx.job.agent,
                "decision": decision.id,
                "type": decision.kind,
                "epoch": live.epoch(),
                "idempotency_key": cx.idempotency_key(decision),
            },
        });
        let cap = (*max_output_bytes).min(HARD_MAX_OUTPUT_BYTES);
        // A tool runs no longer than the job's wall-time budget has left.
        let left = cx
            .job
            .wall_left_ms(cx.plan)
            .filter(|left| left < timeout_ms);
        let timeout_ms = &left.unwrap_or(*timeout_ms);
        let done = run_process(
            cmd,
            input.to_string().into_bytes(),
            Duration::from_millis(*timeout_ms),
            cap,
        )
        .map_err(|e| format!("{name} {e}"))?;
        let done_timed_out = done.timed_out;
        drop(scratch);
        interpret(
            &name,
            *timeout_ms,
            cap,
            &done,
            cx.plan.types.get(&decision.kind).map(|t| &t.result_schema),
        )
        .map_err(|e| match left {
            Some(_) if done_timed_out => {
                format!("{e} (what was left of the job's wall-time budget)")
            }
            _ => e,
        })
    }
}

/// Turns a finished run into the decision's outcome.
fn interpret(
    name: &str,
    timeout_ms: u64,
    cap: u64,
    done: &Finished,
    schema: Option<&Value>,
) -> Result<Outcome, String> {
    if done.timed_out {
        return Err(format!(
            "{name} timed out after {timeout_ms} ms and was killed"
        ));
    }
    if done.oversize {
        return Err(format!(
            "{name} printed more than {cap} bytes, its output cap, and was killed"
        ));
    }
    if done.undrained {
        return Err(format!(
            "{name} left a process outside its process group holding its output open"
        ));
    }
    if let Some(code) = done.status.code() {
        let launcher_failed = matches!(
            code,
            landlock::EXIT_NOT_CONFINED | landlock::EXIT_NOT_EXECUTED
        ) && done.stderr.starts_with(LAUNCHER_PREFIX.as_bytes());
        if launcher_failed {
            return Err(format!(
                "{name} could not be started confined{}",
                stderr_tail(&done.stderr)
            ));
        }
        if code != 0 {
            return Err(format!(
                "{name} exited with status {code}{}",
                stderr_tail(&done.stderr)
            ));
        }
    } else {
        let signal = done.status.signal().unwrap_or_default();
        return Err(format!(
            "{name} was killed by signal {signal}{}",
            stderr_tail(&done.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&done.stdout);
    if text.trim().is_empty() {
        return Err(format!(
            "{name} printed nothing on stdout; a tool answers with one JSON value"
        ));
    }
    let result: Value = serde_json::from_str(text.trim()).map_err(|e| {
        let shown: String = text.trim().chars().take(STDOUT_SHOWN_CHARS).collect();
        format!(
            "{name} printed invalid JSON on stdout ({e}){}{shown:?}",
            crate::exec::TOOL_STDOUT_MARK
        )
    })?;
    crate::decision::check_payload(&result)
        .map_err(|e| format!("{name} returned a result that cannot be recorded: {e}"))?;
    if let Some(schema) = schema {
        let validator = jsonschema::validator_for(schema)
            .map_err(|e| format!("the result schema of {name} does not compile: {e}"))?;
        let first = validator.iter_errors(&result).next().map(|error| {
            let at = error.instance_path().to_string();
            let at = if at.is_empty() {
                "the result".to_string()
            } else {
                format!("result{at}")
            };
            format!("{name} returned a result that does not match its result schema: {at}: {error}")
        });
        if let Some(reason) = first {
            return Err(reason);
        }
    }
    Ok(Outcome::result(result))
}

/// The launcher's arguments: confine to `c`, then run `tool`.
pub fn launcher_args(c: &landlock::Confinement, tool: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![SANDBOX_SUBCOMMAND.into()];
    args.extend(c.to_args());
    args.push("--".into());
    args.push(tool.as_os_str().to_owned());
    args
}
