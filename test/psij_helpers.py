"""Shared by the psij tests: an ORBIT with psij on the bridge and on an endpoint, and a
collector of ``job_status`` notifications as they arrive over SSE."""
import os
import subprocess
import threading
from typing import Any, Dict, List

import pytest

from orbit_procs import Orbit, wait_for

from radical_orbit import BridgeClient

TERMINAL = ("COMPLETED", "FAILED", "CANCELED")
#: the queue poll interval the tests give the endpoint's batch executors
POLL = 0.5


class JobNotes:
    """Every ``job_status`` notification, by job id, in arrival order."""

    def __init__(self, bc: BridgeClient, endpoint: str):
        self.by_job: Dict[str, List[Dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.handle = bc.register_callback(self._on, endpoint_id=endpoint, plugin_name="psij",
                                           topic="job_status")
        wait_for(lambda: bc._listener().connected.is_set(), 20, "the event stream")

    def _on(self, endpoint: str, plugin: str, topic: str, data: Any) -> None:
        with self._lock:
            self.by_job.setdefault(data["job_id"], []).append(data)

    def states(self, job_id: str) -> List[str]:
        with self._lock:
            return [n["state"] for n in self.by_job.get(job_id, [])]

    def final(self, job_id: str, timeout: float = 30.0) -> Dict[str, Any]:
        def ended():
            with self._lock:
                ends = [n for n in self.by_job.get(job_id, []) if n["state"] in TERMINAL]
            return ends[0] if ends else None
        return wait_for(ended, timeout, "the terminal job_status of %s" % job_id, interval=0.01)


def start_orbit(home: str, endpoint: str = "ep") -> Orbit:
    """A TLS bridge with auth (hosting psij by default) and an endpoint ``endpoint`` with psij."""
    orbit = Orbit(home, tls=True)
    orbit.start_bridge()
    start_endpoint(orbit, endpoint)
    return orbit


def start_endpoint(orbit: Orbit, name: str, wait: bool = True, **env: str):
    return orbit.start_endpoint(name, "-p", "psij", "--plugin-config",
                                'psij={"poll_interval": %s}' % POLL, wait=wait, **env)


def client(orbit: Orbit) -> BridgeClient:
    return BridgeClient(url=orbit.url, token=orbit.token, cert=orbit.tls["cert"] if orbit.tls else None)


def state_dir(orbit: Orbit, endpoint: str) -> str:
    return os.path.join(orbit.home, "psij", endpoint, "psij")


# Module-scoped fixtures of the psij test modules, over each module's own ``orbit`` fixture.
@pytest.fixture(scope="module")
def bc(orbit):
    with client(orbit) as c:
        yield c


@pytest.fixture(scope="module")
def notes(bc):
    return JobNotes(bc, "ep")


@pytest.fixture(scope="module")
def pi(bc):
    with bc.get_endpoint_client("ep").get_plugin("psij") as p:
        yield p


def silent_notes(stream, acked, on_acked, read=None):
    """``open_notes`` for a JobManager run in the test's process: notifications go nowhere."""
    from radical_orbit.plugin import DurableNotes
    return DurableNotes(lambda topic, data: None, on_acked)


def job_manager(state: str, **settings: Any):
    """A psij JobManager in the test's process, its notifications going nowhere."""
    from radical_orbit.plugins.psij.jobs import JobManager
    return JobManager(state, silent_notes, **settings)


def detached_sleep() -> int:
    """The pid of a ``sleep 30`` that is not this process's child (as a job of an earlier
    endpoint run is not): psij alone reaps it."""
    return int(subprocess.check_output(["/bin/sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"]))


def process_gone(pid: int) -> bool:
    """True once ``pid`` has ended (a zombie counts: its reaper is another process)."""
    import psutil
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True
