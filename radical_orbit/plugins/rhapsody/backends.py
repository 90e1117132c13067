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
from typing import Any, Dict, List, Optional

from ...errors import BadRequest
from .settings import Settings

EXECUTORS = ("thread", "process")
#: rhapsody's own client of an ORBIT bridge: not a backend an endpoint should loop back through
HIDDEN = frozenset(("orbit",))
#: Seconds beyond ``init_timeout`` a backend may take before it is given up as hung.
START_MARGIN = 5.0
OPTION_FIELDS = frozenset(("backend", "dask_scheduler", "workers", "executor", "backend_kwargs"))


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
        self.executor = body.get("executor", "thread")
        if self.executor not in EXECUTORS:
            raise BadRequest("'executor' must be one of %s" % ", ".join(EXECUTORS))
        self.backend_kwargs = body.get("backend_kwargs") or {}
        if not isinstance(self.backend_kwargs, dict):
            raise BadRequest("'backend_kwargs' must be a map")

    def describe(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"backend": self.backend}
        if self.backend == "dask":
            out["dask_scheduler"] = self.dask_scheduler
        if self.backend == "concurrent":
            out["executor"] = self.executor
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
        from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
        from rhapsody.backends import ConcurrentExecutionBackend
        workers = options.workers or default_workers()
        if options.executor == "process":
            executor: Any = ProcessPoolExecutor(max_workers=workers)
        else:
            executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rhapsody-%s" % sid)
        backend: Any = ConcurrentExecutionBackend(executor)
    elif options.backend == "dask":
        cls = BackendRegistry.get_backend_class("dask")
        backend = cls(resources={"address": options.dask_scheduler, "timeout": timeout})
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


def names() -> List[str]:
    return sorted(n for n, ok in available().items() if ok)
