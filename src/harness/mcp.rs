//! MCP tools: the built-in handler [`crate::plan::MCP_HANDLER`] behind every
//! decision type a Tool manifest's `mcp:` exposes. It finds the server and
//! tool in the plan, keeps one session per server and role scopes alive in
//! the node (a server is started on first use, reused by later calls, and
//! started again when it died or a call left it out of step), calls the
//! tool with the decision's payload as arguments and its idempotency key in
//! `_meta`, and returns `{content, isError, structuredContent}` for the
//! effect record. Replay never calls a server: it reads the record back.
//!
//! A stdio server runs like an executable tool: through the launcher where
//! the kernel has Landlock (the role's read and write scopes, the server's
//! declared `install` directories read-only, no network unless the role
//! grants hosts, seccomp, no capabilities), with a cleared environment plus
//! its allow-list, a scratch working directory, and in its own process
//! group, killed as a whole when its session is dropped (the node stopping
//! drops them all). A server whose live tool list differs from its lock
//! file is refused, with the tools and fields that changed.

use super::landlock;
use super::launcher::{self, RunAs};
use super::{audit, read_back, refuse, ToolRunner};
use crate::canon::Digest;
use crate::decision::Decision;
use crate::exec::{Cx, Handler, Outcome, Verdict};
use crate::mcp::http::HttpTransport;
use crate::mcp::stdio::StdioTransport;
use crate::mcp::{lock, CallResult, Session, Transport};
use crate::plan::{McpServer, McpServerPlan, McpTool};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `_meta` key that carries a call's idempotency key.
pub const IDEMPOTENCY_META_KEY: &str = "dev.jaros/idempotency_key";

/// One live server: its session and the scratch directory it runs in.
struct Live {
    session: Session,
    _scratch: Option<ScratchDir>,
}

/// A server's working directory, removed when its session ends.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in the temp dir harms nothing.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The handler; registered by [`super::register`].
pub struct McpHandler {
    launcher: Option<PathBuf>,
    run_as: Option<RunAs>,
    status: super::ConfinementStatus,
    /// Sessions by server and confinement: a role with other scopes gets a
    /// server of its own. Each slot is locked for a whole call (a stdio
    /// server answers one call at a time).
    pool: Mutex<HashMap<Digest, Arc<Mutex<Option<Live>>>>>,
}

impl McpHandler {
    pub fn new(tools: &ToolRunner) -> McpHandler {
        McpHandler {
            launcher: tools.launcher().map(Path::to_path_buf),
            run_as: tools.run_as_user(),
            status: tools.status(),
            pool: Mutex::new(HashMap::new()),
        }
    }

    /// How many servers this handler keeps alive now.
    pub fn live_servers(&self) -> usize {
        let Ok(pool) = self.pool.lock() else { return 0 };
        pool.values()
            .filter(|slot| slot.lock().map(|s| s.is_some()).unwrap_or(false))
            .count()
    }
}

