#!/usr/bin/env bash
# The node's jobs per second with logs at info (text, JSON, and JSON into a
# pipe nobody reads), with metrics scraped every second, and with live OTLP
# export on (to a receiver, and to a collector that never answers), against
# all of it off (scripts/bench_observability.py; prints a Markdown table).
#
#   scripts/bench-observability.sh [--binary PATH] [--n N] [--repeats R] [--pool P]
#
# Builds the release binary unless --binary is given; the export's receiver
# needs opentelemetry-proto, installed into target/otel-venv as
# scripts/otel-tests.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=""
if [ "${1:-}" = "--binary" ]; then
    binary="$2"
    shift 2
fi
if [ -z "$binary" ]; then
    cargo build --release --bin jaros
    binary="$PWD/target/release/jaros"
fi
venv=target/otel-venv
if ! "$venv/bin/python" -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'opentelemetry-proto>=1.20'
fi
exec python3 scripts/bench_observability.py "$binary" "$PWD/$venv/bin/python" "$@"
