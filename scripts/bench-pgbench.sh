#!/usr/bin/env bash
# Compares eventstore.Append with a bare single-row INSERT of the same event shape.
#
# One run, one throwaway PostgreSQL cluster (internal/testenv: fsync off, unix socket): pgbench
# first inserts rows shaped like an appended event (same columns, indexes and sizes, into a copy
# of the events table) with 8 clients, then Append runs with 8 writers against the same cluster
# for the same time. Prints both rates and their ratio (the goal is >= 0.8).
#
# Usage: scripts/bench-pgbench.sh [seconds]        (default 10 seconds per side)
# Env:   PGBENCH=/path/to/pgbench                  (default: found on PATH or in /usr/lib/postgresql/*/bin)
#
# The figures depend on the machine and on what else runs on it: state both when you quote them.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-10}"
pgbench="${PGBENCH:-}"
if [[ -z "$pgbench" ]]; then
  pgbench="$(command -v pgbench || true)"
fi
if [[ -z "$pgbench" ]]; then
  pgbench="$(ls -1 /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -n1 || true)"
fi
if [[ -z "$pgbench" || ! -x "$pgbench" ]]; then
  echo "bench-pgbench: pgbench not found; install PostgreSQL's client tools or set PGBENCH" >&2
  exit 1
fi

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
HUDDLE_PGBENCH="$pgbench" HUDDLE_PGBENCH_SECONDS="$seconds" \
  go test -count=1 -run '^$' -bench '^BenchmarkPgbenchComparison$' -benchtime=1x ./eventstore/ |
  grep -E '^(pgbench|pgx|eventstore|ratio)'
