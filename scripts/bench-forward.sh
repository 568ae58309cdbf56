#!/usr/bin/env bash
# Measures the bridge's browser-to-browser forwarding against this
# machine's floor, in one run: it builds and starts the bridge (embedded
# default, loopback only), runs cmd/loadtest for 1 publisher and N = 1,
# 10, 50, 100 subscribers, audio and video, measures the floor (one sendto
# of 150 bytes on loopback + one SRTP AES-GCM seal) and prints a table
# with the ratio bridge / floor. See BENCHMARKS.md.
#
#   scripts/bench-forward.sh                 # the whole matrix, 20 s per run
#   DURATION=10s SIZES="1 100" KINDS=audio scripts/bench-forward.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-20s}"
IDLE="${IDLE:-5s}"
SIZES="${SIZES:-1 10 50 100}"
KINDS="${KINDS:-audio video}"
HTTP_PORT="${HTTP_PORT:-18080}"
UDP_PORT="${UDP_PORT:-18443}"

work="$(mktemp -d)"
bridge_pid=""
cleanup() {
  if [[ -n "$bridge_pid" ]]; then
    kill "$bridge_pid" 2>/dev/null || true
    wait "$bridge_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/bridge" ./cmd/bridge
go build -o "$work/loadtest" ./cmd/loadtest

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
LISTEN_ADDR="127.0.0.1:$HTTP_PORT" ICE_UDP_PORT="$UDP_PORT" ICE_PUBLIC_IP=127.0.0.1 LOG_LEVEL=warn \
  "$work/bridge" >"$work/bridge.log" 2>&1 &
bridge_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null || { cat "$work/bridge.log"; exit 1; }

# value KEY LINE: the value of KEY=... in a RESULT line.
value() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

floor_line="$("$work/loadtest" -floor | grep '^RESULT')"
floor="$(value floor_us "$floor_line")"
echo "# floor: sendto $(value floor_sendto_us "$floor_line") µs + seal $(value floor_seal_us "$floor_line") µs = $floor µs per packet"
printf '%-6s %4s %12s %8s %10s %8s %8s %8s\n' kind N 'cpu-µs/fwd' 'x floor' 'idle-ms/s' 'loss-%' 'p50-ms' 'p99-ms'
for kind in $KINDS; do
  for n in $SIZES; do
    line="$("$work/loadtest" -url "http://127.0.0.1:$HTTP_PORT" -pid "$bridge_pid" -publishers 1 \
      -subscribers "$n" -kind "$kind" -duration "$DURATION" -idle "$IDLE" | grep '^RESULT')"
    cpu="$(value cpu_us_per_fwd "$line")"
    printf '%-6s %4s %12s %8s %10s %8s %8s %8s\n' "$kind" "$n" "$cpu" \
      "$(awk -v a="$cpu" -v b="$floor" 'BEGIN { printf "%.2f", a / b }')" \
      "$(value idle_ms_per_browser "$line")" "$(value loss_pct "$line")" \
      "$(value p50_ms "$line")" "$(value p99_ms "$line")"
  done
done
# The floor again at the end: the machine is shared, so its cost may move.
echo "# floor after: $(value floor_us "$("$work/loadtest" -floor | grep '^RESULT')") µs per packet"
