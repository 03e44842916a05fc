#!/usr/bin/env bash
# The container test: builds the OCI image twice (same digest), validates it with
# skopeo and umoci, runs it with podman on a host data dir, submits jobs from the
# host with the host binary, and checks the container-written logs with
# `jaros replay` on the host (byte-identical, 0 model calls). Then two containers
# on one data dir: every job done exactly once.
#
#   scripts/oci-test.sh --binary PATH [--jobs N]
#
# Exit 0: passed, or skipped (a SKIP line says why). Exit 1: a real failure.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=""
jobs=12
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$(realpath "$2"); shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        *) echo "usage: $0 --binary PATH [--jobs N]" >&2; exit 2 ;;
    esac
done
[ -x "$binary" ] || { echo "oci-test: --binary PATH is required" >&2; exit 2; }

# Limits: every wait in this test is bounded.
RESULT_WAIT_SECS=60
STOP_TIMEOUT_SECS=20
CONTAINER_UID=65532

skip() { echo "SKIP oci-test: $*"; exit 0; }
fail() { echo "FAIL oci-test: $*" >&2; exit 1; }
step() { echo "--- oci-test: $*"; }

for tool in skopeo umoci podman runc python3 setpriv; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed (Debian: podman buildah umoci skopeo runc)"
done

work=$(mktemp -d /tmp/jaros-oci-test.XXXXXX)
chmod 0755 "$work"
tag="oci-test-$$"
image="localhost/jaros:$tag"
containers=()
podman_run=(podman --runtime runc run --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none)

