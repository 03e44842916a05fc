//! `jaros mcp serve`: the hive as MCP tools for a coding agent.
//!
//! Speaks the Model Context Protocol (revision 2025-06-18) over stdio:
//! JSON-RPC 2.0, one message per line, on stdin and stdout (stderr is for
//! logs). It offers the CLI's own operations as tools — validate, plan,
//! submit (and wait), result, status, replay, blame, eval — each calling the
//! function its `jaros` subcommand calls and returning what that
//! subcommand's `--json` prints, as `structuredContent` and as text. A CLI
//! error becomes an `isError` result carrying the CLI's message.
//!
//! What it does not own: it runs no node and no job, writes no manifest, log
//! or result; `submit` puts a job file in the inbox exactly as `jaros
//! submit` does, and `eval` runs in temporary data dirs as `jaros eval`
//! does. The hive and data dir are fixed when the server starts (`--hive`,
//! `--data-dir`); no tool argument names another.

use super::{CliError, CliResult, Ctx};
use crate::decision::JobId;
use crate::exit::{self, Outcome};
use serde_json::{json, Map, Value};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The MCP revision this server implements, and the one it answers with
/// when a client asks for a revision it does not know.
pub const PROTOCOL_VERSION: &str = "2025-06-18";
/// Revisions whose tool calls are the same as far as this server goes.
const SUPPORTED_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", PROTOCOL_VERSION];
/// The longest message read; a longer line is refused and skipped.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Tool calls running at once (a `submit` with a wait holds one); more are
/// refused until one finishes.
pub const MAX_CALLS_IN_FLIGHT: usize = 8;
/// How long the end of stdin waits for calls still running to answer (a
/// `submit` that waits may hold one far longer; it is then cut off).
const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// The longest wait `submit` and `result` accept, as `jaros result --wait`.
const MAX_WAIT_SECONDS: f64 = 86_400.0;

