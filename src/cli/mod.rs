//! The `jaros` command line: one file per subcommand, one output and
//! exit-code convention ([`crate::exit`]), `--json` where scripts read output.

mod approve;
mod audit;
mod blame;
mod checkpoint;
mod completions;
mod console;
mod demo;
mod docs;
mod eval;
mod gc;
mod init;
mod keygen;
mod kit;
mod logs;
mod man;
mod mcp;
mod mcp_serve;
mod metrics;
mod new;
mod plan;
mod plan_diff;
mod plan_words;
mod progress;
mod prove;
mod replay;
mod run;
mod sandbox_exec;
mod schedules;
mod schema;
mod serve;
mod status;
mod submit;
mod trace;
mod under;
mod validate;
mod verify;

use crate::datadir::{self, DataDir};
use crate::exit::{self, Outcome};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

const AFTER_HELP: &str = "\
Where things are found:
  hive      --hive DIR, else $JAROS_HIVE, else the nearest directory upward from
            the current one that holds manifests/ (as git finds .git)
  data dir  --data-dir DIR, else $JAROS_DATA_DIR, else <hive>/.jaros-data

Exit codes: 0 success, 1 the work found a failure (invalid manifests, a failed
job, a divergence), 2 bad input or nothing to work on.

Start with `jaros demo`, or `jaros run advance --input '{}'` then `jaros replay`.";

#[derive(Parser, Debug)]
#[command(name = "jaros", version = crate::runtime::version_line(), about = "Reproducible, testable, capability-safe agent systems: one binary, files and threads", after_help = AFTER_HELP)]
pub struct Cli {
    /// The hive: a directory holding manifests/ (and agents/, tools/, evals/).
    #[arg(long, global = true, env = "JAROS_HIVE", value_name = "DIR")]
    hive: Option<PathBuf>,
    /// Where runtime state lives (logs, blobs, inbox, results).
    #[arg(long, global = true, env = "JAROS_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// How diagnostics on stderr are written: the plain lines, or one JSON
    /// object a line. Default: text when stderr is a terminal, json
    /// otherwise. Filter them with JAROS_LOG (or RUST_LOG): warn, debug,
    /// jaros::node=debug.
    #[arg(long, global = true, env = "JAROS_LOG_FORMAT", value_enum)]
    log_format: Option<crate::logging::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Demo(demo::Args),
    Init(init::Args),
    Validate(validate::Args),
    Plan(plan::Args),
    Schema(schema::Args),
    Run(run::Args),
    Serve(serve::Args),
    Console(console::Args),
    Submit(submit::SubmitArgs),
    Result(submit::ResultArgs),
    Status(status::Args),
    Schedules(schedules::Args),
    Watch(status::WatchArgs),
    Logs(logs::Args),
    Replay(replay::Args),
    Blame(blame::Args),
    Verify(verify::Args),
    Keygen(keygen::Args),
    Checkpoint(checkpoint::Args),
    Prove(prove::Args),
    Approvals(approve::ListArgs),
    Approve(approve::ApproveArgs),
    Deny(approve::DenyArgs),
    Audit(audit::Args),
    Gc(gc::Args),
    Trace(trace::Args),
    Metrics(metrics::Args),
    #[command(name = "__sandbox-exec", hide = true)]
    SandboxExec(sandbox_exec::Args),
    Eval(eval::Args),
    New(new::Args),
    Docs(docs::Args),
    Mcp(mcp::Args),
    Completions(completions::Args),
    Man(man::Args),
}

/// A failure a command reports: a message for stderr and how to exit.
#[derive(Debug)]
pub struct CliError {
    pub outcome: Outcome,
    pub message: String,
}

