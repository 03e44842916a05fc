#!/usr/bin/env bash
# `jaros trace --otlp`, and a node's live export, against a receiver built on the opentelemetry-proto
# package from PyPI (scripts/otel_receiver.py), which parses every request
# into an ExportTraceServiceRequest. Installs the package into a venv under
# target/; fails when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/otel-venv
if ! "$venv/bin/python" -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' 2>/dev/null; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && apt-get install -y -qq python3-venv
        fi
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet 'opentelemetry-proto>=1.20'
fi
"$venv/bin/python" -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2'
export JAROS_OTEL_PYTHON="$PWD/$venv/bin/python"
cargo test --test otel -- --ignored --exact \
    an_export_of_a_demo_run_parses_as_otlp_and_matches_its_jobs \
    a_node_exports_each_jobs_spans_live_as_jaros_trace_derives_them \
    with_a_slow_or_absent_collector_jobs_finish_and_spans_are_dropped_and_counted