cleanup() {
    for c in "${containers[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
    podman rmi -f "$image" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# The host binary runs as the container's user, so the files it writes into the
# shared data dir are the node's to rename, as they would be on a shared volume.
as_node() { setpriv --reuid "$CONTAINER_UID" --regid "$CONTAINER_UID" --clear-groups "$@"; }
# Host-side jaros on a data dir, with the repository as its hive (the image's /hive).
host_jaros() { local data=$1; shift; JAROS_DATA_DIR="$data" JAROS_HIVE="$repo_root" "$binary" "$@"; }

step "build the image twice"
d1=$("$repo_root/scripts/oci-build.sh" --binary "$binary" --out "$work/oci-1" --tag "$tag")
d2=$("$repo_root/scripts/oci-build.sh" --binary "$binary" --out "$work/oci-2" --tag "$tag")
[ "$d1" = "$d2" ] || fail "two builds gave different manifest digests: $d1 vs $d2"
cmp -s "$work/oci-1/index.json" "$work/oci-2/index.json" || fail "two builds gave different index.json"
echo "manifest digest stable: $d1"

step "validate: skopeo copy (checks every digest) and umoci stat"
skopeo --insecure-policy copy --quiet --preserve-digests "oci:$work/oci-1:$tag" "oci:$work/copy:$tag" \
    || fail "skopeo copy rejected the layout"
copied=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$work/copy/index.json")
[ "$copied" = "$d1" ] || fail "skopeo copy --preserve-digests changed the manifest digest: $d1 -> $copied"
skopeo inspect --config "oci:$work/oci-1:$tag" > "$work/config.json" || fail "skopeo inspect failed"
umoci stat --image "$work/oci-1:$tag" > "$work/umoci-stat.txt" || fail "umoci stat failed"
python3 - "$work/config.json" <<'PY' || fail "image config does not match the contract"
import json, sys
c = json.load(open(sys.argv[1]))["config"]
want = {"Entrypoint": ["/bin/jaros", "serve"], "User": "65532:65532",
        "Volumes": {"/data": {}}}
for k, v in want.items():
    assert c.get(k) == v, f"{k}: {c.get(k)!r} != {v!r}"
assert "JAROS_HIVE=/hive" in c["Env"] and "JAROS_DATA_DIR=/data" in c["Env"], c["Env"]
for label in ("title", "version", "revision", "source"):
    assert c["Labels"].get("org.opencontainers.image." + label), f"label {label} missing"
PY

step "load into podman"
skopeo --insecure-policy copy --quiet "oci:$work/oci-1:$tag" "containers-storage:$image" \
    || skip "cannot load the image into podman's storage here"
podman image exists "$image" || fail "skopeo copied the image but podman does not list $image"
version_host=$("$binary" --version)
version_ctr=$("${podman_run[@]}" --rm --entrypoint /bin/jaros "$image" --version 2>&1) \
    || skip "podman cannot run containers here: $version_ctr"
[ "$version_ctr" = "$version_host" ] || fail "in the container: '$version_ctr', on the host: '$version_host'"
echo "runs in an empty container: $version_ctr"

# Starts a node container on a host data dir; its name goes to `containers`.
start_node() {
    local data=$1 node=$2 name="jaros-oci-test-$$-$2"
    "${podman_run[@]}" -d --name "$name" -v "$data:/data" "$image" --node-id "$node" >/dev/null \
        || fail "podman run failed for $node"
    containers+=("$name")
}

# Submits N advance jobs from the host; prints their ids.
submit_jobs() {
    local data=$1 n=$2 i id
    for i in $(seq 1 "$n"); do
        id=$(as_node env JAROS_DATA_DIR="$data" JAROS_HIVE="$repo_root" "$binary" submit advance --input "{\"note\":\"oci-test $i\"}") \
            || fail "jaros submit failed"
        echo "$id" | tail -n1
    done
}

wait_results() {
    local data=$1 ids=$2 id
    for id in $ids; do
        host_jaros "$data" result "$id" --wait "$RESULT_WAIT_SECS" >/dev/null \
            || { podman logs --tail 30 "${containers[-1]}" >&2 || true; fail "no result for job $id within ${RESULT_WAIT_SECS}s"; }
    done
}

stop_nodes() {
    local c code
    for c in "$@"; do
        podman stop -t "$STOP_TIMEOUT_SECS" "$c" >/dev/null || fail "podman stop $c failed"
        code=$(podman inspect --format '{{.State.ExitCode}}' "$c")
        [ "$code" = 0 ] || { podman logs --tail 30 "$c" >&2 || true; fail "node $c exited $code on SIGTERM (want 0)"; }
    done
}

check_replay() {
    local data=$1 out
    out=$(host_jaros "$data" replay --json) || { echo "$out" >&2; fail "jaros replay exited non-zero"; }
    python3 - "$out" <<'PY' || fail "replay of the container-written log is not reproducible"
import json, sys
r = json.loads(sys.argv[1])
assert r.get("byte_identical") is True, f"byte_identical: {r.get('byte_identical')!r}"
assert r.get("model_calls") == 0, f"model_calls: {r.get('model_calls')!r}"
print(f"replay: byte_identical=true model_calls=0 "
      f"records={r.get('records', '?')} decisions={r.get('decisions', '?')}")
PY
}

# Every job has exactly one result file and exactly one `end` record in all logs.
check_exactly_once() {
    local data=$1 ids=$2
    python3 - "$data" $ids <<'PY' || fail "a job was not done exactly once"
import collections, glob, json, os, sys
data, ids = sys.argv[1], sys.argv[2:]
done = {f[:-5] for f in os.listdir(os.path.join(data, "done")) if f.endswith(".json")}
failed_dir = os.path.join(data, "failed")
failed = os.listdir(failed_dir) if os.path.isdir(failed_dir) else []
ends, writers = collections.Counter(), collections.defaultdict(set)
for log in glob.glob(os.path.join(data, "log", "*.jsonl")):
    for line in open(log):
        rec = json.loads(line)
        if rec.get("kind") == "end":
            ends[rec.get("job")] += 1
            writers[rec.get("job")].add(os.path.basename(log))
# The example hive's five-minute schedule may add a job of its own when the
# test spans a slot (slots sit on the clock): the submitted jobs are checked
# by id, and every job in the logs, scheduled ones too, must end once.
missing = [i for i in ids if i not in done]
assert not missing, f"no done/ file for {missing}"
failed_ids = [f for f in failed if f[:-5] in ids]
assert not failed_ids, f"submitted jobs in failed/: {failed_ids}"
twice = {j: n for j, n in ends.items() if n != 1}
assert not twice, f"jobs with more than one end record: {twice}"
unended = set(ids) - set(ends)
assert not unended, f"no end record for {sorted(unended)}"
others = sorted(set(ends) - set(ids))
per_node = collections.Counter(w for s in writers.values() for w in s)
print(f"exactly once: {len(ids)} jobs, {len(done)} in done/, end records per node log: {dict(per_node)}"
      + (f"; scheduled jobs also ended once: {others}" if others else ""))
PY
}

if "$binary" help run >/dev/null 2>&1 && "$binary" help replay >/dev/null 2>&1; then
    step "jaros run in the container on a host data dir, replay on the host"
    data0="$work/data-run"
    mkdir -p "$data0" && chown "$CONTAINER_UID:$CONTAINER_UID" "$data0"
    for i in 1 2 3; do
        "${podman_run[@]}" --rm -v "$data0:/data" --entrypoint /bin/jaros "$image" \
            run advance --input "{\"note\":\"oci-test run $i\"}" >/dev/null || fail "jaros run in the container failed"
    done
    check_replay "$data0"
    host_jaros "$data0" verify >/dev/null || fail "jaros verify failed on the container-written log"
fi

for cmd in serve submit result replay verify; do
    "$binary" help "$cmd" >/dev/null 2>&1 \
        || skip "image built, validated, run; the binary has no '$cmd' subcommand yet, so no node was served"
done

step "one container, host data dir, $jobs jobs"
data1="$work/data-one"
mkdir -p "$data1" && chown "$CONTAINER_UID:$CONTAINER_UID" "$data1"
start_node "$data1" node-a
ids=$(submit_jobs "$data1" "$jobs")
wait_results "$data1" "$ids"
stop_nodes "${containers[@]}"
check_replay "$data1"
check_exactly_once "$data1" "$ids"
host_jaros "$data1" verify >/dev/null || fail "jaros verify failed on the container-written log"

step "two containers on one data dir, $((jobs * 2)) jobs"
data2="$work/data-two"
mkdir -p "$data2" && chown "$CONTAINER_UID:$CONTAINER_UID" "$data2"
first=${#containers[@]}
start_node "$data2" node-b
start_node "$data2" node-c
ids=$(submit_jobs "$data2" "$((jobs * 2))")
wait_results "$data2" "$ids"
stop_nodes "${containers[@]:$first}"
check_replay "$data2"
check_exactly_once "$data2" "$ids"
logs=$(ls "$data2/log" | wc -l)
[ "$logs" -ge 2 ] || fail "expected one log per node in $data2/log, found $logs"

echo "PASS oci-test: digest $d1 stable, replay byte-identical with 0 model calls, two nodes did every job once"
