# Source this (bash): what the scripts that run private services (scripts/chaos,
# scripts/cluster) need to find, wait for and stop their own processes by pid, and only
# those. The sourcing script defines say (a line to stderr with its own prefix).

# comm_is PID NAME: PID is alive and its process name is NAME (guards against reused pids).
comm_is() { [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]; }

# answers PORT: something accepts TCP connections on 127.0.0.1:PORT.
answers() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# reap PID NAME [LABEL]: waits up to 10 s for PID (process NAME) to be gone, after a stop
# or a kill was sent, and KILLs it if it lingers. LABEL names it in the message.
reap() {
  local p=$1 name=$2 label=${3:-}
  for _ in $(seq 1 100); do comm_is "$p" "$name" || return 0; sleep 0.1; done
  say "${label:+$label }pid $p still alive, KILL"
  kill -9 "$p" 2>/dev/null || true
}
