//! The `echo` provider: answers with the last user message, verbatim.
//!
//! For demos and tests: a prompt template that renders valid decisions JSON as
//! its last user message drives an agent with no model at all. Token counts are
//! whitespace-separated words, so budgets can be exercised.

use super::{word_count, words_in, ChatRequest, ChatResponse, ModelClient, ModelError};

#[derive(Debug, Clone)]
pub struct EchoClient {
    provider: String,
}

impl EchoClient {
    pub fn new(provider: &str) -> Self {
        EchoClient {
            provider: provider.to_string(),
        }
    }
}

impl ModelClient for EchoClient {
    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let last_user = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .ok_or_else(|| ModelError::Request {
                provider: self.provider.clone(),
                model: req.model.clone(),
                reason: "echo needs at least one user message to echo".into(),
            })?;
        Ok(ChatResponse {
            text: last_user.content.clone(),
            tokens_in: words_in(&req.messages),
            tokens_out: word_count(&last_user.content),
        })
    }

    fn provider(&self) -> &str {
        &self.provider
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::model::Message;

    fn req(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages,
            temperature: None,
            seed: None,
            max_tokens: None,
            schema: None,
        }
    }

    #[test]
    fn echo_returns_the_last_user_message_verbatim() {
        let r = req(vec![
            Message::system("sys"),
            Message::user("first"),
            Message::assistant("reply"),
            Message::user("  {\"decisions\": []}\n"),
        ]);
        let out = EchoClient::new("e").chat(&r).unwrap();
        assert_eq!(out.text, "  {\"decisions\": []}\n");
        assert_eq!((out.tokens_in, out.tokens_out), (5, 2));
    }

    #[test]
    fn echo_without_a_user_message_is_an_error() {
        let err = EchoClient::new("e")
            .chat(&req(vec![Message::system("s")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("provider 'e' (model 'm')"),
            "{err}"
        );
    }
}