impl Handler for McpHandler {
    fn run(&self, cx: &Cx<'_>, decision: &Decision) -> Result<Outcome, String> {
        // Replay never calls a server.
        let Some(live) = cx.live else {
            return read_back(cx);
        };
        let Some((manifest, server, tool)) = cx.plan.mcp_tool(&decision.kind) else {
            return Err(format!(
                "decision type '{}' names no MCP tool in the plan",
                decision.kind
            ));
        };
        let name = format!("MCP tool '{}' (server '{manifest}')", decision.kind);
        let action = format!("mcp {} ({manifest} {})", decision.kind, tool.name);
        let hive = live.hive();
        let grant = cx
            .plan
            .grant_of(cx.job.agent.as_str())
            .cloned()
            .unwrap_or_default();
        let key = Digest::of(&json!({
            "manifest": manifest,
            "server": server.server,
            "lock": server.lock_sha256,
            "read": grant.read,
            "write": grant.write,
            "net": !grant.hosts.is_empty(),
        }))
        .map_err(|e| format!("{name}: {e}"))?;
        let slot = {
            let mut pool = self
                .pool
                .lock()
                .map_err(|_| format!("{name}: the server pool is poisoned"))?;
            pool.entry(key).or_default().clone()
        };
        let mut slot = slot
            .lock()
            .map_err(|_| format!("{name}: a call to this server panicked"))?;
        let how = match &server.server {
            McpServer::Stdio { .. }
                if self.launcher.is_some() && self.status.landlock_abi.is_some() =>
            {
                "stdio, confined by Landlock".to_string()
            }
            McpServer::Stdio { .. } => format!("stdio, not confined: {}", self.status.reason),
            McpServer::Http { url, .. } => format!("Streamable HTTP at {url}"),
        };
        if let McpServer::Http { url, .. } = &server.server {
            // The node itself reaches an HTTP server, so the role's hosts
            // are checked here (a stdio server is kept off the network by
            // its confinement instead).
            if !crate::mcp::http::host_granted(&grant.hosts, url).unwrap_or(false) {
                return Err(refuse(
                    live,
                    cx,
                    decision,
                    &action,
                    format!(
                        "{name} is refused: its server is at {url}, and the role of agent '{}' does not grant reaching that host (add it to the role's `hosts`)",
                        cx.job.agent
                    ),
                ));
            }
        }
        if slot.as_mut().is_some_and(|l| !l.session.usable()) {
            // It died since its last call: dropping the session reaps it and
            // kills what it left behind; a new one is started below.
            tracing::info!(
                server = manifest,
                "MCP server exited between calls; starting it again"
            );
            *slot = None;
        }
        if slot.is_none() {
            match self.start(cx, live, &hive, manifest, server) {
                Ok(started) => *slot = Some(started),
                Err(why) => {
                    return Err(refuse(live, cx, decision, &action, format!("{name} {why}")))
                }
            }
        }
        audit(live, cx, decision, &action, Verdict::Allowed, how)?;
        let Some(running) = slot.as_mut() else {
            return Err(format!("{name}: no session (unreachable)"));
        };
        let mut arguments = decision.payload.clone();
        if arguments.is_null() {
            arguments = json!({});
        }
        let timeout_ms = cx
            .job
            .wall_left_ms(cx.plan)
            .filter(|left| *left < server.timeout_ms)
            .unwrap_or(server.timeout_ms);
        let cap = server
            .max_output_bytes
            .min(super::tools::HARD_MAX_OUTPUT_BYTES);
        let meta = json!({IDEMPOTENCY_META_KEY: cx.idempotency_key(decision)});
        let outcome = running.session.call(
            &tool.name,
            &arguments,
            &meta,
            Duration::from_millis(timeout_ms),
            cap,
        );
        for refused in running.session.take_refused_requests() {
            audit(live, cx, decision, &action, Verdict::Refused, refused)?;
        }
        let result = match outcome {
            Ok(result) => result,
            Err(failure) => {
                if failure.broken || running.session.is_broken() {
                    // Dropping the session kills the server's process group;
                    // the next call starts a new one.
                    *slot = None;
                }
                return Err(refuse(
                    live,
                    cx,
                    decision,
                    &action,
                    format!("{name} failed: {}", failure.reason),
                ));
            }
        };
        interpret(&name, tool, &result).map_err(|why| refuse(live, cx, decision, &action, why))
    }
}

/// The call's outcome: its result, or why it fails the decision.
fn interpret(name: &str, tool: &McpTool, result: &CallResult) -> Result<Outcome, String> {
    if result.is_error {
        // The whole answer (content, the flag, any structured content),
        // bounded by the call's output cap, is the failure's record.
        let answer = crate::canon::to_string(&result.to_value())
            .unwrap_or_else(|_| result.to_value().to_string());
        return Err(format!("{name} reported an error: {answer}"));
    }
    crate::mcp::check_output(tool, result).map_err(|why| format!("{name}: {why}"))?;
    let value = result.to_value();
    crate::decision::check_payload(&value)
        .map_err(|e| format!("{name} returned a result that cannot be recorded: {e}"))?;
    Ok(Outcome::result(value))
}

