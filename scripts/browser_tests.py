#!/usr/bin/env python3
"""The console in a real headless Chromium, driven over the DevTools protocol
through a pipe (--remote-debugging-pipe: NUL-separated JSON on fds 3 and 4,
so nothing beyond the Python standard library is needed).

On an example hive with a running node (`jaros serve --console`), it logs in
with the printed URL, visits every page and asserts what each shows, submits
a job from the form and sees it finish without a reload, opens a failed job
and sees its blame chain, runs a replay and the eval suite and compares their
verdicts with the CLI's, and saves a screenshot of every page.

Usage: browser_tests.py JAROS_BINARY SCREENSHOT_DIR
Exit 0 when every check holds, 1 when one fails, 2 when Chromium cannot run.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome"]
FAST = ["--lease-ms", "1500", "--heartbeat-ms", "200", "--scan-ms", "50"]
WAIT_S = 60


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print(f"  ok: {what}", flush=True)


class Browser:
    """One headless Chromium and one page, spoken to over the pipe."""

    def __init__(self, exe, profile):
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        # The child reads commands on fd 3 and writes replies on fd 4.
        hi_r, hi_w = 100, 101
        os.dup2(cmd_r, hi_r)
        os.dup2(out_w, hi_w)

        def pre():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [
                exe,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            pass_fds=(3, 4, hi_r, hi_w),
            preexec_fn=pre,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(profile, "chromium.stderr"), "wb"),
        )
        for fd in (cmd_r, out_w, hi_r, hi_w):
            os.close(fd)
        self.w = cmd_w
        self.r = out_r
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call(
            "Target.attachToTarget", targetId=page["targetId"], flatten=True
        )["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _read(self):
        while b"\0" not in self.buf:
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise Fail("Chromium closed its DevTools pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise Fail(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def eval(self, expression):
        r = self.call(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in r:
            raise Fail(f"script error in {expression!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def goto(self, url):
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def wait_event(self, method):
        deadline = time.time() + WAIT_S
        while time.time() < deadline:
            for e in self.events:
                if e.get("method") == method:
                    self.events.remove(e)
                    return e
            self.events.append(self._read())
        raise Fail(f"no {method} within {WAIT_S}s")

    def wait_for(self, expression, what):
        deadline = time.time() + WAIT_S
        while time.time() < deadline:
            if self.eval(expression):
                return
            time.sleep(0.1)
        shown = self.eval("document.querySelector('main').innerText")
        raise Fail(f"timed out waiting for {what}; the page shows:\n{shown[-2000:]}")

    def text(self, selector):
        return self.eval(
            f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''"
        )

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data["data"]))
        print(f"  screenshot {path}", flush=True)

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def find_chromium():
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def jaros(binary, hive, *args):
    return subprocess.run(
        [binary, *args], cwd=hive, capture_output=True, text=True, timeout=300
    )


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    binary, shots = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    os.makedirs(shots, exist_ok=True)
    exe = find_chromium()
    if not exe:
        print("browser tests: no Chromium found (scripts/browser-tests.sh installs it)")
        return 2
    work = tempfile.mkdtemp(prefix="jaros-browser-")
    hive = os.path.join(work, "hive")
    node = None
    browser = None
    try:
        r = jaros(binary, work, "init", hive)
        check(r.returncode == 0, f"jaros init: {r.stderr.strip()}")
        env = {k: v for k, v in os.environ.items() if k not in ("JAROS_HIVE", "JAROS_DATA_DIR")}
        node = subprocess.Popen(
            [binary, "serve", "--console", "127.0.0.1:0", *FAST],
            cwd=hive,
            stdout=subprocess.PIPE,
            stderr=open(os.path.join(work, "node.stderr"), "wb"),
            text=True,
            env=env,
        )
        line = node.stdout.readline().strip()
        check(line.startswith("console: http://127.0.0.1:"), f"the node printed its console URL ({line})")
        url = line.split(" ", 1)[1]
        base = url.split("/login?")[0]
        # Work for the pages: the built-in agent, and the swarm with its
        # seeded bad hand-off (a failed job to blame).
        for agent, data in [
            ("advance", {"note": "hello"}),
            ("planner", {"id": "T1", "ticket": "My invoice for October charges me twice. Can you fix it?"}),
            ("planner", {"id": "T3", "ticket": "I want a refund of 1200 EUR for my annual plan."}),
        ]:
            r = jaros(binary, hive, "submit", agent, "--input", json.dumps(data), "--wait", "60")
            check(r.returncode in (0, 1), f"jaros submit {agent}: {r.stderr.strip()}")

        profile = os.path.join(work, "profile")
        os.makedirs(profile)
        try:
            browser = Browser(exe, profile)
        except Exception as e:  # noqa: BLE001 - any failure here means no browser
            print(f"browser tests: Chromium cannot run: {e}")
            return 2

        print("login", flush=True)
        browser.goto(base + "/")
        check("sign in" in browser.eval("document.title"), "without the token the console shows only the sign-in page")
        browser.goto(url)
        check(browser.eval("location.href") == base + "/", "the login URL redirects to a clean URL")
        check(browser.eval("document.cookie") == "", "the session cookie is HttpOnly (not visible to scripts)")

        print("overview", flush=True)
        check(browser.text("h1") == "Overview", "Overview is the first page")
        browser.wait_for("document.getElementById('live').textContent === 'live'", "the live stream")
        check(browser.eval("document.querySelector('[data-count=done]').textContent") not in ("", "0"), "the done count shows finished jobs")
        check(browser.eval("document.querySelector('[data-count=failed]').textContent") != "0", "the failed count shows the swarm's failure")
        check("live" in browser.text("table"), "the node is listed as live")
        check(browser.eval("document.querySelector('#plan-digest').textContent.startsWith('sha256:')"), "the plan digest is shown")
        check("valid" in browser.text("main"), "the manifests are said to validate")
        browser.screenshot(os.path.join(shots, "overview.png"))

        print("agents", flush=True)
        browser.goto(base + "/agents")
        check("planner" in browser.text("#agents"), "the agents table lists planner")
        check(browser.eval("document.querySelectorAll('#handoff-graph line.edge').length") > 0, "the hand-off graph has edges")
        check(browser.eval("document.querySelectorAll('#grants td.yes').length") > 0, "the grant table marks grants")
        browser.screenshot(os.path.join(shots, "agents.png"))

        print("schedules", flush=True)
        browser.goto(base + "/schedules")
        check("system-health-every-5m" in browser.text("main"), "the schedules are listed")
        check("every 5m" in browser.text("main"), "each schedule is said in words")
        browser.screenshot(os.path.join(shots, "schedules.png"))

        print("audit", flush=True)
        browser.goto(base + "/audit")
        check(browser.eval("document.querySelectorAll('#audit tr').length") > 1, "the audit log has entries")
        browser.goto(base + "/audit?verdict=refused")
        rows = browser.eval("[...document.querySelectorAll('#audit tr')].slice(1).map(r => r.children[2].textContent)")
        check(all(v == "refused" for v in rows), f"the verdict filter shows only refusals ({len(rows)})")
        browser.screenshot(os.path.join(shots, "audit.png"))

        print("help", flush=True)
        browser.goto(base + "/help")
        check("first tour" in browser.text("#tour"), "Help has the tour")
        browser.screenshot(os.path.join(shots, "help.png"))

        print("jobs: submit from the form", flush=True)
        browser.goto(base + "/jobs")
        options = browser.eval("[...document.querySelectorAll('#agent option')].map(o => o.value)")
        check("advance" in options and "planner" in options, "the agent picker holds the plan's agents")
        inbox_before = len([f for f in os.listdir(os.path.join(hive, ".jaros-data", "inbox")) if f.endswith(".json")])
        browser.eval("document.getElementById('agent').value = 'advance'")
        browser.eval("document.getElementById('input').value = '{not json'")
        browser.eval("document.querySelector('#submit button').click()")
        browser.wait_for("document.getElementById('submit-status').textContent.includes('not JSON')", "the JSON check")
        check(browser.text("#submit-status").endswith("Nothing was sent."), "invalid JSON is refused before sending")
        inbox_after = len([f for f in os.listdir(os.path.join(hive, ".jaros-data", "inbox")) if f.endswith(".json")])
        check(inbox_before == inbox_after, "nothing reached the inbox")
        browser.eval("window.__sameDocument = 42")
        browser.eval("document.getElementById('input').value = '{\"note\": \"from the browser\"}'")
        browser.eval("document.querySelector('#submit button').click()")
        browser.wait_for("!!document.getElementById('submitted-state') && document.getElementById('submitted-state').textContent === 'done'", "the submitted job to finish")
        check(browser.eval("window.__sameDocument") == 42, "the job finished on the page without a reload")
        job_id = browser.text("#submitted-job")
        browser.screenshot(os.path.join(shots, "jobs.png"))
        browser.goto(base + "/jobs/" + job_id)
        check("from the browser" in browser.text(".timeline"), "the job page shows the job's input")
        check(browser.eval("document.querySelectorAll('.timeline li.decision').length") >= 1, "the timeline shows the decision")
        check("gate: accepted" in browser.text(".timeline"), "with its gate verdict")
        check(browser.eval("document.querySelectorAll('.timeline li.end').length") == 1, "and the end")
        browser.screenshot(os.path.join(shots, "job.png"))

        print("a failed job's blame", flush=True)
        browser.goto(base + "/jobs?area=failed")
        failed = browser.eval("(document.querySelector('#queue a.job') || {}).textContent")
        check(bool(failed), "the failed area lists a job")
        browser.goto(base + "/jobs/" + failed)
        check(browser.eval("document.querySelectorAll('#blame .chain li').length") >= 1, "the blame chain is shown")
        check("counterfactual" in browser.text("#counterfactual"), "with the counterfactual")
        cli = json.loads(jaros(binary, hive, "blame", failed, "--json").stdout)
        for link in cli["chain"]:
            check(link["agent"] in browser.text("#blame"), f"the chain names {link['agent']} as jaros blame does")
        browser.screenshot(os.path.join(shots, "failed-job.png"))

        print("reproducibility", flush=True)
        browser.goto(base + "/replay")
        check(browser.eval("document.querySelectorAll('#log tr').length") > 1, "the log browser shows records")
        browser.eval("document.getElementById('run-replay').click()")
        browser.wait_for("!!document.getElementById('replay-verdict')", "the replay verdict")
        cli = jaros(binary, hive, "replay", "--json")
        cli_verdict = "verdict: reproducible" if cli.returncode == 0 else "verdict: NOT reproducible"
        check(browser.text("#replay-verdict") == cli_verdict, f"the replay verdict is the CLI's ({cli_verdict})")
        for label in ["byte-identical", "deterministic (two passes agree)", "chain intact", "model calls", "tool executions"]:
            badge = browser.eval(f"document.querySelector('[data-verdict=\"{label}\"] .badge').textContent")
            check(badge == "yes", f"{label}: yes")
        check(failed in browser.text("#failures"), "the failed job is attributed")
        browser.screenshot(os.path.join(shots, "reproducibility.png"))

        print("evals", flush=True)
        browser.goto(base + "/evals")
        browser.eval("document.getElementById('run-evals').click()")
        browser.wait_for("!!document.getElementById('eval-verdict')", "the eval verdict")
        cli = json.loads(jaros(binary, hive, "eval", "--json").stdout)
        expected = f"{cli['passed']}/{cli['total']} eval cases passed"
        check(browser.text("#eval-verdict").startswith(expected), f"the eval verdict is the CLI's ({expected})")
        check(browser.eval("document.querySelectorAll('#eval-cases tr[data-case]').length") == cli["total"], "every case is listed with its checks")
        check(browser.eval("document.querySelectorAll('#eval-cases .verdict .badge').length") == cli["total"], "every case has its verdict")
        browser.screenshot(os.path.join(shots, "evals.png"))

        print("approvals: approve and deny through the page", flush=True)
        # Two refunds over 100 EUR: the worker role's rule parks each until a
        # verdict from demo-operator.
        refund = {"id": "T4", "ticket": "Please refund the 250 EUR I paid for a plan I cancelled the same day."}
        for job in ("refund-a", "refund-b", "refund-c"):
            r = jaros(binary, hive, "submit", "worker", "--id", job, "--input", json.dumps(refund))
            check(r.returncode == 0, f"jaros submit worker --id {job}: {r.stderr.strip()}")
        deadline = time.time() + WAIT_S
        waiting = []
        while time.time() < deadline and len(waiting) < 3:
            listed = json.loads(jaros(binary, hive, "approvals", "--json").stdout or "{}")
            waiting = [r["job"] for r in listed.get("requests", [])]
            time.sleep(0.1)
        check(sorted(waiting) == ["refund-a", "refund-b", "refund-c"], f"the three refunds wait for a person ({waiting})")
        browser.goto(base + "/approvals")
        browser.wait_for("document.getElementById('approvals-count').textContent === '3'", "the navigation to count 3 approvals")
        check(browser.eval("document.querySelectorAll('section.approval').length") == 3, "the page lists the three requests")
        # A verdict given elsewhere (the CLI) changes the count live: no reload.
        browser.eval("window.stillThisPage = true")
        r = jaros(binary, hive, "approve", "refund-c", "refund", "--by", "demo-operator", "--note", "from the CLI")
        check(r.returncode == 0, f"jaros approve refund-c: {r.stderr.strip()}")
        browser.wait_for("document.getElementById('approvals-count').textContent === '2'", "the count to drop to 2 live after a verdict from the CLI")
        check(browser.eval("window.stillThisPage === true"), "without a reload")
        r = jaros(binary, hive, "result", "refund-c", "--wait", "60")
        check(r.returncode == 0 and "refunded" in r.stdout, f"the refund approved from the CLI ran (DONE): {r.stdout.strip()[-300:]}")
        check("demo-operator" in browser.text("section.approval[data-job=refund-a]"), "a request names its approvers")
        check('"amount": 250' in browser.text("section.approval[data-job=refund-a] pre"), "and shows the payload")
        browser.screenshot(os.path.join(shots, "approvals.png"))

        def answer(job, by, text, verdict):
            form = f"section.approval[data-job={job}] form.verdict"
            browser.eval(f"document.querySelector('{form}').elements.by.value = {json.dumps(by)}")
            browser.eval(f"document.querySelector('{form}').elements.text.value = {json.dumps(text)}")
            browser.eval(f"document.querySelector('{form} button[value={verdict}]').click()")

        def status(job):
            return f"document.querySelector('section.approval[data-job={job}] .verdict-status').textContent"

        answer("refund-a", "mallory", "", "approve")
        browser.wait_for(f"{status('refund-a')}.includes('may not answer')", "a stranger's verdict to be refused")
        check(browser.eval("document.getElementById('approvals-count').textContent") == "2", "a refused verdict changes no count")
        answer("refund-a", "demo-operator", "cancelled the same day", "approve")
        browser.wait_for(f"{status('refund-a')} === 'approved by demo-operator'", "the approval")
        browser.wait_for("document.getElementById('approvals-count').textContent === '1'", "the count to drop to 1 at the verdict")
        check(browser.eval("window.stillThisPage === true"), "still without a reload")
        r = jaros(binary, hive, "result", "refund-a", "--wait", "60")
        check(r.returncode == 0 and "refunded" in r.stdout, f"the approved refund ran (DONE): {r.stdout.strip()[-300:]}")
        # The requests go once a node resumed their jobs.
        browser.goto(base + "/approvals")
        browser.wait_for("document.getElementById('approvals-count').textContent === '1'", "the count of 1 on a new page")
        check(browser.eval("document.querySelectorAll('section.approval').length") == 1, "only the other request is left")
        answer("refund-b", "demo-operator", "", "deny")
        check(browser.eval(status("refund-b")) == "a denial needs a reason", "a denial without a reason is not sent")
        answer("refund-b", "demo-operator", "outside the refund window", "deny")
        browser.wait_for(f"{status('refund-b')} === 'denied by demo-operator'", "the denial")
        r = jaros(binary, hive, "result", "refund-b", "--wait", "60")
        check(r.returncode == 1 and "denied by demo-operator: outside the refund window" in r.stdout, f"the denied refund failed with the reason: {r.stdout.strip()[-300:]}")
        browser.goto(base + "/approvals")
        browser.wait_for("document.getElementById('approvals-count').textContent === ''", "the count to go once nothing waits")
        check(browser.eval("!!document.getElementById('no-approvals')"), "the page says nothing waits")
        r = jaros(binary, hive, "replay", "--json")
        check(r.returncode == 0, "the run with both verdicts replays reproducible")

        print("browser tests: every check held")
        return 0
    except Fail as e:
        print(f"browser tests: FAILED: {e}")
        if node is not None:
            try:
                print(open(os.path.join(work, "node.stderr")).read()[-3000:])
            except OSError:
                pass
        return 1
    finally:
        if browser is not None:
            browser.close()
        if node is not None:
            node.terminate()
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
