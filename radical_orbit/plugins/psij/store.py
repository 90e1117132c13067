"""The durable record of every job an instance submitted: one sqlite3 file.

A job is written (state NEW) before it goes to the executor and its native id as soon
as the executor gives one, so a ``kill -9`` at any later moment leaves enough to list
the job and attach to it again. The state column is the last state that was *notified*:
a transition is published only when it moves this column forward, which is what makes
each ``job_status`` notification happen once, across restarts too: the notification itself
is written (table ``notes``, numbered) in the same transaction as the state it reports, and
deleted only once the bridge acknowledged it, so one the process died before sending is
sent after the restart, under the same stream id and number (radical_orbit.plugin.
DurableNotes; the bridge drops a number it already logged). WAL with
``synchronous=NORMAL``: a commit survives the process dying (not the machine losing
power), at a fraction of a full fsync per transition.
"""
import json
import os
import secrets
import sqlite3
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

#: psij's states in order; the three terminal ones share the last rank
RANK = {"NEW": 0, "QUEUED": 1, "ACTIVE": 2, "COMPLETED": 3, "FAILED": 3, "CANCELED": 3}
TERMINAL = ("COMPLETED", "FAILED", "CANCELED")
#: seconds a statement waits for another process's lock on the same file
BUSY_TIMEOUT = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    submit_key TEXT UNIQUE,
    executor TEXT NOT NULL,
    native_id TEXT,
    state TEXT NOT NULL,
    exit_code INTEGER,
    message TEXT,
    spec TEXT NOT NULL,
    stdout_path TEXT NOT NULL,
    stderr_path TEXT NOT NULL,
    sid TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    history TEXT NOT NULL DEFAULT '[]',
    process_started REAL,
    psij_id TEXT
)
"""
_NOTES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS notes (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_COLUMNS = ("job_id", "submit_key", "executor", "native_id", "state", "exit_code", "message", "spec",
            "stdout_path", "stderr_path", "sid", "created", "updated", "cancel_requested", "history",
            "process_started", "psij_id")


class KeyTaken(Exception):
    """Another submit holds this key: its job is the answer."""


class JobStore:
    """Thread-safe; one connection guarded by a lock (statements are short)."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, check_same_thread=False,
                                   isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            have = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
            if "psij_id" not in have:       # a store an earlier version wrote
                self._db.execute("ALTER TABLE jobs ADD COLUMN psij_id TEXT")
            self._db.execute("CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created)")
            for statement in _NOTES_SCHEMA:
                self._db.execute(statement)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('stream', ?)", ("psij-" + secrets.token_hex(8),))
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('acked', '0')")
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            #: this store's notification stream: its id and the last number the bridge has
            self.stream, self.acked = meta["stream"], int(meta["acked"])
            last = self._db.execute("SELECT MAX(seq) FROM notes").fetchone()[0]
            self._seq = max(self.acked, last or 0)      # the last number given out
        os.chmod(path, 0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(self, job_id: str, key: Optional[str], executor: str, spec: Dict[str, Any],
               stdout_path: str, stderr_path: str, sid: str) -> None:
        """Record a job about to be submitted; KeyTaken when ``key`` is already in use."""
        now = time.time()
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO jobs (job_id, submit_key, executor, state, spec, stdout_path, stderr_path,"
                    " sid, created, updated, history) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (job_id, key, executor, "NEW", json.dumps(spec), stdout_path, stderr_path, sid, now, now,
                     json.dumps([["NEW", now]])))
        except sqlite3.IntegrityError:
            raise KeyTaken(key)

    def delete(self, job_id: str) -> None:
        """Forget a job the executor refused (nothing runs; its key may be used again)."""
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def prune(self, before: float) -> List[Dict[str, Any]]:
        """Forget the jobs in a final state whose last change is older than ``before``
        (epoch s); returns them (their files are the caller's). A job not yet ended is
        never touched."""
        query = ("SELECT %s FROM jobs WHERE state IN ('COMPLETED', 'FAILED', 'CANCELED') AND updated < ?"
                 % ", ".join(_COLUMNS))
        with self._lock:
            rows = [dict(zip(_COLUMNS, r)) for r in self._db.execute(query, (before,)).fetchall()]
            self._db.execute("DELETE FROM jobs WHERE state IN ('COMPLETED', 'FAILED', 'CANCELED')"
                             " AND updated < ?", (before,))
        return [_public(r) for r in rows]

    def set_psij_id(self, job_id: str, psij_id: str) -> None:
        """psij's own id of the job: a batch executor names its submit script by it, which
        only the psij.Job that submitted it removes (not one attached after a restart)."""
        with self._lock:
            self._db.execute("UPDATE jobs SET psij_id = ? WHERE job_id = ?", (psij_id, job_id))

    def set_native(self, job_id: str, native_id: str, process_started: Optional[float] = None,
                   message: Optional[str] = None) -> None:
        """Record the native id (and ``message``, when given) without a transition."""
        with self._lock:
            self._db.execute("UPDATE jobs SET native_id = COALESCE(native_id, ?),"
                             " process_started = COALESCE(?, process_started), message = COALESCE(?, message),"
                             " updated = ? WHERE job_id = ?",
                             (native_id, process_started, message, time.time(), job_id))

    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET cancel_requested = 1, updated = ? WHERE job_id = ?",
                             (time.time(), job_id))

    def advance(self, job_id: str, state: str, exit_code: Optional[int], message: Optional[str],
                when: float, note: Callable[[Dict[str, Any]], Tuple[str, Any]],
                native: Optional[str] = None, process_started: Optional[float] = None
                ) -> Optional[Tuple[Dict[str, Any], int, str, Any]]:
        """Move the job to ``state`` if that is forward of its recorded state, and record
        ``note(record)`` (topic, data) as the next pending notification in the same
        transaction (with the native id and process start time, when given and not yet
        known: one commit where there were three): (record, seq, topic, data), or None when
        the job is not moved (already there, or past it)."""
        with self._lock:
            row = self._row(job_id)
            if row is None or RANK[state] <= RANK[row["state"]]:
                return None
            history = json.loads(row["history"]) + [[state, when]]
            row.update(state=state, exit_code=exit_code, message=message, history=json.dumps(history),
                       updated=when, native_id=row["native_id"] if row["native_id"] is not None else native,
                       process_started=row["process_started"] if row["process_started"] is not None
                       else process_started)
            record = _public(row)
            topic, data = note(record)
            seq = self._seq + 1
            self._db.execute("BEGIN")
            try:
                self._db.execute("UPDATE jobs SET state = ?, exit_code = ?, message = ?, history = ?,"
                                 " updated = ?, native_id = ?, process_started = ? WHERE job_id = ?",
                                 (state, exit_code, message, row["history"], when, row["native_id"],
                                  row["process_started"], job_id))
                self._db.execute("INSERT INTO notes VALUES (?,?,?)", (seq, topic, json.dumps(data)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._seq = seq
            return record, seq, topic, data

    def pending_notes(self, after: int = 0, limit: int = -1) -> List[Tuple[int, str, Any]]:
        """The notifications the bridge has not acknowledged, in order: (seq, topic, data),
        those after ``after``, at most ``limit`` (-1: all); the durable stream's ``read``."""
        with self._lock:
            rows = self._db.execute("SELECT seq, topic, data FROM notes WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after, limit)).fetchall()
        return [(seq, topic, json.loads(data)) for seq, topic, data in rows]

    def notes_acked(self, acked: int) -> None:
        """The bridge has every notification up to ``acked`` in its event log."""
        with self._lock:
            if acked <= self.acked:
                return
            self.acked = acked
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM notes WHERE seq <= ?", (acked,))
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'acked'", (str(acked),))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def get(self, job_id: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            row = self._row(job_id)
        return _public(row) if row else None

    def by_key(self, key: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            cur = self._db.execute("SELECT %s FROM jobs WHERE submit_key = ?" % ", ".join(_COLUMNS), (key,))
            found = cur.fetchone()
        return _public(dict(zip(_COLUMNS, found))) if found else None

    def all(self, limit: int, unfinished_only: bool = False) -> List[Dict[str, Any]]:
        """The newest ``limit`` jobs first (``unfinished_only``: every job not yet terminal)."""
        query = "SELECT %s FROM jobs" % ", ".join(_COLUMNS)
        if unfinished_only:
            query += " WHERE state NOT IN ('COMPLETED', 'FAILED', 'CANCELED')"
        query += " ORDER BY created DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (limit,)).fetchall()
        return [_public(dict(zip(_COLUMNS, r))) for r in rows]

    def _row(self, job_id: str) -> Optional[Dict[str, Any]]:
        cur = self._db.execute("SELECT %s FROM jobs WHERE job_id = ?" % ", ".join(_COLUMNS), (job_id,))
        found = cur.fetchone()
        return dict(zip(_COLUMNS, found)) if found else None


def _public(row: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(row)
    out["spec"] = json.loads(row["spec"]) if isinstance(row["spec"], str) else row["spec"]
    out["history"] = json.loads(row["history"]) if isinstance(row["history"], str) else row["history"]
    out["cancel_requested"] = bool(row["cancel_requested"])
    return out