// JSON-RPC 2.0 error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// Serve the hive to a coding agent over the Model Context Protocol (stdio).
///
/// Tools: validate, plan, submit (optionally waiting for the result), result,
/// status, replay, blame, eval — the CLI's operations with the CLI's checks,
/// each returning the JSON its `--json` prints. The hive and data dir are the
/// ones this command is given; a node (`jaros serve`) runs the jobs.
///
/// Example (a client's server entry): jaros mcp serve --hive /path/to/hive
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn main(ctx: &Ctx, _args: Args) -> CliResult {
    let hive = ctx.hive()?;
    let server = Arc::new(Server {
        ctx: Ctx {
            hive: Some(hive.clone()),
            data_dir: ctx.data_dir.clone(),
            cwd: ctx.cwd.clone(),
            hive_typed: ctx.hive_typed,
            data_dir_typed: ctx.data_dir_typed,
        },
        hive,
        out: Mutex::new(std::io::stdout()),
        in_flight: AtomicUsize::new(0),
        tools: tools(),
    });
    tracing::info!(
        "jaros mcp serve: hive {}, MCP {PROTOCOL_VERSION} on stdio",
        server.hive.display()
    );
    let mut input = std::io::stdin().lock();
    let mut initialized = false;
    loop {
        let line = match read_line(&mut input) {
            Ok(Line::Eof) => {
                server.finish_calls();
                return Ok(Outcome::Success);
            }
            Ok(Line::TooLong) => {
                server.error(
                    Value::Null,
                    INVALID_REQUEST,
                    format!("a message over {MAX_MESSAGE_BYTES} bytes was skipped"),
                );
                continue;
            }
            Ok(Line::Message(bytes)) => bytes,
            Err(e) => {
                return Err(CliError::failed(format!(
                    "mcp serve: cannot read stdin: {e}"
                )))
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        server.handle(&line, &mut initialized);
    }
}

/// The server's fixed context and its one writer.
struct Server {
    ctx: Ctx,
    hive: PathBuf,
    /// Every message goes out whole, one line, under this lock.
    out: Mutex<std::io::Stdout>,
    in_flight: AtomicUsize,
    tools: Vec<Tool>,
}

impl Server {
    fn send(&self, message: &Value) {
        let mut text = serde_json::to_string(message).expect("JSON values serialize");
        text.push('\n');
        // A poisoned lock means a writer panicked mid-line; the stream is
        // already broken, and the client sees it end.
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        }
    }

    /// Lets the calls still running answer, for up to [`SHUTDOWN_GRACE_MS`].
    fn finish_calls(&self) {
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(SHUTDOWN_GRACE_MS);
        while self.in_flight.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn reply(&self, id: Value, result: Value) {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
    }

    fn error(&self, id: Value, code: i64, message: String) {
        self.send(
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        );
    }

    /// One message: a request is answered (a tool call on a thread of its
    /// own, so a waiting `submit` does not hold up `ping`); notifications
    /// and responses are read and dropped.
    fn handle(self: &Arc<Self>, line: &[u8], initialized: &mut bool) {
        let message: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                return self.error(Value::Null, PARSE_ERROR, format!("not JSON: {e}"));
            }
        };
        let Value::Object(message) = message else {
            let what = if message.is_array() {
                "batches are not part of MCP 2025-06-18: send one request per line"
            } else {
                "a message is a JSON-RPC 2.0 object"
            };
            return self.error(Value::Null, INVALID_REQUEST, what.to_string());
        };
        let id = message.get("id").cloned();
        let valid_id = matches!(&id, Some(Value::String(_) | Value::Number(_)));
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return self.error(
                id.filter(|_| valid_id).unwrap_or(Value::Null),
                INVALID_REQUEST,
                "not JSON-RPC 2.0: \"jsonrpc\": \"2.0\" is missing".to_string(),
            );
        }
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            // A response to a request of ours; this server sends none.
            return;
        };
        let Some(id) = id else {
            // A notification (initialized, cancelled): nothing to answer.
            // A cancelled call runs to its end; its answer is then ignored.
            return;
        };
        if !valid_id {
            return self.error(
                Value::Null,
                INVALID_REQUEST,
                "a request's id is a string or a number".to_string(),
            );
        }
        let params = message.get("params").cloned().unwrap_or(json!({}));
        match method {
            "initialize" if *initialized => self.error(
                id,
                INVALID_REQUEST,
                "already initialized: initialize once per session".to_string(),
            ),
            "initialize" => {
                *initialized = true;
                self.reply(id, initialize_result(&params));
            }
            "ping" => self.reply(id, json!({})),
            "tools/list" | "tools/call" if !*initialized => self.error(
                id,
                INVALID_REQUEST,
                format!("'{method}' before 'initialize': initialize the session first"),
            ),
            "tools/list" => {
                let tools: Vec<Value> = self.tools.iter().map(Tool::listing).collect();
                self.reply(id, json!({"tools": tools}));
            }
            "tools/call" => self.start_call(id, &params),
            other => self.error(
                id,
                METHOD_NOT_FOUND,
                format!(
                    "no method '{other}': this server offers tools only (tools/list, tools/call)"
                ),
            ),
        }
    }

    /// Checks a `tools/call` and runs it on a thread of its own.
    fn start_call(self: &Arc<Self>, id: Value, params: &Value) {
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return self.error(
                id,
                INVALID_PARAMS,
                "tools/call needs a tool 'name'".to_string(),
            );
        };
        let Some(tool) = self.tools.iter().find(|t| t.name == name) else {
            let names: Vec<&str> = self.tools.iter().map(|t| t.name).collect();
            return self.error(
                id,
                INVALID_PARAMS,
                format!("unknown tool '{name}'; the tools are: {}", names.join(", ")),
            );
        };
        let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
        if let Err(why) = check_arguments(tool, &arguments) {
            return self.error(id, INVALID_PARAMS, why);
        }
        let Value::Object(arguments) = arguments else {
            unreachable!("every input schema requires an object")
        };
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_CALLS_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let message = format!(
                "{MAX_CALLS_IN_FLIGHT} tool calls are running already; call again when one has answered"
            );
            return self.reply(id, error_result(&CliError::failed(message)));
        }
        let server = Arc::clone(self);
        let name = tool.name;
        std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                call(&server, name, &arguments)
            }));
            let result = match outcome {
                Ok(Ok((value, outcome))) => ok_result(value, outcome),
                Ok(Err(e)) => error_result(&e),
                Err(_) => error_result(&CliError::failed(format!(
                    "the '{name}' tool stopped on an internal error (see the server's stderr)"
                ))),
            };
            server.in_flight.fetch_sub(1, Ordering::SeqCst);
            server.reply(id, result);
        });
    }
}

