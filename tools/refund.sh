#!/bin/sh
# refund: reads a payload {"ticket": "...", "amount": N} as JSON on stdin and
# prints {"ticket": "...", "refunded": N} as JSON on stdout: the example's
# stand-in for a billing system. POSIX sh, no jq. The payload schema already
# refused tickets holding quotes or backslashes and amounts that are not
# whole numbers.
set -eu
input=$(cat | tr '\n' ' ')
ticket=$(printf '%s\n' "$input" | sed -n 's/.*"ticket"[[:space:]]*:[[:space:]]*"\([^"\\]*\)".*/\1/p')
amount=$(printf '%s\n' "$input" | sed -n 's/.*"amount"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p')
if [ -z "$ticket" ] || [ -z "$amount" ]; then
  echo 'refund: the payload needs a "ticket" string and a whole "amount"' >&2
  exit 1
fi
printf '{"ticket": "%s", "refunded": %s}\n' "$ticket" "$amount"
