#!/usr/bin/env bash
# Services the ccworker integration tests and demo need, all on 127.0.0.1:
#   RabbitMQ 5672 (guest/guest), PostgreSQL 5432 (trust auth for user postgres, FerretDB's backend),
#   FerretDB v1.24.2 27017 (MongoDB wire protocol, PostgreSQL backend, database 'ferretdb').
#
# usage: scripts/services.sh start|stop|status|env
#   start   install missing Debian packages (apt-get, root), start whatever does not answer on its
#           port, wait until each answers. Idempotent; ~1 s when everything is already up.
#           Builds FerretDB first if needed (scripts/build-ferretdb.sh, ~2 min once).
#   stop    stop only what `start` started (recorded in $CACHE/services/started/): FerretDB by pid;
#           RabbitMQ / PostgreSQL only if `start` had to start (or install) them.
#   status  one line per service: up/down and port.
#   env     print the `export CCWORKER_TEST_*` lines the Go integration tests read:
#           eval "$(scripts/services.sh env)"
#
# State: $CACHE = ${CCWORKER_CACHE:-~/.cache/ccworker}; FerretDB's state dir, log and pid file are in
# $CACHE/ferretdb/ (log: $CACHE/ferretdb/ferretdb.log).
# A service that already answers on its port is reused as is (a system RabbitMQ / PostgreSQL, any
# MongoDB-wire server on 27017) and never stopped by `stop`.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${CCWORKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ccworker}
STARTED=$CACHE/services/started
FD=$CACHE/ferretdb
FPID=$FD/ferretdb.pid
FLOG=$FD/ferretdb.log

AMQP_PORT=5672 PG_PORT=5432 MONGO_PORT=27017 FERRET_DEBUG_ADDR=127.0.0.1:8088
PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/ferretdb
APT_PACKAGES=(rabbitmq-server postgresql python3-celery python3-pymongo python3-msgpack python3-yaml python3-gevent)

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
say() { echo "services: $*"; }
die() { echo "services: ERROR: $*" >&2; exit 1; }
# answers PORT: something accepts TCP connections on 127.0.0.1:PORT
answers() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
# wait_port PORT SECONDS WHAT LOGHINT: bounded wait until PORT answers
wait_port() {
  local port=$1 secs=$2 what=$3 hint=$4 i
  for ((i = 0; i < secs * 10; i++)); do answers "$port" && return 0; sleep 0.1; done
  die "$what does not answer on 127.0.0.1:$port after ${secs} s; read $hint"
}
# comm_is PID NAME: PID is alive and its process name is NAME (guards against reused pids)
comm_is() { [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi; }

# ---------------------------------------------------------------- packages
ensure_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] && return 0
  say "installing missing Debian packages: ${missing[*]}"
  local t0; t0=$(now)
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  # a package whose postinst started a server counts as started by us: stop stops it again
  for p in "${missing[@]}"; do
    case $p in rabbitmq-server) touch "$STARTED/rabbitmq.installed" ;; postgresql) touch "$STARTED/postgresql.installed" ;; esac
  done
  say "packages installed in $(since "$t0") s"
}

# ---------------------------------------------------------------- RabbitMQ
rmq_pidfile() {
  # the Debian wrappers run the node as user rabbitmq with HOME=/var/lib/rabbitmq; default pid file
  # is <mnesia base>/<nodename>.pid
  local node
  node=$(sed -n 's/^[[:space:]]*\(RABBITMQ_\)\{0,1\}NODENAME=//p' /etc/rabbitmq/rabbitmq-env.conf 2>/dev/null | tail -1)
  [ -n "$node" ] || node=rabbit@$(hostname -s)
  echo "/var/lib/rabbitmq/mnesia/$node.pid"
}
start_rabbitmq() {
  if answers $AMQP_PORT; then
    [ -f "$STARTED/rabbitmq.installed" ] && { mv "$STARTED/rabbitmq.installed" "$STARTED/rabbitmq"; }
    say "rabbitmq: up on 127.0.0.1:$AMQP_PORT"; return 0
  fi
  [ -x /usr/sbin/rabbitmq-server ] || die "nothing answers on 127.0.0.1:$AMQP_PORT and rabbitmq-server is not installed"
  local t0 pidfile; t0=$(now); pidfile=$(rmq_pidfile)
  # /usr/sbin/rabbitmq-server su's to user rabbitmq (HOME /var/lib/rabbitmq, cookie there, logs in
  # /var/log/rabbitmq), so the system /usr/sbin/rabbitmqctl (scripts/rmq.sh) talks to this node.
  as_root /usr/sbin/rabbitmq-server -detached
  as_root /usr/sbin/rabbitmqctl -q wait --timeout 120 "$pidfile" >/dev/null 2>&1 ||
    die "rabbitmq did not start within 120 s; read /var/log/rabbitmq/ (startup_err, rabbit@*.log)"
  wait_port $AMQP_PORT 30 rabbitmq "/var/log/rabbitmq/"
  rm -f "$STARTED/rabbitmq.installed"; echo "$pidfile" > "$STARTED/rabbitmq"
  say "rabbitmq: started (system install, node pid $(cat "$pidfile" 2>/dev/null || echo ?)) in $(since "$t0") s"
}
stop_rabbitmq() {
  local f
  for f in "$STARTED/rabbitmq" "$STARTED/rabbitmq.installed"; do
    [ -f "$f" ] || continue
    if answers $AMQP_PORT; then
      local t0; t0=$(now)
      as_root /usr/sbin/rabbitmqctl -q stop >/dev/null 2>&1 || say "rabbitmq: rabbitmqctl stop failed"
      say "rabbitmq: stopped in $(since "$t0") s"
    fi
    rm -f "$f"; return 0
  done
  say "rabbitmq: not started by services.sh, left running"
}

