//! The `scripted` provider: canned responses from a file, handed out in order.
//!
//! For evals and tests. Calls take the next response whatever the request says,
//! from any thread; once all are used, every call is [`ModelError::Exhausted`].
//!
//! The file (`responses` in the provider's manifest entry) is UTF-8, at most
//! [`MAX_SCRIPT_BYTES`], in one of two forms:
//!
//! - a JSON array, when its first non-blank character is `[`:
//!   `["{\"decisions\": []}", "not json at all"]`
//! - JSON Lines otherwise: one JSON value per line, blank lines skipped:
//!   ```text
//!   {"decisions": [{"type": "note", "payload": {"text": "hi"}}]}
//!   "a plain-text answer"
//!   ```
//!
//! - a JSON object with `rules`, when its first non-blank character is `{`:
//!   each call answers with the `response` of the first rule whose `when` text
//!   occurs in the request's last user message, else with `otherwise` (an
//!   error when absent). Answers then depend on the prompt, not on the order
//!   of calls, so concurrent jobs get the same answers in any order:
//!   ```text
//!   {"rules": [{"when": "SPAM", "response": {"decisions": []}}], "otherwise": "…"}
//!   ```
//!
//! In every form a JSON string is the response's text as it decodes, and any
//! other JSON value (an object, say) is the response's text as compact JSON. So a
//! line with a decisions object is answered as that object, and a response that
//! must not be valid JSON is written as a string.
//!
//! Token counts are whitespace-separated words, as for `echo`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use super::{
    word_count, words_in, ChatRequest, ChatResponse, ModelClient, ModelError, ProviderConfig,
};

/// The largest responses file read.
pub const MAX_SCRIPT_BYTES: u64 = 16 * 1024 * 1024;

/// `(when, response)` pairs and the fallback response.
pub type Rules = (Vec<(String, String)>, Option<String>);

#[derive(Debug)]
pub struct ScriptedClient {
    provider: String,
    responses: Vec<String>,
    /// `(when, response)` rules and the fallback, for the `rules` form.
    rules: Option<Rules>,
    next: AtomicUsize,
}

impl ScriptedClient {
    pub fn new(provider: &str, responses: Vec<String>) -> Self {
        ScriptedClient {
            provider: provider.to_string(),
            responses,
            rules: None,
            next: AtomicUsize::new(0),
        }
    }

    /// A client answering by the prompt's content (the `rules` form).
    pub fn with_rules(
        provider: &str,
        rules: Vec<(String, String)>,
        otherwise: Option<String>,
    ) -> Self {
        ScriptedClient {
            rules: Some((rules, otherwise)),
            ..Self::new(provider, Vec::new())
        }
    }

