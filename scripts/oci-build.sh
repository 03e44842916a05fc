#!/usr/bin/env bash
# Builds an OCI image layout (https://github.com/opencontainers/image-spec) holding
# the static `jaros` binary and the example hive, with no container engine.
#
#   scripts/oci-build.sh --binary PATH --out DIR [--tag TAG] [--hive-root DIR]
#
# The image is deterministic: the same binary and hive give the same manifest
# digest. Layers are uncompressed tars with sorted entries, fixed owners, modes
# and mtimes, so the digest does not depend on the zlib of the machine. `created`
# is always written: $SOURCE_DATE_EPOCH, else the commit time of HEAD, else 0.
#
# The image config is the contract shared with `packages.oci` in flake.nix:
#   Entrypoint ["/bin/jaros","serve"], User 65532:65532, Volumes /data,
#   Env JAROS_HIVE=/hive JAROS_DATA_DIR=/data, labels org.opencontainers.image.*.
# `scripts/packaging-check.sh` compares the two.
#
# Prints the manifest digest (sha256:…) on stdout; everything else goes to stderr.
set -euo pipefail

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=""
out=""
tag="latest"
hive_root="$repo_root"
allow_dynamic=0

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --hive-root) hive_root=$2; shift 2 ;;
        --allow-dynamic) allow_dynamic=1; shift ;;
        -h|--help) usage ;;
        *) echo "oci-build: unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$binary" ] && [ -n "$out" ] || usage
[ -x "$binary" ] || { echo "oci-build: $binary is not an executable file" >&2; exit 2; }

# A FROM-scratch image has no loader and no libc: a dynamic binary cannot start.
if [ "$allow_dynamic" = 0 ] && command -v file >/dev/null 2>&1; then
    if ! file -L "$binary" | grep -Eq 'static(-pie)? linked|statically linked'; then
        echo "oci-build: $binary is not statically linked; build it with" >&2
        echo "  RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --target x86_64-unknown-linux-gnu" >&2
        echo "or pass --allow-dynamic to build an image that cannot run" >&2
        exit 2
    fi
fi

# Identity: read from the binary itself, so the labels always match what runs.
version_line=$("$binary" --version 2>/dev/null || true)
if [[ "$version_line" =~ ^jaros\ ([^ ]+)\ \(([^,]+),\ ([^\)]+)\)$ ]]; then
    version=${BASH_REMATCH[1]}
    revision=${BASH_REMATCH[2]}
