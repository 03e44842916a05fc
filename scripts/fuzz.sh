#!/usr/bin/env bash
# Fuzzes the readers that take bytes from outside: the log's line and file
# reader, the job-file reader and the manifest loader (and, with libFuzzer,
# the canonical JSON encoder).
#
#   scripts/fuzz.sh --stable           tests/fuzz_stable.rs in the `fuzz` profile
#                                      (stable Rust): millions of inputs, what
#                                      .ci/run runs
#   scripts/fuzz.sh                    every libFuzzer target, JAROS_FUZZ_SECONDS each
#   scripts/fuzz.sh log_line           one libFuzzer target
#
# --stable: JAROS_FUZZ_LOG_INPUTS, JAROS_FUZZ_JOB_INPUTS and
# JAROS_FUZZ_MANIFEST_INPUTS set the counts (defaults below: over ten million
# in all, about two minutes on two cores), JAROS_FUZZ_SEED the generator's
# seed. A failure prints the input, its number and the seed; the same seed
# and counts make the same inputs. Fails when a test fails or did not run.
#
# libFuzzer (cargo-fuzz) needs a nightly toolchain (it builds with sanitizer
# flags); without one this fails, saying so. Installs cargo-fuzz from
# crates.io when it is missing. JAROS_FUZZ_SECONDS (default 60) per target.
# A crash leaves its input under fuzz/artifacts/TARGET/ and exits non-zero;
# reproduce it with `cd fuzz && cargo +nightly fuzz run TARGET artifacts/TARGET/crash-...`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --stable ]; then
    export JAROS_FUZZ_LOG_INPUTS="${JAROS_FUZZ_LOG_INPUTS:-6000000}"
    export JAROS_FUZZ_JOB_INPUTS="${JAROS_FUZZ_JOB_INPUTS:-2000000}"
    export JAROS_FUZZ_MANIFEST_INPUTS="${JAROS_FUZZ_MANIFEST_INPUTS:-2000000}"
    tests=(
        mutated_log_lines_and_files_never_break_the_readers_properties
        mutated_job_files_are_read_or_refused_with_a_reason
        mutated_manifests_get_errors_with_a_place_and_never_panic_the_loader
    )
    echo "fuzz: log $JAROS_FUZZ_LOG_INPUTS, job files $JAROS_FUZZ_JOB_INPUTS, manifests $JAROS_FUZZ_MANIFEST_INPUTS inputs"
    out=$(mktemp)
    trap 'rm -f "$out"' EXIT
    status=0
    cargo test --profile fuzz --test fuzz_stable -- --exact --nocapture "${tests[@]}" 2>&1 | tee "$out" || status=1
    for name in "${tests[@]}"; do
        grep -qxF "test $name ... ok" "$out" || { echo "fuzz: FAIL: $name did not run and pass" >&2; status=1; }
    done
    [ "$status" = 0 ] || exit 1
    grep '^fuzz ' "$out"
    exit 0
fi

SECONDS_EACH="${JAROS_FUZZ_SECONDS:-60}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(manifest_loader canonical_json log_line)

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: FAIL: no nightly toolchain, which cargo-fuzz needs (rustup toolchain install nightly);" >&2
    echo "fuzz: on stable Rust run scripts/fuzz.sh --stable" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

# Seeds: the example hive's manifests; each line of a demo run's log (one
# record per file); the same lines as JSON values for the encoder.
corpus=fuzz/corpus
mkdir -p "$corpus/manifest_loader" "$corpus/log_line" "$corpus/canonical_json"
i=0
while IFS= read -r -d '' file; do
    i=$((i + 1))
    cp "$file" "$corpus/manifest_loader/seed-$i.yaml"
done < <(find manifests -name '*.yaml' -print0)
demo=$(mktemp -d)
trap 'rm -rf "$demo"' EXIT
if ! cargo run --quiet --release -- demo --dir "$demo/hive" >"$demo/demo.out" 2>&1; then
    cat "$demo/demo.out"
    exit 1
fi
i=0
while IFS= read -r line; do
    i=$((i + 1))
    printf '%s' "$line" >"$corpus/log_line/seed-$i"
    printf '%s' "$line" >"$corpus/canonical_json/seed-$i"
done < <(cat "$demo"/hive/.jaros-data/log/*.jsonl)

cd fuzz
for target in "${TARGETS[@]}"; do
    echo "== $target (${SECONDS_EACH}s)"
    max_len=4096
    [ "$target" = manifest_loader ] && max_len=65536
    cargo +nightly fuzz run "$target" -- -max_len="$max_len" \
        -max_total_time="$SECONDS_EACH" 2>&1 | grep -E '^(Done|INFO: seed corpus|==|SUMMARY)|panicked|ERROR' || true
    if [ -n "$(ls -A "artifacts/$target" 2>/dev/null)" ]; then
        echo "FAIL: $target left inputs in fuzz/artifacts/$target"
        exit 1
    fi
done