/// The answer to `initialize`: the client's revision when this server
/// knows it, else ours (the client decides whether it can go on).
fn initialize_result(params: &Value) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    let version = asked
        .filter(|v| SUPPORTED_VERSIONS.contains(v))
        .unwrap_or(PROTOCOL_VERSION);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "jaros", "title": "Jaros", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "Tools over one Jaros hive and its data dir, as the `jaros` CLI offers them: \
            validate and plan the manifests, submit a job (a running node executes it) and wait \
            for its result, read status, replay the logs, blame a job, run the eval cases. \
            Each returns what the CLI's --json prints.",
    })
}

/// A successful call: the CLI's JSON as structured content and as text,
/// and the exit code the CLI would have given (1 when the work found a
/// failure: invalid manifests, a FAILED job, a divergence).
fn ok_result(value: Value, outcome: Outcome) -> Value {
    let text = serde_json::to_string_pretty(&value).expect("JSON values serialize");
    json!({
        "content": [{"type": "text", "text": text}],
        "structuredContent": value,
        "isError": false,
        "_meta": {"jaros/exit": exit::code(outcome)},
    })
}

/// A call the CLI would have refused: its message, flagged as an error.
fn error_result(e: &CliError) -> Value {
    json!({
        "content": [{"type": "text", "text": e.message}],
        "isError": true,
        "_meta": {"jaros/exit": exit::code(e.outcome)},
    })
}

/// One tool: what `tools/list` says of it.
struct Tool {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    input: Value,
    output: Value,
    read_only: bool,
}

impl Tool {
    fn listing(&self) -> Value {
        json!({
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": self.input,
            "outputSchema": self.output,
            "annotations": {
                "title": self.title,
                "readOnlyHint": self.read_only,
                "destructiveHint": false,
                "idempotentHint": self.read_only,
                "openWorldHint": false,
            },
        })
    }
}

/// An input schema: an object with these properties and no others.
fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// An output schema: an object with at least these keys.
fn has(keys: &[&str]) -> Value {
    json!({"type": "object", "required": keys})
}

