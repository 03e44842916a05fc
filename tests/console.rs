//! The console through real HTTP: the binary listens on 127.0.0.1:0, prints
//! its URL, and a tiny std::net client checks what each route lets through.

mod common;

use common::{example_hive, wait_until, Hive};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Every route a client may ask for (method, path).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/jobs"),
    ("GET", "/jobs?area=failed"),
    ("GET", "/jobs/some-job"),
    ("GET", "/agents"),
    ("GET", "/replay"),
    ("GET", "/replay?log=x&from=10"),
    ("GET", "/schedules"),
    ("GET", "/evals"),
    ("GET", "/audit"),
    ("GET", "/help"),
    ("GET", "/events"),
    ("GET", "/api/overview"),
    ("GET", "/metrics"),
    ("GET", "/api/jobs?area=done"),
    ("GET", "/api/job/some-job"),
    ("GET", "/assets/console.js"),
    ("GET", "/assets/console.css"),
    ("GET", "/no-such-page"),
    ("POST", "/api/submit"),
    ("POST", "/api/replay"),
    ("POST", "/api/evals"),
];

/// A running console (alone, or on a node) and what it printed.
struct Console {
    child: Child,
    base: String,
    host: String,
    token: String,
    port: String,
}

impl Console {
    /// `jaros console --addr 127.0.0.1:0` on `hive`.
    fn start(hive: &Hive) -> Console {
        Console::spawn(hive, &["console", "--addr", "127.0.0.1:0"])
    }

    /// `jaros serve --console 127.0.0.1:0` on `hive`: a node with its console.
    fn with_node(hive: &Hive) -> Console {
        let mut args = vec!["serve", "--console", "127.0.0.1:0"];
        args.extend_from_slice(common::FAST);
        Console::spawn(hive, &args)
    }

    fn spawn(hive: &Hive, args: &[&str]) -> Console {
        Console::spawn_reading(hive, args).0
    }

