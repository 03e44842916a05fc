#!/usr/bin/env python3
"""The node's throughput with observability on, against all of it off.

N `advance` jobs are dropped into the inbox, then the node is started and
timed until all N result files exist (the workload of
scripts/bench_vs_original.py, whose helpers this reuses). Each setting is run
--repeats times; the median and range are printed as a Markdown table:

  off       JAROS_LOG=off, no scrape, no export
  logs      JAROS_LOG=info with --verbose: one info line per job, text
  logs-json the same as JSON lines
  logs-stuck the same, stderr a pipe nobody reads: once it and the queue
            are full, lines are dropped; a job must not wait for them
  metrics   logs off; `jaros metrics` run every second during the run
  export    logs off; live OTLP export to scripts/otel_receiver.py
  export-stuck  logs off; live export to a collector that accepts
            connections and never answers: every request times out

  bench_observability.py BINARY PYTHON_WITH_OTEL_PROTO [--n N] [--repeats R]
"""
import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_vs_original import rust_system, run_throughput  # noqa: E402

SCRAPE_EVERY_S = 1.0


def start_receiver(python: str):
    proc = subprocess.Popen([python, str(HERE / "otel_receiver.py")],
                            stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline().strip())
    return proc, port


def one_run(binary: str, setting: str, n: int, work: Path, port: int, pool: int,
            silent_port: int) -> float:
    sys_ = rust_system(binary, pool, work)
    hive = sys_.root / "hive"
    sys_.env = {"JAROS_LOG": "off"}
    if setting in ("logs", "logs-json"):
        sys_.env = {"JAROS_LOG": "info", "JAROS_LOG_FORMAT": "text"}
        sys_.serve.append("--verbose")
        if setting == "logs-json":
            sys_.env["JAROS_LOG_FORMAT"] = "json"
    if setting == "logs-stuck":
        sys_.env = {"JAROS_LOG": "info", "JAROS_LOG_FORMAT": "json"}
        # The node's stderr into a pipe `sleep` holds and never reads; a
        # TERM to the shell stops the whole group.
        sys_.serve = ["sh", "-c", 'trap "trap - TERM; kill 0" TERM; "$@" --verbose 2>&1 | sleep 86400 & wait',
                      "sh", *sys_.serve]
    if setting in ("export", "export-stuck"):
        to = port if setting == "export" else silent_port
        node = hive / "manifests" / "node.yaml"
        text = node.read_text()
        node.write_text(text.replace("\nspec:\n", f"\nspec:\n  otlp: http://127.0.0.1:{to}\n", 1))
    stop = threading.Event()
    scraper = None
    if setting == "metrics":
        def scrape():
            while not stop.wait(SCRAPE_EVERY_S):
                subprocess.run([binary, "metrics", "--hive", str(hive), "--data-dir", str(sys_.data)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
    try:
        t = run_throughput(sys_, n, 600)
    finally:
        stop.set()
        if scraper:
            scraper.join()
    if not t.finished or t.failed:
        raise SystemExit(f"{setting}: {t.done} done, {t.failed} failed of {n}")
    return t.rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("python")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pool", type=int, default=4)
    args = ap.parse_args()
    receiver, port = start_receiver(args.python)
    # Connections complete in the backlog and are never read.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1024)
    silent_port = silent.getsockname()[1]
    settings = ["off", "logs", "logs-json", "logs-stuck", "metrics", "export", "export-stuck"]
    rates = {s: [] for s in settings}
    try:
        with tempfile.TemporaryDirectory(prefix="jaros-obs-bench-") as work:
            # Interleaved, so a change in the machine's load hits every setting.
            for _ in range(args.repeats):
                for s in settings:
                    rates[s].append(one_run(args.binary, s, args.n, Path(work), port, args.pool,
                                            silent_port))
                    print(f"  {s}: {rates[s][-1]:,.0f} jobs/s", flush=True)
    finally:
        receiver.kill()
    base = statistics.median(rates["off"])
    print(f"\nN={args.n} advance jobs, pool {args.pool}, median of {args.repeats} (range)\n")
    print("| setting | jobs/s | vs off |")
    print("|---|---|---|")
    for s in settings:
        m = statistics.median(rates[s])
        print(f"| {s} | {m:,.0f} ({min(rates[s]):,.0f}–{max(rates[s]):,.0f}) | {m / base:.2f} |")


if __name__ == "__main__":
    main()