fn tools() -> Vec<Tool> {
    let wait = json!({"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS,
        "description": "Wait up to this many seconds for the job's result (a running node must execute it)."});
    let job = json!({"type": "string", "description": "A job id, as submit returned it."});
    vec![
        Tool {
            name: "validate",
            title: "Validate the manifests",
            description: "Check the hive's manifests as `jaros validate --json` does: YAML, schemas, \
                every cross-reference and schedule. Returns ok, counts, the plan digest and every \
                error as file:line:col.",
            input: object(json!({}), &[]),
            output: has(&["ok", "errors"]),
            read_only: true,
        },
        Tool {
            name: "plan",
            title: "The compiled plan",
            description: "The plan the manifests compile into and its digest, as `jaros plan --json` \
                prints them: agents, roles and grants, decision types, templates.",
            input: object(json!({}), &[]),
            output: has(&["digest", "plan"]),
            read_only: true,
        },
        Tool {
            name: "submit",
            title: "Submit a job",
            description: "Put a job for an agent in the inbox, as `jaros submit` does; a running node \
                (`jaros serve`) executes it. Returns {id}, or with wait_seconds the job's result as \
                `jaros result` prints it.",
            input: object(
                json!({
                    "agent": {"type": "string", "description": "The agent to run (see the plan tool)."},
                    "input": {"description": "The job's input: any JSON (default {})."},
                    "id": {"type": "string", "description": "The job's id (default: a fresh one)."},
                    "wait_seconds": wait,
                }),
                &["agent"],
            ),
            output: has(&[]),
            read_only: false,
        },
        Tool {
            name: "result",
            title: "A job's result",
            description: "A job's result file (done or failed), as `jaros result` prints it, \
                optionally waiting for it.",
            input: object(json!({"id": job, "wait_seconds": wait}), &["id"]),
            output: has(&[]),
            read_only: true,
        },
        Tool {
            name: "status",
            title: "Nodes and jobs",
            description: "The nodes, job counts, confinement and schedules, as `jaros status --json` \
                prints them.",
            input: object(json!({}), &[]),
            output: has(&["nodes", "jobs"]),
            read_only: true,
        },
        Tool {
            name: "replay",
            title: "Replay the logs",
            description: "Rebuild every job (or one) from the logs with no model or tool call, twice, \
                and compare, as `jaros replay --json` does: byte-identical, chain intact, \
                deterministic, failed jobs attributed.",
            input: object(
                json!({
                    "job": job,
                    "until": {"type": "integer", "minimum": 0, "description": "Replay only records with seq <= until in each log."},
                }),
                &[],
            ),
            output: has(&["byte_identical", "chain_intact", "deterministic"]),
            read_only: true,
        },
        Tool {
            name: "blame",
            title: "Why a job ended as it did",
            description: "The chain of hand-offs behind a job, each link's agent, decision and \
                outcome, and for a failed job the counterfactual check, as `jaros blame --json` \
                prints them.",
            input: object(json!({"job": job}), &["job"]),
            output: has(&["job", "chain"]),
            read_only: true,
        },
        Tool {
            name: "eval",
            title: "Run the eval cases",
            description: "Run eval cases offline (scripted model responses, the real gate and \
                executor, temporary data dirs), as `jaros eval --json` does.",
            input: object(
                json!({
                    "paths": {"type": "array", "items": {"type": "string"},
                        "description": "Eval files or directories inside the hive (default: manifests/evals)."},
                    "filter": {"type": "string", "description": "Only the cases whose name contains this."},
                }),
                &[],
            ),
            output: has(&["passed", "total", "cases"]),
            read_only: true,
        },
    ]
}

/// The arguments against the tool's input schema, with the first error
/// named by its place.
fn check_arguments(tool: &Tool, arguments: &Value) -> Result<(), String> {
    let validator = jsonschema::validator_for(&tool.input).expect("the tools' schemas compile");
    let first = validator
        .iter_errors(arguments)
        .next()
        .map(|error| format!("{} arguments{}: {error}", tool.name, error.instance_path()));
    first.map_or(Ok(()), Err)
}