impl CliError {
    pub fn bad_input(message: impl Into<String>) -> CliError {
        CliError {
            outcome: Outcome::BadInput,
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError {
            outcome: Outcome::Failed,
            message: message.into(),
        }
    }
}

pub type CliResult = Result<Outcome, CliError>;

/// Where a command runs: the global options resolved lazily, so commands
/// that need no hive do not require one.
pub struct Ctx {
    hive: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    cwd: PathBuf,
    /// Whether --hive / --data-dir were typed on the command line (not taken
    /// from $JAROS_HIVE / $JAROS_DATA_DIR): commands that create a hive or
    /// a data dir act only on what was typed.
    hive_typed: bool,
    data_dir_typed: bool,
}

impl Ctx {
    /// --hive as typed on the command line (never from $JAROS_HIVE).
    pub fn typed_hive(&self) -> Option<&Path> {
        self.hive.as_deref().filter(|_| self.hive_typed)
    }

    /// Refuses --hive / --data-dir typed for a command that reads neither,
    /// so a flag that would do nothing says so instead.
    pub fn refuse_typed(&self, command: &str, hive: bool, data_dir: bool) -> Result<(), CliError> {
        let typed: Vec<&str> = [
            (hive && self.typed_hive().is_some(), "--hive"),
            (data_dir && self.typed_data_dir().is_some(), "--data-dir"),
        ]
        .into_iter()
        .filter_map(|(on, flag)| on.then_some(flag))
        .collect();
        if typed.is_empty() {
            return Ok(());
        }
        Err(CliError::bad_input(format!(
            "`jaros {command}` does not use {}: drop {}",
            typed.join(" or "),
            if typed.len() == 1 { "it" } else { "them" }
        )))
    }

    /// --data-dir as typed on the command line (never from $JAROS_DATA_DIR).
    pub fn typed_data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref().filter(|_| self.data_dir_typed)
    }

    pub fn hive(&self) -> Result<PathBuf, CliError> {
        datadir::find_hive(self.hive.as_deref(), &self.cwd).map_err(CliError::bad_input)
    }

    /// The data dir; a hive is needed only when no data dir is given.
    pub fn data_dir(&self) -> Result<DataDir, CliError> {
        if let Some(d) = &self.data_dir {
            return Ok(DataDir::new(d));
        }
        let hive = self.hive()?;
        DataDir::resolve(None, Some(&hive)).map_err(CliError::bad_input)
    }

    /// The hive at `dir`, given on the command line.
    pub fn hive_at(&self, dir: &Path) -> Result<PathBuf, CliError> {
        datadir::find_hive(Some(dir), &self.cwd).map_err(CliError::bad_input)
    }

    /// What to print before a hive-relative path so that it names the file
    /// from the current directory: empty when the hive is the current
    /// directory, else the hive's path and a slash.
    pub fn display_prefix(&self, hive: &Path) -> String {
        let absolute = if hive.is_absolute() {
            hive.to_path_buf()
        } else {
            self.cwd.join(hive)
        };
        match absolute.strip_prefix(&self.cwd) {
            Ok(rel) if rel.as_os_str().is_empty() => String::new(),
            Ok(rel) => format!("{}/", rel.display()),
            Err(_) => format!("{}/", hive.display()),
        }
    }

    /// The data dir of a command that only reads: it must exist.
    pub fn existing_data_dir(&self) -> Result<DataDir, CliError> {
        let dir = self.data_dir()?;
        dir.must_exist().map_err(CliError::bad_input)?;
        Ok(dir)
    }
}

/// Prints to stdout; a closed pipe (`jaros logs | head`) ends the process
/// quietly with success.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(exit::SUCCESS);
        }
    }
}

pub fn out_json(value: &impl serde::Serialize) {
    let text = serde_json::to_string_pretty(value).expect("output types serialize");
    out(&format!("{text}\n"));
}

/// The most `--input @FILE` or `--input -` reads: a job's input must fit in
/// one job file anyway.
pub const MAX_INPUT_BYTES: u64 = crate::node::inbox::MAX_JOB_FILE_BYTES;

/// What `--input` says, as `jaros run` and `jaros submit` document it.
pub const INPUT_HELP: &str =
    "The job's input: JSON, `@FILE` to read it from a file, or `-` to read it from stdin";

