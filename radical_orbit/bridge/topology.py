"""Who is connected: the endpoint table, its cached ``/endpoint/list`` view, and
coalesced ``topology`` events.

A change marks the view stale and wakes one publisher thread, which sends at
most one topology event per ``coalesce`` interval. A burst of n registrations
therefore costs O(n) work, not O(n^2) (n events of size n).
"""
import json
import logging
import threading
from typing import Any, Dict, List, Optional

from ..names import fold
from .events import TOPOLOGY, EventHub

log = logging.getLogger("radical_orbit.bridge.topology")


class Topology:
    def __init__(self, hub: EventHub, bridge_url: str, coalesce: float = 0.1):
        self.hub = hub
        self.bridge_url = bridge_url
        self.coalesce = coalesce
        self._connections: Dict[str, Any] = {}      # by folded name: one live EP1 or ep1
        self._local: Optional[Any] = None
        self._lock = threading.Lock()
        self._version = 0
        self._cache: Optional[tuple] = None
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._publisher, name="topology-publisher",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()

    # -- the table -----------------------------------------------------------
    def set_local(self, host: Any) -> None:
        """The bridge's own plugin host, listed under the name ``bridge``."""
        self._local = host
        self.changed()

    def get(self, name: str) -> Optional[Any]:
        """The endpoint named exactly ``name`` (routing is exact)."""
        conn = self.holder(name)
        return conn if conn is not None and conn.name == name else None

    def holder(self, name: str) -> Optional[Any]:
        """The endpoint holding ``name`` in any case: the one a new ``name`` would clash with."""
        with self._lock:
            return self._connections.get(fold(name))

    def add(self, conn: Any) -> Optional[Any]:
        """Insert ``conn``; returns the connection it replaced, if any."""
        key = fold(conn.name)
        with self._lock:
            old = self._connections.get(key)
            self._connections[key] = conn
        self.changed()
        return old

    def remove(self, conn: Any) -> bool:
        """Remove ``conn`` if it is still the one registered under its name."""
        key = fold(conn.name)
        with self._lock:
            if self._connections.get(key) is not conn:
                return False
            del self._connections[key]
        self.changed()
        return True

    def connections(self) -> List[Any]:
        with self._lock:
            return list(self._connections.values())

    def count(self) -> int:
        with self._lock:
            return len(self._connections)

    def changed(self) -> None:
        with self._lock:
            self._version += 1
        self._dirty.set()

    # -- views ---------------------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        """The ``data`` of ``/endpoint/list``, rebuilt only after a change."""
        return self._cached()[1]

    def snapshot_json(self) -> bytes:
        """``{"data": snapshot}`` serialised once per change."""
        return self._cached()[2]

    def _cached(self) -> tuple:
        cache = self._cache
        if cache is not None and cache[0] == self._version:
            return cache
        with self._lock:
            version = self._version
            conns = sorted((conn.name, conn) for conn in self._connections.values())
        endpoints = {}
        if self._local is not None:
            endpoints["bridge"] = {"endpoint": {"type": "bridge", "hostname": self._local.facts["hostname"]},
                                   "plugins": self._local.describe()}
        for name, conn in conns:
            endpoints[name] = conn.describe()
        data = {"bridge": {"url": self.bridge_url}, "endpoints": endpoints}
        try:
            raw = json.dumps({"data": data}, default=str)
        except (TypeError, ValueError):
            raw = json.dumps({"data": _without_unserialisable(data)}, default=str)
        cache = (version, data, raw.encode())
        self._cache = cache
        return cache

    def summary(self) -> Dict[str, Any]:
        """The ``GET /endpoints`` answer."""
        rows = []
        for name, entry in self.snapshot()["endpoints"].items():
            plugins = sorted(entry["plugins"])
            rows.append({"name": name, "plugins": plugins, "connected": True,
                         "plugin_count": len(plugins), "type": entry["endpoint"].get("type")})
        return {"endpoints": rows, "total": len(rows)}

    def _publisher(self) -> None:
        """Publishes the latest topology after each change; a failure to build or send
        one is logged and the next change is published again."""
        published = -1
        while not self._stopping.is_set():
            self._dirty.wait()
            self._dirty.clear()
            if self._stopping.is_set():
                return
            try:
                if self._version != published:
                    version, data, _raw = self._cached()
                    self.hub.publish(TOPOLOGY, data)
                    published = version
            except Exception:
                log.exception("publishing the topology failed")
            self._stopping.wait(self.coalesce)


def _without_unserialisable(data: Dict[str, Any]) -> Dict[str, Any]:
    """The protocol schema keeps what JSON cannot carry out of the table; should an
    entry still slip through, it is left out (and logged) rather than breaking every
    view of the topology."""
    endpoints = data["endpoints"]
    for name in list(endpoints):
        try:
            json.dumps(endpoints[name], default=str)
        except (TypeError, ValueError) as exc:
            log.error("endpoint %s left out of the topology: its description is not JSON: %s", name, exc)
            del endpoints[name]
    return data
