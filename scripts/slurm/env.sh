# shellcheck shell=bash
# Source this file (bash): settings and environment of ccworker's private test Slurm cluster
# (munged + slurmctld + one slurmd per fake node node1..nodeN, all on 127.0.0.1, no systemd).
#   scripts/slurm/start-slurm.sh && source scripts/slurm/env.sh   # exports SLURM_CONF for sbatch/squeue/srun/scancel
# Used by start-slurm.sh and stop-slurm.sh; every setting can be overridden from the environment
# before sourcing. All runtime state lives under $CCWORKER_SLURM_DIR, by default
# ${CCWORKER_CACHE:-~/.cache/ccworker}/slurm (same cache as scripts/services.sh).
# shellcheck disable=SC2034  # the non-exported CCWORKER_SLURM_* paths are used by the sourcing scripts

_ccw_cache=${CCWORKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ccworker}
export CCWORKER_SLURM_DIR=${CCWORKER_SLURM_DIR:-$_ccw_cache/slurm}
export CCWORKER_SLURM_NODES=${CCWORKER_SLURM_NODES:-4}            # fake nodes node1..nodeN, one slurmd each
export CCWORKER_SLURM_CPUS=${CCWORKER_SLURM_CPUS:-$(nproc)}      # CPUs advertised per fake node
export CCWORKER_SLURM_PORT=${CCWORKER_SLURM_PORT:-16817}         # slurmctld port; slurmd k listens on PORT+k
export CCWORKER_SLURM_CLUSTER=${CCWORKER_SLURM_CLUSTER:-ccworker}
export CCWORKER_SLURM_PARTITION=${CCWORKER_SLURM_PARTITION:-debug}
export CCWORKER_SLURM_KILLWAIT=${CCWORKER_SLURM_KILLWAIT:-30}    # seconds between SIGTERM and SIGKILL at cancel/timeout
export CCWORKER_SLURM_MINJOBAGE=${CCWORKER_SLURM_MINJOBAGE:-3600} # finished jobs stay visible to squeue -t all / scontrol
export CCWORKER_SLURM_PROBE=${CCWORKER_SLURM_PROBE:-1}          # start-slurm.sh runs one probe job before returning
# batch_sched_delay=0: sbatch jobs start <= ~1 s after submit (Slurm's default 3 gives 0.1-3 s)
export CCWORKER_SLURM_SCHED_PARAMS=${CCWORKER_SLURM_SCHED_PARAMS-batch_sched_delay=0}
export CCWORKER_SLURM_LINK_ETC=${CCWORKER_SLURM_LINK_ETC:-0}      # 1: symlink /etc/slurm/slurm.conf -> SLURM_CONF

CCWORKER_SLURM_ETC=$CCWORKER_SLURM_DIR/etc       # slurm.conf (munge.key + seed live in $CCWORKER_SLURM_DIR/munge, mode 0700)
CCWORKER_SLURM_RUN=$CCWORKER_SLURM_DIR/run       # pid files, munge socket
CCWORKER_SLURM_LOG=$CCWORKER_SLURM_DIR/log       # daemon logs, jobcomp.txt (finished-job records)
CCWORKER_SLURM_STATE=$CCWORKER_SLURM_DIR/state   # slurmctld StateSaveLocation
CCWORKER_SLURM_SPOOL=$CCWORKER_SLURM_DIR/spool   # SlurmdSpoolDir=spool/<node>
CCWORKER_SLURM_MUNGE_SOCKET=$CCWORKER_SLURM_RUN/munge.socket

export SLURM_CONF=$CCWORKER_SLURM_ETC/slurm.conf
