#!/usr/bin/env bash
# Run rabbitmqctl against the RabbitMQ node serving 127.0.0.1:5672 (the one scripts/services.sh uses).
# usage: scripts/rmq.sh ARGS...        e.g. scripts/rmq.sh -q list_queues name messages messages_unacknowledged
#                                           scripts/rmq.sh close_connection "<conn name>" reason
#                                           scripts/rmq.sh delete_queue demo
# The node is Debian's system install (started by its init script, by services.sh or by hand with
# /usr/sbin/rabbitmq-server -detached): /usr/sbin/rabbitmqctl su's to user rabbitmq and so finds its
# Erlang cookie (/var/lib/rabbitmq/.erlang.cookie). Needs root (or sudo). Exit status is rabbitmqctl's.
set -euo pipefail
CTL=/usr/sbin/rabbitmqctl
[ -x "$CTL" ] || { echo "rmq.sh: $CTL not found (apt-get install -y rabbitmq-server)" >&2; exit 127; }
if [ "$(id -u)" = 0 ]; then exec "$CTL" "$@"; else exec sudo -n "$CTL" "$@"; fi
