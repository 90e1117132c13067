"""Bodies in and answers out: JSON or msgpack, and task descriptions checked field by field.

A body is JSON (``application/json``; pickled fields as base64 text) or msgpack
(``application/msgpack``; pickled fields as raw bytes, the SDK's choice: no base64, and
a 10,000-task batch decodes in milliseconds). An answer is msgpack when the request's
``Accept`` names ``application/msgpack``, else JSON.

Two forms of ``submit``: ``tasks`` (one description per task) and the compact
``template`` form for homogeneous batches (``items``: per-task fields merged over the
template, or ``args_list``: one pickle of a list of argument tuples, one task each).
"""
import base64
import binascii
import json
import pickle
import re
from typing import Any, Dict, List, Optional, Tuple

import msgpack

from ...errors import BadRequest, Forbidden, PayloadTooLarge
from ...plugin import Request, Response

MSGPACK = "application/msgpack"
#: fields that carry pickles (bytes; base64 text in JSON)
PICKLED = ("function", "args", "kwargs")
TASK_FIELDS = frozenset(("uid", "name", "executable", "arguments", "cwd", "env", "shell",
                         "backend_kwargs") + PICKLED)
UID_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
MAX_NAME = 256
PYTHON_RE = re.compile(r"^(\d+)\.(\d+)")


class _ListedArgs:
    """The key under which an ``args_list`` entry's arguments join its task: not a
    string, so no body (JSON or msgpack) can send it as a field of its own."""

    def __repr__(self) -> str:
        return "<args_list entry>"


LISTED_ARGS = _ListedArgs()


def read_body(req: Request) -> Dict[str, Any]:
    """The body as a map, from msgpack or JSON (base64 pickles decoded to bytes)."""
    if req.content_type.split(";")[0].strip().lower() == MSGPACK:
        try:
            body = msgpack.unpackb(req.body, raw=False, object_pairs_hook=_string_keyed)
        except Exception as exc:
            raise BadRequest("request body is not valid msgpack: %s" % exc)
        if not isinstance(body, dict):
            raise BadRequest("request body must be a msgpack map")
        return body
    body = req.json_object()
    _unbase64(body.get("template"), "template")
    for key in ("tasks", "items"):
        tasks = body.get(key)
        for i, task in enumerate(tasks if isinstance(tasks, list) else ()):
            _unbase64(task, "%s %d" % (key[:-1], i))
    if isinstance(body.get("args_list"), str):
        body["args_list"] = _b64(body["args_list"], "args_list")
    return body


def _string_keyed(pairs: List[Tuple[Any, Any]]) -> Dict[str, Any]:
    """A msgpack map, whose keys must be strings (as in JSON): a bytes key would reach
    every check of field names."""
    for key, _ in pairs:
        if not isinstance(key, str):
            raise ValueError(("map keys must be strings, not %s %r" % (type(key).__name__, key))[:120])
    return dict(pairs)


def _unbase64(task: Any, where: str) -> None:
    if isinstance(task, dict):
        for field in PICKLED:
            if isinstance(task.get(field), str):
                task[field] = _b64(task[field], "%s: %s" % (where, field))


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("%s must be base64 text in a JSON body" % what)


def wants_msgpack(req: Request) -> bool:
    return MSGPACK in req.headers.get("accept", "")


def answer(req: Request, data: Any) -> Any:
    """``data`` as msgpack when the caller asked for it; else JSON-able (bytes as base64).
    Text that is not Unicode (a file name's undecodable bytes, surrogate-escaped, in an
    exception message) goes as ``\\udcff``, as JSON writes it, instead of failing the answer."""
    if wants_msgpack(req):
        return Response(msgpack.packb(data, use_bin_type=True, unicode_errors="backslashreplace"),
                        content_type=MSGPACK)
    return Response(json.dumps(_jsonable(data)).encode(), content_type="application/json")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    return value


