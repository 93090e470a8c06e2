#!/usr/bin/env bash
# stop-slurm.sh — stop the private Slurm cluster started by start-slurm.sh. Idempotent, < 1 s.
#   1. SIGKILL this cluster's slurmstepd processes and all their job processes (no KillWait),
#   2. stop slurmd x N, then slurmctld, then munged via their pid files (SIGTERM; SIGKILL after a
#      grace period). Jobs are not scancel'ed: their records die with slurmctld, and
#      start-slurm.sh starts from an empty state anyway.
# Processes are only ever signalled by PID: a pid-file PID only if /proc/PID/exe is the expected
# binary; PIDs found by scanning /proc only if /proc/PID/environ carries this cluster's SLURM_CONF
# (all daemons are started with it) or they descend from such a slurmstepd.
# Options: --purge  also delete $CCWORKER_SLURM_DIR (logs, key, state);  --quiet  no progress output.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/env.sh"

PURGE=0 QUIET=0
for a in "$@"; do
  case $a in
    --purge) PURGE=1 ;;
    --quiet) QUIET=1 ;;
    *) echo "usage: $0 [--purge] [--quiet]" >&2; exit 2 ;;
  esac
done
log() { (( QUIET )) || printf '[stop-slurm %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }

bin() { readlink -f "$(command -v "$1" 2>/dev/null || echo "/usr/sbin/$1")"; }
MUNGED=$(bin munged) SLURMCTLD=$(bin slurmctld) SLURMD=$(bin slurmd) SLURMSTEPD=$(bin slurmstepd)

exe_of() { readlink "/proc/$1/exe" 2>/dev/null; }
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ -n $s && $s != Z* ]]; }

# stop_pid PID GRACE_SECONDS: SIGTERM, wait up to GRACE, then SIGKILL
stop_pid() {
  local pid=$1 grace=$2 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do alive "$pid" || return 0; sleep 0.1; done
  log "pid $pid still alive ${grace}s after SIGTERM, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null
  for ((i = 0; i < 50; i++)); do alive "$pid" || return 0; sleep 0.1; done
}

# stop_pidfile FILE BINARY GRACE: stop the daemon named in FILE if it really runs BINARY
stop_pidfile() {
  local f=$1 bin=$2 grace=$3 pid
  if [[ -s $f ]]; then
    pid=$(<"$f")
    if [[ $pid =~ ^[0-9]+$ ]] && [[ $(exe_of "$pid") == "$bin" ]]; then
      log "stopping $(basename "$bin") pid $pid"
      stop_pid "$pid" "$grace"
    fi
  fi
  rm -f "$f"
}

# ours BINARY: pids running BINARY whose environment carries this cluster's SLURM_CONF
ours() {
  local pid exe
  while read -r pid exe; do
    [[ $exe == "$1" ]] || continue
    pid=${pid#/proc/}
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF" && echo "$pid"
  done < <(find /proc -mindepth 2 -maxdepth 2 -name exe -printf '%h %l\n' 2>/dev/null)
}

# descendants PID...: all descendants (children, grandchildren, ...) of the given pids
descendants() {
  ps -e -o pid=,ppid= | awk -v roots="$*" '
    { kids[$2] = kids[$2] " " $1 }
    END {
      n = split(roots, q, " ")
      for (i = 1; i <= n; i++) {
        m = split(kids[q[i]], k, " ")
        for (j = 1; j <= m; j++) { print k[j]; q[++n] = k[j] }
      }
    }'
}

# kill_jobs [with_stepd]: SIGKILL job processes under this cluster's slurmstepd (and the stepds)
kill_jobs() {
  local stepds procs
  stepds=$(ours "$SLURMSTEPD" | tr '\n' ' ')
  [[ -n ${stepds// /} ]] || return 0
  # shellcheck disable=SC2086
  procs=$(descendants $stepds | tr '\n' ' ')
  if [[ ${1:-} == with_stepd ]]; then
    log "killing slurmstepd $stepds and job processes: $procs"
    procs="$procs $stepds"
  elif [[ -n ${procs// /} ]]; then
    log "killing job processes: $procs"
  fi
  # shellcheck disable=SC2086
  [[ -n ${procs// /} ]] && kill -KILL $procs 2>/dev/null
  return 0
}

# 1. jobs: SIGKILL every slurmstepd of this cluster together with its job processes, all at once.
#    (scancel would SIGTERM, wait KillWait, and keep slurmd busy ~3 s per job; killing only the
#    job processes makes the stepds report completions, with the same effect.) The job records
#    die with slurmctld; start-slurm.sh wipes the state anyway.
kill_jobs with_stepd

# 2. slurmd x N (must go before slurmctld: a slurmd whose controller is gone ignores SIGTERM)
shopt -s nullglob
for f in "$CCWORKER_SLURM_RUN"/slurmd-*.pid; do stop_pidfile "$f" "$SLURMD" 5; done
for p in $(ours "$SLURMD"); do log "stopping stray slurmd pid $p"; stop_pid "$p" 5; done

# 3. anything slurmd launched meanwhile
kill_jobs with_stepd

# 4. slurmctld
stop_pidfile "$CCWORKER_SLURM_RUN/slurmctld.pid" "$SLURMCTLD" 15
for p in $(ours "$SLURMCTLD"); do log "stopping stray slurmctld pid $p"; stop_pid "$p" 15; done

# 5. munged
stop_pidfile "$CCWORKER_SLURM_RUN/munged.pid" "$MUNGED" 5
for p in $(ours "$MUNGED"); do log "stopping stray munged pid $p"; stop_pid "$p" 5; done
rm -f "$CCWORKER_SLURM_MUNGE_SOCKET" "$CCWORKER_SLURM_MUNGE_SOCKET.lock"

# undo CCWORKER_SLURM_LINK_ETC=1 (only our own symlink)
if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$SLURM_CONF" ]]; then
  rm -f /etc/slurm/slurm.conf && log "removed /etc/slurm/slurm.conf symlink"
fi

if (( PURGE )); then
  rm -rf "${CCWORKER_SLURM_DIR:?}"
  log "purged $CCWORKER_SLURM_DIR"
fi
log "stopped ($(elapsed)s)"
