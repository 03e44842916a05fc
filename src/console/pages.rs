//! The console's pages, rendered on the server as HTML (the one script,
//! `assets/console.js`, adds live updates and the POST actions). Each page
//! answers one question an operator has; every list is paged.

use super::http::{esc, url_encode, Request, Response};
use super::Shared;
use crate::log::record::Body;
use serde_json::{json, Value};
use std::io::BufRead;
use std::sync::Arc;

/// Rows on one page of any list.
pub const PAGE_SIZE: usize = 50;
/// Most bytes of a prompt or response shown on a job's page.
pub const MAX_BLOB_SHOWN_BYTES: usize = 64 * 1024;
/// Most records of a job shown on its page.
pub const MAX_TIMELINE_RECORDS: usize = 500;
/// Lease time assumed for a lease file that does not say its own.
const LEASE_MS_FALLBACK: u64 = 30_000;

const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/jobs", "Jobs"),
    ("/agents", "Agents"),
    ("/replay", "Reproducibility"),
    ("/schedules", "Schedules"),
    ("/evals", "Evals"),
    ("/audit", "Audit"),
    ("/approvals", "Approvals"),
    ("/help", "Help"),
];

fn layout(title: &str, active: &str, body: &str) -> String {
    let nav: String = NAV
        .iter()
        .map(|(href, name)| {
            let class = if *href == active {
                " class=\"active\""
            } else {
                ""
            };
            // The count of waiting approvals is filled in by console.js.
            let count = if *href == "/approvals" {
                " <span class=\"count\" id=\"approvals-count\"></span>"
            } else {
                ""
            };
            format!("<a href=\"{href}\"{class}>{name}{count}</a>")
        })
        .collect();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · jaros console</title><link rel=\"stylesheet\" href=\"/assets/console.css\">\
<script src=\"/assets/console.js\" defer></script></head>\
<body data-page=\"{}\"><header><span class=\"brand\">jaros</span><nav>{nav}</nav>\
<span id=\"live\" class=\"live off\" title=\"live updates\">offline</span></header>\
<main><h1>{}</h1>{body}</main></body></html>\n",
        esc(title),
        esc(active),
        esc(title)
    )
}

fn page(title: &str, active: &str, body: &str) -> Response {
    Response::html(200, layout(title, active, body))
}

pub fn login(bad: bool) -> String {
    let why = if bad {
        "<p class=\"bad\">That token is not this console's.</p>"
    } else {
        ""
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>jaros console · sign in</title>\
<link rel=\"stylesheet\" href=\"/assets/console.css\"></head><body><main><h1>jaros console</h1>{why}\
<p>Open the URL that <code>jaros console</code> (or <code>jaros serve --console</code>) printed: \
it carries the token once, and the console keeps it in a cookie for this browser.</p>\
<p>The token lives in <code>console-token</code> in the data dir, readable by its owner only.</p></main></body></html>\n"
    )
}

pub fn not_found(path: &str) -> String {
    layout(
        "Not found",
        "",
        &format!("<p>Nothing at <code>{}</code>.</p>", esc(path)),
    )
}

fn age(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 120_000 {
        format!("{}s", ms / 1000)
    } else if ms < 7_200_000 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}h", ms / 3_600_000)
    }
}

fn now_ms() -> u64 {
    crate::node::lease::now_ms()
}