/// Parses `--input`: JSON text, `@FILE` (the JSON in a file) or `-` (the
/// JSON on stdin), with an error that says which and what to do.
pub fn parse_input(arg: &str) -> Result<serde_json::Value, CliError> {
    use std::io::Read;
    let (text, from) = if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .lock()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| CliError::bad_input(format!("--input -: cannot read stdin: {e}")))?;
        (text, "stdin".to_string())
    } else if let Some(file) = arg.strip_prefix('@') {
        let mut text = String::new();
        std::fs::File::open(file)
            .and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_string(&mut text))
            .map_err(|e| {
                CliError::bad_input(format!("--input @{file}: cannot read {file}: {e}"))
            })?;
        (text, file.to_string())
    } else {
        return crate::decision::parse_json_arg(arg)
            .map_err(|e| CliError::bad_input(format!("--input: {e}")));
    };
    if text.len() as u64 > MAX_INPUT_BYTES {
        return Err(CliError::bad_input(format!(
            "--input: {from} holds more than {MAX_INPUT_BYTES} bytes, the most a job's input may be"
        )));
    }
    crate::decision::parse_json_arg(&text)
        .map_err(|e| CliError::bad_input(format!("--input: {from}: {e}")))
}

/// Whether two existing paths name the same directory.
pub fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

pub fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Checks that this process can draw random bytes, as the manifest
/// validator's hash maps do (ahash, through `getrandom`) the first time
/// they are built. A static binary finds the `getrandom` call only when built
/// with `--cfg getrandom_backend="linux_getrandom"` (deploy/Dockerfile does);
/// otherwise it reads `/dev/urandom`, which a bare chroot lacks, and the
/// hash map would panic. This says what to do instead.
fn check_random_source() -> Result<(), CliError> {
    let mut probe = [0u8; 16];
    getrandom::fill(&mut probe).map_err(|e| {
        CliError::failed(format!(
            "no source of random bytes: {e}. The kernel's getrandom call is not reachable from this binary \
             and /dev/urandom cannot be read (a bare chroot or an image without /dev?). \
             Mount /dev (or bind /dev/urandom) into the root, or build the static binary with \
             RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"'"
        ))
    })
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (m, cli)));
    let (matches, cli) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
            let _ = e.print();
            return code;
        }
    };
    // After parsing, so --help and --version work anywhere.
    if let Err(e) = check_random_source() {
        eprintln!("jaros: {}", e.message);
        return exit::code(e.outcome);
    }
    let typed = |id: &str| {
        let source = matches
            .subcommand()
            .and_then(|(_, sub)| sub.value_source(id))
            .or_else(|| matches.value_source(id));
        source == Some(clap::parser::ValueSource::CommandLine)
    };
    let ctx = Ctx {
        hive_typed: typed("hive"),
        data_dir_typed: typed("data_dir"),
        hive: cli.hive,
        data_dir: cli.data_dir,
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    if !matches!(cli.command, Command::SandboxExec(_)) {
        // Not in the launcher: it execs a confined tool and keeps its own
        // plain lines (a logging thread there would be one more to confine).
        let format = cli
            .log_format
            .unwrap_or_else(crate::logging::LogFormat::for_stderr);
        crate::logging::init(format);
    }
    let code = run(&ctx, cli.command);
    crate::logging::flush();
    code
}

