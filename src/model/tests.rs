//! The HTTP adapters against a scripted fake server on 127.0.0.1, and (when a
//! real model server is running) against a real model.
//!
//! The fake server answers connection N with reply N, records each request, then
//! stops; it also stops by itself after [`FAKE_SERVER_LIFETIME_MS`].

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http::{ApiKey, RetryPolicy, MAX_RESPONSE_BYTES};
use super::ollama::OllamaClient;
use super::openai::OpenAiClient;
use super::*;

const FAKE_SERVER_LIFETIME_MS: u64 = 30_000;
const MAX_FAKE_REQUEST_BYTES: usize = 1024 * 1024;

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    at: Instant,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the client sent JSON")
    }
}

/// What the fake server does with one connection.
enum Reply {
    /// Write these bytes, then close.
    Raw(Vec<u8>),
    /// Read the request, then say nothing for this long, then close.
    Silence(Duration),
}

fn reply(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut out = format!(
        "HTTP/1.1 {status} Whatever\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Reply::Raw(bytes)
}

fn json_reply(status: u16, body: &Value) -> Reply {
    reply(
        status,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn openai_ok(text: &str) -> Reply {
    json_reply(
        200,
        &json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        }),
    )
}

struct FakeServer {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeServer {
    fn start(script: Vec<Reply>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_millis(FAKE_SERVER_LIFETIME_MS);
            let mut script = script.into_iter();
            let Some(mut next) = script.next() else {
                return;
            };
            while Instant::now() < deadline {
                let (mut stream, _) = match listener.accept() {
                    Ok(conn) => conn,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                if let Some(req) = read_request(&mut stream) {
                    log.lock().unwrap().push(req);
                }
                match next {
                    // The client may hang up first (a capped body): that is the point.
                    Reply::Raw(bytes) => {
                        let _ = stream.write_all(&bytes);
                        let _ = stream.flush();
                    }
                    Reply::Silence(d) => std::thread::sleep(d),
                }
                drop(stream);
                match script.next() {
                    Some(r) => next = r,
                    None => return,
                }
            }
        });
        FakeServer { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > MAX_FAKE_REQUEST_BYTES {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len.min(MAX_FAKE_REQUEST_BYTES) {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        request_line,
        headers,
        body,
        at,
    })
}

/// Backoff short enough that retry tests take milliseconds.
fn fast(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        backoff_base_ms: 5,
        backoff_max_ms: 20,
        retry_after_max_ms: 5_000,
    }
}

fn cfg(kind: ProviderKind, url: &str) -> ProviderConfig {
    let mut c = ProviderConfig::new("local", kind);
    c.base_url = Some(url.to_string());
    c.timeout_ms = 5_000;
    c
}

fn openai(url: &str, retries: u32) -> OpenAiClient {
    OpenAiClient::with_retry_policy(&cfg(ProviderKind::Openai, url), None, fast(retries)).unwrap()
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "x".into(),
        messages: vec![Message::system("You decide."), Message::user("What now?")],
        temperature: Some(0.0),
        seed: Some(42),
        max_tokens: Some(64),
        schema: None,
    }
}

fn decisions_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "decisions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": ["note"]},
                        "payload": {
                            "type": "object",
                            "properties": {"text": {"type": "string"}},
                            "required": ["text"],
                            "additionalProperties": false
                        }
                    },
                    "required": ["type", "payload"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["decisions"],
        "additionalProperties": false
    })
}

// ---- retries and bad answers ------------------------------------------------

#[test]
fn token_counts_past_2_pow_53_are_clamped_to_what_the_log_records_exactly() {
    // A count near 2^64 once made a model record the log could not read back.
    let server = FakeServer::start(vec![json_reply(
        200,
        &json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}}],
            "usage": {"prompt_tokens": u64::MAX, "completion_tokens": (1u64 << 53) + 1}
        }),
    )]);
    let out = openai(&server.url, 0).chat(&request()).unwrap();
    assert_eq!(
        (out.tokens_in, out.tokens_out),
        (
            crate::canon::MAX_EXACT_INTEGER,
            crate::canon::MAX_EXACT_INTEGER
        )
    );
}