fn time_of(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn job_link(id: &str) -> String {
    format!(
        "<a href=\"/jobs/{}\" class=\"job\">{}</a>",
        url_encode(id),
        esc(id)
    )
}

// ---- Overview -------------------------------------------------------------

/// What the Overview shows and `/api/overview` returns.
pub fn overview_json(shared: &Shared) -> Value {
    let (counts, throughput, notified) = {
        let st = shared.live.lock();
        (st.counts(), st.throughput.clone(), st.notified)
    };
    let nodes: Vec<Value> = crate::node::status::nodes(&shared.data)
        .into_iter()
        .map(|n| {
            json!({
                "node": n.status.node,
                "live": n.live,
                "stopped": n.status.stopped,
                "age_ms": n.age_ms,
                "pool_size": n.status.pool_size,
                "running": n.status.running.len(),
                "done": n.status.done,
                "failed": n.status.failed,
                "plan": n.status.plan,
                "executor": n.status.executor,
            })
        })
        .collect();
    let now = now_ms() / 1000;
    let per_minute: Vec<Value> = (0..10u64)
        .rev()
        .map(|m| {
            let from = now.saturating_sub((m + 1) * 60);
            let to = now.saturating_sub(m * 60);
            let (d, f) = throughput
                .iter()
                .filter(|(s, _, _)| *s > from && *s <= to)
                .fold((0, 0), |(d, f), (_, dd, ff)| (d + dd, f + ff));
            json!({"minutes_ago": m, "done": d, "failed": f})
        })
        .collect();
    json!({"counts": counts, "nodes": nodes, "throughput": per_minute, "notifications": notified})
}

pub fn overview(shared: &Arc<Shared>) -> Response {
    let o = overview_json(shared);
    let mut b = String::new();
    b += "<section><h2>Queue</h2><div class=\"cards\">";
    for area in super::live::AREAS {
        b += &format!(
            "<a class=\"card\" href=\"/jobs?area={area}\"><span class=\"n\" data-count=\"{area}\">{}</span><span>{area}</span></a>",
            o["counts"][area]
        );
    }
    b += "</div></section>";
    b += "<section><h2>Nodes</h2>";
    let nodes = o["nodes"].as_array().cloned().unwrap_or_default();
    if nodes.is_empty() {
        b += "<p class=\"muted\">No node has run on this data dir. Start one with <code>jaros serve</code>.</p>";
    } else {
        b += "<table><tr><th>node</th><th>state</th><th>heartbeat</th><th>pool use</th><th>done</th><th>failed</th><th>plan</th></tr>";
        for n in &nodes {
            let state = if n["live"] == true {
                "live"
            } else if n["stopped"] == true {
                "stopped"
            } else {
                "silent"
            };
            b += &format!(
                "<tr><td>{}</td><td><span class=\"badge {state}\">{state}</span></td><td>{} ago</td><td>{} / {}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(n["node"].as_str().unwrap_or("")),
                age(n["age_ms"].as_u64().unwrap_or(0)),
                n["running"],
                n["pool_size"],
                n["done"],
                n["failed"],
                esc(&n["plan"].as_str().unwrap_or("").chars().take(12).collect::<String>())
            );
        }
        b += "</table>";
    }
    b += "</section>";
    b += "<section><h2>Throughput, last 10 minutes</h2>";
    b += &throughput_svg(&o["throughput"]);
    b += "<p class=\"muted\">Finished jobs per minute seen by this console since it started.</p></section>";
    b += "<section><h2>Manifests</h2>";
    match shared.hive_load() {
        Ok(loaded) => {
            b += &format!(
                "<p><span class=\"badge ok\">valid</span> {}</p><p>plan <code id=\"plan-digest\">sha256:{}</code></p>",
                esc(&loaded.summary()),
                loaded.plan.digest().to_hex()
            );
            let rows = (shared.hooks.schedules)(&loaded, shared.data.root(), chrono::Utc::now());
            b += "<h2>Schedules due next</h2>";
            b += &schedule_table(&rows, 5);
        }
        Err(errors) => {
            b += &format!(
                "<p><span class=\"badge failed\">invalid</span> {} error(s); a running node keeps its last good plan.</p><pre>{}</pre>",
                errors.len(),
                esc(&errors.join("\n"))
            );
        }
    }
    b += "</section>";
    page("Overview", "/", &b)
}

fn throughput_svg(per_minute: &Value) -> String {
    let bars = per_minute.as_array().cloned().unwrap_or_default();
    let max = bars
        .iter()
        .map(|m| m["done"].as_u64().unwrap_or(0) + m["failed"].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h) = (40u64, 100u64);
    let mut svg = format!(
        "<svg class=\"chart\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"finished jobs per minute\">",
        w * bars.len() as u64,
        h + 16
    );
    for (i, m) in bars.iter().enumerate() {
        let d = m["done"].as_u64().unwrap_or(0);
        let f = m["failed"].as_u64().unwrap_or(0);
        let dh = d * h / max;
        let fh = f * h / max;
        let x = i as u64 * w + 4;
        svg += &format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{dh}\" fill=\"#3a7\"><title>{d} done</title></rect>",
            h - dh,
            w - 8
        );
        svg += &format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{fh}\" fill=\"#c44\"><title>{f} failed</title></rect>",
            h - dh - fh,
            w - 8
        );
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">-{}m</text>",
            x + (w - 8) / 2,
            h + 12,
            m["minutes_ago"].as_u64().unwrap_or(0) + 1
        );
    }
    svg + "</svg>"
}

fn schedule_table(rows: &[Value], limit: usize) -> String {
    if rows.is_empty() {
        return "<p class=\"muted\">No schedules (add a Schedule manifest under manifests/schedules).</p>".into();
    }
    let mut sorted: Vec<&Value> = rows.iter().collect();
    sorted.sort_by_key(|r| r["next_run_utc"].as_str().unwrap_or("~").to_string());
    let mut s = String::from(
        "<table><tr><th>schedule</th><th>when</th><th>enabled</th><th>last run</th><th>next run</th></tr>",
    );
    for r in sorted.into_iter().take(limit) {
        let text = |v: &Value| esc(v.as_str().unwrap_or("-"));
        if !r["error"].is_null() {
            s += &format!(
                "<tr><td>{}</td><td colspan=\"4\" class=\"bad\">broken ({}): {}</td></tr>",
                text(&r["name"]),
                text(&r["file"]),
                text(&r["error"])
            );
            continue;
        }
        let last = match (r["last_run"].as_str(), r["last_job"].as_str()) {
            (Some(run), Some(job)) => format!("{} {}", esc(run), job_link(job)),
            (Some(run), None) => esc(run),
            _ => "never".into(),
        };
        let next = match (r["next_run_local"].as_str(), r["next_run_utc"].as_str()) {
            (Some(l), Some(u)) if l == u => format!("{} (UTC)", esc(u)),
            (Some(l), Some(u)) => format!("{} ({}) = {}", esc(l), text(&r["timezone"]), esc(u)),
            _ if r["enabled"] != true => "none (disabled)".into(),
            _ => "none (a one-shot that has passed)".into(),
        };
        s += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{last}</td><td>{next}</td></tr>",
            text(&r["name"]),
            text(&r["trigger_words"]),
            if r["enabled"] == true { "yes" } else { "no" }
        );
    }
    s + "</table>"
}

// ---- Jobs -----------------------------------------------------------------

fn area_of_query(req: &Request) -> &'static str {
    let asked = req.query("area").unwrap_or("done");
    super::live::AREAS
        .iter()
        .find(|a| **a == asked)
        .copied()
        .unwrap_or("done")
}

