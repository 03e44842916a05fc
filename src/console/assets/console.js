// The console's only script (served from /assets/; the CSP forbids inline
// script): live updates from /events, and the actions, each a POST with a
// JSON body from this origin.
"use strict";

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = {};
  try { data = await r.json(); } catch (_) { data = { error: "HTTP " + r.status }; }
  return { ok: r.ok, status: r.status, data };
}

// ---- live updates ---------------------------------------------------------

const waiting = new Map(); // job id -> callback when it reaches done/failed

function onJobEvent(ev) {
  const cb = waiting.get(ev.id);
  if (cb && (ev.area === "done" || ev.area === "failed")) { waiting.delete(ev.id); cb(ev.area); }
  const queue = document.getElementById("queue");
  if (queue && queue.dataset.area === ev.area && !location.search.includes("page=") ) {
    if (!queue.querySelector('[data-id="' + CSS.escape(ev.id) + '"]')) {
      const tr = el("tr", { "data-id": ev.id });
      const td = el("td");
      td.appendChild(el("a", { href: "/jobs/" + encodeURIComponent(ev.id), class: "job" }, ev.id));
      tr.appendChild(td);
      tr.appendChild(el("td", {}, "just now"));
      const header = queue.querySelector("tr");
      header.after(tr);
    }
  }
  const badge = document.getElementById("job-area");
  if (badge && badge.dataset.job === ev.id && badge.textContent !== ev.area) {
    badge.textContent = ev.area;
    badge.className = "badge " + ev.area;
    if (ev.area === "done" || ev.area === "failed") location.reload();
  }
}

function connect() {
  const live = document.getElementById("live");
  if (!live || typeof EventSource === "undefined") return;
  const src = new EventSource("/events");
  src.addEventListener("hello", () => { live.textContent = "live"; live.className = "live on"; });
  src.addEventListener("reset", () => {
    fetch("/api/overview").then(r => r.json()).then(o => setCounts(o.counts));
    approvalsCount();
  });
  src.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
  src.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (_) { return; }
    if (ev.type === "counts") setCounts(ev.counts);
    if (ev.type === "approvals") setApprovalsCount(ev.count);
    if (ev.type === "job") onJobEvent(ev);
  };
}

function setCounts(counts) {
  for (const [area, n] of Object.entries(counts || {})) {
    for (const e of document.querySelectorAll('[data-count="' + area + '"]')) e.textContent = n;
  }
}

// ---- submit ---------------------------------------------------------------

function setupSubmit() {
  const form = document.getElementById("submit");
  if (!form) return;
  const status = document.getElementById("submit-status");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const agent = form.elements.agent.value;
    let input;
    try {
      input = JSON.parse(form.elements.input.value || "{}");
    } catch (err) {
      status.className = "status bad";
      status.textContent = "The input is not JSON: " + err.message + ". Nothing was sent.";
      return;
    }
    status.className = "status";
    status.textContent = "submitting…";
    const r = await post("/api/submit", { agent, input });
    if (!r.ok) {
      status.className = "status bad";
      status.textContent = "Refused: " + (r.data.error || ("HTTP " + r.status));
      return;
    }
    const id = r.data.id;
    status.textContent = "";
    status.appendChild(document.createTextNode("submitted "));
    status.appendChild(el("a", { href: "/jobs/" + encodeURIComponent(id), id: "submitted-job" }, id));
    const state = el("span", { id: "submitted-state", class: "badge inbox" }, "waiting");
    status.appendChild(document.createTextNode(" "));
    status.appendChild(state);
    const finish = (area) => { state.textContent = area; state.className = "badge " + area; };
    waiting.set(id, finish);
    // The result may have arrived before the stream saw the job.
    const j = await fetch("/api/job/" + encodeURIComponent(id)).then(x => x.json()).catch(() => ({}));
    if (j.area === "done" || j.area === "failed") { waiting.delete(id); finish(j.area); }
  });
}

// ---- replay and evals -----------------------------------------------------

function verdict(ok, label, value) {
  const li = el("li", { "data-verdict": label });
  li.appendChild(el("span", { class: "badge " + (ok ? "pass" : "fail") }, ok ? "yes" : "NO"));
  li.appendChild(document.createTextNode(" " + label + (value !== undefined ? ": " + value : "")));
  return li;
}

