"""The plugin's one asyncio event loop, on a thread of its own.

rhapsody is asyncio-only while ORBIT's endpoint runs handlers on worker threads. Every
rhapsody call runs on this loop; a worker hands a coroutine over and waits for it with a
timeout (submitting a batch takes milliseconds), or does not wait at all (starting a
session). Nothing a task does runs on a worker.
"""
import asyncio
import concurrent.futures
import logging
import threading
from typing import Any, Awaitable, Callable, Optional

from ...errors import Timeout, Unavailable

log = logging.getLogger("radical_orbit.plugins.rhapsody")

#: Seconds ``stop`` waits for the loop thread to finish.
STOP_JOIN_TIMEOUT = 5.0


class LoopThread:
    """Owns one event loop and the thread that runs it; started on first use."""

    def __init__(self, name: str):
        self.name = name
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._stopped:
                raise Unavailable("the rhapsody plugin is stopping")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                ready = threading.Event()
                self._thread = threading.Thread(target=self._run, args=(self._loop, ready),
                                                name=self.name, daemon=True)
                self._thread.start()
                ready.wait(STOP_JOIN_TIMEOUT)
            return self._loop

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(_log_loop_error)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def spawn(self, coro: Awaitable[Any]) -> "concurrent.futures.Future[Any]":
        """Run ``coro`` on the loop; the caller may wait for the returned future, or not."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def call(self, coro: Awaitable[Any], timeout: float, what: str) -> Any:
        """Run ``coro`` on the loop and wait at most ``timeout`` s for its result."""
        future = self.spawn(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise Timeout("%s did not finish within %.0f s" % (what, timeout))

    def call_soon(self, func: Callable[..., Any], *args: Any) -> None:
        """Run ``func(*args)`` on the loop thread, soon; does not wait."""
        self.loop.call_soon_threadsafe(func, *args)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_JOIN_TIMEOUT)


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """Unexpected errors on the loop are logged; the loop keeps running."""
    exc = context.get("exception")
    log.warning("rhapsody event loop: %s%s", context.get("message", "error"),
                ": %s: %s" % (type(exc).__name__, exc) if exc is not None else "")