# ---------------------------------------------------------------- PostgreSQL
pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -1; }
psql_q() { PGCONNECT_TIMEOUT=5 psql -w -h 127.0.0.1 -p $PG_PORT -U postgres -d "${2:-postgres}" -qtAc "$1"; }
start_postgresql() {
  if answers $PG_PORT; then
    [ -f "$STARTED/postgresql.installed" ] && mv "$STARTED/postgresql.installed" "$STARTED/postgresql"
    say "postgresql: up on 127.0.0.1:$PG_PORT"
  else
    local v t0; t0=$(now)
    command -v pg_ctlcluster >/dev/null || die "nothing answers on 127.0.0.1:$PG_PORT and postgresql is not installed"
    v=$(pg_version)
    if [ -z "$v" ] || [ ! -d "/etc/postgresql/$v/main" ]; then
      v=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1 | cut -d/ -f4)
      say "postgresql: creating cluster $v/main"
      as_root pg_createcluster --port=$PG_PORT "$v" main >/dev/null
    fi
    as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start ||
      die "postgresql $v/main did not start; read /var/log/postgresql/postgresql-$v-main.log"
    wait_port $PG_PORT 30 postgresql "/var/log/postgresql/postgresql-$v-main.log"
    rm -f "$STARTED/postgresql.installed"; echo "$v" > "$STARTED/postgresql"
    say "postgresql: started cluster $v/main in $(since "$t0") s"
  fi
  # FerretDB connects as postgres over TCP without a password: make sure trust auth works for it
  if ! psql_q 'SELECT 1' >/dev/null 2>&1; then
    local v hba; v=$(pg_version); hba=/etc/postgresql/$v/main/pg_hba.conf
    [ -f "$hba" ] || die "cannot connect to PostgreSQL on 127.0.0.1:$PG_PORT as user postgres without a password, and $hba does not exist to fix it"
    say "postgresql: adding 'host all postgres 127.0.0.1/32 trust' to the top of $hba"
    as_root sed -i '1i host all postgres 127.0.0.1/32 trust  # added by ccworker scripts/services.sh' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$v" main reload
    local i; for ((i = 0; i < 50; i++)); do psql_q 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done
    psql_q 'SELECT 1' >/dev/null || die "still cannot connect to PostgreSQL as postgres over TCP; check $hba"
  fi
  if [ "$(psql_q "SELECT 1 FROM pg_database WHERE datname='ferretdb'")" != 1 ]; then
    psql_q 'CREATE DATABASE ferretdb' >/dev/null && say "postgresql: created database ferretdb"
  fi
}
stop_postgresql() {
  local f
  for f in "$STARTED/postgresql" "$STARTED/postgresql.installed"; do
    [ -f "$f" ] || continue
    local v; v=$(cat "$f"); [ -n "$v" ] || v=$(pg_version)
    if answers $PG_PORT; then
      local t0; t0=$(now)
      as_root pg_ctlcluster --skip-systemctl-redirect "$v" main stop -m fast && say "postgresql: stopped cluster $v/main in $(since "$t0") s"
    fi
    rm -f "$f"; return 0
  done
  say "postgresql: not started by services.sh, left running"
}

