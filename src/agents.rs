//! The agents that need no model: the built-in `advance` agent and template
//! agents, which render their decisions with a minijinja template that has no
//! clock, no I/O and no randomness. Model agents are proposed by
//! [`crate::model`], plugged in through the same [`Proposer`] interface.

use crate::canon::Digest;
use crate::job::{ProposedTurn, Proposer, TurnRequest};
use crate::plan::{AgentKind, Plan};
use serde_json::{json, Value};
use std::sync::Arc;

pub use crate::template::{environment, TEMPLATE_FUEL};
/// Longest rendered template, in bytes.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// Proposes for built-in and template agents, and hands model agents to the
/// model proposer when one is plugged in.
#[derive(Clone, Default)]
pub struct LocalProposer {
    pub models: Option<Arc<dyn Proposer>>,
}

impl Proposer for LocalProposer {
    fn propose(&self, request: &TurnRequest<'_>) -> Result<ProposedTurn, String> {
        match &request.spec.kind {
            AgentKind::Builtin { name } if name == "advance" => Ok(ProposedTurn {
                text: json!([{"type": "advance", "payload": {"events": ["start", "complete"], "note": request.input}}]).to_string(),
                call: None,
            }),
            AgentKind::Builtin { name } => Err(format!("no built-in agent '{name}'")),
            AgentKind::Template { template } => {
                let text = render(request.plan, template, &template_context(request))?;
                // A template is code, not a model: text that is not decisions
                // is its author's bug, reported with what it rendered.
                if let Err(e) = crate::decision::parse_proposals(&text) {
                    return Err(format!("template '{template}' rendered no valid decisions ({e}); it rendered: {}", excerpt(&text)));
                }
                Ok(ProposedTurn { text, call: None })
            }
            AgentKind::Model { provider, .. } => match &self.models {
                Some(models) => models.propose(request),
                None => Err(format!("agent '{}' needs model provider '{provider}', and no model client is available here", request.agent)),
            },
        }
    }
}

/// What a template sees: the job input, the agent, its grants, the turn, and
/// the results of the earlier turns.
pub fn template_context(request: &TurnRequest<'_>) -> Value {
    let grant = request.plan.grant_of(request.agent.as_str());
    json!({
        "input": request.input,
        "agent": request.agent,
        "job": request.state.job,
        "turn": request.turn,
        "max_steps": request.spec.max_steps,
        "results": request.state.results,
        "grants": {
            "types": grant.map(|g| g.types.iter().collect::<Vec<_>>()).unwrap_or_default(),
            "read": grant.map(|g| g.read.clone()).unwrap_or_default(),
            "write": grant.map(|g| g.write.clone()).unwrap_or_default(),
            "handoff": grant.map(|g| g.handoff.iter().collect::<Vec<_>>()).unwrap_or_default(),
        },
    })
}

/// Checks that a template parses; the error names the template and the line.
pub fn check_template(name: &str, source: &str) -> Result<(), String> {
    let mut env = environment();
    env.add_template_owned(name.to_string(), source.to_string())
        .map_err(|e| template_error(name, &e))
}

fn template_error(name: &str, e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!(
            "template '{name}' line {line}: {}",
            e.detail().unwrap_or(&e.kind().to_string())
        ),
        None => format!("template '{name}': {e}"),
    }
}

/// Renders a plan template with `context`.
pub fn render(plan: &Plan, name: &str, context: &Value) -> Result<String, String> {
    let spec = plan
        .templates
        .get(name)
        .ok_or_else(|| format!("template '{name}' is not in the plan"))?;
    let mut env = environment();
    env.add_template_owned(name.to_string(), spec.source.clone())
        .map_err(|e| template_error(name, &e))?;
    let template = env
        .get_template(name)
        .map_err(|e| template_error(name, &e))?;
    let text = template
        .render(minijinja::Value::from(minijinja::value::Serde(context)))
        .map_err(|e| template_error(name, &e))?;
    if text.len() > MAX_RENDERED_BYTES {
        return Err(format!(
            "template '{name}' rendered {} bytes, over the limit of {MAX_RENDERED_BYTES}",
            text.len()
        ));
    }
    Ok(text)
}

/// The digest of a template's inputs, as `model` records hold it.
pub fn inputs_digest(context: &Value) -> Digest {
    Digest::of_json(context).unwrap_or(Digest::ZERO)
}

/// Most characters of rendered text quoted in an error.
const EXCERPT_CHARS: usize = 400;

fn excerpt(text: &str) -> String {
    crate::decision::excerpt(text, EXCERPT_CHARS)
}
