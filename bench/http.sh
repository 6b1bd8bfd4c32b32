#!/usr/bin/env bash
# Benchmark of /health and /health/detailed with 100 components (not a test).
#
#   bench/http.sh                 release build, 100 components, paced and unpaced runs
#   BENCH_DURATION=20s bench/http.sh
#   BENCH_NO_BUILD=1 bench/http.sh    use target/release/medic as it is
#   BENCH_INTERVAL=1h bench/http.sh   probes (nearly) idle during the runs
#
# medic runs from target/release with 100 tcp probes (50 passing against medic's own port, 50
# failing against a closed port, so half the components carry errors and step details), and
# `wrk` (Debian's) loads it from a second process on 127.0.0.1 only:
#   - paced: 10 connections, each waiting 10 ms after every answer (wrk's Lua `delay`), which
#     bounds the rate to about 1,000 requests per second: the latency a dashboard sees;
#   - unpaced: 4 connections as fast as medic answers, for the throughput ceiling.
# Every run is bounded by BENCH_DURATION (default 10s). Prints p50, p99 and requests/s per run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${BENCH_DURATION:-10s}"
INTERVAL="${BENCH_INTERVAL:-5s}"  # each probe's interval: 100 probes every 5 s = 20 runs/s
COMPONENTS=100

command -v wrk >/dev/null || { echo "bench/http.sh needs wrk: apt-get install -y wrk" >&2; exit 1; }
[[ -n "${BENCH_NO_BUILD:-}" ]] || cargo build --release -q -p medic
BIN="$ROOT/target/release/medic"

WORK="$(mktemp -d)"
MEDIC_PID=""
cleanup() {
  [[ -n "$MEDIC_PID" ]] && kill "$MEDIC_PID" 2>/dev/null && wait "$MEDIC_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"
CLOSED="$(free_port)"

{
  echo "probes:"
  for i in $(seq 1 "$COMPONENTS"); do
    if ((i % 2)); then target="$PORT"; else target="$CLOSED"; fi
    printf '  c%03d:\n    type: tcp\n    host: 127.0.0.1\n    port: %s\n    interval: %s\n    timeout: 1s\n' "$i" "$target" "$INTERVAL"
  done
} >"$WORK/medic.yaml"

MEDIC_DATA_DIR="$WORK/data" MEDIC_LISTEN="127.0.0.1:$PORT" MEDIC_CONFIG="$WORK/medic.yaml" \
  MEDIC_PROJECT="medic-bench-none" MEDIC_LOG=warn "$BIN" run 2>"$WORK/medic.log" &
MEDIC_PID=$!

# Wait until every component has a result (the first runs are spread over up to 0.5 s).
for _ in $(seq 1 100); do
  n="$(curl -fsS "http://127.0.0.1:$PORT/health/detailed" 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for c in d["components"].values() if c["last_check"]))' 2>/dev/null || echo 0)"
  ((n >= COMPONENTS)) && break
  sleep 0.2
done
((n >= COMPONENTS)) || { echo "only $n of $COMPONENTS components reported; log:" >&2; cat "$WORK/medic.log" >&2; exit 1; }
SIZE="$(curl -fsS "http://127.0.0.1:$PORT/health/detailed" | wc -c)"
echo "medic on 127.0.0.1:$PORT with $n components; /health/detailed is $SIZE bytes; $(nproc) cores shared by medic and wrk"

cat >"$WORK/pace.lua" <<'EOF'
function delay()
  return 10
end
EOF

summary() {
  # wrk --latency prints "50%  1.23ms" and "99%  4.56ms" lines and "Requests/sec:".
  awk -v label="$1" '
    $1 == "50%" { p50 = $2 }
    $1 == "99%" { p99 = $2 }
    $1 == "Requests/sec:" { rps = $2 }
    /Non-2xx/ { bad = $NF }
    END { printf "| %-42s | %9s | %9s | %9s |%s\n", label, p50, p99, rps, (bad ? " non-2xx: " bad : "") }'
}

echo
printf '| %-42s | %9s | %9s | %9s |\n' "run ($DURATION each, load average $(cut -d' ' -f1 /proc/loadavg) before)" p50 p99 "req/s"
echo "|--------------------------------------------|-----------|-----------|-----------|"
for path in /health /health/detailed; do
  wrk -t2 -c10 -d"$DURATION" --latency -s "$WORK/pace.lua" "http://127.0.0.1:$PORT$path" |
    summary "$path paced (~1,000 req/s)"
  wrk -t2 -c4 -d"$DURATION" --latency "http://127.0.0.1:$PORT$path" |
    summary "$path unpaced (4 connections)"
done
