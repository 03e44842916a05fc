#!/bin/sh
# greet: reads a payload {"name": "..."} as JSON on stdin and prints
# {"greeting": "Hello, <name>!"} as JSON on stdout. POSIX sh, no jq.
# The payload schema already refused names holding quotes or backslashes.
set -eu
input=$(cat)
name=$(printf '%s\n' "$input" | tr '\n' ' ' | sed -n 's/.*"name"[[:space:]]*:[[:space:]]*"\([^"\\]*\)".*/\1/p')
if [ -z "$name" ]; then
  echo 'greet: the payload needs a "name" string' >&2
  exit 1
fi
printf '{"greeting": "Hello, %s!"}\n' "$name"
