# test/slurm/common.sh - what start.sh and stop.sh share: which daemons are ours, and how to
# stop one. Sourced, not run. Our daemons are the ones whose pid files are in $PIDDIR.

now_ms() { echo $(( ${EPOCHREALTIME//[.,]/} / 1000 )); }

# alive PID: the process exists and is not a zombie (an exited daemon is reparented to PID 1,
# which may reap it late, so /proc/PID alone proves nothing)
alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1 || true)
  [ -n "$state" ] && [ "$state" != Z ]
}

# comm NAME: the command name (/proc/PID/comm) of daemon NAME
comm() { case "$1" in mariadb) echo mariadbd ;; *) echo "$1" ;; esac; }

# pid_of NAME: prints the pid from $PIDDIR/NAME.pid when it is a live process running NAME's
# command, so that a stale pid file never points us at an unrelated process
pid_of() {
  local pid
  pid=$(cat "$PIDDIR/$1.pid" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(comm "$1")" ] || return 1
  echo "$pid"
}

running() { pid_of "$1" >/dev/null; }

# stop_daemon NAME: SIGTERM our daemon NAME, SIGKILL after 20 s; drops its pid file
stop_daemon() {
  local pid t0
  if pid=$(pid_of "$1"); then
    t0=$(now_ms)
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "slurm: $1 (pid $pid) ignored SIGTERM for 20 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "slurm: stopped $1 (pid $pid) in $(( $(now_ms) - t0 )) ms"
  fi
  rm -f "$PIDDIR/$1.pid"
}
