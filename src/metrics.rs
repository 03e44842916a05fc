//! Prometheus metrics, derived at each scrape from the data dir: the logs
//! (through [`crate::replay::job_histories`]), the job files of each stage,
//! the nodes' heartbeat files and the schedules' slot markers. Nothing is
//! counted in memory, so the numbers survive restarts and cover every node
//! sharing the data dir.
//!
//! Owns the metric names and the text exposition format (version 0.0.4).
//! It never writes; `jaros metrics` prints it and the console serves it at
//! `/metrics`.

use crate::datadir::DataDir;
use crate::log::Body;
use crate::state::State;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Upper bounds (seconds) of the job duration histogram's buckets.
pub const JOB_SECONDS_BUCKETS: [f64; 10] =
    [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Upper bounds (seconds) of the model-call duration histogram's buckets.
pub const MODEL_SECONDS_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Labels of one sample, in order.
pub type Labels = Vec<(&'static str, String)>;

/// Text exposition being written: one family after another.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// A family of samples: its HELP and TYPE lines, then one line a sample.
    /// A family with no samples is left out.
    pub fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(Labels, f64)]) {
        if samples.is_empty() {
            return;
        }
        self.header(name, kind, help);
        for (labels, value) in samples {
            self.sample(name, labels, *value);
        }
    }

    /// A histogram of `values` (seconds) per label set.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        buckets: &[f64],
        series: &BTreeMap<Labels, Vec<f64>>,
    ) {
        if series.is_empty() {
            return;
        }
        self.header(name, "histogram", help);
        for (labels, values) in series {
            for &le in buckets {
                let mut l = labels.clone();
                l.push(("le", number(le)));
                let n = values.iter().filter(|v| **v <= le).count();
                self.sample(&format!("{name}_bucket"), &l, n as f64);
            }
            let mut l = labels.clone();
            l.push(("le", "+Inf".into()));
            self.sample(&format!("{name}_bucket"), &l, values.len() as f64);
            self.sample(&format!("{name}_sum"), labels, values.iter().sum());
            self.sample(&format!("{name}_count"), labels, values.len() as f64);
        }
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&'static str, String)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// A label value as the exposition format writes it.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    format!("{v}")
}

fn label(key: &'static str, value: impl Into<String>) -> (&'static str, String) {
    (key, value.into())
}

/// Adds `by` to the sample with `labels`.
fn bump(map: &mut BTreeMap<Labels, f64>, labels: Labels, by: f64) {
    *map.entry(labels).or_default() += by;
}

fn samples(map: BTreeMap<Labels, f64>) -> Vec<(Labels, f64)> {
    map.into_iter().collect()
}

