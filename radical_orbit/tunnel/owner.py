"""One ssh tunnel kept alive: its process is started, watched, restarted with capped
backoff when it dies, and stopped by its owner. A failure that retrying cannot mend
(an unknown host key, a refused key) ends it as ``failed`` with ssh's own words."""
import collections
import logging
import socket
import subprocess
import threading
import time
from typing import Callable, Deque, List, Optional

from ..endpoint.service import Backoff
from .ssh import is_fatal

log = logging.getLogger("radical_orbit.tunnel")

UP_AFTER = 2.0              # s an ssh must live (and its port answer) to count as up
BACKOFF_INITIAL = 1.0       # s before the first restart
BACKOFF_MAX = 30.0          # s between restarts at most
STOP_TIMEOUT = 5.0          # s for ssh to exit on SIGTERM before SIGKILL
STDERR_LINES = 20

STATES = ("starting", "up", "restarting", "failed", "stopped")


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=1.0).close()
        return True
    except OSError:
        return False


class Tunnel:
    """An ssh process with an owner thread. ``state`` is one of STATES, ``reason`` why it
    is not up; ``on_fatal(reason)`` is called once when it gives up."""

    def __init__(self, name: str, argv: List[str], ready: Optional[Callable[[], bool]] = None,
                 on_fatal: Optional[Callable[[str], None]] = None,
                 backoff_initial: float = BACKOFF_INITIAL, backoff_max: float = BACKOFF_MAX,
                 up_after: float = UP_AFTER):
        self.name = name
        self.argv = list(argv)
        self._ready = ready
        self._on_fatal = on_fatal
        self._backoff = Backoff(backoff_initial, backoff_max)
        self.up_after = up_after
        self.state = "starting"
        self.reason = ""
        self.restarts = 0
        self.proc: Optional[subprocess.Popen] = None
        self._stderr: Deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._stopping = threading.Event()
        self._up = threading.Event()
        self._thread = threading.Thread(target=self._own, name="tunnel-%s" % name, daemon=True)

    def start(self) -> "Tunnel":
        self._thread.start()
        return self

    def wait_up(self, timeout: float) -> bool:
        return self._up.wait(timeout)

    def status(self) -> dict:
        return {"state": self.state, "reason": self.reason, "restarts": self.restarts,
                "pid": self.proc.pid if self.proc and self.proc.poll() is None else None}

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(STOP_TIMEOUT + 2)
        self._terminate()
        if self.state != "failed":
            self.state = "stopped"

    # -- the owner thread ------------------------------------------------------------
    def _own(self) -> None:
        while not self._stopping.is_set():
            reason = self._run_once()
            if self._stopping.is_set():
                break
            if is_fatal(reason):
                self.state, self.reason = "failed", reason
                self._up.clear()
                log.error("tunnel %s failed: %s", self.name, reason)
                if self._on_fatal is not None:
                    self._on_fatal("ssh tunnel %s failed: %s" % (self.name, reason))
                return
            delay = self._backoff.next_delay()
            self.state, self.reason = "restarting", reason
            self._up.clear()
            self.restarts += 1
            log.warning("tunnel %s down (%s): restarting in %.1f s", self.name, reason, delay)
            self._stopping.wait(delay)

    def _run_once(self) -> str:
        self._stderr.clear()
        try:
            self.proc = proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                start_new_session=True)
        except OSError as exc:
            return "ssh not found or not runnable: %s" % exc
        reader = threading.Thread(target=self._read_stderr, args=(proc,), daemon=True,
                                  name="tunnel-%s-stderr" % self.name)
        reader.start()
        started = time.monotonic()
        while proc.poll() is None and not self._stopping.is_set():
            if not self._up.is_set() and time.monotonic() - started >= self.up_after \
                    and (self._ready is None or self._ready()):
                self.state, self.reason = "up", ""
                self._backoff.reset()
                self._up.set()
                log.info("tunnel %s up (ssh pid %d)", self.name, proc.pid)
            self._stopping.wait(0.1)
        if self._stopping.is_set():
            self._terminate()
        reader.join(2)
        lines = [l.strip() for l in self._stderr if l.strip()]
        fatal = [l for l in lines if is_fatal(l)]
        return (fatal or lines or ["ssh exited with code %s" % proc.returncode])[-1]

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        try:
            for raw in proc.stderr:
                self._stderr.append(raw.decode("utf-8", "replace").rstrip())
        except (OSError, ValueError):
            pass

    def _terminate(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
