#!/usr/bin/env bash
# jaros (Rust) side by side with the Python original, PyPI jaros 0.5.0, in one run.
#
# Builds the release binary (unless --binary is given), installs jaros==0.5.0
# into a temporary venv, and runs the same workload on both with
# scripts/bench_vs_original.py (Python 3 stdlib only):
#
#   - N `advance` jobs dropped into the inbox at once (N = 2,000 and 20,000),
#     then the node started: end-to-end jobs per second from node start until
#     all N result files exist;
#   - submit-to-result latency (p50, p99) on an idle node, one job at a time;
#   - idle RSS (VmRSS after boot) and peak RSS (VmHWM after the 20,000-job run).
#
# Prints a Markdown table and writes it to target/bench-vs-original.md.
#
#   scripts/bench-vs-original.sh [--binary PATH] [--quick] [--out FILE]
#                                [any option of scripts/bench_vs_original.py]
#
#   --binary PATH   use this jaros binary instead of building one
#   --quick         a smoke run: N = 200 and 2,000, 50 samples, one run each
#   --out FILE      where the table goes (default target/bench-vs-original.md)
#   --pool N        workers for both nodes (default 4, the original's default)
#   --repeats N     runs of each Rust measurement (default 3; medians reported)
#   --py-repeats N  runs of each Python measurement (default 1)
#   --py-timeout S  seconds the Python node gets per throughput run (default
#                   600; 0: no limit). A run cut off is reported as such, with
#                   the rate over the part that finished (an upper bound, as
#                   the original slows down as its logs grow).
#   --samples N     latency samples per run (default 200)
#   --keep          keep each run's hive and data dirs under the work dir
#
# Environment: PYTHON (default python3, >= 3.10), JAROS_BENCH_WORK (a directory
# for the temporary venv and data dirs; default: a new one under $TMPDIR).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PYTHON="${PYTHON:-python3}"
ORIGINAL="jaros==0.5.0"

say() { printf 'bench-vs-original: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

binary=""
out="$ROOT/target/bench-vs-original.md"
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a path"; out="$2"; shift 2 ;;
    --quick) pass+=(--small 200 --big 2000 --samples 50 --repeats 1 --py-repeats 1); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) pass+=("$1"); shift ;;
  esac
done

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "$PYTHON is older than 3.10 (the original needs >= 3.10)"

if [ -z "$binary" ]; then
  say "building the release binary (cargo build --release)"
  (cd "$ROOT" && cargo build --release --quiet)
  binary="$ROOT/target/release/jaros"
fi
[ -x "$binary" ] || die "$binary is not an executable"
binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"

work="${JAROS_BENCH_WORK:-}"
if [ -z "$work" ]; then
  work="$(mktemp -d "${TMPDIR:-/tmp}/jaros-bench.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"

venv="$work/venv"
if [ ! -x "$venv/bin/jaros" ]; then
  say "installing $ORIGINAL into a temporary venv ($venv)"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$ORIGINAL"
fi

started=$(date +%s)
"$PYTHON" "$HERE/bench_vs_original.py" \
  --binary "$binary" --venv "$venv" --work "$work" --out "$out" ${pass[@]+"${pass[@]}"}
say "done in $(( $(date +%s) - started )) s"
