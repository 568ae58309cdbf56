#!/usr/bin/env bash
# Soak run: builds the bridge, runs it in its embedded default with two
# pion browsers in the Lobby talking and showing video, samples RSS, live
# heap, goroutines and file descriptors every 10 s, and fails when any of
# them keeps growing after the first third (cmd/soak states the bounds).
#
#   scripts/soak.sh            # 30 minutes
#   scripts/soak.sh 3m         # the short run scripts/test.sh does
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-${SOAK_DURATION:-30m}}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
go build -o "$work/bridge" ./cmd/bridge
go build -o "$work/soak" ./cmd/soak
"$work/soak" -bin "$work/bridge" -duration "$DURATION" -interval "${SOAK_INTERVAL:-10s}" ${SOAK_LOG:+-bridge-log "$SOAK_LOG"}