/// One page of an area: ids newest first, with the holding node for claims.
pub fn jobs_json(shared: &Shared, req: &Request) -> Value {
    let area = area_of_query(req);
    let index = super::live::AREAS
        .iter()
        .position(|a| *a == area)
        .unwrap_or(2);
    let page_no = req.query_u64("page", 0) as usize;
    let (rows, total) = {
        let st = shared.live.lock();
        (
            st.areas[index].page(page_no, PAGE_SIZE),
            st.areas[index].len(),
        )
    };
    let jobs: Vec<Value> = rows
        .into_iter()
        .map(|(id, ms)| {
            let holder = (area == "claimed")
                .then(|| crate::node::lease::current(&shared.data, &id, LEASE_MS_FALLBACK))
                .flatten()
                .map(|l| json!({"node": l.node, "epoch": l.epoch, "expires_ms": l.expires_ms}));
            json!({"id": id, "time_ms": ms, "holder": holder})
        })
        .collect();
    json!({"area": area, "page": page_no, "page_size": PAGE_SIZE, "total": total, "jobs": jobs})
}

pub fn jobs(shared: &Arc<Shared>, req: &Request) -> Response {
    let listing = jobs_json(shared, req);
    let area = listing["area"].as_str().unwrap_or("done");
    let mut b = String::new();
    b += "<section><h2>Submit a job</h2><form id=\"submit\" class=\"submit\"><label>agent <select name=\"agent\" id=\"agent\">";
    match shared.hive_load() {
        Ok(loaded) => {
            for (name, spec) in &loaded.plan.agents {
                b += &format!(
                    "<option value=\"{}\" title=\"{}\">{}</option>",
                    esc(name),
                    esc(&spec.description),
                    esc(name)
                );
            }
        }
        Err(_) => b += "<option value=\"\">(the manifests do not validate)</option>",
    }
    b += "</select></label><label>input (JSON) <textarea name=\"input\" id=\"input\" rows=\"3\">{}</textarea></label>\
<button type=\"submit\">Submit</button><p id=\"submit-status\" class=\"status\" role=\"status\"></p></form></section>";
    b += "<section><h2>Queue</h2><div class=\"tabs\">";
    {
        let st = shared.live.lock();
        for (i, a) in super::live::AREAS.iter().enumerate() {
            let class = if *a == area { " class=\"active\"" } else { "" };
            b += &format!(
                "<a href=\"/jobs?area={a}\"{class}>{a} <span data-count=\"{a}\">{}</span></a>",
                st.areas[i].len()
            );
        }
    }
    b += "</div>";
    let jobs = listing["jobs"].as_array().cloned().unwrap_or_default();
    b += &format!(
        "<table id=\"queue\" data-area=\"{area}\"><tr><th>job</th><th>since</th>{}</tr>",
        if area == "claimed" {
            "<th>held by</th>"
        } else {
            ""
        }
    );
    for j in &jobs {
        let id = j["id"].as_str().unwrap_or("");
        let holder = if area == "claimed" {
            match j["holder"]["node"].as_str() {
                Some(n) => format!("<td>{} (epoch {})</td>", esc(n), j["holder"]["epoch"]),
                None => "<td class=\"muted\">no lease yet</td>".into(),
            }
        } else {
            String::new()
        };
        b += &format!(
            "<tr><td>{}</td><td>{}</td>{holder}</tr>",
            job_link(id),
            time_of(j["time_ms"].as_u64().unwrap_or(0))
        );
    }
    b += "</table>";
    if jobs.is_empty() {
        b += &format!("<p class=\"muted\">No jobs in {area}.</p>");
    }
    b += &pager(
        &format!("/jobs?area={area}&"),
        listing["page"].as_u64().unwrap_or(0),
        listing["total"].as_u64().unwrap_or(0),
    );
    b += "</section>";
    page("Jobs", "/jobs", &b)
}

fn pager(base: &str, page_no: u64, total: u64) -> String {
    let pages = total.div_ceil(PAGE_SIZE as u64).max(1);
    let mut s = format!(
        "<p class=\"pager\">page {} of {pages} ({total} in all) ",
        page_no + 1
    );
    if page_no > 0 {
        s += &format!("<a href=\"{base}page={}\">newer</a> ", page_no - 1);
    }
    if page_no + 1 < pages {
        s += &format!("<a href=\"{base}page={}\">older</a>", page_no + 1);
    }
    s + "</p>"
}

// ---- One job --------------------------------------------------------------

pub fn job(shared: &Arc<Shared>, id: &str) -> Response {
    let Ok(job_id) = crate::decision::JobId::new(id) else {
        return Response::html(404, not_found(&format!("/jobs/{id}")));
    };
    let area = shared.live.lock().area_of(id);
    let result_file = ["done", "failed"].iter().find_map(|a| {
        let p = shared.data.root().join(a).join(format!("{id}.json"));
        crate::fsx::read_to_string(&p).ok().map(|text| (*a, text))
    });
    let history = crate::replay::job_history(&shared.data, &job_id).unwrap_or_default();
    let collected = crate::gc::collected(&shared.data, id);
    if area.is_none() && result_file.is_none() && history.is_empty() && collected.is_none() {
        return Response::html(404, not_found(&format!("/jobs/{id}")));
    }
    let fallback = match (&result_file, &collected) {
        (Some((a, _)), _) => a,
        (None, Some(_)) => "collected",
        (None, None) => "unknown",
    };
    let mut b = format!(
        "<p>area <span class=\"badge {0}\" id=\"job-area\" data-job=\"{1}\">{0}</span></p>",
        area.unwrap_or(fallback),
        esc(id)
    );
    if let (None, Some(stone)) = (&result_file, &collected) {
        b += &format!(
            "<section><h2>Result (collected)</h2><p id=\"result\">The job ended ({}); its result was removed by <code>jaros gc</code> as the node's retention says.</p></section>",
            esc(&stone.was)
        );
    }
    if let Some((a, text)) = &result_file {
        let pretty = serde_json::from_str::<Value>(text)
            .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
            .unwrap_or_else(|_| text.clone());
        b += &format!(
            "<section><h2>Result ({a})</h2><pre id=\"result\">{}</pre></section>",
            esc(&pretty)
        );
    }
    if matches!(result_file, Some(("failed", _))) || history.iter().any(is_failed_end) {
        b += &blame_section(shared, &job_id);
    }
    b += "<section><h2>Timeline</h2>";
    if history.is_empty() {
        b += "<p class=\"muted\">No records yet (the job has not started, or it failed before it was accepted).</p>";
    }
    b += "<ol class=\"timeline\">";
    for body in history.iter().take(MAX_TIMELINE_RECORDS) {
        b += &timeline_item(shared, body);
    }
    b += "</ol>";
    if history.len() > MAX_TIMELINE_RECORDS {
        b += &format!(
            "<p class=\"muted\">{} more records: see <code>jaros logs</code>.</p>",
            history.len() - MAX_TIMELINE_RECORDS
        );
    }
    b += "</section>";
    page(&format!("Job {id}"), "/jobs", &b)
}