/// The whole exposition for the data dir, `now_ms` its reading of the clock
/// (for heartbeat ages).
pub fn render(data: &DataDir, now_ms: u64) -> String {
    let mut out = Exposition::default();
    log_metrics(data, &mut out);

    // Queue depth by area, from the job files themselves.
    let overview = crate::node::status::overview(data);
    let j = &overview.jobs;
    out.family(
        "jaros_queue_jobs",
        "gauge",
        "Job files in each area of the data dir (inbox, claimed, done, failed).",
        &[
            (vec![label("area", "inbox")], j.inbox as f64),
            (vec![label("area", "claimed")], j.claimed as f64),
            (vec![label("area", "done")], j.done as f64),
            (vec![label("area", "failed")], j.failed as f64),
        ],
    );

    // Nodes, from their heartbeat files.
    let nodes = &overview.nodes;
    let per_node = |f: &dyn Fn(&crate::node::status::NodeView) -> f64| -> Vec<(Labels, f64)> {
        nodes
            .iter()
            .map(|n| (vec![label("node", n.status.node.clone())], f(n)))
            .collect()
    };
    out.family(
        "jaros_node_heartbeat_age_seconds",
        "gauge",
        "Seconds since each node last wrote its heartbeat file.",
        &per_node(&|n| now_ms.saturating_sub(n.status.beat_ms) as f64 / 1000.0),
    );
    out.family(
        "jaros_node_up",
        "gauge",
        "1 while a node's heartbeat is fresh and it has not stopped.",
        &per_node(&|n| if n.live { 1.0 } else { 0.0 }),
    );
    out.family(
        "jaros_node_running_jobs",
        "gauge",
        "Jobs a node is running now.",
        &per_node(&|n| n.status.running.len() as f64),
    );
    out.family(
        "jaros_node_resumed_jobs_total",
        "counter",
        "Jobs a node claimed and resumed from the log (taken over or restarted) since it started.",
        &per_node(&|n| n.status.resumed as f64),
    );
    out.family(
        "jaros_node_bad_files_total",
        "counter",
        "Malformed inbox files a node moved to failed/ since it started.",
        &per_node(&|n| n.status.bad_files as f64),
    );

    let export = export_counts(data);
    out.family(
        "jaros_node_export_spans_total",
        "counter",
        "Spans a node's live trace export sent (outcome exported) or dropped because the collector failed or was slow (outcome dropped), since it started.",
        &export
            .iter()
            .flat_map(|(node, e)| {
                [("exported", e.exported_spans), ("dropped", e.dropped_spans)].map(|(o, n)| {
                    (
                        vec![label("node", node.clone()), label("outcome", o)],
                        n as f64,
                    )
                })
            })
            .collect::<Vec<_>>(),
    );
    out.family(
        "jaros_node_export_dropped_jobs_total",
        "counter",
        "Ended jobs whose spans a node's live trace export dropped because its queue was full, since it started.",
        &export
            .iter()
            .map(|(node, e)| (vec![label("node", node.clone())], e.dropped_jobs as f64))
            .collect::<Vec<_>>(),
    );

    out.family(
        "jaros_log_bytes",
        "gauge",
        "Size of each node's log file in bytes.",
        &overview
            .logs
            .iter()
            .map(|l| (vec![label("node", l.node.clone())], l.bytes as f64))
            .collect::<Vec<_>>(),
    );

    // Schedule fires, from the slot markers (one per fired slot).
    let mut fires = BTreeMap::new();
    let slots = data.root().join("schedules").join("slots");
    for path in crate::fsx::list_dir(&slots).unwrap_or_default() {
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if let Ok(marker) = serde_json::from_slice::<crate::schedule::fire::SlotMarker>(&bytes) {
            bump(
                &mut fires,
                vec![label("schedule", marker.job.schedule)],
                1.0,
            );
        }
    }
    out.family(
        "jaros_schedule_fires_total",
        "counter",
        "Slots each schedule fired (slot markers in schedules/slots/).",
        &samples(fires),
    );
    out.family(
        "jaros_schedule_misses_total",
        "counter",
        "Slots that came due while no node ran a schedule and that its catch-up policy did not fire.",
        &crate::schedule::fire::misses(data.root())
            .into_iter()
            .map(|(name, n)| (vec![label("schedule", name)], n as f64))
            .collect::<Vec<_>>(),
    );
    let records = lease_epochs(data);
    let epochs = epoch_writers(&records);
    out.family(
        "jaros_claims_total",
        "counter",
        "Job claims by the node that held them: each lease epoch of a job (a claim from the inbox, a takeover, a resume after a restart), from the logs' records; a claim that wrote nothing is not seen.",
        &samples(claims(&epochs)),
    );
    out.family(
        "jaros_takeovers_total",
        "counter",
        "Jobs a node took over from another node's lease, by the node that took them (from the epochs of the logs' records; a takeover that wrote nothing is not seen).",
        &samples(takeovers(&epochs)),
    );
    out.finish()
}

/// The live trace exporters' counters, by node, from the `export` member of
/// the nodes' status files (present while a node exports).
fn export_counts(data: &DataDir) -> Vec<(String, crate::live_trace::ExportCounts)> {
    let mut out = Vec::new();
    for path in crate::fsx::list_dir(&crate::node::status::nodes_dir(data)).unwrap_or_default() {
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let (Some(node), Some(e)) = (v["node"].as_str(), v.get("export")) else {
            continue;
        };
        let n = |k: &str| e[k].as_u64().unwrap_or(0);
        out.push((
            node.to_string(),
            crate::live_trace::ExportCounts {
                endpoint: e["endpoint"].as_str().unwrap_or_default().to_string(),
                exported_spans: n("exported_spans"),
                dropped_spans: n("dropped_spans"),
                dropped_jobs: n("dropped_jobs"),
            },
        ));
    }
    out
}

