//! Which request may do what: the login exchange, the token check every
//! other route passes, the rules for state changes (POST, JSON, own Origin),
//! and the JSON API and event stream. Pages are rendered in [`super::pages`].

use super::http::{self, Request, Response};
use super::{auth, live, pages, Shared};
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The embedded assets: (name, content type, bytes). Nothing else is served
/// under `/assets/`, so no path can leave them.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    ),
];

/// An SSE keep-alive comment is sent after this long without events.
pub const KEEPALIVE_MS: u64 = 15_000;

/// Answers one request; `None` when the route wrote to the stream itself.
pub fn route(shared: &Arc<Shared>, req: &Request, stream: &mut TcpStream) -> Option<Response> {
    if !host_allowed(shared, req) {
        return Some(Response::error(
            421,
            "this console answers only to its own address (Host header)",
        ));
    }
    if req.path == "/login" {
        return Some(login(shared, req));
    }
    if !authenticated(shared, req) {
        return Some(unauthorized(req));
    }
    if req.method == "POST" {
        return Some(match check_state_change(shared, req) {
            Err(r) => r,
            Ok(body) => post(shared, &req.path, body),
        });
    }
    if req.method != "GET" {
        return Some(
            Response::error(405, "only GET, and POST with a JSON body, are served")
                .with("Allow", "GET, POST"),
        );
    }
    if let Some(name) = req.raw_path.strip_prefix("/assets/") {
        return Some(asset(name));
    }
    if req.path == "/events" {
        events(shared, req, stream);
        return None;
    }
    Some(get(shared, req))
}

fn host_allowed(shared: &Shared, req: &Request) -> bool {
    req.header("host")
        .is_some_and(|h| shared.hosts.iter().any(|ok| ok == h))
}

fn session_cookie(shared: &Shared, value: &str, max_age: &str) -> String {
    format!(
        "{}={value}; HttpOnly; SameSite=Strict; Path=/{max_age}",
        shared.cookie_name
    )
}

/// `/login?token=T`: a right token becomes the cookie and a redirect to a
/// URL without it; without one, a page saying where the URL is printed.
fn login(shared: &Shared, req: &Request) -> Response {
    match req.query("token") {
        Some(t) if auth::same(t, &shared.token) => {
            Response::redirect("/").with("Set-Cookie", session_cookie(shared, &shared.token, ""))
        }
        Some(_) => Response::html(401, pages::login(true)),
        None => Response::html(200, pages::login(false)),
    }
}

/// The cookie, or `Authorization: Bearer T` for scripts, holds the token.
fn authenticated(shared: &Shared, req: &Request) -> bool {
    let bearer = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "));
    [req.cookie(&shared.cookie_name), bearer]
        .into_iter()
        .flatten()
        .any(|t| auth::same(t, &shared.token))
}

fn unauthorized(req: &Request) -> Response {
    let wants_json = req.path.starts_with("/api/") || req.path == "/events";
    if wants_json {
        Response::error(
            401,
            "no valid token: open the URL `jaros console` printed, or send Authorization: Bearer TOKEN",
        )
    } else {
        Response::html(401, pages::login(false))
    }
}

/// A state change must be a POST whose Origin is this console and whose
/// body is JSON (a form post cannot be one, so a foreign page cannot forge it).
fn check_state_change(shared: &Shared, req: &Request) -> Result<Value, Response> {
    match req.header("origin") {
        Some(o) if shared.origins.iter().any(|ok| ok == o) => {}
        Some(o) => {
            return Err(Response::error(
                403,
                format!("refused: a state change from origin {o}, not from this console"),
            ))
        }
        None => {
            return Err(Response::error(
                403,
                "refused: a state change without an Origin header",
            ))
        }
    }
    let json_type = req
        .header("content-type")
        .is_some_and(|t| t.split(';').next().map(str::trim) == Some("application/json"));
    if !json_type {
        return Err(Response::error(
            415,
            "refused: state changes take a JSON body (Content-Type: application/json)",
        ));
    }
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| Response::error(400, format!("the body is not JSON: {e}")))?;
    if !body.is_object() {
        return Err(Response::error(400, "the body must be a JSON object"));
    }
    Ok(body)
}

fn asset(name: &str) -> Response {
    // Matched against the raw name: `..`, `%2e%2e` or a slash never matches one.
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => Response::new(200, kind, body.as_bytes()),
        None => Response::error(404, "no such asset"),
    }
}

