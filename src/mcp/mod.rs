//! The MCP client: talks JSON-RPC 2.0 to one Model Context Protocol server,
//! over stdio (newline-delimited messages to a process the caller started)
//! or Streamable HTTP (POSTs to one URL, answered with JSON or an SSE
//! stream). Owns the handshake (`initialize`, version negotiation,
//! `notifications/initialized`), `tools/list` with its pagination and
//! `tools/call`, each bounded by a time-out and an output cap.
//!
//! A server that misbehaves fails the call that met it, with a reason that
//! says what it did: it never answered, it printed something that is not a
//! JSON-RPC message on stdout, it exited mid-call, it answered more than the
//! cap. A request the server sends back to the client is answered with a
//! JSON-RPC error (`ping` with an empty result) and the call goes on. After
//! a failure that leaves the stream out of step (a time-out, garbage, an
//! exit) the session is [`Session::is_broken`]: its owner drops it and
//! starts a new one for the next call.
//!
//! It does not start or confine processes (the harness does, see
//! [`crate::harness::mcp`]), check grants, or record anything.

pub mod http;
pub mod lock;
pub mod stdio;

pub use crate::plan::McpTool;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The protocol version this client asks for first.
pub const PROTOCOL_VERSION: &str = "2025-06-18";
/// Every version this client speaks; a server answering another one is refused.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-06-18", "2025-03-26", "2024-11-05"];
/// Most pages of `tools/list` read before the list is refused as endless.
pub const MAX_LIST_PAGES: usize = 100;
/// Most tools one server may list.
pub const MAX_TOOLS: usize = 1000;
/// Most bytes of one message from a server, whatever a call's cap says
/// (a longer line is discarded whole).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Most bytes of a tool list (all pages together).
pub const MAX_LIST_BYTES: u64 = 4 * 1024 * 1024;
/// Most messages read while waiting for one answer (notifications, requests
/// from the server) before the server is taken for babbling.
pub const MAX_MESSAGES_PER_CALL: usize = 10_000;
/// Most refused requests from a server kept for the audit per call.
const MAX_REFUSED_KEPT: usize = 16;
/// How much of a bad line an error shows.
const SHOWN_CHARS: usize = 120;

/// A call's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CallResult {
    /// The content blocks, as the server sent them.
    pub content: Value,
    /// `structuredContent`, when the server sent one.
    pub structured: Option<Value>,
    /// The server's `isError`: the tool ran and reports a failure.
    pub is_error: bool,
}

impl CallResult {
    /// The result as an effect records it.
    pub fn to_value(&self) -> Value {
        let mut out = json!({"content": self.content, "isError": self.is_error});
        if let Some(s) = &self.structured {
            out["structuredContent"] = s.clone();
        }
        out
    }

    /// The text blocks of the content, joined: what an error shows.
    pub fn text(&self) -> String {
        self.content
            .as_array()
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

/// What a server sent, as a transport hands it over.
#[derive(Debug)]
pub enum Incoming {
    /// A JSON value (a message, or a batch of them).
    Message(Value),
    /// A line (or event) that is not JSON.
    Garbage(String),
    /// A message longer than [`MAX_MESSAGE_BYTES`], discarded.
    Oversize(usize),
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    /// The session is out of step and must not be used again.
    pub broken: bool,
}

impl Failure {
    pub fn broken(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            broken: true,
        }
    }
    pub fn call(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            broken: false,
        }
    }
}

/// A way to exchange messages with a server.
pub trait Transport: Send {
    /// Sends one message.
    fn send(&mut self, message: &Value, deadline: Instant) -> Result<(), Failure>;
    /// The next thing the server sent, waiting until `deadline`; `Ok(None)`
    /// at the deadline.
    fn next(&mut self, deadline: Instant) -> Result<Option<Incoming>, Failure>;
    /// Told the negotiated protocol version (HTTP sends it as a header).
    fn negotiated(&mut self, _version: &str) {}
    /// What the server said on stderr lately, for an error (stdio only).
    fn stderr_tail(&self) -> String {
        String::new()
    }
    /// Whether the server may still answer: false once a stdio server's
    /// process has exited (HTTP cannot tell before it asks).
    fn alive(&mut self) -> bool {
        true
    }
}

/// One initialized session with a server.
pub struct Session {
    transport: Box<dyn Transport>,
    next_id: u64,
    broken: bool,
    /// The negotiated protocol version.
    pub version: String,
    /// The server's `serverInfo`, as sent.
    pub server_info: Value,
    /// Messages read while waiting for an answer, in order.
    pending: VecDeque<Value>,
    /// Requests from the server refused since the last look.
    refused: Vec<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("version", &self.version)
            .field("broken", &self.broken)
            .finish()
    }
}