impl McpHandler {
    /// Starts (or connects to) a server, opens a session and checks its
    /// tool list against the lock.
    fn start(
        &self,
        cx: &Cx<'_>,
        live: &dyn crate::exec::LiveIo,
        hive: &Path,
        manifest: &str,
        server: &McpServerPlan,
    ) -> Result<Live, String> {
        // The handshake gets the same time as a call.
        let timeout = Duration::from_millis(server.timeout_ms);
        let (transport, scratch): (Box<dyn Transport>, Option<ScratchDir>) = match &server.server {
            McpServer::Http {
                url,
                headers_from_env,
            } => (
                Box::new(HttpTransport::new(
                    url,
                    headers(headers_from_env)?,
                    Duration::from_millis(server.timeout_ms),
                )),
                None,
            ),
            McpServer::Stdio {
                command,
                args,
                env,
                install,
            } => {
                let scratch = scratch_dir(self.run_as_for_launch())?;
                let program = in_scratch(&scratch, command, resolve_command(hive, command, env)?)?;
                let cmd = self.command(cx, live, hive, &program, args, env, install, &scratch.0);
                let t = StdioTransport::spawn(cmd).map_err(|e| format!("({command}) {e}"))?;
                (Box::new(t), Some(scratch))
            }
        };
        let mut session = Session::open(transport, timeout)
            .map_err(|f| format!("could not be started: {}", f.reason))?;
        let tools = session
            .list_tools(timeout)
            .map_err(|f| format!("could not list its tools: {}", f.reason))?;
        let changed = lock::drift(&server.tools, &tools);
        if !changed.is_empty() {
            return Err(format!(
                "is refused: its live tool list differs from the lock file {}: {}; review the change, then run `jaros mcp lock {manifest}` and commit the lock",
                server.lock_file,
                changed.join("; ")
            ));
        }
        Ok(Live {
            session,
            _scratch: scratch,
        })
    }

    fn run_as_for_launch(&self) -> Option<RunAs> {
        self.launcher
            .as_ref()
            .filter(|_| self.status.landlock_abi.is_some())
            .and(self.run_as)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the pieces of one launch"
    )]
    fn command(
        &self,
        cx: &Cx<'_>,
        live: &dyn crate::exec::LiveIo,
        hive: &Path,
        program: &Path,
        args: &[String],
        env: &[String],
        install: &[String],
        scratch: &Path,
    ) -> Command {
        let launcher = self
            .launcher
            .as_ref()
            .filter(|_| self.status.landlock_abi.is_some());
        let mut cmd = match launcher {
            Some(launcher) => {
                let mut c = landlock::confinement_for(
                    hive,
                    live.data_dir().as_deref(),
                    cx.plan,
                    cx.job.agent.as_str(),
                    program,
                    scratch,
                );
                c.read.extend(install.iter().map(PathBuf::from));
                c.run_as = self.run_as_for_launch();
                let mut cmd = launcher::command(launcher);
                cmd.args(super::tools::launcher_args(&c, program));
                cmd.args(args);
                cmd
            }
            None => {
                let mut cmd = Command::new(program);
                cmd.args(args);
                cmd
            }
        };
        cmd.env_clear().current_dir(scratch);
        for var in env {
            if let Some(value) = std::env::var_os(var) {
                cmd.env(var, value);
            }
        }
        if !env.iter().any(|v| v == "PATH") {
            cmd.env("PATH", super::tools::DEFAULT_PATH);
        }
        // HOME is where many servers keep caches; the scratch directory is
        // the one place they may write.
        if !env.iter().any(|v| v == "HOME") {
            cmd.env("HOME", scratch);
        }
        cmd
    }
}

