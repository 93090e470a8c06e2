#!/usr/bin/env bash
# usage: scripts/chaos/watchdog.sh PID
# Waits (in its own session, so a signal to the test's process group spares it) until process
# PID (the chaos test binary) is gone, however it ended (a panic on -timeout, kill -9), then
# runs cleanup.sh so no private RabbitMQ node, FerretDB or ccworker of the run is left behind.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pid=${1:?PID}
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
exec bash "$HERE/cleanup.sh"