else
    version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo_root/Cargo.toml" | head -n1)
    revision=${JAROS_GIT_COMMIT:-$(git -C "$repo_root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
fi
source_url=$(sed -n '/^\[package\]/,/^\[/s/^repository *= *"\(.*\)"/\1/p' "$repo_root/Cargo.toml" | head -n1)
source_url=${source_url:-unknown}

if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    epoch=$SOURCE_DATE_EPOCH
else
    epoch=$(git -C "$repo_root" log -1 --format=%ct 2>/dev/null || true)
    epoch=${epoch:-0}
fi

mkdir -p "$out"
if [ -n "$(ls -A "$out")" ] && [ ! -f "$out/oci-layout" ]; then
    echo "oci-build: $out is not empty and not an OCI layout; refusing to overwrite it" >&2
    exit 2
fi

BINARY=$binary OUT=$out TAG=$tag HIVE_ROOT=$hive_root VERSION=$version REVISION=$revision \
SOURCE_URL=$source_url EPOCH=$epoch python3 - <<'PY'
import hashlib, io, json, os, shutil, stat, sys, tarfile, time

env = os.environ
out, tag = env["OUT"], env["TAG"]
epoch = int(env["EPOCH"])
created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
UID = 65532
HIVE_PARTS = ("manifests", "agents", "tools", "evals")

def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

def add_blob(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest

class Layer:
    """An uncompressed tar whose bytes depend only on the entries given."""
    def __init__(self):
        self.entries = {}  # name -> (TarInfo, bytes or None)

    def _info(self, name, kind, mode, uid=0):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, epoch
        info.uid = info.gid = uid
        info.uname = info.gname = ""
        return info

    def dir(self, name, mode=0o755, uid=0):
        parts = name.split("/")
        for i in range(1, len(parts)):  # parents first, root-owned
            parent = "/".join(parts[:i])
            self.entries.setdefault(parent, (self._info(parent, tarfile.DIRTYPE, 0o755), None))
        self.entries[name] = (self._info(name, tarfile.DIRTYPE, mode, uid), None)

    def file(self, name, data, mode=0o644):
        parent = name.rpartition("/")[0]
        if parent and parent not in self.entries:
            self.dir(parent)
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.entries[name] = (info, data)

    def tree(self, src, dest):
        """Copies a directory tree; only the executable bit of a mode survives."""
        self.dir(dest)
        for root, dirs, files in os.walk(src):
            dirs.sort()
            rel = os.path.relpath(root, src)
            base = dest if rel == "." else dest + "/" + rel.replace(os.sep, "/")
            self.dir(base)
            for d in dirs:
                if os.path.islink(os.path.join(root, d)):
                    sys.exit(f"oci-build: symlink {os.path.join(root, d)} is not supported in the hive")
            for name in sorted(files):
                path = os.path.join(root, name)
                if os.path.islink(path):
                    sys.exit(f"oci-build: symlink {path} is not supported in the hive")
                mode = 0o755 if os.stat(path).st_mode & stat.S_IXUSR else 0o644
                with open(path, "rb") as f:
                    self.file(base + "/" + name, f.read(), mode)

    def bytes(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(self.entries):
                info, data = self.entries[name]
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()

if os.path.isdir(out):
    for entry in ("blobs", "index.json", "oci-layout"):
        path = os.path.join(out, entry)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)

base = Layer()
base.file("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\njaros:x:65532:65532:jaros:/data:/sbin/nologin\n")
base.file("etc/group", b"root:x:0:\njaros:x:65532:\n")
base.dir("data", 0o755, UID)
base.dir("tmp", 0o1777)

binary = Layer()
with open(env["BINARY"], "rb") as f:
    binary.file("bin/jaros", f.read(), 0o755)

hive = Layer()
hive.dir("hive")
present = [p for p in HIVE_PARTS if os.path.isdir(os.path.join(env["HIVE_ROOT"], p))]
for part in present:
    hive.tree(os.path.join(env["HIVE_ROOT"], part), "hive/" + part)

layers, history = [], []
for name, layer in (("base: /etc, /data, /tmp", base), ("binary: /bin/jaros", binary),
                    ("example hive: " + (", ".join(present) or "empty"), hive)):
    data = layer.bytes()
    digest = add_blob(data)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                   "digest": digest, "size": len(data)})
    history.append({"created": created, "created_by": name})

labels = {
    "org.opencontainers.image.title": "jaros",
    "org.opencontainers.image.description": "Jaros node: reproducible, capability-safe agent runtime",
    "org.opencontainers.image.version": env["VERSION"],
    "org.opencontainers.image.revision": env["REVISION"],
    "org.opencontainers.image.source": env["SOURCE_URL"],
    "org.opencontainers.image.licenses": "Apache-2.0",
}
config = {
    "created": created,
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "User": "65532:65532",
        "Entrypoint": ["/bin/jaros", "serve"],
        "Env": ["PATH=/bin", "JAROS_HIVE=/hive", "JAROS_DATA_DIR=/data"],
        "WorkingDir": "/data",
        "Volumes": {"/data": {}},
        "Labels": labels,
        "StopSignal": "SIGTERM",
    },
    "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
    "history": history,
}
config_bytes = canonical(config)
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": add_blob(config_bytes), "size": len(config_bytes)},
    "layers": layers,
    "annotations": dict(labels, **{"org.opencontainers.image.created": created}),
}
manifest_bytes = canonical(manifest)
manifest_digest = add_blob(manifest_bytes)
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": manifest["mediaType"], "digest": manifest_digest,
        "size": len(manifest_bytes),
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }],
}
with open(os.path.join(out, "index.json"), "wb") as f:
    f.write(canonical(index))
with open(os.path.join(out, "oci-layout"), "wb") as f:
    f.write(canonical({"imageLayoutVersion": "1.0.0"}))
print(f"oci-build: {out}:{tag} jaros {env['VERSION']} ({env['REVISION']}), "
      f"hive: {', '.join(present) or 'none'}, created {created}", file=sys.stderr)
print(manifest_digest)
PY
