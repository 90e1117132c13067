"""Client side of the queue_info plugin: queues, nodes, jobs and allocations of a machine.

``qi = ec.get_plugin('queue_info'); qi.get_info(); qi.list_allocations(); qi.list_jobs('debug')``.
``user`` is a user name, ``"*"`` for everyone, or None for the user the endpoint runs as;
``force=True`` skips the endpoint's 60 s cache. Imports nothing of the plugin.
"""
from typing import Any, Dict, List, Optional

from ..client import PluginClient

#: s a call may take: the endpoint may run a few scheduler commands, each with its own timeout
CALL_TIMEOUT = 120.0
#: ``user=ALL_USERS``: every user's jobs and allocations, and every queue
ALL_USERS = "*"


class QueueInfoClient(PluginClient):
    """A session with one endpoint's queue_info plugin (``get_plugin("queue_info")``)."""

    def _query(self, path: str, user: Optional[str] = None, force: bool = False) -> Dict[str, Any]:
        params = {}  # type: Dict[str, str]
        if user is not None:
            params["user"] = user
        if force:
            params["force"] = "true"
        return self.get(path, params=params or None, timeout=CALL_TIMEOUT)

    def backend(self) -> str:
        """``slurm``, ``pbs`` or ``none``."""
        return self.get("backend")["backend"]

    def get_info(self, user: Optional[str] = None, force: bool = False) -> Dict[str, Any]:
        """``{"queues": {name: {state, default, usable, time_limit_s, nodes: {total, available,
        idle}, cpus_per_node, memory_per_node_mb, gpus_per_node, features, ...}}, ...}``: the
        queues ``user`` may use (every queue with ``user="*"``)."""
        return self._query("get_info/%s" % self.sid, user, force)

    def list_jobs(self, queue: str, user: Optional[str] = None, force: bool = False) -> List[Dict[str, Any]]:
        """The queued and running jobs in ``queue`` (the endpoint user's, or ``user``'s)."""
        return self._query("list_jobs/%s/%s" % (self.sid, _segment(queue)), user, force)["jobs"]

    def list_all_jobs(self, user: Optional[str] = None, force: bool = False) -> List[Dict[str, Any]]:
        """The queued and running jobs in every queue."""
        return self._query("list_all_jobs/%s" % self.sid, user, force)["jobs"]

    def list_allocations(self, user: Optional[str] = None, force: bool = False) -> List[Dict[str, Any]]:
        """The accounts (associations) a user may charge, with QOS, fairshare and limits."""
        return self._query("list_allocations/%s" % self.sid, user, force)["allocations"]

    def cancel_job(self, job_id: str) -> Dict[str, Any]:
        """Cancel a job: NotFound for an unknown one, Conflict when it has already ended,
        Forbidden when the scheduler refuses (another user's job)."""
        return self.post("cancel/%s/%s" % (self.sid, _segment(str(job_id))), timeout=CALL_TIMEOUT)

    def job_allocation(self) -> Optional[Dict[str, Any]]:
        """The batch job the endpoint runs in (job id, nodes, CPUs, GPUs...), None outside one."""
        return self.get("job_allocation", timeout=CALL_TIMEOUT)["allocation"]

    def nodelist(self, force: bool = False) -> List[Dict[str, Any]]:
        """Every node of the machine with its state, partitions, CPUs, memory, GPUs, features."""
        return self._query("nodelist", None, force)["nodes"]


def _segment(value: str) -> str:
    from urllib.parse import quote
    return quote(value, safe="")