# ---------------------------------------------------------------- FerretDB
ferretdb_bin() {
  local bin=$CACHE/bin/ferretdb
  # another process (e.g. an earlier services.sh or the lead) may be building it right now
  if pgrep -f 'build-ferretdb' >/dev/null 2>&1 && [ ! -x "$bin" ]; then
    say "ferretdb: a build is already running, waiting for $bin (up to 10 min)" >&2
    local i; for ((i = 0; i < 6000; i++)); do
      [ -x "$bin" ] && break
      pgrep -f 'build-ferretdb' >/dev/null 2>&1 || break
      sleep 0.1
    done
  fi
  # no-op when built (flock-serialized otherwise); prints the binary path
  CCWORKER_CACHE=$CACHE "$HERE/build-ferretdb.sh" | tail -1
}
start_ferretdb() {
  if [ -s "$FPID" ] && comm_is "$(cat "$FPID")" ferretdb && answers $MONGO_PORT; then
    say "ferretdb: up on 127.0.0.1:$MONGO_PORT (pid $(cat "$FPID"), started by services.sh)"; return 0
  fi
  if answers $MONGO_PORT; then
    say "ferretdb: something already answers on 127.0.0.1:$MONGO_PORT: using it"; return 0
  fi
  local bin t0; bin=$(ferretdb_bin); [ -x "$bin" ] || die "ferretdb binary missing after scripts/build-ferretdb.sh"
  mkdir -p "$FD/state"
  t0=$(now)
  # setsid: its own session, so Ctrl-C / process-group kills aimed at the caller do not reach it
  setsid nohup "$bin" \
    --handler=postgresql --postgresql-url="$PG_URL" \
    --listen-addr=127.0.0.1:$MONGO_PORT --debug-addr=$FERRET_DEBUG_ADDR \
    --state-dir="$FD/state" --telemetry=disable --log-level=warn \
    >>"$FLOG" 2>&1 </dev/null &
  local pid=$!
  echo $pid > "$FPID"; echo $pid > "$STARTED/ferretdb"
  local i; for ((i = 0; i < 300; i++)); do
    answers $MONGO_PORT && break
    comm_is $pid ferretdb || { rm -f "$FPID" "$STARTED/ferretdb"; tail -5 "$FLOG" >&2; die "ferretdb exited at start; read $FLOG"; }
    sleep 0.1
  done
  answers $MONGO_PORT || die "ferretdb (pid $pid) does not answer on 127.0.0.1:$MONGO_PORT after 30 s; read $FLOG"
  say "ferretdb: started pid $pid on 127.0.0.1:$MONGO_PORT in $(since "$t0") s (log $FLOG)"
}
stop_ferretdb() {
  if [ ! -f "$STARTED/ferretdb" ]; then say "ferretdb: not started by services.sh, left alone"; return 0; fi
  local p; p=$(cat "$STARTED/ferretdb")
  if comm_is "$p" ferretdb; then
    local t0 i; t0=$(now); kill "$p"
    for ((i = 0; i < 150; i++)); do comm_is "$p" ferretdb || break; sleep 0.1; done
    comm_is "$p" ferretdb && { say "ferretdb: pid $p still alive after 15 s, sending KILL"; kill -9 "$p"; }
    say "ferretdb: stopped pid $p in $(since "$t0") s"
  else
    say "ferretdb: pid $p was not running"
  fi
  rm -f "$STARTED/ferretdb" "$FPID"
}

# ---------------------------------------------------------------- main
status_line() { if answers "$2"; then printf '%-10s up    127.0.0.1:%s%s\n' "$1" "$2" "${3:-}"; else printf '%-10s down  127.0.0.1:%s\n' "$1" "$2"; fi; }

cmd=${1:-}
case $cmd in
  start)
    mkdir -p "$STARTED" "$FD"
    t0=$(now)
    ensure_packages
    start_rabbitmq
    start_postgresql
    start_ferretdb
    say "all up in $(since "$t0") s"
    ;;
  stop)
    mkdir -p "$STARTED"
    stop_ferretdb
    stop_postgresql
    stop_rabbitmq
    ;;
  status)
    status_line rabbitmq $AMQP_PORT
    status_line postgresql $PG_PORT
    note=
    if [ -s "$FPID" ] && comm_is "$(cat "$FPID")" ferretdb; then note=" (ferretdb pid $(cat "$FPID"), log $FLOG)"; fi
    status_line mongodb $MONGO_PORT "$note"
    ;;
  env)
    echo "export CCWORKER_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT//"
    echo "export CCWORKER_TEST_MONGO_URL=mongodb://127.0.0.1:$MONGO_PORT/"
    ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