    /// Reads `cfg.responses`; a missing setting or a bad file is a config error.
    pub fn from_config(cfg: &ProviderConfig) -> Result<Self, ModelError> {
        let bad = |reason: String| ModelError::Config {
            provider: cfg.name.clone(),
            reason,
        };
        let path = cfg.responses.as_deref().ok_or_else(|| {
            bad("a scripted provider needs `responses`, a file of responses".into())
        })?;
        let text = read_text(path).map_err(bad)?;
        if text.trim_start().starts_with('{') {
            let (rules, otherwise) =
                parse_rules(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
            return Ok(Self::with_rules(&cfg.name, rules, otherwise));
        }
        let responses = parse_script(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        Ok(Self::new(&cfg.name, responses))
    }

    /// How many responses have been handed out (or asked for past the end).
    pub fn calls(&self) -> usize {
        self.next.load(Ordering::SeqCst)
    }
}

/// Parses the `rules` form (see the module doc).
pub fn parse_rules(text: &str) -> Result<Rules, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        when: String,
        response: Value,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rules {
        rules: Vec<Rule>,
        #[serde(default)]
        otherwise: Option<Value>,
    }
    let parsed: Rules = serde_json::from_str(text).map_err(|e| format!("not a rules object ({e}); expected {{\"rules\": [{{\"when\": ..., \"response\": ...}}], \"otherwise\": ...}}"))?;
    let rules = parsed
        .rules
        .into_iter()
        .map(|r| (r.when, response_text(r.response)))
        .collect();
    Ok((rules, parsed.otherwise.map(response_text)))
}

fn read_text(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.len() > MAX_SCRIPT_BYTES {
        return Err(format!(
            "{shown} is {} bytes, at most {MAX_SCRIPT_BYTES} are read",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))
}

/// Parses a responses file (see the module doc); errors name the file and line.
pub fn read_script(path: &Path) -> Result<Vec<String>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.len() > MAX_SCRIPT_BYTES {
        return Err(format!(
            "{shown} is {} bytes, at most {MAX_SCRIPT_BYTES} are read",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    parse_script(&text).map_err(|e| format!("{shown}: {e}"))
}

/// Parses the text of a responses file (see the module doc).
pub fn parse_script(text: &str) -> Result<Vec<String>, String> {
    if text.trim_start().starts_with('[') {
        let items: Vec<Value> = serde_json::from_str(text)
            .map_err(|e| format!("not a JSON array of responses: {e}"))?;
        return Ok(items.into_iter().map(response_text).collect());
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| {
            format!(
                "line {}: not a JSON value ({e}); write plain text as a JSON string",
                i + 1
            )
        })?;
        out.push(response_text(value));
    }
    Ok(out)
}

fn response_text(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

impl ModelClient for ScriptedClient {
    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ModelError> {
        if let Some((rules, otherwise)) = &self.rules {
            self.next.fetch_add(1, Ordering::SeqCst);
            let prompt = req
                .messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map_or("", |m| m.content.as_str());
            let text = rules
                .iter()
                .find(|(when, _)| prompt.contains(when.as_str()))
                .map(|(_, response)| response)
                .or(otherwise.as_ref())
                .ok_or_else(|| ModelError::BadResponse {
                    provider: self.provider.clone(),
                    model: req.model.clone(),
                    reason: "no scripted rule matches the prompt and there is no `otherwise`"
                        .into(),
                })?;
            return Ok(ChatResponse {
                text: text.clone(),
                tokens_in: words_in(&req.messages),
                tokens_out: word_count(text),
            });
        }
        let i = self.next.fetch_add(1, Ordering::SeqCst);
        let text = self.responses.get(i).ok_or_else(|| ModelError::Exhausted {
            provider: self.provider.clone(),
            model: req.model.clone(),
            count: self.responses.len(),
        })?;
        Ok(ChatResponse {
            text: text.clone(),
            tokens_in: words_in(&req.messages),
            tokens_out: word_count(text),
        })
    }

    fn provider(&self) -> &str {
        &self.provider
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::model::{client_for, Message, ProviderKind};
    use std::sync::Arc;

    fn req() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![Message::user("go")],
            temperature: None,
            seed: None,
            max_tokens: None,
            schema: None,
        }
    }

    #[test]
    fn both_file_forms_give_strings_verbatim_and_other_values_as_compact_json() {
        let array = parse_script(r#" ["a", {"decisions": []}, "not json"] "#).unwrap();
        let lines = parse_script("\"a\"\n\n{\"decisions\": []}\n\"not json\"\n").unwrap();
        assert_eq!(array, vec!["a", r#"{"decisions":[]}"#, "not json"]);
        assert_eq!(lines, array);
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = parse_script("\"ok\"\nplain text\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn responses_come_in_order_then_exhaustion_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("responses.jsonl");
        std::fs::write(&file, "\"one\"\n\"two\"\n").unwrap();
        let mut cfg = ProviderConfig::new("s", ProviderKind::Scripted);
        cfg.responses = Some(file);
        let client = client_for(&cfg).unwrap();
        assert_eq!(client.chat(&req()).unwrap().text, "one");
        assert_eq!(client.chat(&req()).unwrap().text, "two");
        let err = client.chat(&req()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "provider 's' (model 'm'): scripted responses exhausted after 2"
        );
    }

    #[test]
    fn concurrent_callers_each_get_a_distinct_response() {
        let n = 64;
        let client = Arc::new(ScriptedClient::new(
            "s",
            (0..n).map(|i| i.to_string()).collect(),
        ));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = Arc::clone(&client);
                std::thread::spawn(move || {
                    (0..n / 4)
                        .map(|_| c.chat(&req()).unwrap().text)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<usize> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .map(|t| t.parse().unwrap())
            .collect();
        all.sort();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
        assert!(client.chat(&req()).is_err());
    }

    #[test]
    fn a_scripted_provider_without_a_file_is_a_config_error() {
        let cfg = ProviderConfig::new("s", ProviderKind::Scripted);
        let err = client_for(&cfg).err().unwrap();
        assert!(matches!(err, ModelError::Config { .. }), "{err}");
    }
}
