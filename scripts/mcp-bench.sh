#!/usr/bin/env bash
# MCP throughput: calls per second to a warm mcp-server-time through a jaros
# node (gate, durable log, harness, Landlock) against the official Python
# client calling it directly, and a cold server's start-up time. Installs
# the servers as scripts/mcp-tests.sh does; uses target/release/jaros when
# built (`cargo build --release`), else the debug binary.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$PWD/target/mcp-servers"
if ! "$dir/venv/bin/python" -c 'import mcp_server_time, mcp' 2>/dev/null; then
    mkdir -p "$dir"
    /usr/bin/python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet mcp-server-time mcp
fi
chmod 755 "$PWD/target" "$dir"; chmod -R a+rX "$dir"
bin="$PWD/target/release/jaros"
[ -x "$bin" ] || { cargo build --quiet; bin="$PWD/target/debug/jaros"; }
echo "binary: $bin" >&2
"$dir/venv/bin/python" scripts/mcp_bench.py "$bin" "$dir" "${1:-50}"