#[test]
fn five_hundred_three_times_then_ok_succeeds_on_the_fourth_attempt() {
    let server = FakeServer::start(vec![
        reply(500, &[], b"boom"),
        reply(500, &[], b"boom"),
        reply(500, &[], b"boom"),
        openai_ok("fine"),
    ]);
    let out = openai(&server.url, 3).chat(&request()).unwrap();
    assert_eq!(
        out,
        ChatResponse {
            text: "fine".into(),
            tokens_in: 11,
            tokens_out: 7
        }
    );
    assert_eq!(server.seen().len(), 4);
}

#[test]
fn a_server_that_always_answers_500_fails_after_max_retries_naming_the_status() {
    let server = FakeServer::start(
        (0..3)
            .map(|_| reply(500, &[], b"internal error\n"))
            .collect(),
    );
    let err = openai(&server.url, 2).chat(&request()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "provider 'local' (model 'x'): HTTP 500 after 3 attempts: internal error"
    );
    assert!(matches!(
        err,
        ModelError::Status {
            status: 500,
            attempts: 3,
            ..
        }
    ));
    assert!(err.is_transient());
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn a_429_with_retry_after_is_waited_out_then_retried() {
    let server = FakeServer::start(vec![
        reply(429, &[("Retry-After", "1")], b"slow down"),
        openai_ok("ok"),
    ]);
    let start = Instant::now();
    let out = openai(&server.url, 2).chat(&request()).unwrap();
    assert_eq!(out.text, "ok");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(990));
}

