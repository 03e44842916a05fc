#!/usr/bin/env bash
# Runs the fuzz targets under fuzz/ with libFuzzer (cargo-fuzz), each for a
# while, after seeding their corpora from the example hive and a demo run's
# log. Needs a nightly toolchain (cargo-fuzz builds with sanitizer flags);
# without one it says so and exits 0. Installs cargo-fuzz from crates.io
# when it is missing.
#
#   scripts/fuzz.sh                    every target, JAROS_FUZZ_SECONDS each
#   scripts/fuzz.sh log_line           one target
#
# Environment: JAROS_FUZZ_SECONDS (default 60). A crash leaves its input
# under fuzz/artifacts/TARGET/ and exits non-zero; reproduce it with
# `cd fuzz && cargo +nightly fuzz run TARGET artifacts/TARGET/crash-...`.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${JAROS_FUZZ_SECONDS:-60}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(manifest_loader canonical_json log_line)

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "SKIP: no nightly toolchain (rustup toolchain install nightly), which cargo-fuzz needs"
    exit 0
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
