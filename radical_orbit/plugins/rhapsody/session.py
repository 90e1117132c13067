"""One client's rhapsody session: its backend, its tasks and their records.

The backend starts in the background (``register_session`` answers at once); until it
is ready every task route answers 409, and if it fails, 502 with the reason. State
changes arrive on the plugin's event loop through rhapsody's backend callback; they
update the records under the session's lock, wake ``wait`` calls and go to the
notification batcher. Workers only ever wait for the loop to accept something.
"""
import asyncio
import os
import threading
import time
from collections import Counter, OrderedDict, deque
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ...errors import Conflict, NotFound, OrbitError
from ...plugin import Plugin, PluginSession
from . import backends
from .records import NEW, TERMINAL, TaskRecord
from .wire import Spec

INITIALIZING, READY, FAILED, CLOSED = "initializing", "ready", "failed", "closed"
#: Seconds ``close`` waits for the backend to shut down (tasks are cancelled, not awaited).
CLOSE_WAIT = 5.0


class TaskSession(PluginSession):
    def __init__(self, plugin: Plugin, sid: str):
        super().__init__(plugin, sid)
        self.state = INITIALIZING
        self.error: Optional[str] = None
        self.options: Optional[backends.Options] = None
        self.rh: Any = None
        self.backend: Any = None
        self._lock = threading.Lock()
        self._records: "OrderedDict[str, TaskRecord]" = OrderedDict()
        self._counts: Counter = Counter()
        #: uids of finished tasks in the order they finished: the first to forget
        self._ended: "deque[str]" = deque()
        self._waiters: List[Tuple[set, threading.Event]] = []
        self._next = 0
        self.forgotten = 0
        self.first_submit: Optional[float] = None
        self.last_finish: Optional[float] = None

    # -- start ---------------------------------------------------------------------
    def start(self, options: backends.Options) -> None:
        """Start the backend on the loop; the answer does not wait for it."""
        self.options = options
        self.plugin.loop.spawn(self._start())

    async def _start(self) -> None:
        try:
            import rhapsody
            backend = await backends.make_backend(self.options, self.sid, self.plugin.settings.init_timeout)
            os.makedirs(self.plugin.settings.work_dir, exist_ok=True)
            rh = rhapsody.Session(backends=[backend], uid=self.sid, work_dir=self.plugin.settings.work_dir)
            # rhapsody 0.6 has no public observer of task states: chain ours after the
            # session's own state manager, which resolves rhapsody's futures.
            inner = rh._state_manager.update_task
            backend.register_callback(lambda task, state: self._on_state(inner, task, state))
        except BaseException as exc:
            if isinstance(exc, asyncio.TimeoutError):
                detail = "no answer within %.0f s" % self.plugin.settings.init_timeout
            else:
                detail = "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__
            self._set_state(FAILED, "backend %s failed to start: %s" % (self.options.backend, detail))
            if not isinstance(exc, Exception):
                raise
            return
        with self._lock:
            closed = self.state == CLOSED
            if not closed:
                self.rh, self.backend = rh, backend
        if closed:
            await self._shutdown(rh, backend)
            return
        self._set_state(READY)

    def _set_state(self, state: str, error: Optional[str] = None) -> None:
        with self._lock:
            if self.state == CLOSED:
                return
            self.state, self.error = state, error
        if error:
            self.plugin.log.warning("session %s: %s", self.sid, error)
        data = {"sid": self.sid, "state": state, "backend": self.options.backend if self.options else None}
        if error:
            data["error"] = error
        self.plugin.notify("session_status", data)

    def require_ready(self) -> None:
        if self.state == READY:
            return
        if self.state == INITIALIZING:
            raise Conflict("session %s is still starting its %s backend: wait for its session_status "
                           "notification (or poll statistics/%s)" % (self.sid, self.options.backend, self.sid))
        if self.state == FAILED:
            raise Conflict("session %s cannot run tasks: %s" % (self.sid, self.error))
        raise Conflict("session %s is closed" % self.sid)

    # -- tasks -----------------------------------------------------------------------
    def submit(self, specs: List[Spec]) -> List[str]:
        self.require_ready()
        dask_keys = self.options.backend == "dask"
        now = time.time()
        tasks: List[Dict[str, Any]] = []
        uids: List[str] = []
        with self._lock:
            given = [s.uid for s in specs if s.uid is not None]
            taken = [u for u in given if u in self._records]
            if taken or len(set(given)) != len(given):
                raise Conflict("task uids already used in this session: %s"
                               % ", ".join((taken or sorted(u for u in given if given.count(u) > 1))[:5]))
            for spec in specs:
                uid = spec.uid
                if uid is None:
                    self._next += 1
                    uid = "task.%06d" % self._next
                    while uid in self._records:
                        self._next += 1
                        uid = "task.%06d" % self._next
                task = spec.fields
                task["uid"] = uid
                if dask_keys:
                    # Dask keys are global to the scheduler: two sessions' task.000001 must differ.
                    extra = task.setdefault("task_backend_specific_kwargs", {})
                    extra.setdefault("key", "%s/%s" % (self.sid, uid))
                self._records[uid] = TaskRecord(uid, spec.name, spec.kind, now)
                tasks.append(task)
                uids.append(uid)
            self._counts[NEW] += len(uids)
            if self.first_submit is None:
                self.first_submit = now
            self._forget_oldest()
        try:
            self.plugin.loop.call(self._submit(tasks), self.plugin.settings.call_timeout, "submitting tasks")
        except Exception as exc:
            self._fail_unstarted(tasks, exc)
            if isinstance(exc, OrbitError):
                raise
            raise OrbitError("backend %s refused the tasks: %s: %s"
                             % (self.options.backend, type(exc).__name__, exc), 502)
        return uids

    async def _submit(self, tasks: List[Dict[str, Any]]) -> None:
        futures = await self.rh.submit_tasks(tasks)
        for future in futures:
            future.add_done_callback(_retrieve)

    def _fail_unstarted(self, tasks: List[Dict[str, Any]], exc: BaseException) -> None:
        for task in tasks:
            if task.get("state") is None:
                task["exception"] = exc
                self._record_state(task, "FAILED")

    def _on_state(self, inner: Any, task: Dict[str, Any], state: str) -> None:
        """rhapsody's backend callback, on the loop: rhapsody's bookkeeping, then ours."""
        try:
            inner(task, state)
        finally:
            self._record_state(task, state)

    def _record_state(self, task: Dict[str, Any], state: str) -> None:
        uid = task.get("uid")
        with self._lock:
            record = self._records.get(uid)
            if record is None or record.terminal or record.state == state:
                return
            self._counts[record.state] -= 1
            self._counts[state] += 1
            if state in TERMINAL:
                record.finish(task, state)
                self._ended.append(uid)
                self.last_finish = record.finished
                self._forget_task(uid)
                for pending, event in self._waiters:
                    if uid in pending:
                        pending.discard(uid)
                        if not pending:
                            event.set()
            else:
                record.state = state
        self.plugin.batcher.add(self.sid, uid, state)

    def _forget_task(self, uid: str) -> None:
        """Drop a finished task from rhapsody's own tables: the record holds what is kept."""
        held = getattr(self.backend, "tasks", None)
        if isinstance(held, dict):
            held.pop(uid, None)
        held = getattr(self.rh, "_tasks", None)
        if isinstance(held, dict):
            held.pop(uid, None)

    def _forget_oldest(self) -> None:
        """Keep at most ``max_records`` records, forgetting the ones that finished first
        (a task still running is kept, however old)."""
        over = len(self._records) - self.plugin.settings.max_records
        while over > 0 and self._ended:
            record = self._records.pop(self._ended.popleft())
            self._counts[record.state] -= 1
            self.forgotten += 1
            over -= 1

    def wait(self, uids: Optional[List[str]], timeout: float) -> Tuple[List[TaskRecord], List[str]]:
        """The finished records among ``uids`` (all tasks: None) and the uids still
        running, after waiting at most ``timeout`` s for all of them to finish."""
        self.require_ready()
        event = threading.Event()
        with self._lock:
            if uids is None:
                uids = list(self._records)
            self._known(uids)
            pending = {u for u in uids if not self._records[u].terminal}
            waiter = (pending, event)
            if pending and timeout > 0:
                self._waiters.append(waiter)
        if pending and timeout > 0:
            event.wait(timeout)
            with self._lock:
                self._waiters.remove(waiter)
        with self._lock:
            records = [self._records.get(u) for u in uids]
        done = [r for r in records if r is not None and r.terminal]
        running = [r.uid for r in records if r is not None and not r.terminal]
        return done, running

    def _known(self, uids: Iterable[str]) -> None:
        missing = [u for u in uids if u not in self._records]
        if missing:
            raise NotFound("no tasks %s in session %s%s" % (", ".join(map(str, missing[:5])), self.sid,
                                                             " (and %d more)" % (len(missing) - 5)
                                                             if len(missing) > 5 else ""))

    def record(self, uid: str) -> TaskRecord:
        with self._lock:
            self._known([uid])
            return self._records[uid]

    def records(self, state: Optional[str], offset: int, limit: int) -> Tuple[List[TaskRecord], int]:
        with self._lock:
            chosen = [r for r in self._records.values() if state is None or r.state == state]
        return chosen[offset:offset + limit], len(chosen)

    def cancel(self, uids: Optional[List[str]]) -> List[str]:
        """Cancel the named tasks (None: every unfinished one); the uids the backend cancelled."""
        self.require_ready()
        with self._lock:
            if uids is None:
                uids = [u for u, r in self._records.items() if not r.terminal]
            else:
                self._known(uids)
                uids = [u for u in uids if not self._records[u].terminal]
        if not uids:
            return []
        return self.plugin.loop.call(self._cancel(uids), self.plugin.settings.call_timeout, "cancelling tasks")

    async def _cancel(self, uids: List[str]) -> List[str]:
        cancelled = []
        for uid in uids:
            try:
                if await self.backend.cancel_task(uid):
                    cancelled.append(uid)
            except NotImplementedError:
                raise OrbitError("backend %s cannot cancel tasks" % self.options.backend, 501)
        return cancelled

    def busy(self) -> bool:
        """Whether any task of this session is still unfinished."""
        with self._lock:
            return any(n > 0 for state, n in self._counts.items() if state not in TERMINAL)

    def statistics(self) -> Dict[str, Any]:
        with self._lock:
            counts = {state: n for state, n in self._counts.items() if n > 0}
            total = len(self._records)
            first, last = self.first_submit, self.last_finish
        finished = sum(n for state, n in counts.items() if state in TERMINAL)
        elapsed = (last - first) if first is not None and last is not None else None
        return {"sid": self.sid, "state": self.state, "error": self.error,
                "options": self.options.describe() if self.options else None,
                "counts": counts, "total": total, "finished": finished, "active": total - finished,
                "forgotten": self.forgotten, "first_submit": first, "last_finish": last,
                "tasks_per_s": round(finished / elapsed, 1) if elapsed else None}

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        with self._lock:
            counts = {state: n for state, n in self._counts.items() if n > 0}
            total = len(self._records)
        info.update({"state": self.state, "backend": self.options.backend if self.options else None,
                     "tasks": total, "counts": counts})
        return info

    # -- close -----------------------------------------------------------------------
    def close(self) -> None:
        """Cancel what still runs and shut the backend down, waiting at most CLOSE_WAIT."""
        with self._lock:
            self.state = CLOSED
            rh, backend = self.rh, self.backend
            self.rh = self.backend = None
            for _, event in self._waiters:
                event.set()
        if backend is None:
            return
        try:
            self.plugin.loop.call(self._shutdown(rh, backend), CLOSE_WAIT, "closing session %s" % self.sid)
        except Exception as exc:
            self.plugin.log.warning("closing session %s: %s", self.sid, exc)

    async def _shutdown(self, rh: Any, backend: Any) -> None:
        executor = backends.executor_of(backend)
        if executor is not None:
            # The concurrent backend's own shutdown joins its pool: a task that runs for an
            # hour would hold the loop that long. Cancel, kill the processes of executable
            # tasks, and let running Python threads finish alone (they are daemons).
            tasks = getattr(backend, "tasks", {})
            for task in list(tasks.values()):
                future = task.get("future") if isinstance(task, dict) else None
                if future is not None:
                    future.cancel()
            tasks.clear()
            executor.shutdown(wait=False, cancel_futures=True)
            kill_all = getattr(backend, "kill_all", None)
            if kill_all is not None:
                await asyncio.sleep(0)          # the cancelled tasks kill their processes
                kill_all()
        else:
            await asyncio.wait_for(rh.close(), CLOSE_WAIT)
        try:
            os.rmdir(os.path.join(self.plugin.settings.work_dir, self.sid))
        except OSError:
            pass


def _retrieve(future: "asyncio.Future[Any]") -> None:
    """Mark a rhapsody future's outcome as seen (the record has it), so asyncio does not
    log 'exception was never retrieved' for every failed task."""
    if not future.cancelled():
        future.exception()