/// Runs one parsed command and returns its exit code.
fn run(ctx: &Ctx, command: Command) -> i32 {
    let result = match command {
        Command::Init(args) => init::main(ctx, args),
        Command::Validate(args) => validate::main(ctx, args),
        Command::Plan(args) => plan::main(ctx, args),
        Command::Schema(args) => schema::main(ctx, args),
        Command::Demo(args) => demo::main(ctx, args),
        Command::Run(args) => run::main(ctx, args),
        Command::Serve(args) => serve::main(ctx, args),
        Command::Console(args) => console::main(ctx, args),
        Command::Submit(args) => submit::submit(ctx, args),
        Command::Approvals(args) => approve::list(ctx, args),
        Command::Approve(args) => approve::approve(ctx, args),
        Command::Deny(args) => approve::deny(ctx, args),
        Command::Result(args) => submit::result(ctx, args),
        Command::Status(args) => status::main(ctx, args),
        Command::Schedules(args) => schedules::main(ctx, args),
        Command::Watch(args) => status::watch(ctx, args),
        Command::Logs(args) => logs::main(ctx, args),
        Command::Replay(args) => replay::main(ctx, args),
        Command::Verify(args) => verify::main(ctx, args),
        Command::Keygen(args) => keygen::main(ctx, args),
        Command::Checkpoint(args) => checkpoint::main(ctx, args),
        Command::Prove(args) => prove::main(ctx, args),
        Command::Blame(args) => blame::main(ctx, args),
        Command::Audit(args) => audit::main(ctx, args),
        Command::Gc(args) => gc::main(ctx, args),
        Command::Trace(args) => trace::main(ctx, args),
        Command::Metrics(args) => metrics::main(ctx, args),
        Command::SandboxExec(args) => return sandbox_exec::main(args),
        Command::Eval(args) => eval::main(ctx, args),
        Command::New(args) => new::main(ctx, args),
        Command::Docs(args) => docs::main(ctx, args),
        Command::Mcp(args) => mcp::main(ctx, args),
        Command::Completions(args) => ctx
            .refuse_typed("completions", true, true)
            .and_then(|()| completions::main(args)),
        Command::Man(args) => ctx
            .refuse_typed("man", true, true)
            .and_then(|()| man::main(args)),
    };
    match result {
        Ok(outcome) => exit::code(outcome),
        Err(e) => {
            eprintln!("jaros: {}", e.message);
            exit::code(e.outcome)
        }
    }
}

/// The hive's compiled plan: its manifests loaded, checked and merged with
/// the built-in plan. Invalid manifests are an error listing every problem.
pub fn load_plan(hive: &Path) -> Result<crate::plan::Plan, CliError> {
    load_hive(hive).map(|loaded| loaded.plan)
}

impl From<crate::replay::ReplayError> for CliError {
    /// Nothing to replay is "nothing to work on"; every other replay error
    /// is bad input (an unknown job, a `--until` past the end, an I/O error).
    fn from(e: crate::replay::ReplayError) -> CliError {
        let outcome = match e {
            crate::replay::ReplayError::Empty(_) => Outcome::Nothing,
            _ => Outcome::BadInput,
        };
        CliError {
            outcome,
            message: e.to_string(),
        }
    }
}

/// Loads and compiles the hive, or says every error.
pub fn load_hive(hive: &Path) -> Result<crate::manifest::Loaded, CliError> {
    crate::manifest::load_hive(hive).map_err(|errors| {
        let prefix = format!("{}/", hive.display());
        let lines: Vec<String> = errors.iter().map(|d| format!("  {prefix}{d}")).collect();
        CliError::failed(format!(
            "the hive's manifests are invalid ({} error{}):\n{}\nfix them and check with `jaros validate`",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            lines.join("\n")
        ))
    })
}

/// The node settings of the hive's node manifest (defaults without one).
pub fn node_config(loaded: &crate::manifest::Loaded, node_id: String) -> crate::node::NodeConfig {
    let mut cfg = crate::node::NodeConfig::new(node_id);
    if let Some(node) = loaded.manifests.nodes.first() {
        let spec = &node.m.spec;
        cfg.pool_size = spec.pool_size as usize;
        cfg.lease_ms = spec.lease.ms();
        cfg.heartbeat_ms = spec.heartbeat.ms();
        cfg.scan_ms = spec.scan_interval.ms();
        cfg.segment_bytes = crate::log::SegmentOptions::from_spec(spec.log.as_ref()).segment_bytes;
    }
    cfg
}

