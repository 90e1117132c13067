"""A leaner ``single`` launcher for the ``local`` executor, used when no launcher log is kept.

psij starts every job through ``single_launch.sh``, whose library pipes the launcher's log
lines through a subshell that runs ``date`` for each (``exec 3> >(ts >> "$LOG")``), even
when the log is ``/dev/null`` (psij's default). That subshell holds the launcher's stdout
pipe, and psij's reaper reads that pipe to its end before it reports the job done: about
4 ms of a trivial job's 8 to 9 ms, measured in the endpoint. This script does what psij's
does (pre-launch, the command with the spec's stdin/stdout/stderr, post-launch, the
``_PSI_J_LAUNCHER_DONE`` marker psij tells launcher failures by, the command's exit code)
without the log, and quotes the stdin/stdout/stderr paths, so they may hold spaces. It is
written into the executor's work dir (psij deploys it from there like its own), so nothing
but Python files ships.

It also records the command's exit code in a file (``expect_exit`` names it before the
submit; the job manager keeps it next to the job's output): a job re-attached after an
endpoint restart is no longer the endpoint's child, so psij reports exit code 0 whatever
it was, and a job that ended while the endpoint was down is not seen ending at all; both
read their exit code from that file.
"""
import logging
import os
import threading
from pathlib import Path
from typing import Any, Dict, Optional

log = logging.getLogger("radical_orbit.plugins.psij")

NAME = "orbit_single_launch.sh"
SCRIPT = """#!/bin/bash
# ORBIT's launcher for psij's local executor (radical_orbit/plugins/psij/quicklaunch.py).
# Arguments as psij passes them to a launcher: job id, launcher log, pre-launch script,
# post-launch script, stdin, stdout, stderr, then ORBIT's exit code file (may be empty),
# then the command. No launcher log is kept.
set -e
_ORBIT_PRE=$3
_ORBIT_POST=$4
_ORBIT_IN=$5
_ORBIT_OUT=$6
_ORBIT_ERR=$7
_ORBIT_EXIT=$8
shift 8
if [ -n "$_ORBIT_PRE" ]; then . "$_ORBIT_PRE"; fi
set +e
"$@" <"$_ORBIT_IN" >"$_ORBIT_OUT" 2>"$_ORBIT_ERR"
_ORBIT_STATUS=$?
set -e
if [ -n "$_ORBIT_POST" ]; then . "$_ORBIT_POST"; fi
# a builtin (no process per job); it is read only once this process has ended
if [ -n "$_ORBIT_EXIT" ]; then
    { echo "$_ORBIT_STATUS" >"$_ORBIT_EXIT"; } 2>/dev/null || true
fi
# psij tells a launcher that failed before the command from one that ran it by this line
echo _PSI_J_LAUNCHER_DONE
exit "$_ORBIT_STATUS"
"""
#: psij job id -> the exit code file its launch writes (taken when the launch command is made)
_exit_files: Dict[str, str] = {}
_exit_lock = threading.Lock()


def expect_exit(psij_job_id: str, path: str) -> None:
    """The job about to be submitted records its exit code in ``path`` (if this launcher
    starts it; call ``forget`` once the submit returned)."""
    with _exit_lock:
        _exit_files[psij_job_id] = path


def forget(psij_job_id: str) -> None:
    with _exit_lock:
        _exit_files.pop(psij_job_id, None)


def read_exit(path: str) -> Optional[int]:
    """The exit code a job's launcher recorded in ``path``; None when it wrote none (still
    running, killed, or started by another launcher)."""
    try:
        with open(path) as f:
            return int(f.read(32).strip())
    except (OSError, ValueError):
        return None


def install(executor: Any) -> bool:
    """Make ``executor`` (psij's local one) start jobs of the default launcher with this
    script; False, leaving psij's own, where its launcher log is on or this psij differs."""
    try:
        from psij.launchers.script_based_launcher import ScriptBasedLauncher
        from psij.launchers.single import SingleLauncher
        config = executor.config
        if getattr(config, "launcher_log_file", None) or not isinstance(executor._launchers, dict):
            return False
        work = Path(config.work_directory)
        work.mkdir(parents=True, exist_ok=True)
        script = work / NAME
        if not script.exists() or script.read_text() != SCRIPT:
            tmp = work / (NAME + ".%d.tmp" % os.getpid())
            tmp.write_text(SCRIPT)
            tmp.chmod(0o755)
            tmp.replace(script)

        class QuickSingleLauncher(SingleLauncher):
            def __init__(self, config: Any = None) -> None:
                ScriptBasedLauncher.__init__(self, script, config)

            def get_additional_args(self, job: Any) -> Any:
                with _exit_lock:
                    return [_exit_files.pop(job.id, "")]

        with executor._launchers_lock:
            executor._launchers["single"] = QuickSingleLauncher(config)
        return True
    except Exception as exc:        # another psij: its own launcher it is
        log.info("psij's own single launcher stays (%s: %s)", type(exc).__name__, exc)
        return False