function setupReplay() {
  const button = document.getElementById("run-replay");
  if (!button) return;
  const out = document.getElementById("replay-result");
  button.addEventListener("click", async () => {
    button.disabled = true;
    out.textContent = "replaying…";
    const r = await post("/api/replay", {});
    button.disabled = false;
    out.textContent = "";
    if (!r.ok) { out.appendChild(el("p", { class: "bad" }, r.data.error || "failed")); return; }
    const d = r.data;
    out.appendChild(el("p", { id: "replay-verdict", class: d.reproducible ? "good" : "bad" },
      d.reproducible ? "verdict: reproducible" : "verdict: NOT reproducible"));
    out.appendChild(el("p", {}, `replayed ${d.records} records of ${d.jobs} jobs from ${d.logs} log(s); ${d.decisions} decisions, ${d.rejected} rejected`));
    const ul = el("ul", { class: "verdicts" });
    ul.appendChild(verdict(d.byte_identical, "byte-identical"));
    ul.appendChild(verdict(d.deterministic, "deterministic (two passes agree)"));
    ul.appendChild(verdict(d.chain_intact, "chain intact"));
    ul.appendChild(verdict(d.model_calls === 0, "model calls", d.model_calls));
    ul.appendChild(verdict(d.tool_executions === 0, "tool executions", d.tool_executions));
    out.appendChild(ul);
    if (d.divergence) out.appendChild(el("p", { class: "bad" }, "first divergence: " + JSON.stringify(d.divergence)));
    for (const e of d.chain_errors || []) out.appendChild(el("p", { class: "bad" }, e));
    const t = el("table", { id: "per-agent" });
    t.appendChild(el("tr")).append(el("th", {}, "agent"), el("th", {}, "jobs"), el("th", {}, "decisions"), el("th", {}, "rejected"), el("th", {}, "failed jobs"));
    for (const [a, s] of Object.entries(d.per_agent || {})) {
      t.appendChild(el("tr")).append(el("td", {}, a), el("td", {}, s.jobs), el("td", {}, s.decisions), el("td", {}, s.rejected), el("td", {}, s.failed_jobs));
    }
    out.appendChild(el("h2", {}, "Decisions per agent"));
    out.appendChild(t);
    out.appendChild(el("h2", {}, "Failures attributed"));
    const fl = el("ul", { id: "failures" });
    for (const f of d.failures || []) {
      const li = el("li");
      li.appendChild(el("a", { href: "/jobs/" + encodeURIComponent(f.job) }, f.job));
      li.appendChild(document.createTextNode(` — agent ${f.agent}, decision ${f.decision || "-"} (${f.type || "-"}): ${f.reason}`));
      fl.appendChild(li);
    }
    if (!(d.failures || []).length) fl.appendChild(el("li", { class: "muted" }, "no failed jobs"));
    out.appendChild(fl);
  });
}

function setupEvals() {
  const button = document.getElementById("run-evals");
  if (!button) return;
  const out = document.getElementById("eval-result");
  button.addEventListener("click", async () => {
    button.disabled = true;
    out.textContent = "running the suite…";
    const r = await post("/api/evals", {});
    button.disabled = false;
    out.textContent = "";
    const d = r.data;
    if (!r.ok || !Array.isArray(d.cases)) {
      out.appendChild(el("p", { id: "eval-verdict", class: "bad" }, "the suite did not run: " + (d.error || ("exit " + d.exit_code))));
      return;
    }
    const all = d.passed === d.total;
    out.appendChild(el("p", { id: "eval-verdict", class: all ? "good" : "bad" },
      `${d.passed}/${d.total} eval cases passed (exit code ${d.exit_code})`));
    const table = document.getElementById("eval-cases") || out.appendChild(el("table", { id: "eval-cases" }));
    for (const c of d.cases) {
      let row = table.querySelector('tr[data-case="' + CSS.escape(c.suite + "/" + c.name) + '"]');
      if (!row) {
        row = table.appendChild(el("tr", { "data-case": c.suite + "/" + c.name }));
        row.append(el("td", {}, c.suite + "/" + c.name), el("td"), el("td"), el("td", { class: "verdict" }));
      }
      const v = row.querySelector(".verdict");
      v.className = "verdict";
      v.textContent = "";
      v.appendChild(el("span", { class: "badge " + (c.passed ? "pass" : "fail") }, c.passed ? "PASS" : "FAIL"));
      if (!c.failures.length) v.appendChild(el("div", { class: "muted" }, "every check held"));
      for (const f of c.failures) {
        v.appendChild(el("div", { class: "bad" }, `${f.check}: expected ${f.expected}, got ${f.actual}`));
      }
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  connect();
  setupSubmit();
  setupReplay();
  setupEvals();
});

// ---- approvals ------------------------------------------------------------

// The navigation's count: read when a page loads, then kept current by the
// event stream's "approvals" events (a verdict given anywhere, a request
// made by any node).
function setApprovalsCount(n) {
  const badge = document.getElementById("approvals-count");
  if (badge) badge.textContent = n > 0 ? String(n) : "";
}

function approvalsCount() {
  if (!document.getElementById("approvals-count")) return;
  fetch("/api/approvals", { credentials: "same-origin" }).then(r => r.json()).then(a => {
    setApprovalsCount(a.count);
  }).catch(() => {});
}

function approvalForms() {
  for (const form of document.querySelectorAll("form.verdict")) {
    const section = form.closest("section.approval");
    const status = form.querySelector(".verdict-status");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const verdict = e.submitter ? e.submitter.value : "approve";
      const by = form.elements.by.value.trim();
      const text = form.elements.text.value.trim();
      if (verdict === "deny" && !text) { status.textContent = "a denial needs a reason"; return; }
      status.textContent = "sending…";
      const r = await post("/api/verdict", {
        job: section.dataset.job, decision: section.dataset.decision, verdict, by, text,
      });
      if (r.ok) {
        status.textContent = (verdict === "approve" ? "approved" : "denied") + " by " + by;
        status.className = "verdict-status ok";
        for (const b of form.querySelectorAll("button")) b.disabled = true;
        approvalsCount();
      } else {
        status.textContent = r.data.error || ("HTTP " + r.status);
        status.className = "verdict-status bad";
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => { approvalsCount(); approvalForms(); });