fn is_failed_end(body: &Body) -> bool {
    matches!(body, Body::End { state, .. } if *state == crate::state::State::Failed)
}

/// The same facts as `jaros blame`: the chain and the counterfactual.
fn blame_section(shared: &Shared, job: &crate::decision::JobId) -> String {
    let executor = (shared.hooks.executor)();
    let blame = match crate::replay::blame(&shared.data, &executor, job) {
        Ok(b) => b,
        Err(e) => {
            return format!(
                "<section id=\"blame\"><h2>Blame</h2><p class=\"muted\">{}</p></section>",
                esc(&e.to_string())
            )
        }
    };
    let mut s = String::from("<section id=\"blame\"><h2>Blame</h2>");
    if let Some(r) = &blame.reason {
        s += &format!("<p>reason: <span class=\"bad\">{}</span></p>", esc(r));
    }
    s += "<ol class=\"chain\">";
    for link in &blame.chain {
        s += &format!(
            "<li><b>{}</b> in {}: decision <code>{}</code> ({}): {}</li>",
            esc(link.agent.as_str()),
            job_link(link.job.as_str()),
            esc(&link
                .decision
                .as_ref()
                .map_or("-".to_string(), |d| d.to_string())),
            esc(link.kind.as_deref().unwrap_or("-")),
            esc(&link.outcome)
        );
    }
    s += "</ol>";
    if let Some(c) = &blame.counterfactual {
        s += &format!(
            "<p id=\"counterfactual\">counterfactual: with <code>{}</code> {} the job ends <b>{}</b>: the failure {}</p>",
            esc(&c.decision.to_string()),
            if c.method == "removed" {
                "removed".to_string()
            } else {
                format!("given the {}", esc(&c.method))
            },
            c.state_without,
            if c.failure_disappears {
                "disappears; this decision is a cause of it"
            } else {
                "remains; this decision alone does not explain it"
            }
        );
    }
    s + "</section>"
}

fn blob_text(shared: &Shared, digest: &crate::canon::Digest) -> String {
    let path = crate::log::blobs::Blobs::new(shared.data.root()).path_of(digest);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let shown = &bytes[..bytes.len().min(MAX_BLOB_SHOWN_BYTES)];
            let mut text = String::from_utf8_lossy(shown).into_owned();
            if bytes.len() > MAX_BLOB_SHOWN_BYTES {
                text += &format!("\n… ({} bytes in all)", bytes.len());
            }
            text
        }
        Err(e) => format!("(blob {} unreadable: {e})", digest.short()),
    }
}

fn timeline_item(shared: &Shared, body: &Body) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let (kind, detail) = match body {
        Body::Job {
            agent,
            input,
            parent,
            plan,
            ..
        } => (
            "job",
            format!(
                "accepted for agent <b>{}</b> under plan <code>{}</code>{}<pre>{}</pre>",
                esc(agent.as_str()),
                plan.short(),
                parent
                    .as_ref()
                    .map_or(String::new(), |p| format!(", handed off by {}", job_link(p.as_str()))),
                esc(&pretty(input))
            ),
        ),
        Body::Model {
            provider,
            model,
            prompt,
            response,
            tokens_in,
            tokens_out,
            duration_ms,
            error,
            turn,
            ..
        } => (
            "model",
            format!(
                "turn {turn}: {} / {} — {tokens_in} tokens in, {tokens_out} out, {duration_ms} ms{}\
<details><summary>prompt</summary><pre>{}</pre></details><details><summary>response</summary><pre>{}</pre></details>",
                esc(provider),
                esc(model),
                error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" <span class=\"bad\">{}</span>", esc(e))),
                esc(&blob_text(shared, prompt)),
                esc(&blob_text(shared, response))
            ),
        ),
        Body::Decision { decision, .. } => (
            "decision",
            format!(
                "<code>{}</code> by <b>{}</b>: <b>{}</b> <span class=\"badge ok\">gate: accepted</span><pre>{}</pre>",
                esc(&decision.id.to_string()),
                esc(decision.source.as_str()),
                esc(&decision.kind),
                esc(&pretty(&decision.payload))
            ),
        ),
        Body::Rejected {
            decision,
            check,
            reason,
            ..
        } => (
            "rejected",
            format!(
                "<code>{}</code> by <b>{}</b>: <b>{}</b> <span class=\"badge failed\">gate: rejected ({})</span> {}<pre>{}</pre>",
                esc(&decision.id.to_string()),
                esc(decision.source.as_str()),
                esc(&decision.kind),
                esc(check),
                esc(reason),
                esc(&pretty(&decision.payload))
            ),
        ),
        Body::Effect {
            decision,
            result,
            error,
            state,
            ..
        } => (
            "effect",
            format!(
                "of <code>{}</code>{} → state <code>{}</code><pre>{}</pre>",
                esc(&decision.to_string()),
                error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" <span class=\"bad\">error: {}</span>", esc(e))),
                state.short(),
                esc(result.as_str())
            ),
        ),
        Body::End {
            state,
            result,
            reason,
            blame,
            ..
        } => (
            "end",
            format!(
                "ended <span class=\"badge {}\">{state}</span>{}{}<pre>{}</pre>",
                state.to_string().to_lowercase(),
                reason
                    .as_ref()
                    .map_or(String::new(), |r| format!(" — {}", esc(r))),
                blame
                    .as_ref()
                    .map_or(String::new(), |d| format!(" (blamed on <code>{}</code>)", esc(&d.to_string()))),
                esc(result.as_str())
            ),
        ),
        other => (other.kind(), String::new()),
    };
    format!("<li class=\"rec {kind}\"><span class=\"kind\">{kind}</span> {detail}</li>")
}

