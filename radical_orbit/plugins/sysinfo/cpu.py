"""CPU utilisation, sampled by one owner so that every caller sees the machine's.

``psutil.cpu_percent(interval=None)`` keeps its previous reading per calling
thread: called from a pool of worker threads, each answer covers a different
window (and a thread's first call says 0 %). Here one sampler thread reads
``psutil.cpu_times(percpu=True)`` every ``interval`` seconds and publishes the
utilisation of that window, total and per core; requests read the latest one.
"""
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import psutil

#: Seconds between two CPU samples: the window a reading covers.
CPU_INTERVAL = 1.0
#: Seconds of the first window after start, so that a first request soon has a figure.
FIRST_INTERVAL = 0.25
#: A window shorter than this holds too few clock ticks (100 Hz) to mean anything.
MIN_WINDOW = 0.05
#: On Linux guest time is also counted in user / nice time.
_GUEST_FIELDS = ("guest", "guest_nice") if sys.platform.startswith("linux") else ()
#: Time a CPU was not working (waiting for I/O is idle too, as psutil and top count it).
_IDLE_FIELDS = ("idle", "iowait")


def busy_and_total(times: Any) -> Tuple[float, float]:
    """(busy, total) seconds of one ``cpu_times`` record."""
    total = sum(times) - sum(getattr(times, f, 0.0) for f in _GUEST_FIELDS)
    idle = sum(getattr(times, f, 0.0) for f in _IDLE_FIELDS)
    return total - idle, total


def percent_between(before: Any, after: Any) -> float:
    """Utilisation in percent between two ``cpu_times`` records (0.0 for an empty window)."""
    busy0, total0 = busy_and_total(before)
    busy1, total1 = busy_and_total(after)
    elapsed = total1 - total0
    if elapsed <= 0:
        return 0.0
    return round(min(100.0, max(0.0, 100.0 * (busy1 - busy0) / elapsed)), 1)


def utilisation(before: Sequence[Any], after: Sequence[Any]) -> Dict[str, Any]:
    """``percent`` (the whole machine) and ``percent_per_core`` between two per-core samples."""
    per_core = [percent_between(b, a) for b, a in zip(before, after)]
    busy = sum(busy_and_total(a)[0] - busy_and_total(b)[0] for b, a in zip(before, after))
    total = sum(busy_and_total(a)[1] - busy_and_total(b)[1] for b, a in zip(before, after))
    percent = round(min(100.0, max(0.0, 100.0 * busy / total)), 1) if total > 0 else 0.0
    return {"percent": percent, "percent_per_core": per_core}


class CpuSampler:
    """Owns the CPU counters: ``start`` begins sampling, ``latest`` is safe from any thread."""

    def __init__(self, interval: float = CPU_INTERVAL, first_interval: float = FIRST_INTERVAL):
        self.interval = interval
        self.first_interval = min(first_interval, interval)
        self._lock = threading.Lock()
        self._previous: Optional[Tuple[float, List[Any]]] = None
        self._figures: Optional[Dict[str, Any]] = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self, name: str = "sysinfo-cpu") -> None:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        delay = self.first_interval
        while not self._stopping.wait(delay):
            self.sample()
            delay = self.interval

    def sample(self) -> Optional[Dict[str, Any]]:
        """Take a sample; publishes the utilisation since the previous one if that is
        at least ``MIN_WINDOW`` old. Returns the latest figures (None before any)."""
        with self._lock:
            now, times = time.monotonic(), psutil.cpu_times(percpu=True)
            previous = self._previous
            if previous is not None and now - previous[0] < MIN_WINDOW:
                return self._figures
            self._previous = (now, times)
            if previous is not None and len(previous[1]) == len(times):   # cores may come and go
                self._figures = utilisation(previous[1], times)
                self._ready.set()
            return self._figures

    def latest(self, wait: float = 0.0) -> Dict[str, Any]:
        """The utilisation of the last window; waits up to ``wait`` s for the first one
        right after start, and takes it on the spot if there is still none (None: unknown)."""
        if wait > 0:
            self._ready.wait(wait)
        with self._lock:
            figures = self._figures
        if figures is None:
            figures = self.sample()
        return figures if figures is not None else {"percent": None, "percent_per_core": []}
