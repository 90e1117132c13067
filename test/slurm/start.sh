#!/usr/bin/env bash
# test/slurm/start.sh - the SLURM test cluster of radical.orbit: one node on this machine,
# Debian's slurm-wlm with munge, and slurmdbd + MariaDB for accounting, started without
# systemd. Partitions `debug` (default, no time limit) and `batch` (MaxTime 1 h,
# DefaultTime 10 min), account `testacct` with an association for root.
#
# Usage: test/slurm/start.sh [--no-accounting] [--reset] [--smoke] [-h]
#   --no-accounting  no slurmdbd/MariaDB (sacct and sacctmgr then fail)
#   --reset          wipe the controller's state and the accounting database (refused while
#                    the daemons run: stop them first)
#   --smoke          once the node is idle, run `sbatch --wrap true` to COMPLETED
# Idempotent: daemons already running from an earlier start (pid files in /run/local-slurm)
# are adopted as they are; a daemon is restarted only when its config file really changed
# (comment lines do not count). Needs root; packages missing are installed with apt-get.
# Without root (or without apt for missing packages) it prints one line and exits 1.
# Environment: ORBIT_SLURM_CLUSTER (localcluster), ORBIT_SLURM_ACCOUNT (testacct),
#   ORBIT_SLURM_USERS (more users for the account besides root), ORBIT_SLURM_TIMEOUT (60 s
#   per wait), ORBIT_SLURM_DB_PASS (slurmdbpass).
# Stop with test/slurm/stop.sh.
set -euo pipefail

ACCOUNTING=1 RESET=0 SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --no-accounting) ACCOUNTING=0 ;;
    --reset) RESET=1 ;;
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "slurm/start.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

CLUSTER=${ORBIT_SLURM_CLUSTER:-localcluster}
ACCOUNT=${ORBIT_SLURM_ACCOUNT:-testacct}
USERS="root ${ORBIT_SLURM_USERS:-}"
TIMEOUT=${ORBIT_SLURM_TIMEOUT:-60}
DB_PASS=${ORBIT_SLURM_DB_PASS:-slurmdbpass}
PIDDIR=/run/local-slurm
LOGDIR=/var/log/slurm
CONFDIR=/etc/slurm
NODE=$(hostname -s)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/common.sh"
T0=$(now_ms)

