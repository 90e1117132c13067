"""Wakes psij's local-executor reaper the moment a local job's process exits.

psij learns of a child's exit from SIGCHLD, whose Python handler only runs when the main
thread executes bytecode. An endpoint's main thread sits in a socket read, a bridge's in
its accept loop: the handler waits for the next frame, and psij falls back to its 0.1 s
poll, so every local job looked ~100 ms longer than it ran. Here one thread waits on a
pidfd per running job (Linux 5.3+, Python 3.9+) and pokes the reaper when one becomes
readable (an epoll set: a job's pidfd is added while the thread waits, without waking it).
Where pidfds are missing it does nothing and psij's own polling remains.
"""
import logging
import os
import select
import threading
from typing import Any, Callable, Dict, Optional

log = logging.getLogger("radical_orbit.plugins.psij")


def _reaper_poke() -> Optional[Callable[[], None]]:
    """psij's own SIGCHLD reaction, or None if this psij has none (then: nothing to do)."""
    try:
        from psij.executors.local import _ProcessReaper
    except ImportError:
        return None
    poke = getattr(_ProcessReaper.get_instance(), "_handle_sigchld", None)
    return poke if callable(poke) else None


class ChildWakeup:
    def __init__(self) -> None:
        self._poke: Optional[Callable[[], None]] = None     # found at the first watch: asking
        # for psij's reaper starts its thread, which an instance that runs no local job never needs
        self.enabled = hasattr(os, "pidfd_open") and hasattr(select, "epoll")
        self._fds: Dict[int, int] = {}           # pidfd -> pid
        self._lock = threading.Lock()
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._poller: Any = None
        if self.enabled:
            self._wake_r, self._wake_w = os.pipe()         # only for stop
            self._poller = select.epoll()
            self._poller.register(self._wake_r, select.EPOLLIN)

    def poke(self) -> None:
        """Make psij's reaper look at its jobs now (a cancelled job is killed at its next
        look, up to 0.1 s later otherwise)."""
        if self._poke is None:
            self._poke = _reaper_poke()
        if self._poke is not None:
            self._poke()

    def watch(self, pid: int) -> None:
        """Poke the reaper when ``pid`` exits (a pid already gone pokes it at once)."""
        if not self.enabled:
            return
        if self._poke is None:
            self._poke = _reaper_poke()
            if self._poke is None:
                self.enabled = False
                return
        try:
            fd = os.pidfd_open(pid)  # type: ignore[attr-defined]
        except OSError:
            self._poke()  # type: ignore[misc]
            return
        with self._lock:
            if self._stopping:
                os.close(fd)
                return
            self._fds[fd] = pid
            self._poller.register(fd, select.EPOLLIN)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="psij-child-wakeup", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                events = self._poller.poll()
            except InterruptedError:
                continue
            except (OSError, ValueError):       # closed by stop
                return
            ended = False
            for fd, _ in events:
                if fd == self._wake_r:
                    return
                with self._lock:
                    if self._fds.pop(fd, None) is not None:
                        self._poller.unregister(fd)
                        os.close(fd)
                        ended = True
            if ended:
                try:
                    self._poke()  # type: ignore[misc]
                except Exception:
                    log.exception("waking psij's reaper failed")
            with self._lock:
                if self._stopping:
                    return

    def stop(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._stopping = True
            fds, self._fds = list(self._fds), {}
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(2.0)
        for fd in fds:
            os.close(fd)
        self._poller.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
