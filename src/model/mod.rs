//! Models: one chat interface over every provider.
//!
//! This module owns the request and response types, the [`ModelClient`] trait,
//! provider configuration and the adapters behind it: `openai` (OpenAI-compatible
//! `/v1/chat/completions`), `ollama` (`/api/chat`), `echo` and `scripted`. HTTP,
//! time-outs, body caps and retries live in [`http`].
//!
//! It does not own prompts, the decision schema, budgets or recording: callers build
//! a [`ChatRequest`] (with the JSON Schema the answer must follow), hand it to a
//! client, and record what comes back. API keys are read once, in [`client_for`],
//! and never appear in a request, a response, an error or any `Debug` output.

pub mod echo;
pub mod http;
pub mod ollama;
pub mod openai;
pub mod proposer;
pub mod scripted;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Attempts after the first one, unless the provider's manifest says otherwise.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// The most retries a provider may ask for: retries multiply a job's wall time.
pub const MAX_RETRIES_LIMIT: u32 = 10;
/// Per-attempt time-out, unless the provider's manifest says otherwise.
pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;
/// The longest per-attempt time-out a provider may ask for.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// One chat call: the whole conversation so far plus sampling parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub temperature: Option<f64>,
    pub seed: Option<u64>,
    pub max_tokens: Option<u32>,
    /// JSON Schema the answer must follow; adapters pass it as structured output.
    pub schema: Option<serde_json::Value>,
}

/// One chat message; `role` is `system`, `user` or `assistant`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: "system".into(),
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// The model's raw answer and the token usage the provider reported (0 when it
/// reported none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub text: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

/// A chat provider. Implementations are cheap to share across threads.
pub trait ModelClient: Send + Sync {
    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ModelError>;
    /// The provider's name from the node manifest (not its kind).
    fn provider(&self) -> &str;
}

/// Which adapter a provider uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Ollama,
    Echo,
    Scripted,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Ollama => "ollama",
            ProviderKind::Echo => "echo",
            ProviderKind::Scripted => "scripted",
        }
    }
}

/// A provider as the node manifest defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// `openai`: defaults to [`openai::DEFAULT_BASE_URL`]; `ollama`: to
    /// [`ollama::DEFAULT_BASE_URL`]. Ignored by `echo` and `scripted`.
    pub base_url: Option<String>,
    /// The NAME of the environment variable holding the API key, never the key.
    pub api_key_env: Option<String>,
    /// Time-out of one HTTP attempt, connect to last byte.
    pub timeout_ms: u64,
    /// Attempts after the first, on connection errors, 429 and 5xx.
    pub max_retries: u32,
    /// `scripted`: the file of responses (see [`scripted`] for its format).
    pub responses: Option<PathBuf>,
}

impl ProviderConfig {
    /// A provider of `kind` with default time-out and retries and nothing else set.
    pub fn new(name: impl Into<String>, kind: ProviderKind) -> Self {
        ProviderConfig {
            name: name.into(),
            kind,
            base_url: None,
            api_key_env: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_retries: DEFAULT_MAX_RETRIES,
            responses: None,
        }
    }
}

/// Builds the client for a provider. The API key, if the provider names an env
/// var, is read here and only here; a named but unset variable is an error.
/// Set while a replay runs in this process (tests): building a client then is
/// a bug, and panics loudly instead of calling a model.
static CLIENTS_FORBIDDEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Forbids (or allows again) building model clients in this process.
pub fn forbid_clients(forbidden: bool) {
    CLIENTS_FORBIDDEN.store(forbidden, std::sync::atomic::Ordering::SeqCst);
}

pub fn client_for(cfg: &ProviderConfig) -> Result<Box<dyn ModelClient>, ModelError> {
    assert!(
        !CLIENTS_FORBIDDEN.load(std::sync::atomic::Ordering::SeqCst),
        "a model client was built while clients are forbidden (during replay)"
    );
    validate(cfg)?;
    Ok(match cfg.kind {
        ProviderKind::Openai => Box::new(openai::OpenAiClient::new(cfg, read_api_key(cfg)?)?),
        ProviderKind::Ollama => Box::new(ollama::OllamaClient::new(cfg, read_api_key(cfg)?)?),
        ProviderKind::Echo => Box::new(echo::EchoClient::new(&cfg.name)),
        ProviderKind::Scripted => Box::new(scripted::ScriptedClient::from_config(cfg)?),
    })
}

fn validate(cfg: &ProviderConfig) -> Result<(), ModelError> {
    let bad = |reason: String| ModelError::Config {
        provider: cfg.name.clone(),
        reason,
    };
    if cfg.name.trim().is_empty() {
        return Err(bad("the provider name is empty".into()));
    }
    if cfg.max_retries > MAX_RETRIES_LIMIT {
        return Err(bad(format!(
            "max_retries is {}, at most {MAX_RETRIES_LIMIT} is allowed",
            cfg.max_retries
        )));
    }
    if cfg.timeout_ms == 0 || cfg.timeout_ms > MAX_TIMEOUT_MS {
        return Err(bad(format!(
            "timeout_ms is {}, it must be between 1 and {MAX_TIMEOUT_MS}",
            cfg.timeout_ms
        )));
    }
    Ok(())
}

