//! Console benchmarks on a data dir holding 100,000 finished jobs: start-up
//! (listing the areas once), time to first byte and to the whole page of
//! Overview and Jobs (first and a deep page), the CPU an idle console uses,
//! the CPU one new result costs it, and the binary's size.
//!
//! Run: `cargo bench --bench console` (prints a Markdown table for the
//! README). Set JAROS_BENCH_JOBS to change the number of finished jobs.
//! Set JAROS_BENCH_HIVE_ONLY=DIR to only make the hive (with its data dir of
//! finished jobs) at DIR and exit: `scripts/console-render-bench.sh` times
//! the pages in a browser on it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_JOBS: usize = 100_000;
const SAMPLES: usize = 30;
const IDLE_SECONDS: u64 = 10;
const NEW_RESULTS: usize = 2000;

fn jobs_wanted() -> usize {
    std::env::var("JAROS_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_JOBS)
}

/// A result file as a node writes it into `done/`.
fn result_file(dir: &Path, n: usize) {
    let id = format!("j-{}-{:08x}", 1_700_000_000_000u64 + n as u64, n);
    let body = serde_json::json!({
        "job": id, "agent": "advance", "state": "DONE",
        "result": {"decisions": 1, "rejected": 0, "results": [{"ok": true, "type": "advance"}], "state": "DONE"},
        "log": {"node": "bench", "seq": n * 4 + 5},
    });
    std::fs::write(dir.join(format!("{id}.json")), body.to_string()).unwrap();
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis: utime is the 14th
    // field of the line, stime the 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// (time to first byte, time to the last byte) of one GET.
fn get(host: &str, token: &str, path: &str) -> (Duration, Duration, usize) {
    let start = Instant::now();
    let mut s = TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 1];
    s.read_exact(&mut first).unwrap();
    let ttfb = start.elapsed();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let head = String::from_utf8_lossy(&rest[..rest.len().min(20)]).to_string();
    assert!(head.starts_with("TTP/1.1 200"), "{path}: {head}");
    (ttfb, start.elapsed(), rest.len() + 1)
}

fn median_p90(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(v[v.len() * 9 / 10]))
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `jaros init` a hive at `hive` and fill its `done/` with `n` results.
fn make_hive(bin: &str, hive: &Path, n: usize) {
    let ok = Command::new(bin)
        .args(["init", hive.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let data = hive.join(".jaros-data");
    let done = data.join("done");
    std::fs::create_dir_all(&done).unwrap();
    let t = Instant::now();
    for i in 0..n {
        result_file(&done, i);
    }
    eprintln!(
        "wrote {n} result files in {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_jaros");
    let n = jobs_wanted();
    if let Some(hive) = std::env::var_os("JAROS_BENCH_HIVE_ONLY") {
        make_hive(bin, Path::new(&hive), n);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hive = dir.path().join("hive");
    make_hive(bin, &hive, n);
    let done = hive.join(".jaros-data").join("done");

    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["console", "--addr", "127.0.0.1:0"])
        .current_dir(&hive)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid = child.id();
    let _guard = Killed(child);
    let url = line.trim().strip_prefix("console: ").unwrap().to_string();
    let (base, token) = url.split_once("/login?token=").unwrap();
    let host = base.trim_start_matches("http://").to_string();
    // bind lists the areas before the URL is printed: the console is ready.
    let startup = started.elapsed();

    let mut rows = Vec::new();
    for (name, path) in [
        ("Overview", "/".to_string()),
        ("Jobs, done, first page", "/jobs?area=done".to_string()),
        (
            "Jobs, done, last page",
            format!("/jobs?area=done&page={}", n / 50),
        ),
        ("/api/jobs, done", "/api/jobs?area=done&page=10".to_string()),
    ] {
        let _ = get(&host, token, &path); // warm the manifests cache
        let mut firsts = Vec::new();
        let mut alls = Vec::new();
        let mut bytes = 0;
        for _ in 0..SAMPLES {
            let (f, a, b) = get(&host, token, &path);
            firsts.push(f);
            alls.push(a);
            bytes = b;
        }
        let (f50, f90) = median_p90(firsts);
        let (a50, a90) = median_p90(alls);
        rows.push(format!(
            "| {name} | {f50:.2} / {f90:.2} | {a50:.2} / {a90:.2} | {bytes} |"
        ));
    }

    let hz = ticks_per_second();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(IDLE_SECONDS));
    let idle = (cpu_ticks(pid) - before) as f64 / hz as f64 / IDLE_SECONDS as f64 * 100.0;

    // The cost of an update: new results arriving while the history holds n.
    let before = cpu_ticks(pid);
    for i in n..n + NEW_RESULTS {
        result_file(&done, i);
    }
    let want = (n + NEW_RESULTS).to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut s = TcpStream::connect(&host).unwrap();
        write!(
            s,
            "GET /api/overview HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        if text.contains(&format!("\"done\":{want}")) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let per_update_us =
        (cpu_ticks(pid) - before) as f64 / hz as f64 / NEW_RESULTS as f64 * 1_000_000.0;
    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);

    println!("\nConsole over a data dir with {n} finished jobs (median / p90 of {SAMPLES}):\n");
    println!("| page | first byte, ms | whole page, ms | bytes |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| start-up to the printed URL (lists the areas once) | {:.0} ms |",
        startup.as_secs_f64() * 1000.0
    );
    println!("| idle CPU over {IDLE_SECONDS} s | {idle:.2} % of one core |");
    println!(
        "| CPU per new result file ({NEW_RESULTS} arriving, incl. the polls) | {per_update_us:.0} µs |"
    );
    println!(
        "| binary size ({}) | {:.1} MB |",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        size as f64 / 1e6
    );
}
