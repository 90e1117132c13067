"""rhapsody: run task batches (executables and Python functions) through rhapsody-py.

Routes (under ``/<endpoint>/<instance>/``; the table is in docs/plugins.md):
``register_session`` (backend options; answers at once), ``submit/{sid}``,
``wait/{sid}``, ``list_tasks/{sid}``, ``task/{sid}/{uid}``, ``cancel/{sid}/{uid}``,
``cancel_all/{sid}``, ``statistics/{sid}``, ``backends``. Notifications:
``session_status`` (a session's backend is ready or failed) and ``task_status``
(batched state changes).

Python function tasks arrive as cloudpickle pickles and run arbitrary code as the user
the endpoint runs as. Whoever holds the bridge token may submit them (every caller,
today); an endpoint forbids them with the setting ``allow_pickle: false``.
"""
import platform
from typing import Any, Dict, List, Optional

from ...errors import BadRequest
from ...plugin import Plugin, PluginContext, Request, route
from . import backends, wire
from .loop import LoopThread
from .notes import StatusBatcher
from .records import answer_records
from .session import TaskSession
from .settings import TEXT_CAP, Settings

#: ``list_tasks`` answers at most this many tasks per call (``offset`` pages on).
MAX_LIST = 10000


class RhapsodyPlugin(Plugin):
    plugin_name = "rhapsody"
    version = "1.0.0"
    session_class = TaskSession
    #: each session holds a backend (a thread pool or a Dask client) and its task records
    max_sessions = 64
    ui_config = {"title": "Tasks", "description": "Run executables and Python functions with rhapsody"}

    def __init__(self, name: str, context: PluginContext):
        super().__init__(name, context)
        self.settings = Settings(context.config)
        facts = context.facts or {}
        self.python_version = facts.get("python_version") or platform.python_version()
        self.loop = LoopThread("rhapsody-loop-%s" % name)
        self.batcher = StatusBatcher(self.notify, self.settings.notify_window, self.settings.notify_batch,
                                     "rhapsody-notes-%s" % name)

    def stop(self) -> None:
        super().stop()
        self.batcher.stop()
        self.loop.stop()

    # -- sessions --------------------------------------------------------------------
    def _is_expired(self, session: Any) -> bool:
        """A session whose tasks still run is not idle (a workflow may submit hours of work
        and come back for it): its idle time counts from when its last task ended."""
        if session.busy():
            session.touch()
            return False
        return super()._is_expired(session)

    @route("POST", "register_session")
    def register_session(self, req: Request) -> Dict[str, Any]:
        """Check the options, answer at once; the backend starts in the background."""
        options = backends.Options(wire.read_body(req) if req.body.strip() else {}, self.settings)
        answer = super().register_session(req)
        with self._lock:
            session = self._sessions[answer["sid"]]
        session.start(options)  # type: ignore[attr-defined]
        answer.update({"state": session.state, "backend": options.backend,  # type: ignore[attr-defined]
                       "python_version": self.python_version, "allow_pickle": self.settings.allow_pickle})
        return answer

    @route("GET", "backends")
    def get_backends(self, req: Request) -> Dict[str, Any]:
        return {"default": self.settings.backend, "available": backends.names(),
                "python_version": self.python_version, "allow_pickle": self.settings.allow_pickle}

    @route("GET", "statistics/{sid}", inline=True)
    def statistics(self, req: Request, session: TaskSession) -> Dict[str, Any]:
        """Answers while the backend starts too: this is how a client polls for it."""
        return session.statistics()

    # -- tasks -----------------------------------------------------------------------
    @route("POST", "submit/{sid}")
    def submit(self, req: Request, session: TaskSession) -> Any:
        session.require_ready()
        specs = wire.parse_submit(wire.read_body(req), self.settings.max_tasks_per_call,
                                  self.settings.allow_pickle, self.python_version)
        uids = session.submit(specs)
        return wire.answer(req, {"uids": uids})

    @route("POST", "wait/{sid}")
    def wait(self, req: Request, session: TaskSession) -> Any:
        body = wire.read_body(req) if req.body.strip() else {}
        uids = _uid_list(body.get("uids"))
        timeout = body.get("timeout", 0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise BadRequest("'timeout' must be a number of seconds, 0 or more")
        done, running = session.wait(uids, min(float(timeout), self.settings.max_wait))
        cap = None if wire.wants_msgpack(req) else TEXT_CAP
        records, held = answer_records(done, cap, self.settings.max_answer_bytes)
        return wire.answer(req, {"done": records, "pending": held + running, "held": len(held)})

    @route("GET", "list_tasks/{sid}")
    def list_tasks(self, req: Request, session: TaskSession) -> Any:
        state = req.query.get("state") or None
        offset = req.query_int("offset", 0, 10**9, 0)
        limit = req.query_int("limit", 1, MAX_LIST, 1000)
        records, total = session.records(state, offset, limit)
        return wire.answer(req, {"tasks": [r.summary() for r in records], "total": total,
                                 "offset": offset})

    @route("GET", "task/{sid}/{uid}")
    def task(self, req: Request, session: TaskSession, uid: str) -> Any:
        record = session.record(uid)
        return wire.answer(req, record.full(None if wire.wants_msgpack(req) else TEXT_CAP))

    @route("POST", "cancel/{sid}/{uid}")
    def cancel(self, req: Request, session: TaskSession, uid: str) -> Dict[str, Any]:
        cancelled = session.cancel([uid])
        return {"uid": uid, "cancelled": bool(cancelled), "state": session.record(uid).state}

    @route("POST", "cancel_all/{sid}")
    def cancel_all(self, req: Request, session: TaskSession) -> Dict[str, Any]:
        cancelled = session.cancel(None)
        return {"cancelled": len(cancelled)}


def _uid_list(value: Any) -> Optional[List[str]]:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise BadRequest("'uids' must be a list of task uids")
    return value