fn get(shared: &Arc<Shared>, req: &Request) -> Response {
    let path = req.path.as_str();
    if matches!(path, "/api/submit" | "/api/replay" | "/api/evals") {
        return Response::error(
            405,
            "refused: this changes state or runs work; send a POST with a JSON body",
        )
        .with("Allow", "POST");
    }
    match path {
        "/" => pages::overview(shared),
        "/jobs" => pages::jobs(shared, req),
        "/agents" => pages::agents(shared),
        "/replay" => pages::reproducibility(shared, req),
        "/schedules" => pages::schedules(shared),
        "/evals" => pages::evals(shared),
        "/audit" => pages::audit(shared, req),
        "/approvals" => pages::approvals(shared),
        "/api/approvals" => Response::json(200, &pages::approvals_json(shared)),
        "/help" => pages::help(),
        "/api/overview" => Response::json(200, &pages::overview_json(shared)),
        "/api/jobs" => Response::json(200, &pages::jobs_json(shared, req)),
        "/metrics" => Response::new(
            200,
            crate::metrics::CONTENT_TYPE,
            crate::metrics::render(&shared.data, crate::node::lease::now_ms()),
        ),
        _ => match path.strip_prefix("/jobs/") {
            Some(id) => pages::job(shared, id),
            None => match path.strip_prefix("/api/job/") {
                Some(id) => job_json(shared, id),
                None => Response::html(404, pages::not_found(path)),
            },
        },
    }
}

fn job_json(shared: &Shared, id: &str) -> Response {
    let area = shared.live.lock().area_of(id);
    let result = ["done", "failed"]
        .iter()
        .map(|a| shared.data.root().join(a).join(format!("{id}.json")))
        .find_map(|p| crate::fsx::read_to_string(&p).ok())
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let collected = crate::gc::collected(&shared.data, id);
    if area.is_none() && result.is_none() && collected.is_none() {
        return Response::error(404, format!("no job '{id}' in this data dir"));
    }
    let area = area.or(collected.is_some().then_some("collected"));
    Response::json(
        200,
        &json!({"id": id, "area": area, "result": result, "collected": collected}),
    )
}

fn post(shared: &Arc<Shared>, path: &str, body: Value) -> Response {
    match path {
        "/api/submit" => submit(shared, &body),
        "/api/replay" => replay(shared),
        "/api/evals" => evals(shared),
        "/api/verdict" => verdict(shared, &body),
        _ => Response::error(404, format!("no action at {path}")),
    }
}

fn submit(shared: &Shared, body: &Value) -> Response {
    let Some(agent) = body["agent"].as_str() else {
        return Response::error(400, "give the agent to run as \"agent\"");
    };
    let input = body.get("input").cloned().unwrap_or_else(|| json!({}));
    // The plan of today's manifests refuses unknown agents before the inbox;
    // invalid manifests cannot vouch for any agent, so nothing is submitted.
    let plan = match shared.hive_load() {
        Ok(loaded) => loaded,
        Err(errors) => {
            return Response::error(
                409,
                format!(
                    "the hive's manifests do not validate ({} errors; see `jaros validate`), so no agent can be checked",
                    errors.len()
                ),
            )
        }
    };
    match (shared.hooks.submit)(&shared.data, Some(&plan.plan), agent, input) {
        Ok(id) => Response::json(200, &json!({ "id": id })),
        Err(why) => Response::error(400, why),
    }
}

