//! Evals: declarative agent tests. An `Eval` manifest holds cases (an agent,
//! an input, scripted model responses, expectations); each case runs as one
//! job through the real gate, log and executor in a temporary data dir of its
//! own, and its recorded records are checked against the expectations.
//!
//! Owns loading cases from eval files ([`load_file`]), running them on a small
//! thread pool ([`runner`]), the checks ([`expect`]), the JUnit report
//! ([`junit`]) and golden cases written from a recorded job ([`golden`]). It
//! does not own the gate, the executor or the model clients: it plugs the
//! same ones the node uses, with a scripted client standing in for the model
//! (or, in live mode, the hive's real providers).

pub mod expect;
pub mod golden;
pub mod junit;
pub mod runner;

use crate::decision::{AgentName, JobId};
use crate::manifest::types::{EvalAnswer, EvalManifest, EvalVerdict, Expect};
use crate::manifest::validate::{self, AnyManifest, Diagnostic, Entry};
use crate::manifest::yaml;
use crate::manifest::Kind;
use crate::plan::{AgentKind, Plan};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Most eval files one run reads.
pub const MAX_EVAL_FILES: usize = 4096;
/// Deepest directory nesting searched for eval files.
pub const MAX_EVAL_DIR_DEPTH: usize = 16;

/// One case, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The Eval manifest's `metadata.name`.
    pub suite: String,
    pub name: String,
    /// Where the case is, as `file:line:col`.
    pub place: String,
    pub agent: AgentName,
    pub input: Value,
    /// The scripted model responses (inline or from `responses_file`).
    pub responses: Option<Vec<String>>,
    /// The verdicts a person gives on decisions that wait, in order.
    pub verdicts: Vec<EvalVerdict>,
    pub expect: Expect,
}

impl Case {
    /// The id of the job a case runs as: the case's name when it is a valid
    /// job id (so a golden case replays its recorded job's id exactly), else
    /// the name with every other character made `-`.
    pub fn job_id(&self) -> JobId {
        if let Ok(id) = JobId::new(self.name.clone()) {
            return id;
        }
        let mut text: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .take(crate::decision::MAX_NAME_BYTES - 5)
            .collect();
        text.insert_str(0, "eval-");
        JobId::new(text).unwrap_or_else(|_| JobId::new("eval-case").expect("a valid job id"))
    }
}

/// Where an eval file is on disk and how messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalFile {
    pub path: PathBuf,
    pub shown: String,
}

/// The eval files under `path` (a file, or a directory searched recursively
/// for `*.yaml` and `*.yml`, hidden entries skipped), sorted.
pub fn eval_files(path: &Path, shown: &str) -> Result<Vec<EvalFile>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if meta.is_file() {
        return Ok(vec![EvalFile {
            path: path.to_path_buf(),
            shown: shown.to_string(),
        }]);
    }
    let mut out = Vec::new();
    walk(path, shown.trim_end_matches('/'), 0, &mut out)?;
    out.sort_by(|a, b| a.shown.cmp(&b.shown));
    Ok(out)
}

fn walk(dir: &Path, shown: &str, depth: usize, out: &mut Vec<EvalFile>) -> Result<(), String> {
    if depth > MAX_EVAL_DIR_DEPTH {
        return Err(format!(
            "{shown}: directories nest deeper than {MAX_EVAL_DIR_DEPTH} levels"
        ));
    }
    for path in crate::fsx::list_dir(dir).map_err(|e| e.to_string())? {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let child = format!("{shown}/{name}");
        let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{child}: {e}"))?;
        if meta.is_dir() {
            walk(&path, &child, depth + 1, out)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            if out.len() >= MAX_EVAL_FILES {
                return Err(format!("more than {MAX_EVAL_FILES} eval files"));
            }
            out.push(EvalFile { path, shown: child });
        }
    }
    Ok(())
}

/// What a run needs to know to check that a case can run.
pub struct LoadOptions<'a> {
    pub hive: &'a Path,
    pub plan: &'a Plan,
    /// Provider names whose kind needs no network (`echo`, `scripted`).
    pub offline_providers: &'a [String],
    /// Live mode: model agents ask their real provider; responses are unused.
    pub live: bool,
}

/// Reads the Eval documents of one file (documents of other kinds are skipped)
/// into cases, checking each against the plan. Errors are `file:line:col`.
pub fn load_file(file: &EvalFile, opts: &LoadOptions<'_>) -> Result<Vec<Case>, Vec<Diagnostic>> {
    let at_start = |message: String| vec![Diagnostic::new(&file.shown, yaml::Pos::START, message)];
    let bytes = read_capped(&file.path).map_err(at_start)?;
    let docs =
        yaml::parse(&bytes).map_err(|e| vec![Diagnostic::new(&file.shown, e.pos, e.message)])?;
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for doc in docs {
        if validate::document_kind(&doc.value).is_ok_and(|k| k != Kind::Eval) {
            continue;
        }
        match validate::Schemas::shared().check(&doc) {
            Ok(AnyManifest::Eval(m)) => {
                let entry = Entry {
                    file: file.shown.clone(),
                    doc,
                    m,
                };
                match cases_of(&entry, opts) {
                    Ok(more) => cases.extend(more),
                    Err(more) => errors.extend(more),
                }
            }
            Ok(_) => {}
            Err(errs) => errors.extend(
                errs.into_iter()
                    .map(|(pos, msg)| Diagnostic::new(&file.shown, pos, msg)),
            ),
        }
    }
    if errors.is_empty() {
        Ok(cases)
    } else {
        errors.sort();
        Err(errors)
    }
}

fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if size > yaml::MAX_MANIFEST_BYTES as u64 {
        return Err(format!(
            "the file is {size} bytes, over the limit of {} bytes for a manifest",
            yaml::MAX_MANIFEST_BYTES
        ));
    }
    crate::fsx::read(path).map_err(|e| e.to_string())
}

fn cases_of(e: &Entry<EvalManifest>, opts: &LoadOptions<'_>) -> Result<Vec<Case>, Vec<Diagnostic>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, c) in e.m.spec.cases.iter().enumerate() {
        let at = |field: &str| format!("/spec/cases/{i}{field}");
        if let Some(first) = names.insert(c.name.as_str(), i) {
            errors.push(e.error(
                &at("/name"),
                format!(
                    "duplicate case name '{}': case {first} has it already",
                    c.name
                ),
            ));
        }
        if !expect::has_expectations(&c.expect) {
            let pointer = if e.doc.value.pointer(&at("/expect")).is_some() {
                at("/expect")
            } else {
                at("")
            };
            errors.push(e.error(
                &pointer,
                format!(
                    "case '{}' has no expectation, so it could never fail; add at least one of \
                     decisions, types, payloads, gate, reason, results, state or deterministic: true",
                    c.name
                ),
            ));
        }
        let Some(spec) = opts.plan.agents.get(&c.agent) else {
            let known: Vec<&str> = opts.plan.agents.keys().map(String::as_str).collect();
            errors.push(e.error(
                &at("/agent"),
                format!(
                    "agent '{}' is not in the hive's plan; its agents are: {}",
                    c.agent,
                    known.join(", ")
                ),
            ));
            continue;
        };
        let agent = match AgentName::new(c.agent.clone()) {
            Ok(a) => a,
            Err(err) => {
                errors.push(e.error(&at("/agent"), err.to_string()));
                continue;
            }
        };
        let mut responses = c.responses.clone();
        if let Some(file) = &c.responses_file {
            match read_responses(opts.hive, file) {
                Ok(r) => responses = Some(r),
                Err(msg) => errors.push(e.error(&at("/responses_file"), msg)),
            }
        }
        match &spec.kind {
            AgentKind::Model { provider, .. } => {
                let offline = opts.offline_providers.iter().any(|p| p == provider);
                if responses.is_none() && !offline && !opts.live {
                    errors.push(e.error(
                        &at(""),
                        format!(
                            "case '{}': agent '{}' asks provider '{provider}', which needs a \
                             network; give the case `responses` or `responses_file`, or run \
                             `jaros eval --live`",
                            c.name, c.agent
                        ),
                    ));
                }
            }
            _ if responses.is_some() => {
                let field = if c.responses.is_some() {
                    "/responses"
                } else {
                    "/responses_file"
                };
                errors.push(e.error(
                    &at(field),
                    format!(
                        "agent '{}' is not a model agent, so it never uses scripted responses; \
                         remove them",
                        c.agent
                    ),
                ));
            }
            _ => {}
        }
        for (j, v) in c.verdicts.iter().enumerate() {
            let at_v = |field: &str| at(&format!("/verdicts/{j}{field}"));
            if !crate::approval::valid_name(&v.by) {
                errors.push(e.error(
                    &at_v("/by"),
                    format!("'{}' is not a name an approval rule can list", v.by),
                ));
            }
            match v.verdict {
                EvalAnswer::Deny if v.reason.as_deref().is_none_or(|r| r.trim().is_empty()) => {
                    errors.push(e.error(
                        &at_v(""),
                        "a denial needs a `reason` (the agent and the log see it)".to_string(),
                    ))
                }
                EvalAnswer::Approve if v.reason.is_some() => errors.push(e.error(
                    &at_v("/reason"),
                    "an approval takes a `note`, not a `reason`".to_string(),
                )),
                EvalAnswer::Deny if v.note.is_some() => errors.push(e.error(
                    &at_v("/note"),
                    "a denial takes a `reason`, not a `note`".to_string(),
                )),
                _ => {}
            }
        }
        out.push(Case {
            suite: e.m.metadata.name.clone(),
            name: c.name.clone(),
            place: e.place(&at("")),
            agent,
            input: c.input.clone(),
            responses,
            verdicts: c.verdicts.clone(),
            expect: c.expect.clone(),
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Reads a responses file under the hive's `evals/`.
fn read_responses(hive: &Path, file: &str) -> Result<Vec<String>, String> {
    let (_, real) = crate::manifest::compile::resolve(hive, file, "evals", "responses file")?;
    crate::model::scripted::read_script(&real)
}

/// The failed checks of a case as people read them: for each, its name, what
/// was expected, what happened, and where JSON values first differ.
pub fn failure_text(r: &runner::CaseReport) -> String {
    let mut out = String::new();
    if r.runs > 1 {
        out.push_str(&format!(
            "  passed {}/{} runs; the first failed run:\n",
            r.passed_runs, r.runs
        ));
    }
    for f in &r.failures {
        out.push_str(&format!(
            "  {}\n    expected: {}\n    actual:   {}\n",
            f.check, f.expected, f.actual
        ));
        if let Some(detail) = &f.detail {
            out.push_str(&format!("    {detail}\n"));
        }
    }
    out
}
