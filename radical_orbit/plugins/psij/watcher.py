"""From psij's status callbacks to ``job_status`` notifications, once per transition.

psij calls back on its own threads (the submitting worker, the local reaper, a batch
executor's poll thread). Each status is turned into ORBIT's view (a cancel the scheduler
reports as COMPLETED or FAILED is CANCELED), recorded in the store only if it moves the
job forward, together with its notification, and then published on the store's durable
stream (radical_orbit.plugin.DurableNotes: resent after a restart until the bridge has it);
one lock keeps the notifications in order across those threads. Listeners (the launch
routes) see the same transitions.

``RADICAL_ORBIT_TEST_KILL_AFTER_RECORD=<state>`` (tests only): the process kills itself
with SIGKILL right after a transition to ``<state>`` is committed, before it is sent
(``<state>:sent``: right after it is handed to the endpoint, before any acknowledgement).
"""
import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from . import output, quicklaunch
from .store import TERMINAL, JobStore

log = logging.getLogger("radical_orbit.plugins.psij")

TOPIC = "job_status"
#: test-only fault point (see above)
KILL_AFTER_RECORD = "RADICAL_ORBIT_TEST_KILL_AFTER_RECORD"


def describe(record: Dict[str, Any]) -> Dict[str, Any]:
    """A job as routes and notifications show it."""
    return {"job_id": record["job_id"], "native_id": record["native_id"], "executor": record["executor"],
            "state": record["state"], "exit_code": record["exit_code"], "message": record["message"],
            "created": record["created"], "updated": record["updated"],
            "cancel_requested": record["cancel_requested"], "history": record["history"],
            "executable": record["spec"].get("executable"), "name": record["spec"].get("name")}


class Watcher:
    def __init__(self, store: JobStore, notes: Any, tail_bytes: int = output.TAIL_BYTES,
                 exit_path: Optional[Callable[[str], str]] = None):
        """``notes``: the store's open durable stream (radical_orbit.plugin.DurableNotes);
        ``exit_path(job_id)``: where a local job's launcher records its exit code."""
        self.store = store
        self.exit_path = exit_path
        self.notes = notes
        self.tail_bytes = tail_bytes
        self._lock = threading.Lock()
        #: psij job id -> ORBIT job id, for every job a callback may come for
        self._ids: Dict[str, str] = {}
        self._listeners: List[Callable[[Dict[str, Any]], None]] = []
        #: local jobs attached after a restart: psij reports exit code 0 whatever it was,
        #: so their end is told by the exit code their launcher recorded
        self.exit_unknown: set = set()

    def track(self, psij_job: Any, job_id: str) -> None:
        with self._lock:
            self._ids[psij_job.id] = job_id

    def add_listener(self, listener: Callable[[Dict[str, Any]], None]) -> None:
        """``listener(job)`` after each published transition (on psij's thread: keep it short)."""
        self._listeners.append(listener)

    def on_status(self, psij_job: Any, status: Any) -> None:
        """psij's callback; never raises (it would end psij's poll thread)."""
        try:
            job_id = self._ids.get(psij_job.id)
            if job_id is None:
                return
            native = psij_job.native_id
            native = str(native) if native is not None and status.state.name == "QUEUED" else None
            if self.advance(job_id, status.state.name, status.exit_code, status.message,
                            status.time or time.time(), native) is None and native is not None:
                self.store.set_native(job_id, native)
            if status.state.final:
                with self._lock:
                    self._ids.pop(psij_job.id, None)
        except Exception:
            log.exception("job status callback failed for psij job %s", getattr(psij_job, "id", "?"))

    def advance(self, job_id: str, state: str, exit_code: Optional[int], message: Optional[str],
                when: float, native: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """Record and publish a transition unless the job is already there or past it
        (``native``: the native id psij reports with it, recorded in the same commit)."""
        with self._lock:
            current = self.store.get(job_id)
            if current is None:
                return None
            if state in TERMINAL and state != "CANCELED" and current["cancel_requested"]:
                message = "canceled (the scheduler reported %s%s)" % (
                    state, "" if exit_code is None else ", exit code %s" % exit_code)
                state = "CANCELED"
            if state == "NEW":
                return None
            if state in TERMINAL and job_id in self.exit_unknown:
                self.exit_unknown.discard(job_id)
                if state != "CANCELED":
                    exit_code = quicklaunch.read_exit(self.exit_path(job_id)) if self.exit_path else None
                    if exit_code is None:
                        message = "re-attached after the endpoint restarted: the exit code is not known"
                    else:
                        state = "COMPLETED" if exit_code == 0 else "FAILED"
                        message = None
            # psij stamps some states with when it saw them, others with when it made them up
            # (an ACTIVE it never polled, before COMPLETED): the history must not go backwards
            started = None
            if native is not None and current["native_id"] is None:
                started = process_started(current["executor"], native)
            moved = self.store.advance(job_id, state, exit_code, message, max(when, current["updated"]),
                                       self._note, native, started)
            if moved is None:
                return None
            record, seq, topic, data = moved
            fault = os.environ.get(KILL_AFTER_RECORD)
            if fault == state:
                os.kill(os.getpid(), signal.SIGKILL)
            self.notes.send(seq, topic, data)
            if fault == state + ":sent":
                os.kill(os.getpid(), signal.SIGKILL)
        for listener in list(self._listeners):
            try:
                listener(record)
            except Exception:
                log.exception("job listener %r failed", listener)
        return record

    def _note(self, record: Dict[str, Any]) -> Any:
        """A transition's notification: the job, and on terminal states its output's tail."""
        data = describe(record)
        data.update(self.tails(record))
        return TOPIC, data

    def tails(self, record: Dict[str, Any]) -> Dict[str, str]:
        """A terminal job's ``stdout_tail`` and ``stderr_tail``, in its notification and in
        its status alike (``wait_job`` returns either); nothing for a job still going."""
        if record["state"] not in TERMINAL:
            return {}
        return {"stdout_tail": output.tail(record["stdout_path"], self.tail_bytes),
                "stderr_tail": output.tail(record["stderr_path"], self.tail_bytes)}


def process_started(executor: str, native: str) -> Optional[float]:
    """A local job's process start time: after a restart, a live pid with another start
    time is someone else's process."""
    if executor != "local":
        return None
    import psutil
    try:
        return psutil.Process(int(native)).create_time()
    except (psutil.Error, ValueError):
        return None
