//! Compiling checked manifests into the [`Plan`]: the decision-type registry,
//! the grant table and the templates, merged with the built-in plan. Reads
//! the files the manifests name (templates, executables, fixtures) and
//! checks them on the way: they exist, stay inside the hive, parse, run.

use super::types::*;
use super::validate::{Diagnostic, Entry, Manifests};
use crate::canon::Digest;
use crate::plan::{AgentKind, AgentSpec, Budget, Grant, HandlerSpec, Plan, TemplateSpec, TypeSpec};
use std::path::{Path, PathBuf};

/// Largest template file, in bytes.
pub const MAX_TEMPLATE_BYTES: u64 = 256 * 1024;
/// Largest tool executable hashed into the plan, in bytes.
pub const MAX_TOOL_BYTES: u64 = 256 * 1024 * 1024;
/// Largest eval fixture or scripted-responses file, in bytes.
pub const MAX_FIXTURE_BYTES: u64 = 16 * 1024 * 1024;

/// Compiles `m` into a plan. Errors name the manifest node that refers to
/// the file at fault.
pub fn compile(hive: &Path, m: &Manifests) -> Result<Plan, Vec<Diagnostic>> {
    let mut plan = Plan::builtin();
    let mut errors = Vec::new();
    let mut taken = super::mcp::taken_types(&plan, m);

    for t in &m.tools {
        let s = &t.m.spec;
        if let Some(spec) = &s.mcp {
            match super::mcp::compile(hive, t, spec, &mut taken) {
                Ok((server, types)) => {
                    for (kind, spec) in types {
                        plan.types.entry(kind).or_insert(spec);
                    }
                    plan.mcp.insert(t.m.metadata.name.clone(), server);
                }
                Err(e) => errors.extend(e),
            }
            continue;
        }
        let handler = match (&s.builtin, &s.command) {
            (Some(name), _) => Some(HandlerSpec::Builtin { name: name.clone() }),
            (None, Some(command)) => match executable(hive, t, command) {
                Ok((command, sha256)) => Some(HandlerSpec::Exec {
                    command,
                    sha256,
                    timeout_ms: s.timeout.ms(),
                    max_output_bytes: s.max_output_bytes,
                    env: s.env.clone(),
                }),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            (None, None) => None, // refused by the schema already
        };
        if let Some(handler) = handler {
            let description = if s.description.is_empty() {
                t.m.metadata.description.clone().unwrap_or_default()
            } else {
                s.description.clone()
            };
            plan.types
                .entry(s.decision_type.clone())
                .or_insert(TypeSpec {
                    handler,
                    payload_schema: s.payload_schema.clone(),
                    result_schema: s.result_schema.clone(),
                    deterministic: s.deterministic,
                    scopes: s.scopes.clone(),
                    description,
                });
        }
    }

    if let Some(limits) = m.nodes.first().and_then(|n| n.m.spec.handoff) {
        let defaults = crate::plan::HandoffLimits::default();
        plan.handoff = crate::plan::HandoffLimits {
            max_depth: limits.max_depth.unwrap_or(defaults.max_depth),
            max_jobs: limits.max_jobs.unwrap_or(defaults.max_jobs),
        };
    }

    for r in &m.roles {
        let s = &r.m.spec;
        let defaults = Budget::default();
        let grant = Grant {
            types: super::mcp::expand_types(&s.types, &plan.types),
            read: s.read.clone(),
            write: s.write.clone(),
            handoff: s.handoff.iter().cloned().collect(),
            hosts: s.hosts.iter().cloned().collect(),
            allow_hard_links: s.allow_hard_links,
            approvals: s
                .approvals
                .iter()
                .map(|a| crate::plan::ApprovalRule {
                    decision_type: a.decision_type.clone(),
                    paths: a.paths.clone(),
                    targets: a.targets.clone(),
                    when: a.when.clone(),
                    approvers: a.approvers.clone(),
                    expires_ms: a.expires.ms(),
                    notify: a.notify.clone(),
                })
                .collect(),
            budget: Budget {
                decisions: s.budget.decisions.unwrap_or(defaults.decisions),
                model_calls: s.budget.model_calls.unwrap_or(defaults.model_calls),
                tokens: s.budget.tokens.unwrap_or(defaults.tokens),
                wall_ms: s
                    .budget
                    .wall_time
                    .as_ref()
                    .map(Duration::ms)
                    .unwrap_or(defaults.wall_ms),
            },
        };
        for why in super::mcp::unreached_hosts(&plan, &grant) {
            errors.push(r.error("/spec/hosts", why));
        }
        plan.roles.entry(r.m.metadata.name.clone()).or_insert(grant);
    }

    for a in &m.agents {
        let s = &a.m.spec;
        let (pointer, path) = match (&s.template, &s.prompt) {
            (Some(t), _) => ("/spec/template", t),
            (None, Some(p)) => ("/spec/prompt", p),
            (None, None) => continue, // refused by the schema already
        };
        let name = match template(hive, a, pointer, path) {
            Ok((name, spec)) => {
                plan.templates.insert(name.clone(), spec);
                name
            }
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let kind = match &s.model {
            None => AgentKind::Template { template: name },
            Some(model) => AgentKind::Model {
                provider: model.provider.clone(),
                model: model.model.clone(),
                template: name,
                temperature: model.temperature,
                seed: model.seed,
                max_tokens: model.max_tokens,
                verdicts: (!s.verdicts.is_empty()).then(|| crate::plan::Verdicts {
                    map: s.verdicts.clone(),
                    examples: s.examples.clone(),
                }),
            },
        };
        let description = s
            .description
            .clone()
            .or_else(|| a.m.metadata.description.clone())
            .unwrap_or_default();
        plan.agents
            .entry(a.m.metadata.name.clone())
            .or_insert(AgentSpec {
                role: s.role.clone(),
                max_steps: s.max_steps,
                kind,
                description,
            });
    }

    if let Some(node) = m.nodes.first() {
        for (name, provider) in &node.m.spec.providers {
            if let Some(file) = &provider.responses {
                let pointer = format!(
                    "/spec/providers/{}/responses",
                    super::yaml::pointer_token(name)
                );
                if let Err(e) = fixture(hive, node, &pointer, file, None) {
                    errors.push(e);
                }
            }
        }
        if let Some(rel) = node
            .m
            .spec
            .data_dir
            .as_deref()
            .and_then(|d| inside_hive(hive, d))
        {
            if !plan.protected.contains(&rel) {
                plan.protected.push(rel);
            }
        }
    }

    for e in &m.evals {
        for (i, case) in e.m.spec.cases.iter().enumerate() {
            if let Some(file) = &case.responses_file {
                if let Err(err) = fixture(
                    hive,
                    e,
                    &format!("/spec/cases/{i}/responses_file"),
                    file,
                    Some("evals"),
                ) {
                    errors.push(err);
                }
            }
        }
    }

    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(errors)
    }
}

/// The hive-relative form of a data dir that lies inside the hive.
fn inside_hive(hive: &Path, data_dir: &str) -> Option<String> {
    let path = Path::new(data_dir);
    if path.is_absolute() {
        let hive = std::fs::canonicalize(hive).ok()?;
        let rel = path.strip_prefix(&hive).ok()?;
        crate::gate::normalize_path(&rel.to_string_lossy()).ok()
    } else {
        crate::gate::normalize_path(data_dir).ok()
    }
}

/// Resolves a hive-relative path the manifests name: normalized, under
/// `dir/`, and — symlinks followed — still inside the hive's `dir/`.
pub fn resolve(
    hive: &Path,
    path: &str,
    dir: &str,
    what: &str,
) -> Result<(String, PathBuf), String> {
    let rel = crate::gate::normalize_path(path)
        .map_err(|why| format!("{what} path '{path}' refused: {why}"))?;
    if !rel.starts_with(&format!("{dir}/")) {
        return Err(format!(
            "{what} '{rel}' must be under {dir}/, which no grant can write"
        ));
    }
    let full = hive.join(&rel);
    let real =
        std::fs::canonicalize(&full).map_err(|_| format!("{what} '{rel}' does not exist"))?;
    let root = std::fs::canonicalize(hive.join(dir))
        .map_err(|_| format!("{what} '{rel}' does not exist"))?;
    if !real.starts_with(&root) {
        return Err(format!(
            "{what} '{rel}' leads outside {dir}/ through a symbolic link"
        ));
    }
    if !real.is_file() {
        return Err(format!("{what} '{rel}' is not a file"));
    }
    Ok((rel, real))
}

fn read_limited(path: &Path, limit: u64, what: &str, rel: &str) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("cannot read {what} '{rel}': {e}"))?;
    if size > limit {
        return Err(format!(
            "{what} '{rel}' is {size} bytes, over the limit of {limit}"
        ));
    }
    crate::fsx::read(path).map_err(|e| format!("cannot read {what} '{rel}': {}", e.source))
}

