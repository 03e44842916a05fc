//! Model agents: render the agent's prompt template, derive the JSON Schema of
//! the decisions its role grants, ask the provider, and hand the raw text back
//! with a record of the call. The deterministic plane parses and gates the
//! text like any other proposal; it never sees this module.

use super::{client_for, ChatRequest, Message, ModelClient, ProviderConfig};
use crate::agents;
use crate::job::{ModelCall, ProposedTurn, Proposer, TurnRequest};
use crate::plan::{AgentKind, Plan};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The system message every model agent gets before its rendered prompt.
pub const SYSTEM_PROMPT: &str = "You are an agent in a Jaros hive. You cannot act; you may only propose decisions, which a deterministic runtime checks against your role and then executes. Answer with one JSON object {\"decisions\": [{\"type\": ..., \"payload\": ...}]} and nothing else. Use only the decision types listed in the schema.";

/// Proposes for model agents through one client per provider, built on first
/// use (so commands that never call a model never build a client).
pub struct ModelProposer {
    providers: HashMap<String, ProviderConfig>,
    clients: Mutex<HashMap<String, Arc<dyn ModelClient>>>,
}

impl ModelProposer {
    pub fn new(providers: HashMap<String, ProviderConfig>) -> ModelProposer {
        ModelProposer {
            providers,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Uses `client` for `provider` (tests and evals plug in stand-ins).
    pub fn with_client(self, provider: &str, client: Arc<dyn ModelClient>) -> ModelProposer {
        self.clients
            .lock()
            .expect("clients lock")
            .insert(provider.to_string(), client);
        self
    }

    fn client(&self, provider: &str) -> Result<Arc<dyn ModelClient>, String> {
        let mut clients = self.clients.lock().expect("clients lock");
        if let Some(c) = clients.get(provider) {
            return Ok(c.clone());
        }
        let cfg = self
            .providers
            .get(provider)
            .ok_or_else(|| format!("provider '{provider}' is not defined in the node manifest"))?;
        let client: Arc<dyn ModelClient> = Arc::from(client_for(cfg).map_err(|e| e.to_string())?);
        clients.insert(provider.to_string(), client.clone());
        Ok(client)
    }
}

/// The most `advance` events a model may propose in one decision: enough for
/// `[start, complete]`; a small model otherwise fills the gate's 16 with
/// repeats. The gate still accepts up to its own bound.
pub const MODEL_ADVANCE_EVENTS: u64 = 2;
/// The longest `advance` note a model may write, in characters.
pub const MODEL_NOTE_CHARS: u64 = 200;
/// The most decisions one answer may hold when the role's budget allows more.
pub const MODEL_MAX_DECISIONS: u64 = 8;

/// The JSON Schema a model's answer must follow: `{"decisions": [...]}` whose
/// items are one of the `{type, payload}` shapes the agent's role grants.
///
/// The schema is the gate's, narrowed so that constrained decoding leaves a
/// small model little room to ramble: between one decision and the role's
/// decision budget (at most [`MODEL_MAX_DECISIONS`]), hand-off targets limited
/// to the granted ones, `advance` events bounded by [`MODEL_ADVANCE_EVENTS`]
/// and its note a bounded string. Every narrowing only removes answers, so an
/// answer that follows it also follows the gate's schema.
pub fn decisions_schema(plan: &Plan, agent: &str) -> Value {
    let mut shapes = Vec::new();
    let mut most = MODEL_MAX_DECISIONS;
    if let Some(grant) = plan.grant_of(agent) {
        most = most.min(u64::from(grant.budget.decisions.max(1)));
        for kind in &grant.types {
            if let Some(spec) = plan.types.get(kind) {
                let mut payload = spec.payload_schema.clone();
                // Narrow hand-off targets to the granted ones, so an answer that
                // follows the schema also passes the gate's scope check.
                for scope in spec
                    .scopes
                    .iter()
                    .filter(|s| s.kind == crate::plan::ScopeKind::Handoff)
                {
                    let field = scope.pointer.trim_start_matches('/');
                    if let Some(prop) = payload.pointer_mut(&format!("/properties/{field}")) {
                        prop["enum"] = json!(grant.handoff.iter().collect::<Vec<_>>());
                    }
                }
                if kind == "advance" {
                    narrow_advance(&mut payload);
                }
                shapes.push(json!({
                    "type": "object",
                    "properties": {"type": {"const": kind}, "payload": payload},
                    "required": ["type", "payload"],
                    "additionalProperties": false
                }));
            }
        }
    }
    json!({
        "type": "object",
        "properties": {"decisions": {
            "type": "array",
            "items": {"anyOf": shapes},
            "minItems": 1,
            "maxItems": most
        }},
        "required": ["decisions"],
        "additionalProperties": false
    })
}

/// Bounds the built-in `advance` payload for a model: few distinct events, a
/// short string note. Left alone when a hive's `advance` has another shape.
fn narrow_advance(payload: &mut Value) {
    if let Some(events) = payload.pointer_mut("/properties/events") {
        if events.get("type") == Some(&json!("array")) {
            events["maxItems"] = json!(MODEL_ADVANCE_EVENTS);
            events["uniqueItems"] = json!(true);
        }
    }
    if let Some(note) = payload.pointer_mut("/properties/note") {
        if note == &json!({}) {
            *note = json!({"type": "string", "maxLength": MODEL_NOTE_CHARS});
        }
    }
}

/// A verdict agent's worked examples as earlier turns of the conversation:
/// for each, its input rendered by the agent's prompt (as a job's own input
/// is, with no results yet) and its verdict as the answer. No system
/// message comes first: the examples show the answer's shape, the schema
/// enforces it, and SmolLM2-135M chose worse under every system message
/// tried (docs/evals.md has the measurements).
fn verdict_examples(
    plan: &Plan,
    template: &str,
    context: &Value,
    verdicts: &crate::plan::Verdicts,
) -> Result<Vec<Message>, String> {
    let mut messages = Vec::with_capacity(2 * verdicts.examples.len() + 1);
    for (i, example) in verdicts.examples.iter().enumerate() {
        let mut shown = context.clone();
        shown["input"] = example.input.clone();
        shown["results"] = json!([]);
        let prompt = agents::render(plan, template, &shown)
            .map_err(|e| format!("example {i} of the agent's verdicts: {e}"))?;
        messages.push(Message::user(prompt));
        messages.push(Message::assistant(crate::verdict::answer_text(
            &example.verdict,
        )));
    }
    Ok(messages)
}

/// Below this many tokens left in a job's budget, a call without a
/// `max_tokens` of its own is sent the budget's remainder as its limit;
/// above it none is sent (a server may refuse a limit past its model's).
pub const CLAMP_UNLIMITED_BELOW_TOKENS: u64 = 4096;

/// The `max_tokens` a model call is sent: the agent's own, never more than
/// the job's token budget has `left`, so one call cannot overshoot the
/// budget by its answer (the gate refuses the turn's decisions if the
/// prompt did).
pub fn output_limit(agent_max: Option<u32>, left: u64) -> Option<u32> {
    let left = u32::try_from(left.max(1)).unwrap_or(u32::MAX);
    match agent_max {
        Some(max) => Some(max.min(left)),
        None if u64::from(left) < CLAMP_UNLIMITED_BELOW_TOKENS => Some(left),
        None => None,
    }
}

impl Proposer for ModelProposer {
    fn propose(&self, request: &TurnRequest<'_>) -> Result<ProposedTurn, String> {
        let AgentKind::Model {
            provider,
            model,
            template,
            temperature,
            seed,
            max_tokens,
            verdicts,
        } = &request.spec.kind
        else {
            return Err(format!("agent '{}' is not a model agent", request.agent));
        };
        let left = request
            .plan
            .grant_of(request.agent.as_str())
            .map_or(u64::MAX, |g| {
                g.budget.tokens.saturating_sub(request.state.tokens)
            });
        let max_tokens = &output_limit(*max_tokens, left);
        let context = agents::template_context(request);
        let prompt = agents::render(request.plan, template, &context)?;
        let (messages, schema) = match verdicts {
            None => (
                vec![Message::system(SYSTEM_PROMPT), Message::user(prompt)],
                decisions_schema(request.plan, request.agent.as_str()),
            ),
            Some(verdicts) => {
                let mut messages = verdict_examples(request.plan, template, &context, verdicts)?;
                messages.push(Message::user(prompt));
                (messages, crate::verdict::schema(verdicts))
            }
        };
        let chat = ChatRequest {
            model: model.clone(),
            messages,
            temperature: *temperature,
            seed: *seed,
            max_tokens: *max_tokens,
            schema: Some(schema.clone()),
        };
        let template_digest = request
            .plan
            .templates
            .get(template)
            .map(|t| t.sha256)
            .unwrap_or(crate::canon::Digest::ZERO);
        // What the model was sent, exactly: messages and schema.
        let sent = json!({"messages": chat.messages, "schema": schema});
        let params = json!({"temperature": temperature, "seed": seed, "max_tokens": max_tokens});
        let started = Instant::now();
        let answer = self
            .client(provider)
            .and_then(|c| c.chat(&chat).map_err(|e| e.to_string()));
        let duration_ms = started.elapsed().as_millis() as u64;
        let (text, tokens_in, tokens_out, error) = match answer {
            Ok(r) => (r.text, r.tokens_in, r.tokens_out, None),
            Err(e) => (String::new(), 0, 0, Some(e)),
        };
        Ok(ProposedTurn {
            text: text.clone(),
            call: Some(ModelCall {
                provider: provider.clone(),
                model: model.clone(),
                params,
                template: template_digest,
                inputs: agents::inputs_digest(&context),
                prompt: crate::canon::to_string(&sent).unwrap_or_default(),
                response: text,
                tokens_in,
                tokens_out,
                duration_ms,
                error,
            }),
        })
    }
}

#[cfg(test)]
mod clamp {
    use super::*;

    #[test]
    fn a_call_never_asks_for_more_tokens_than_the_budget_has_left() {
        assert_eq!(output_limit(Some(500), 120), Some(120));
        assert_eq!(output_limit(Some(100), 120), Some(100));
        assert_eq!(output_limit(None, 120), Some(120));
        assert_eq!(
            output_limit(None, 0),
            Some(1),
            "a call asks for one at least"
        );
        assert_eq!(output_limit(None, 1_000_000), None);
        assert_eq!(output_limit(Some(64), u64::MAX), Some(64));
    }
}

#[cfg(test)]
mod shaping {
    use super::*;

    #[test]
    fn the_schema_sent_to_a_model_bounds_its_arrays_and_stays_within_the_gates() {
        let mut plan = Plan::builtin();
        plan.roles
            .get_mut("advance")
            .expect("builtin role")
            .budget
            .decisions = 1;
        let schema = decisions_schema(&plan, "advance");
        let decisions = &schema["properties"]["decisions"];
        assert_eq!(decisions["minItems"], 1);
        assert_eq!(decisions["maxItems"], 1, "the role's decision budget");
        let payload = &decisions["items"]["anyOf"][0]["properties"]["payload"];
        assert_eq!(
            payload["properties"]["events"]["maxItems"],
            MODEL_ADVANCE_EVENTS
        );
        assert_eq!(payload["properties"]["note"]["type"], "string");
        // Narrower than the gate's: every answer it allows, the gate's allows.
        let gate = jsonschema::validator_for(&crate::plan::advance_payload_schema())
            .expect("the gate's schema compiles");
        let sent = jsonschema::validator_for(payload).expect("the sent schema compiles");
        let ok = json!({"events": ["start", "complete"], "note": "done"});
        let repeats = json!({"events": vec!["fail"; 16]});
        assert!(sent.is_valid(&ok) && gate.is_valid(&ok));
        assert!(gate.is_valid(&repeats) && !sent.is_valid(&repeats));
        plan.roles
            .get_mut("advance")
            .expect("builtin role")
            .budget
            .decisions = 1000;
        let schema = decisions_schema(&plan, "advance");
        assert_eq!(
            schema["properties"]["decisions"]["maxItems"],
            MODEL_MAX_DECISIONS
        );
    }
}
