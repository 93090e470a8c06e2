#!/usr/bin/env bash
# ccworker demo (what `make demo` runs): real Celery 5.2.6 clients publish ccworker.noop tasks to
# RabbitMQ, ./bin/ccworker runs them, results land in FerretDB (MongoDB wire) in Celery's format.
#
# usage: bash scripts/demo.sh
#   env: DEMO_N_OFF (20000 tasks, results off), DEMO_N_ON (5000 tasks, results on),
#        DEMO_TIMEOUT (300 s per run), DEMO_CONCURRENCY (512),
#        DEMO_CCWORKER (a worker binary to use instead of `make build` + ./bin/ccworker)
#
# Steps: scripts/services.sh start; make build; then twice (results off, results on): purge queue
# 'demo', start ./bin/ccworker -Q demo in the background, wait for its consumer, publish N tasks with
# scripts/celery_client.py load (results off = Celery's per-message ignore_result header, set by the
# client), wait until all are done, SIGTERM ccworker (must exit 0 within 30 s). The results database
# (ccworker_demo_<epoch>) is dropped at the end. Exit non-zero, with the ccworker log tail, on any failure.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=/usr/bin/python3
N_OFF=${DEMO_N_OFF:-20000}
N_ON=${DEMO_N_ON:-5000}
TIMEOUT=${DEMO_TIMEOUT:-300}
CONC=${DEMO_CONCURRENCY:-512}
BROKER=amqp://guest:guest@127.0.0.1:5672//
DB=ccworker_demo_$(date +%s)
BACKEND=mongodb://127.0.0.1:27017/$DB
QUEUE=demo
TMP=$(mktemp -d /tmp/ccworker-demo.XXXXXX)
T_START=$(date +%s.%N)
WPID=
FAILED=0

since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
step() { echo "== $*"; }
fail() {
  FAILED=1
  echo "demo: FAILED: $1" >&2
  if [ -n "${2:-}" ] && [ -f "$2" ]; then echo "--- last 25 lines of $2:" >&2; tail -25 "$2" >&2; fi
  exit 1
}
cleanup() {
  if [ -n "$WPID" ] && kill -0 "$WPID" 2>/dev/null; then kill -KILL "$WPID" 2>/dev/null || true; fi
  $PY - "$DB" <<'EOF' >/dev/null 2>&1 || true
import sys, pymongo
pymongo.MongoClient('mongodb://127.0.0.1:27017/', serverSelectionTimeoutMS=3000).drop_database(sys.argv[1])
EOF
  if [ "$FAILED" = 0 ]; then rm -rf "$TMP"; else echo "demo: logs kept in $TMP" >&2; fi
}
trap cleanup EXIT
trap 'FAILED=1; exit 130' INT TERM

# consumers QUEUE: number of consumers RabbitMQ reports for the queue (0 when it does not exist)
consumers() { scripts/rmq.sh -q list_queues name consumers 2>/dev/null | awk -v q="$1" '$1 == q {print $2; f=1} END {if (!f) print 0}'; }

step "services"
bash scripts/services.sh start | sed 's/^/   /' || fail "scripts/services.sh start"
if [ -n "${DEMO_CCWORKER:-}" ]; then
  CCW=$DEMO_CCWORKER   # e.g. a stand-in for testing this script; skips make build
else
  step "make build"
  make build >"$TMP/build.log" 2>&1 || fail "make build" "$TMP/build.log"
  CCW=./bin/ccworker
fi
[ -x "$CCW" ] || fail "$CCW is missing (make build should build it)" "$TMP/build.log"

