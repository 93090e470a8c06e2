#!/usr/bin/env bash
# The chaos tests' own FerretDB processes (never the shared one on 27017).
#
# usage: scripts/chaos/ferretdb.sh start NAME [ferretdb flags...] | kill NAME | stop NAME | createdb DB
#   start NAME FLAGS   run ~/.cache/ccworker/bin/ferretdb with FLAGS (give --listen-addr etc.), state
#                      and log in $CHAOS_STATE/ferretdb-NAME/, pid in its pid file; waits until the
#                      first --listen-addr / --listen-tls port answers
#   kill NAME          SIGKILL (a crash: no clean shutdown)
#   stop NAME          SIGTERM, KILL after 10 s
#   createdb DB        create PostgreSQL database DB on the shared 127.0.0.1:5432 if missing
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CHAOS_STATE=${CHAOS_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/ccworker/chaos}
FERRETDB=${FERRETDB:-${XDG_CACHE_HOME:-$HOME/.cache}/ccworker/bin/ferretdb}
say() { echo "chaos-ferretdb: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
. "$HERE/../lib/proc.sh"

cmd=${1:-}; name=${2:-}
dir=$CHAOS_STATE/ferretdb-$name
pidf=$dir/ferretdb.pid
case "$cmd" in
  start)
    [ -n "$name" ] || die "start NAME FLAGS"
    shift 2
    [ -x "$FERRETDB" ] || bash "$HERE/../build-ferretdb.sh" >&2
    mkdir -p "$dir/state"
    if [ -s "$pidf" ] && comm_is "$(cat "$pidf")" ferretdb; then
      # Left by a run that was killed: stop it (it is ours, by its pid file).
      say "$name left running by an earlier run (pid $(cat "$pidf")): stopping it"
      bash "$0" stop "$name"
    fi
    port=
    for a in "$@"; do
      case "$a" in --listen-addr=*:*|--listen-tls=*:*) [ -z "$port" ] && port=${a##*:} ;; esac
    done
    [ -n "$port" ] && answers "$port" && die "something already answers on 127.0.0.1:$port"
    nohup "$FERRETDB" --state-dir="$dir/state" --telemetry=disable --log-level=warn "$@" \
      >> "$dir/ferretdb.log" 2>&1 < /dev/null &
    echo $! > "$pidf"
    for _ in $(seq 1 200); do
      [ -z "$port" ] && break
      answers "$port" && break
      comm_is "$(cat "$pidf")" ferretdb || die "ferretdb $name died; see $dir/ferretdb.log"
      sleep 0.05
    done
    say "$name up (pid $(cat "$pidf"), port ${port:-?})"
    ;;
  kill|stop)
    [ -s "$pidf" ] || exit 0
    p=$(cat "$pidf")
    if comm_is "$p" ferretdb; then
      if [ "$cmd" = kill ]; then kill -9 "$p"; else kill "$p"; fi
      reap "$p" ferretdb "$name"
      say "$name stopped ($cmd, pid $p)"
    fi
    rm -f "$pidf"
    ;;
  createdb)
    [ -n "$name" ] || die "createdb DB"
    exists=$(psql -h 127.0.0.1 -U postgres -d postgres -qtAc "SELECT 1 FROM pg_database WHERE datname='$name'")
    [ "$exists" = 1 ] || createdb -h 127.0.0.1 -U postgres "$name"
    ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
