//! `jaros demo`: the one-command tour.

use super::{out, CliError, CliResult, Ctx};
use crate::datadir::DataDir;
use crate::decision::{AgentName, JobId};
use crate::exit::Outcome;
use crate::node::{self, inbox};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The tour: write the embedded example hive to a new directory, boot a node
/// in this process, submit the example jobs (the support-triage swarm and the
/// read-only agents), wait for them, then replay everything and print the
/// verdict. Leaves the hive in place so you can run `jaros replay`,
/// `jaros blame` and `jaros logs` on it.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to create the demo hive (default: a new directory under the
    /// system's temp dir).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print the replay as JSON.
    #[arg(long)]
    json: bool,
    /// Run the swarm (planner, worker, reviewer) on a real OpenAI-compatible
    /// model server at this base URL instead of its scripted responses, e.g.
    /// `--model-url $(cat ~/.cache/jaros-model/url)` after
    /// `scripts/model-server.sh start`.
    #[arg(long, value_name = "URL")]
    model_url: Option<String>,
}

/// Points the swarm's agents at a real model: a provider `real` of kind
/// openai at `url`, written into the demo hive's manifests (so the node, the
/// plan and the replay all see the same hive).
fn use_real_model(hive: &Path, url: &str) -> Result<(), CliError> {
    let edit = |rel: &str, from: &str, to: &str| -> Result<(), CliError> {
        let path = hive.join(rel);
        let text =
            crate::fsx::read_to_string(&path).map_err(|e| CliError::failed(e.to_string()))?;
        crate::fsx::write_durable(&path, text.replacen(from, to, 1).as_bytes())
            .map_err(|e| CliError::failed(e.to_string()))
    };
    let url = serde_json::to_string(url).expect("strings serialize");
    edit("manifests/node.yaml", "  providers:\n", &format!("  providers:\n    real:\n      kind: openai\n      base_url: {url}\n      model: local-model\n      timeout: 120s\n"))?;
    for agent in ["planner", "worker", "reviewer"] {
        edit(
            &format!("manifests/agents/{agent}.yaml"),
            "provider: swarm",
            "provider: real",
        )?;
    }
    Ok(())
}

/// The jobs the demo submits: (id, agent, input).
pub fn demo_jobs() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("advance-1", "advance", json!({"note": "hello"})),
        (
            "advance-2",
            "advance",
            json!({"note": "the built-in agent needs no model"}),
        ),
        ("system-health", "system-health", json!({})),
        ("disk-monitor", "disk-monitor", json!({})),
        ("inventory", "inventory", json!({})),
        ("text-metrics", "text-metrics", json!({"path": "AGENTS.md"})),
        ("greeter", "greeter", json!({"name": "Ada"})),
        // The support-triage swarm: a genuine request, spam, and a ticket the
        // worker hands to an agent it may not reach (the seeded bad hand-off).
        (
            "T1",
            "planner",
            json!({"id": "T1", "ticket": "My invoice for October charges me twice. Can you fix it?"}),
        ),
        (
            "T2",
            "planner",
            json!({"id": "T2", "ticket": "BUY CHEAP WATCHES NOW!!! best prices click here"}),
        ),
        (
            "T3",
            "planner",
            json!({"id": "T3", "ticket": "I want a refund of 1200 EUR for my annual plan."}),
        ),
        // A refund over 100 EUR: the worker's refund waits for the demo
        // operator's verdict (the worker role's approval rule).
        (
            "T4",
            "planner",
            json!({"id": "T4", "ticket": "Please refund the 250 EUR I paid for a plan I cancelled the same day."}),
        ),
    ]
}

/// The name the demo approves waiting decisions as: the one approver the
/// example's approval rule lists.
pub const DEMO_OPERATOR: &str = "demo-operator";

/// Shows each decision that waits for a person and approves it as
/// [`DEMO_OPERATOR`], as `jaros approve` does; returns how many.
fn approve_waiting(data: &DataDir) -> Result<usize, CliError> {
    let store = crate::approval::store::Store::new(data);
    let listing = store.list().map_err(|e| CliError::failed(e.to_string()))?;
    let mut approved = 0;
    for request in &listing.requests {
        eprintln!(
            "jaros demo: job {} waits for a person: {} {} (approvers: {})",
            request.job,
            request.decision.kind,
            request.decision.payload,
            request.approvers.join(", ")
        );
        if !request.approvers.iter().any(|a| a == DEMO_OPERATOR) {
            continue;
        }
        let verdict = crate::approval::store::Verdict {
            job: request.job.clone(),
            decision: request.decision.id.clone(),
            verdict: crate::approval::store::Answer::Approve,
            by: DEMO_OPERATOR.into(),
            at_ms: node::lease::now_ms(),
            note: Some("approved by the demo".into()),
            reason: None,
        };
        crate::approval::give_verdict(data, &verdict)
            .map_err(|e| CliError::failed(e.to_string()))?;
        eprintln!(
            "jaros demo: approved as {DEMO_OPERATOR} (jaros approve {} {} --by {DEMO_OPERATOR}); the job resumes",
            request.job, request.decision.kind
        );
        approved += 1;
    }
    Ok(approved)
}

