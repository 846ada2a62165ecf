#!/usr/bin/env bash
# Measures Huddle on the embedded default with its production durability (fsync and
# synchronous_commit on), the way the README's figures were taken: builds the binary, starts
# `huddle serve` on a fresh data dir (rate limit off), runs `huddle bench` against it (the
# pgbench baseline runs on the same cluster in the same run), stops the server.
#
# Usage: scripts/bench-embedded.sh [huddle bench flags…]     e.g. --json, --duration 60s
# Env:   BENCH_DIR (default: a new temp dir), BENCH_PORT (default 18080)
#
# The figures depend on the machine and on what else runs on it: quote them with both.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${BENCH_DIR:-$(mktemp -d -t huddle-bench-XXXXXX)}"
port="${BENCH_PORT:-18080}"
bin="$dir/huddle"
go build -o "$bin" ./cmd/huddle

export HUDDLE_DATA_DIR="$dir/data" HUDDLE_HTTP_ADDR="127.0.0.1:$port" HUDDLE_NATS_LISTEN="127.0.0.1:0"
export HUDDLE_RATE_PER_USER=0 # the bench sends far faster than a person
"$bin" serve >"$dir/serve.log" 2>&1 &
server=$!
trap 'kill -INT "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "bench-embedded: huddle serve exited; its log:" >&2
    tail -n 30 "$dir/serve.log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); data in $dir" >&2
"$bin" bench --server-pid "$server" "$@"
