"""A fake Globus (Transfer API v0.10 and the Auth token endpoint) for tests: a real
local HTTP server process that the real ``globus-sdk`` talks to through its base-URL
overrides (``GLOBUS_SDK_SERVICE_URL_TRANSFER`` / ``_AUTH``).

It checks what it receives the way Globus does (a Bearer token it issued on every
Transfer call, well-formed task documents, known collections, a client's credentials
on a token grant), keeps collections as small in-memory file trees that finished
transfers really change, and records every request for the test to inspect. Under
``/_fake/`` a test injects failures (a consent-required error, a 429 with Retry-After,
any status, an HTML or garbage body, a slow answer), expires the tokens it issued,
holds tasks active until released, and reads the record.

Run: ``python test/fake_globus.py --config FILE`` (JSON: ``access_tokens``,
``refresh_tokens`` {token: client_id}, ``clients`` {client_id: secret or null}); it
prints ``FAKE GLOBUS http://127.0.0.1:PORT`` when it listens. ``FakeGlobus`` starts
one from a test.
"""
import argparse
import base64
import copy
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

TRANSFER_RS = "transfer.api.globus.org"
TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"
HOME = "/home/fake/"
#: the two collections every fake starts with: ids, names, files (path -> size)
COLLECTIONS = {
    "aaaaaaaa-0000-4000-8000-000000000001": ("Fake Lab Collection", {"data/run1.h5": 1000,
                                                                     "data/run2.h5": 2500,
                                                                     "notes.txt": 12}),
    "bbbbbbbb-0000-4000-8000-000000000002": ("Fake HPC Scratch", {"incoming/.keep": 0}),
}
LINE = "FAKE GLOBUS "


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


