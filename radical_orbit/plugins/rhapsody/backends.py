"""Which rhapsody backend a session runs on, and how it is made.

``concurrent`` (the default) runs tasks on this machine, functions on a thread (or
process) pool; ``dask`` submits them to an existing ``dask.distributed`` scheduler, whose
workers may span many nodes; any other backend rhapsody offers here (``noop``,
``radical_pilot``, ``dragon``, ...) is made from its class with ``backend_kwargs``.
rhapsody is imported here, on first use, never when the plugin loads.
"""
import asyncio
import inspect
import os
import signal
from typing import Any, Dict, List, Optional

from ...errors import BadRequest
from .pool import DaemonThreadPool
from .settings import MAX_OUTPUT, Settings

#: rhapsody's own client of an ORBIT bridge: not a backend an endpoint should loop back through
HIDDEN = frozenset(("orbit",))
#: Seconds beyond ``init_timeout`` a backend may take before it is given up as hung.
START_MARGIN = 5.0
OPTION_FIELDS = frozenset(("backend", "dask_scheduler", "workers", "backend_kwargs"))
#: Bytes read from an executable's pipe at a time.
READ_CHUNK = 64 * 1024


class Options:
    """A session's backend choice, checked before the session exists (400 otherwise)."""

    def __init__(self, body: Dict[str, Any], settings: Settings):
        unknown = sorted(set(body) - OPTION_FIELDS)
        if unknown:
            raise BadRequest("unknown session options %s (known: %s)" % (unknown, ", ".join(sorted(OPTION_FIELDS))))
        self.backend = body.get("backend") or settings.backend
        if not isinstance(self.backend, str):
            raise BadRequest("'backend' must be a backend name")
        offered = available()
        if not offered.get(self.backend):
            raise BadRequest("backend %r is not available here (available: %s)"
                             % (self.backend, ", ".join(sorted(n for n, ok in offered.items() if ok))))
        self.dask_scheduler = body.get("dask_scheduler") or settings.dask_scheduler
        if self.backend == "dask":
            if not isinstance(self.dask_scheduler, str) or not self.dask_scheduler:
                raise BadRequest("the dask backend needs a scheduler address: session option "
                                 "'dask_scheduler' (e.g. \"tcp://10.0.0.5:8786\"), rhapsody setting "
                                 "dask_scheduler or RADICAL_ORBIT_RHAPSODY_DASK_SCHEDULER")
        self.workers = body.get("workers") or settings.workers
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or not 1 <= self.workers <= 4096):
            raise BadRequest("'workers' must be an integer from 1 to 4096")
        self.backend_kwargs = body.get("backend_kwargs") or {}
        if not isinstance(self.backend_kwargs, dict):
            raise BadRequest("'backend_kwargs' must be a map")

    def describe(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"backend": self.backend}
        if self.backend == "dask":
            out["dask_scheduler"] = self.dask_scheduler
        if self.backend == "concurrent":
            out["workers"] = self.workers or default_workers()
        return out


def available() -> Dict[str, bool]:
    """rhapsody's backends and whether each can be used here."""
    import rhapsody
    return {name: ok for name, ok in rhapsody.discover_backends().items() if name not in HIDDEN}


def default_workers() -> int:
    """What ``ThreadPoolExecutor`` would pick: one thread per core plus four, at most 32."""
    return min(32, (os.cpu_count() or 1) + 4)


async def make_backend(options: Options, sid: str, timeout: float) -> Any:
    """An initialised backend for ``options`` (awaited: a Dask client connects here)."""
    from rhapsody.backends import BackendRegistry
    if options.backend == "concurrent":
        workers = options.workers or default_workers()
        backend: Any = concurrent_backend_class()(DaemonThreadPool(workers, "rhapsody-%s" % sid))
    elif options.backend == "dask":
        backend = dask_backend_class()(resources={"address": options.dask_scheduler, "timeout": timeout})
    else:
        cls = BackendRegistry.get_backend_class(options.backend)
        try:
            backend = cls(**options.backend_kwargs)
        except TypeError as exc:
            raise BadRequest("backend %s does not take these backend_kwargs: %s" % (options.backend, exc))
    if inspect.isawaitable(backend):
        # The Dask client's own timeout names the address; this one only stops a hang.
        backend = await asyncio.wait_for(_awaited(backend), timeout + START_MARGIN)
    return backend


async def _awaited(backend: Any) -> Any:
    return await backend


def executor_of(backend: Any) -> Optional[Any]:
    """The pool of a concurrent backend, which the session shuts down without waiting."""
    return getattr(backend, "executor", None)


_CONCURRENT: Optional[type] = None


