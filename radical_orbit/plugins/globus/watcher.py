"""The transfer watcher: one thread that polls the tasks submitted through the plugin
and publishes ``transfer_status`` each time one changes, until it ends.

One ``task_list`` call per session and round (the ids in a filter), so a hundred
watched transfers cost a call every ``poll_interval`` seconds, not a hundred. At most
``max_watched`` tasks are watched (the oldest goes first); a task leaves when it
succeeds or fails, with its session, and when Globus refuses the session's credentials
(401: an expired access token), which is logged once.
"""
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import document, globus_errors

TOPIC = "transfer_status"
TERMINAL = ("SUCCEEDED", "FAILED")
#: the task fields a notification carries (and whose change it reports)
FIELDS = ("task_id", "type", "status", "nice_status", "label", "source_endpoint_id",
          "destination_endpoint_id", "files", "files_transferred", "files_skipped",
          "bytes_transferred", "subtasks_total", "subtasks_succeeded", "subtasks_failed",
          "faults", "request_time", "completion_time", "is_ok")
#: task ids per task_list call
BATCH = 50
#: seconds between two log lines about the same failing session
LOG_EVERY = 60.0
STOP_JOIN_TIMEOUT = 5.0


def summary(task: Dict[str, Any]) -> Dict[str, Any]:
    """What ``transfer_status`` says about a task document."""
    return {name: task.get(name) for name in FIELDS}


class Watched:
    __slots__ = ("session", "last")

    def __init__(self, session: Any):
        self.session = session
        self.last: Optional[Dict[str, Any]] = None


class Watcher:
    """Owned by the plugin: ``start`` at load, ``stop`` with the plugin."""

    def __init__(self, notify: Callable[[str, Any], None], poll_interval: float, max_watched: int,
                 log: logging.Logger):
        self._notify = notify
        self.poll_interval = poll_interval
        self.max_watched = max_watched
        self.log = log
        self._tasks: "OrderedDict[str, Watched]" = OrderedDict()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._logged: Dict[str, float] = {}

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_JOIN_TIMEOUT)

    def watch(self, session: Any, task_id: str) -> None:
        """Watch ``task_id`` with ``session``'s client; polled at once."""
        if self.max_watched <= 0:
            return
        with self._lock:
            if task_id not in self._tasks:
                self._tasks[task_id] = Watched(session)
            while len(self._tasks) > self.max_watched:
                dropped, _ = self._tasks.popitem(last=False)
                self.log.warning("no longer watching Globus task %s: more than %d watched (max_watched)",
                                 dropped, self.max_watched)
        self._wake.set()

    def poke(self) -> None:
        """Poll now (after a cancel, say), not at the next interval."""
        self._wake.set()

    def forget(self, session: Any) -> None:
        with self._lock:
            for task_id in [t for t, w in self._tasks.items() if w.session is session]:
                del self._tasks[task_id]
            self._logged.pop(getattr(session, "sid", "?"), None)

    def watching(self) -> List[str]:
        with self._lock:
            return list(self._tasks)

    # -- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._round()
            except Exception:
                self.log.exception("the Globus transfer watcher failed a round")

    def _round(self) -> None:
        with self._lock:
            groups: Dict[int, Tuple[Any, List[str]]] = {}
            for task_id, watched in self._tasks.items():
                groups.setdefault(id(watched.session), (watched.session, []))[1].append(task_id)
        for session, ids in groups.values():
            for start in range(0, len(ids), BATCH):
                if self._stopping.is_set():
                    return
                self._poll(session, ids[start:start + BATCH])

    def _poll(self, session: Any, ids: List[str]) -> None:
        client = None
        try:
            client = session.transfer_client()
            with globus_errors():
                answer = client.task_list(limit=len(ids), filter={"task_id": ids})
            found = document(answer, "a task list", listing=True)["DATA"]
        except Exception as exc:
            if getattr(exc, "status_code", None) == 401:
                self._refused(session, client, exc)
            else:
                self._log_failure(session, exc)
            return
        for task in found:
            self._seen(task)

    def _seen(self, task: Dict[str, Any]) -> None:
        now = summary(task)
        task_id = now["task_id"]
        if not isinstance(task_id, str):
            return
        with self._lock:
            watched = self._tasks.get(task_id)
            if watched is None or watched.last == now:
                return
            watched.last = now
            if now["status"] in TERMINAL:
                del self._tasks[task_id]
        self._notify(TOPIC, now)

    def _refused(self, session: Any, client: Any, exc: Exception) -> None:
        """Globus answered 401 after the SDK tried what it could (a refresh, for the
        renewing forms): the credentials are dead (an expired plain access token), and
        polling again would only log the same refusal for ever. The session's tasks leave
        the watch, the session answers 401 saying what to do until it logs in again, and
        this is logged once."""
        detail = getattr(exc, "detail", None) or str(exc)
        with self._lock:
            ids = [t for t, w in self._tasks.items() if w.session is session]
            for task_id in ids:
                del self._tasks[task_id]
        refuse = getattr(session, "refuse", None)
        if client is not None and refuse is not None:
            refuse(client, detail)
        self.log.warning("Globus refused the credentials of session %s (%s): its %d watched task(s) "
                         "are no longer polled until it logs in again", getattr(session, "sid", "?"),
                         detail, len(ids))

    def _log_failure(self, session: Any, exc: Exception) -> None:
        key = getattr(session, "sid", "?")
        last = self._logged.get(key, 0.0)
        if time.monotonic() - last >= LOG_EVERY:
            self._logged[key] = time.monotonic()
            self.log.warning("polling Globus tasks of session %s failed: %s", key, exc)
