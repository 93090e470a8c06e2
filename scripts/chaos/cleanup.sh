#!/usr/bin/env bash
# Stops everything a chaos run started, from its pid files only: the ccworker processes the
# test recorded in $CHAOS_STATE/workers/, the private RabbitMQ node (chaos@localhost) and the
# private FerretDB processes (pg, tls). Never the shared services on 5672 / 27017.
# Idempotent; runs at the start of every chaos run (stale processes of a run that was killed),
# from the watchdog when the test binary dies, and from `make chaos` on exit.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CHAOS_STATE=${CHAOS_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/ccworker/chaos}
. "$HERE/../lib/proc.sh"
n=0
for f in "$CHAOS_STATE"/workers/*; do
	[ -e "$f" ] || continue
	p=$(basename "$f")
	if comm_is "$p" ccworker; then kill -9 "$p" 2>/dev/null && n=$((n + 1)); fi
	rm -f "$f"
done
[ "$n" -gt 0 ] && echo "chaos-cleanup: killed $n ccworker process(es) left by a chaos run" >&2
bash "$HERE/ferretdb.sh" stop pg || true
bash "$HERE/ferretdb.sh" stop tls || true
bash "$HERE/rmq.sh" stop || true
