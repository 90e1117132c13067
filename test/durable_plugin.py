"""A plugin with a durable notification stream on its own sqlite file, as psij keeps
``job_status``: loaded by a real endpoint through a ``radical_orbit.plugins`` entry point
that ``install`` writes into a directory put on the endpoint's PYTHONPATH."""
import json
import os
import sqlite3
import threading
from typing import Any, Dict, List, Tuple

from radical_orbit.plugin import Plugin, Request, route

NAME = "durable_test"


def install(site: str) -> str:
    """Make this module discoverable as plugin ``durable_test`` from ``site``; returns the
    PYTHONPATH entries the endpoint needs."""
    info = os.path.join(site, "orbit_durable_test-0.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: orbit-durable-test\nVersion: 0\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as f:
        f.write("[radical_orbit.plugins]\n%s = durable_plugin:DurableTestPlugin\n" % NAME)
    return os.pathsep.join([site, os.path.dirname(os.path.abspath(__file__))])


class DurableTestPlugin(Plugin):
    plugin_name = NAME

    def __init__(self, name: str, context: Any):
        super().__init__(name, context)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(context.config["db"], check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS notes (seq INTEGER PRIMARY KEY, topic TEXT, data TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('stream', ?)", (os.urandom(8).hex(),))
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('acked', '0')")
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        acked = int(meta["acked"])
        self._seq = max(acked, self._db.execute("SELECT MAX(seq) FROM notes").fetchone()[0] or 0)
        self.notes = self.durable_notes(meta["stream"], acked, self._acked, read=self._read)

    def _acked(self, acked: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM notes WHERE seq <= ?", (acked,))
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'acked'", (str(acked),))

    def _read(self, after: int, limit: int) -> List[Tuple[int, str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT seq, topic, data FROM notes WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after, limit)).fetchall()
        return [(seq, topic, json.loads(data)) for seq, topic, data in rows]

    @route("POST", "emit/{topic}")
    def emit(self, req: Request, topic: str) -> Dict[str, Any]:
        """``?count=`` notifications ``{"i", "pad"}`` (``?size=`` bytes of padding), each
        recorded and then sent, as a plugin reporting state changes does; from a thread,
        after ``?delay_ms=``, with a log line when all are recorded."""
        count = req.query_int("count", 1, 10**6)
        pad = "x" * req.query_int("size", 0, 2**20, 0)
        delay = req.query_int("delay_ms", 0, 60000, 0) / 1000.0

        def emit() -> None:
            threading.Event().wait(delay)
            for i in range(count):
                data = {"i": i, "pad": pad}
                with self._lock:
                    self._seq += 1
                    self._db.execute("INSERT INTO notes VALUES (?,?,?)", (self._seq, topic, json.dumps(data)))
                    self.notes.send(self._seq, topic, data)
            self.log.info("emitted %d notification(s) on %s", count, topic)

        threading.Thread(target=emit, name="durable-test-emit", daemon=True).start()
        return {"emitting": count}

    @route("GET", "pending", inline=True)
    def pending(self, req: Request) -> Dict[str, Any]:
        with self._lock:
            return {"pending": self._db.execute("SELECT COUNT(*) FROM notes").fetchone()[0]}

    def stop(self) -> None:
        self.notes.close()
        super().stop()
