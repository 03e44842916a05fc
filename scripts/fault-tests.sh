#!/usr/bin/env bash
# The fault-injection tests that need root: a full disk (a small tmpfs) under
# a hand-off, a tool's effect and a result write (tests/disk_full.rs). Each
# job must be held, not failed, and complete once space is freed, with one
# result each and `jaros verify` and `jaros replay` passing.
#
#   scripts/fault-tests.sh
#
# Exit 0: every test passed. Non-zero: a test failed, or a tmpfs cannot be
# mounted here (not root, no mount(8)): these tests never count as passed
# when they did not run.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL fault-tests: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root to mount a tmpfs (CI runs as root)"
if ! command -v mount >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq mount >/dev/null
fi
probe=$(mktemp -d /tmp/jaros-fault-probe.XXXXXX)
if ! mount -t tmpfs -o size=64k tmpfs "$probe"; then
    rmdir "$probe"
    fail "cannot mount a tmpfs on $probe"
fi
umount "$probe"
rmdir "$probe"

tests=(
    a_hand_off_that_meets_a_full_disk_is_held_and_completes_once_space_is_freed
    a_file_write_that_meets_a_full_disk_is_held_and_completes_once_space_is_freed
    a_result_that_meets_a_full_disk_is_written_once_space_is_freed
    jaros_run_holds_a_file_write_on_a_full_disk_and_finishes_it_once_space_is_freed
    an_audit_log_on_a_full_disk_stops_the_node_and_a_restart_completes_the_job
    a_log_that_meets_a_full_disk_while_it_seals_and_signs_loses_nothing
)
cargo test --test disk_full -- --ignored --exact "${tests[@]}"
