#!/usr/bin/env bash
# `make cluster`: the cluster tests (clustertest/) with the private 3-node RabbitMQ cluster
# stopped whatever happens to the test binary (a timeout, a panic, Ctrl-C, a kill of
# `go test`): this shell outlives it and stops the nodes on exit. If this shell itself is
# killed with SIGKILL, the next `rmq.sh start` kills the stale nodes by their pid files.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/../.."
pid=
stop() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [ "${CCWORKER_CLUSTER_KEEP:-}" = 1 ] || bash "$HERE/rmq.sh" stop
}
trap stop EXIT
trap 'exit 130' INT TERM HUP
t0=$SECONDS
# In the background, so that a signal to this shell is handled at once (bash runs traps
# only between commands, and `wait` is interruptible).
CCWORKER_CLUSTER=1 ${GO:-go} test -v -count=1 -timeout "${CLUSTER_TIMEOUT:-14m}" ./clustertest/ "$@" &
pid=$!
wait "$pid"
rc=$?
pid=
echo "make cluster: $((SECONDS - t0)) s, exit $rc"
exit $rc
