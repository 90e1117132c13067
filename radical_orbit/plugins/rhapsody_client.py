"""Client side of the rhapsody plugin: submit tasks, wait for them, get their results.

Imports nothing of the plugin and needs no rhapsody (it runs on Python 3.8 too): Python
functions are pickled here with cloudpickle and their return values and exceptions
unpickled here, so they keep their type. Calls use msgpack bodies (no base64), large
batches go in pieces, and ``wait_tasks`` is driven by the plugin's ``task_status``
notifications, with a poll of ``wait`` when none arrive.
"""
import pickle
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import cloudpickle
import msgpack

from ..client import EndpointClient, PluginClient, seconds
from ..errors import BadRequest, OrbitError, Timeout

#: This client's Python, ``major.minor``: pickled functions only travel to the same one.
PYTHON = "%d.%d" % sys.version_info[:2]
MSGPACK = "application/msgpack"
TERMINAL = frozenset(("DONE", "FAILED", "CANCELED"))
#: Tasks per ``submit`` call, and the body size (bytes) at which a batch is cut short.
BATCH = 5000
BATCH_BYTES = 8 * 2**20
#: uids per ``wait`` call when fetching results.
FETCH = 5000
#: Seconds without a notification after which ``wait_tasks`` asks the endpoint itself.
POLL_INTERVAL = 1.0
#: Seconds one such poll may wait on the endpoint (it holds one of its workers).
POLL_WAIT = 1.0
#: Seconds a new session may take to start its backend.
READY_TIMEOUT = 60.0


class TaskFailed(Exception):
    """A task failed with an exception that cannot be rebuilt here (its type does not
    unpickle), or an executable exited non-zero, or the task was cancelled."""

    def __init__(self, uid: str, type_name: str, message: str, traceback: str = "",
                 record: Optional[Dict[str, Any]] = None):
        super().__init__("task %s: %s: %s" % (uid, type_name, message))
        self.uid = uid
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        self.record = record


class TaskResult(dict):
    """One finished task as the endpoint reported it: ``uid``, ``state``, ``exit_code``,
    ``stdout``/``stderr`` (executables), ``return_value`` (functions, unpickled) and
    ``exception`` (``type``, ``message``, ``traceback``)."""

    @property
    def uid(self) -> str:
        return self["uid"]

    @property
    def state(self) -> str:
        return self["state"]

    @property
    def ok(self) -> bool:
        return self.get("state") == "DONE" and self.get("exit_code") in (0, None)

    def result(self) -> Any:
        """A function's return value, an executable's stdout; raises what the task raised
        (its own exception type where that unpickles here, else ``TaskFailed``)."""
        if self.ok:
            return self.get("return_value") if self.get("kind") == "function" else self.get("stdout")
        error = self.get("exception")
        if error:
            raise rebuild_exception(self.uid, error)
        if self.get("state") == "CANCELED":
            raise TaskFailed(self.uid, "Cancelled", "the task was cancelled", record=self)
        raise TaskFailed(self.uid, "ExitCode", "exited with %s: %s"
                         % (self.get("exit_code"), (self.get("stderr") or "").strip()[-2000:]), record=self)


