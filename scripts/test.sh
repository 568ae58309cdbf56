#!/usr/bin/env bash
# Runs the whole test suite: vet, staticcheck, unit and integration tests
# (under the race detector, which needs cgo and gcc for the tests only; the
# binary stays pure Go), and a short run of every fuzz target. Network tests stay
# on loopback: as root the suite runs inside a fresh network namespace that
# holds only `lo`.
set -euo pipefail
cd "$(dirname "$0")/.."

# A count, not a duration: with a duration, go1.26's fuzz coordinator can
# report a spurious "context deadline exceeded" when a loaded machine makes
# a worker late at the deadline (golang/go#75804, fixed in go1.27).
FUZZTIME="${FUZZTIME:-10000x}"

# Everything that needs the network happens before entering the namespace.
go mod download
go build ./...
go vet ./...
# staticcheck at a pinned version, fetched through the module proxy like
# the module's own dependencies (so before the namespace).
STATICCHECK_VERSION=v0.8.2
go run "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}" ./...

inner() {
  set -euo pipefail
  # With the race detector: it has found real bugs here that plain runs
  # did not show (a status overwritten on close, candidates overtaking
  # their description). It roughly doubles CPU time; the suite stays
  # around two minutes on 2 cores.
  go test -race -count=1 -timeout 30m ./...
  # The mix's end-to-end tests decode, mix and encode Opus in real time,
  # which the race detector slows tenfold: they are built without it
  # (//go:build !race) and run here.
  go test -count=1 -timeout 15m -run '^TestMixE2E' ./cmd/bridge/
  # The short soak: the binary with two pion browsers in the Lobby for
  # 3 minutes; fails when RSS, live heap, goroutines or descriptors keep
  # growing after warm-up (the slopes are printed). scripts/soak.sh with
  # no argument runs the 30-minute version.
  scripts/soak.sh 3m
  # Each fuzz target briefly (go test runs one target per invocation).
  grep -rlE --include='*_test.go' '^func Fuzz' . | xargs -r dirname | sort -u | while read -r pkg; do
    for target in $(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)' "$pkg"/*_test.go | awk '{print $2}'); do
      echo "fuzz $pkg $target ($FUZZTIME)"
      go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"
    done
  done
  echo "fuzz: all targets ran"
}

if [ "${1:-}" = "--inner" ]; then
  inner
  exit 0
fi

if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 && unshare --net true 2>/dev/null; then
  exec unshare --net bash -c 'ip link set lo up && exec "$0" --inner' "$0"
fi
echo "note: not root or no unshare; running on the host network (tests still bind loopback only)" >&2
inner
