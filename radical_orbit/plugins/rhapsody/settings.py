"""The rhapsody plugin's settings: plugin config (``--plugin-config rhapsody=JSON``) over
the environment over the defaults below. A session's own options override the backend
choice (``backend``, ``dask_scheduler``, ``workers``)."""
import os
from typing import Any, Dict, Optional

from ... import config as orbit_config

ENV_BACKEND = "RADICAL_ORBIT_RHAPSODY_BACKEND"
ENV_DASK_SCHEDULER = "RADICAL_ORBIT_RHAPSODY_DASK_SCHEDULER"
ENV_ALLOW_PICKLE = "RADICAL_ORBIT_RHAPSODY_ALLOW_PICKLE"

DEFAULT_BACKEND = "concurrent"
#: Seconds task state changes are gathered into one ``task_status`` notification.
NOTIFY_WINDOW = 0.1
#: Task states in one ``task_status`` notification at most; a full batch goes at once.
NOTIFY_BATCH = 2000
#: Tasks one ``submit`` call may carry.
MAX_TASKS_PER_CALL = 100000
#: Task records a session keeps; beyond, the oldest finished ones are forgotten.
MAX_RECORDS = 200000
#: The longest (s) a ``wait`` call may hold an endpoint worker.
MAX_WAIT = 10.0
#: Bytes of task records one ``wait`` answer carries at most (always at least one record):
#: the finished tasks beyond wait for the next call, so that thousands of tasks with large
#: outputs or values never make one answer of gigabytes on the endpoint, bridge and client.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: Seconds a worker waits for the event loop to accept a batch, a cancel, a close.
CALL_TIMEOUT = 60.0
#: Seconds a session's backend may take to start (a Dask scheduler to answer).
INIT_TIMEOUT = 60.0
#: Bytes of an executable task's stdout, and of its stderr, the endpoint keeps (the rest is
#: read and dropped, so a task that prints gigabytes cannot exhaust the endpoint's memory).
MAX_OUTPUT = 4 * 1024 * 1024
#: Characters of a return value's repr, of stdout and of stderr a JSON answer shows.
TEXT_CAP = 64 * 1024

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class Settings:
    """One plugin instance's settings, checked once at load (a bad value stops the load
    with a clear ``ValueError``)."""

    def __init__(self, config: Dict[str, Any], environ: Optional[Dict[str, str]] = None):
        env = os.environ if environ is None else environ
        known = {"backend", "dask_scheduler", "allow_pickle", "workers", "notify_window",
                 "notify_batch", "max_tasks_per_call", "max_records", "max_wait", "max_answer_bytes",
                 "call_timeout", "init_timeout", "work_dir"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError("rhapsody: unknown settings %s (known: %s)" % (unknown, ", ".join(sorted(known))))
        self.backend = _text(config.get("backend") or env.get(ENV_BACKEND) or DEFAULT_BACKEND, "backend")
        self.dask_scheduler = config.get("dask_scheduler") or env.get(ENV_DASK_SCHEDULER) or None
        if self.dask_scheduler is not None:
            self.dask_scheduler = _text(self.dask_scheduler, "dask_scheduler")
        self.allow_pickle = _flag(config.get("allow_pickle", env.get(ENV_ALLOW_PICKLE, True)), "allow_pickle")
        self.workers = _number(config.get("workers"), "workers", 1, 4096, int) if config.get("workers") else None
        self.notify_window = _number(config.get("notify_window", NOTIFY_WINDOW), "notify_window", 0.0, 60.0)
        self.notify_batch = _number(config.get("notify_batch", NOTIFY_BATCH), "notify_batch", 1, 100000, int)
        self.max_tasks_per_call = _number(config.get("max_tasks_per_call", MAX_TASKS_PER_CALL),
                                          "max_tasks_per_call", 1, 10**7, int)
        self.max_records = _number(config.get("max_records", MAX_RECORDS), "max_records", 1, 10**8, int)
        self.max_wait = _number(config.get("max_wait", MAX_WAIT), "max_wait", 0.0, 3600.0)
        self.max_answer_bytes = _number(config.get("max_answer_bytes", MAX_ANSWER_BYTES), "max_answer_bytes",
                                        1024, 2**40, int)
        self.call_timeout = _number(config.get("call_timeout", CALL_TIMEOUT), "call_timeout", 1.0, 3600.0)
        self.init_timeout = _number(config.get("init_timeout", INIT_TIMEOUT), "init_timeout", 1.0, 3600.0)
        self.work_dir = os.path.expanduser(_text(config.get("work_dir")
                                                 or orbit_config.path_in_home("rhapsody"), "work_dir"))


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("rhapsody: setting %s must be a non-empty string" % name)
    return value.strip()


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("rhapsody: setting %s must be true or false, not %r" % (name, value))


def _number(value: Any, name: str, low: float, high: float, kind: type = float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (kind is int and not isinstance(value, int)):
        raise ValueError("rhapsody: setting %s must be a%s number" % (name, "n integer" if kind is int else ""))
    if not low <= value <= high:
        raise ValueError("rhapsody: setting %s must be between %s and %s" % (name, low, high))
    return kind(value)
