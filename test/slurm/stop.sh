#!/usr/bin/env bash
# test/slurm/stop.sh - stop the SLURM test cluster that test/slurm/start.sh started: cancel
# the jobs left (so that no job outlives slurmd), then stop only the daemons whose pid files
# are in /run/local-slurm, each checked against its command name first. Daemons started
# otherwise are never touched.
# Usage: test/slurm/stop.sh [--keep-db]   (--keep-db: leave MariaDB and munged running)
set -uo pipefail
PIDDIR=/run/local-slurm
KEEP_DB=0
for arg in "$@"; do
  case "$arg" in
    --keep-db) KEEP_DB=1 ;;
    -h|--help) sed -n '2,/^set -uo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "slurm/stop.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "slurm/stop.sh: needs root; nothing stopped" >&2; exit 1; }
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

if running slurmctld && running slurmd; then
  jobs=$(squeue -h -t pending,running,suspended,configuring,completing -o %i 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    echo "slurm: cancelling jobs $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
    for _ in $(seq 1 60); do
      [ -z "$(squeue -h -t running,completing,configuring -o %i 2>/dev/null)" ] && break
      sleep 0.25
    done
  fi
fi

daemons=(slurmd slurmctld slurmdbd)
[ "$KEEP_DB" = 1 ] || daemons+=(mariadb munged)
for name in "${daemons[@]}"; do
  [ -f "$PIDDIR/$name.pid" ] || continue
  running "$name" || echo "slurm: the pid file of $name was stale"
  stop_daemon "$name"
done
echo "slurm: test cluster stopped"