impl Session {
    /// Opens a session: `initialize` (asking for [`PROTOCOL_VERSION`]),
    /// within `timeout`, then `notifications/initialized`.
    pub fn open(transport: Box<dyn Transport>, timeout: Duration) -> Result<Session, Failure> {
        let mut s = Session {
            transport,
            next_id: 1,
            broken: false,
            version: String::new(),
            server_info: Value::Null,
            pending: VecDeque::new(),
            refused: Vec::new(),
        };
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "jaros", "version": env!("CARGO_PKG_VERSION")},
        });
        let result = s
            .request("initialize", params, timeout, MAX_MESSAGE_BYTES as u64)
            .map_err(|f| Failure::broken(format!("initialize: {}", f.reason)))?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
            return Err(Failure::broken(format!(
                "the server answered protocol version {version:?}; jaros speaks {}",
                SUPPORTED_VERSIONS.join(", ")
            )));
        }
        s.transport.negotiated(&version);
        s.version = version;
        s.server_info = result.get("serverInfo").cloned().unwrap_or(Value::Null);
        let deadline = Instant::now() + timeout;
        s.send(
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            deadline,
        )?;
        Ok(s)
    }

    /// Whether a failure left this session out of step.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether the session can take a call: not broken, and its server
    /// still running (one that died between calls is started again rather
    /// than failing the next decision).
    pub fn usable(&mut self) -> bool {
        !self.broken && self.transport.alive()
    }

    /// The requests the server sent to the client since the last look,
    /// each answered with an error (`ping` aside): one line each, for the
    /// audit.
    pub fn take_refused_requests(&mut self) -> Vec<String> {
        std::mem::take(&mut self.refused)
    }

    /// Every tool the server lists, following `nextCursor`.
    pub fn list_tools(&mut self, timeout: Duration) -> Result<Vec<McpTool>, Failure> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let page = self.request("tools/list", params, timeout, MAX_LIST_BYTES)?;
            let listed = page
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| Failure::call("tools/list: the answer has no `tools` array"))?;
            for t in listed {
                tools.push(tool_info(t)?);
            }
            if tools.len() > MAX_TOOLS {
                return Err(Failure::call(format!(
                    "tools/list: the server lists more than {MAX_TOOLS} tools"
                )));
            }
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => cursor = Some(next.to_string()),
                _ => return Ok(tools),
            }
        }
        Err(Failure::call(format!(
            "tools/list: still paging after {MAX_LIST_PAGES} pages"
        )))
    }

    /// Calls tool `name` with `arguments` (and `meta` as the request's
    /// `_meta`); its answer may be at most `cap` bytes.
    pub fn call(
        &mut self,
        name: &str,
        arguments: &Value,
        meta: &Value,
        timeout: Duration,
        cap: u64,
    ) -> Result<CallResult, Failure> {
        let result = self.request(
            "tools/call",
            json!({"name": name, "arguments": arguments, "_meta": meta}),
            timeout,
            cap,
        )?;
        let content = result.get("content").cloned().unwrap_or(json!([]));
        if !content.is_array() {
            return Err(Failure::call(
                "tools/call: the answer's `content` is not an array",
            ));
        }
        Ok(CallResult {
            content,
            structured: result.get("structuredContent").cloned(),
            is_error: result.get("isError").and_then(Value::as_bool) == Some(true),
        })
    }

    fn send(&mut self, message: &Value, deadline: Instant) -> Result<(), Failure> {
        self.transport
            .send(message, deadline)
            .inspect_err(|f| self.broken |= f.broken)
    }

    /// Sends a request and waits for its answer, answering the server's own
    /// requests on the way.
    fn request(
        &mut self,
        method: &str,
        params: Value,
        timeout: Duration,
        cap: u64,
    ) -> Result<Value, Failure> {
        if self.broken {
            return Err(Failure::broken("the session is broken"));
        }
        let deadline = Instant::now() + timeout;
        let id = self.next_id;
        self.next_id += 1;
        self.send(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
            deadline,
        )?;
        let outcome = self.await_answer(id, deadline, timeout, cap);
        if let Err(f) = &outcome {
            self.broken |= f.broken;
        }
        let with_stderr = |f: Failure, tail: String| Failure {
            reason: if tail.is_empty() {
                f.reason
            } else {
                format!("{}{}{tail}", f.reason, crate::exec::TOOL_STDERR_MARK)
            },
            broken: f.broken,
        };
        outcome.map_err(|f| {
            let tail = if f.broken {
                self.transport.stderr_tail()
            } else {
                String::new()
            };
            with_stderr(f, tail)
        })
    }

    fn await_answer(
        &mut self,
        id: u64,
        deadline: Instant,
        timeout: Duration,
        cap: u64,
    ) -> Result<Value, Failure> {
        for _ in 0..MAX_MESSAGES_PER_CALL {
            let message = match self.pending.pop_front() {
                Some(m) => m,
                None => match self.transport.next(deadline)? {
                    None => {
                        return Err(Failure::broken(format!(
                            "no answer within {} ms; the server was stopped",
                            timeout.as_millis()
                        )))
                    }
                    Some(Incoming::Oversize(n)) => {
                        return Err(Failure::call(format!(
                            "the server answered {n} bytes or more, above the limit of {MAX_MESSAGE_BYTES} bytes"
                        )))
                    }
                    Some(Incoming::Garbage(line)) => {
                        let shown: String = line.chars().take(SHOWN_CHARS).collect();
                        return Err(Failure::broken(format!(
                            "the server wrote something that is not a JSON-RPC message on its output, which MCP forbids (stdout is for messages, stderr for logs): {shown:?}"
                        )));
                    }
                    Some(Incoming::Message(Value::Array(batch))) => {
                        self.pending.extend(batch);
                        continue;
                    }
                    Some(Incoming::Message(m)) => {
                        let size = m.to_string().len() as u64;
                        if size > cap && m.get("id").and_then(Value::as_u64) == Some(id) {
                            return Err(Failure::call(format!(
                                "the answer is {size} bytes, more than the output cap of {cap} bytes"
                            )));
                        }
                        m
                    }
                },
            };
            let has_method = message.get("method").and_then(Value::as_str);
            match (has_method, message.get("id")) {
                // A request from the server: sampling, roots, elicitation,
                // ping. Nothing of that is granted to a tool.
                (Some(method), Some(req_id)) => {
                    let answer = if method == "ping" {
                        json!({"jsonrpc": "2.0", "id": req_id, "result": {}})
                    } else {
                        if self.refused.len() < MAX_REFUSED_KEPT {
                            let shown: String = method.chars().take(SHOWN_CHARS).collect();
                            self.refused.push(format!(
                                "the server sent the client a request ({shown:?}), which jaros grants no MCP server: answered -32601 (method not found)"
                            ));
                        }
                        json!({"jsonrpc": "2.0", "id": req_id, "error": {
                            "code": -32601,
                            "message": format!("method not found: jaros grants MCP servers no requests to the client ({method})"),
                        }})
                    };
                    self.send(&answer, deadline)?;
                }
                // A notification (log, progress): nothing to do.
                (Some(_), None) => {}
                (None, Some(answer_id)) if answer_id.as_u64() == Some(id) => {
                    if let Some(error) = message.get("error") {
                        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
                        let text = error.get("message").and_then(Value::as_str).unwrap_or("");
                        return Err(Failure::call(format!(
                            "the server answered error {code}: {text}"
                        )));
                    }
                    return message.get("result").cloned().ok_or_else(|| {
                        Failure::call("the server's answer has neither `result` nor `error`")
                    });
                }
                // An answer to something else (a late one): ignored.
                (None, Some(_)) => {}
                (None, None) => {
                    let shown: String = message.to_string().chars().take(SHOWN_CHARS).collect();
                    return Err(Failure::broken(format!(
                        "the server sent a JSON value that is not a JSON-RPC message: {shown}"
                    )));
                }
            }
        }
        Err(Failure::broken(format!(
            "the server sent {MAX_MESSAGES_PER_CALL} messages without answering"
        )))
    }
}

