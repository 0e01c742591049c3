#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, for tests/test_slurm.py (Debian's slurmd, slurmctld, munge; run as root,
# no cgroups: proctrack/linuxproc, task/none).
#
#   tests/slurm/cluster.sh install      # apt-get install the packages when sbatch is missing (needs root)
#   tests/slurm/cluster.sh start DIR    # config, state and logs in DIR; prints the SLURM_CONF to export
#   tests/slurm/cluster.sh stop DIR
set -euo pipefail

cmd=${1:?usage: cluster.sh install|start DIR|stop DIR}

case "$cmd" in
install)
    command -v sbatch >/dev/null && exit 0
    [ "$(id -u)" = 0 ] || { echo "cluster.sh: installing Slurm needs root" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq slurmd slurmctld munge slurm-client >/dev/null
    ;;
start)
    dir=$(realpath -m "${2:?start needs a folder}")
    mkdir -p "$dir/state" "$dir/spool" "$dir/log"
    node=$(hostname -s)
    cpus=$(nproc)
    cat >"$dir/slurm.conf" <<EOF
ClusterName=univenc
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# scancel sends SIGTERM, which a submitit job bypasses; SIGKILL follows after KillWait seconds (30 by default)
KillWait=2
MpiDefault=none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    pgrep -x munged >/dev/null || (mkdir -p /run/munge && chown munge:munge /run/munge &&
        runuser -u munge -- /usr/sbin/munged)
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 60); do  # the node comes up idle within seconds
        state=$(sinfo -h -N -o %T 2>/dev/null || true)
        [ "$state" = idle ] && { echo "$SLURM_CONF"; exit 0; }
        sleep 1
    done
    echo "cluster.sh: the node did not come up (state: ${state:-none}); logs in $dir/log" >&2
    exit 1
    ;;
stop)
    dir=$(realpath -m "${2:?stop needs a folder}")
    for daemon in slurmd slurmctld; do
        [ -f "$dir/$daemon.pid" ] && kill "$(cat "$dir/$daemon.pid")" 2>/dev/null || true
    done
    ;;
*)
    echo "usage: cluster.sh install|start DIR|stop DIR" >&2
    exit 2
    ;;
esac