say() { local ms=$(( $(now_ms) - T0 )); printf '[slurm/start %d.%ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"; }
LOGS=()
die() {
  echo "slurm/start.sh: $*" >&2
  local f
  for f in "${LOGS[@]:-}"; do
    if [ -n "$f" ] && [ -s "$f" ]; then echo "--- tail of $f" >&2; tail -n 15 "$f" >&2; fi
  done
  exit 1
}

[ "$(id -u)" = 0 ] || die "needs root (it installs packages, writes $CONFDIR and starts daemons); not started"

# wait_until WHAT DAEMON CMD...: poll CMD for up to $TIMEOUT s; fail at once if DAEMON died
wait_until() {
  local what=$1 daemon=$2 end=$(( $(date +%s) + TIMEOUT )); shift 2
  until "$@" >/dev/null 2>&1; do
    if [ -n "$daemon" ] && [ -f "$PIDDIR/$daemon.pid" ] && ! running "$daemon"; then
      die "$daemon exited while waiting for: $what"
    fi
    [ "$(date +%s)" -lt "$end" ] || die "no $what after ${TIMEOUT} s"
    sleep 0.25
  done
  say "ok: $what"
}

# launch NAME CMD...: start CMD in its own session, output to $LOGDIR/NAME.stdout, pid recorded
launch() {
  local name=$1; shift
  setsid "$@" >"$LOGDIR/$name.stdout" 2>&1 </dev/null &
  echo $! >"$PIDDIR/$name.pid"
  say "started $name (pid $!)"
}

# other NAME: a live process NAME that is not ours (then we leave it alone and use it)
other() { local p; for p in $(pgrep -x "$1" || true); do alive "$p" && return 0; done; return 1; }

# ---- packages
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }
PKGS=(slurm-wlm slurm-client munge)
[ "$ACCOUNTING" = 1 ] && PKGS+=(slurmdbd slurm-wlm-mysql-plugin mariadb-server)
MISSING=()
for p in "${PKGS[@]}"; do installed "$p" || MISSING+=("$p"); done
if [ "${#MISSING[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing packages ${MISSING[*]} and no apt-get to install them; not started"
  say "installing ${MISSING[*]}"
  APTLOG=/tmp/orbit-slurm-apt.log
  # no systemd here: keep the packages' scripts from starting services; we start them
  NOPOLICY=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; NOPOLICY=1
  fi
  ok=1
  { DEBIAN_FRONTEND=noninteractive apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${MISSING[@]}"; } \
    >"$APTLOG" 2>&1 || ok=0
  [ "$NOPOLICY" = 1 ] && rm -f /usr/sbin/policy-rc.d
  LOGS=("$APTLOG")
  [ "$ok" = 1 ] || die "apt-get could not install ${MISSING[*]}"
  say "installed"
fi

# ---- directories (none of /run survives a reboot where it is a tmpfs)
mkdir -p "$PIDDIR" /run/munge /run/slurm /run/mysqld /var/spool/slurmctld /var/spool/slurmd \
  "$LOGDIR" /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chown slurm:slurm /run/slurm /var/spool/slurmctld "$LOGDIR"
[ "$ACCOUNTING" = 1 ] && chown mysql:mysql /run/mysqld

# ---- munge
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key; chmod 0600 /etc/munge/munge.key
munge_ok() { munge -n </dev/null | unmunge >/dev/null; }
if running munged || munge_ok 2>/dev/null; then
  say "munged is up"
else
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
  # setpriv execs, so the recorded pid is munged's own
  launch munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground
  LOGS=("$LOGDIR/munged.stdout" /var/log/munge/munged.log)
  wait_until "munge credential round trip" munged munge_ok
fi

# ---- MariaDB
if [ "$ACCOUNTING" = 1 ]; then
  if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$LOGDIR/mariadb-install.log" 2>&1 \
      || { LOGS=("$LOGDIR/mariadb-install.log"); die "mariadb-install-db failed"; }
  fi
  if running mariadb || mariadb-admin ping >/dev/null 2>&1; then
    say "MariaDB is up"
  else
    launch mariadb /usr/sbin/mariadbd --user=mysql
    LOGS=("$LOGDIR/mariadb.stdout")
    wait_until "MariaDB ping" mariadb mariadb-admin ping
  fi
  if [ "$RESET" = 1 ]; then
    { running slurmdbd || other slurmdbd; } && die "--reset while slurmdbd runs: run test/slurm/stop.sh first"
    mariadb -e "DROP DATABASE IF EXISTS slurm_acct_db;"
    say "--reset: accounting database dropped"
  fi
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
fi

# ---- configs
# The node's geometry from `slurmd -C` when it agrees with nproc (a cpuset-limited container
# does not); RealMemory at 90 % so that the node is never drained for "Low RealMemory".
HW=$(slurmd -C 2>/dev/null | head -n 1 || true)
hw() { echo "$HW" | grep -o "$1=[0-9]*" | cut -d= -f2 || true; }
CPUS=$(hw CPUs); MEM=$(hw RealMemory); MEM=$(( ${MEM:-1024} * 90 / 100 ))
if [ "${CPUS:-0}" = "$(nproc)" ]; then
  GEOMETRY="CPUs=$CPUS Boards=1 SocketsPerBoard=$(hw SocketsPerBoard) CoresPerSocket=$(hw CoresPerSocket) ThreadsPerCore=$(hw ThreadsPerCore)"
else
  GEOMETRY="CPUs=$(nproc)"
fi
if [ "$ACCOUNTING" = 1 ]; then
  ACCT="JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
else
  ACCT="JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none"
fi
SLURM_CONF=$(cat <<EOF
# generated by radical.orbit test/slurm/start.sh: a one-node test cluster without cgroups
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# the default batch_sched_delay of 3 s delays every sbatch
SchedulerParameters=batch_sched_delay=0
# sbatch refuses a job over a partition's limits at once instead of leaving it PENDING
EnforcePartLimits=ALL
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
# finished jobs stay visible in squeue for 5 minutes (psij's status polls rely on it)
MinJobAge=300
KillWait=5
Waittime=0
JobCompType=jobcomp/none
MailProg=/bin/true
$ACCT
NodeName=$NODE NodeAddr=127.0.0.1 $GEOMETRY RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=batch Nodes=ALL Default=NO MaxTime=01:00:00 DefaultTime=00:10:00 State=UP
EOF
)
DBD_CONF=$(cat <<EOF
# generated by radical.orbit test/slurm/start.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=$LOGDIR/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
)

# settings FILE-OR-TEXT: the lines that mean something (no comments, no blank lines)
settings() { grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' || true; }
# install_conf FILE CONTENT OWNER MODE: write FILE when its settings differ; true when written
install_conf() {
  local f=$1 text=$2
  if [ -f "$f" ] && [ "$(settings <"$f")" = "$(printf '%s\n' "$text" | settings)" ]; then
    chown "$3" "$f"; chmod "$4" "$f"; return 1
  fi
  if [ -f "$f" ] && ! head -n 1 "$f" | grep -q 'generated by'; then
    cp -p "$f" "$f.orig.$(date +%s)"; say "kept a copy of the existing $f"
  fi
  printf '%s\n' "$text" >"$f"; chown "$3" "$f"; chmod "$4" "$f"
  say "wrote $f"
}
mkdir -p "$CONFDIR"
if install_conf "$CONFDIR/slurm.conf" "$SLURM_CONF" root:root 0644; then
  stop_daemon slurmd; stop_daemon slurmctld
fi
# slurmdbd refuses a config not owned by SlurmUser or readable by others
if [ "$ACCOUNTING" = 1 ] && install_conf "$CONFDIR/slurmdbd.conf" "$DBD_CONF" slurm:slurm 0600; then
  stop_daemon slurmdbd
fi

# slurmctld dies on "CLUSTER NAME MISMATCH" when its state belongs to another cluster name
STATE_NAME=$(cat /var/spool/slurmctld/clustername 2>/dev/null || true)
if [ -n "$STATE_NAME" ] && [ "$STATE_NAME" != "$CLUSTER" ] && ! running slurmctld && ! other slurmctld; then
  say "controller state belongs to cluster $STATE_NAME: wiping it"
  RESET=1
fi
if [ "$RESET" = 1 ]; then
  for d in slurmctld slurmd; do
    { running "$d" || other "$d"; } && die "--reset while $d runs: run test/slurm/stop.sh first"
  done
  find /var/spool/slurmctld /var/spool/slurmd -mindepth 1 -delete
  say "--reset: controller and node state wiped"
fi

# ---- slurmdbd, cluster, account, associations (the cluster must exist before slurmctld registers)
if [ "$ACCOUNTING" = 1 ]; then
  if running slurmdbd || other slurmdbd; then say "slurmdbd is up"; else launch slurmdbd /usr/sbin/slurmdbd -D; fi
  LOGS=("$LOGDIR/slurmdbd.stdout" "$LOGDIR/slurmdbd.log")
  wait_until "slurmdbd answers sacctmgr" slurmdbd timeout 10 sacctmgr -n -P show cluster format=cluster
  listed() { grep -x "$1" >/dev/null; }
  sacctmgr -n -P show cluster format=cluster | listed "$CLUSTER" \
    || { sacctmgr -i add cluster "$CLUSTER" >/dev/null; say "cluster $CLUSTER registered"; }
  sacctmgr -n -P show account format=account | listed "$ACCOUNT" \
    || { sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="orbit test account" Organization=orbit >/dev/null
         say "account $ACCOUNT added"; }
  for u in $USERS; do
    sacctmgr -n -P show assoc cluster="$CLUSTER" account="$ACCOUNT" user="$u" format=user | listed "$u" \
      || { sacctmgr -i add user "$u" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
           say "association $u/$ACCOUNT added"; }
  done
fi

# ---- slurmctld
ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
if running slurmctld || other slurmctld; then say "slurmctld is up"; else launch slurmctld /usr/sbin/slurmctld -D; fi
LOGS=("$LOGDIR/slurmctld.stdout" "$LOGDIR/slurmctld.log")
wait_until "slurmctld answers scontrol ping" slurmctld ctld_up

# ---- slurmd, until the node takes jobs
SLURMD_SINCE=0
if running slurmd || other slurmd; then
  say "slurmd is up"
else
  SLURMD_SINCE=$(date +%s)
  launch slurmd /usr/sbin/slurmd -D -N "$NODE"
fi
LOGS=("$LOGDIR/slurmd.stdout" "$LOGDIR/slurmd.log" "$LOGDIR/slurmctld.log")
RESUMED=0
node_ready() {
  local started state
  # slurmctld restores the node as idle from its state before slurmd registers: a new slurmd
  # counts only once the node reports a SlurmdStartTime from it
  if [ "$SLURMD_SINCE" -gt 0 ]; then
    started=$(scontrol show node "$NODE" -o 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2 || true)
    [ -n "$started" ] && [ "$started" != None ] || return 1
    [ "$(date -d "$started" +%s 2>/dev/null || echo 0)" -ge $((SLURMD_SINCE - 2)) ] || return 1
  fi
  state=$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -n 1 || true)
  case "$state" in
    idle|mix|alloc) return 0 ;;
    drain*|down*|drng*)
      [ "$RESUMED" = 1 ] || { RESUMED=1; scontrol update NodeName="$NODE" State=RESUME || true; }
      return 1 ;;
    *) return 1 ;;
  esac
}
wait_until "node $NODE takes jobs" slurmd node_ready

if [ "$SMOKE" = 1 ]; then
  JOB=$(sbatch --parsable -o /dev/null -e /dev/null --wrap true)
  job_completed() { [ "$(squeue -h -t all -j "$JOB" -o %T 2>/dev/null)" = COMPLETED ]; }
  wait_until "smoke job $JOB COMPLETED" "" job_completed
fi

say "cluster $CLUSTER is up: node $NODE, partitions debug (default) and batch, accounting $([ "$ACCOUNTING" = 1 ] && echo on || echo off); logs in $LOGDIR, pids in $PIDDIR; stop with $HERE/stop.sh"
