#!/usr/bin/env bash
# The cluster tests' private 3-node RabbitMQ cluster (cc1..cc3@localhost, AMQP 5691-5693).
#
# usage: scripts/cluster/rmq.sh start|stop|status|kill N|start-node N|stop-node N|ctl N ARGS...|urls
#   start        a fresh cluster: kills a stale one (pid files), wipes mnesia, starts the
#                three nodes in parallel, joins cc2 and cc3 to cc1 (stop_app, reset,
#                join_cluster, start_app); user guest/guest allowed from anywhere
#   stop         stop every node started here (by pid file, KILL if it lingers), nothing else
#   status       each node: running (pid) or stopped; exit 1 unless all three run
#   kill N       kill -9 node ccN (a crash: no goodbye to clients or peers)
#   start-node N start ccN again keeping its state (it rejoins the cluster)
#   stop-node N  stop ccN cleanly
#   ctl N ARGS   rabbitmqctl against ccN
#   urls         the AMQP URLs of the nodes, ';'-separated (kombu's failover list)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/env.sh"
say() { echo "cluster-rmq: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
. "$HERE/../lib/proc.sh"
nodes() { seq 1 "$CLUSTER_NODES"; }
pid_of() { (node_env "$1"; cat "$RABBITMQ_PID_FILE" 2>/dev/null || true); }
running() { comm_is "$(pid_of "$1")" beam.smp; }
ctl() { local n=$1; shift; (node_env "$n"; "$RMQBIN/rabbitmqctl" -q -n "$RABBITMQ_NODENAME" "$@"); }

write_config() {
  node_env "$1"
  mkdir -p "$NODE_DIR"/{mnesia,log} "$HOME"
  {
    echo "listeners.tcp.default = 127.0.0.1:$RABBITMQ_NODE_PORT"
    echo "loopback_users = none"
    # A crashed peer is noticed in seconds, not the default minute.
    echo "net_ticktime = 10"
  } > "$NODE_DIR/rabbitmq.conf"
  echo '[].' > "$NODE_DIR/enabled_plugins"
  touch "$NODE_DIR/rabbitmq-env.conf"
}

# one cookie for all: written once, readable only by us (Erlang insists).
ensure_cookie() {
  mkdir -p "$HOME"
  if [ ! -s "$HOME/.erlang.cookie" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$HOME/.erlang.cookie"
  fi
  chmod 400 "$HOME/.erlang.cookie"
}

start_node() {
  local n=$1 t0=$SECONDS
  (
    node_env "$n"
    answers "$RABBITMQ_NODE_PORT" && die "something already answers on 127.0.0.1:$RABBITMQ_NODE_PORT"
    rm -f "$RABBITMQ_PID_FILE"
    "$RMQBIN/rabbitmq-server" -detached
    "$RMQBIN/rabbitmqctl" -q -n "$RABBITMQ_NODENAME" wait --timeout 180 "$RABBITMQ_PID_FILE" >/dev/null ||
      die "cc$n did not start; see $NODE_DIR/log"
    for _ in $(seq 1 100); do answers "$RABBITMQ_NODE_PORT" && break; sleep 0.1; done
    say "cc$n@localhost up on $RABBITMQ_NODE_PORT (pid $(cat "$RABBITMQ_PID_FILE")) in $((SECONDS - t0)) s"
  )
}

stop_node() {
  local n=$1 p
  running "$n" || return 0
  p=$(pid_of "$n")
  (node_env "$n"; timeout 60 "$RMQBIN/rabbitmqctl" -q -n "$RABBITMQ_NODENAME" stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1) || true
  reap "$p" beam.smp "cc$n"
  say "cc$n stopped (pid $p)"
}

kill_node() {
  local n=$1 p
  p=$(pid_of "$n")
  comm_is "$p" beam.smp || die "cc$n is not running"
  kill -9 "$p"
  reap "$p" beam.smp "cc$n"
  say "cc$n killed (pid $p)"
}

# parallel runs "$1 N" for every node in the background and fails if any did.
parallel() {
  local f=$1 pids=() rc=0
  shift
  for n in "$@"; do "$f" "$n" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return $rc
}

join() {
  local n=$1 log=$CLUSTER_STATE/cc$1/join.log
  { ctl "$n" stop_app && ctl "$n" reset && ctl "$n" join_cluster cc1@localhost && ctl "$n" start_app; } >"$log" 2>&1 ||
    { cat "$log" >&2; die "cc$n could not join cc1"; }
}

case "${1:-}" in
  start)
    t0=$SECONDS
    # A stale cluster (a killed run) is wiped anyway: no need to stop it politely.
    for n in $(nodes); do running "$n" && kill_node "$n"; done
    ensure_cookie
    for n in $(nodes); do (node_env "$n"; rm -rf "$RABBITMQ_MNESIA_BASE"); write_config "$n"; done
    parallel start_node $(nodes)
    parallel join $(seq 2 "$CLUSTER_NODES")
    ctl 1 await_online_nodes "$CLUSTER_NODES" --timeout 60 >/dev/null 2>&1 || true
    running=$(ctl 1 eval 'length(rabbit_nodes:all_running()).' 2>/dev/null || echo '?')
    [ "$running" = "$CLUSTER_NODES" ] || die "cluster has $running running nodes, want $CLUSTER_NODES"
    say "cluster of $CLUSTER_NODES nodes formed in $((SECONDS - t0)) s"
    ;;
  stop) parallel stop_node $(nodes) ;;
  status)
    rc=0
    for n in $(nodes); do
      if running "$n"; then echo "cc$n running pid $(pid_of "$n")"; else echo "cc$n stopped"; rc=1; fi
    done
    exit $rc
    ;;
  kill) kill_node "${2:?node number}" ;;
  start-node) start_node "${2:?node number}" ;;
  stop-node) stop_node "${2:?node number}" ;;
  ctl) n=${2:?node number}; shift 2; ctl "$n" "$@" ;;
  urls)
    out=""
    for n in $(nodes); do out+="${out:+;}amqp://guest:guest@127.0.0.1:$((CLUSTER_AMQP_BASE + n))//"; done
    echo "$out"
    ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
