"""Running external probe commands (nvidia-smi, rocm-smi, lspci, lscpu) safely.

A probe must never hang the plugin: ``radical_orbit.command.run_bounded`` runs each
in its own process group with a timeout and kills the group on timeout.
"""
import logging
import subprocess
from typing import List, Optional

from ...command import NotOnPath, run_bounded

log = logging.getLogger("radical_orbit.plugins.sysinfo")

#: Seconds an external probe command may run before it is killed.
COMMAND_TIMEOUT = 10.0


def run_command(argv: List[str], timeout: float = COMMAND_TIMEOUT) -> Optional[str]:
    """The standard output of ``argv``, or None when the binary is missing, fails or times out.

    None is the normal answer on a machine without that tool: callers treat it as
    "nothing of that kind here", never as an error.
    """
    try:
        result = run_bounded(argv, timeout, stderr=False)
    except NotOnPath:
        return None
    except OSError as exc:
        log.debug("cannot run %s: %s", argv[0], exc)
        return None
    except subprocess.TimeoutExpired:
        log.warning("%s did not answer within %.1f s; killed", argv[0], timeout)
        return None
    if result.returncode != 0:
        log.debug("%s exited with %s", argv[0], result.returncode)
        return None
    return result.stdout


def read_text(path: str) -> str:
    """A sysfs-style file's stripped text; "" when it is missing or unreadable."""
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return ""
