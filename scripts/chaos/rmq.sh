#!/usr/bin/env bash
# The chaos tests' private RabbitMQ node (chaos@localhost; never the shared node on 5672).
#
# usage: scripts/chaos/rmq.sh start|stop|restart|status|ctl ARGS...|close-connections PREFIX
#   start     fresh node (mnesia wiped): AMQP 127.0.0.1:5680, and TLS 127.0.0.1:5681 when
#             CHAOS_TLS_DIR holds ca.pem, server.pem, server.key (verify_peer,
#             fail_if_no_peer_cert); users guest/guest and chaos/chaospw, vhost chaosvh
#   stop      stop the node started by `start` (by its pid file), nothing else
#   restart   stop, then start again keeping mnesia (durable queues, persistent messages)
#   ctl       rabbitmqctl against this node
#   close-connections PREFIX   rabbitmqctl close_connection for every connection whose
#             client-provided name starts with PREFIX; prints how many
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/env.sh"
say() { echo "chaos-rmq: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
. "$HERE/../lib/proc.sh"
ctl() { "$RMQBIN/rabbitmqctl" -q "$@"; }

running() { [ -s "$RABBITMQ_PID_FILE" ] && comm_is "$(cat "$RABBITMQ_PID_FILE")" beam.smp; }

write_config() {
  mkdir -p "$CHAOS_RMQ"/{home,mnesia,log}
  {
    echo "listeners.tcp.default = 127.0.0.1:$RABBITMQ_NODE_PORT"
    echo "loopback_users = none"
    # Lowered from 30 min so the tests can show long tasks never hit it (TestConsumerTimeout).
    echo "consumer_timeout = ${CHAOS_CONSUMER_TIMEOUT_MS:-60000}"
    if [ -n "${CHAOS_TLS_DIR:-}" ] && [ -f "$CHAOS_TLS_DIR/server.pem" ]; then
      echo "listeners.ssl.default = 127.0.0.1:${CHAOS_TLS_PORT:-5681}"
      echo "ssl_options.cacertfile = $CHAOS_TLS_DIR/ca.pem"
      echo "ssl_options.certfile = $CHAOS_TLS_DIR/server.pem"
      echo "ssl_options.keyfile = $CHAOS_TLS_DIR/server.key"
      echo "ssl_options.verify = verify_peer"
      echo "ssl_options.fail_if_no_peer_cert = true"
    fi
  } > "$CHAOS_RMQ/rabbitmq.conf"
  echo '[].' > "$CHAOS_RMQ/enabled_plugins"
  touch "$CHAOS_RMQ/rabbitmq-env.conf"
}

start_node() {
  answers "$RABBITMQ_NODE_PORT" && die "something already answers on 127.0.0.1:$RABBITMQ_NODE_PORT"
  local t0=$SECONDS
  "$RMQBIN/rabbitmq-server" -detached
  ctl wait --timeout 120 "$RABBITMQ_PID_FILE" >/dev/null || die "node did not start; see $CHAOS_RMQ/log"
  for _ in $(seq 1 100); do answers "$RABBITMQ_NODE_PORT" && break; sleep 0.1; done
  say "node chaos@localhost up (pid $(cat "$RABBITMQ_PID_FILE")) in $((SECONDS - t0)) s"
}

stop_node() {
  if running; then
    local p; p=$(cat "$RABBITMQ_PID_FILE")
    ctl stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 || true
    reap "$p" beam.smp
    say "node stopped (pid $p)"
  fi
}

case "${1:-}" in
  start)
    stop_node
    rm -rf "$CHAOS_RMQ/mnesia"
    write_config
    start_node
    ctl add_user chaos chaospw >/dev/null
    ctl add_vhost chaosvh >/dev/null
    ctl set_permissions -p chaosvh chaos '.*' '.*' '.*' >/dev/null
    ctl set_permissions -p / chaos '.*' '.*' '.*' >/dev/null
    ;;
  stop) stop_node ;;
  restart) stop_node; start_node ;;
  status) running && echo "running pid $(cat "$RABBITMQ_PID_FILE")" || { echo "stopped"; exit 1; } ;;
  ctl) shift; ctl "$@" ;;
  close-connections)
    prefix=${2:?prefix}
    n=0
    # client_properties holds {"connection_name","..."} (3.10 has no user_provided_name column)
    while IFS=$'\t' read -r pid props; do
      name=$(grep -o '{"connection_name","[^"]*"}' <<<"$props" | sed 's/^{"connection_name","\(.*\)"}$/\1/' || true)
      case "$name" in "$prefix"*) ctl close_connection "$pid" "chaos test" </dev/null >/dev/null; n=$((n + 1)) ;; esac
    done < <(ctl list_connections --no-table-headers pid client_properties 2>/dev/null)
    echo "$n"
    ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