fn tool_info(t: &Value) -> Result<McpTool, Failure> {
    let name = t
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::call("tools/list: a tool has no name"))?;
    let input_schema = t
        .get("inputSchema")
        .cloned()
        .ok_or_else(|| Failure::call(format!("tools/list: tool {name:?} has no inputSchema")))?;
    Ok(McpTool {
        name: name.to_string(),
        description: t
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        input_schema,
        output_schema: t.get("outputSchema").cloned(),
    })
}

/// Checks a call's structured result against the tool's `outputSchema`
/// (MCP: a server that declares one must send structured content that
/// matches it).
pub fn check_output(tool: &McpTool, result: &CallResult) -> Result<(), String> {
    let Some(schema) = &tool.output_schema else {
        return Ok(());
    };
    if result.is_error {
        return Ok(());
    }
    let Some(structured) = &result.structured else {
        return Err(format!(
            "tool {:?} declares an outputSchema but sent no structuredContent",
            tool.name
        ));
    };
    let validator = jsonschema::validator_for(schema).map_err(|e| {
        format!(
            "the outputSchema of tool {:?} does not compile: {e}",
            tool.name
        )
    })?;
    let first = validator.iter_errors(structured).next().map(|error| {
        format!(
            "tool {:?} returned structuredContent that breaks its own outputSchema: at {:?}: {error}",
            tool.name,
            error.instance_path().to_string()
        )
    });
    match first {
        None => Ok(()),
        Some(reason) => Err(reason),
    }
}