// ---- Agents ---------------------------------------------------------------

pub fn agents(shared: &Arc<Shared>) -> Response {
    let loaded = match shared.hive_load() {
        Ok(l) => l,
        Err(errors) => {
            return page(
                "Agents",
                "/agents",
                &format!(
                    "<p class=\"bad\">The manifests do not validate:</p><pre>{}</pre>",
                    esc(&errors.join("\n"))
                ),
            )
        }
    };
    let plan = &loaded.plan;
    let mut b = format!(
        "<p>plan <code>sha256:{}</code> — from the manifests; they change through git, never here.</p>",
        plan.digest().to_hex()
    );
    b += "<section><h2>Agents</h2><table id=\"agents\"><tr><th>agent</th><th>role</th><th>proposes by</th><th>steps</th><th>description</th></tr>";
    for (name, a) in &plan.agents {
        let how = match &a.kind {
            crate::plan::AgentKind::Builtin { name } => format!("built-in {}", esc(name)),
            crate::plan::AgentKind::Template { template } => {
                format!("template <code>{}</code>", esc(template))
            }
            crate::plan::AgentKind::Model {
                provider,
                model,
                template,
                ..
            } => format!(
                "model {} / {} with <code>{}</code>",
                esc(provider),
                esc(model),
                esc(template)
            ),
        };
        b += &format!(
            "<tr><td><b>{}</b></td><td>{}</td><td>{how}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            esc(&a.role),
            a.max_steps,
            esc(&a.description)
        );
    }
    b += "</table></section>";
    b += "<section><h2>Hand-offs</h2>";
    b += &handoff_svg(plan);
    b += "</section>";
    b += "<section><h2>Roles: what each may propose</h2><table class=\"grants\" id=\"grants\"><tr><th>role</th>";
    for t in plan.types.keys() {
        b += &format!("<th class=\"v\"><span>{}</span></th>", esc(t));
    }
    b += "<th>read</th><th>write</th><th>hand-off</th><th>hosts</th><th>budget</th></tr>";
    for (role, g) in &plan.roles {
        b += &format!("<tr><td><b>{}</b></td>", esc(role));
        for t in plan.types.keys() {
            b += if g.types.contains(t) {
                "<td class=\"yes\" title=\"granted\">✓</td>"
            } else {
                "<td class=\"no\"></td>"
            };
        }
        let list = |items: Vec<&String>| {
            if items.is_empty() {
                "—".to_string()
            } else {
                items
                    .iter()
                    .map(|s| esc(s))
                    .collect::<Vec<_>>()
                    .join("<br>")
            }
        };
        b += &format!(
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} decisions, {} model calls, {} tokens, {} ms</td></tr>",
            list(g.read.iter().collect()),
            list(g.write.iter().collect()),
            list(g.handoff.iter().collect()),
            list(g.hosts.iter().collect()),
            g.budget.decisions,
            g.budget.model_calls,
            g.budget.tokens,
            g.budget.wall_ms
        );
    }
    b += "</table></section>";
    b += "<section><h2>Decision types and tools</h2><table><tr><th>type</th><th>handler</th><th>deterministic</th><th>description</th></tr>";
    for (name, t) in &plan.types {
        let handler = match &t.handler {
            crate::plan::HandlerSpec::Builtin { name } => format!("built-in {}", esc(name)),
            crate::plan::HandlerSpec::Exec {
                command, sha256, ..
            } => format!("<code>{}</code> sha256:{}", esc(command), sha256.short()),
        };
        b += &format!(
            "<tr><td><b>{}</b></td><td>{handler}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            if t.deterministic { "yes" } else { "no" },
            esc(&t.description)
        );
    }
    b += "</table></section>";
    b += "<section><h2>Templates</h2><table><tr><th>template</th><th>sha256</th><th>source</th></tr>";
    for (name, t) in &plan.templates {
        b += &format!(
            "<tr><td>{}</td><td><code>{}</code></td><td><details><summary>{} bytes</summary><pre>{}</pre></details></td></tr>",
            esc(name),
            t.sha256.to_hex(),
            t.source.len(),
            esc(&t.source)
        );
    }
    b += "</table></section>";
    page("Agents", "/agents", &b)
}