/// The file that marks a directory as a demo's hive, so a later demo may
/// restore its files (a `--model-url` run edits them) without --force.
const DEMO_MARKER: &str = ".jaros-demo";

pub fn main(ctx: &Ctx, args: Args) -> CliResult {
    let dir = match (args.dir.as_deref(), ctx.typed_hive()) {
        (None, None) => {
            std::env::temp_dir().join(format!("jaros-demo-{}", crate::ids::random_hex(8)))
        }
        (arg, _) => super::init::target_dir(ctx, arg, "jaros demo --dir DIR")?,
    };
    let earlier_demo = dir.join(DEMO_MARKER).is_file();
    super::init::write_hive(&dir, earlier_demo)?;
    crate::fsx::write_durable(
        &dir.join(DEMO_MARKER),
        b"written by `jaros demo`: a later demo here restores the example hive's files\n",
    )
    .map_err(|e| CliError::failed(e.to_string()))?;
    let hive = dir.clone();
    if let Some(url) = &args.model_url {
        use_real_model(&hive, url)?;
    }
    let loaded = super::load_hive(&hive)?;
    let data = match ctx.typed_data_dir() {
        Some(d) => {
            if holds_a_run(d) {
                return Err(CliError::bad_input(format!(
                    "--data-dir {} holds an earlier run; the demo's job ids would collide: give an empty or new directory",
                    d.display()
                )));
            }
            DataDir::new(d)
        }
        None => {
            let default = hive.join(crate::datadir::DEFAULT_DATA_DIR);
            if let Some(kept) = set_aside(&default)? {
                eprintln!(
                    "jaros demo: the earlier run's data dir is kept at {}",
                    kept.display()
                );
            }
            DataDir::new(default)
        }
    };
    data.create().map_err(|e| CliError::failed(e.to_string()))?;
    let jobs = demo_jobs();
    for (id, agent, input) in &jobs {
        let job = inbox::JobFile {
            id: JobId::new(*id).expect("demo ids are valid"),
            agent: AgentName::new(*agent).expect("demo agents are valid"),
            input: input.clone(),
            parent: None,
            via: None,
            resume: false,
            tree: Default::default(),
        };
        inbox::submit(&data, &job).map_err(CliError::failed)?;
    }
    eprintln!("jaros demo: hive {}", hive.display());
    let mut cfg = super::node_config(&loaded, "demo".into());
    cfg.exit_when_idle = true;
    cfg.scan_ms = 20;
    let started = std::time::Instant::now();
    let serve = |cfg: node::NodeConfig| -> Result<(u64, u64), CliError> {
        let exit = node::serve(
            cfg,
            &hive,
            data.clone(),
            Box::new(source_of(hive.clone())),
            super::executor(),
            super::proposer(&hive, &loaded),
            Arc::new(AtomicBool::new(false)),
        )
        .map_err(CliError::failed)?;
        match exit.fatal {
            Some(fatal) => Err(CliError::failed(fatal)),
            None => Ok((exit.done, exit.failed)),
        }
    };
    // The node stops once nothing is left but what waits for a person; the
    // demo operator approves it and a node runs the rest.
    // Each run of the node has its bar, ended before the demo speaks of
    // what waits.
    let with_progress = |cfg: node::NodeConfig, from: u64| {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = spawn_progress(data.clone(), stop.clone(), from as usize);
        let served = serve(cfg);
        stop.store(true, Ordering::SeqCst);
        let _ = progress.join();
        served
    };
    let (mut done, mut failed) = with_progress(cfg.clone(), 0)?;
    if approve_waiting(&data)? > 0 {
        let (d, f) = with_progress(cfg, done + failed)?;
        done += d;
        failed += f;
    }
    eprintln!(
        "jaros demo: {} jobs ran in {:.2} s ({done} done, {failed} failed); replaying…",
        done + failed,
        started.elapsed().as_secs_f64(),
    );
    let report = crate::replay::replay(&data, &super::executor(), &Default::default())
        .map_err(|e| CliError::failed(e.to_string()))?;
    if args.json {
        super::out_json(&report);
    } else {
        out(&super::replay::human(&report));
        out(&next_steps(&hive, ctx.typed_data_dir(), &data));
    }
    Ok(if report.reproducible() {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

/// The demo node's plan: the hive's manifests, without schedules (the tour
/// runs its own jobs only: the example's schedules stay quiet).
fn source_of(hive: PathBuf) -> impl Fn() -> Result<node::HiveLoad, String> + Send + Sync + 'static {
    move || {
        crate::manifest::load_hive(&hive)
            .map(|l| node::HiveLoad {
                plan: l.plan,
                schedules: Vec::new(),
            })
            .map_err(|e| {
                e.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
    }
}

/// Whether `dir` holds anything a run leaves (a log, a result, a job).
fn holds_a_run(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// Moves an earlier run's data dir aside (to `<dir>.1`, `<dir>.2`, …) so
/// the demo's jobs start fresh and keep their ids; returns where it went.
fn set_aside(dir: &Path) -> Result<Option<PathBuf>, CliError> {
    if !holds_a_run(dir) {
        return Ok(None);
    }
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let free = (1..=MAX_KEPT_RUNS)
        .map(|n| dir.with_file_name(format!("{name}.{n}")))
        .find(|p| !p.exists())
        .ok_or_else(|| {
            CliError::bad_input(format!(
                "{} already keeps {MAX_KEPT_RUNS} earlier runs; remove some of {}.* or pass another --dir",
                dir.parent().unwrap_or(dir).display(),
                dir.display()
            ))
        })?;
    std::fs::rename(dir, &free).map_err(|e| {
        CliError::failed(format!(
            "cannot move the earlier run {} aside to {}: {e}",
            dir.display(),
            free.display()
        ))
    })?;
    Ok(Some(free))
}

/// How many earlier runs' data dirs a demo hive keeps beside its own.
const MAX_KEPT_RUNS: usize = 100;

/// The refund ticket's worker job, which the seeded bad hand-off fails on
/// the scripted model.
const BLAME_HINT_JOB: &str = "T3-1.0";

/// What to try next, naming only jobs this run has: on a real model the
/// refund ticket may take another path, so the blame hint names a failed job
/// that exists, or is left out.
fn next_steps(hive: &Path, typed_data: Option<&Path>, data: &DataDir) -> String {
    let h = hive.display();
    let data_flag = match typed_data {
        // Absolute: the hints start with a `cd`.
        Some(d) => format!(
            " --data-dir {}",
            std::fs::canonicalize(d)
                .unwrap_or_else(|_| d.to_path_buf())
                .display()
        ),
        None => String::new(),
    };
    let failed: Vec<String> = std::fs::read_dir(data.failed())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    let blame = if failed.iter().any(|j| j == BLAME_HINT_JOB) {
        format!("  jaros{data_flag} blame {BLAME_HINT_JOB}      # who failed the refund ticket, and the counterfactual\n")
    } else if let Some(job) = failed.iter().min() {
        format!(
            "  jaros{data_flag} blame {job}      # who failed this job, and the counterfactual\n"
        )
    } else {
        String::new()
    };
    format!("\nthe hive is at {h}; try:\n  cd {h}\n  jaros{data_flag} replay            # again, from the log alone\n{blame}  jaros{data_flag} logs              # every record\n  jaros{data_flag} status            # counts from the files\n  jaros{data_flag} run advance --input '{{\"note\": \"more\"}}'\n(`jaros` not on your PATH? from the source tree: cargo install --path .)\n")
}

/// A progress bar on stderr while the node works; `from` jobs had finished
/// before this run of the node.
fn spawn_progress(
    data: DataDir,
    stop: Arc<AtomicBool>,
    from: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let submitted = demo_jobs().len();
        let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mut last = usize::MAX;
        // The node prints its banner before it claims anything: the bar
        // starts after it, so the two never share a line.
        let mut begun = false;
        loop {
            let jobs = node::status::overview(&data).jobs;
            let n = jobs.done + jobs.failed;
            begun = begun || n + jobs.claimed > from;
            if !begun && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            // Hand-offs add jobs as the swarm works.
            let total = submitted.max(n + jobs.inbox + jobs.claimed);
            if n != last && (interactive || n == total || stop.load(Ordering::SeqCst)) {
                let width = 30;
                let filled = (n.min(total) * width) / total.max(1);
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r[{}{}] {n}/{total} jobs finished",
                    "#".repeat(filled),
                    ".".repeat(width - filled)
                );
                let _ = err.flush();
                last = n;
            }
            if stop.load(Ordering::SeqCst) {
                eprintln!();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}
