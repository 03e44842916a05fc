//! HTTP for the model adapters: one JSON POST with time-outs, a capped body,
//! bounded retries with jittered exponential backoff, and errors that name the
//! provider, the model and the status.
//!
//! Retried: connection errors (refused, reset, DNS, connect time-out), 429 and 5xx,
//! waiting `Retry-After` seconds when the server sends them (capped by
//! [`RETRY_AFTER_MAX_MS`]). Not retried: other statuses, a body over
//! [`MAX_RESPONSE_BYTES`], a truncated body, a body that is not JSON, a time-out of a
//! whole attempt (the model may simply be slow; retrying would multiply the wait).
//! Redirects are not followed: a 3xx is an error naming the status.
//!
//! The adapters own the JSON shapes; this module only moves bytes.

use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{ChatRequest, ChatResponse, ModelError, ProviderConfig};
use serde_json::Value;

/// The largest response body read; a larger one is an error, read no further.
pub const MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;
/// How much of an error response's body is read to explain the error.
pub const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;
/// How much of a body an error message quotes.
pub const MAX_SNIPPET_CHARS: usize = 300;
/// Connecting (TCP and TLS) gets at most this long, within the attempt's time-out.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// First backoff delay; it doubles each retry.
pub const BACKOFF_BASE_MS: u64 = 500;
/// The longest backoff delay between two attempts.
pub const BACKOFF_MAX_MS: u64 = 8_000;
/// The longest `Retry-After` honoured; a server asking for more waits this long.
pub const RETRY_AFTER_MAX_MS: u64 = 30_000;

/// An API key. Its `Debug` shows no part of it and it has no `Display`, so it
/// cannot leak through formatting; [`ApiKey::scrub`] removes it from server text.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> Self {
        ApiKey(key)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// `text` with every occurrence of the key replaced (servers may echo it back).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        text.replace(&self.0, "[redacted]")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// How many times, and how patiently, a call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub max_retries: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub retry_after_max_ms: u64,
}

impl RetryPolicy {
    /// The provider's retry count with the module's backoff constants.
    pub fn for_config(cfg: &ProviderConfig) -> Self {
        RetryPolicy {
            max_retries: cfg.max_retries,
            backoff_base_ms: BACKOFF_BASE_MS,
            backoff_max_ms: BACKOFF_MAX_MS,
            retry_after_max_ms: RETRY_AFTER_MAX_MS,
        }
    }

    /// The delay before attempt `retry` + 1 (`retry` counts from 1): exponential,
    /// capped, then "equal jitter" (half fixed, half random) so that clients which
    /// failed together do not retry together.
    fn backoff(&self, retry: u32, random: u64) -> Duration {
        let exp = self
            .backoff_base_ms
            .saturating_mul(1u64 << retry.saturating_sub(1).min(30));
        let capped = exp.min(self.backoff_max_ms);
        let half = capped / 2;
        Duration::from_millis(half + random % (capped - half + 1))
    }

    fn retry_after(&self, seconds: u64) -> Duration {
        Duration::from_millis(seconds.saturating_mul(1000).min(self.retry_after_max_ms))
    }
}

/// A JSON-over-HTTP client for one provider.
pub struct HttpClient {
    agent: ureq::Agent,
    provider: String,
    timeout_ms: u64,
    api_key: Option<ApiKey>,
    policy: RetryPolicy,
    jitter: AtomicU64,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("provider", &self.provider)
            .field("timeout_ms", &self.timeout_ms)
            .field("api_key", &self.api_key)
            .field("policy", &self.policy)
            .finish()
    }
}

/// What one attempt came to.
enum Attempt {
    Done(serde_json::Value),
    /// Worth another attempt; `wait` is the server's `Retry-After`, if any.
    Retry {
        last: ModelError,
        wait: Option<Duration>,
    },
    Fail(ModelError),
}