/// The hand-off graph: agents on a circle, an arrow for each agent its role
/// may hand off to.
fn handoff_svg(plan: &crate::plan::Plan) -> String {
    let names: Vec<&String> = plan.agents.keys().collect();
    let n = names.len().max(1) as f64;
    let (w, h, r) = (640.0, 420.0, 160.0);
    let pos = |i: usize| {
        let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
        (w / 2.0 + r * a.cos(), h / 2.0 + r * a.sin())
    };
    let mut svg = format!(
        "<svg id=\"handoff-graph\" class=\"graph\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"hand-off graph\">\
<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
<path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>"
    );
    let mut edges = 0;
    for (i, from) in names.iter().enumerate() {
        let Some(grant) = plan.grant_of(from) else {
            continue;
        };
        for to in &grant.handoff {
            let Some(j) = names.iter().position(|x| *x == to) else {
                continue;
            };
            let ((x1, y1), (x2, y2)) = (pos(i), pos(j));
            let len = ((x2 - x1).powi(2) + (y2 - y1).powi(2)).sqrt().max(1.0);
            let (ux, uy) = ((x2 - x1) / len, (y2 - y1) / len);
            // Shifted sideways, so a hand-off each way shows as two arrows.
            let (x1, y1, x2, y2) = (x1 - uy * 4.0, y1 + ux * 4.0, x2 - uy * 4.0, y2 + ux * 4.0);
            svg += &format!(
                "<line class=\"edge\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#555\" marker-end=\"url(#arrow)\"><title>{} → {}</title></line>",
                x1 + ux * 14.0,
                y1 + uy * 14.0,
                x2 - ux * 14.0,
                y2 - uy * 14.0,
                esc(from),
                esc(to)
            );
            edges += 1;
        }
    }
    for (i, name) in names.iter().enumerate() {
        let (x, y) = pos(i);
        svg += &format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"12\" fill=\"#2b6cb0\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\">{}</text>",
            y + 28.0,
            esc(name)
        );
    }
    svg += "</svg>";
    if edges == 0 {
        svg += "<p class=\"muted\">No role grants a hand-off.</p>";
    }
    svg
}

// ---- Reproducibility --------------------------------------------------------

pub fn reproducibility(shared: &Arc<Shared>, req: &Request) -> Response {
    let mut b = String::from(
        "<section><h2>Replay</h2><p>Rebuilds every job from the logs in memory, under the plan recorded in the log, \
twice, with zero model calls and zero tool executions, and compares every state digest with the recorded one.</p>\
<button id=\"run-replay\" type=\"button\">Run a replay</button><div id=\"replay-result\" role=\"status\"></div></section>",
    );
    b += "<section><h2>Log browser</h2>";
    let logs = shared.data.log_files().unwrap_or_default();
    if logs.is_empty() {
        b += "<p class=\"muted\">No logs yet.</p>";
    }
    let names: Vec<String> = logs
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let chosen = req
        .query("log")
        .and_then(|l| names.iter().find(|n| *n == l))
        .or(names.first());
    if let Some(node) = chosen {
        b += "<p class=\"tabs\">";
        for n in &names {
            let class = if n == node { " class=\"active\"" } else { "" };
            b += &format!(
                "<a href=\"/replay?log={}\"{class}>{}</a> ",
                url_encode(n),
                esc(n)
            );
        }
        b += "</p>";
        let from = req.query_u64("from", 1).max(1);
        b += &log_page(&shared.data.log_path(node), node, from);
    }
    b += "</section>";
    page("Reproducibility", "/replay", &b)
}

/// Records `from..from+PAGE_SIZE` of one log: the lines before are skipped
/// by counting newlines, not parsed.
fn log_page(path: &std::path::Path, node: &str, from: u64) -> String {
    let Ok(file) = std::fs::File::open(path) else {
        return "<p class=\"muted\">The log cannot be read.</p>".into();
    };
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    let mut skipped = 1;
    while skipped < from {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => skipped += 1,
        }
    }
    let mut s = String::from(
        "<table id=\"log\"><tr><th>seq</th><th>kind</th><th>job</th><th>detail</th></tr>",
    );
    let mut more = false;
    for (shown, l) in reader.lines().enumerate() {
        let Ok(l) = l else { break };
        if shown == PAGE_SIZE {
            more = true;
            break;
        }
        let v: Value = serde_json::from_str(&l).unwrap_or(Value::Null);
        let kind = v["kind"].as_str().unwrap_or("?");
        let job = v["job"].as_str().unwrap_or("");
        let detail = match kind {
            "decision" | "rejected" => format!(
                "{} by {}",
                v["decision"]["type"].as_str().unwrap_or(""),
                v["decision"]["source"].as_str().unwrap_or("")
            ),
            "end" => format!(
                "{} {}",
                v["state"].as_str().unwrap_or(""),
                v["reason"].as_str().unwrap_or("")
            ),
            "job" => format!("agent {}", v["agent"].as_str().unwrap_or("")),
            "model" => format!(
                "{} / {}",
                v["provider"].as_str().unwrap_or(""),
                v["model"].as_str().unwrap_or("")
            ),
            "plan" => format!("plan {}", v["digest"].as_str().unwrap_or("")),
            _ => String::new(),
        };
        s += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            v["seq"],
            esc(kind),
            if job.is_empty() {
                String::new()
            } else {
                job_link(job)
            },
            esc(&detail)
        );
    }
    s += "</table><p class=\"pager\">";
    if from > 1 {
        s += &format!(
            "<a href=\"/replay?log={}&from={}\">earlier</a> ",
            url_encode(node),
            from.saturating_sub(PAGE_SIZE as u64).max(1)
        );
    }
    if more {
        s += &format!(
            "<a href=\"/replay?log={}&from={}\">later</a>",
            url_encode(node),
            from + PAGE_SIZE as u64
        );
    }
    s + "</p>"
}