/// What proposes decisions for the hive's agents.
/// The model providers the hive's node manifest defines.
pub fn providers(
    hive: &Path,
    loaded: &crate::manifest::Loaded,
) -> std::collections::HashMap<String, crate::model::ProviderConfig> {
    use crate::manifest::types::ProviderKind as K;
    use crate::model::{ProviderConfig, ProviderKind};
    let mut out = std::collections::HashMap::new();
    let Some(node) = loaded.manifests.nodes.first() else {
        return out;
    };
    for (name, p) in &node.m.spec.providers {
        let kind = match p.kind {
            K::Openai => ProviderKind::Openai,
            K::Ollama => ProviderKind::Ollama,
            K::Echo => ProviderKind::Echo,
            K::Scripted => ProviderKind::Scripted,
        };
        let mut cfg = ProviderConfig::new(name.clone(), kind);
        cfg.base_url = p.base_url.clone();
        cfg.api_key_env = p.api_key_env.clone();
        if let Some(t) = &p.timeout {
            cfg.timeout_ms = t.ms();
        }
        if let Some(r) = p.max_retries {
            cfg.max_retries = r;
        }
        cfg.responses = p.responses.as_ref().map(|r| hive.join(r));
        out.insert(name.clone(), cfg);
    }
    out
}

/// What proposes decisions for the hive's agents: built-ins and templates
/// locally, model agents through the node manifest's providers.
pub fn proposer(
    hive: &Path,
    loaded: &crate::manifest::Loaded,
) -> std::sync::Arc<dyn crate::job::Proposer> {
    let models = crate::model::proposer::ModelProposer::new(providers(hive, loaded));
    std::sync::Arc::new(crate::agents::LocalProposer {
        models: Some(std::sync::Arc::new(models)),
    })
}

/// Whether executable tools are confined by the kernel here, and by which
/// layers, for tools run as the hive's node manifest says (where the hive
/// loads).
pub fn confinement(ctx: &Ctx) -> String {
    let configured = ctx
        .hive()
        .ok()
        .and_then(|hive| crate::manifest::load_hive(&hive).ok())
        .and_then(|loaded| {
            let node = loaded.manifests.nodes.into_iter().next()?;
            node.m.spec.tools.run_as
        });
    let status = match crate::harness::launcher::run_as_for(configured.as_deref()) {
        Ok(run_as) => {
            crate::harness::status::status_with(std::env::current_exe().ok().as_deref(), run_as)
        }
        Err(why) => {
            return format!("not active (the node manifest's tools.run_as: {why})");
        }
    };
    let state = if status.active {
        "active"
    } else {
        "not active"
    };
    format!("{state} ({})", status.reason)
}

/// The hive's schedules with their last and next runs, as JSON.
pub fn schedules_status(ctx: &Ctx) -> serde_json::Value {
    schedules::status_json(ctx)
}

/// The executor of a node started on `loaded`: its tools run as the node
/// manifest's `tools.run_as` (a root node's).
pub fn executor_for(loaded: &crate::manifest::Loaded) -> Result<crate::exec::Executor, CliError> {
    let node = loaded.manifests.nodes.first();
    let configured = node.and_then(|n| n.m.spec.tools.run_as.as_deref());
    let run_as = crate::harness::launcher::run_as_for(configured).map_err(|e| match node {
        Some(n) => CliError::bad_input(n.error("/spec/tools/run_as", e).to_string()),
        None => CliError::bad_input(e),
    })?;
    let tools = crate::harness::ToolRunner::new(std::env::current_exe().ok()).run_as(run_as);
    Ok(crate::harness::register(
        crate::exec::Executor::core(),
        tools,
    ))
}

/// The executor with every handler this binary has.
pub fn executor() -> crate::exec::Executor {
    let tools = crate::harness::ToolRunner::new(std::env::current_exe().ok());
    crate::harness::register(crate::exec::Executor::core(), tools)
}
