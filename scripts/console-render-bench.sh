#!/usr/bin/env bash
# Time to a fully rendered Overview and Jobs page in a real headless
# Chromium, on a data dir holding 100,000 finished jobs (JAROS_BENCH_JOBS to
# change). Builds the release binary, makes the hive with the generator of
# benches/console.rs, and runs scripts/console_render_bench.py on it, which
# prints median and p90 per page. Installs Debian's chromium when it is
# missing; exits non-zero when Chromium cannot be installed or cannot run.
# A benchmark: no thresholds. Usage: console-render-bench.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "render bench: chromium is missing and installing it needs root" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
command -v chromium >/dev/null 2>&1 || { echo "render bench: chromium did not install" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "render bench: python3 is missing" >&2; exit 1; }

df -h / | tail -1 | awk '{print "render bench: disk / has " $4 " free (" $5 " used)"}'
cargo build --release --bin jaros

work="$(mktemp -d "${TMPDIR:-/tmp}/jaros-render-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
JAROS_BENCH_HIVE_ONLY="$work/hive" cargo bench --bench console

echo "render bench: load before measuring: $(uptime)"
python3 scripts/console_render_bench.py target/release/jaros "$work/hive" "${1:-10}"
