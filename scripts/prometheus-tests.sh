#!/usr/bin/env bash
# The console's /metrics scraped by a real Prometheus server from Debian's
# `prometheus` package, on loopback with a bearer token (tests/prometheus.rs).
# Installs it when missing (needs root, as CI runs); fails when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
prometheus=$(command -v prometheus || true)
if [ -z "$prometheus" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "prometheus-tests: prometheus is not installed and this is not root; run: apt-get install -y prometheus" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
    prometheus=$(command -v prometheus)
fi
"$prometheus" --version >/dev/null
export JAROS_PROMETHEUS="$prometheus"
cargo test --test prometheus -- --ignored --exact \
    prometheus_scrapes_the_consoles_metrics_with_a_bearer_token
