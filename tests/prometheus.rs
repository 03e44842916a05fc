//! The console's `/metrics` scraped by a real Prometheus server (Debian's
//! `prometheus` package, started by scripts/prometheus-tests.sh's test) on
//! loopback with a bearer token; the queried series are checked against
//! what the test did and what the data dir records.

mod common;

use common::run_in;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn query(prom: &str, q: &str) -> Vec<Value> {
    let mut resp = ureq::get(&format!("{prom}/api/v1/query"))
        .query("query", q)
        .call()
        .unwrap();
    let body: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["status"], "success", "{body}");
    body["data"]["result"].as_array().unwrap().clone()
}

/// The value of a query that yields one sample, or None while it yields none.
fn scalar(prom: &str, q: &str) -> Option<f64> {
    let result = query(prom, q);
    let v = result.first()?["value"][1].as_str()?.parse().ok()?;
    Some(v)
}

fn records(data: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(data.join("log")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "jsonl") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            out.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
        }
    }
    out
}

#[test]
#[ignore = "needs a prometheus server: scripts/prometheus-tests.sh"]
fn prometheus_scrapes_the_consoles_metrics_with_a_bearer_token() {
    let prometheus = std::env::var("JAROS_PROMETHEUS")
        .expect("JAROS_PROMETHEUS names the prometheus binary: run scripts/prometheus-tests.sh");
    let tmp = tempfile::tempdir().unwrap();
    let hive = tmp.path().join("demo");
    run_in(tmp.path(), &["demo", "--dir", hive.to_str().unwrap()]).expect(0);
    let data = hive.join(".jaros-data");
    // A model whose name is hostile to the exposition format: a quote, a
    // backslash, a brace and a newline must come back as one label value.
    let echo = hive.join("manifests/agents/echo.yaml");
    let text = std::fs::read_to_string(&echo).unwrap();
    assert!(text.contains("    model: echo\n"), "{text}");
    std::fs::write(
        &echo,
        text.replace(
            "    model: echo\n",
            &format!("    model: {HOSTILE_MODEL_YAML}\n"),
        ),
    )
    .unwrap();
    run_in(&hive, &["run", "echo", "--id", "hostile", "--input", "{}"]).expect(0);
    // Two jobs wait in the inbox: no node runs.
    for _ in 0..2 {
        run_in(&hive, &["submit", "advance", "--input", "{}"]).expect(0);
    }
    // An hourly schedule that fired at 01:00, then no node ran it until
    // 04:30: its catch-up policy (skip) passes over 02:00, 03:00 and 04:00.
    let (fired, missed) = schedule_slots(&data);

    let mut console = Command::new(common::bin())
        .args(["console", "--addr", "127.0.0.1:0"])
        .current_dir(&hive)
        .env_remove("JAROS_HIVE")
        .env_remove("JAROS_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(console.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let console = Killed(console);
    let url = line.trim().strip_prefix("console: ").unwrap().to_string();
    let (base, token) = url.split_once("/login?token=").unwrap();
    let target = base.trim_start_matches("http://");

    // Every heartbeat file is older than this when Prometheus scrapes it.
    let before_scrapes_ms = now_ms();
    let prom_port = free_port();
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: jaros\n    metrics_path: /metrics\n    authorization:\n      type: Bearer\n      credentials: {token}\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(tmp.path().join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    common::wait_until(Duration::from_secs(120), "a successful scrape", || {
        ureq::get(&format!("{prom}/-/ready")).call().is_ok()
            && scalar(&prom, "up{job=\"jaros\"}") == Some(1.0)
            && scalar(&prom, "count(jaros_queue_jobs)").is_some()
    });

    // What the test did: two jobs wait in the inbox, and the schedule's
    // 01:00 job.
    assert_eq!(scalar(&prom, "jaros_queue_jobs{area=\"inbox\"}"), Some(3.0));
    // What the demo ran: its ended jobs, by the files and by the log.
    let done = common::count_jobs(&data, "done") as f64;
    let failed = common::count_jobs(&data, "failed") as f64;
    assert_eq!(scalar(&prom, "jaros_queue_jobs{area=\"done\"}"), Some(done));
    assert_eq!(
        scalar(&prom, "sum(jaros_jobs_total{state=\"done\"})"),
        Some(done)
    );
    assert_eq!(
        scalar(&prom, "sum(jaros_jobs_total{state=\"failed\"})"),
        Some(failed)
    );
    assert_eq!(
        scalar(&prom, "jaros_jobs_total{agent=\"advance\",state=\"done\"}"),
        Some(2.0)
    );
    assert_eq!(
        scalar(&prom, "sum(jaros_job_duration_seconds_count)"),
        Some(done + failed)
    );
    let records = records(&data);
    let tokens: i64 = records
        .iter()
        .filter(|r| r["kind"] == "model")
        .map(|r| r["tokens_in"].as_i64().unwrap() + r["tokens_out"].as_i64().unwrap())
        .sum();
    assert!(tokens > 0);
    assert_eq!(
        scalar(&prom, "sum(jaros_model_tokens_total)"),
        Some(tokens as f64)
    );
    let rejected = records.iter().filter(|r| r["kind"] == "rejected").count();
    assert!(rejected > 0);
    assert_eq!(
        scalar(&prom, "sum(jaros_gate_refusals_total)"),
        Some(rejected as f64)
    );
    let log_bytes: u64 = std::fs::read_dir(data.join("log"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(
        scalar(&prom, "sum(jaros_log_bytes)"),
        Some(log_bytes as f64)
    );
    assert_eq!(
        scalar(&prom, "jaros_schedule_misses_total{schedule=\"hourly\"}"),
        Some(missed as f64)
    );
    assert_eq!(
        scalar(&prom, "jaros_schedule_fires_total{schedule=\"hourly\"}"),
        Some(fired as f64)
    );
    let markers = std::fs::read_dir(data.join("schedules/slots"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(
        scalar(&prom, "sum(jaros_schedule_fires_total)"),
        Some(markers as f64)
    );

    // Queue depth in every area, against the files.
    for area in ["claimed", "failed"] {
        assert_eq!(
            scalar(&prom, &format!("jaros_queue_jobs{{area=\"{area}\"}}")),
            Some(common::count_jobs(&data, area) as f64),
            "{area}"
        );
    }

    // Model calls: the duration histogram and the tokens, model by model,
    // as recorded; the hostile model name comes back whole.
    let models: Vec<&Value> = records.iter().filter(|r| r["kind"] == "model").collect();
    assert_eq!(
        scalar(&prom, "sum(jaros_model_call_duration_seconds_count)"),
        Some(models.len() as f64)
    );
    let seconds: f64 = models
        .iter()
        .map(|r| r["duration_ms"].as_f64().unwrap() / 1000.0)
        .sum();
    let got = scalar(&prom, "sum(jaros_model_call_duration_seconds_sum)").unwrap();
    assert!((got - seconds).abs() < 1e-6, "{got} vs {seconds}");
    let mut by_model: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in &models {
        let key = (
            r["provider"].as_str().unwrap().to_string(),
            r["model"].as_str().unwrap().to_string(),
        );
        *by_model.entry(key).or_default() +=
            (r["tokens_in"].as_i64().unwrap() + r["tokens_out"].as_i64().unwrap()) as f64;
    }
    assert!(
        by_model.contains_key(&("echo".to_string(), HOSTILE_MODEL.to_string())),
        "{by_model:?}"
    );
    let exposed: BTreeMap<(String, String), f64> =
        query(&prom, "sum by (provider, model) (jaros_model_tokens_total)")
            .iter()
            .map(|s| {
                let m = &s["metric"];
                (
                    (
                        m["provider"].as_str().unwrap().to_string(),
                        m["model"].as_str().unwrap().to_string(),
                    ),
                    s["value"][1].as_str().unwrap().parse::<f64>().unwrap(),
                )
            })
            .collect();
    assert_eq!(exposed, by_model);

    // Claims: every lease epoch of a job, by the node that held it.
    let mut claims: BTreeMap<String, BTreeSet<(String, u64)>> = BTreeMap::new();
    for (node, rs) in records_by_node(&data) {
        for r in rs {
            let epoch = r["epoch"].as_u64().unwrap_or(0);
            if let (Some(job), true) = (r["job"].as_str(), epoch > 0) {
                claims
                    .entry(node.clone())
                    .or_default()
                    .insert((job.to_string(), epoch));
            }
        }
    }
    assert!(
        claims.get("demo").is_some_and(|c| c.len() >= done as usize),
        "{claims:?}"
    );
    for (node, held) in &claims {
        assert_eq!(
            scalar(&prom, &format!("jaros_claims_total{{node=\"{node}\"}}")),
            Some(held.len() as f64),
            "{node}"
        );
    }
    // No node took a job over from another.
    assert_eq!(scalar(&prom, "sum(jaros_takeovers_total)"), None);

    // Heartbeat age: the demo's node stopped before the scrapes began.
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("nodes/demo.json")).unwrap())
            .unwrap();
    let beat_ms = status["beat_ms"].as_u64().unwrap();
    let age = scalar(&prom, "jaros_node_heartbeat_age_seconds{node=\"demo\"}").unwrap();
    let (low, high) = (
        before_scrapes_ms.saturating_sub(beat_ms) as f64 / 1000.0,
        now_ms().saturating_sub(beat_ms) as f64 / 1000.0,
    );
    assert!(low <= age && age <= high, "{low} <= {age} <= {high}");
    assert_eq!(scalar(&prom, "jaros_node_up{node=\"demo\"}"), Some(0.0));
    drop(console);
}

/// A model name with a quote, a backslash, a brace and a newline, and the
/// same in YAML.
const HOSTILE_MODEL: &str = "q\"u\\o}te\nx";
const HOSTILE_MODEL_YAML: &str = r#""q\"u\\o}te\nx""#;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Each log's records, by the node whose log it is.
fn records_by_node(data: &Path) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(data.join("log")).unwrap().flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "jsonl") {
            let node = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let rs = text
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect();
            out.push((node, rs));
        }
    }
    out
}

/// Runs an hourly schedule through the node's own ticks with a downtime
/// between 01:01 and 04:30, and returns the slots it fired and missed
/// (three).
fn schedule_slots(data: &Path) -> (u64, u64) {
    use jaros::schedule::{compile, tick, CatchUp, ScheduleSpec};
    let at = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let spec = ScheduleSpec {
        agent: "advance".into(),
        input: serde_json::json!({}),
        cron: None,
        every: Some("1h".into()),
        at: None,
        timezone: "UTC".into(),
        catch_up: CatchUp::Skip,
        enabled: true,
        jitter: None,
    };
    let t0 = at("2026-03-01T00:00:00Z");
    let trigger = compile(&spec, t0).unwrap();
    let mut fired = tick(data, "hourly", &spec, &trigger, t0, t0)
        .unwrap()
        .fired
        .len();
    fired += tick(
        data,
        "hourly",
        &spec,
        &trigger,
        t0,
        at("2026-03-01T01:01:00Z"),
    )
    .unwrap()
    .fired
    .len();
    assert!(fired > 0);
    let since = at("2026-03-01T04:30:00Z");
    let report = tick(data, "hourly", &spec, &trigger, since, since).unwrap();
    assert!(report.fired.is_empty(), "{report:?}");
    let missed = jaros::schedule::fire::misses(data);
    assert_eq!(missed, [("hourly".to_string(), 3)]);
    (fired as u64, 3)
}
