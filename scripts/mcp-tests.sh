#!/usr/bin/env bash
# The MCP tests against real servers from the package registries:
# mcp-server-time and mcp-server-git (PyPI, into a venv under target/) and
# @modelcontextprotocol/server-filesystem and server-everything (npm, under
# target/). Runs the ignored tests of tests/mcp_tools.rs by exact name and
# fails when a server cannot be installed or a test did not run.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$PWD/target/mcp-servers"
mkdir -p "$dir"
# Tools run as nobody under a root node: the servers must be reachable.
chmod 755 "$PWD/target" "$dir"

# The venv uses the system's python3 (under /usr), which a confined server
# can read; a python elsewhere would need its own `install` entry.
python=/usr/bin/python3
if [ "$(id -u)" = 0 ] && { ! [ -x "$python" ] || ! "$python" -m venv --help >/dev/null 2>&1 || ! command -v git >/dev/null; }; then
    apt-get update -qq && apt-get install -y -qq python3 python3-venv git
fi
if ! "$dir/venv/bin/python" -c 'import mcp_server_time, mcp_server_git, mcp' 2>/dev/null; then
    "$python" -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet mcp-server-time mcp-server-git mcp
fi
"$dir/venv/bin/python" -c 'import mcp_server_time, mcp_server_git, mcp'

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq nodejs npm
    fi
fi
node --version
if ! [ -x "$dir/node/node_modules/.bin/mcp-server-filesystem" ] || ! [ -x "$dir/node/node_modules/.bin/mcp-server-everything" ]; then
    npm install --silent --prefix "$dir/node" --no-audit --no-fund \
        @modelcontextprotocol/server-filesystem @modelcontextprotocol/server-everything
fi
chmod -R a+rX "$dir"

export JAROS_MCP_SERVERS="$dir"
tests=(
    an_agent_calls_the_time_server
    git_log_on_a_repository_the_test_creates
    the_kernel_stops_the_filesystem_server_outside_the_read_scope
    the_everything_servers_tools_are_listed_and_locked
    a_real_server_whose_tools_drift_from_the_lock_is_refused
)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo test --test mcp_tools -- --ignored --exact --test-threads 1 "${tests[@]}" 2>&1 | tee "$out"
for t in "${tests[@]}"; do
    grep -q "^test $t \.\.\. ok$" "$out" || { echo "mcp-tests: $t did not run and pass" >&2; exit 1; }
done