def concurrent_backend_class() -> type:
    """rhapsody's concurrent backend, with executables it can stop: each process starts in a
    session of its own (stdin from /dev/null) and is remembered, so that cancelling its task,
    or closing the session, kills its whole process group. rhapsody's own would leave the
    process running, and an endpoint that stops would leave it behind. At most ``workers``
    executables run at a time (rhapsody's would start them all at once). A function's value
    is kept as it is, never turned into text on the loop."""
    global _CONCURRENT
    if _CONCURRENT is None:
        from rhapsody.backends import ConcurrentExecutionBackend

        class StoppableConcurrentBackend(ConcurrentExecutionBackend):
            def __init__(self, executor: Any) -> None:
                super().__init__(executor)
                self.processes: Dict[str, Any] = {}
                self._slots: Optional[asyncio.Semaphore] = None

            async def _execute_function(self, task: Dict[str, Any]) -> Any:
                # rhapsody's also sets stdout to str(value), on the loop: a large value held
                # every session's loop that long, and a value whose __str__ raised failed its
                # task. The record keeps the value itself; nothing reads that stdout.
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(self.executor, self._run_in_thread, task["function"],
                                                    task.get("args", ()), task.get("kwargs", {}))
                task.update({"return_value": result, "exit_code": 0})
                return task, "DONE"

            async def _execute_command(self, task: Dict[str, Any]) -> Any:
                # rhapsody starts every executable at once: at most ``workers`` here
                if self._slots is None:     # made on the loop that runs the tasks
                    self._slots = asyncio.Semaphore(getattr(self.executor, "workers", None)
                                                    or default_workers())
                async with self._slots:
                    return await self._run_command(task)

            async def _run_command(self, task: Dict[str, Any]) -> Any:
                extra = task.get("task_backend_specific_kwargs") or {}
                argv = [task["executable"]] + list(task.get("arguments") or [])
                pipes = {"stdin": asyncio.subprocess.DEVNULL, "stdout": asyncio.subprocess.PIPE,
                         "stderr": asyncio.subprocess.PIPE, "cwd": extra.get("cwd"), "env": extra.get("env"),
                         "start_new_session": True}
                if extra.get("shell"):
                    process = await asyncio.create_subprocess_shell(" ".join(argv), **pipes)
                else:
                    process = await asyncio.create_subprocess_exec(*argv, **pipes)
                self.processes[task["uid"]] = process
                try:
                    out, err = await asyncio.gather(_read_capped(process.stdout, MAX_OUTPUT),
                                                    _read_capped(process.stderr, MAX_OUTPUT))
                    await process.wait()
                except BaseException:
                    kill_group(process)
                    raise
                finally:
                    self.processes.pop(task["uid"], None)
                task.update({"stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace"),
                             "exit_code": process.returncode})
                return task, "DONE" if process.returncode == 0 else "FAILED"

            def kill_all(self) -> None:
                for process in list(self.processes.values()):
                    kill_group(process)

        _CONCURRENT = StoppableConcurrentBackend
    return _CONCURRENT


_DASK: Optional[type] = None


def dask_backend_class() -> type:
    """rhapsody's dask backend, whose executables bring back text the way the concurrent
    backend's do: undecodable bytes replaced (rhapsody's decoded strictly, so one byte of
    binary output failed the task) and at most MAX_OUTPUT bytes of each stream (rhapsody's
    sent all of it through the scheduler into the endpoint's memory)."""
    global _DASK
    if _DASK is None:
        from rhapsody.backends import BackendRegistry
        run = _worker_runner()

        class CappedDaskBackend(BackendRegistry.get_backend_class("dask")):  # type: ignore[misc]
            async def _submit_executable(self, task: Dict[str, Any]) -> None:
                extra = task.get("task_backend_specific_kwargs") or {}
                await self._submit_and_track(
                    task, run, (task["executable"], list(task.get("arguments") or [])), kind="executable",
                    fn_kwargs={"cwd": extra.get("cwd"), "env": extra.get("env"),
                               "shell": bool(extra.get("shell")), "cap": MAX_OUTPUT})

        _DASK = CappedDaskBackend
    return _DASK


def _worker_runner() -> Any:
    """The function a Dask worker runs for an executable task. Made here, not at module
    level, so that Dask sends it by value: the workers need rhapsody, not radical_orbit."""
    def run_executable(executable: str, arguments: List[str], cwd: Optional[str] = None,
                       env: Optional[Dict[str, str]] = None, shell: bool = False, cap: int = 0) -> Any:
        import subprocess
        argv = [executable] + list(arguments)
        done = subprocess.run(" ".join(argv) if shell else argv, shell=shell, capture_output=True,
                              stdin=subprocess.DEVNULL, cwd=cwd, env=env)

        def text(data: bytes) -> str:
            kept = data[:cap].decode("utf-8", "replace")
            return kept + ("\n[... %d more bytes not kept]" % (len(data) - cap) if len(data) > cap else "")
        return text(done.stdout), text(done.stderr), done.returncode
    return run_executable


async def _read_capped(stream: Any, cap: int) -> bytes:
    """All of ``stream`` read, its first ``cap`` bytes kept, and how much was dropped said."""
    kept, dropped = bytearray(), 0
    while True:
        chunk = await stream.read(READ_CHUNK)
        if not chunk:
            break
        room = max(0, cap - len(kept))
        kept += chunk[:room]
        dropped += len(chunk) - min(room, len(chunk))
    if dropped:
        kept += b"\n[... %d more bytes not kept]" % dropped
    return bytes(kept)


def kill_group(process: Any) -> None:
    """SIGKILL to the process group a task's process leads (it started its own session)."""
    if process.returncode is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def names() -> List[str]:
    return sorted(n for n, ok in available().items() if ok)
