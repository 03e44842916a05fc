#!/usr/bin/env python3
"""Side-by-side benchmark of jaros (Rust) and the Python original (PyPI jaros 0.5.0).

Driven by scripts/bench-vs-original.sh, which builds the binary and installs the
original into a temporary venv; this file only measures. Python 3 stdlib only.

Workload (identical for both; only paths differ):
  job file   {"id": ID, "agent": "advance", "input": {}}  (compact JSON)
  inbox      Rust: <data>/inbox/<id>.json     Python: <data>/inbox/<id>.json
  result     Rust: <data>/done/<id>.json      Python: <data>/outbox/<id>.json
  failure    Rust: <data>/failed/<id>.json    Python: <data>/failed/<id>.json

Measurements:
  throughput  N job files are written (temp file, fsync, rename), the inbox
              directory is fsynced and os.sync() called; the clock starts just
              before the node process is spawned and stops when the N-th result
              file is seen (polled by stat every 5 ms). jobs/s = N / that time,
              so each node's boot is inside the window.
  latency     on a node that has booted and sat idle for IDLE_SETTLE_S, one job
              at a time: clock starts before the job file is written (each
              tool's own submit style: Rust temp+fsync+rename+fsync dir, as
              `jaros submit` does; Python temp+rename, as its `jaros submit`
              does), stops when inotify reports the result file (a stat poll
              every 0.2 ms where inotify is unavailable). Warm-up samples are
              dropped; a random 20-220 ms pause between samples.
  idle RSS    VmRSS of the node process after boot + IDLE_SETTLE_S, no jobs yet.
  peak RSS    VmHWM of the node process once all N results exist (the node
              is still running; then it gets SIGTERM).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import random
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

IDLE_SETTLE_S = 2.0
# Pause between latency samples: random in [GAP_MIN_S, GAP_MIN_S + GAP_SPREAD_S),
# so submissions do not lock onto the phase of a node's polling tick (the
# original polls every 200 ms), with a fixed seed for repeatability.
GAP_MIN_S = 0.02
GAP_SPREAD_S = 0.2
GAP_SEED = 4
WARMUP_SAMPLES = 10
THROUGHPUT_POLL_S = 0.005
LATENCY_TIMEOUT_S = 30.0
BOOT_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------
# the two systems


@dataclass
class System:
    label: str
    pool: int
    root: Path
    serve: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    data: Path = Path()
    result_dir_name: str = ""
    durable_submit: bool = False
    # A file the node writes once it has booted (its status/heartbeat file).
    booted_marker: Path = Path()

    def inbox(self) -> Path:
        return self.data / "inbox"

    def result_dir(self) -> Path:
        return self.data / self.result_dir_name

    def failed_dir(self) -> Path:
        return self.data / "failed"


def rust_system(binary: str, pool: int, work: Path) -> System:
    """A fresh hive (`jaros init H`) and data dir for one run."""
    root = Path(tempfile.mkdtemp(prefix="rust-", dir=work))
    hive, data = root / "hive", root / "data"
    subprocess.run([binary, "init", str(hive)], check=True, stdout=subprocess.DEVNULL)
    data.mkdir()
    (data / "inbox").mkdir()
    return System(
        label="jaros (Rust)",
        pool=pool,
        root=root,
        serve=[binary, "serve", "--hive", str(hive), "--data-dir", str(data),
               "--node-id", "bench", "--pool", str(pool)],
        env={},
        data=data,
        result_dir_name="done",
        durable_submit=True,
        booted_marker=data / "nodes" / "bench.json",
    )


def python_system(venv: Path, pool: int, work: Path) -> System:
    """A fresh data dir (`jaros --data-dir D init`) for one run."""
    root = Path(tempfile.mkdtemp(prefix="py-", dir=work))
    data = root / "data"
    exe = str(venv / "bin" / "jaros")
    subprocess.run([exe, "--data-dir", str(data), "init"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
    return System(
        label="jaros 0.5.0 (Python)",
        pool=pool,
        root=root,
        # The console is a web server; the node itself does not need it.
        serve=[exe, "--data-dir", str(data), "serve", "--no-console"],
        # The original's pool bound (default 4) and tick (default 200 ms), stated.
        env={"JAROS_POOL_BOUND": str(pool), "PYTHONUNBUFFERED": "1"},
        data=data,
        result_dir_name="outbox",
        booted_marker=data / "status.json",
    )


# --------------------------------------------------------------------------
# files


def job_bytes(job_id: str) -> bytes:
    return json.dumps({"id": job_id, "agent": "advance", "input": {}},
                      separators=(",", ":")).encode()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_job(inbox: Path, job_id: str, *, durable: bool, sync_dir: bool) -> None:
    """Temp file in the inbox, then rename (dot-prefixed temp names are ignored
    by both nodes)."""
    tmp = inbox / f".tmp-{job_id}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, job_bytes(job_id))
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, inbox / f"{job_id}.json")
    if durable and sync_dir:
        fsync_dir(inbox)


def drop_jobs(sys_: System, n: int, prefix: str) -> list[str]:
    ids = [f"{prefix}{i:06d}" for i in range(n)]
    inbox = sys_.inbox()
    inbox.mkdir(parents=True, exist_ok=True)
    for job_id in ids:
        write_job(inbox, job_id, durable=True, sync_dir=False)
    fsync_dir(inbox)
    os.sync()
    return ids


# --------------------------------------------------------------------------
# processes


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:", "Threads:")):
                    key, val = line.split(":", 1)
                    out[key] = int(val.split()[0])
    except OSError:
        pass
    return out


def start_node(sys_: System, log_name: str) -> tuple[subprocess.Popen, object]:
    log = open(sys_.root / log_name, "wb")
    env = dict(os.environ)
    env.update(sys_.env)
    proc = subprocess.Popen(sys_.serve, stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=sys_.root, start_new_session=True)
    return proc, log


def stop_node(proc: subprocess.Popen, log) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------
# throughput


@dataclass
class Throughput:
    n: int
    seconds: float
    done: int
    failed: int
    finished: bool
    hwm_kb: int
    rss_kb: int

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def run_throughput(sys_: System, n: int, timeout_s: float) -> Throughput:
    ids = drop_jobs(sys_, n, "t")
    results, failed_dir = sys_.result_dir(), sys_.failed_dir()
    pending = list(ids)
    done = failed = 0
    proc, log = start_node(sys_, f"serve-throughput-{n}.log")
    t0 = time.perf_counter()
    finished = False
    try:
        while True:
            while pending:
                name = f"{pending[-1]}.json"
                if os.path.exists(results / name):
                    done += 1
                elif os.path.exists(failed_dir / name):
                    failed += 1
                else:
                    break
                pending.pop()
            if not pending:
                finished = True
                break
            # Check from both ends: nodes work the inbox roughly in name order.
            name = f"{pending[0]}.json"
            if os.path.exists(results / name) or os.path.exists(failed_dir / name):
                done += os.path.exists(results / name)
                failed += not os.path.exists(results / name)
                pending.pop(0)
                continue
            elapsed = time.perf_counter() - t0
            if proc.poll() is not None or (timeout_s > 0 and elapsed > timeout_s):
                break
            time.sleep(THROUGHPUT_POLL_S)
        seconds = time.perf_counter() - t0
        st = proc_status(proc.pid)
        exited_early = proc.poll()
    finally:
        stop_node(proc, log)
    if not finished:
        # Count what did finish, for an honest partial rate.
        done = sum(1 for i in ids if (results / f"{i}.json").exists())
        failed = sum(1 for i in ids if (failed_dir / f"{i}.json").exists())
        # All there by the recount: finished, with `seconds` an upper bound.
        finished = done + failed == n
        if exited_early is not None:
            print(f"  node exited early ({exited_early}):\n{tail(Path(log.name))}", flush=True)
    if proc.returncode == -signal.SIGKILL:
        print(f"  {sys_.label}: node did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM; killed",
              flush=True)
    return Throughput(n, seconds, done, failed, finished,
                      st.get("VmHWM", 0), st.get("VmRSS", 0))


# --------------------------------------------------------------------------
# latency (inotify via ctypes; a stat poll where it is unavailable)

IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_CLOSE_WRITE = 0x00000008
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000


class DirWatch:
    def __init__(self, dirs: list[Path]):
        self.fd = -1
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                return
            for d in dirs:
                d.mkdir(parents=True, exist_ok=True)
                if libc.inotify_add_watch(fd, str(d).encode(),
                                          IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE) < 0:
                    os.close(fd)
                    return
            self.fd = fd
        except (OSError, AttributeError):
            self.fd = -1

    def drain(self) -> None:
        if self.fd < 0:
            return
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def wait(self, paths: list[Path], timeout_s: float) -> bool:
        """True once any of `paths` exists."""
        deadline = time.perf_counter() + timeout_s
        names = {p.name for p in paths}
        while True:
            if any(os.path.exists(p) for p in paths):
                return True
            left = deadline - time.perf_counter()
            if left <= 0:
                return False
            if self.fd < 0:
                time.sleep(0.0002)
                continue
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.05))
            if not ready:
                continue
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            off = 0
            while off + 16 <= len(buf):
                _wd, _mask, _cookie, ln = struct.unpack_from("iIII", buf, off)
                name = buf[off + 16: off + 16 + ln].rstrip(b"\0").decode(errors="replace")
                off += 16 + ln
                if name in names and any(os.path.exists(p) for p in paths):
                    return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)


@dataclass
class Latency:
    samples_ms: list[float]
    idle_rss_kb: int
    idle_threads: int
    failed: int
    timed_out: int
    watcher: str

    def pct(self, p: float) -> float:
        s = sorted(self.samples_ms)
        if not s:
            return float("nan")
        k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
        return s[k]


def run_latency(sys_: System, samples: int) -> Latency:
    proc, log = start_node(sys_, "serve-latency.log")
    watch = DirWatch([sys_.result_dir(), sys_.failed_dir()])
    out: list[float] = []
    failed = timed_out = 0
    gaps = random.Random(GAP_SEED)
    try:
        deadline = time.perf_counter() + BOOT_TIMEOUT_S
        while not sys_.booted_marker.exists():
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"{sys_.label} did not boot:\n{tail(Path(log.name))}")
            time.sleep(0.01)
        # Idle RSS: booted, no job yet.
        time.sleep(IDLE_SETTLE_S)
        st = proc_status(proc.pid)
        # One untimed job, so first-job costs (lazy init) stay out of the samples.
        if write_and_wait(sys_, watch, "boot", BOOT_TIMEOUT_S) is None:
            raise RuntimeError(f"{sys_.label} did not answer a job:\n{tail(Path(log.name))}")
        for i in range(samples + WARMUP_SAMPLES):
            took = write_and_wait(sys_, watch, f"l{i:06d}", LATENCY_TIMEOUT_S)
            if took is None:
                timed_out += 1
            elif (sys_.failed_dir() / f"l{i:06d}.json").exists():
                failed += 1
            elif i >= WARMUP_SAMPLES:
                out.append(took * 1000)
            time.sleep(GAP_MIN_S + gaps.random() * GAP_SPREAD_S)
    finally:
        watch.close()
        stop_node(proc, log)
    return Latency(out, st.get("VmRSS", 0), st.get("Threads", 0), failed, timed_out,
                   "inotify" if watch.fd >= 0 else "stat poll")


def write_and_wait(sys_: System, watch: DirWatch, job_id: str, timeout_s: float):
    targets = [sys_.result_dir() / f"{job_id}.json", sys_.failed_dir() / f"{job_id}.json"]
    watch.drain()
    t0 = time.perf_counter()
    write_job(sys_.inbox(), job_id, durable=sys_.durable_submit, sync_dir=True)
    if not watch.wait(targets, timeout_s):
        return None
    return time.perf_counter() - t0


# --------------------------------------------------------------------------
# report


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_rate(rs: list[Throughput]) -> str:
    if not rs:
        return "not run"
    fin = [r for r in rs if r.finished and r.failed == 0]
    if len(fin) == len(rs):
        rates = [r.rate for r in rs]
        s = f"{med(rates):,.0f}"
        if len(rs) > 1:
            s += f" ({min(rates):,.0f}–{max(rates):,.0f})"
        return s
    r = rs[0]
    if r.failed:
        return f"{r.failed} of {r.n} failed"
    return (f"≤ {r.rate:,.1f} (did not finish: {r.done:,}/{r.n:,} in {r.seconds:,.0f} s)")


def fmt_mb(kb: int) -> str:
    return f"{kb / 1024:.1f} MB" if kb else "n/a"


def fmt_ms(x: float) -> str:
    return f"{x:.2f} ms" if x < 100 else f"{x:.0f} ms"


def summarize(rust: dict, py: dict, args) -> str:
    rows = []

    def lat(d):
        ls = d["latency"]
        if not ls:
            return "not run", "not run", float("nan"), float("nan")
        p50 = med([l.pct(50) for l in ls])
        p99 = med([l.pct(99) for l in ls])
        s50, s99 = fmt_ms(p50), fmt_ms(p99)
        if len(ls) > 1:
            s50 += f" ({fmt_ms(min(l.pct(50) for l in ls))}–{fmt_ms(max(l.pct(50) for l in ls))})"
            s99 += f" ({fmt_ms(min(l.pct(99) for l in ls))}–{fmt_ms(max(l.pct(99) for l in ls))})"
        return s50, s99, p50, p99

    def row(label, d):
        s50, s99, p50, p99 = lat(d)
        idle = med([l.idle_rss_kb for l in d["latency"]]) if d["latency"] else 0
        peak_runs = d["tp"].get(args.big, [])
        peak = med([r.hwm_kb for r in peak_runs]) if peak_runs else 0
        peak_s = fmt_mb(peak)
        if peak_runs and not all(r.finished for r in peak_runs):
            peak_s += " (at timeout)"
        cells = [label, fmt_rate(d["tp"].get(args.small, [])),
                 fmt_rate(d["tp"].get(args.big, [])), s50, s99, fmt_mb(idle), peak_s]
        return cells, dict(p50=p50, p99=p99, idle=idle, peak=peak)

    rc, rn = row("jaros (Rust)", rust)
    pc, pn = row("jaros 0.5.0 (Python)", py)

    def rate_ratio(n):
        r, p = rust["tp"].get(n, []), py["tp"].get(n, [])
        if not r or not p:
            return "n/a"
        rr = med([x.rate for x in r])
        pp = med([x.rate for x in p])
        if pp <= 0:
            return "n/a"
        ok = all(x.finished for x in p)
        return f"{'' if ok else '≥ '}{rr / pp:,.0f}x the jobs/s"

    def inv(rust_v, py_v, better, worse):
        """How the Rust value compares with the Python one, lower being better."""
        if not rust_v or not py_v or rust_v != rust_v or py_v != py_v:
            return "n/a"
        if py_v >= rust_v:
            return f"{py_v / rust_v:,.1f}x {better}"
        return f"{rust_v / py_v:,.1f}x {worse}"

    ratio = ["Rust vs Python", rate_ratio(args.small), rate_ratio(args.big),
             inv(rn["p50"], pn["p50"], "lower", "higher"),
             inv(rn["p99"], pn["p99"], "lower", "higher"),
             inv(rn["idle"], pn["idle"], "smaller", "larger"),
             inv(rn["peak"], pn["peak"], "smaller", "larger")]
    head = ["", f"N={args.small:,} jobs/s", f"N={args.big:,} jobs/s", "p50 latency",
            "p99 latency", "idle RSS", f"peak RSS (N={args.big:,})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cells in (rc, pc, ratio):
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), rn, pn


def goals(rust, py, rn, args) -> list[str]:
    out = []
    for n in (args.small, args.big):
        r, p = rust["tp"].get(n, []), py["tp"].get(n, [])
        if r and p:
            x = med([a.rate for a in r]) / max(1e-9, med([a.rate for a in p]))
            bound = "" if all(a.finished for a in p) else " (Python did not finish: a lower bound)"
            out.append(f"- ≥100x jobs/s at N={n:,}: {'met' if x >= 100 else 'NOT met'} ({x:,.0f}x{bound})")
    if rn["p50"] == rn["p50"]:
        out.append(f"- p50 latency < 5 ms: {'met' if rn['p50'] < 5 else 'NOT met'} ({rn['p50']:.2f} ms)")
    if rn["idle"]:
        out.append(f"- idle memory < 15 MB: {'met' if rn['idle'] / 1024 < 15 else 'NOT met'} ({rn['idle'] / 1024:.1f} MB)")
    return out


def detail(label: str, d: dict) -> list[str]:
    out = [f"{label}:"]
    for n, rs in sorted(d["tp"].items()):
        for r in rs:
            out.append(f"  N={n}: {r.done} done, {r.failed} failed in {r.seconds:.3f} s "
                       f"= {r.rate:,.1f} jobs/s{'' if r.finished else ' (NOT finished)'}; "
                       f"VmHWM {r.hwm_kb} kB, VmRSS {r.rss_kb} kB")
    for l in d["latency"]:
        out.append(f"  latency: {len(l.samples_ms)} samples ({l.watcher}), p50 {l.pct(50):.3f} ms, "
                   f"p90 {l.pct(90):.3f} ms, p99 {l.pct(99):.3f} ms, max {max(l.samples_ms, default=0):.3f} ms; "
                   f"failed {l.failed}, timed out {l.timed_out}; idle VmRSS {l.idle_rss_kb} kB, "
                   f"{l.idle_threads} threads")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--venv", required=True, type=Path)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--big", type=int, default=20000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each Rust measurement")
    ap.add_argument("--py-repeats", type=int, default=1, help="runs of each Python measurement")
    ap.add_argument("--pool", type=int, default=4, help="workers for both (the original's default is 4)")
    ap.add_argument("--py-timeout", type=float, default=600,
                    help="seconds the Python node gets per throughput run (0: no limit)")
    ap.add_argument("--skip-python", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep each run's data dirs")
    args = ap.parse_args()

    version = subprocess.run([args.binary, "--version"], capture_output=True, text=True).stdout.strip()
    py_version = subprocess.run([str(args.venv / "bin" / "python"), "-c",
                                 "import importlib.metadata as m; print(m.version('jaros'))"],
                                capture_output=True, text=True).stdout.strip()
    started = time.time()
    print(f"bench: {version} vs jaros {py_version} (Python {sys.version.split()[0]}); "
          f"pool {args.pool} for both; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}",
          flush=True)

    rust = {"tp": {}, "latency": []}
    py = {"tp": {}, "latency": []}
    plans = [("rust", rust, args.repeats)]
    if not args.skip_python:
        plans.append(("python", py, args.py_repeats))

    def fresh(kind):
        if kind == "rust":
            return rust_system(args.binary, args.pool, args.work)
        return python_system(args.venv, args.pool, args.work)

    def cleanup(s):
        if not args.keep:
            shutil.rmtree(s.root, ignore_errors=True)

    # Interleave the two systems round by round so background load hits both.
    for rnd in range(max(args.repeats, args.py_repeats)):
        for kind, d, reps in plans:
            if rnd >= reps:
                continue
            s = fresh(kind)
            lat = run_latency(s, args.samples)
            d["latency"].append(lat)
            print(f"  {s.label} latency round {rnd + 1}: p50 {lat.pct(50):.3f} ms, "
                  f"p99 {lat.pct(99):.3f} ms, idle RSS {lat.idle_rss_kb} kB "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
            cleanup(s)
            for n in (args.small, args.big):
                s = fresh(kind)
                timeout = args.py_timeout if kind == "python" else 0
                r = run_throughput(s, n, timeout)
                d["tp"].setdefault(n, []).append(r)
                print(f"  {s.label} N={n} round {rnd + 1}: {r.done} done, {r.failed} failed "
                      f"in {r.seconds:.3f} s = {r.rate:,.1f} jobs/s"
                      f"{'' if r.finished else ' (NOT finished)'}, VmHWM {r.hwm_kb} kB "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
                cleanup(s)

    table, rn, pn = summarize(rust, py, args)
    took = time.time() - started
    text = "\n".join([
        f"# jaros (Rust) vs jaros 0.5.0 (Python)",
        "",
        f"{version} vs jaros {py_version} on Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, pool {args.pool} for both; Rust: median of {args.repeats} runs "
        f"(range in brackets), Python: {args.py_repeats} run(s); {args.samples} latency samples per run.",
        "",
        table,
        "",
        "Goals:",
        *goals(rust, py, rn, args),
        "",
        "Runs:",
        "```",
        *detail("jaros (Rust)", rust),
        *detail("jaros 0.5.0 (Python)", py),
        "```",
        "",
        f"Measured in {took:,.0f} s.",
    ])
    print()
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