    /// [`Console::spawn`], handing back the rest of its stdout.
    fn spawn_reading(
        hive: &Hive,
        args: &[&str],
    ) -> (Console, BufReader<std::process::ChildStdout>) {
        let mut child = Command::new(common::bin())
            .args(args)
            .current_dir(hive.path())
            .env_remove("JAROS_HIVE")
            .env_remove("JAROS_DATA_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("console: ")
            .unwrap_or_else(|| panic!("no console URL printed: {line:?}"))
            .to_string();
        let (base, token) = url.split_once("/login?token=").expect("a login URL");
        let host = base.trim_start_matches("http://").to_string();
        let port = host.rsplit(':').next().unwrap().to_string();
        let console = Console {
            child,
            base: base.to_string(),
            host,
            token: token.to_string(),
            port,
        };
        (console, stdout)
    }

    fn cookie(&self) -> String {
        format!("jaros_console_{}={}", self.port, self.token)
    }

    /// Sends one request; `headers` are extra lines like `Origin: ...`.
    fn send(&self, method: &str, path: &str, headers: &[String], body: &str) -> Reply {
        let mut stream = TcpStream::connect(&self.host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for h in headers {
            req.push_str(&format!("{h}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(req.as_bytes()).unwrap();
        read_reply(&mut stream, path == "/events")
    }

    fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[format!("Cookie: {}", self.cookie())], "")
    }

    /// A POST as the console's own page sends it.
    fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.send(
            "POST",
            path,
            &[
                format!("Cookie: {}", self.cookie()),
                format!("Origin: {}", self.base),
                "Content-Type: application/json".into(),
            ],
            &body.to_string(),
        )
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Reads a reply; for an event stream only its head (it never ends).
fn read_reply(stream: &mut TcpStream, head_only: bool) -> Reply {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let mut body = String::new();
    if !(head_only && status == 200) {
        reader.read_to_string(&mut body).unwrap();
    }
    Reply { status, head, body }
}

fn inbox_files(hive: &Hive) -> usize {
    common::count_jobs(&hive.data(), "inbox")
}

#[test]
fn every_route_without_the_token_is_401() {
    let hive = example_hive();
    let c = Console::start(&hive);
    for (method, path) in ROUTES {
        let headers = [
            format!("Origin: {}", c.base),
            "Content-Type: application/json".to_string(),
        ];
        let r = c.send(method, path, &headers, "{\"agent\":\"advance\"}");
        assert_eq!(r.status, 401, "{method} {path} answered {}", r.status);
    }
    assert_eq!(inbox_files(&hive), 0);
}

#[test]
fn a_wrong_token_is_401_in_the_url_the_cookie_and_the_header() {
    let hive = example_hive();
    let c = Console::start(&hive);
    let mut wrong = c.token.clone();
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(wrong.len() - 1.., last);
    let r = c.send("GET", &format!("/login?token={wrong}"), &[], "");
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    for (method, path) in ROUTES {
        for header in [
            format!("Cookie: jaros_console_{}={wrong}", c.port),
            format!("Authorization: Bearer {wrong}"),
            format!("Cookie: jaros_console_{}={}", c.port, &c.token[..16]),
        ] {
            let r = c.send(method, path, std::slice::from_ref(&header), "");
            assert_eq!(r.status, 401, "{method} {path} with {header}");
        }
    }
}

#[test]
fn the_printed_url_is_exchanged_for_an_httponly_strict_cookie_and_a_clean_url() {
    let hive = example_hive();
    let c = Console::start(&hive);
    let r = c.send("GET", &format!("/login?token={}", c.token), &[], "");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location").as_deref(), Some("/"));
    let cookie = r.header("set-cookie").expect("a cookie");
    assert!(cookie.starts_with(&c.cookie()), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let overview = c.get("/");
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("Queue") && overview.body.contains("Nodes"));
    // The token file is the owner's alone, and a second start reuses it.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(hive.data().join("console-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = Console::start(&hive);
    assert_eq!(again.token, c.token);
}

#[test]
fn state_changes_from_a_foreign_origin_a_form_or_a_get_are_refused() {
    let hive = example_hive();
    let c = Console::start(&hive);
    let cookie = format!("Cookie: {}", c.cookie());
    let body = r#"{"agent":"advance","input":{}}"#;
    let json_type = "Content-Type: application/json".to_string();
    let foreign = c.send(
        "POST",
        "/api/submit",
        &[
            cookie.clone(),
            "Origin: http://evil.example".into(),
            json_type.clone(),
        ],
        body,
    );
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    let no_origin = c.send("POST", "/api/submit", &[cookie.clone(), json_type], body);
    assert_eq!(no_origin.status, 403);
    // A form can post a body that parses as JSON (enctype text/plain), but
    // not with the JSON content type.
    for form_type in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data; boundary=x",
    ] {
        let form = c.send(
            "POST",
            "/api/submit",
            &[
                cookie.clone(),
                format!("Origin: {}", c.base),
                format!("Content-Type: {form_type}"),
            ],
            body,
        );
        assert_eq!(form.status, 415, "{form_type}: {}", form.body);
    }
    for path in [
        "/api/submit?agent=advance&input=%7B%7D",
        "/api/replay",
        "/api/evals",
    ] {
        let r = c.get(path);
        assert_eq!(r.status, 405, "GET {path}: {}", r.body);
    }
    let delete = c.send("DELETE", "/api/submit", &[cookie], "");
    assert_eq!(delete.status, 405);
    assert_eq!(inbox_files(&hive), 0, "a refused request wrote a job");
    // The same request from the console's own origin goes through.
    let ok = c.post_json("/api/submit", &json!({"agent": "advance", "input": {}}));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(inbox_files(&hive), 1);
}

#[test]
fn traversal_on_the_asset_route_never_leaves_the_assets() {
    let hive = example_hive();
    let c = Console::start(&hive);
    assert_eq!(c.get("/assets/console.js").status, 200);
    for path in [
        "/assets/../console-token",
        "/assets/%2e%2e/console-token",
        "/assets/%2E%2E%2Fconsole-token",
        "/assets/..%2fconsole-token",
        "/assets/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/assets/../../../../etc/passwd",
        "/assets/.%2e/manifests/node.yaml",
        "/assets//etc/passwd",
        "/assets/console.js/../../console-token",
    ] {
        let r = c.get(path);
        assert_ne!(r.status, 200, "{path} was served");
        assert!(!r.body.contains(&c.token), "{path} leaked the token");
        assert!(!r.body.contains("root:"), "{path} leaked /etc/passwd");
    }
}

#[test]
fn a_bad_or_unknown_agent_is_refused_with_a_clear_message() {
    let hive = example_hive();
    let c = Console::start(&hive);
    let r = c.post_json("/api/submit", &json!({"agent": "../x", "input": {}}));
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("'../x'"),
        "{}",
        r.body
    );
    let r = c.post_json("/api/submit", &json!({"agent": "nosuch", "input": {}}));
    assert_eq!(r.status, 400);
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("unknown agent 'nosuch'"), "{msg}");
    assert!(
        msg.contains("advance"),
        "the message lists the agents: {msg}"
    );
    let r = c.post_json("/api/submit", &json!({"input": {}}));
    assert_eq!(r.status, 400);
    assert_eq!(inbox_files(&hive), 0);
}

#[test]
fn every_response_carries_the_security_headers() {
    let hive = example_hive();
    let c = Console::start(&hive);
    let replies = vec![
        c.send("GET", "/", &[], ""),
        c.send("GET", "/login", &[], ""),
        c.get("/"),
        c.get("/jobs"),
        c.get("/assets/console.js"),
        c.get("/api/overview"),
        c.get("/no-such-page"),
        c.get("/assets/%2e%2e/x"),
    ];
    for r in replies {
        let csp = r.header("content-security-policy").expect("a CSP");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
        // No inline script: the page's script comes from the assets.
        assert!(!r.body.contains("<script>"), "inline script in {}", r.body);
    }
}

#[test]
fn a_foreign_host_header_is_refused() {
    let hive = example_hive();
    let c = Console::start(&hive);
    let mut stream = TcpStream::connect(&c.host).unwrap();
    let req = format!(
        "GET / HTTP/1.1\r\nHost: evil.example:{}\r\nCookie: {}\r\n\r\n",
        c.port,
        c.cookie()
    );
    stream.write_all(req.as_bytes()).unwrap();
    let r = read_reply(&mut stream, false);
    assert_eq!(r.status, 421);
}

#[test]
fn a_non_loopback_address_needs_an_explicit_flag() {
    let hive = example_hive();
    let out = hive.path().join("console.stderr");
    let mut child = Command::new(common::bin())
        .args(["console", "--addr", "0.0.0.0:0"])
        .current_dir(hive.path())
        .env_remove("JAROS_HIVE")
        .env_remove("JAROS_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    // A console that serves anyway would never exit: that fails here.
    let code = common::wait_timeout(&mut child, Duration::from_secs(30));
    let stderr = std::fs::read_to_string(&out).unwrap();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--allow-remote"), "{stderr}");
    assert!(
        !hive.data().join("console-token").exists(),
        "a refused console created a token"
    );
}

#[test]
fn a_job_submitted_from_the_console_appears_as_done_and_live() {
    let hive = example_hive();
    let c = Console::with_node(&hive);
    // Open the event stream first: the job's arrival in done/ is an event.
    let mut events = TcpStream::connect(&c.host).unwrap();
    events
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let req = format!(
        "GET /events HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\r\n",
        c.host,
        c.cookie()
    );
    events.write_all(req.as_bytes()).unwrap();
    let mut events = BufReader::new(events);
    let mut line = String::new();
    while line != "event: hello\n" {
        line.clear();
        assert!(events.read_line(&mut line).unwrap() > 0, "the stream ended");
    }
    let r = c.post_json(
        "/api/submit",
        &json!({"agent": "advance", "input": {"note": "from the console"}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let wanted = format!("\"area\":\"done\",\"id\":\"{id}\"");
    let mut seen = Vec::new();
    // Keep-alives arrive every few seconds, so the deadline is checked.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no event for the job; saw {seen:?}"
        );
        line.clear();
        assert!(
            events.read_line(&mut line).unwrap() > 0,
            "the stream ended; saw {seen:?}"
        );
        if line.contains(&wanted) {
            break;
        }
        seen.push(line.clone());
    }
    wait_until(Duration::from_secs(30), "the job as done", || {
        c.get(&format!("/api/job/{id}")).json()["area"] == "done"
    });
    let jobs = c.get("/jobs?area=done");
    assert!(jobs.body.contains(&id), "the Jobs page lists it");
    let page = c.get(&format!("/jobs/{id}"));
    assert_eq!(page.status, 200);
    for part in [
        "from the console",
        "rec job",
        "rec decision",
        "gate: accepted",
        "rec effect",
        "rec end",
    ] {
        assert!(page.body.contains(part), "the job page lacks {part}");
    }
}

#[test]
fn a_failed_job_shows_its_blame_chain_and_replay_and_evals_give_real_verdicts() {
    let hive = example_hive();
    let c = Console::with_node(&hive);
    // The example's seeded failure: the worker hands off to an agent its
    // role may not reach.
    let r = c.post_json(
        "/api/submit",
        &json!({"agent": "planner", "input": {"id": "T3", "ticket": "I want a refund of 1200 EUR for my annual plan."}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until(Duration::from_secs(60), "a failed job", || {
        c.get("/api/overview").json()["counts"]["failed"] != 0
    });
    let failed = c.get("/api/jobs?area=failed").json();
    let id = failed["jobs"][0]["id"].as_str().unwrap().to_string();
    let page = c.get(&format!("/jobs/{id}"));
    assert!(page.body.contains("id=\"blame\""), "no blame section");
    assert!(
        page.body.contains("id=\"counterfactual\""),
        "no counterfactual"
    );
    assert!(page.body.contains("class=\"chain\""));
    // The same facts as `jaros blame`.
    let blame = hive.jaros(&["blame", &id, "--json"]).expect(0).json();
    for link in blame["chain"].as_array().unwrap() {
        assert!(page.body.contains(link["agent"].as_str().unwrap()));
    }
    wait_until(Duration::from_secs(60), "the swarm to settle", || {
        let counts = c.get("/api/overview").json()["counts"].clone();
        counts["inbox"] == 0 && counts["claimed"] == 0
    });
    let replay = c.post_json("/api/replay", &json!({}));
    assert_eq!(replay.status, 200, "{}", replay.body);
    let v = replay.json();
    assert_eq!(v["reproducible"], true, "{v}");
    assert_eq!(v["model_calls"], 0);
    assert_eq!(v["tool_executions"], 0);
    assert!(v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["job"] == id.as_str()));
    let evals = c.post_json("/api/evals", &json!({}));
    assert_eq!(evals.status, 200, "{}", evals.body);
    let e = evals.json();
    let cli = hive.jaros(&["eval", "--json"]);
    assert_eq!(
        e["exit_code"],
        cli.code(),
        "the console's verdict is the CLI's"
    );
    assert_eq!(e["passed"], cli.json()["passed"]);
    assert!(e["total"].as_u64().unwrap() > 0);
}

#[test]
fn the_console_never_writes_manifests_agents_or_tools() {
    let hive = example_hive();
    let before: Vec<_> = ["manifests", "agents", "tools", "evals"]
        .iter()
        .flat_map(|d| common::fingerprint(&hive.path().join(d)))
        .collect();
    let c = Console::start(&hive);
    for (method, path) in ROUTES {
        if *method == "GET" && *path != "/events" {
            c.get(path);
        }
    }
    c.post_json("/api/submit", &json!({"agent": "advance", "input": {}}));
    c.post_json("/api/evals", &json!({}));
    let after: Vec<_> = ["manifests", "agents", "tools", "evals"]
        .iter()
        .flat_map(|d| common::fingerprint(&hive.path().join(d)))
        .collect();
    assert_eq!(before, after);
}

#[test]
#[ignore = "needs chromium: run by scripts/browser-tests.sh"]
fn the_console_works_in_a_real_browser() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/browser_tests.py");
    let own = tempfile::tempdir().unwrap();
    let screens = std::env::var("JAROS_SCREENS")
        .unwrap_or_else(|_| own.path().join("screens").display().to_string());
    let status = Command::new("python3")
        .arg(script)
        .arg(common::bin())
        .arg(&screens)
        .status()
        .expect("python3 runs");
    assert_eq!(
        status.code(),
        Some(0),
        "the browser tests failed (exit 2: Chromium cannot run); see the output above"
    );
}

#[test]
fn a_console_that_cannot_start_never_stops_its_node() {
    let hive = example_hive();
    // The address is taken: the console cannot listen on it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut args = vec!["--console", addr.as_str()];
    args.extend_from_slice(common::FAST);
    let node = common::Node::start(hive.path(), &args);
    let r = hive
        .jaros(&["submit", "advance", "--input", "{}", "--wait", "60"])
        .expect(0);
    assert!(r.stdout().contains("DONE"), "{}", r.stdout());
    let (code, log) = node.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("the console did not start"), "{log}");
}

#[test]
fn sigterm_stops_the_console_cleanly_with_exit_status_0() {
    let hive = example_hive();
    let (mut c, mut stdout) = Console::spawn_reading(&hive, &["console", "--addr", "127.0.0.1:0"]);
    assert_eq!(c.get("/").status, 200);
    std::process::Command::new("kill")
        .args(["-TERM", &c.child.id().to_string()])
        .status()
        .unwrap();
    let code = common::wait_timeout(&mut c.child, Duration::from_secs(30));
    assert_eq!(code, 0, "SIGTERM is a clean stop, not a kill");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "console: stopped\n");
}

#[test]
fn the_approvals_page_lists_what_waits_and_gives_one_verdict_from_its_own_origin_only() {
    let hive = example_hive();
    let c = Console::start(&hive);
    let empty = c.get("/approvals");
    assert!(
        empty.body.contains("Nothing waits for approval"),
        "{}",
        empty.body
    );
    assert!(
        empty.body.contains("id=\"approvals-count\""),
        "the navigation has a count"
    );
    common::park_request(&hive, "job-7", u64::MAX / 2);
    let page = c.get("/approvals");
    assert!(
        page.body.contains("data-decision=\"job-7#1.0\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("approvers: ops-lead, finance"),
        "{}",
        page.body
    );
    assert_eq!(c.get("/api/approvals").json()["count"], 1);
    let body = json!({"job": "job-7", "decision": "job-7#1.0", "verdict": "approve", "by": "finance", "text": "fine"});
    let foreign = c.send(
        "POST",
        "/api/verdict",
        &[
            format!("Cookie: {}", c.cookie()),
            "Origin: http://evil.example".into(),
            "Content-Type: application/json".into(),
        ],
        &body.to_string(),
    );
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    let no_token = c.send(
        "POST",
        "/api/verdict",
        &[
            format!("Origin: {}", c.base),
            "Content-Type: application/json".into(),
        ],
        &body.to_string(),
    );
    assert_eq!(no_token.status, 401, "{}", no_token.body);
    let stranger = c.post_json(
        "/api/verdict",
        &json!({"job": "job-7", "decision": "job-7#1.0", "verdict": "approve", "by": "mallory"}),
    );
    assert_eq!(stranger.status, 400, "{}", stranger.body);
    // Ids with path tricks name no file: the job id is checked as a name, the
    // decision must be the one that waits.
    for (job, decision) in [
        ("../job-7", "job-7#1.0"),
        ("job-7", "job-7#1.0/../../../../evil"),
        ("job-7", "../../evil#1.0"),
    ] {
        let tricky = c.post_json(
            "/api/verdict",
            &json!({"job": job, "decision": decision, "verdict": "approve", "by": "finance"}),
        );
        assert_eq!(tricky.status, 400, "{job} {decision}: {}", tricky.body);
    }
    let verdicts = hive.data().join("approvals/verdicts");
    assert_eq!(
        std::fs::read_dir(&verdicts).map_or(0, |d| d.count()),
        0,
        "nothing was written"
    );
    for dir in [
        hive.path().to_path_buf(),
        hive.data(),
        hive.data().join("approvals"),
    ] {
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.contains("evil")),
            "{}: {names:?}",
            dir.display()
        );
    }
    assert!(
        stranger.body.contains("'mallory' may not answer"),
        "{}",
        stranger.body
    );
    // The navigation's count is live: the event stream says when it changes.
    let mut events = TcpStream::connect(&c.host).unwrap();
    events
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let req = format!(
        "GET /events HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\r\n",
        c.host,
        c.cookie()
    );
    events.write_all(req.as_bytes()).unwrap();
    let mut events = BufReader::new(events);
    let mut line = String::new();
    while line != "event: hello\n" {
        line.clear();
        assert!(events.read_line(&mut line).unwrap() > 0, "the stream ended");
    }
    let ok = c.post_json("/api/verdict", &body);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(
        hive.data().join("inbox/job-7.json").exists(),
        "the job is back in the inbox"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no approvals event; saw {seen:?}"
        );
        line.clear();
        assert!(
            events.read_line(&mut line).unwrap() > 0,
            "the stream ended; saw {seen:?}"
        );
        if line.contains(r#"{"count":0,"type":"approvals"}"#) {
            break;
        }
        seen.push(line.clone());
    }
    // Answered, the request waits for a node to record the verdict: it is
    // not counted, and the page shows the verdict instead of the form.
    let listed = c.get("/api/approvals").json();
    assert_eq!(listed["count"], 0, "{listed}");
    assert_eq!(
        listed["requests"][0]["answered"]["by"], "finance",
        "{listed}"
    );
    let page = c.get("/approvals");
    assert!(
        page.body.contains("answered: approve by finance")
            && !page.body.contains("form class=\"verdict\""),
        "{}",
        page.body
    );
    let again = c.post_json("/api/verdict", &json!({"job": "job-7", "decision": "job-7#1.0", "verdict": "deny", "by": "ops-lead", "text": "no"}));
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("approve by finance"), "{}", again.body);
}