#[test]
fn other_4xx_statuses_are_not_retried() {
    let server = FakeServer::start(vec![
        reply(400, &[], b"{\"error\":\"bad model\"}"),
        openai_ok("never"),
    ]);
    let err = openai(&server.url, 3).chat(&request()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "provider 'local' (model 'x'): HTTP 400 after 1 attempt: {\"error\":\"bad model\"}"
    );
    assert!(!err.is_transient());
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_redirect_is_an_error_not_followed() {
    let server = FakeServer::start(vec![reply(
        302,
        &[("Location", "http://127.0.0.1:9/")],
        b"",
    )]);
    let err = openai(&server.url, 3).chat(&request()).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::Status {
                status: 302,
                attempts: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_html_page_with_status_200_is_a_clear_error() {
    let page = b"<!DOCTYPE html><html><body>Gateway login</body></html>";
    let server = FakeServer::start(vec![reply(200, &[("Content-Type", "text/html")], page)]);
    let err = openai(&server.url, 3).chat(&request()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ModelError::NotJson { status: 200, .. }),
        "{err}"
    );
    assert!(
        text.contains("HTML page") && text.contains("Gateway login"),
        "{text}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_body_that_is_not_json_is_a_clear_error() {
    let server = FakeServer::start(vec![reply(
        200,
        &[("Content-Type", "text/plain")],
        b"hello there",
    )]);
    let err = openai(&server.url, 0).chat(&request()).unwrap_err();
    assert!(matches!(err, ModelError::NotJson { .. }), "{err}");
    assert!(err.to_string().contains("text/plain"), "{err}");
}

#[test]
fn json_of_the_wrong_shape_is_a_bad_response() {
    let server = FakeServer::start(vec![json_reply(
        200,
        &json!({"object": "list", "data": []}),
    )]);
    let err = openai(&server.url, 0).chat(&request()).unwrap_err();
    assert!(matches!(err, ModelError::BadResponse { .. }), "{err}");
    assert!(err.to_string().contains("choices[0]"), "{err}");
}

#[test]
fn a_truncated_body_is_an_error_and_not_retried() {
    let mut bytes =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            .to_vec();
    bytes.extend_from_slice(br#"{"choices": [{"mess"#);
    let server = FakeServer::start(vec![Reply::Raw(bytes), openai_ok("never")]);
    let err = openai(&server.url, 3).chat(&request()).unwrap_err();
    assert!(matches!(err, ModelError::Truncated { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("provider 'local' (model 'x'): response body truncated"),
        "{err}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_ten_megabyte_body_is_refused_at_the_cap() {
    let mut big = b"{\"choices\":[{\"message\":{\"content\":\"".to_vec();
    big.resize(10 * 1024 * 1024, b'a');
    big.extend_from_slice(b"\"}}]}");
    let server = FakeServer::start(vec![reply(
        200,
        &[("Content-Type", "application/json")],
        &big,
    )]);
    let start = Instant::now();
    let err = openai(&server.url, 3).chat(&request()).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::TooLarge {
                limit_bytes: MAX_RESPONSE_BYTES,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("exceeds 4194304 bytes"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_server_that_is_down_fails_after_retries_quickly() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    let err = openai(&url, 2).chat(&request()).unwrap_err();
    assert!(
        matches!(err, ModelError::Connect { attempts: 3, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("provider 'local' (model 'x'): cannot reach"),
        "{text}"
    );
    assert!(text.contains("after 3 attempts"), "{text}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_server_that_never_answers_times_out_without_retrying() {
    let server = FakeServer::start(vec![
        Reply::Silence(Duration::from_secs(3)),
        openai_ok("late"),
    ]);
    let mut c = cfg(ProviderKind::Openai, &server.url);
    c.timeout_ms = 300;
    let client = OpenAiClient::with_retry_policy(&c, None, fast(3)).unwrap();
    let start = Instant::now();
    let err = client.chat(&request()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "provider 'local' (model 'x'): no complete answer within 300 ms"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.seen().len(), 1);
}

// ---- what is sent -----------------------------------------------------------

#[test]
fn openai_sends_the_schema_as_response_format_and_no_stream() {
    let server = FakeServer::start(vec![openai_ok("{\"decisions\":[]}")]);
    let mut req = request();
    req.schema = Some(decisions_schema());
    let client = OpenAiClient::with_retry_policy(
        &cfg(ProviderKind::Openai, &format!("{}/v1/", server.url)),
        Some(ApiKey::new("sk-test-openai".into())),
        fast(0),
    )
    .unwrap();
    client.chat(&req).unwrap();
    let seen = &server.seen()[0];
    assert_eq!(seen.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(seen.header("authorization"), Some("Bearer sk-test-openai"));
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(
        seen.json(),
        json!({
            "model": "x",
            "messages": [
                {"role": "system", "content": "You decide."},
                {"role": "user", "content": "What now?"}
            ],
            "stream": false,
            "temperature": 0.0,
            "seed": 42,
            "max_tokens": 64,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "decisions", "schema": decisions_schema(), "strict": true}
            }
        })
    );
}

#[test]
fn openai_without_a_key_sends_no_authorization() {
    let server = FakeServer::start(vec![openai_ok("hi")]);
    openai(&server.url, 0).chat(&request()).unwrap();
    assert_eq!(server.seen()[0].header("authorization"), None);
    assert!(server.seen()[0].json().get("response_format").is_none());
}

#[test]
fn ollama_sends_format_options_and_stream_false_and_reads_eval_counts() {
    let server = FakeServer::start(vec![json_reply(
        200,
        &json!({
            "model": "x", "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": "{\"decisions\":[]}"},
            "done": true, "prompt_eval_count": 26, "eval_count": 9
        }),
    )]);
    let mut req = request();
    req.schema = Some(decisions_schema());
    let client =
        OllamaClient::with_retry_policy(&cfg(ProviderKind::Ollama, &server.url), None, fast(0))
            .unwrap();
    let out = client.chat(&req).unwrap();
    assert_eq!(
        out,
        ChatResponse {
            text: "{\"decisions\":[]}".into(),
            tokens_in: 26,
            tokens_out: 9
        }
    );
    let seen = &server.seen()[0];
    assert_eq!(seen.request_line, "POST /api/chat HTTP/1.1");
    assert_eq!(
        seen.json(),
        json!({
            "model": "x",
            "messages": [
                {"role": "system", "content": "You decide."},
                {"role": "user", "content": "What now?"}
            ],
            "stream": false,
            "format": decisions_schema(),
            "options": {"temperature": 0.0, "seed": 42, "num_predict": 64}
        })
    );
}

#[test]
fn ollama_retries_5xx_like_openai() {
    let server = FakeServer::start(vec![
        reply(503, &[], b"loading model"),
        json_reply(200, &json!({"message": {"content": "ok"}, "done": true})),
    ]);
    let client =
        OllamaClient::with_retry_policy(&cfg(ProviderKind::Ollama, &server.url), None, fast(2))
            .unwrap();
    assert_eq!(client.chat(&request()).unwrap().text, "ok");
    assert_eq!(server.seen().len(), 2);
}

// ---- configuration and secrets ---------------------------------------------

#[test]
fn bad_configurations_are_refused_by_client_for() {
    let mut c = cfg(ProviderKind::Openai, "localhost:8080");
    assert!(matches!(
        client_for(&c).err(),
        Some(ModelError::Config { .. })
    ));
    c.base_url = Some("http://127.0.0.1:1".into());
    c.max_retries = MAX_RETRIES_LIMIT + 1;
    assert!(matches!(
        client_for(&c).err(),
        Some(ModelError::Config { .. })
    ));
    c.max_retries = 1;
    c.timeout_ms = 0;
    assert!(matches!(
        client_for(&c).err(),
        Some(ModelError::Config { .. })
    ));
    c.timeout_ms = 1000;
    c.api_key_env = Some("JAROS_TEST_SURELY_UNSET_KEY_VAR".into());
    let err = client_for(&c).err().unwrap();
    assert_eq!(
        err.to_string(),
        "provider 'local': the API key variable JAROS_TEST_SURELY_UNSET_KEY_VAR is not set (or empty)"
    );
    assert!(client_for(&ProviderConfig::new("e", ProviderKind::Echo)).is_ok());
}

#[test]
fn the_api_key_never_appears_in_any_error_request_or_debug_output() {
    const KEY: &str = "sk-jaros-test-7f3a9c1e5b";
    const VAR: &str = "JAROS_TEST_MODEL_API_KEY_SECRET_GREP";
    std::env::set_var(VAR, KEY);

    // Servers that echo the key back, in every failure shape.
    let echo = format!("invalid api key {KEY}");
    let html = format!("<html>{KEY}</html>");
    let server = FakeServer::start(vec![
        reply(401, &[], echo.as_bytes()),
        reply(500, &[], echo.as_bytes()),
        reply(200, &[("Content-Type", "text/html")], html.as_bytes()),
        reply(200, &[("Content-Type", "text/plain")], echo.as_bytes()),
        json_reply(200, &json!({"error": echo})),
        json_reply(
            200,
            &json!({"choices": [{"message": {"content": null, "refusal": echo}}]}),
        ),
    ]);
    let mut c = cfg(ProviderKind::Openai, &server.url);
    c.api_key_env = Some(VAR.into());
    c.max_retries = 0;
    let client = client_for(&c).unwrap();
    let mut outputs = Vec::new();
    for _ in 0..6 {
        let err = client.chat(&request()).unwrap_err();
        outputs.push(format!("{err}"));
        outputs.push(format!("{err:?}"));
        outputs.push(format!("{err:#?}"));
    }
    assert_eq!(server.seen().len(), 6);
    assert_eq!(
        server.seen()[0].header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );

    // Connection failures and time-outs.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut down = cfg(ProviderKind::Openai, &format!("http://127.0.0.1:{port}"));
    down.api_key_env = Some(VAR.into());
    down.max_retries = 0;
    let err = client_for(&down).unwrap().chat(&request()).unwrap_err();
    outputs.push(format!("{err} {err:?}"));
    let mut ollama = down.clone();
    ollama.kind = ProviderKind::Ollama;
    let err = client_for(&ollama).unwrap().chat(&request()).unwrap_err();
    outputs.push(format!("{err} {err:?}"));

    // The clients, config and request themselves.
    let key = ApiKey::new(KEY.into());
    let direct = OpenAiClient::with_retry_policy(&c, Some(key.clone()), fast(0)).unwrap();
    let direct_ollama =
        OllamaClient::with_retry_policy(&ollama, Some(key.clone()), fast(0)).unwrap();
    outputs.push(format!(
        "{direct:?} {direct:#?} {direct_ollama:?} {key:?} {c:?} {:?}",
        request()
    ));
    outputs.push(serde_json::to_string(&request()).unwrap());

    std::env::remove_var(VAR);
    for out in &outputs {
        assert!(!out.contains(KEY), "the key leaked into: {out}");
        assert!(
            !out.contains("7f3a9c1e5b"),
            "part of the key leaked into: {out}"
        );
    }
    assert!(
        outputs[0].contains("HTTP 401") && outputs[0].contains("[redacted]"),
        "{}",
        outputs[0]
    );
}

// ---- a real model (run scripts/model-server.sh start first) -----------------
// `#[ignore]`d: scripts/real-model-tests.sh starts the server and runs them by name.

/// The real model server's base URL: `var`, else the `file` the model-server
/// script writes. Panics, saying what to run, when neither exists: these
/// tests are run on purpose, and without their server they fail.
fn real_model_url(var: &str, file: &str) -> String {
    if let Ok(url) = std::env::var(var) {
        if !url.trim().is_empty() {
            return url.trim().to_string();
        }
    }
    let dir = std::env::var("JAROS_MODEL_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.cache/jaros-model",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let path = std::path::Path::new(&dir).join(file);
    match std::fs::read_to_string(&path) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ => panic!(
            "no real model server: {var} is unset and {} is missing or empty; run scripts/model-server.sh start",
            path.display()
        ),
    }
}

const REAL_MODEL: &str = "SmolLM2-135M-Instruct";

fn real_request() -> ChatRequest {
    ChatRequest {
        model: REAL_MODEL.into(),
        messages: vec![
            Message::system(
                "You are an agent. Answer with JSON: an object whose `decisions` array holds \
                 decisions of type \"note\" with a payload {\"text\": ...}.",
            ),
            Message::user("The job input is: greet the new user Ada. Propose one note."),
        ],
        temperature: Some(0.0),
        seed: Some(7),
        max_tokens: Some(160),
        schema: Some(decisions_schema()),
    }
}

/// Parses `text` as the decisions document and checks it against the schema's shape.
fn assert_decisions_shape(text: &str) {
    let doc: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let decisions = doc
        .get("decisions")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{text}"));
    for d in decisions {
        assert_eq!(
            d.get("type").and_then(Value::as_str),
            Some("note"),
            "{text}"
        );
        assert!(
            d.pointer("/payload/text").and_then(Value::as_str).is_some(),
            "{text}"
        );
        assert_eq!(d.as_object().unwrap().len(), 2, "{text}");
    }
}

fn real_model_runs_twice_alike(kind: ProviderKind, var: &str, file: &str) {
    let url = real_model_url(var, file);
    let mut c = ProviderConfig::new("real", kind);
    c.base_url = Some(url);
    c.timeout_ms = 120_000;
    let client = client_for(&c).unwrap();
    let first = client.chat(&real_request()).unwrap();
    let second = client.chat(&real_request()).unwrap();
    eprintln!(
        "{kind:?} answered ({} in, {} out): {}",
        first.tokens_in, first.tokens_out, first.text
    );
    assert_decisions_shape(&first.text);
    assert!(first.tokens_in > 0 && first.tokens_out > 0, "{first:?}");
    assert_eq!(first.text, second.text, "seed + temperature 0 must repeat");
}

#[test]
#[ignore = "needs a model server: scripts/model-server.sh start"]
fn a_real_model_through_openai_answers_schema_shaped_json_and_repeats_itself() {
    real_model_runs_twice_alike(ProviderKind::Openai, "JAROS_MODEL_URL", "url");
}

#[test]
#[ignore = "needs a model server: scripts/model-server.sh start"]
fn a_real_model_through_the_ollama_front_answers_schema_shaped_json_and_repeats_itself() {
    real_model_runs_twice_alike(ProviderKind::Ollama, "JAROS_OLLAMA_URL", "ollama_url");
}
