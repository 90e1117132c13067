"""Running external probe commands (nvidia-smi, rocm-smi, lspci, lscpu) safely.

A probe must never hang the plugin: each command runs in its own process group
with a timeout, and on timeout the whole group is killed, so a wrapper script
whose children keep the output pipe open cannot block us either.
"""
import logging
import os
import shutil
import signal
import subprocess
from typing import List, Optional

log = logging.getLogger("radical_orbit.plugins.sysinfo")

#: Seconds an external probe command may run before it is killed.
COMMAND_TIMEOUT = 10.0
#: Tools run in the C locale so that labels and numbers parse the same everywhere.
COMMAND_LOCALE = "C"
#: Seconds to wait for a killed command's pipes to close before giving up on them.
REAP_TIMEOUT = 1.0


def run_command(argv: List[str], timeout: float = COMMAND_TIMEOUT) -> Optional[str]:
    """The standard output of ``argv``, or None when the binary is missing, fails or times out.

    None is the normal answer on a machine without that tool: callers treat it as
    "nothing of that kind here", never as an error.
    """
    binary = shutil.which(argv[0])
    if binary is None:
        return None
    try:
        proc = subprocess.Popen([binary] + list(argv[1:]), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                encoding="utf-8", errors="replace", start_new_session=True,
                                env=dict(os.environ, LC_ALL=COMMAND_LOCALE))
    except OSError as exc:
        log.debug("cannot run %s: %s", argv[0], exc)
        return None
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not answer within %.1f s; killed", argv[0], timeout)
        _kill(proc)
        return None
    if proc.returncode != 0:
        log.debug("%s exited with %s", argv[0], proc.returncode)
        return None
    return out


def _kill(proc: "subprocess.Popen[str]") -> None:
    """Kill the command's whole process group and release its pipes without blocking."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.communicate(timeout=REAP_TIMEOUT)
    except subprocess.TimeoutExpired:
        if proc.stdout is not None:
            proc.stdout.close()
    try:
        proc.wait(timeout=REAP_TIMEOUT)
    except subprocess.TimeoutExpired:
        log.warning("process %d did not die after SIGKILL", proc.pid)


def read_text(path: str) -> str:
    """A sysfs-style file's stripped text; "" when it is missing or unreadable."""
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return ""