fn read_api_key(cfg: &ProviderConfig) -> Result<Option<http::ApiKey>, ModelError> {
    let Some(var) = &cfg.api_key_env else {
        return Ok(None);
    };
    match std::env::var(var) {
        Ok(key) if !key.trim().is_empty() => Ok(Some(http::ApiKey::new(key.trim().to_string()))),
        Ok(_) => Err(ModelError::ApiKeyMissing {
            provider: cfg.name.clone(),
            var: var.clone(),
        }),
        Err(_) => Err(ModelError::ApiKeyMissing {
            provider: cfg.name.clone(),
            var: var.clone(),
        }),
    }
}

/// Everything that can go wrong asking a model. Each variant names the provider
/// (and the model, once a request exists). No variant ever holds an API key:
/// response snippets are scrubbed of it before they are stored here.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The provider's configuration cannot work (bad URL, unreadable script file, ...).
    #[error("provider '{provider}': {reason}")]
    Config { provider: String, reason: String },

    /// The manifest names an API key variable that is not set.
    #[error("provider '{provider}': the API key variable {var} is not set (or empty)")]
    ApiKeyMissing { provider: String, var: String },

    /// The request itself cannot be sent (e.g. `echo` without a user message).
    #[error("provider '{provider}' (model '{model}'): bad request: {reason}")]
    Request {
        provider: String,
        model: String,
        reason: String,
    },

    /// No HTTP answer at all: refused, reset, DNS, connect time-out.
    #[error("provider '{provider}' (model '{model}'): cannot reach {url} after {}: {reason}", attempts_text(*attempts))]
    Connect {
        provider: String,
        model: String,
        url: String,
        attempts: u32,
        reason: String,
    },

    /// One attempt ran past `timeout_ms`.
    #[error("provider '{provider}' (model '{model}'): no complete answer within {timeout_ms} ms")]
    Timeout {
        provider: String,
        model: String,
        timeout_ms: u64,
    },

    /// The server answered with a non-2xx status (after retries if it was retryable).
    #[error("provider '{provider}' (model '{model}'): HTTP {status} after {}: {body}", attempts_text(*attempts))]
    Status {
        provider: String,
        model: String,
        status: u16,
        attempts: u32,
        body: String,
    },

    /// The body was larger than [`http::MAX_RESPONSE_BYTES`].
    #[error("provider '{provider}' (model '{model}'): response body exceeds {limit_bytes} bytes")]
    TooLarge {
        provider: String,
        model: String,
        limit_bytes: u64,
    },

    /// The connection ended before the body did.
    #[error("provider '{provider}' (model '{model}'): response body truncated: {reason}")]
    Truncated {
        provider: String,
        model: String,
        reason: String,
    },

    /// A 2xx answer whose body is not JSON (an HTML error page, a proxy's banner, ...).
    #[error("provider '{provider}' (model '{model}'): HTTP {status} answer is not JSON ({what}): {snippet}")]
    NotJson {
        provider: String,
        model: String,
        status: u16,
        what: String,
        snippet: String,
    },

    /// JSON, but not the shape the provider's API promises.
    #[error("provider '{provider}' (model '{model}'): unexpected response shape: {reason}")]
    BadResponse {
        provider: String,
        model: String,
        reason: String,
    },

    /// A `scripted` provider has handed out every response it had.
    #[error("provider '{provider}' (model '{model}'): scripted responses exhausted after {count}")]
    Exhausted {
        provider: String,
        model: String,
        count: usize,
    },
}

impl ModelError {
    /// Whether this failure came from the network or the server (as opposed to
    /// configuration or the caller), i.e. whether the same call may work later.
    pub fn is_transient(&self) -> bool {
        match self {
            ModelError::Connect { .. }
            | ModelError::Timeout { .. }
            | ModelError::Truncated { .. } => true,
            ModelError::Status { status, .. } => *status == 429 || *status >= 500,
            ModelError::Config { .. }
            | ModelError::ApiKeyMissing { .. }
            | ModelError::Request { .. }
            | ModelError::TooLarge { .. }
            | ModelError::NotJson { .. }
            | ModelError::BadResponse { .. }
            | ModelError::Exhausted { .. } => false,
        }
    }
}

fn attempts_text(attempts: u32) -> String {
    if attempts == 1 {
        "1 attempt".to_string()
    } else {
        format!("{attempts} attempts")
    }
}

/// Whitespace-separated words: the token count that `echo` and `scripted` report,
/// so budgets can be exercised without a real tokenizer.
fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn words_in(messages: &[Message]) -> u64 {
    messages.iter().map(|m| word_count(&m.content)).sum()
}