fn template<T>(
    hive: &Path,
    e: &Entry<T>,
    pointer: &str,
    path: &str,
) -> Result<(String, TemplateSpec), Diagnostic> {
    let fail = |message: String| e.error(pointer, message);
    let (rel, real) = resolve(hive, path, "agents", "template").map_err(fail)?;
    let bytes = read_limited(&real, MAX_TEMPLATE_BYTES, "template", &rel).map_err(fail)?;
    let source = String::from_utf8(bytes)
        .map_err(|_| fail(format!("template '{rel}' is not valid UTF-8")))?;
    crate::agents::check_template(&rel, &source).map_err(fail)?;
    let sha256 = Digest::of_bytes(source.as_bytes());
    Ok((rel, TemplateSpec { source, sha256 }))
}

fn executable(
    hive: &Path,
    e: &Entry<ToolManifest>,
    command: &str,
) -> Result<(String, Digest), Diagnostic> {
    let fail = |message: String| e.error("/spec/command", message);
    let (rel, real) = resolve(hive, command, "tools", "executable").map_err(fail)?;
    if !is_executable(&real) {
        return Err(fail(format!(
            "executable '{rel}' is not executable; run: chmod +x {rel}"
        )));
    }
    let bytes = read_limited(&real, MAX_TOOL_BYTES, "executable", &rel).map_err(fail)?;
    Ok((rel, Digest::of_bytes(&bytes)))
}

fn fixture<T>(
    hive: &Path,
    e: &Entry<T>,
    pointer: &str,
    path: &str,
    dir: Option<&str>,
) -> Result<(), Diagnostic> {
    let fail = |message: String| e.error(pointer, message);
    let rel = match dir {
        Some(dir) => resolve(hive, path, dir, "file").map_err(fail)?.0,
        None => {
            let rel = crate::gate::normalize_path(path)
                .map_err(|why| fail(format!("file path '{path}' refused: {why}")))?;
            if !hive.join(&rel).is_file() {
                return Err(fail(format!("file '{rel}' does not exist")));
            }
            rel
        }
    };
    let size = std::fs::metadata(hive.join(&rel))
        .map(|m| m.len())
        .unwrap_or(0);
    if size > MAX_FIXTURE_BYTES {
        return Err(fail(format!(
            "file '{rel}' is {size} bytes, over the limit of {MAX_FIXTURE_BYTES}"
        )));
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}
