"""globus: the routes of Globus Transfer, over ``globus-sdk`` 4.

A session holds one user's Globus credentials (``credentials.py``), given at
``register_session`` or later at ``login/{sid}``; they live in this process's memory
only and go with the session. Transfers and deletes submitted here are watched by one
poller thread (``watcher.py``) that publishes ``transfer_status`` on each change.
Collections are Globus ids, or ``"local"`` for this machine's own (``local.py``).
Globus's errors map onto ORBIT's envelope in ``errors.py``; the route table is in
docs/plugins.md.
"""
import logging
import re
import threading
import time
from typing import Any, Dict, Optional

import globus_sdk

from ...errors import BadRequest, Unauthorized
from ...plugin import Plugin, PluginContext, PluginSession, Request, body_str, route
from . import documents, local
from .credentials import FORMS, Credentials
from .errors import document, globus_errors
from .settings import Settings
from .watcher import TERMINAL, Watcher

#: task and collection ids are UUIDs; anything else never reaches a Globus URL
_UUID = re.compile(r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
#: entries one ``ls`` returns at most (Globus's own maximum)
MAX_LS = 100000
#: tasks one ``tasks`` call lists at most (Globus's own page maximum)
MAX_TASKS = 1000
MAX_SEARCH = 100
TASK_STATUSES = ("ACTIVE", "INACTIVE", "SUCCEEDED", "FAILED")
#: what every task document of Globus has (``wait`` decides by ``status``)
TASK_KEYS = ("task_id", "status")
#: globus-sdk's own log records at this level and above join the endpoint's (redacted) log
SDK_LOG_LEVEL = logging.WARNING


class GlobusSession(PluginSession):
    """One client's Globus credentials and the TransferClient made from them."""

    def __init__(self, plugin: "GlobusPlugin", sid: str):
        super().__init__(plugin, sid)
        self.plugin: "GlobusPlugin" = plugin
        self._credentials: Optional[Credentials] = None
        self._client: Optional[globus_sdk.TransferClient] = None
        self._refused: Optional[str] = None     # why Globus refused the credentials (watcher)
        self._lock = threading.Lock()

    def login(self, credentials: Credentials, client: globus_sdk.TransferClient) -> None:
        with self._lock:
            old, self._credentials, self._client = self._credentials, credentials, client
            self._refused = None
        if old is not None:
            old.close()

    def transfer_client(self) -> globus_sdk.TransferClient:
        client, refused = self._client, self._refused
        if client is None:
            raise Unauthorized("globus session %s has no Globus credentials yet: POST login/%s with %s"
                               % (self.sid, self.sid, "; or ".join(FORMS)))
        if refused is not None:
            raise Unauthorized("globus session %s: Globus refused its credentials (%s); its transfers "
                               "are no longer watched: POST login/%s with new ones (%s)"
                               % (self.sid, refused, self.sid, "; or ".join(FORMS)))
        return client

    def refuse(self, client: globus_sdk.TransferClient, detail: str) -> None:
        """Globus answered 401 to ``client`` and no refresh helped: every call answers 401
        until new credentials log in (not if they already did)."""
        with self._lock:
            if self._client is client:
                self._refused = detail

    @property
    def auth(self) -> Optional[str]:
        credentials = self._credentials
        return credentials.kind if credentials is not None else None

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info["auth"] = self.auth
        return info

    def close(self) -> None:
        self.plugin.watcher.forget(self)
        with self._lock:
            credentials, self._credentials, self._client = self._credentials, None, None
        if credentials is not None:
            credentials.close()


class GlobusPlugin(Plugin):
    plugin_name = "globus"
    version = "1.0.0"
    session_class = GlobusSession
    ui_config = {"title": "Globus", "description": "Globus transfers: browse collections, submit, watch, cancel"}

    def __init__(self, name: str, context: PluginContext):
        super().__init__(name, context)
        self.settings = Settings(context.config)
        self.watcher = Watcher(self.notify, self.settings.poll_interval, self.settings.max_watched,
                               self.log)
        self._stopping = threading.Event()

    def start(self) -> None:
        _forward_sdk_logs()
        self.watcher.start("globus-watch-%s" % self.name)

    def stop(self) -> None:
        self._stopping.set()
        self.watcher.stop()
        super().stop()

    # -- sessions and credentials ---------------------------------------------------
    @route("POST", "register_session")
    def register_session(self, req: Request) -> Dict[str, Any]:
        """A session, with the credentials in the body if there are any (else give them
        later at ``login/{sid}``); a refused refresh or client grant registers nothing."""
        body = req.json_object()
        attach = self._connect(body) if body else None
        answer = super().register_session(req)
        if attach is not None:
            session = self.get_session(answer["sid"])
            session.login(*attach)      # type: ignore[attr-defined]
            answer["auth"] = attach[0].kind
        return answer

    @route("POST", "login/{sid}")
    def login(self, req: Request, session: GlobusSession) -> Dict[str, Any]:
        credentials, client = self._connect(req.json_object())
        session.login(credentials, client)
        self.log.info("[%s] globus session %s logged in with %s", req.request_id, session.sid, credentials.kind)
        return {"sid": session.sid, "auth": credentials.kind}

    def _connect(self, body: Dict[str, Any]) -> Any:
        credentials = Credentials(body)
        try:
            with globus_errors():
                return credentials, credentials.transfer_client(self.settings)
        except Exception:
            credentials.close()
            raise

    @route("GET", "local_collection")
    def local_collection(self, req: Request) -> Dict[str, Any]:
        """Which collection ``"local"`` names on this endpoint, and where that was found."""
        return local.describe(self.settings)

    # -- tasks ----------------------------------------------------------------------------
    @route("GET", "submission_id/{sid}")
    def submission_id(self, req: Request, session: GlobusSession) -> Dict[str, Any]:
        """An id to submit with: a retried submit with the same id creates no second task."""
        with globus_errors():
            answer = session.transfer_client().get_submission_id()
        return {"submission_id": document(answer, "a submission id", ("value",))["value"]}

    @route("POST", "submit/{sid}")
    def submit(self, req: Request, session: GlobusSession) -> Dict[str, Any]:
        data = documents.transfer_data(req.json_object(), self._collection)
        client = session.transfer_client()
        with globus_errors():
            result = client.submit_transfer(data)
        return self._submitted(req, session, result, "transfer", len(data["DATA"]))

    @route("POST", "delete/{sid}/{collection}")
    def delete(self, req: Request, session: GlobusSession, collection: str) -> Dict[str, Any]:
        """A delete task of ``paths`` on the collection (watched like a transfer)."""
        data = documents.delete_data(self._collection(collection), req.json_object())
        client = session.transfer_client()
        with globus_errors():
            result = client.submit_delete(data)
        return self._submitted(req, session, result, "delete", len(data["DATA"]))

    def _submitted(self, req: Request, session: GlobusSession, result: Any, what: str,
                   items: int) -> Dict[str, Any]:
        result = document(result, "a submitted %s" % what, ("task_id", "code"))
        answer = {k: result.get(k) for k in ("task_id", "submission_id", "code", "message", "request_id")}
        self.log.info("[%s] globus session %s: %s task %s (%d items): %s", req.request_id, session.sid,
                      what, answer["task_id"], items, answer["code"])
        if answer["task_id"]:
            self.watcher.watch(session, answer["task_id"])
        return answer

    @route("GET", "task/{sid}/{task_id}")
    def task(self, req: Request, session: GlobusSession, task_id: str) -> Dict[str, Any]:
        with globus_errors():
            answer = session.transfer_client().get_task(_uuid(task_id, "task id"))
        return document(answer, "a task", TASK_KEYS)

    @route("GET", "wait/{sid}/{task_id}")
    def wait(self, req: Request, session: GlobusSession, task_id: str) -> Dict[str, Any]:
        """Until the task succeeds or fails, or ``?timeout=`` seconds pass (cut to the
        setting ``max_wait``): ``{"task", "done"}``; a client waits longer by asking again."""
        timeout = min(_query_float(req, "timeout", 0.0, 86400.0, 60.0), self.settings.max_wait)
        task_id = _uuid(task_id, "task id")
        client = session.transfer_client()
        deadline = time.monotonic() + timeout
        while True:
            with globus_errors():
                answer = client.get_task(task_id)
            task = document(answer, "a task", TASK_KEYS)
            left = deadline - time.monotonic()
            if task.get("status") in TERMINAL or left <= 0 or self._stopping.is_set():
                return {"task": task, "done": task.get("status") in TERMINAL}
            self._stopping.wait(min(self.settings.poll_interval, left))

    @route("POST", "cancel/{sid}/{task_id}")
    def cancel(self, req: Request, session: GlobusSession, task_id: str) -> Dict[str, Any]:
        task_id = _uuid(task_id, "task id")
        with globus_errors():
            answer = session.transfer_client().cancel_task(task_id)
        result = document(answer, "a cancel", ("code",))
        self.log.info("[%s] globus session %s: cancel task %s: %s", req.request_id, session.sid, task_id,
                      result.get("code"))
        self.watcher.poke()
        return {"task_id": task_id, "code": result.get("code"), "message": result.get("message")}

    @route("GET", "tasks/{sid}")
    def tasks(self, req: Request, session: GlobusSession) -> Dict[str, Any]:
        """The user's tasks, newest first: ``?limit=`` (1-1000), ``?offset=``, ``?status=``
        (comma-separated: ACTIVE, INACTIVE, SUCCEEDED, FAILED)."""
        limit = req.query_int("limit", 1, MAX_TASKS, 100)
        offset = req.query_int("offset", 0, 10**6, 0)
        options: Dict[str, Any] = {"limit": limit, "offset": offset, "orderby": "request_time DESC"}
        status = req.query.get("status")
        if status:
            wanted = [s.strip().upper() for s in status.split(",") if s.strip()]
            bad = [s for s in wanted if s not in TASK_STATUSES]
            if bad:
                raise BadRequest("status must be among %s, not %s" % (", ".join(TASK_STATUSES), ", ".join(bad)))
            options["filter"] = {"status": wanted}
        with globus_errors():
            answer = session.transfer_client().task_list(**options)
        page = document(answer, "a task list", listing=True)
        return {"tasks": page["DATA"], "total": page.get("total"), "offset": offset, "limit": limit}

    # -- collections ----------------------------------------------------------------------
    @route("GET", "ls/{sid}/{collection}")
    def ls(self, req: Request, session: GlobusSession, collection: str) -> Dict[str, Any]:
        """``?path=`` (default ``/~/``), ``?show_hidden=``, ``?limit=``."""
        collection = self._collection(collection)
        path = req.query.get("path") or "/~/"
        limit = req.query_int("limit", 1, MAX_LS, MAX_LS)
        with globus_errors():
            answer = session.transfer_client().operation_ls(
                collection, path=path, show_hidden=req.query_bool("show_hidden", True), limit=limit)
        found = document(answer, "a directory listing", listing=True)
        return {"collection": collection, "path": found.get("path", path),
                "entries": found["DATA"], "total": found.get("total", len(found["DATA"]))}

    @route("POST", "mkdir/{sid}/{collection}")
    def mkdir(self, req: Request, session: GlobusSession, collection: str) -> Dict[str, Any]:
        path = body_str(req.json_object(), "path", "a path")
        with globus_errors():
            answer = session.transfer_client().operation_mkdir(self._collection(collection), path)
        result = document(answer, "a mkdir", ("code",))
        return {"path": path, "code": result.get("code"), "message": result.get("message")}

    @route("POST", "rename/{sid}/{collection}")
    def rename(self, req: Request, session: GlobusSession, collection: str) -> Dict[str, Any]:
        body = req.json_object()
        old, new = body_str(body, "old_path", "a path"), body_str(body, "new_path", "a path")
        with globus_errors():
            answer = session.transfer_client().operation_rename(self._collection(collection), old, new)
        result = document(answer, "a rename", ("code",))
        return {"old_path": old, "new_path": new, "code": result.get("code"), "message": result.get("message")}

    @route("GET", "endpoint_search/{sid}")
    def endpoint_search(self, req: Request, session: GlobusSession) -> Dict[str, Any]:
        """``?text=`` (full text), ``?scope=`` (Globus's filter_scope, e.g. my-endpoints),
        ``?limit=`` (1-100)."""
        text, scope = req.query.get("text"), req.query.get("scope")
        if not text and not scope:
            raise BadRequest("endpoint_search needs ?text= or ?scope= (e.g. my-endpoints)")
        options: Dict[str, Any] = {"limit": req.query_int("limit", 1, MAX_SEARCH, 25)}
        if text:
            options["filter_fulltext"] = text
        if scope:
            options["filter_scope"] = scope
        with globus_errors():
            answer = session.transfer_client().endpoint_search(**options)
        found = document(answer, "an endpoint search", listing=True)
        return {"collections": found["DATA"]}

    @route("GET", "endpoint/{sid}/{collection}")
    def endpoint(self, req: Request, session: GlobusSession, collection: str) -> Dict[str, Any]:
        with globus_errors():
            answer = session.transfer_client().get_endpoint(self._collection(collection))
        return document(answer, "a collection", ("id",))

    def _collection(self, collection: str) -> str:
        return _uuid(local.resolve(collection, self.settings), "collection id")


def _uuid(value: str, what: str) -> str:
    if not _UUID.match(value or ""):
        raise BadRequest("%s %r is not a Globus id (a UUID)" % (what, (value or "")[:80]))
    return value.lower()


def _query_float(req: Request, name: str, low: float, high: float, default: float) -> float:
    raw = req.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest("query parameter %s must be a number" % name)
    if not low <= value <= high:
        raise BadRequest("query parameter %s must be between %g and %g" % (name, low, high))
    return value


class _Forward(logging.Handler):
    """Hands globus-sdk's records to ORBIT's logger, whose handlers redact every line
    (without it, Python's last-resort handler would print them unredacted)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("radical_orbit.globus_sdk").handle(record)


def _forward_sdk_logs() -> None:
    sdk = logging.getLogger("globus_sdk")
    if not any(isinstance(h, _Forward) for h in sdk.handlers):
        sdk.addHandler(_Forward(SDK_LOG_LEVEL))
