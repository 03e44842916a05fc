//! The `ollama` adapter: `POST /api/chat` with `stream: false`.
//!
//! A request schema becomes `format` (Ollama's structured output); temperature,
//! seed and max tokens go in `options` as `temperature`, `seed`, `num_predict`.
//! The answer is `message.content`; usage is `prompt_eval_count` / `eval_count`.

use serde_json::{json, Map, Value};

use super::http::{check_base_url, ApiKey, HttpClient, RetryPolicy};
use super::{ChatRequest, ChatResponse, ModelClient, ModelError, ProviderConfig};

/// Where `ollama` providers without a `base_url` go: a local Ollama.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434";

#[derive(Debug)]
pub struct OllamaClient {
    http: HttpClient,
    url: String,
}

impl OllamaClient {
    /// A client with the module's default backoff (see [`super::http`]).
    pub fn new(cfg: &ProviderConfig, api_key: Option<ApiKey>) -> Result<Self, ModelError> {
        Self::with_retry_policy(cfg, api_key, RetryPolicy::for_config(cfg))
    }

    pub fn with_retry_policy(
        cfg: &ProviderConfig,
        api_key: Option<ApiKey>,
        policy: RetryPolicy,
    ) -> Result<Self, ModelError> {
        let base = cfg.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        check_base_url(&cfg.name, base)?;
        let url = format!("{}/api/chat", base.trim_end_matches('/'));
        Ok(OllamaClient {
            http: HttpClient::new(cfg, api_key, policy),
            url,
        })
    }

    /// The URL this client posts to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The JSON body for `req`; `options` holds only what the request sets.
pub fn request_body(req: &ChatRequest) -> Value {
    let mut options = Map::new();
    if let Some(t) = req.temperature {
        options.insert("temperature".into(), json!(t));
    }
    if let Some(seed) = req.seed {
        options.insert("seed".into(), json!(seed));
    }
    if let Some(max) = req.max_tokens {
        options.insert("num_predict".into(), json!(max));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("messages".into(), json!(req.messages));
    body.insert("stream".into(), json!(false));
    if let Some(schema) = &req.schema {
        body.insert("format".into(), schema.clone());
    }
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    Value::Object(body)
}

/// The answer and usage out of an `/api/chat` reply; errors name what is missing.
pub fn parse_response(body: &Value) -> Result<ChatResponse, String> {
    if let Some(error) = body.get("error").and_then(Value::as_str) {
        return Err(format!("the server reported an error: {error}"));
    }
    let text = body
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .ok_or("no message.content string in the answer")?
        .to_string();
    let count = |field: &str| body.get(field).and_then(Value::as_u64).unwrap_or(0);
    Ok(ChatResponse {
        text,
        tokens_in: count("prompt_eval_count"),
        tokens_out: count("eval_count"),
    })
}

impl ModelClient for OllamaClient {
    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ModelError> {
        self.http
            .chat(&self.url, req, &request_body(req), parse_response)
    }

    fn provider(&self) -> &str {
        self.http.provider()
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn usage_defaults_to_zero_and_a_missing_message_is_named() {
        let ok = json!({"message":{"role":"assistant","content":"{}"},"done":true});
        assert_eq!(
            parse_response(&ok).unwrap(),
            ChatResponse {
                text: "{}".into(),
                tokens_in: 0,
                tokens_out: 0
            }
        );
        assert!(parse_response(&json!({"done":true}))
            .unwrap_err()
            .contains("message.content"));
        assert!(parse_response(&json!({"error":"model not found"}))
            .unwrap_err()
            .contains("not found"));
    }

    #[test]
    fn options_are_left_out_when_nothing_is_set() {
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![],
            temperature: None,
            seed: None,
            max_tokens: None,
            schema: None,
        };
        assert_eq!(
            request_body(&req),
            json!({"model":"m","messages":[],"stream":false})
        );
    }
}
