//! `jaros eval`: run eval cases, or write a golden case from a recorded job.

use super::{out, out_json, CliError, CliResult, Ctx};
use crate::eval::runner::{self, CaseReport, Env};
use crate::eval::{self, Case, EvalFile, LoadOptions};
use crate::exit::Outcome;
use crate::model::ProviderKind;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Run eval cases: each case runs its agent on its input as one job, offline
/// (scripted model responses), through the real gate, executor and handlers,
/// in a temporary data dir of its own, and checks what the job did.
///
/// Prints `[PASS] name` or `[FAIL] name` and each failed check, then
/// `N/M eval cases passed`. Exit 0 when all pass, 1 when any fails, 2 when
/// there are no cases or a file is invalid (named as file:line:col).
///
/// Examples:
///   jaros eval                         the hive's manifests/evals
///   jaros eval manifests/evals --junit eval.xml
///   jaros eval --from-log JOB --out manifests/evals/golden.yaml
///   jaros eval --live --runs 5 --min-pass-rate 0.8 --provider-url local=http://127.0.0.1:8080
///   jaros eval --live --runs 20 --model-url http://127.0.0.1:8080 evals/triage.yaml
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Eval manifest files or directories (default: the hive's manifests/evals).
    paths: Vec<PathBuf>,
    /// Run only the cases whose name (or `suite/name`) contains NAME.
    #[arg(long, value_name = "NAME")]
    filter: Option<String>,
    /// Print one JSON object with every case's outcome instead of text.
    #[arg(long)]
    json: bool,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Ask the hive's real model providers instead of the scripted responses.
    #[arg(long)]
    live: bool,
    /// Live mode: runs per case.
    #[arg(long, requires = "live", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=runner::MAX_RUNS as i64))]
    runs: Option<u32>,
    /// Live mode: the share of a case's runs that must pass, from 0 to 1.
    #[arg(long, requires = "live", value_name = "R")]
    min_pass_rate: Option<f64>,
    /// Use URL as the base URL of provider NAME (repeatable).
    #[arg(long = "provider-url", value_name = "NAME=URL")]
    provider_url: Vec<String>,
    /// Live mode: send every provider's calls to the OpenAI-compatible server
    /// at URL (scripted and echo providers included), so a hive whose agents
    /// are scripted can be measured on a real model unchanged.
    #[arg(long, requires = "live", value_name = "URL")]
    model_url: Option<String>,
    /// Write a golden case from recorded job JOB of the data dir, as YAML.
    #[arg(long, value_name = "JOB", conflicts_with_all = ["paths", "filter", "junit", "live", "json"])]
    from_log: Option<String>,
    /// With --from-log: write the case to FILE instead of stdout.
    #[arg(long, requires = "from_log", value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    if let Some(job) = &args.from_log {
        return from_log(ctx, job, args.out.as_ref());
    }
    let min_rate = args.min_pass_rate.unwrap_or(1.0);
    let finished = run(ctx, &args, |r| {
        if !args.json {
            out(&case_text(r, min_rate, args.live));
        }
    })?;
    if args.json {
        out_json(&finished.json());
    } else {
        let mode = if args.live {
            format!(
                " (live, {} run{} each, min pass rate {min_rate})",
                finished.runs,
                if finished.runs == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        };
        out(&format!(
            "\n{}/{} eval cases passed{mode} in {:.2}s\n",
            finished.passed(),
            finished.reports.len(),
            finished.elapsed.as_secs_f64()
        ));
    }
    Ok(finished.outcome())
}

/// A finished eval run: every case's report and how it was run.
pub struct Finished {
    pub reports: Vec<CaseReport>,
    pub min_rate: f64,
    pub live: bool,
    pub runs: u32,
    pub elapsed: std::time::Duration,
}

impl Finished {
    pub fn passed(&self) -> usize {
        self.reports
            .iter()
            .filter(|r| r.passed(self.min_rate))
            .count()
    }

