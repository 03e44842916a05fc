#!/usr/bin/env python3
"""The node alone: jobs per second as its directories fill, idle and peak RSS,
file-system calls per claim; one or more binaries side by side.

Driven by scripts/bench-node.sh; Python 3 stdlib only. Reuses the Rust half
of scripts/bench_vs_original.py (the hive, the job files, the node process).

Workloads (each on a fresh `jaros init` hive and data dir, pool 4):
  cold    N job files written (temp, fsync, rename), then the node started;
          jobs/s = N / (node start .. the N-th result file): the README's
          "Side by side with the original" measure.
  live    the node started and idle (booted, IDLE_SETTLE_S), then N job files,
          written and synced beside the inbox beforehand, renamed into it;
          jobs/s = N / (first rename .. the N-th result file).
  idle    VmRSS after boot + IDLE_SETTLE_S, and again after --idle-s seconds
          with no jobs (with /proc/PID/smaps_rollup's split of it); the
          binary's pages are dropped from the page cache first (see uncache).
  peak    VmHWM of the node once the N-th result exists (largest N).
  strace  (--strace) one live run of --strace-n jobs under `strace -f -c`:
          calls per job by syscall (the node's boot and idle wait included,
          which is why the count of an idle node of the same length is
          subtracted: see the report).

Binaries given with several --binary run alternately, round by round, so
background load on a shared machine falls on each alike. The load average
is printed with every run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_vs_original as bvo  # noqa: E402

IDLE_SETTLE_S = 2.0
POLL_S = 0.005
RUN_TIMEOUT_S = 900.0


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def wait_booted(s: bvo.System, proc) -> None:
    deadline = time.perf_counter() + bvo.BOOT_TIMEOUT_S
    while not s.booted_marker.exists():
        if proc.poll() is not None or time.perf_counter() > deadline:
            raise RuntimeError(f"node did not boot:\n{bvo.tail(s.root / 'serve.log')}")
        time.sleep(0.01)


def wait_results(s: bvo.System, ids: list[str], proc, t0: float) -> tuple[float, int, int]:
    """Seconds from t0 until every id has a result; done and failed counts."""
    pending = list(ids)
    done = failed = 0
    while pending:
        name = f"{pending[-1]}.json"
        if (s.result_dir() / name).exists():
            done += 1
            pending.pop()
            continue
        if (s.failed_dir() / name).exists():
            failed += 1
            pending.pop()
            continue
        if proc.poll() is not None or time.perf_counter() - t0 > RUN_TIMEOUT_S:
            raise RuntimeError(f"node stopped or timed out:\n{bvo.tail(s.root / 'serve.log')}")
        time.sleep(POLL_S)
    return time.perf_counter() - t0, done, failed


def smaps(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return out


def uncache(binary: str) -> None:
    """Drops the binary's pages from the page cache, so that every build's idle
    RSS is measured with its code read back the same way, by the faults of its
    boot. A file just written by the linker or `cp` stays cached in larger
    pieces, and the kernel maps more of it around each page a process touches:
    up to 0.8 MB more resident for the same binary on this machine."""
    fd = os.open(binary, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cold(binary: str, n: int, work: Path) -> dict:
    s = bvo.rust_system(binary, 4, work)
    try:
        r = bvo.run_throughput(s, n, RUN_TIMEOUT_S)
        if not r.finished or r.failed:
            raise RuntimeError(f"cold N={n}: {r.done} done, {r.failed} failed, finished {r.finished}")
        return {"rate": r.rate, "hwm_kb": r.hwm_kb}
    finally:
        shutil.rmtree(s.root, ignore_errors=True)


def live(binary: str, n: int, work: Path, idle_s: float = 0.0, wrap: list[str] | None = None) -> dict:
    s = bvo.rust_system(binary, 4, work)
    if wrap:
        s.serve = wrap + s.serve
    proc, log = bvo.start_node(s, "serve.log")
    out: dict = {}
    try:
        wait_booted(s, proc)
        time.sleep(IDLE_SETTLE_S)
        st = bvo.proc_status(proc.pid)
        out["idle_kb"] = st.get("VmRSS", 0)
        out["threads"] = st.get("Threads", 0)
        if idle_s > 0:
            time.sleep(idle_s)
            out["idle_later_kb"] = bvo.proc_status(proc.pid).get("VmRSS", 0)
            out["smaps"] = smaps(proc.pid)
        if n == 0:
            return out
        # Written (and synced) beside the inbox first, so the clock runs
        # over the renames into it only, not over the writer's fsyncs.
        staging = s.data / "staging"
        staging.mkdir()
        ids = [f"t{i:06d}" for i in range(n)]
        for job_id in ids:
            bvo.write_job(staging, job_id, durable=True, sync_dir=False)
        bvo.fsync_dir(staging)
        t0 = time.perf_counter()
        for job_id in ids:
            os.rename(staging / f"{job_id}.json", s.inbox() / f"{job_id}.json")
        out["seconds"], out["done"], out["failed"] = wait_results(s, ids, proc, t0)
        out["rate"] = n / out["seconds"]
        out["hwm_kb"] = bvo.proc_status(proc.pid).get("VmHWM", 0)
        return out
    finally:
        if wrap:
            # Under strace: the node gets the SIGTERM (strace itself would
            # detach and leave it running), and strace writes its counts
            # once the node has exited.
            for pid in children(proc.pid):
                os.kill(pid, signal.SIGTERM)
        bvo.stop_node(proc, log)
        shutil.rmtree(s.root, ignore_errors=True)


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def strace_counts(path: Path) -> dict[str, int]:
    """Calls by syscall from `strace -c` output."""
    calls = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            name = parts[-1]
            try:
                calls[name] = int(parts[3])
            except ValueError:
                continue
    return calls


def strace_run(binary: str, n: int, work: Path) -> dict[str, int]:
    out = work / f"strace-{os.getpid()}-{time.time_ns()}.txt"
    r = live(binary, n, work, wrap=["strace", "-f", "-c", "-o", str(out)])
    if r.get("failed"):
        raise RuntimeError(f"strace run: {r['failed']} failed")
    calls = strace_counts(out)
    out.unlink(missing_ok=True)
    return calls


def rng(xs: list[float], fmt: str = "{:,.0f}") -> str:
    s = fmt.format(statistics.median(xs))
    if len(xs) > 1:
        s += f" ({fmt.format(min(xs))}–{fmt.format(max(xs))})"
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", action="append", required=True,
                    help="a jaros binary (repeat to compare; label with LABEL=PATH)")
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--sizes", default="2000,20000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default="cold,live", help="cold, live or both")
    ap.add_argument("--idle-s", type=float, default=60.0, help="idle wait for the later RSS look (0: none)")
    ap.add_argument("--strace", action="store_true", help="also count syscalls per job")
    ap.add_argument("--strace-n", type=int, default=2000)
    args = ap.parse_args()

    bins = []
    for b in args.binary:
        label, _, path = b.rpartition("=")
        bins.append((label or Path(path).parent.name, str(Path(path).resolve())))
    sizes = [int(x) for x in args.sizes.split(",") if x]
    modes = [m for m in args.modes.split(",") if m]
    print(f"bench-node: {', '.join(l for l, _ in bins)}; sizes {sizes}; modes {modes}; "
          f"{args.repeats} round(s); {os.cpu_count()} CPUs; load {load()}", flush=True)
    res: dict = {l: {} for l, _ in bins}
    for rnd in range(args.repeats):
        for mode in modes:
            for n in sizes:
                for label, path in bins:
                    r = cold(path, n, args.work) if mode == "cold" else live(path, n, args.work)
                    res[label].setdefault((mode, n), []).append(r)
                    print(f"  round {rnd + 1} {label:>8} {mode:>4} N={n:>6}: {r['rate']:8,.0f} jobs/s, "
                          f"VmHWM {r['hwm_kb']:,} kB (load {load()})", flush=True)
    idle = {}
    if args.idle_s > 0:
        for label, path in bins:
            uncache(path)
            idle[label] = live(path, 0, args.work, idle_s=args.idle_s)
            i = idle[label]
            print(f"  {label:>8} idle: VmRSS {i['idle_kb']:,} kB after boot, {i['idle_later_kb']:,} kB "
                  f"after {args.idle_s:.0f} s; {i['threads']} threads; smaps_rollup {i['smaps']} "
                  f"(load {load()})", flush=True)
    calls = {}
    if args.strace:
        for label, path in bins:
            busy = strace_run(path, args.strace_n, args.work)
            quiet = strace_run(path, 0, args.work)
            per = {k: (busy.get(k, 0) - quiet.get(k, 0)) / args.strace_n for k in busy}
            calls[label] = per
            top = sorted(per.items(), key=lambda kv: -kv[1])[:25]
            print(f"  {label:>8} syscalls per job (N={args.strace_n}, less an idle node's): "
                  f"{sum(per.values()):.1f} in all; "
                  + ", ".join(f"{k} {v:.2f}" for k, v in top), flush=True)

    print()
    head = ["binary"] + [f"{m} N={n:,} jobs/s" for m in modes for n in sizes] + [
        "idle RSS (boot / +idle)", f"peak RSS (N={max(sizes):,})"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label, _ in bins:
        cells = [label]
        for m in modes:
            for n in sizes:
                cells.append(rng([r["rate"] for r in res[label][(m, n)]]))
        i = idle.get(label)
        cells.append(f"{i['idle_kb'] / 1024:.1f} / {i['idle_later_kb'] / 1024:.1f} MiB "
                     f"({i['idle_kb'] * 1.024 / 1000:.1f} / {i['idle_later_kb'] * 1.024 / 1000:.1f} MB)"
                     if i else "not run")
        peaks = [r["hwm_kb"] for m in modes for r in res[label][(m, max(sizes))]]
        cells.append(rng([p / 1024 for p in peaks], "{:.1f}") + " MiB")
        print("| " + " | ".join(cells) + " |")
    for label, _ in bins:
        for m in modes:
            if len(sizes) >= 2:
                lo, hi = min(sizes), max(sizes)
                a = statistics.median(r["rate"] for r in res[label][(m, lo)])
                b = statistics.median(r["rate"] for r in res[label][(m, hi)])
                print(f"{label} {m}: N={hi:,} at {b / a:.0%} of N={lo:,} (goal: within 20%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
