//! The `openai` adapter: OpenAI-compatible `POST /v1/chat/completions` (OpenAI,
//! llama.cpp's server, vLLM, LM Studio).
//!
//! A request schema becomes `response_format: {"type": "json_schema", ...}` with
//! `strict: true`; the answer is `choices[0].message.content`, usage is
//! `usage.prompt_tokens` / `usage.completion_tokens`. The key, when the provider
//! has one, goes in `Authorization: Bearer`.

use serde_json::{json, Map, Value};

use super::http::{check_base_url, ApiKey, HttpClient, RetryPolicy};
use super::{ChatRequest, ChatResponse, ModelClient, ModelError, ProviderConfig};

/// Where `openai` providers without a `base_url` go.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The `json_schema.name` sent with a schema.
pub const SCHEMA_NAME: &str = "decisions";

#[derive(Debug)]
pub struct OpenAiClient {
    http: HttpClient,
    url: String,
}

impl OpenAiClient {
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
        Ok(OpenAiClient {
            http: HttpClient::new(cfg, api_key, policy),
            url: completions_url(base),
        })
    }

    /// The URL this client posts to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `{base}/v1/chat/completions`, without doubling a `/v1` the base already has.
pub fn completions_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1") {
        format!("{base}/chat/completions")
    } else {
        format!("{base}/v1/chat/completions")
    }
}

/// The JSON body for `req`; fields the request leaves unset are left out.
pub fn request_body(req: &ChatRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("messages".into(), json!(req.messages));
    body.insert("stream".into(), json!(false));
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(seed) = req.seed {
        body.insert("seed".into(), json!(seed));
    }
    if let Some(max) = req.max_tokens {
        body.insert("max_tokens".into(), json!(max));
    }
    if let Some(schema) = &req.schema {
        body.insert(
            "response_format".into(),
            json!({
                "type": "json_schema",
                "json_schema": { "name": SCHEMA_NAME, "schema": schema, "strict": true }
            }),
        );
    }
    Value::Object(body)
}

/// The answer and usage out of a chat completion; errors name what is missing.
pub fn parse_response(body: &Value) -> Result<ChatResponse, String> {
    if let Some(error) = body.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| error.as_str());
        return Err(format!(
            "the server reported an error: {}",
            message.unwrap_or("(no message)")
        ));
    }
    let choice = body
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or("no choices[0] in the answer")?;
    let message = choice
        .get("message")
        .ok_or("no choices[0].message in the answer")?;
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => match message.get("refusal").and_then(Value::as_str) {
            Some(refusal) => return Err(format!("the model refused: {refusal}")),
            None => return Err("choices[0].message.content is missing or null".into()),
        },
        Some(other) => {
            return Err(format!(
                "choices[0].message.content is not a string: {other}"
            ))
        }
    };
    let usage = body.get("usage");
    let count = |field: &str| {
        usage
            .and_then(|u| u.get(field))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(ChatResponse {
        text,
        tokens_in: count("prompt_tokens"),
        tokens_out: count("completion_tokens"),
    })
}

impl ModelClient for OpenAiClient {
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
    fn a_v1_base_url_is_not_doubled() {
        assert_eq!(
            completions_url("http://h:1"),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            completions_url("http://h:1/"),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            completions_url("http://h:1/v1"),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            completions_url("http://h:1/v1/"),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            completions_url("http://h:1/proxy"),
            "http://h:1/proxy/v1/chat/completions"
        );
    }

    #[test]
    fn an_answer_without_content_is_an_error_naming_it() {
        assert!(parse_response(&json!({}))
            .unwrap_err()
            .contains("choices[0]"));
        let error = json!({"error": {"message": "model not loaded", "type": "server_error"}});
        assert!(parse_response(&error)
            .unwrap_err()
            .ends_with("reported an error: model not loaded"));
        let refused = json!({"choices":[{"message":{"content":null,"refusal":"no"}}]});
        assert!(parse_response(&refused).unwrap_err().contains("refused"));
        let ok = json!({"choices":[{"message":{"content":"hi"}}]});
        assert_eq!(
            parse_response(&ok).unwrap(),
            ChatResponse {
                text: "hi".into(),
                tokens_in: 0,
                tokens_out: 0
            }
        );
    }
}
