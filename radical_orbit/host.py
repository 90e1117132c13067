"""Facts about the machine a process runs on: its role in an HPC centre."""
import os
import platform
import shutil
import socket
import sys
from typing import Any, Dict, Optional

ROLES = ("bridge", "login", "compute", "standalone")

_JOB_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID", "COBALT_JOBID")
_SUBMIT_COMMANDS = ("sbatch", "qsub", "bsub", "flux")


def detect_role(environ: Optional[Dict[str, str]] = None) -> str:
    """compute inside a batch job, login where a batch scheduler's submit command
    exists, standalone otherwise (``bridge`` is given, never detected)."""
    env = os.environ if environ is None else environ
    if any(env.get(var) for var in _JOB_VARS):
        return "compute"
    if any(shutil.which(cmd, path=env.get("PATH")) for cmd in _SUBMIT_COMMANDS):
        return "login"
    return "standalone"


def scheduler_present(environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    env = os.environ if environ is None else environ
    for name, cmd in (("slurm", "sinfo"), ("pbs", "qstat")):
        if shutil.which(cmd, path=env.get("PATH")):
            return name
    return None


def host_facts(role: str) -> Dict[str, Any]:
    """What a plugin's ``is_enabled`` and sysinfo's ``host_role`` see."""
    return {
        "role": role,
        "hostname": socket.gethostname(),
        "fqdn": socket.getfqdn(),
        "scheduler": scheduler_present(),
        "in_job": any(os.environ.get(v) for v in _JOB_VARS),
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "pid": os.getpid(),
    }