class Collection:
    """A collection's file tree: absolute paths of directories (ending in ``/``) and files."""

    def __init__(self, cid: str, name: str, files: Dict[str, int]):
        self.id, self.name = cid, name
        self.dirs = {"/", "/home/", HOME}
        self.files: Dict[str, int] = {}
        for rel, size in files.items():
            self.add_file(HOME + rel, size)

    @staticmethod
    def norm(path: str) -> str:
        if path.startswith("/~/"):
            path = HOME + path[3:]
        elif path in ("~", "/~"):
            path = HOME
        return path

    def add_file(self, path: str, size: int) -> None:
        self._parents(path)
        self.files[path] = size

    def _parents(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dirs.add("/" + "/".join(parts[:i]) + "/")

    def is_dir(self, path: str) -> bool:
        return (path if path.endswith("/") else path + "/") in self.dirs

    def listing(self, path: str) -> List[Dict[str, Any]]:
        base = path if path.endswith("/") else path + "/"
        out = []
        for d in sorted(self.dirs):
            if d != base and d.startswith(base) and "/" not in d[len(base):-1]:
                out.append(_entry(d[len(base):-1], "dir", 4096))
        for f, size in sorted(self.files.items()):
            if f.startswith(base) and "/" not in f[len(base):]:
                out.append(_entry(f[len(base):], "file", size))
        return out

    def copy(self, src: "Collection", source: str, dest: str, recursive: bool) -> Tuple[int, int]:
        """Copies ``source`` of ``src`` to ``dest`` here; (files, bytes)."""
        if not recursive:
            if source not in src.files:
                raise KeyError(source)
            self.add_file(dest, src.files[source])
            return 1, src.files[source]
        base = source if source.endswith("/") else source + "/"
        if base not in src.dirs:
            raise KeyError(source)
        target = dest if dest.endswith("/") else dest + "/"
        self._parents(target + "x")
        files = size = 0
        for d in list(src.dirs):
            if d.startswith(base):
                self.dirs.add(target + d[len(base):])
        for f, n in list(src.files.items()):
            if f.startswith(base):
                self.add_file(target + f[len(base):], n)
                files, size = files + 1, size + n
        return files, size

    def remove(self, path: str) -> bool:
        if path in self.files:
            del self.files[path]
            return True
        base = path if path.endswith("/") else path + "/"
        if base not in self.dirs:
            return False
        self.dirs = {d for d in self.dirs if not d.startswith(base)}
        self.files = {f: n for f, n in self.files.items() if not f.startswith(base)}
        return True

    def doc(self) -> Dict[str, Any]:
        return {"DATA_TYPE": "endpoint", "id": self.id, "display_name": self.name,
                "canonical_name": "fake#" + self.name.lower().replace(" ", "-"),
                "owner_string": "fake@globusid.org", "entity_type": "GCP_mapped_collection",
                "gcp_connected": True, "activated": True, "is_globus_connect": True,
                "description": "a collection of the fake Globus", "DATA": []}


def _entry(name: str, kind: str, size: int) -> Dict[str, Any]:
    return {"DATA_TYPE": "file", "name": name, "type": kind, "size": size,
            "last_modified": "2026-12-01 00:00:00+00:00", "permissions": "0644" if kind == "file" else "0755",
            "user": "fake", "group": "fake", "link_target": None}


class State:
    """Everything the fake knows; one lock guards it all."""

    def __init__(self, config: Dict[str, Any]):
        self.lock = threading.Lock()
        self.static_tokens = set(config.get("access_tokens", []))
        self.refresh_tokens: Dict[str, str] = dict(config.get("refresh_tokens", {}))
        self.clients: Dict[str, Optional[str]] = dict(config.get("clients", {}))
        self.issued: Dict[str, float] = {}           # access token -> expiry (monotonic)
        self.token_lifetime = float(config.get("token_lifetime", 3600))
        self.task_seconds = float(config.get("task_seconds", 1.0))
        self.hold = False                             # True: no task completes until released
        self.collections = {cid: Collection(cid, name, files) for cid, (name, files) in COLLECTIONS.items()}
        self.tasks: Dict[str, Dict[str, Any]] = {}
        self.submissions: Dict[str, str] = {}       # submission id -> task id
        self.submission_ids: set = set()
        self.injections: List[Dict[str, Any]] = []
        self.log: List[Dict[str, Any]] = []

    def token_ok(self, token: str) -> bool:
        if token in self.static_tokens:
            return True
        expiry = self.issued.get(token)
        return expiry is not None and expiry > time.monotonic()

    def issue(self, refresh: Optional[str] = None) -> Dict[str, Any]:
        token = "fake-at-" + secrets.token_hex(12)
        self.issued[token] = time.monotonic() + self.token_lifetime
        answer = {"access_token": token, "expires_in": int(self.token_lifetime),
                  "resource_server": TRANSFER_RS, "scope": TRANSFER_SCOPE,
                  "token_type": "Bearer", "other_tokens": []}
        if refresh:
            answer["refresh_token"] = refresh
        return answer

    def advance(self) -> None:
        """Finish the tasks whose time has come (their copies or deletions happen now)."""
        now = time.monotonic()
        if self.hold:
            return
        for task in self.tasks.values():
            if task["status"] == "ACTIVE" and now >= task["_due"]:
                self._complete(task)

    def _complete(self, task: Dict[str, Any]) -> None:
        try:
            if task["type"] == "TRANSFER":
                src = self.collections[task["source_endpoint_id"]]
                dst = self.collections[task["destination_endpoint_id"]]
                for item in task["_items"]:
                    files, size = dst.copy(src, Collection.norm(item["source_path"]),
                                           Collection.norm(item["destination_path"]),
                                           bool(item.get("recursive")))
                    task["files_transferred"] += files
                    task["bytes_transferred"] += size
            else:
                coll = self.collections[task["source_endpoint_id"]]
                for item in task["_items"]:
                    if not coll.remove(Collection.norm(item["path"])):
                        raise KeyError(item["path"])
            task.update(status="SUCCEEDED", nice_status=None, completion_time=_now(),
                        subtasks_succeeded=task["subtasks_total"])
        except KeyError as exc:
            task.update(status="FAILED", nice_status="FILE_NOT_FOUND", completion_time=_now(),
                        subtasks_failed=1, faults=1, is_ok=False,
                        fatal_error={"code": "FILE_NOT_FOUND", "description": "No such file: %s" % exc})


def _public(task: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in task.items() if not k.startswith("_")}


class GlobusError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGlobus/1.0"
    state: State = None  # type: ignore[assignment]

    def log_message(self, fmt: str, *args: Any) -> None:   # the record is the log
        pass

    # -- plumbing -------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, data: Any, headers: Optional[Dict[str, str]] = None) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw = self._body()
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            try:
                body: Any = json.loads(raw or b"null")
            except ValueError:
                body = {"_unparsable": raw.decode("utf-8", "replace")}
        elif "form" in ctype:
            body = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        else:
            body = raw.decode("utf-8", "replace") if raw else None
        auth = self.headers.get("Authorization", "")
        st = self.state
        if url.path.startswith("/_fake/"):
            return self._control(method, url.path[len("/_fake/"):], body)
        with st.lock:
            st.log.append({"method": method, "path": url.path, "query": query, "body": body,
                           "auth": auth, "t": time.time()})
            injected = self._injected(method, url.path)
        if injected is not None:
            return self._answer_injected(injected)
        try:
            if url.path == "/v2/oauth2/token":
                status, data = self._token(method, body, auth)
            else:
                status, data = self._transfer(method, url.path, query, body, auth)
            self._send(status, data)
        except GlobusError as err:
            doc = {"code": err.code, "message": err.message, "request_id": uuid.uuid4().hex[:9]}
            doc.update(err.extra)
            self._send(err.status, doc)

    def _answer_injected(self, inj: Dict[str, Any]) -> None:
        """An injected answer: after ``delay`` s, ``status`` with the JSON ``body``, or
        with ``raw`` text (an HTML error page, garbage) of type ``content_type``."""
        if inj.get("delay"):
            time.sleep(float(inj["delay"]))
        if "raw" not in inj:
            return self._send(inj.get("status", 500), inj.get("body", {}), inj.get("headers"))
        raw = inj["raw"].encode()
        self.send_response(inj.get("status", 200))
        self.send_header("Content-Type", inj.get("content_type", "text/html"))
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _injected(self, method: str, path: str) -> Optional[Dict[str, Any]]:
        for inj in self.state.injections:
            if inj.get("method") not in (None, method) or not re.search(inj.get("path", ""), path):
                continue
            inj["count"] = inj.get("count", 1) - 1
            if inj["count"] <= 0:
                self.state.injections.remove(inj)
            return inj
        return None

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # -- the test's controls ---------------------------------------------------------
    def _control(self, method: str, what: str, body: Any) -> None:
        st = self.state
        with st.lock:
            if what == "log":
                return self._send(200, {"requests": st.log})
            if what == "inject" and method == "POST":
                st.injections.append(dict(body))
                return self._send(200, {"injections": len(st.injections)})
            if what == "expire" and method == "POST":
                expired = len(st.issued)
                st.issued = {t: 0.0 for t in st.issued}
                return self._send(200, {"expired": expired})
            if what == "revoke_static" and method == "POST":
                st.static_tokens.clear()
                return self._send(200, {"ok": True})
            if what == "config" and method == "POST":
                if "task_seconds" in body:
                    st.task_seconds = float(body["task_seconds"])
                if "hold" in body:
                    st.hold = bool(body["hold"])
                return self._send(200, {"task_seconds": st.task_seconds, "hold": st.hold})
            if what == "tasks":
                st.advance()
                return self._send(200, {"tasks": [_public(t) for t in st.tasks.values()]})
            if what == "files":
                return self._send(200, {cid: {"dirs": sorted(c.dirs), "files": c.files}
                                        for cid, c in st.collections.items()})
            if what == "uninject" and method == "POST":
                st.injections.clear()
                return self._send(200, {"ok": True})
            if what == "reset" and method == "POST":
                st.injections.clear()
                st.log.clear()
                return self._send(200, {"ok": True})
        self._send(404, {"code": "NotFound", "message": "no control %s %s" % (method, what)})

    # -- Auth ---------------------------------------------------------------------------
    def _token(self, method: str, body: Any, auth: str) -> Tuple[int, Dict[str, Any]]:
        st = self.state
        if method != "POST" or not isinstance(body, dict):
            raise GlobusError(400, "invalid_request", "POST a form to the token endpoint")
        client_id = body.get("client_id")
        if auth.startswith("Basic "):
            try:
                cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                raise GlobusError(401, "invalid_client", "malformed Basic credentials")
            with st.lock:
                if cid not in st.clients or st.clients[cid] != secret:
                    raise GlobusError(401, "invalid_client", "unknown client or wrong secret")
            client_id = cid
        grant = body.get("grant_type")
        with st.lock:
            if grant == "refresh_token":
                owner = st.refresh_tokens.get(body.get("refresh_token", ""))
                if owner is None or owner != client_id:
                    raise GlobusError(400, "invalid_grant", "refresh token not valid for this client")
                return 200, st.issue(refresh=body["refresh_token"])
            if grant == "client_credentials":
                if not auth.startswith("Basic "):
                    raise GlobusError(401, "invalid_client", "client credentials need Basic auth")
                if TRANSFER_SCOPE not in body.get("scope", "").split():
                    raise GlobusError(400, "invalid_scope", "only the transfer scope is served here")
                return 200, st.issue()
        raise GlobusError(400, "unsupported_grant_type", "grant %r not supported" % grant)

    # -- Transfer -----------------------------------------------------------------------
    def _transfer(self, method: str, path: str, query: Dict[str, str], body: Any,
                  auth: str) -> Tuple[int, Dict[str, Any]]:
        st = self.state
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with st.lock:
            if not st.token_ok(token):
                raise GlobusError(401, "AuthenticationFailed", "Token is not active")
            st.advance()
            route = path[len("/v0.10/"):] if path.startswith("/v0.10/") else None
            if route is None:
                raise GlobusError(404, "ClientError.NotFound", "no such resource %s" % path)
            if route == "submission_id" and method == "GET":
                value = str(uuid.uuid4())
                st.submission_ids.add(value)
                return 200, {"DATA_TYPE": "submission_id", "value": value}
            if route == "transfer" and method == "POST":
                return self._submit(body, "TRANSFER")
            if route == "delete" and method == "POST":
                return self._submit(body, "DELETE")
            if route == "task_list" and method == "GET":
                return 200, self._task_list(query)
            m = re.match(r"^task/([^/]+)(/cancel)?$", route)
            if m:
                task = st.tasks.get(m.group(1))
                if task is None:
                    raise GlobusError(404, "TaskNotFound", "Task %s not found" % m.group(1))
                if m.group(2) and method == "POST":
                    if task["status"] in ("SUCCEEDED", "FAILED"):
                        return 200, {"DATA_TYPE": "result", "code": "TaskComplete",
                                     "message": "The task completed before it could be canceled"}
                    task.update(status="FAILED", nice_status="CANCELED", completion_time=_now(),
                                canceled_by_admin=False, is_ok=False)
                    return 200, {"DATA_TYPE": "result", "code": "Canceled",
                                 "message": "The task has been cancelled successfully."}
                if not m.group(2) and method == "GET":
                    return 200, _public(task)
            if route == "endpoint_search" and method == "GET":
                text = query.get("filter_fulltext", "").lower()
                hits = [c.doc() for c in st.collections.values()
                        if not text or text in c.name.lower()]
                if query.get("filter_scope") not in (None, "", "all", "my-endpoints", "recently-used"):
                    raise GlobusError(400, "ClientError.BadRequest", "unknown filter_scope")
                limit = int(query.get("limit") or 25)
                return 200, {"DATA_TYPE": "endpoint_list", "DATA": hits[:limit], "length": len(hits[:limit]),
                             "limit": limit, "offset": 0, "has_next_page": False}
            m = re.match(r"^endpoint/([^/]+)$", route)
            if m and method == "GET":
                return 200, self._collection(m.group(1)).doc()
            m = re.match(r"^operation/endpoint/([^/]+)/(ls|mkdir|rename)$", route)
            if m:
                return self._operation(self._collection(m.group(1)), m.group(2), method, query, body)
        raise GlobusError(405, "ClientError.MethodNotAllowed", "%s not allowed on %s" % (method, path))

    def _collection(self, cid: str) -> Collection:
        coll = self.state.collections.get(cid)
        if coll is None:
            raise GlobusError(404, "EndpointNotFound", "No such endpoint or collection %s" % cid)
        return coll

    def _operation(self, coll: Collection, op: str, method: str, query: Dict[str, str],
                   body: Any) -> Tuple[int, Dict[str, Any]]:
        if op == "ls" and method == "GET":
            path = Collection.norm(query.get("path") or "/~/")
            if not coll.is_dir(path):
                raise GlobusError(404, "ClientError.NotFound", "Directory '%s' not found on endpoint" % path)
            entries = coll.listing(path)
            if query.get("show_hidden") == "0":
                entries = [e for e in entries if not e["name"].startswith(".")]
            limit = int(query.get("limit") or 100000)
            return 200, {"DATA_TYPE": "file_list", "DATA": entries[:limit], "path": path if path.endswith("/") else path + "/",
                         "endpoint": coll.id, "length": len(entries[:limit]), "total": len(entries),
                         "absolute_path": path}
        if method != "POST" or not isinstance(body, dict):
            raise GlobusError(400, "ClientError.BadRequest", "%s needs a JSON body" % op)
        if op == "mkdir":
            self._expect(body, "mkdir", ("path",))
            path = Collection.norm(body["path"])
            if coll.is_dir(path) or path.rstrip("/") in coll.files:
                raise GlobusError(502, "ExternalError.MkdirFailed.Exists",
                                  "Path already exists, Error Path '%s'" % path)
            parent = path.rstrip("/").rsplit("/", 1)[0] + "/"
            if not coll.is_dir(parent):
                raise GlobusError(404, "ClientError.NotFound", "Directory '%s' not found" % parent)
            coll.dirs.add(path if path.endswith("/") else path + "/")
            return 202, {"DATA_TYPE": "mkdir_result", "code": "DirectoryCreated",
                         "message": "The directory was created successfully"}
        self._expect(body, "rename", ("old_path", "new_path"))
        old, new = Collection.norm(body["old_path"]), Collection.norm(body["new_path"])
        if old in coll.files:
            coll.add_file(new, coll.files.pop(old))
        elif coll.is_dir(old):
            base = old if old.endswith("/") else old + "/"
            target = new if new.endswith("/") else new + "/"
            coll.dirs = {target + d[len(base):] if d.startswith(base) else d for d in coll.dirs}
            coll.files = {(target + f[len(base):] if f.startswith(base) else f): n for f, n in coll.files.items()}
        else:
            raise GlobusError(404, "ClientError.NotFound", "'%s' not found" % old)
        return 200, {"DATA_TYPE": "result", "code": "FileRenamed",
                     "message": "File or directory renamed successfully"}

    @staticmethod
    def _expect(body: Dict[str, Any], data_type: str, fields: Tuple[str, ...]) -> None:
        if body.get("DATA_TYPE") != data_type:
            raise GlobusError(400, "ClientError.BadRequest", "DATA_TYPE must be %s" % data_type)
        for name in fields:
            if not isinstance(body.get(name), str) or not body[name]:
                raise GlobusError(400, "ClientError.BadRequest", "%s is required" % name)

    def _submit(self, body: Any, kind: str) -> Tuple[int, Dict[str, Any]]:
        st = self.state
        if not isinstance(body, dict):
            raise GlobusError(400, "ClientError.BadRequest", "a JSON task document is required")
        data_type = "transfer" if kind == "TRANSFER" else "delete"
        if body.get("DATA_TYPE") != data_type:
            raise GlobusError(400, "ClientError.BadRequest", "DATA_TYPE must be %s" % data_type)
        sub = body.get("submission_id")
        if sub not in st.submission_ids:
            raise GlobusError(400, "ClientError.BadRequest", "submission_id must come from GET /submission_id")
        if sub in st.submissions:
            task_id = st.submissions[sub]
            return 200, {"DATA_TYPE": "%s_result" % data_type, "task_id": task_id, "submission_id": sub,
                         "code": "Duplicate", "message": "A %s with id '%s' was already submitted"
                         % (data_type, sub), "request_id": uuid.uuid4().hex[:9]}
        items = body.get("DATA")
        item_type = "transfer_item" if kind == "TRANSFER" else "delete_item"
        if not isinstance(items, list) or not items or \
                any(not isinstance(i, dict) or i.get("DATA_TYPE") != item_type for i in items):
            raise GlobusError(400, "ClientError.BadRequest", "DATA must be a non-empty list of %s" % item_type)
        if kind == "TRANSFER":
            source = self._collection(body.get("source_endpoint", "")).id
            dest = self._collection(body.get("destination_endpoint", "")).id
            for item in items:
                for name in ("source_path", "destination_path"):
                    if not isinstance(item.get(name), str) or not item[name]:
                        raise GlobusError(400, "ClientError.BadRequest", "%s is required" % name)
            level = body.get("sync_level")
            if level is not None and level not in (0, 1, 2, 3):
                raise GlobusError(400, "ClientError.BadRequest", "sync_level must be 0..3")
        else:
            source = self._collection(body.get("endpoint", "")).id
            dest = None
            for item in items:
                if not isinstance(item.get("path"), str) or not item["path"]:
                    raise GlobusError(400, "ClientError.BadRequest", "path is required")
        task_id = str(uuid.uuid4())
        task = {"DATA_TYPE": "task", "task_id": task_id, "type": kind, "status": "ACTIVE",
                "nice_status": "Queued", "label": body.get("label"), "is_ok": True,
                "source_endpoint_id": source, "destination_endpoint_id": dest,
                "source_endpoint_display_name": st.collections[source].name,
                "destination_endpoint_display_name": st.collections[dest].name if dest else None,
                "request_time": _now(), "completion_time": None, "deadline": body.get("deadline"),
                "sync_level": body.get("sync_level"), "files": len(items), "directories": 0,
                "files_transferred": 0, "files_skipped": 0, "bytes_transferred": 0,
                "subtasks_total": len(items), "subtasks_succeeded": 0, "subtasks_failed": 0,
                "faults": 0, "fatal_error": None, "recursive_symlinks": "ignore",
                "_items": copy.deepcopy(items), "_due": time.monotonic() + st.task_seconds}
        st.tasks[task_id] = task
        st.submissions[sub] = task_id
        return 202, {"DATA_TYPE": "%s_result" % data_type, "task_id": task_id, "submission_id": sub,
                     "code": "Accepted", "message": "The %s has been accepted and a task has been "
                     "created and queued for execution" % data_type, "request_id": uuid.uuid4().hex[:9],
                     "task_link": {"href": "task/%s?format=json" % task_id, "rel": "related",
                                   "resource": "task", "title": "related task", "DATA_TYPE": "link"}}

    def _task_list(self, query: Dict[str, str]) -> Dict[str, Any]:
        tasks = sorted(self.state.tasks.values(), key=lambda t: t["request_time"], reverse=True)
        for clause in filter(None, (query.get("filter") or "").split("/")):
            name, _, values = clause.partition(":")
            wanted = set(values.split(","))
            if name in ("task_id", "status", "type", "label"):
                tasks = [t for t in tasks if str(t.get(name)) in wanted]
            else:
                raise GlobusError(400, "ClientError.BadRequest", "unknown filter %s" % name)
        limit = int(query.get("limit") or 10)
        offset = int(query.get("offset") or 0)
        page = [_public(t) for t in tasks[offset:offset + limit]]
        return {"DATA_TYPE": "task_list", "DATA": page, "length": len(page), "limit": limit,
                "offset": offset, "total": len(tasks)}


def serve(config: Dict[str, Any], host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"state": State(config)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="JSON file with tokens and clients")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with open(args.config) as f:
        config = json.load(f)
    server = serve(config, port=args.port)
    print("%shttp://127.0.0.1:%d" % (LINE, server.server_address[1]), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


class FakeGlobus:
    """A fake Globus process for one test (module): ``url``, ``control``, ``stop``.

    ``env()`` is what an endpoint process needs so that globus-sdk talks to it."""

    def __init__(self, directory: str, task_seconds: float = 1.0, token_lifetime: float = 3600):
        self.access_token = "fake-static-" + secrets.token_hex(16)
        self.refresh_token = "fake-rt-" + secrets.token_hex(16)
        self.client_id = str(uuid.uuid4())
        self.conf_client_id = str(uuid.uuid4())
        self.client_secret = "fake-secret-" + secrets.token_hex(16)
        config = {"access_tokens": [self.access_token],
                  "refresh_tokens": {self.refresh_token: self.client_id},
                  "clients": {self.client_id: None, self.conf_client_id: self.client_secret},
                  "task_seconds": task_seconds, "token_lifetime": token_lifetime}
        path = os.path.join(directory, "fake_globus.json")
        with open(path, "w") as f:
            json.dump(config, f)
        self._out = open(os.path.join(directory, "fake_globus.out"), "wb")
        self.popen = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--config", path],
                                      stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        out_path = self._out.name
        self.url = ""
        while time.monotonic() < deadline:
            text = open(out_path).read()
            if LINE in text:
                self.url = text.split(LINE, 1)[1].split()[0]
                break
            if self.popen.poll() is not None:
                raise RuntimeError("fake Globus exited:\n" + text)
            time.sleep(0.05)
        if not self.url:
            self.stop()
            raise RuntimeError("fake Globus did not start in 20 s")
        self.collections = list(COLLECTIONS)

    def env(self) -> Dict[str, str]:
        return {"GLOBUS_SDK_SERVICE_URL_TRANSFER": self.url + "/",
                "GLOBUS_SDK_SERVICE_URL_AUTH": self.url + "/"}

    def secrets(self) -> List[str]:
        return [self.access_token, self.refresh_token, self.client_secret]

    def control(self, what: str, body: Any = None) -> Any:
        import requests
        if body is None:
            resp = requests.get("%s/_fake/%s" % (self.url, what), timeout=10)
        else:
            resp = requests.post("%s/_fake/%s" % (self.url, what), json=body, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def requests(self, path_re: str = "", method: Optional[str] = None) -> List[Dict[str, Any]]:
        return [r for r in self.control("log")["requests"]
                if re.search(path_re, r["path"]) and method in (None, r["method"])]

    def seen_tokens(self) -> List[str]:
        """Every Bearer token that reached the fake (the ones it issued included)."""
        return sorted({r["auth"][7:] for r in self.requests() if r["auth"].startswith("Bearer ")})

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._out.close()


if __name__ == "__main__":
    sys.exit(main())