impl HttpClient {
    pub fn new(cfg: &ProviderConfig, api_key: Option<ApiKey>, policy: RetryPolicy) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_millis(cfg.timeout_ms)))
            .timeout_connect(Some(Duration::from_millis(
                cfg.timeout_ms.min(CONNECT_TIMEOUT_MS),
            )))
            .user_agent(concat!("jaros/", env!("CARGO_PKG_VERSION")))
            .build();
        // Seeding jitter from the clock is fine here: backoff timing is not part of
        // any record and never affects what a model is asked or answers.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        HttpClient {
            agent: ureq::Agent::new_with_config(config),
            provider: cfg.name.clone(),
            timeout_ms: cfg.timeout_ms,
            api_key,
            policy,
            jitter: AtomicU64::new(seed),
        }
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    pub fn api_key(&self) -> Option<&ApiKey> {
        self.api_key.as_ref()
    }

    /// One chat call: POSTs `body` to `url`, then reads the answer with the
    /// adapter's `parse`; an answer of the wrong shape is a `BadResponse`
    /// whose text never holds the API key.
    pub fn chat(
        &self,
        url: &str,
        req: &ChatRequest,
        body: &Value,
        parse: fn(&Value) -> Result<ChatResponse, String>,
    ) -> Result<ChatResponse, ModelError> {
        let answer = self.post_json(url, &req.model, body)?;
        parse(&answer)
            .map(|mut r| {
                // A server may report any count; the log records a count
                // exactly only up to 2^53, and a larger one is no count.
                r.tokens_in = r.tokens_in.min(crate::canon::MAX_EXACT_INTEGER);
                r.tokens_out = r.tokens_out.min(crate::canon::MAX_EXACT_INTEGER);
                r
            })
            .map_err(|reason| ModelError::BadResponse {
                provider: self.provider().to_string(),
                model: req.model.clone(),
                reason: match self.api_key() {
                    Some(key) => key.scrub(&reason),
                    None => reason,
                },
            })
    }

    /// POSTs `body` as JSON to `url` and returns the parsed JSON answer, retrying
    /// as the module doc describes. `model` is only used to name errors.
    pub fn post_json(
        &self,
        url: &str,
        model: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ModelError> {
        let bytes = serde_json::to_vec(body).map_err(|e| self.err_request(model, e.to_string()))?;
        let attempts = self.policy.max_retries + 1;
        let mut attempt = 1;
        loop {
            match self.attempt(url, model, &bytes, attempt) {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fail(err) => return Err(err),
                Attempt::Retry { last, wait } => {
                    if attempt >= attempts {
                        return Err(last);
                    }
                    let delay = match wait {
                        Some(d) => d,
                        None => self.policy.backoff(attempt, self.next_random()),
                    };
                    std::thread::sleep(delay);
                    attempt += 1;
                }
            }
        }
    }

    fn attempt(&self, url: &str, model: &str, body: &[u8], attempt: u32) -> Attempt {
        let mut req = self
            .agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("Authorization", key.bearer());
        }
        let mut resp = match req.send(body) {
            Ok(resp) => resp,
            Err(e) => return self.send_failed(url, model, attempt, e),
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| self.policy.retry_after(s));
            let mut text = Vec::new();
            // Best effort: the status is the error; the body only explains it.
            let _ = resp
                .body_mut()
                .as_reader()
                .take(MAX_ERROR_BODY_BYTES)
                .read_to_end(&mut text);
            let err = ModelError::Status {
                provider: self.provider.clone(),
                model: model.to_string(),
                status,
                attempts: attempt,
                body: self.snippet(&text),
            };
            return if status == 429 || status >= 500 {
                Attempt::Retry {
                    last: err,
                    wait: retry_after,
                }
            } else {
                Attempt::Fail(err)
            };
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = match resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
        {
            Ok(bytes) => bytes,
            Err(e) => return Attempt::Fail(self.body_failed(model, e)),
        };
        match serde_json::from_slice(&bytes) {
            Ok(value) => Attempt::Done(value),
            Err(e) => {
                let what = if content_type.contains("html") || starts_like_html(&bytes) {
                    "an HTML page".to_string()
                } else if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                    "an empty body".to_string()
                } else {
                    format!("content-type '{content_type}', {e}")
                };
                Attempt::Fail(ModelError::NotJson {
                    provider: self.provider.clone(),
                    model: model.to_string(),
                    status,
                    what: self.scrub(&what),
                    snippet: self.snippet(&bytes),
                })
            }
        }
    }

    fn send_failed(&self, url: &str, model: &str, attempt: u32, e: ureq::Error) -> Attempt {
        let connect = |reason: String| ModelError::Connect {
            provider: self.provider.clone(),
            model: model.to_string(),
            url: url.to_string(),
            attempts: attempt,
            reason: self.scrub(&reason),
        };
        match e {
            ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
                Attempt::Retry {
                    last: connect(e.to_string()),
                    wait: None,
                }
            }
            ureq::Error::Timeout(_) => Attempt::Fail(self.err_timeout(model)),
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                Attempt::Retry {
                    last: connect(e.to_string()),
                    wait: None,
                }
            }
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => Attempt::Fail(ModelError::Config {
                provider: self.provider.clone(),
                reason: format!("cannot request {url}: {e}"),
            }),
            ureq::Error::Protocol(_) => Attempt::Fail(ModelError::BadResponse {
                provider: self.provider.clone(),
                model: model.to_string(),
                reason: self.scrub(&format!("malformed HTTP response: {e}")),
            }),
            other => Attempt::Fail(connect(other.to_string())),
        }
    }

    fn body_failed(&self, model: &str, e: ureq::Error) -> ModelError {
        match e {
            ureq::Error::BodyExceedsLimit(_) => ModelError::TooLarge {
                provider: self.provider.clone(),
                model: model.to_string(),
                limit_bytes: MAX_RESPONSE_BYTES,
            },
            ureq::Error::Timeout(_) => self.err_timeout(model),
            other => ModelError::Truncated {
                provider: self.provider.clone(),
                model: model.to_string(),
                reason: self.scrub(&other.to_string()),
            },
        }
    }

    fn err_timeout(&self, model: &str) -> ModelError {
        ModelError::Timeout {
            provider: self.provider.clone(),
            model: model.to_string(),
            timeout_ms: self.timeout_ms,
        }
    }

    fn err_request(&self, model: &str, reason: String) -> ModelError {
        ModelError::Request {
            provider: self.provider.clone(),
            model: model.to_string(),
            reason,
        }
    }

    fn scrub(&self, text: &str) -> String {
        match &self.api_key {
            Some(key) => key.scrub(text),
            None => text.to_string(),
        }
    }

    /// The start of a body, on one line, fit to quote in an error.
    fn snippet(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        let mut one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if one_line.chars().count() > MAX_SNIPPET_CHARS {
            one_line = one_line.chars().take(MAX_SNIPPET_CHARS).collect::<String>() + "...";
        }
        if one_line.is_empty() {
            one_line = "(empty body)".into();
        }
        self.scrub(&one_line)
    }

    /// splitmix64 over an atomic counter: enough randomness for jitter, no crate.
    fn next_random(&self) -> u64 {
        let mut z = self
            .jitter
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn starts_like_html(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    bytes[start..].first() == Some(&b'<')
}

/// Whether `url` is something this module can POST to.
pub fn check_base_url(provider: &str, url: &str) -> Result<(), ModelError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
    if ok {
        Ok(())
    } else {
        Err(ModelError::Config {
            provider: provider.to_string(),
            reason: format!("base_url '{url}' must start with http:// or https:// and name a host"),
        })
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 5,
            backoff_base_ms: 100,
            backoff_max_ms: 1000,
            retry_after_max_ms: 2000,
        }
    }

    #[test]
    fn backoff_doubles_and_stays_within_its_jitter_band_and_cap() {
        let p = policy();
        for random in [0u64, 1, 37, 999, u64::MAX] {
            let d1 = p.backoff(1, random).as_millis() as u64;
            let d2 = p.backoff(2, random).as_millis() as u64;
            let d9 = p.backoff(9, random).as_millis() as u64;
            assert!((50..=100).contains(&d1), "{d1}");
            assert!((100..=200).contains(&d2), "{d2}");
            assert!((500..=1000).contains(&d9), "{d9}");
        }
        assert!(p.backoff(40, 7) <= Duration::from_millis(1000));
    }

    #[test]
    fn retry_after_is_capped() {
        assert_eq!(policy().retry_after(1), Duration::from_secs(1));
        assert_eq!(policy().retry_after(3600), Duration::from_millis(2000));
    }

    #[test]
    fn an_api_key_debug_shows_none_of_it_and_scrub_removes_it() {
        let key = ApiKey::new("sk-secret-123".into());
        assert!(!format!("{key:?}").contains("secret"));
        assert_eq!(key.scrub("bad key sk-secret-123!"), "bad key [redacted]!");
    }

    #[test]
    fn base_urls_need_a_scheme_and_a_host() {
        assert!(check_base_url("p", "http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("p", "https://api.example.test/v1").is_ok());
        assert!(check_base_url("p", "127.0.0.1:8080").is_err());
        assert!(check_base_url("p", "http://").is_err());
    }
}
