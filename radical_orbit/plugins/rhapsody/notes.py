"""``task_status`` notifications, batched: one per session per window, not one per state.

Thousands of tasks change state within a second; a notification each would cost the
bridge's event log and every listener as much as the tasks themselves. State changes are
gathered for ``window`` seconds (or until ``batch`` of them wait) and sent as
``{"sid", "tasks": {uid: state, ...}}``; a task that changed twice within one window is
sent with its latest state only.
"""
import logging
import threading
from typing import Any, Callable, Dict, List, Optional

log = logging.getLogger("radical_orbit.plugins.rhapsody")

TOPIC = "task_status"
#: Seconds ``stop`` waits for the last batch to go.
STOP_JOIN_TIMEOUT = 5.0


class StatusBatcher:
    """Gathers (sid, uid, state) from the event loop; its own thread sends them."""

    def __init__(self, notify: Callable[[str, Any], None], window: float, batch: int, name: str):
        self._notify = notify
        self.window = window
        self.batch = batch
        self.name = name
        self._pending: Dict[str, Dict[str, str]] = {}
        self._count = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: Optional[threading.Thread] = None

    def add(self, sid: str, uid: str, state: str) -> None:
        with self._cond:
            states = self._pending.get(sid)
            if states is None:
                states = self._pending[sid] = {}
            if uid not in states:
                self._count += 1
            states[uid] = state
            if self._count == 1 or self._count == self.batch:
                if self._thread is None:
                    self._start()
                self._cond.notify()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(STOP_JOIN_TIMEOUT)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._count and not self._stopping:
                    self._cond.wait()
                if self._count < self.batch and not self._stopping and self.window > 0:
                    self._cond.wait(self.window)
                pending, self._pending, self._count = self._pending, {}, 0
                stopping = self._stopping
            for sid, states in pending.items():
                for piece in _pieces(states, self.batch):
                    try:
                        self._notify(TOPIC, {"sid": sid, "tasks": piece})
                    except Exception:
                        log.exception("sending task_status of %s failed", sid)
            if stopping:
                return


def _pieces(states: Dict[str, str], size: int) -> List[Dict[str, str]]:
    if len(states) <= size:
        return [states]
    items = list(states.items())
    return [dict(items[i:i + size]) for i in range(0, len(items), size)]
