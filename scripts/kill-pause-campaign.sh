#!/usr/bin/env bash
# The long fault campaign: three nodes on one data dir, mixed agents (a tool,
# a hand-off, the built-in advance), at least 10,000 jobs, 200 SIGKILLs
# (each node restarted at once) and 200 SIGSTOP/SIGCONT pauses longer than
# the lease; then every job must have exactly one result, no decision two
# effects that count, and `jaros verify` and `jaros replay` must pass.
# Prints the counts (jobs, kills, pauses, tool decisions run more than once,
# records voided) and exits 1 on any failed check.
#
#   scripts/kill-pause-campaign.sh [--binary PATH] [--quick] [option...]
#
#   --binary PATH    the jaros binary (default: target/release/jaros, built)
#   --quick          a reduced run: 600 jobs, 15 kills, 15 pauses
#   --jobs N --kills N --pauses N --lease-ms MS --max-seconds S --seed N --keep
#                    see scripts/kill_pause_campaign.py (time bound default
#                    5400 s; Python 3 stdlib only)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
binary=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$(realpath "$2"); shift 2 ;;
        --quick) args+=(--jobs 600 --kills 15 --pauses 15 --max-seconds 900); shift ;;
        *) args+=("$1"); shift ;;
    esac
done
if [ -z "$binary" ]; then
    (cd "$ROOT" && cargo build --release --quiet)
    binary="$ROOT/target/release/jaros"
fi
exec python3 "$HERE/kill_pause_campaign.py" --binary "$binary" "${args[@]}"
