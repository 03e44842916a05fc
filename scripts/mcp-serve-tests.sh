#!/usr/bin/env bash
# `jaros mcp serve` driven by the official MCP Python SDK (PyPI `mcp`,
# tests/fixtures/mcp_serve_client.py) against a running node. Installs the
# package into a venv under target/; fails when it cannot, or when the test
# did not run.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/mcp-serve-venv
if ! "$venv/bin/python" -c 'import mcp.client.stdio' 2>/dev/null; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && apt-get install -y -qq python3-venv
        fi
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet 'mcp>=1.10'
fi
"$venv/bin/python" -c 'import mcp.client.stdio'
export JAROS_MCP_PYTHON="$PWD/$venv/bin/python"
out=$(cargo test --test mcp_serve -- --ignored --exact \
    the_official_python_client_drives_a_session 2>&1) || { echo "$out"; exit 1; }
echo "$out"
grep -q "test result: ok. 1 passed" <<<"$out" || { echo "mcp-serve-tests: the test did not run"; exit 1; }