/// The header values named by `headers_from_env`, read from the node's
/// environment now (never recorded).
fn headers(
    from_env: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    from_env
        .iter()
        .map(|(header, var)| match std::env::var(var) {
            Ok(value) => Ok((header.clone(), value)),
            Err(_) => Err(format!(
                "could not be reached: header {header} comes from environment variable {var}, which is not set on this node"
            )),
        })
        .collect()
}

/// The program to start: a hive-relative or absolute path, or a name
/// looked up in the `PATH` the server gets.
fn resolve_command(hive: &Path, command: &str, env: &[String]) -> Result<PathBuf, String> {
    if command.starts_with('/') {
        return Ok(PathBuf::from(command));
    }
    if command.contains('/') {
        return std::fs::canonicalize(hive.join(command))
            .map_err(|e| format!("({command}) cannot be found in the hive: {e}"));
    }
    let path = if env.iter().any(|v| v == "PATH") {
        std::env::var("PATH").unwrap_or_default()
    } else {
        super::tools::DEFAULT_PATH.to_string()
    };
    path.split(':')
        .map(|dir| Path::new(dir).join(command))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("({command}) is not found in PATH={path}"))
}

/// A program inside the hive runs from a copy in the server's scratch
/// directory, as executable tools do: reachable by the user it runs as
/// wherever the hive lies, and read once, so what runs is what was read.
fn in_scratch(scratch: &ScratchDir, command: &str, program: PathBuf) -> Result<PathBuf, String> {
    if command.starts_with('/') || !command.contains('/') {
        return Ok(program);
    }
    let bytes = crate::fsx::read(&program).map_err(|e| format!("({command}) {e}"))?;
    let name = program
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "server".into());
    let copy = scratch.0.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&copy)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
        .map_err(|e| format!("cannot copy the server into {}: {e}", copy.display()))?;
    Ok(copy)
}

fn scratch_dir(run_as: Option<RunAs>) -> Result<ScratchDir, String> {
    let root = std::env::temp_dir().join(format!("jaros-mcp-{}", crate::ids::random_hex(12)));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&root)
        .map_err(|e| format!("cannot create a scratch directory {}: {e}", root.display()))?;
    if let Some(RunAs { uid, gid }) = run_as {
        rustix::fs::chown(
            &root,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .map_err(|e| format!("cannot give {} to uid {uid}: {e}", root.display()))?;
    }
    Ok(ScratchDir(root))
}

/// Starts the server of `plan` unconfined (for `jaros mcp lock`, run by a
/// person on their own machine) and reads its tool list: the session's
/// protocol version, the server's info, and the tools.
pub fn list_unconfined(
    hive: &Path,
    server: &McpServer,
    timeout: Duration,
) -> Result<(String, Value, Vec<McpTool>), String> {
    let (transport, _scratch): (Box<dyn Transport>, Option<ScratchDir>) = match server {
        McpServer::Http {
            url,
            headers_from_env,
        } => (
            Box::new(HttpTransport::new(url, headers(headers_from_env)?, timeout)),
            None,
        ),
        McpServer::Stdio {
            command, args, env, ..
        } => {
            let scratch = scratch_dir(None)?;
            let program = resolve_command(hive, command, env)?;
            let mut cmd = Command::new(&program);
            cmd.args(args).env_clear().current_dir(&scratch.0);
            for var in env {
                if let Some(value) = std::env::var_os(var) {
                    cmd.env(var, value);
                }
            }
            if !env.iter().any(|v| v == "PATH") {
                cmd.env("PATH", super::tools::DEFAULT_PATH);
            }
            if !env.iter().any(|v| v == "HOME") {
                cmd.env("HOME", &scratch.0);
            }
            let t =
                StdioTransport::spawn(cmd).map_err(|e| format!("the server ({command}) {e}"))?;
            (Box::new(t), Some(scratch))
        }
    };
    let mut session = Session::open(transport, timeout).map_err(|f| f.reason)?;
    let tools = session.list_tools(timeout).map_err(|f| f.reason)?;
    Ok((session.version.clone(), session.server_info.clone(), tools))
}
