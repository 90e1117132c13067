"""A small cache of scheduler answers: each kind is fetched at most once per ``ttl`` seconds,
and concurrent requests for a kind being fetched wait for that one fetch instead of running
the command again (schedulers are shared; a page refresh by ten users is one ``squeue``)."""
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

#: Seconds a scheduler answer is served from the cache (``cache_ttl`` in the plugin config).
CACHE_TTL = 60.0


class Cache:
    def __init__(self, ttl: float = CACHE_TTL, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._entries: Dict[str, Tuple[float, float, Any]] = {}
        self._locks: Dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, kind: str, fetch: Callable[[], Any], force: bool = False) -> Tuple[Any, float]:
        """``(value, fetched_at)`` for ``kind``: cached when younger than ``ttl`` (and not
        ``force``), else fetched now. A failed fetch is not cached: its error propagates."""
        with self._guard:
            lock = self._locks.setdefault(kind, threading.Lock())
        asked = self.clock()
        with lock:
            entry = self._entries.get(kind)
            # a fetch that finished after this request arrived is fresh enough, even when forced
            if entry is not None and (entry[0] >= asked or (not force and self.clock() - entry[0] < self.ttl)):
                return entry[2], entry[1]
            value = fetch()
            self._entries[kind] = (self.clock(), time.time(), value)
            return value, self._entries[kind][1]

    def peek(self, kind: str) -> Optional[Any]:
        entry = self._entries.get(kind)
        return None if entry is None else entry[2]

    def invalidate(self, kind: str) -> None:
        with self._guard:
            self._entries.pop(kind, None)