/// Runs one tool through the CLI's own functions.
fn call(
    server: &Server,
    name: &str,
    arguments: &Map<String, Value>,
) -> Result<(Value, Outcome), CliError> {
    let ctx = &server.ctx;
    let hive = &server.hive;
    let text = |key: &str| arguments.get(key).and_then(Value::as_str);
    let wait = arguments.get("wait_seconds").and_then(Value::as_f64);
    match name {
        "validate" => Ok(super::validate::report(hive, &ctx.display_prefix(hive))),
        "plan" => Ok((
            super::plan::json_of(&super::load_plan(hive)?),
            Outcome::Success,
        )),
        "submit" => {
            let input = arguments.get("input").cloned().unwrap_or(json!({}));
            let size = serde_json::to_vec(&input).map_or(0, |v| v.len()) as u64;
            if size > super::MAX_INPUT_BYTES {
                return Err(CliError::bad_input(format!(
                    "input: {size} bytes, more than {} bytes, the most a job's input may be",
                    super::MAX_INPUT_BYTES
                )));
            }
            let plan = super::submit::plan_to_check(ctx);
            let data = ctx.data_dir()?;
            let agent = text("agent").unwrap_or_default();
            let id = super::submit::write_job(
                &data,
                plan.as_ref(),
                agent,
                input,
                text("id").map(str::to_string),
            )
            .map_err(CliError::bad_input)?;
            match wait {
                None => Ok((json!({"id": id}), Outcome::Success)),
                Some(seconds) => super::submit::wait_result(&data, &id, seconds),
            }
        }
        "result" => {
            let id = JobId::new(text("id").unwrap_or_default())
                .map_err(|e| CliError::bad_input(e.to_string()))?;
            let data = ctx.existing_data_dir()?;
            super::submit::wait_result(&data, &id, wait.unwrap_or(0.0))
        }
        "status" => {
            let data = ctx.existing_data_dir()?;
            let overview = crate::node::status::overview(&data);
            Ok((super::status::json_of(ctx, &overview), Outcome::Success))
        }
        "replay" => {
            let until = arguments.get("until").and_then(Value::as_u64);
            let report = super::replay::run(ctx, text("job").map(str::to_string), until)?;
            let outcome = if report.reproducible() {
                Outcome::Success
            } else {
                Outcome::Failed
            };
            Ok((to_value(&report), outcome))
        }
        "blame" => {
            let blame = super::blame::run(ctx, text("job").unwrap_or_default())?;
            Ok((to_value(&blame), Outcome::Success))
        }
        "eval" => {
            let paths: Vec<&str> = arguments
                .get("paths")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            eval(ctx, hive, &paths, text("filter"))
        }
        other => unreachable!("'{other}' is not in the tool list start_call checked"),
    }
}

fn to_value(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("reports serialize")
}

/// `jaros eval --json` on paths inside the hive, parsed by the CLI's own
/// argument parser so every check of `jaros eval` holds.
fn eval(
    ctx: &Ctx,
    hive: &Path,
    paths: &[&str],
    filter: Option<&str>,
) -> Result<(Value, Outcome), CliError> {
    use clap::{Args as _, FromArgMatches as _};
    let mut argv = vec!["--json".to_string()];
    if let Some(filter) = filter {
        argv.push(format!("--filter={filter}"));
    }
    argv.push("--".to_string());
    for path in paths {
        argv.push(inside_hive(hive, path)?.display().to_string());
    }
    let command = super::eval::Args::augment_args(clap::Command::new("eval").no_binary_name(true));
    let args = command
        .try_get_matches_from(argv)
        .and_then(|m| super::eval::Args::from_arg_matches(&m))
        .map_err(|e| CliError::bad_input(e.to_string()))?;
    let finished = super::eval::run(ctx, &args, |_| {})?;
    Ok((finished.json(), finished.outcome()))
}

/// A path the client gave, relative to the hive, that must stay inside it:
/// the server reads the hive it was started on and nothing else.
fn inside_hive(hive: &Path, path: &str) -> Result<PathBuf, CliError> {
    let joined = hive.join(path);
    let outside = || {
        CliError::bad_input(format!(
            "eval path '{path}': not inside the hive {}; give a path relative to it, such as manifests/evals",
            hive.display()
        ))
    };
    let (Ok(root), Ok(real)) = (std::fs::canonicalize(hive), std::fs::canonicalize(&joined)) else {
        return Err(if Path::new(path).is_absolute() || path.contains("..") {
            outside()
        } else {
            CliError::bad_input(format!(
                "eval path '{path}': no such file or directory in the hive {}",
                hive.display()
            ))
        });
    };
    if !real.starts_with(&root) {
        return Err(outside());
    }
    Ok(joined)
}

enum Line {
    Message(Vec<u8>),
    TooLong,
    Eof,
}

/// One newline-delimited message, at most [`MAX_MESSAGE_BYTES`] long; a
/// longer one is read to its end and dropped.
fn read_line(input: &mut impl BufRead) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::Eof,
                (false, false) => Line::Message(line),
            });
        }
        let (take, end) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            line.extend_from_slice(&chunk[..take]);
            if line.len() > MAX_MESSAGE_BYTES {
                too_long = true;
                line = Vec::new();
            }
        }
        input.consume(take + usize::from(end));
        if end {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Message(line)
            });
        }
    }
}
