"""The durable record of every job an instance submitted: one sqlite3 file.

A job is written (state NEW) before it goes to the executor and its native id as soon
as the executor gives one, so a ``kill -9`` at any later moment leaves enough to list
the job and attach to it again. The state column is the last state that was *notified*:
a transition is published only when it moves this column forward, which is what makes
each ``job_status`` notification happen once, across restarts too. WAL with
``synchronous=NORMAL``: a commit survives the process dying (not the machine losing
power), at a fraction of a full fsync per transition.
"""
import json
import os
import sqlite3
import threading
import time
from typing import Any, Dict, List, Optional

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
    process_started REAL
)
"""
_COLUMNS = ("job_id", "submit_key", "executor", "native_id", "state", "exit_code", "message", "spec",
            "stdout_path", "stderr_path", "sid", "created", "updated", "cancel_requested", "history",
            "process_started")


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
            self._db.execute("CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created)")
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

    def set_native(self, job_id: str, native_id: str, process_started: Optional[float] = None) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET native_id = COALESCE(native_id, ?),"
                             " process_started = COALESCE(?, process_started), updated = ? WHERE job_id = ?",
                             (native_id, process_started, time.time(), job_id))

    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET cancel_requested = 1, updated = ? WHERE job_id = ?",
                             (time.time(), job_id))

    def advance(self, job_id: str, state: str, exit_code: Optional[int], message: Optional[str],
                when: float) -> Optional[Dict[str, Any]]:
        """Move the job to ``state`` if that is forward of its recorded state; the updated
        record, or None when it is not (already there, or past it)."""
        with self._lock:
            row = self._row(job_id)
            if row is None or RANK[state] <= RANK[row["state"]]:
                return None
            history = json.loads(row["history"]) + [[state, when]]
            self._db.execute("UPDATE jobs SET state = ?, exit_code = ?, message = ?, history = ?, updated = ?"
                             " WHERE job_id = ?",
                             (state, exit_code, message, json.dumps(history), when, job_id))
            row.update(state=state, exit_code=exit_code, message=message, history=json.dumps(history),
                       updated=when)
            return _public(row)

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
