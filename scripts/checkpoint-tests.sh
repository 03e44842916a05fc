#!/usr/bin/env bash
# Signed checkpoints against an independent verifier: tests/fixtures/c2sp_verify.py,
# written from the C2SP signed-note and tlog-checkpoint texts and RFC 6962,
# with the `cryptography` package from PyPI for Ed25519. Installs it into a
# venv under target/; fails when it cannot, or when a test did not run.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/checkpoint-venv
if ! "$venv/bin/python" -c 'import cryptography.hazmat.primitives.asymmetric.ed25519' 2>/dev/null; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && apt-get install -y -qq python3-venv
        fi
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet 'cryptography>=41'
fi
"$venv/bin/python" -c 'import cryptography.hazmat.primitives.asymmetric.ed25519'
export JAROS_PYTHON="$PWD/$venv/bin/python"
tests=(
    the_independent_verifier_accepts_our_checkpoints_and_rejects_edited_ones
    the_independent_verifier_accepts_our_inclusion_proofs_and_rejects_edited_ones
    the_independent_verifier_accepts_our_consistency_proofs_and_rejects_edited_ones
)
out=$(cargo test --test checkpoints -- --ignored --exact "${tests[@]}" 2>&1) || { echo "$out"; exit 1; }
echo "$out"
for t in "${tests[@]}"; do
    grep -q "^test $t \.\.\. ok$" <<<"$out" || { echo "checkpoint tests: $t did not run" >&2; exit 1; }
done