    /// Exit 0 when every case passed, 1 otherwise.
    pub fn outcome(&self) -> Outcome {
        if self.passed() == self.reports.len() {
            Outcome::Success
        } else {
            Outcome::Failed
        }
    }

    /// What `jaros eval --json` prints: also `jaros mcp serve`'s `eval` tool.
    pub fn json(&self) -> serde_json::Value {
        let min_rate = self.min_rate;
        json!({
            "passed": self.passed(),
            "total": self.reports.len(),
            "duration_ms": self.elapsed.as_millis() as u64,
            "live": self.live,
            "runs": self.runs,
            "min_pass_rate": min_rate,
            "cases": self.reports.iter().map(|r| json!({
                "suite": r.suite,
                "name": r.name,
                "place": r.place,
                "passed": r.passed(min_rate),
                "runs": r.runs,
                "passed_runs": r.passed_runs,
                "pass_rate": r.pass_rate(),
                "duration_ms": r.duration.as_millis() as u64,
                "failures": r.failures,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Runs the cases `args` select (not `--from-log`), calling `on_case` as
/// each finishes. No case to run is an error (exit 2) saying why.
pub fn run(ctx: &Ctx, args: &Args, on_case: impl FnMut(&CaseReport)) -> Result<Finished, CliError> {
    let started = Instant::now();
    let min_rate = args.min_pass_rate.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&min_rate) {
        return Err(CliError::bad_input(format!(
            "--min-pass-rate {min_rate}: give a share from 0 to 1, such as 0.8"
        )));
    }
    let hive = ctx.hive()?;
    let loaded = crate::manifest::load_hive(&hive).map_err(|errors| {
        let prefix = ctx.display_prefix(&hive);
        let lines: Vec<String> = errors.iter().map(|d| format!("{prefix}{d}")).collect();
        CliError::bad_input(format!(
            "the hive's manifests are invalid, so no case can run:\n{}",
            lines.join("\n")
        ))
    })?;
    let mut providers = super::providers(&hive, &loaded);
    for item in &args.provider_url {
        let Some((name, url)) = item.split_once('=') else {
            return Err(CliError::bad_input(format!(
                "--provider-url {item}: write NAME=URL, such as local=http://127.0.0.1:8080"
            )));
        };
        let Some(cfg) = providers.get_mut(name) else {
            let mut known: Vec<&String> = providers.keys().collect();
            known.sort();
            return Err(CliError::bad_input(format!(
                "--provider-url: no provider '{name}' in the node manifest; its providers are: {}",
                known.into_iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        cfg.base_url = Some(url.trim().to_string());
    }
    if let Some(url) = &args.model_url {
        for cfg in providers.values_mut() {
            cfg.kind = ProviderKind::Openai;
            cfg.base_url = Some(url.trim().to_string());
            cfg.responses = None;
        }
    }
    let offline: Vec<String> = providers
        .iter()
        .filter(|(_, p)| matches!(p.kind, ProviderKind::Echo | ProviderKind::Scripted))
        .map(|(n, _)| n.clone())
        .collect();

    let files = eval_files(ctx, &hive, &args.paths)?;
    let opts = LoadOptions {
        hive: &hive,
        plan: &loaded.plan,
        offline_providers: &offline,
        live: args.live,
    };
    let mut cases: Vec<Case> = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        match eval::load_file(file, &opts) {
            Ok(more) => cases.extend(more),
            Err(more) => errors.extend(more),
        }
    }
    if !errors.is_empty() {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(CliError::bad_input(format!(
            "invalid eval file{}:\n{}",
            if errors.len() == 1 { "" } else { "s" },
            lines.join("\n")
        )));
    }
    let total_found = cases.len();
    if let Some(filter) = &args.filter {
        cases.retain(|c| {
            c.name.contains(filter.as_str())
                || format!("{}/{}", c.suite, c.name).contains(filter.as_str())
        });
    }
    if cases.is_empty() {
        let shown: Vec<&str> = files.iter().map(|f| f.shown.as_str()).collect();
        let why = match &args.filter {
            Some(f) if total_found > 0 => {
                format!("none of the {total_found} cases matches --filter '{f}'")
            }
            _ if files.is_empty() => "no eval files found".to_string(),
            _ => format!("no Eval cases in {}", shown.join(", ")),
        };
        return Err(CliError {
            outcome: Outcome::Nothing,
            message: why,
        });
    }

    let live = args.live.then(|| {
        let models = crate::model::proposer::ModelProposer::new(providers.clone());
        Arc::new(crate::agents::LocalProposer {
            models: Some(Arc::new(models)),
        }) as Arc<dyn crate::job::Proposer>
    });
    let env = Env {
        hive: hive.clone(),
        plan: loaded.plan.clone(),
        executor: super::executor(),
        providers,
        live,
        runs: if args.live { args.runs.unwrap_or(1) } else { 1 },
        threads: runner::default_threads(),
    };
    let reports = runner::run_cases(&env, &cases, on_case);
    let elapsed = started.elapsed();
    if let Some(path) = &args.junit {
        let xml = eval::junit::render(&reports, min_rate, elapsed);
        crate::fsx::write_durable(path, xml.as_bytes())
            .map_err(|e| CliError::bad_input(format!("--junit: {e}")))?;
    }
    Ok(Finished {
        reports,
        min_rate,
        live: args.live,
        runs: env.runs,
        elapsed,
    })
}

fn case_text(r: &CaseReport, min_rate: f64, live: bool) -> String {
    let verdict = if r.passed(min_rate) { "PASS" } else { "FAIL" };
    let runs = if live {
        format!(
            "  {}/{} runs passed ({:.0}%)",
            r.passed_runs,
            r.runs,
            r.pass_rate() * 100.0
        )
    } else {
        String::new()
    };
    let mut text = format!("[{verdict}] {}{runs}\n", r.name);
    if !r.failures.is_empty() && (!r.passed(min_rate) || live) {
        text.push_str(&format!("  at {}\n", r.place));
        text.push_str(&eval::failure_text(r));
    }
    text
}

/// The eval files the PATH arguments name (default: the hive's
/// manifests/evals), named as the user wrote them.
fn eval_files(
    ctx: &Ctx,
    hive: &std::path::Path,
    paths: &[PathBuf],
) -> Result<Vec<EvalFile>, CliError> {
    let mut files = Vec::new();
    if paths.is_empty() {
        let dir = hive.join("manifests").join("evals");
        if !dir.exists() {
            return Ok(files);
        }
        let shown = format!("{}manifests/evals", ctx.display_prefix(hive));
        return eval::eval_files(&dir, &shown).map_err(CliError::bad_input);
    }
    for p in paths {
        let found = eval::eval_files(p, &p.display().to_string()).map_err(CliError::bad_input)?;
        for f in found {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    Ok(files)
}

fn from_log(ctx: &Ctx, job: &str, out_file: Option<&PathBuf>) -> CliResult {
    let job = crate::decision::JobId::new(job).map_err(|e| CliError::bad_input(e.to_string()))?;
    let hive = ctx.hive()?;
    let plan = super::load_plan(&hive)?;
    let data = ctx.existing_data_dir()?;
    let yaml = eval::golden::from_log(&data, &plan, &job).map_err(|e| match e {
        eval::golden::GoldenError::Replay(_) | eval::golden::GoldenError::NotEnded(_) => {
            CliError::bad_input(e.to_string())
        }
        _ => CliError::failed(e.to_string()),
    })?;
    match out_file {
        None => out(&yaml),
        Some(path) => {
            crate::fsx::write_durable(path, yaml.as_bytes())
                .map_err(|e| CliError::bad_input(format!("--out: {e}")))?;
            eprintln!(
                "wrote a golden case from job {job} to {}; run it with `jaros eval {}`",
                path.display(),
                path.display()
            );
        }
    }
    Ok(Outcome::Success)
}