/// A verdict from the Approvals page: `{job, decision, verdict: "approve" |
/// "deny", by, note | reason}`, given as `jaros approve` / `jaros deny` give it.
fn verdict(shared: &Shared, body: &Value) -> Response {
    use crate::approval::store::{Answer, Given, Verdict, VerdictError};
    let text = |key: &str| body[key].as_str().map(str::to_string);
    let (Some(job), Some(decision), Some(by)) = (text("job"), text("decision"), text("by")) else {
        return Response::error(400, "give \"job\", \"decision\" and \"by\" (your name)");
    };
    let answer = match body["verdict"].as_str() {
        Some("approve") => Answer::Approve,
        Some("deny") => Answer::Deny,
        _ => return Response::error(400, "\"verdict\" is \"approve\" or \"deny\""),
    };
    let (Ok(job), Ok(decision)) = (
        crate::decision::JobId::new(job),
        serde_json::from_value::<crate::decision::DecisionId>(json!(decision)),
    ) else {
        return Response::error(400, "not a job id or a decision id");
    };
    let note = text("note")
        .or(text("text"))
        .filter(|t| !t.trim().is_empty());
    let (note, reason) = match answer {
        Answer::Approve => (note, None),
        Answer::Deny => (None, note),
    };
    let verdict = Verdict {
        job,
        decision,
        verdict: answer,
        by,
        at_ms: now_ms(),
        note,
        reason,
    };
    match crate::approval::give_verdict(&shared.data, &verdict) {
        Ok(Given::Counted) => Response::json(200, &json!({"counted": true, "verdict": verdict})),
        Ok(Given::AlreadyGiven(first)) => Response::json(
            409,
            &json!({"error": format!("already answered: {} by {}; that verdict counts", first.verdict.as_str(), first.by)}),
        ),
        Err(e @ VerdictError::Io(_)) => Response::error(500, e.to_string()),
        Err(e) => Response::error(400, e.to_string()),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn replay(shared: &Shared) -> Response {
    let Ok(_one) = shared.busy.try_lock() else {
        return Response::error(
            409,
            "a replay or eval run is in progress; try again when it ends",
        );
    };
    let executor = (shared.hooks.executor)();
    match crate::replay::replay(&shared.data, &executor, &crate::replay::Options::default()) {
        Ok(report) => {
            let mut v = serde_json::to_value(&report).unwrap_or(Value::Null);
            v["reproducible"] = json!(report.reproducible());
            Response::json(200, &v)
        }
        Err(e) => Response::error(409, e.to_string()),
    }
}

/// Runs `jaros eval --json` on the hive: the same runner and the same
/// verdict as the command line, in a process of its own.
fn evals(shared: &Shared) -> Response {
    let Ok(_one) = shared.busy.try_lock() else {
        return Response::error(
            409,
            "a replay or eval run is in progress; try again when it ends",
        );
    };
    let Some(exe) = &shared.exe else {
        return Response::error(500, "the console does not know its own binary");
    };
    let out = std::process::Command::new(exe)
        .arg("--hive")
        .arg(&shared.hive)
        .args(["eval", "--json"])
        .stdin(std::process::Stdio::null())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return Response::error(500, format!("cannot run {}: {e}", exe.display())),
    };
    let code = out.status.code().unwrap_or(-1);
    match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(mut v) => {
            v["exit_code"] = json!(code);
            Response::json(200, &v)
        }
        Err(_) => Response::json(
            200,
            &json!({
                "exit_code": code,
                "error": String::from_utf8_lossy(&out.stderr).trim().to_string(),
            }),
        ),
    }
}

/// `/events`: server-sent events with what changed since the client's last
/// event (`Last-Event-ID` or `?after=`), never a full snapshot per tick.
fn events(shared: &Arc<Shared>, req: &Request, stream: &mut TcpStream) {
    if shared.streams.fetch_add(1, Ordering::SeqCst) >= super::MAX_EVENT_STREAMS {
        shared.streams.fetch_sub(1, Ordering::SeqCst);
        let _ = Response::error(503, "too many event streams open").write_to(&mut *stream);
        return;
    }
    let _ = stream.set_write_timeout(Some(Duration::from_millis(KEEPALIVE_MS)));
    let start = {
        let st = shared.live.lock();
        req.header("last-event-id")
            .and_then(|v| v.parse().ok())
            .or_else(|| req.query("after").and_then(|v| v.parse().ok()))
            .unwrap_or(st.seq)
    };
    let _ = stream_events(shared, stream, start);
    shared.streams.fetch_sub(1, Ordering::SeqCst);
}

fn stream_events(shared: &Shared, stream: &mut TcpStream, mut last: u64) -> std::io::Result<()> {
    http::write_event_stream_head(&mut *stream)?;
    stream
        .write_all(format!("retry: 2000\nevent: hello\ndata: {{\"seq\":{last}}}\n\n").as_bytes())?;
    stream.flush()?;
    loop {
        let batch = {
            let st = shared
                .live
                .wait_after(last, Duration::from_millis(KEEPALIVE_MS));
            match st.events_after(last) {
                Some(events) => Ok(events),
                None => Err(st.seq),
            }
        };
        let mut text = String::new();
        match batch {
            Ok(events) if events.is_empty() => text.push_str(": keep-alive\n\n"),
            Ok(events) => {
                for (seq, data) in events.into_iter().take(live::MAX_EVENTS) {
                    text.push_str(&format!("id: {seq}\ndata: {data}\n\n"));
                    last = seq;
                }
            }
            Err(seq) => {
                text.push_str(&format!("id: {seq}\nevent: reset\ndata: {{}}\n\n"));
                last = seq;
            }
        }
        stream.write_all(text.as_bytes())?;
        stream.flush()?;
    }
}
