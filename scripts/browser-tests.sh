#!/usr/bin/env bash
# The console in a real headless Chromium: installs Debian's chromium when it
# is missing, then runs the ignored browser test of tests/console.rs, which
# drives scripts/browser_tests.py over the DevTools protocol. Exits non-zero
# when Chromium cannot be installed or cannot run, or when a check fails.
#
# Screenshots go to target/console-screens/ (JAROS_SCREENS to change);
# `--docs` also copies them into docs/console/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "browser tests: chromium is missing and installing it needs root" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
command -v chromium >/dev/null 2>&1 || { echo "browser tests: chromium did not install" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "browser tests: python3 is missing" >&2; exit 1; }

export JAROS_SCREENS="${JAROS_SCREENS:-$PWD/target/console-screens}"
cargo test --test console -- --ignored --exact the_console_works_in_a_real_browser --nocapture

if [ "${1:-}" = "--docs" ]; then
    mkdir -p docs/console
    for page in overview jobs failed-job evals; do
        cp "$JAROS_SCREENS/$page.png" docs/console/
    done
    echo "copied screenshots into docs/console/"
fi
