#!/usr/bin/env python3
"""Time to a fully rendered console page in a real headless Chromium.

Starts `jaros console --addr 127.0.0.1:0` on an existing hive, logs in with
the printed URL, and loads each page N times, reading the browser's own
navigation timing (performance.getEntriesByType('navigation')): from
navigation start to the first response byte, to DOMContentLoaded end, and
to the load event's end. The pages are rendered on the server, so the load
event's end is the fully rendered page; the console has no later
"rendered" marker of its own. Prints median and p90 per page in
milliseconds. A benchmark: no thresholds.

Drives Chromium with the DevTools-over-pipe client of browser_tests.py.

Usage: console_render_bench.py JAROS_BINARY HIVE [RUNS]
Exit 0 when measured, 1 when a page fails to load, 2 when Chromium cannot run.
"""

import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # importing browser_tests leaves no __pycache__ in scripts/
from browser_tests import Browser, Fail, find_chromium

DEFAULT_RUNS = 10

# The navigation entry once the load event has ended (loadEventEnd is still
# 0 while the load event's handlers run, which is when Page.loadEventFired
# arrives).
TIMING = """new Promise(done => {
  const poll = () => {
    const e = performance.getEntriesByType('navigation')[0];
    if (e && e.loadEventEnd > 0) {
      done({status: e.responseStatus || 0, url: e.name, ttfb: e.responseStart,
            dom: e.domContentLoadedEventEnd, load: e.loadEventEnd,
            bytes: e.transferSize || e.encodedBodySize || 0});
    } else { setTimeout(poll, 5); }
  };
  poll();
})"""


def median_p90(values):
    v = sorted(values)
    return v[len(v) // 2], v[len(v) * 9 // 10]


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__)
        return 2
    binary, hive = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) == 4 else DEFAULT_RUNS
    done = len(os.listdir(os.path.join(hive, ".jaros-data", "done")))
    exe = find_chromium()
    if not exe:
        print("render bench: no Chromium found (apt-get install -y chromium)")
        return 2
    work = tempfile.mkdtemp(prefix="jaros-render-bench-")
    env = {k: v for k, v in os.environ.items() if k not in ("JAROS_HIVE", "JAROS_DATA_DIR")}
    console = subprocess.Popen(
        [binary, "console", "--addr", "127.0.0.1:0"],
        cwd=hive,
        stdout=subprocess.PIPE,
        stderr=open(os.path.join(work, "console.stderr"), "wb"),
        text=True,
        env=env,
    )
    browser = None
    try:
        line = console.stdout.readline().strip()
        if not line.startswith("console: http://127.0.0.1:"):
            print(f"render bench: the console printed no URL ({line!r}); "
                  f"its stderr is in {work}/console.stderr")
            return 1
        url = line.split(" ", 1)[1]
        base = url.split("/login?")[0]
        profile = os.path.join(work, "profile")
        os.makedirs(profile)
        try:
            browser = Browser(exe, profile)
        except Exception as e:  # noqa: BLE001 - any failure here means no browser
            print(f"render bench: Chromium cannot run: {e}")
            return 2
        browser.goto(url)
        if browser.eval("location.href") != base + "/":
            print(f"render bench: the login did not redirect to {base}/")
            return 1

        pages = [
            ("Overview", "/"),
            ("Jobs, done, first page", "/jobs?area=done"),
            (f"Jobs, done, last page (page {done // 50})", f"/jobs?area=done&page={done // 50}"),
        ]
        print(f"\nConsole in headless Chromium ({os.path.basename(exe)}), data dir with "
              f"{done} finished jobs, median / p90 of {runs} loads, ms from navigation start:\n")
        print("| page | first byte | DOMContentLoaded end | load event end (fully rendered) |")
        print("|---|---|---|---|")
        for name, path in pages:
            browser.goto(base + path)  # warm: the assets are cached after this
            ttfb, dom, load = [], [], []
            for _ in range(runs):
                browser.goto(base + path)
                t = browser.eval(TIMING)
                if t["status"] not in (0, 200):
                    raise Fail(f"{path} answered {t['status']}")
                ttfb.append(t["ttfb"])
                dom.append(t["dom"])
                load.append(t["load"])
            cells = [" / ".join(f"{x:.1f}" for x in median_p90(v)) for v in (ttfb, dom, load)]
            print(f"| {name} | {' | '.join(cells)} |", flush=True)
        return 0
    except Fail as e:
        print(f"render bench: FAILED: {e}")
        return 1
    finally:
        if browser is not None:
            browser.close()
        console.terminate()
        try:
            console.wait(timeout=30)
        except subprocess.TimeoutExpired:
            console.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