# run MODE N: one demo run (MODE off|on); appends a row to $TMP/rows. The load is published
# first with no worker running (as the Celery baseline was measured), then ccworker starts and the
# clock runs from its start to the last result stored (results on) or the queue drained (off).
run() {
  local mode=$1 n=$2 log=$TMP/ccworker-$1.log out=$TMP/load-$1.json pub=$TMP/publish-$1.json i
  step "results $mode: $n x ccworker.noop published by Celery, then ccworker -c $CONC"
  scripts/rmq.sh -q purge_queue "$QUEUE" >/dev/null 2>&1 || true  # the queue may not exist yet
  local extra=(); [ "$mode" = off ] && extra=(--ignore-result)
  $PY scripts/celery_client.py --broker "$BROKER" --backend "$BACKEND" --queue "$QUEUE" \
    load --task ccworker.noop --n "$n" --publish-only --ids-file "$TMP/ids-$mode" "${extra[@]}" >"$pub" \
    || fail "publishing $n tasks" "$pub"

  local tstart; tstart=$(date +%s.%N)
  "$CCW" --broker "$BROKER" --result-backend "$BACKEND" -Q "$QUEUE" -c "$CONC" --builtin-tasks \
    -n 'demo@%h' -l WARNING >"$log" 2>&1 &
  WPID=$!
  local waiter=(wait --ids-file "$TMP/ids-$mode")
  [ "$mode" = off ] && waiter=(drain --n "$n" --task ccworker.noop)
  $PY scripts/celery_client.py --broker "$BROKER" --backend "$BACKEND" --queue "$QUEUE" \
    "${waiter[@]}" --t0 "$tstart" --timeout "$TIMEOUT" >"$out" 2> >(tee "$TMP/load-$mode.err" >&2) &
  local cpid=$! crc=0
  while kill -0 "$cpid" 2>/dev/null; do
    if ! kill -0 "$WPID" 2>/dev/null; then kill "$cpid" 2>/dev/null; fail "ccworker died during the run" "$log"; fi
    sleep 0.2
  done
  wait "$cpid" || crc=$?
  [ "$crc" = 0 ] || { cat "$out" "$TMP/load-$mode.err" >&2; fail "not all $n tasks done (results $mode, client exit $crc)" "$log"; }

  local t0 wrc=0; t0=$(date +%s.%N)
  kill -TERM "$WPID"
  for ((i = 0; i < 300; i++)); do kill -0 "$WPID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$WPID" 2>/dev/null; then kill -KILL "$WPID"; wait "$WPID" 2>/dev/null || true; fail "ccworker did not exit within 30 s of SIGTERM" "$log"; fi
  wait "$WPID" || wrc=$?
  WPID=
  [ "$wrc" = 0 ] || fail "ccworker exited with status $wrc after SIGTERM" "$log"

  # results off: nothing may be stored (Celery's ignore_result header); results on: every one
  local stored
  stored=$($PY -c 'import sys,pymongo; print(pymongo.MongoClient("mongodb://127.0.0.1:27017/")[sys.argv[1]]["celery_taskmeta"].estimated_document_count())' "$DB")
  if [ "$mode" = off ] && [ "$stored" != 0 ]; then fail "results off, but $stored result documents were stored" "$log"; fi
  $PY - "$mode" "$out" "$pub" "$stored" "$(since "$t0")" >>"$TMP/rows" <<'EOF'
import json, sys
mode, path, pubpath, stored, stop_s = sys.argv[1:]
s = json.loads(open(path).read().strip().splitlines()[-1])
p = json.loads(open(pubpath).read().strip().splitlines()[-1])
check = 'drained' if mode == 'off' else ('sample ok' if s['sample_ok'] else 'SAMPLE FAILED')
print(f"results {mode:<4} {s['n']:>7} {p['published_per_s']:>11.0f} {s['done_per_s']:>9.0f} {s['elapsed_s']:>9.2f}"
      f" {stored:>7} {float(stop_s):>7.1f}  {check}")
EOF
  tail -1 "$TMP/rows" | sed 's/^/   /'
}

run off "$N_OFF"
run on "$N_ON"

echo
printf '%-12s %7s %11s %9s %9s %7s %7s  %s\n' mode tasks publish/s done/s elapsed_s stored stop_s check
cat "$TMP/rows"
echo
echo "publish/s: the Python Celery client, before ccworker starts. done/s: tasks / (ccworker process start ->"
echo "last result stored (on), or -> RabbitMQ reporting nothing ready or unacked (off; polled with rabbitmqctl,"
echo "so up to ~1 s late)); stop_s: SIGTERM -> exit 0. Celery 5.2.6 on this machine: ~2,500/s off (prefork -c 2),"
echo "~540/s on (make bench-compare)."
echo "demo OK in $(since "$T_START") s (database $DB dropped)"
