#!/usr/bin/env python3
"""The long kill-and-pause campaign: three nodes on one data dir, SIGKILLed
and SIGSTOPped past their lease while they work, then every guarantee checked.

A temporary hive (from `jaros init`, schedules removed) gets three kinds of
job, in equal shares: `advance` (the built-in agent), `marker` (an
executable tool, then `advance`) and `relay` (a hand-off to `advance`, which
makes one child job each). Jobs are dropped into the inbox in waves while the
nodes run. A chaos loop picks a running node at random and either SIGKILLs
it (and restarts it at once under the same node id) or SIGSTOPs it for
longer than the lease and then SIGCONTs it, until the jobs are done and the
kill and pause targets are met, or the time bound passes.

Checks (each failure printed, exit 1):
  - every job has exactly one result (done or failed, never both; nothing
    left in inbox/ or claimed/), every relay's child included;
  - no decision has two effects that count (replay's own count of voided
    records is printed when this build reports one);
  - `jaros verify` and `jaros replay` exit 0.
Prints: jobs, kills, pauses, tool decisions run more than once (the
at-least-once count, from the audit logs), records voided, and the time.

Run by scripts/kill-pause-campaign.sh; Python 3 stdlib only.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

NODES = ["n1", "n2", "n3"]
# Every wait is bounded.
RESULT_WAIT_SECS = 600
STOP_WAIT_SECS = 60
SUBMIT_WAVES = 20


def sh(binary, hive, *args, check=True):
    out = subprocess.run(
        [binary, *args], cwd=hive, capture_output=True, text=True, timeout=3600
    )
    if check and out.returncode != 0:
        raise SystemExit(
            f"`jaros {' '.join(args)}` exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
        )
    return out


def make_hive(binary, work):
    hive = work / "hive"
    sh(binary, work, "init", str(hive))
    shutil.rmtree(hive / "manifests/schedules", ignore_errors=True)
    (hive / "tools/mark.sh").write_text(
        "#!/bin/sh\ncat >/dev/null\nsleep 0.05\necho '{\"marked\": true}'\n"
    )
    os.chmod(hive / "tools/mark.sh", 0o755)
    files = {
        "manifests/tools/mark.yaml": "apiVersion: jaros/v1\nkind: Tool\nmetadata:\n  name: mark\nspec:\n  type: mark\n  description: Marks a job.\n  command: tools/mark.sh\n  timeout: 30s\n  deterministic: false\n  payload_schema: {type: object}\n  result_schema: {type: object}\n",
        "manifests/roles/marker.yaml": "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: marker\nspec:\n  types: [mark, advance]\n",
        "manifests/agents/marker.yaml": "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: marker\nspec:\n  role: marker\n  template: agents/marker.j2\n",
        "agents/marker.j2": '[{"type": "mark", "payload": {}}, {"type": "advance", "payload": {"events": ["start", "complete"]}}]',
        "manifests/roles/relay.yaml": "apiVersion: jaros/v1\nkind: Role\nmetadata:\n  name: relay\nspec:\n  types: [handoff]\n  handoff: [advance]\n",
        "manifests/agents/relay.yaml": "apiVersion: jaros/v1\nkind: Agent\nmetadata:\n  name: relay\nspec:\n  role: relay\n  template: agents/relay.j2\n",
        "agents/relay.j2": '[{"type": "handoff", "payload": {"agent": "advance", "input": {}}}]',
    }
    for rel, text in files.items():
        (hive / rel).parent.mkdir(parents=True, exist_ok=True)
        (hive / rel).write_text(text)
    sh(binary, hive, "validate")
    return hive


def drop_jobs(data, ids):
    """Writes job files into the inbox as `jaros submit` does (temp, fsync
    skipped: the files are not what this campaign tests), then renames."""
    inbox = data / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    for job, agent in ids:
        tmp = inbox / f".{job}.tmp"
        tmp.write_text(json.dumps({"id": job, "agent": agent, "input": {}}))
        os.rename(tmp, inbox / f"{job}.json")


class Node:
    def __init__(self, binary, hive, node_id, flags, logdir):
        self.binary, self.hive, self.id, self.flags = binary, hive, node_id, flags
        self.stderr = open(logdir / f"{node_id}.stderr", "ab")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--node-id", self.id, *self.flags],
            cwd=self.hive,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )

    def kill_and_restart(self):
        self.proc.kill()
        self.proc.wait(timeout=STOP_WAIT_SECS)
        self.start()

    def pause(self, secs):
        self.proc.send_signal(signal.SIGSTOP)
        time.sleep(secs)
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=STOP_WAIT_SECS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return self.proc.returncode


# A file the inbox refused (a job id that ran already, forged lineage) is
# noted under this prefix, which no job id can take: not a job's result.
REFUSED_PREFIX = "_rejected-"


def ids_in(d):
    if not d.is_dir():
        return set()
    return {p.name[:-5] for p in d.iterdir()
            if p.name.endswith(".json") and not p.name.startswith(".")
            and not p.name.startswith(REFUSED_PREFIX)}


def refused_in(d):
    """The reasons of the files the inbox refused."""
    if not d.is_dir():
        return []
    return [json.loads(p.read_text()).get("reason", "")
            for p in d.iterdir() if p.name.startswith(REFUSED_PREFIX) and p.name.endswith(".json")]


def read_logs(data, sub):
    for path in sorted((data / sub).glob("*.jsonl")):
        with open(path) as f:
            for line in f:
                if line.endswith("\n"):
                    yield path.stem, json.loads(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--pauses", type=int, default=200)
    ap.add_argument("--lease-ms", type=int, default=1000)
    ap.add_argument("--max-seconds", type=int, default=5400)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    binary = str(Path(a.binary).resolve())
    work = Path(tempfile.mkdtemp(prefix="jaros-kill-pause."))
    started = time.monotonic()
    deadline = started + a.max_seconds
    hive = make_hive(binary, work)
    data = hive / ".jaros-data"
    heartbeat = max(a.lease_ms // 6, 20)
    flags = [
        "--lease-ms", str(a.lease_ms), "--heartbeat-ms", str(heartbeat),
        "--scan-ms", "50", "--grace-ms", "500", "--pool", "4",
    ]
    agents = ["advance", "marker", "relay"]
    jobs = [(f"c{i:06d}", agents[i % 3]) for i in range(a.jobs)]
    waves = [jobs[i::SUBMIT_WAVES] for i in range(SUBMIT_WAVES)]
    relays = [j for j, agent in jobs if agent == "relay"]
    nodes = [Node(binary, hive, n, flags, work) for n in NODES]
    kills = pauses = 0
    expected = a.jobs + len(relays)
    print(f"campaign: {a.jobs} jobs (+{len(relays)} hand-off children), "
          f"targets {a.kills} kills and {a.pauses} pauses, lease {a.lease_ms} ms, work {work}",
          flush=True)
    last_report = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if waves:
                drop_jobs(data, waves.pop(0))
            finished = len(ids_in(data / "done") | ids_in(data / "failed"))
            events_left = kills < a.kills or pauses < a.pauses
            if finished >= expected and not waves and not events_left:
                break
            if time.monotonic() - last_report > 30:
                print(f"  {int(time.monotonic() - started)}s: {finished}/{expected} results, "
                      f"{kills} kills, {pauses} pauses", flush=True)
                last_report = time.monotonic()
            if not events_left:
                time.sleep(0.2)
                continue
            # Chaos: one event, then a breath so the nodes make progress.
            node = rng.choice(nodes)
            want_kill = kills < a.kills and (pauses >= a.pauses or rng.random() < 0.5)
            if want_kill:
                time.sleep(rng.uniform(0.05, 0.4))
                node.kill_and_restart()
                kills += 1
            else:
                node.pause(a.lease_ms / 1000 * rng.uniform(1.3, 2.5))
                pauses += 1
            time.sleep(rng.uniform(0.1, 0.5))
            # Jobs drained early: top up the work so events hit busy nodes.
            if not waves and finished >= expected and events_left:
                extra = [(f"x{kills:04d}{pauses:04d}{i}", agents[i % 3]) for i in range(30)]
                drop_jobs(data, extra)
                jobs.extend(extra)
                relays.extend(j for j, agent in extra if agent == "relay")
                expected = len(jobs) + len(relays)
        # Let the last jobs finish, bounded.
        wait_until = min(deadline, time.monotonic() + RESULT_WAIT_SECS)
        while time.monotonic() < wait_until:
            if len(ids_in(data / "done") | ids_in(data / "failed")) >= expected and not ids_in(data / "claimed"):
                break
            time.sleep(0.5)
    finally:
        codes = {n.id: n.stop() for n in nodes}
    elapsed = time.monotonic() - started

    problems = []
    done, failed = ids_in(data / "done"), ids_in(data / "failed")
    both = done & failed
    if both:
        problems.append(f"{len(both)} jobs have both a done and a failed result, e.g. {sorted(both)[:3]}")
    submitted = {j for j, _ in jobs}
    missing = submitted - done - failed
    if missing:
        problems.append(f"{len(missing)} submitted jobs have no result, e.g. {sorted(missing)[:3]}")
    children = (done | failed) - submitted
    if len(children) != len(relays):
        problems.append(f"{len(relays)} relays made {len(children)} children with a result")
    for stage in ["inbox", "claimed"]:
        left = ids_in(data / stage)
        if left:
            problems.append(f"{len(left)} jobs left in {stage}/, e.g. {sorted(left)[:3]}")

    effects, ends = Counter(), Counter()
    for _, rec in read_logs(data, "log"):
        if rec.get("kind") == "effect":
            effects[rec["decision"]] += 1
        elif rec.get("kind") == "end":
            ends[rec["job"]] += 1
    twice_effects = sum(1 for c in effects.values() if c > 1)
    twice_ends = sum(1 for c in ends.values() if c > 1)
    tool_runs = Counter()
    for _, rec in read_logs(data, "audit"):
        if rec.get("kind") == "audit" and rec.get("action", "").startswith("tool mark ("):
            tool_runs[rec["decision"]] += 1
    ran_twice = sum(1 for c in tool_runs.values() if c > 1)

    verify = sh(binary, hive, "verify", check=False)
    replay = sh(binary, hive, "replay", "--json", check=False)
    try:
        report = json.loads(replay.stdout)
    except ValueError:
        report = {}
    voided = report.get("voided", report.get("voided_records"))
    if isinstance(voided, list):  # one entry per log and job, with a count
        voided = sum(v.get("records", 1) for v in voided)
    if verify.returncode != 0:
        problems.append(f"jaros verify exited {verify.returncode}: {verify.stdout[-500:]}{verify.stderr[-500:]}")
    if replay.returncode != 0:
        div = report.get("divergence")
        problems.append(f"jaros replay exited {replay.returncode}: {div if div else replay.stderr[-500:]}")
    if voided is None and (twice_effects or twice_ends):
        problems.append(
            f"{twice_effects} decisions with two effects and {twice_ends} jobs with two ends, "
            "and this build's replay voids none of them")

    print(f"jobs: {len(submitted)} submitted + {len(children)} hand-off children = "
          f"{len(done | failed)} with a result ({len(done)} done, {len(failed)} failed, {len(both)} both)")
    refused = refused_in(data / "failed")
    print(f"job files refused by the inbox (none ran): {len(refused)}"
          + (f", e.g. {refused[0]}" if refused else ""))
    print(f"kills: {kills}  pauses: {pauses} (each {a.lease_ms * 1.3 / 1000:.1f}-{a.lease_ms * 2.5 / 1000:.1f} s, lease {a.lease_ms} ms)")
    print(f"tool decisions: {len(tool_runs)}, run more than once (at-least-once): {ran_twice}")
    print(f"decisions with two effect records: {twice_effects}; jobs with two end records: {twice_ends}")
    print(f"records voided by replay: {voided if voided is not None else 'not reported by this build'}")
    print(f"verify exit {verify.returncode}, replay exit {replay.returncode}, node exits {codes}")
    print(f"time: {elapsed:.0f} s")
    if problems:
        print("FAIL:")
        for p in problems:
            print(f"  - {p}")
    else:
        print("PASS")
    if not a.keep and not problems:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept: {work}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
