"""Calls per second to a warm stdio MCP server (mcp-server-time), through
jaros (gate, log, harness: a node working jobs of CALLS_PER_JOB decisions
each) and directly through the official Python `mcp` client; and the
start-up cost of a cold server (spawn, initialize, tools/list).

Usage: python mcp_bench.py JAROS SERVERS_DIR [JOBS]
Prints one JSON object."""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

JAROS, SERVERS = sys.argv[1], sys.argv[2]
JOBS = int(sys.argv[3]) if len(sys.argv) > 3 else 50
CALLS_PER_JOB = 10
DIRECT_CALLS = 1000
COLD_STARTS = 5
SERVER = os.path.join(SERVERS, "venv/bin/mcp-server-time")
ARGS = {"timezone": "UTC"}


async def direct():
    params = StdioServerParameters(command=SERVER, args=["--local-timezone", "UTC"])
    colds = []
    for _ in range(COLD_STARTS):
        t0 = time.perf_counter()
        async with stdio_client(params) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                await s.list_tools()
                colds.append(time.perf_counter() - t0)
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            await s.call_tool("get_current_time", ARGS)
            t0 = time.perf_counter()
            for _ in range(DIRECT_CALLS):
                await s.call_tool("get_current_time", ARGS)
            dt = time.perf_counter() - t0
    return DIRECT_CALLS / dt, sorted(colds)[len(colds) // 2]


def jaros(*args, cwd):
    return subprocess.run([JAROS, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def through_jaros():
    hive = tempfile.mkdtemp(prefix="jaros-mcp-bench-")
    os.chmod(hive, 0o755)
    def write(rel, text):
        path = os.path.join(hive, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    write("manifests/tools/time.yaml", f"""apiVersion: jaros/v1
kind: Tool
metadata: {{name: time}}
spec:
  type: time
  mcp:
    command: {SERVER}
    args: [--local-timezone, UTC]
    install: [{os.path.join(SERVERS, 'venv')}]
  expose: [get_current_time]
  timeout: 30s
""")
    write("manifests/roles/caller.yaml", """apiVersion: jaros/v1
kind: Role
metadata: {name: caller}
spec:
  types: ["time.*"]
  budget: {decisions: 64}
""")
    write("manifests/agents/caller.yaml", """apiVersion: jaros/v1
kind: Agent
metadata: {name: caller}
spec: {role: caller, template: agents/caller.j2}
""")
    calls = ", ".join(['{"type": "time.get_current_time", "payload": {"timezone": "UTC"}}'] * CALLS_PER_JOB)
    write("agents/caller.j2", f"[{calls}]")
    jaros("mcp", "lock", cwd=hive)
    # One job first, so the timed ones find the server warm.
    jaros("submit", "caller", "--id", "warm", cwd=hive)
    node = subprocess.Popen([JAROS, "serve", "--node-id", "bench"], cwd=hive,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        jaros("result", "warm", "--wait", "60", cwd=hive)
        t0 = time.perf_counter()
        for i in range(JOBS):
            jaros("submit", "caller", "--id", f"j{i}", cwd=hive)
        jaros("result", f"j{JOBS - 1}", "--wait", "600", cwd=hive)
        done = os.path.join(hive, ".jaros-data/done")
        while len([f for f in os.listdir(done) if f.endswith(".json")]) < JOBS + 1:
            time.sleep(0.01)
        dt = time.perf_counter() - t0
    finally:
        node.terminate()
        node.wait()
    failed = os.path.join(hive, ".jaros-data/failed")
    n_failed = len(os.listdir(failed)) if os.path.isdir(failed) else 0
    shutil.rmtree(hive, ignore_errors=True)
    return JOBS * CALLS_PER_JOB / dt, n_failed


rate_direct, cold = asyncio.run(direct())
rate_jaros, failed = through_jaros()
print(json.dumps({
    "direct_calls_per_s": round(rate_direct, 1),
    "jaros_calls_per_s": round(rate_jaros, 1),
    "jaros_calls": JOBS * CALLS_PER_JOB,
    "calls_per_job": CALLS_PER_JOB,
    "jaros_failed_jobs": failed,
    "cold_start_ms_median": round(cold * 1000, 1),
}))