/// Every job record's (node, job, lease epoch), from each node's log; 0
/// epochs (no lease held) are left out.
fn lease_epochs(data: &DataDir) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    for path in data.log_files().unwrap_or_default() {
        let node = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(log) = crate::log::read_log(&path) else {
            continue;
        };
        for r in log.records {
            if let (Some((job, _)), true) = (r.body.job_at(), r.epoch > 0) {
                out.push((node.clone(), job.to_string(), r.epoch));
            }
        }
    }
    out
}

/// Per job, the node that wrote each lease epoch's first record.
type EpochWriters<'a> = BTreeMap<&'a str, BTreeMap<u64, &'a str>>;

/// Each job's lease epochs and the node that held each, from every
/// record's (node, job, epoch).
fn epoch_writers(records: &[(String, String, u64)]) -> EpochWriters<'_> {
    let mut by_job: EpochWriters = BTreeMap::new();
    for (node, job, epoch) in records {
        by_job
            .entry(job.as_str())
            .or_default()
            .entry(*epoch)
            .or_insert(node.as_str());
    }
    by_job
}

/// Claims by node: every lease epoch of a job is one claim by the node
/// that held it.
fn claims(by_job: &EpochWriters) -> BTreeMap<Labels, f64> {
    let mut out = BTreeMap::new();
    for node in by_job.values().flat_map(|epochs| epochs.values()) {
        bump(&mut out, vec![label("node", node.to_string())], 1.0);
    }
    out
}

/// Takeovers by taking node: a node took a job over when its records of
/// the job carry a higher lease epoch than the records another node wrote
/// before it. A node resuming its own job after a restart (a new epoch,
/// the same node) is no takeover.
fn takeovers(by_job: &EpochWriters) -> BTreeMap<Labels, f64> {
    let mut out = BTreeMap::new();
    for epochs in by_job.values() {
        let mut holder: Option<&str> = None;
        for node in epochs.values() {
            if holder.is_some_and(|h| h != *node) {
                bump(&mut out, vec![label("node", node.to_string())], 1.0);
            }
            holder = Some(node);
        }
    }
    out
}

