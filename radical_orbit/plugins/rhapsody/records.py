"""What a session remembers of each task, and how a record travels.

A record is filled on the event loop when rhapsody reports a state; it is turned into a
map only when someone asks (``wait``, ``task``, ``list_tasks``), on the worker that
answers: the return value is pickled then, once, not on the loop for every task.
Return values and exceptions travel as pickles so that they keep their type; an
exception also travels as text (type, message, traceback) for callers that cannot
unpickle it, and for the Explorer.
"""
import pickle
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

import cloudpickle

TERMINAL = frozenset(("DONE", "FAILED", "CANCELED"))
NEW = "NEW"


class TaskRecord:
    __slots__ = ("uid", "name", "kind", "state", "created", "finished", "exit_code", "stdout",
                 "stderr", "value", "has_value", "exception", "_value_pickle", "_error")

    def __init__(self, uid: str, name: Optional[str], kind: str, created: float):
        self.uid = uid
        self.name = name
        self.kind = kind
        self.state = NEW
        self.created = created
        self.finished: Optional[float] = None
        self.exit_code: Optional[int] = None
        self.stdout: Optional[str] = None
        self.stderr: Optional[str] = None
        self.value: Any = None
        self.has_value = False
        self.exception: Optional[BaseException] = None
        self._value_pickle: Optional[bytes] = None
        self._error: Optional[Dict[str, Any]] = None

    def finish(self, task: Dict[str, Any], state: str) -> None:
        """Take the results off rhapsody's task (on the loop; no pickling here)."""
        self.state = state
        self.finished = time.time()
        exc = task.get("exception")
        if isinstance(exc, BaseException):
            self.exception = exc
        if self.kind == "executable":
            self.exit_code = task.get("exit_code")
            self.stdout = _text(task.get("stdout"))
            self.stderr = _text(task.get("stderr"))
        elif state == "DONE":
            self.value = task.get("return_value")
            self.has_value = True
            self.exit_code = 0
        elif state == "FAILED":
            self.exit_code = task.get("exit_code", 1)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def summary(self) -> Dict[str, Any]:
        """The short form ``list_tasks`` shows: no outputs, no values."""
        return {"uid": self.uid, "name": self.name, "kind": self.kind, "state": self.state,
                "exit_code": self.exit_code, "created": self.created, "finished": self.finished}

    def full(self, text_cap: Optional[int] = None) -> Dict[str, Any]:
        """Everything: outputs, the pickled return value, the exception. ``text_cap``
        (JSON answers) also adds the value's repr and caps the texts for display."""
        out = self.summary()
        if self.kind == "executable":
            out["stdout"] = _cap(self.stdout, text_cap)
            out["stderr"] = _cap(self.stderr, text_cap)
        if self.has_value:
            out["return_value"] = self.value_pickle()
            if text_cap is not None:
                out["return_text"] = _cap(_repr(self.value), text_cap)
        if self.exception is not None:
            out["exception"] = self.error()
        return out

    def value_pickle(self) -> bytes:
        if self._value_pickle is None:
            self._value_pickle = dumps(self.value)
        return self._value_pickle

    def error(self) -> Dict[str, Any]:
        if self._error is None:
            self._error = describe_exception(self.exception)  # type: ignore[arg-type]
        return self._error


def answer_records(records: List[TaskRecord], text_cap: Optional[int],
                   budget: int) -> Tuple[List[Dict[str, Any]], List[str]]:
    """The full forms of ``records`` up to about ``budget`` bytes (the first one always),
    and the uids of those held back for a later answer."""
    out: List[Dict[str, Any]] = []
    size = 0
    for i, record in enumerate(records):
        full = record.full(text_cap)
        cost = _size(full)
        if out and size + cost > budget:
            return out, [r.uid for r in records[i:]]
        out.append(full)
        size += cost
    return out, []


def _size(value: Any) -> int:
    """About what ``value`` weighs in an answer (strings and bytes count; base64 adds a third)."""
    if isinstance(value, dict):
        return sum(_size(v) for v in value.values()) + 16 * len(value)
    if isinstance(value, (bytes, bytearray)):
        return len(value) * 4 // 3
    if isinstance(value, str):
        return len(value)
    return 8


def dumps(value: Any) -> bytes:
    """The stdlib pickle where it can (fast for plain data), cloudpickle where it cannot."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def describe_exception(exc: BaseException) -> Dict[str, Any]:
    """Type, message and traceback as text, and the exception pickled where it pickles."""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else "%s.%s" % (cls.__module__, cls.__qualname__)
    try:
        data: Optional[bytes] = cloudpickle.dumps(exc)
        pickle.loads(data)
    except Exception:
        data = None
    message = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else None
    return {"type": name, "message": str(message) if message is not None else str(exc),
            "traceback": "".join(traceback.format_exception(cls, exc, exc.__traceback__)),
            "pickle": data}


def _text(value: Any) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return "<unprintable %s: %s>" % (type(value).__name__, exc)


def _cap(text: Optional[str], cap: Optional[int]) -> Optional[str]:
    if text is None or cap is None or len(text) <= cap:
        return text
    return text[:cap] + "\n[... %d more characters]" % (len(text) - cap)