// ---- Schedules, evals, audit, help -------------------------------------------

pub fn schedules(shared: &Arc<Shared>) -> Response {
    let body = match shared.hive_load() {
        Ok(loaded) => {
            let rows = (shared.hooks.schedules)(&loaded, shared.data.root(), chrono::Utc::now());
            let mut b = schedule_table(&rows, usize::MAX);
            b += "<section><h2>Recent fires</h2>";
            let mut fired: Vec<(String, String)> = rows
                .iter()
                .filter_map(|r| {
                    Some((
                        r["last_run"].as_str()?.to_string(),
                        r["last_job"].as_str()?.to_string(),
                    ))
                })
                .collect();
            fired.sort();
            fired.reverse();
            if fired.is_empty() {
                b += "<p class=\"muted\">No schedule has fired yet.</p>";
            }
            b += "<ul>";
            for (at, job) in fired {
                b += &format!("<li>{} {}</li>", esc(&at), job_link(&job));
            }
            b + "</ul></section>"
        }
        Err(errors) => format!(
            "<p class=\"bad\">The manifests do not validate:</p><pre>{}</pre>",
            esc(&errors.join("\n"))
        ),
    };
    page("Schedules", "/schedules", &body)
}

pub fn evals(shared: &Arc<Shared>) -> Response {
    let mut b = String::from(
        "<p>Runs the hive's eval suite (<code>manifests/evals</code>) as <code>jaros eval</code> does: offline, scripted \
model responses, the real gate and executor, each case in a temporary data dir. The verdict below is the command's own.</p>",
    );
    b += "<button id=\"run-evals\" type=\"button\">Run the eval suite</button><div id=\"eval-result\" role=\"status\"></div>";
    match shared.hive_load() {
        Ok(loaded) => {
            b += "<table id=\"eval-cases\"><tr><th>case</th><th>agent</th><th>checks</th><th>verdict</th></tr>";
            for e in &loaded.manifests.evals {
                for case in &e.m.spec.cases {
                    let expect = serde_json::to_value(&case.expect).unwrap_or(Value::Null);
                    let checks: Vec<String> = expect
                        .as_object()
                        .map(|o| {
                            o.iter()
                                .map(|(k, v)| {
                                    format!(
                                        "<li>{} = <code>{}</code></li>",
                                        esc(k),
                                        esc(&v.to_string())
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    b += &format!(
                        "<tr data-case=\"{0}/{1}\"><td>{0}/{1}</td><td>{2}</td><td><ul class=\"checks\">{3}</ul></td><td class=\"verdict muted\">not run</td></tr>",
                        esc(&e.m.metadata.name),
                        esc(&case.name),
                        esc(&case.agent),
                        checks.concat()
                    );
                }
            }
            b += "</table>";
        }
        Err(errors) => {
            b += &format!(
            "<p class=\"bad\">The manifests do not validate, so no case can run:</p><pre>{}</pre>",
            esc(&errors.join("\n"))
        )
        }
    }
    page("Evals", "/evals", &b)
}

/// What waits for a person's verdict, as `jaros approvals --json` lists it;
/// `count` leaves out the requests answered already (a node has yet to
/// record their verdict), as the navigation's live count does.
pub fn approvals_json(shared: &Shared) -> Value {
    let store = crate::approval::store::Store::new(&shared.data);
    let listing = store.list().unwrap_or_default();
    let now = now_ms();
    let requests: Vec<Value> = listing
        .requests
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            v["left_ms"] = r.expires_ms.saturating_sub(now).into();
            v["expired"] = (now >= r.expires_ms).into();
            v["answered"] = serde_json::to_value(store.answer_of(r)).unwrap_or(Value::Null);
            v
        })
        .collect();
    let count = requests.iter().filter(|r| r["answered"].is_null()).count();
    json!({"count": count, "requests": requests})
}

/// The Approvals page: each request with its chain, and approve / deny
/// forms that post to `/api/verdict` (same rules as every state change).
pub fn approvals(shared: &Arc<Shared>) -> Response {
    let store = crate::approval::store::Store::new(&shared.data);
    let listing = store.list().unwrap_or_default();
    let now = now_ms();
    let mut b = String::from(
        "<p>Decisions that wait for a person. A verdict is recorded in the log with your name, which is asserted \
(like a git author): it must be one the role lists. Exactly one verdict counts.</p>",
    );
    for (path, why) in &listing.bad {
        b += &format!(
            "<p class=\"bad\">{}: {}</p>",
            esc(&path.display().to_string()),
            esc(why)
        );
    }
    if listing.requests.is_empty() {
        b += "<p class=\"muted\" id=\"no-approvals\">Nothing waits for approval.</p>";
    }
    for r in &listing.requests {
        let chain: Vec<String> = r
            .chain
            .iter()
            .map(|l| format!("{} ({})", job_link(l.job.as_str()), esc(&l.agent)))
            .collect();
        let left = match r.expires_ms.checked_sub(now).filter(|l| *l > 0) {
            Some(left) => format!("{} left", age(left)),
            None => "expired".into(),
        };
        // Answered, the request stays until a node records the verdict.
        let form = match store.answer_of(r) {
            Some(v) => format!(
                "<p class=\"answered\">answered: {} by {}; the job resumes on the next node to pick it up</p>",
                v.verdict.as_str(),
                esc(&v.by)
            ),
            None => "<form class=\"verdict\"><label>your name <input name=\"by\" required></label>\
<label>note or reason <input name=\"text\"></label>\
<button type=\"submit\" name=\"verdict\" value=\"approve\">Approve</button>\
<button type=\"submit\" name=\"verdict\" value=\"deny\">Deny</button>\
<span class=\"verdict-status\" role=\"status\"></span></form>"
                .to_string(),
        };
        b += &format!(
            "<section class=\"approval\" data-job=\"{job}\" data-decision=\"{id}\"><h2>{kind} <span class=\"muted\">by {agent}</span></h2>\
<p>{link} · decision <code>{id}</code> · {left} · approvers: {approvers}</p>\
<p>chain: {chain}</p><pre>{payload}</pre>{form}</section>",
            job = esc(r.job.as_str()),
            id = esc(r.decision.id.as_str()),
            kind = esc(&r.decision.kind),
            agent = esc(&r.agent),
            link = job_link(r.job.as_str()),
            approvers = esc(&r.approvers.join(", ")),
            chain = chain.join(" → "),
            payload = esc(&serde_json::to_string_pretty(&r.decision.payload).unwrap_or_default()),
        );
    }
    page("Approvals", "/approvals", &b)
}

pub fn audit(shared: &Arc<Shared>, req: &Request) -> Response {
    let agent = req.query("agent").filter(|a| !a.is_empty());
    let verdict = req.query("verdict").filter(|v| !v.is_empty());
    let page_no = req.query_u64("page", 0) as usize;
    let mut lines = Vec::new();
    let files = crate::harness::audit::files(&shared.data.audit_dir()).unwrap_or_default();
    let mut problems = Vec::new();
    for path in &files {
        match crate::harness::audit::read(path) {
            Ok(read) => lines.extend(read.into_iter().filter(|l| {
                agent.is_none_or(|a| a == l.agent) && verdict.is_none_or(|v| v == l.verdict)
            })),
            Err(e) => problems.push(e.to_string()),
        }
    }
    lines.sort_by(|a, b| b.time.cmp(&a.time).then(b.seq.cmp(&a.seq)));
    let total = lines.len();
    let mut b = format!(
        "<form class=\"filter\" method=\"get\" action=\"/audit\"><label>agent <input name=\"agent\" value=\"{}\"></label>\
<label>verdict <select name=\"verdict\"><option value=\"\">any</option><option{}>allowed</option><option{}>refused</option></select></label>\
<button type=\"submit\">Filter</button></form>",
        esc(agent.unwrap_or("")),
        if verdict == Some("allowed") { " selected" } else { "" },
        if verdict == Some("refused") { " selected" } else { "" },
    );
    for p in problems {
        b += &format!("<p class=\"bad\">{}</p>", esc(&p));
    }
    b += "<table id=\"audit\"><tr><th>node:seq</th><th>time</th><th>verdict</th><th>agent</th><th>job</th><th>decision</th><th>action</th><th>reason</th></tr>";
    for l in lines.iter().skip(page_no * PAGE_SIZE).take(PAGE_SIZE) {
        b += &format!(
            "<tr><td>{}:{}</td><td>{}</td><td><span class=\"badge {}\">{}</span></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&l.node),
            l.seq,
            esc(&l.time),
            if l.refused() { "failed" } else { "ok" },
            esc(&l.verdict),
            esc(&l.agent),
            job_link(&l.job),
            esc(&l.decision),
            esc(&l.action),
            esc(&l.reason)
        );
    }
    b += "</table>";
    if total == 0 {
        b += "<p class=\"muted\">No matching audit entries.</p>";
    }
    b += &pager(
        &format!(
            "/audit?agent={}&verdict={}&",
            url_encode(agent.unwrap_or("")),
            url_encode(verdict.unwrap_or(""))
        ),
        page_no as u64,
        total as u64,
    );
    page("Audit", "/audit", &b)
}

pub fn help() -> Response {
    let b = "<section id=\"tour\"><h2>A first tour</h2><ol>\
<li><b>Overview</b> says whether the hive is healthy: live nodes and their heartbeats, how full each pool is, how many jobs wait, run, finished or failed, and whether the manifests validate.</li>\
<li><b>Jobs</b>: pick an agent, give its input as JSON, submit. The job appears in the queue and its result arrives without a reload. Open a job for its timeline: the job, each model call with prompt and response, each decision with the gate's verdict, each effect, the end. A failed job shows its blame chain and the counterfactual check.</li>\
<li><b>Agents</b> shows the compiled plan: agents, what each role grants, the tools, the templates with their digests, and who may hand off to whom.</li>\
<li><b>Reproducibility</b> runs a replay: every job rebuilt from the log with no model and no tool, twice, compared byte for byte. The log browser pages through each node's hash-chained log.</li>\
<li><b>Schedules</b>, <b>Evals</b> and <b>Audit</b> show the triggers, run the eval suite, and list every mediated action and refusal.</li>\
</ol><p>The console changes nothing but the inbox: manifests, agents and tools change through git.</p></section>\
<section><h2>Documentation</h2><ul>\
<li><code>docs/console.md</code>: this console, its security and its limits</li>\
<li><code>docs/manifests.md</code>: agents, roles, tools, schedules, evals</li>\
<li><code>docs/log.md</code>: the log and its chain</li>\
<li><code>docs/attribution.md</code>: replay, attribution and blame</li>\
<li><code>docs/harness.md</code>: tool confinement and the audit log</li>\
<li><code>docs/evals.md</code> and <code>docs/schedules.md</code></li>\
<li><code>jaros --help</code>, and <code>jaros COMMAND --help</code> for each command</li></ul></section>";
    page("Help", "/help", b)
}
