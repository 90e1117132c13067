"""Client side of the psij plugin; imports nothing of the plugin (no psij needed).

``submit_job`` always sends a fresh submit key and, when the answer is lost (the bridge or
the endpoint went away, a timeout), sends the same submit again with the same key: the
endpoint returns the job of the first one, so a retry never runs a job twice.
"""
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

from ..client import PluginClient, seconds
from ..errors import Gone, NotFound, Timeout, Unavailable

TERMINAL = ("COMPLETED", "FAILED", "CANCELED")
#: how often a lost submit answer is retried, and the first pause between tries (doubling)
SUBMIT_TRIES = 5
RETRY_PAUSE = 0.5
#: seconds between two status polls while ``wait_job`` also listens for notifications
WAIT_POLL = 5.0
#: the shortest poll interval ``wait_job`` accepts
MIN_POLL = 0.1
#: seconds ``wait_job`` waits for the event stream to connect before relying on polls
STREAM_CONNECT_WAIT = 5.0


class PSIJClient(PluginClient):
    def submit_job(self, job_spec: Dict[str, Any], executor: Optional[str] = None,
                   key: Optional[str] = None) -> Dict[str, Any]:
        """Submit ``job_spec``; returns the job (``job_id``, ``native_id``, ``state``, ...).
        ``executor``: ``local``, ``slurm``, ``pbs``, ``lsf``, ``flux`` (default: the
        endpoint's default, ``local``)."""
        body: Dict[str, Any] = {"job_spec": job_spec, "key": key or uuid.uuid4().hex}
        if executor:
            body["executor"] = executor
        pause = RETRY_PAUSE
        for attempt in range(SUBMIT_TRIES):
            try:
                return self._session_call("POST", "submit/%s", json=body)
            except (Unavailable, Timeout):
                if attempt == SUBMIT_TRIES - 1:
                    raise
                time.sleep(pause)
                pause *= 2
        raise AssertionError("unreachable")

    def get_job_status(self, job_id: str, stdout_offset: int = 0, stderr_offset: int = 0) -> Dict[str, Any]:
        """The job with its output from the given byte offsets: ``stdout``/``stderr`` are
        ``{"data", "offset", "size", "more"}``; pass ``offset`` back to read on."""
        return self._session_call("GET", "status/%s/" + job_id,
                                  params={"stdout_offset": stdout_offset, "stderr_offset": stderr_offset})

    def list_jobs(self) -> List[Dict[str, Any]]:
        """Every job the endpoint recorded, newest first (they outlive sessions and restarts)."""
        return self._session_call("GET", "list_jobs/%s")["jobs"]

    def cancel_job(self, job_id: str) -> Dict[str, Any]:
        return self._session_call("POST", "cancel/%s/" + job_id)

    def executors(self) -> Dict[str, Any]:
        """``{"executors": [...], "default": name}``."""
        return self.request("GET", "executors")

    def wait_job(self, job_id: str, timeout: float = 3600.0, poll: float = WAIT_POLL) -> Dict[str, Any]:
        """Block until the job ends; returns its terminal status. Driven by the ``job_status``
        notifications, with a status poll every ``poll`` s, so it ends even when the event
        stream was cut. Raises the Timeout kind after ``timeout`` s (ValueError for a
        ``timeout`` that is not a number of seconds, NaN included); ``poll`` is at least
        MIN_POLL s, so a zero or negative one cannot flood the endpoint with status calls."""
        seconds("wait_job timeout", timeout)
        poll = max(float(poll), MIN_POLL) if poll == poll else WAIT_POLL
        done = threading.Event()
        final: Dict[str, Any] = {}

        def on_note(endpoint: str, plugin: str, topic: str, data: Any) -> None:
            if isinstance(data, dict) and data.get("job_id") == job_id and data.get("state") in TERMINAL:
                final.update(data)
                done.set()

        bridge = self.endpoint.bridge
        handle = bridge.register_callback(on_note, endpoint_id=self.endpoint.name, plugin_name=self.name,
                                          topic="job_status")
        deadline = time.monotonic() + timeout
        try:
            bridge._listener().connected.wait(min(STREAM_CONNECT_WAIT, timeout))
            while True:
                if not done.is_set():
                    status = self.get_job_status(job_id)
                    if status["state"] in TERMINAL:
                        return status
                left = deadline - time.monotonic()
                if done.is_set() or done.wait(max(0.0, min(poll, left))):
                    return dict(final)
                if time.monotonic() >= deadline:
                    raise Timeout("job %s did not end within %.0f s" % (job_id, timeout))
        finally:
            bridge.unregister_callback(handle)

    # -- child endpoints as batch jobs (the launch routes) -----------------------------
    def submit_tunneled(self, executor: Optional[str] = None, attributes: Optional[Dict[str, Any]] = None,
                        name: Optional[str] = None, plugins: str = "default", tunnel: str = "none",
                        timeout: Optional[float] = None, setup: Optional[str] = None,
                        environment: Optional[Dict[str, str]] = None, **tunnel_options: str) -> Dict[str, Any]:
        """Start a child endpoint (``name``, default ``<endpoint>.<n>``) as a batch job and
        return its launch (``name``, ``state``, ``job_id``, ...). ``attributes`` as in a
        job_spec (queue_name, account, duration, node_count, ...); ``tunnel``: ``none``,
        ``forward`` (``tunnel_via=``, ``tunnel_identity=``) or ``reverse`` (``tunnel_node=``,
        ``tunnel_identity=``); ``timeout``: seconds the running job's child has to register
        before its job is cancelled; ``setup``: shell commands run first in the job
        (``module load ...``). Then ``bc.wait_for_endpoint(launch["name"])``."""
        body: Dict[str, Any] = {"plugins": plugins, "tunnel": tunnel}
        for key, value in (("executor", executor), ("attributes", attributes), ("name", name),
                           ("timeout", timeout), ("setup", setup), ("environment", environment)):
            if value is not None:
                body[key] = value
        body.update(tunnel_options)
        return self._session_call("POST", "submit_tunneled/%s", json=body)

    def tunnel_status(self, name: str) -> Dict[str, Any]:
        """A launch's ``state``: pending, starting, connected (``child``), failed (``reason``)
        or ended."""
        return self.request("GET", "tunnel_status/" + name)

    def _session_call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A session route (``path`` has ``%s`` for the sid). The endpoint forgets sessions
        when it restarts; jobs it remembers: a call whose session is unknown registers a
        new one and is sent once more."""
        try:
            return self.request(method, path % self.sid, **kwargs)
        except (NotFound, Gone) as exc:
            if not self.sid or self.sid not in getattr(exc, "detail", ""):
                raise
        self.sid = self.request("POST", "register_session")["sid"]
        return self.request(method, path % self.sid, **kwargs)

