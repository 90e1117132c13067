"""Running an external command that must never hang its caller.

The command runs in its own process group in the C locale (so its words and numbers parse
the same everywhere), with a timeout; on timeout the whole group is killed, so a wrapper
script whose children keep the output pipe open cannot block the caller either. The
plugins that ask a host's tools (sysinfo's probes, queue_info's scheduler commands) use it.
"""
import logging
import os
import shutil
import signal
import subprocess
from typing import List, NamedTuple

log = logging.getLogger("radical_orbit.command")

#: Tools run in the C locale so that labels and numbers parse the same everywhere.
COMMAND_LOCALE = "C"
#: Seconds to wait for a killed command's pipes to close before giving up on them.
REAP_TIMEOUT = 1.0


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


class NotOnPath(OSError):
    """The command is not installed (not on PATH)."""


def run_bounded(argv: List[str], timeout: float, stderr: bool = True, c_locale: bool = True) -> Result:
    """Run ``argv`` for at most ``timeout`` s. NotOnPath when it is missing, OSError when
    it cannot start, ``subprocess.TimeoutExpired`` (its group killed) when it takes longer;
    ``stderr=False`` discards what it writes there; ``c_locale=False`` keeps the caller's
    locale (for ``sbatch``, whose environment the job inherits)."""
    binary = shutil.which(argv[0])
    if binary is None:
        raise NotOnPath("%s is not installed on this host" % argv[0])
    proc = subprocess.Popen([binary] + list(argv[1:]), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE if stderr else subprocess.DEVNULL,
                            encoding="utf-8", errors="replace", start_new_session=True,
                            env=dict(os.environ, LC_ALL=COMMAND_LOCALE) if c_locale else None)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise
    return Result(proc.returncode, out, err or "")


def kill_group(proc: "subprocess.Popen[str]") -> None:
    """Kill the command's whole process group and release its pipes without blocking."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.communicate(timeout=REAP_TIMEOUT)
    except (subprocess.TimeoutExpired, ValueError):
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    try:
        proc.wait(timeout=REAP_TIMEOUT)
    except subprocess.TimeoutExpired:
        log.warning("process %d did not die after SIGKILL", proc.pid)
