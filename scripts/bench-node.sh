#!/usr/bin/env bash
# The node alone, as its directories fill: jobs per second for N = 2,000 and
# 20,000 jobs (dropped before the node starts, and renamed into a running
# node's inbox), idle RSS after boot and after a minute idle, peak RSS, and
# (with --strace) syscalls per job. Several binaries run side by side,
# alternating round by round. Needs Python 3 (stdlib) and, for --strace,
# strace (`apt-get install -y strace`).
#
#   scripts/bench-node.sh [--binary [LABEL=]PATH]... [--quick] [--strace]
#                         [any option of scripts/bench_node.py]
#
#   --binary [LABEL=]PATH  a jaros binary (repeat to compare two builds, e.g.
#                          before=/tmp/jaros-old after=target/release/jaros);
#                          default: build and use target/release/jaros
#   --quick                N = 200 and 2,000, one round, 5 s idle
#   --repeats N            rounds (default 3; medians and ranges reported)
#   --sizes A,B            job counts (default 2000,20000)
#   --modes cold,live      which workloads (default both)
#   --idle-s S             how long the idle node waits before its second
#                          RSS look (default 60)
#   --strace               count syscalls per job (one live run of
#                          --strace-n jobs, default 2,000, under strace -f -c)
#
# Environment: JAROS_BENCH_WORK (where the data dirs go; default a new
# directory under $TMPDIR, removed at exit).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PYTHON="${PYTHON:-python3}"

say() { printf 'bench-node: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

bins=()
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; bins+=(--binary "$2"); shift 2 ;;
    --quick) pass+=(--sizes 200,2000 --repeats 1 --idle-s 5); shift ;;
    --strace) command -v strace >/dev/null || die "--strace needs strace (apt-get install -y strace)"
              pass+=(--strace); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) pass+=("$1"); shift ;;
  esac
done

if [ ${#bins[@]} -eq 0 ]; then
  say "building the release binary (cargo build --release)"
  (cd "$ROOT" && cargo build --release --quiet)
  bins=(--binary "jaros=$ROOT/target/release/jaros")
fi

work="${JAROS_BENCH_WORK:-}"
if [ -z "$work" ]; then
  work="$(mktemp -d "${TMPDIR:-/tmp}/jaros-bench-node.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"

"$PYTHON" "$HERE/bench_node.py" --work "$work" "${bins[@]}" ${pass[@]+"${pass[@]}"}