/// The metrics read from the logs: jobs by agent and outcome, durations,
/// tokens, model calls, gate refusals, claims and takeovers.
fn log_metrics(data: &DataDir, out: &mut Exposition) {
    let Ok(histories) = crate::replay::job_histories(data) else {
        return;
    };
    let mut jobs = BTreeMap::new();
    let mut tokens = BTreeMap::new();
    let mut calls = BTreeMap::new();
    let mut refusals = BTreeMap::new();
    let mut model_seconds: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
    let mut job_seconds: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
    let spans =
        crate::trace::spans(&histories, &crate::trace::Selection::default()).unwrap_or_default();
    let job_spans: BTreeMap<[u8; 8], u64> = spans
        .iter()
        .map(|s| (s.span_id, s.end_ms.saturating_sub(s.start_ms)))
        .collect();
    for (job, history) in &histories {
        let Some(Body::Job { agent, .. }) = history.first() else {
            continue;
        };
        let agent = agent.to_string();
        for body in history {
            match body {
                Body::Model {
                    provider,
                    model,
                    tokens_in,
                    tokens_out,
                    duration_ms,
                    ..
                } => {
                    let m = vec![
                        label("provider", provider.clone()),
                        label("model", model.clone()),
                    ];
                    let mut input = m.clone();
                    input.push(label("direction", "input"));
                    bump(&mut tokens, input, *tokens_in as f64);
                    let mut output = m.clone();
                    output.push(label("direction", "output"));
                    bump(&mut tokens, output, *tokens_out as f64);
                    bump(&mut calls, m.clone(), 1.0);
                    model_seconds
                        .entry(m)
                        .or_default()
                        .push(*duration_ms as f64 / 1000.0);
                }
                Body::Rejected { check, .. } => {
                    bump(
                        &mut refusals,
                        vec![label("agent", agent.clone()), label("check", check.clone())],
                        1.0,
                    );
                }
                Body::End { state, .. } => {
                    let state = match state {
                        State::Done => "done",
                        State::Failed => "failed",
                        _ => continue,
                    };
                    let labels = vec![label("agent", agent.clone()), label("state", state)];
                    bump(&mut jobs, labels.clone(), 1.0);
                    let id = crate::trace::span_id("job", job.as_str());
                    if let Some(ms) = job_spans.get(&id) {
                        job_seconds
                            .entry(labels)
                            .or_default()
                            .push(*ms as f64 / 1000.0);
                    }
                }
                _ => {}
            }
        }
    }
    out.family(
        "jaros_jobs_total",
        "counter",
        "Jobs that ended, by agent and final state (from the logs' end records).",
        &samples(jobs),
    );
    out.histogram(
        "jaros_job_duration_seconds",
        "Recorded duration of each ended job: from its start to its last recorded clock reading.",
        &JOB_SECONDS_BUCKETS,
        &job_seconds,
    );
    out.family(
        "jaros_model_calls_total",
        "counter",
        "Model calls recorded, by provider and model.",
        &samples(calls),
    );
    out.histogram(
        "jaros_model_call_duration_seconds",
        "Recorded duration of each model call.",
        &MODEL_SECONDS_BUCKETS,
        &model_seconds,
    );
    out.family(
        "jaros_model_tokens_total",
        "counter",
        "Tokens recorded by model calls, by provider, model and direction (input, output).",
        &samples(tokens),
    );
    out.family(
        "jaros_gate_refusals_total",
        "counter",
        "Decisions the gate refused, by agent and the check that refused them.",
        &samples(refusals),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_help_and_type_lines_and_escapes_labels() {
        let mut out = Exposition::default();
        out.family(
            "jaros_x_total",
            "counter",
            "A help line with a \\ and a\nnewline.",
            &[
                (vec![label("agent", "a\"b\\c\nd")], 3.0),
                (vec![label("agent", "plain")], 0.5),
            ],
        );
        out.family("jaros_empty", "gauge", "left out", &[]);
        let mut series = BTreeMap::new();
        series.insert(vec![label("agent", "x")], vec![0.02, 2.0, 400.0]);
        out.histogram("jaros_h_seconds", "h", &[0.1, 1.0], &series);
        let text = out.finish();
        let expected = "\
# HELP jaros_x_total A help line with a \\\\ and a\\nnewline.
# TYPE jaros_x_total counter
jaros_x_total{agent=\"a\\\"b\\\\c\\nd\"} 3
jaros_x_total{agent=\"plain\"} 0.5
# HELP jaros_h_seconds h
# TYPE jaros_h_seconds histogram
jaros_h_seconds_bucket{agent=\"x\",le=\"0.1\"} 1
jaros_h_seconds_bucket{agent=\"x\",le=\"1\"} 1
jaros_h_seconds_bucket{agent=\"x\",le=\"+Inf\"} 3
jaros_h_seconds_sum{agent=\"x\"} 402.02
jaros_h_seconds_count{agent=\"x\"} 3
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_takeover_is_a_later_epoch_by_another_node_and_every_epoch_a_claim() {
        let r = |node: &str, job: &str, epoch: u64| (node.to_string(), job.to_string(), epoch);
        let records = [
            // j1: n1 held it, n2 took it over, n1 took it back.
            r("n1", "j1", 1),
            r("n2", "j1", 2),
            r("n2", "j1", 2),
            r("n1", "j1", 3),
            // j2: n1 restarted and resumed its own job.
            r("n1", "j2", 1),
            r("n1", "j2", 2),
            // j3: n1's record after losing it (epoch 1) sits in its log
            // after n2's takeover: still one takeover.
            r("n2", "j3", 2),
            r("n1", "j3", 1),
        ];
        let epochs = epoch_writers(&records);
        let got = takeovers(&epochs);
        let want: BTreeMap<Labels, f64> = [
            (vec![label("node", "n1")], 1.0),
            (vec![label("node", "n2")], 2.0),
        ]
        .into_iter()
        .collect();
        assert_eq!(got, want);
        // Every epoch is a claim: n1 holds j1 at 1 and 3, j2 at 1 and 2,
        // j3 at 1; n2 holds j1 at 2 and j3 at 2.
        let want: BTreeMap<Labels, f64> = [
            (vec![label("node", "n1")], 5.0),
            (vec![label("node", "n2")], 2.0),
        ]
        .into_iter()
        .collect();
        assert_eq!(claims(&epochs), want);
    }

    #[test]
    fn an_empty_data_dir_still_reports_its_queue() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        data.create().unwrap();
        std::fs::write(data.inbox().join("j1.json"), "{}").unwrap();
        let text = render(&data, 0);
        assert!(text.contains("# TYPE jaros_queue_jobs gauge\n"), "{text}");
        assert!(
            text.contains("jaros_queue_jobs{area=\"inbox\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("jaros_jobs_total"), "{text}");
    }
}