def function_task(function: Callable[..., Any], args: Sequence[Any] = (), kwargs: Optional[Dict[str, Any]] = None,
                  uid: Optional[str] = None, name: Optional[str] = None,
                  backend_kwargs: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A Python function task: ``function(*args, **kwargs)`` runs on the endpoint."""
    return _drop_none({"function": function, "args": tuple(args), "kwargs": kwargs, "uid": uid,
                       "name": name, "backend_kwargs": backend_kwargs})


def executable_task(executable: str, arguments: Sequence[str] = (), cwd: Optional[str] = None,
                    env: Optional[Dict[str, str]] = None, shell: Optional[bool] = None,
                    uid: Optional[str] = None, name: Optional[str] = None,
                    backend_kwargs: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """An executable task; ``env``, when given, is the process's whole environment."""
    return _drop_none({"executable": executable, "arguments": list(arguments), "cwd": cwd, "env": env,
                       "shell": shell, "uid": uid, "name": name, "backend_kwargs": backend_kwargs})


class RhapsodyClient(PluginClient):
    """A rhapsody session. ``EndpointClient.get_plugin("rhapsody")`` gives one on the
    endpoint's default backend; ``RhapsodyClient(endpoint, "rhapsody", backend="dask",
    dask_scheduler="tcp://host:8786")`` chooses another."""

    def __init__(self, endpoint: EndpointClient, name: str, register: bool = True,
                 ready_timeout: float = READY_TIMEOUT, **options: Any):
        super().__init__(endpoint, name, register=False)
        self.session_info: Dict[str, Any] = {}
        self.state: Optional[str] = None
        self._cond = threading.Condition()
        self._finished: set = set()
        self._last_note = 0.0
        self._handle: Optional[int] = None
        if register:
            self.open_session(ready_timeout=ready_timeout, **options)

    # -- session -----------------------------------------------------------------------
    def open_session(self, ready_timeout: float = READY_TIMEOUT, **options: Any) -> Dict[str, Any]:
        """Register a session (options: ``backend``, ``dask_scheduler``, ``workers``,
        ``backend_kwargs``) and wait until its backend is ready. When it cannot start (or
        not in ``ready_timeout``), the session is closed again before the error is raised."""
        if self._handle is None:
            self._handle = self.endpoint.bridge.register_callback(
                self._on_note, endpoint_id=self.endpoint.name, plugin_name=self.name)
        try:
            self.session_info = self.post("register_session", json=_drop_none(options))
            self.sid = self.session_info["sid"]
            self.state = self.session_info.get("state")
            self.wait_ready(ready_timeout)
        except BaseException:
            self.close()
            raise
        return self.session_info

    @property
    def python_version(self) -> str:
        """The endpoint's Python (as sysinfo's ``host_role()["python_version"]``)."""
        return self.session_info.get("python_version", "")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until the backend is ready: on its ``session_status`` notification, or polled."""
        deadline = time.monotonic() + seconds("ready timeout", timeout)
        while True:
            with self._cond:
                if self.state in ("ready", "failed"):
                    break
                self._cond.wait(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
            if self.state not in ("ready", "failed"):
                stats = self.statistics()
                self.state = stats["state"]
                if stats.get("error"):
                    self.session_info["error"] = stats["error"]
            if self.state in ("ready", "failed"):
                break
            if time.monotonic() >= deadline:
                raise Timeout("session %s not ready after %.0f s" % (self.sid, timeout))
        if self.state == "failed":
            raise OrbitError("session %s: %s" % (self.sid, self.session_info.get("error")
                                                  or self.statistics().get("error")), 502)

    def _on_note(self, endpoint: str, plugin: str, topic: str, data: Any) -> None:
        if not isinstance(data, dict) or data.get("sid") != self.sid:
            return
        with self._cond:
            if topic == "session_status":
                self.state = data.get("state")
                if data.get("error"):
                    self.session_info["error"] = data["error"]
            elif topic == "task_status":
                tasks = data.get("tasks") or {}
                self._finished.update(uid for uid, state in tasks.items() if state in TERMINAL)
                self._last_note = time.monotonic()
            else:
                return
            self._cond.notify_all()

    def close(self) -> None:
        if self._handle is not None:
            self.endpoint.bridge.unregister_callback(self._handle)
            self._handle = None
        super().close()

    # -- tasks -------------------------------------------------------------------------
    def submit_tasks(self, tasks: Iterable[Dict[str, Any]], batch_size: int = BATCH) -> List[str]:
        """Submit task descriptions (``function_task``/``executable_task`` or dicts with
        the same keys); returns their uids in order. Functions are pickled here."""
        tasks = list(tasks)
        pickles: Dict[int, bytes] = {}
        uids: List[str] = []
        batch: List[Dict[str, Any]] = []
        size = 0
        for task in tasks:
            packed = self._pack(task, pickles)
            batch.append(packed)
            size += sum(len(v) for v in packed.values() if isinstance(v, bytes)) + 64
            if len(batch) >= batch_size or size >= BATCH_BYTES:
                uids.extend(self._send({"tasks": batch}))
                batch, size = [], 0
        if batch:
            uids.extend(self._send({"tasks": batch}))
        return uids

    def submit_function_batch(self, function: Callable[..., Any], args_list: Iterable[Sequence[Any]],
                              batch_size: int = BATCH) -> List[str]:
        """The compact form: one task ``function(*args)`` per item of ``args_list``; the
        function is pickled once and each batch's arguments in one pickle."""
        self._check_python()
        template = {"function": cloudpickle.dumps(function)}
        args_list = [tuple(a) for a in args_list]
        uids: List[str] = []
        for start in range(0, len(args_list), batch_size):
            piece = args_list[start:start + batch_size]
            uids.extend(self._send({"template": template, "args_list": _dumps(piece)}))
        return uids

    def _pack(self, task: Dict[str, Any], pickles: Dict[int, bytes]) -> Dict[str, Any]:
        out = dict(task)
        function = out.get("function")
        if function is not None and not isinstance(function, bytes):
            self._check_python()
            key = id(function)
            if key not in pickles:
                pickles[key] = cloudpickle.dumps(function)
            out["function"] = pickles[key]
            out["args"] = _dumps(tuple(out.get("args") or ()))
            if out.get("kwargs"):
                out["kwargs"] = _dumps(dict(out["kwargs"]))
            else:
                out.pop("kwargs", None)
        return out

    def _check_python(self) -> None:
        theirs = ".".join(self.python_version.split(".")[:2])
        if theirs and theirs != PYTHON:
            raise BadRequest("Python version mismatch: this client runs Python %s, endpoint %s runs "
                             "Python %s; pickled functions only travel between the same minor version. "
                             "Use a Python %s client, or executable tasks"
                             % (PYTHON, self.endpoint.name, self.python_version, theirs))

    def _send(self, body: Dict[str, Any]) -> List[str]:
        body["python"] = PYTHON
        return self._call("submit/%s" % self.sid, body)["uids"]

    def _call(self, path: str, body: Any = None, method: str = "POST", timeout: Optional[float] = None) -> Any:
        data = msgpack.packb(body, use_bin_type=True) if body is not None else None
        raw = self.request(method, path, data=data, raw=True, timeout=timeout,
                           headers={"Content-Type": MSGPACK, "Accept": MSGPACK})
        return msgpack.unpackb(raw, raw=False)

    def wait_tasks(self, uids: Iterable[str], timeout: Optional[float] = None) -> List[TaskResult]:
        """The results of ``uids``, in order, once all have finished; ``Timeout`` after
        ``timeout`` s (None: no limit). Failed tasks are returned, not raised: call
        ``result()`` on one to get its value or its exception."""
        uids = list(uids)
        remaining = set(uids)
        results: Dict[str, TaskResult] = {}
        limit = seconds("wait_tasks timeout", timeout, optional=True)
        deadline = None if limit is None else time.monotonic() + limit
        last_progress = time.monotonic()
        while remaining:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise Timeout("%d of %d tasks not finished after %.0f s" % (len(remaining), len(uids), timeout))
            with self._cond:
                ready = remaining & self._finished
                if not ready:
                    self._cond.wait(POLL_INTERVAL if left is None else min(POLL_INTERVAL, left))
                    ready = remaining & self._finished
            now = time.monotonic()
            if ready:
                got = self._fetch(sorted(ready), 0)
            elif now - max(last_progress, self._last_note) >= POLL_INTERVAL:
                got = self._fetch(sorted(remaining), POLL_WAIT if left is None else min(POLL_WAIT, left))
            else:
                continue
            if got:
                last_progress = now
            for result in got:
                results[result.uid] = result
            remaining.difference_update(results)
            with self._cond:
                self._finished.difference_update(results)
        return [results[uid] for uid in uids]

    def _fetch(self, uids: List[str], wait: float) -> List[TaskResult]:
        """The finished records among ``uids``; an answer that ``held`` some back (it
        reached the endpoint's ``max_answer_bytes``) is followed by another at once."""
        out: List[TaskResult] = []
        for start in range(0, len(uids), FETCH):
            chunk = uids[start:start + FETCH]
            while chunk:
                answer = self._call("wait/%s" % self.sid, {"uids": chunk, "timeout": wait},
                                    timeout=wait + self.endpoint.bridge.timeout)
                out.extend(_result(record) for record in answer["done"])
                wait = 0
                chunk = answer["pending"] if answer.get("held") else []
        return out

    def get_task(self, uid: str) -> TaskResult:
        """One task's record, finished or not (``return_value`` only once it is done)."""
        return _result(self._call("task/%s/%s" % (self.sid, uid), method="GET"))

    def list_tasks(self, state: Optional[str] = None, offset: int = 0, limit: int = 1000) -> Dict[str, Any]:
        """``{"tasks": [{uid, name, kind, state, exit_code, created, finished}], "total", "offset"}``."""
        params = _drop_none({"state": state, "offset": offset, "limit": limit})
        return self.get("list_tasks/%s" % self.sid, params=params)

    def cancel_task(self, uid: str) -> Dict[str, Any]:
        """``{"uid", "cancelled": bool, "state"}``; a finished task is left as it is."""
        return self.post("cancel/%s/%s" % (self.sid, uid))

    def cancel_all_tasks(self) -> int:
        """Cancel every unfinished task of the session; how many were cancelled."""
        return self.post("cancel_all/%s" % self.sid)["cancelled"]

    def statistics(self) -> Dict[str, Any]:
        """State counts, totals, the backend and its state, tasks per second."""
        return self.get("statistics/%s" % self.sid)

    def map(self, function: Callable[..., Any], iterable: Iterable[Any], timeout: Optional[float] = None,
            batch_size: int = BATCH) -> List[Any]:
        """``[function(x) for x in iterable]``, run on the endpoint, results in order; the
        first failure (in order) is raised as its own exception type."""
        uids = self.submit_function_batch(function, [(x,) for x in iterable], batch_size)
        return [r.result() for r in self.wait_tasks(uids, timeout)]


def rebuild_exception(uid: str, error: Dict[str, Any]) -> BaseException:
    """The task's own exception where it unpickles here (with the remote traceback as a
    note on Python 3.11+), else ``TaskFailed`` with type, message and traceback."""
    data = error.get("pickle")
    if data:
        try:
            exc = pickle.loads(data)
        except Exception:
            exc = None
        if isinstance(exc, BaseException):
            text = error.get("traceback") or ""
            try:
                exc.orbit_traceback = text  # type: ignore[attr-defined]
            except Exception:
                pass
            add_note = getattr(exc, "add_note", None)
            if add_note is not None and text:
                add_note("remote traceback (task %s):\n%s" % (uid, text.rstrip()))
            return exc
    return TaskFailed(uid, error.get("type", "Exception"), error.get("message", ""), error.get("traceback", ""))


def _result(record: Dict[str, Any]) -> TaskResult:
    result = TaskResult(record)
    value = result.get("return_value")
    if isinstance(value, bytes):
        try:
            result["return_value"] = pickle.loads(value)
        except Exception as exc:
            result["state"] = "FAILED"
            result["exception"] = {"type": "UnpicklingError", "pickle": None, "traceback": "",
                                   "message": "the return value does not unpickle here: %s: %s"
                                              % (type(exc).__name__, exc)}
    return result


def _dumps(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _drop_none(values: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


__all__ = ["RhapsodyClient", "TaskResult", "TaskFailed", "function_task", "executable_task"]
