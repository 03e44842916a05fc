#!/usr/bin/env bash
# Runs the tests that need a real model server, by name, against one started
# here (scripts/model-server.sh start: llama.cpp with SmolLM2-135M from PyPI).
# Those tests are `#[ignore]`d, so plain `cargo test` lists them as ignored and
# never counts them as passed; this script is what runs them.
#
# Exits non-zero when the server does not start, when a test fails, or when a
# test named here did not run (renamed or gone): every name must report `ok`.
# Stops the server afterwards if it started it.
#
#   scripts/real-model-tests.sh          build in the dev profile, run all
#
# Environment: what scripts/model-server.sh reads (JAROS_MODEL_DIR, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each line: a cargo test target selector, then the exact test names.
TESTS=(
    "--test real_model|the_planner_runs_on_a_real_model_through_the_openai_adapter_and_replays the_planner_runs_on_a_real_model_through_the_ollama_adapter_and_replays answers_that_follow_the_schema_pass_the_gate"
    "--test eval|live_mode_asks_the_real_model_and_reports_a_pass_rate_per_case the_planner_triages_tickets_on_the_real_model_at_its_measured_rate"
    "--lib|model::tests::a_real_model_through_openai_answers_schema_shaped_json_and_repeats_itself model::tests::a_real_model_through_the_ollama_front_answers_schema_shaped_json_and_repeats_itself"
)

started=0
out=$(mktemp)
cleanup() {
    rm -f "$out"
    if [ "$started" = 1 ]; then bash scripts/model-server.sh stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
if bash scripts/model-server.sh status >/dev/null 2>&1; then
    echo "real-model-tests: using the model server already running"
else
    bash scripts/model-server.sh start || {
        echo "real-model-tests: FAIL: the model server did not start; the real-model tests cannot run" >&2
        exit 1
    }
    started=1
fi

failed=0
total=0
for entry in "${TESTS[@]}"; do
    target=${entry%%|*}
    read -r -a names <<<"${entry#*|}"
    echo "== cargo test $target -- --ignored --exact ${names[*]}"
    # shellcheck disable=SC2086 # $target is two words on purpose
    if ! cargo test $target -- --ignored --exact --test-threads 1 "${names[@]}" 2>&1 | tee "$out"; then
        failed=1
    fi
    for name in "${names[@]}"; do
        total=$((total + 1))
        if ! grep -qxF "test $name ... ok" "$out"; then
            echo "real-model-tests: FAIL: $name did not run and pass" >&2
            failed=1
        fi
    done
done
if [ "$failed" != 0 ]; then
    echo "real-model-tests: FAIL (see above)" >&2
    exit 1
fi
echo "real-model-tests: all $total tests ran against the real model server and passed"