def python_minor(version: str) -> Optional[Tuple[int, int]]:
    found = PYTHON_RE.match(version or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


class Spec:
    """One checked task description: the rhapsody task fields, without a uid yet."""

    __slots__ = ("uid", "name", "kind", "fields")

    def __init__(self, uid: Optional[str], name: Optional[str], kind: str, fields: Dict[str, Any]):
        self.uid = uid
        self.name = name
        self.kind = kind
        self.fields = fields


def parse_submit(body: Dict[str, Any], max_tasks: int, allow_pickle: bool,
                 endpoint_python: str) -> List[Spec]:
    """The tasks of a ``submit`` body, checked; 400 (403 for pickles when forbidden) else."""
    unknown = sorted(set(body) - {"tasks", "template", "items", "args_list", "python"})
    if unknown:
        raise BadRequest("unknown submit fields %s (known: tasks, template, items, args_list, python)" % unknown)
    if _carries_pickles(body):
        _check_pickles(body.get("python"), allow_pickle, endpoint_python)
    raw = _raw_tasks(body, max_tasks)
    functions: Dict[bytes, Any] = {}
    return [_spec(task, i, functions) for i, task in enumerate(raw)]


def _carries_pickles(body: Dict[str, Any]) -> bool:
    """Whether any part of the body is a pickle, judged before a byte of one is loaded:
    loading a pickle runs code, so allow_pickle and the Python version come first."""
    if "args_list" in body:
        return True
    maps = [body.get("template")]
    for key in ("tasks", "items"):
        if isinstance(body.get(key), list):
            maps.extend(body[key])
    return any(isinstance(m, dict) and any(field in m for field in PICKLED) for m in maps)


def _raw_tasks(body: Dict[str, Any], max_tasks: int) -> List[Dict[str, Any]]:
    tasks, template = body.get("tasks"), body.get("template")
    if (tasks is None) == (template is None):
        raise BadRequest("submit needs either 'tasks' (a list) or 'template' (a map), not both")
    if tasks is not None:
        if "items" in body or "args_list" in body:
            raise BadRequest("'items' and 'args_list' go with 'template', not with 'tasks'")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise BadRequest("'tasks' must be a list of maps")
        _cap(len(tasks), max_tasks)
        return tasks
    if not isinstance(template, dict):
        raise BadRequest("'template' must be a map of task fields")
    items, args_list = body.get("items"), body.get("args_list")
    if (items is None) == (args_list is None):
        raise BadRequest("a template needs either 'items' (a list of maps) or 'args_list' (a pickled list)")
    if items is not None:
        if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
            raise BadRequest("'items' must be a list of maps")
        _cap(len(items), max_tasks)
        out = []
        for item in items:
            task = dict(template)
            task.update(item)
            out.append(task)
        return out
    if not isinstance(args_list, bytes):
        raise BadRequest("'args_list' must be a pickle (bytes) of a list of argument tuples")
    if "function" not in template:
        raise BadRequest("'args_list' needs a function template")
    if "args" in template:
        raise BadRequest("a template with 'args_list' takes no 'args': each task's 'args' goes in args_list")
    out = []
    for args in _args_list(args_list, max_tasks):
        task = dict(template)
        task[LISTED_ARGS] = args
        out.append(task)
    return out


def _args_list(data: bytes, max_tasks: int) -> List[tuple]:
    value = _unpickle(data, "args_list")
    if not isinstance(value, (list, tuple)):
        raise BadRequest("'args_list' must be a pickled list of argument tuples")
    _cap(len(value), max_tasks)
    out = []
    for i, args in enumerate(value):
        if not isinstance(args, (list, tuple)):
            raise BadRequest("args_list item %d must be a tuple of arguments" % i)
        out.append(tuple(args))
    return out


def _cap(count: int, max_tasks: int) -> None:
    if count > max_tasks:
        raise PayloadTooLarge("%d tasks in one call; at most %d (setting max_tasks_per_call): "
                              "send them in batches" % (count, max_tasks))
    if count == 0:
        raise BadRequest("no tasks to submit")


def _check_pickles(python: Any, allow_pickle: bool, endpoint_python: str) -> None:
    if not allow_pickle:
        raise Forbidden("pickled (Python function) tasks are disabled on this endpoint "
                        "(rhapsody setting allow_pickle); submit executable tasks")
    client = python_minor(python) if isinstance(python, str) else None
    if client is None:
        raise BadRequest("pickled tasks need 'python': the client's Python version (e.g. \"3.11\")")
    here = python_minor(endpoint_python)
    if client != here:
        raise BadRequest("Python version mismatch: the client runs Python %d.%d, the endpoint Python %s; "
                         "pickled functions only travel between the same minor version. Use a "
                         "Python %s client, or executable tasks" % (client + (endpoint_python,)
                                                                     + ("%d.%d" % here,)))


def _spec(task: Dict[str, Any], i: int, functions: Dict[bytes, Any]) -> Spec:
    unknown = sorted(set(task) - TASK_FIELDS - {LISTED_ARGS})
    if unknown:
        raise BadRequest("task %d: unknown fields %s (known: %s)" % (i, unknown, ", ".join(sorted(TASK_FIELDS))))
    uid = task.get("uid")
    if uid is not None and (not isinstance(uid, str) or not UID_RE.match(uid)):
        raise BadRequest("task %d: uid must match %s" % (i, UID_RE.pattern))
    name = task.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
        raise BadRequest("task %d: name must be a string of at most %d characters" % (i, MAX_NAME))
    extra = task.get("backend_kwargs")
    if extra is not None and not isinstance(extra, dict):
        raise BadRequest("task %d: backend_kwargs must be a map" % i)
    has_exe, has_fn = task.get("executable") is not None, task.get("function") is not None
    if has_exe == has_fn:
        raise BadRequest("task %d: give exactly one of 'executable' and 'function'" % i)
    if has_fn:
        return Spec(uid, name, "function", _function_fields(task, i, functions, extra))
    return Spec(uid, name, "executable", _executable_fields(task, i, extra))


def _function_fields(task: Dict[str, Any], i: int, functions: Dict[bytes, Any],
                     extra: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    for field in ("arguments", "cwd", "env", "shell"):
        if field in task:
            raise BadRequest("task %d: %r belongs to executable tasks" % (i, field))
    data = task["function"]
    if not isinstance(data, bytes):
        raise BadRequest("task %d: function must be a pickle (bytes)" % i)
    func = functions.get(data)
    if func is None:
        func = functions[data] = _unpickle(data, "task %d: function" % i)
        if not callable(func):
            raise BadRequest("task %d: function does not unpickle to a callable" % i)
    if LISTED_ARGS in task:
        args = task[LISTED_ARGS]
    else:
        args = _unpickle(task["args"], "task %d: args" % i) if task.get("args") is not None else ()
        if not isinstance(args, (list, tuple)):
            raise BadRequest("task %d: args must unpickle to a tuple" % i)
    kwargs = _unpickle(task["kwargs"], "task %d: kwargs" % i) if task.get("kwargs") is not None else {}
    if not isinstance(kwargs, dict):
        raise BadRequest("task %d: kwargs must unpickle to a dict" % i)
    fields = {"function": func, "args": tuple(args), "kwargs": kwargs}
    if extra:
        fields["task_backend_specific_kwargs"] = dict(extra)
    return fields


def _executable_fields(task: Dict[str, Any], i: int, extra: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    for field in ("args", "kwargs"):
        if field in task:
            raise BadRequest("task %d: %r belongs to function tasks ('arguments' for executables)" % (i, field))
    exe = task["executable"]
    if not isinstance(exe, str) or not exe:
        raise BadRequest("task %d: executable must be a non-empty string" % i)
    arguments = task.get("arguments", [])
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise BadRequest("task %d: arguments must be a list of strings" % i)
    # cwd, env and shell may come in backend_kwargs too (the backend reads them there):
    # checked the same wherever they come from, the task's own fields winning
    kwargs = dict(extra or {})
    cwd, env, shell = (task[k] if task.get(k) is not None else kwargs.get(k) for k in ("cwd", "env", "shell"))
    if cwd is not None:
        if not isinstance(cwd, str) or not cwd:
            raise BadRequest("task %d: cwd must be a non-empty string" % i)
        kwargs["cwd"] = cwd
    if env is not None:
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise BadRequest("task %d: env must map strings to strings" % i)
        kwargs["env"] = env
    if shell is not None:
        if not isinstance(shell, bool):
            raise BadRequest("task %d: shell must be true or false" % i)
        kwargs["shell"] = shell
    fields = {"executable": exe, "arguments": list(arguments)}
    if kwargs:
        fields["task_backend_specific_kwargs"] = kwargs
    return fields


def _unpickle(data: Any, what: str) -> Any:
    if not isinstance(data, bytes):
        raise BadRequest("%s must be a pickle (bytes)" % what)
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise BadRequest("%s cannot be unpickled on this endpoint: %s: %s" % (what, type(exc).__name__, exc))
