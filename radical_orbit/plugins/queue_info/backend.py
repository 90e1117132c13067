"""What every queue_info backend offers, and the ``none`` backend for hosts without a
scheduler. Backends return plain records (see ``slurm_parse``); ``views`` turns them into
the routes' answers, the same way for every scheduler."""
import os
from typing import Any, Dict, List, Mapping, Optional

from ...errors import NotFound
from .commands import Commands

Record = Dict[str, Any]


class Backend:
    """A scheduler as queue_info sees it. Each method runs the scheduler's commands (no
    caching here: the plugin caches) and raises the ``commands`` errors on failure."""

    name = "none"

    def __init__(self, commands: Optional[Commands] = None):
        self.commands = commands or Commands()

    def partitions(self) -> List[Record]:
        return []

    def nodes(self) -> List[Record]:
        return []

    def jobs(self) -> List[Record]:
        return []

    def associations(self) -> List[Record]:
        return []

    def cancel(self, job_id: str) -> Record:
        raise NotFound("no batch scheduler on this host: no job %s" % job_id)

    def job_allocation(self, environ: Optional[Mapping[str, str]] = None) -> Optional[Record]:
        """The allocation of the batch job this process runs in, or None outside one."""
        return None

    def valid_job_id(self, job_id: str) -> bool:
        return False


class NoneBackend(Backend):
    """No scheduler here: empty answers, so that pages and scripts work unchanged."""


def env_int(environ: Mapping[str, str], *names: str) -> Optional[int]:
    for name in names:
        raw = (environ.get(name) or "").strip()
        digits = raw.split("(")[0].split(",")[0]
        if digits.isdigit():
            return int(digits)
    return None


def environment(environ: Optional[Mapping[str, str]]) -> Mapping[str, str]:
    return os.environ if environ is None else environ
