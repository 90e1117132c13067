"""Copy a file from one endpoint to another through the bridge (``POST copy/{sid}`` of
the bridge-hosted staging plugin).

The bridge opens a download on the source and pumps its chunks into an upload on the
destination as they arrive, under both streams' flow control: memory stays at a few
windows whatever the size, and the data never passes through the client. The source
hashes what it sends and keeps the digest (``digests.py``); its ``checksum`` is compared
with the digest the destination computed, so the bridge hashes nothing. The
destination's upload is atomic (nothing under the target name until it completed).
Either end may be ``bridge`` (the bridge's own staging).
"""
import json
import time
from typing import Any, Dict, Optional, Tuple

from ...errors import BadRequest, OrbitError
from ...plugin import body_bool

#: metadata headers of a download passed on to the upload (mode and mtime kept)
META_HEADERS = (("x-orbit-mode", "mode"), ("x-orbit-mtime", "mtime"))
#: s the source's checksum may stay "pending" without progress before the copy fails
CHECKSUM_STALL = 120.0
#: s between two asks for a pending checksum (each waits on the source first)
CHECKSUM_POLL = 0.2


def parse_copy(body: Any) -> Tuple[str, str, str, str, bool]:
    """``{"src": {"endpoint", "path"}, "dst": {...}, "overwrite"}`` checked (400 otherwise)."""
    if not isinstance(body, dict):
        raise BadRequest("copy needs a JSON object {src: {endpoint, path}, dst: {endpoint, path}}")
    ends = []
    for key in ("src", "dst"):
        end = body.get(key)
        if not isinstance(end, dict) or not isinstance(end.get("endpoint"), str) or \
                not end.get("endpoint") or not isinstance(end.get("path"), str) or not end.get("path"):
            raise BadRequest("copy needs %r: {\"endpoint\": name, \"path\": path}" % key)
        ends += [end["endpoint"], end["path"]]
    return ends[0], ends[1], ends[2], ends[3], body_bool(body, "overwrite")


def copy(calls: Any, plugin: str, body: Any) -> Dict[str, Any]:
    """Run one copy with ``calls`` (the bridge's ``BridgeCalls``) against the staging
    instance named ``plugin`` on both ends; returns ``{"path", "size", "sha256"}``."""
    src_ep, src_path, dst_ep, dst_path, overwrite = parse_copy(body)
    src_sid = _register(calls, src_ep, plugin)
    try:
        dst_sid = _register(calls, dst_ep, plugin)
        try:
            return _pump(calls, plugin, (src_ep, src_path, src_sid), (dst_ep, dst_path, dst_sid), overwrite)
        finally:
            _unregister(calls, dst_ep, plugin, dst_sid)
    finally:
        _unregister(calls, src_ep, plugin, src_sid)


def _pump(calls: Any, plugin: str, src: Tuple[str, str, str], dst: Tuple[str, str, str],
          overwrite: bool) -> Dict[str, Any]:
    src_ep, src_path, src_sid = src
    dst_ep, dst_path, dst_sid = dst
    where_src, where_dst = "source %s:%s" % (src_ep, src_path), "destination %s:%s" % (dst_ep, dst_path)
    with calls.open_call(src_ep, "GET", "%s/download/%s" % (plugin, src_sid), {"path": src_path}) as down:
        down.raise_for_status(where_src)
        size = _size(down)
        query = {"path": dst_path, "overwrite": "true" if overwrite else "false"}
        for header, name in META_HEADERS:
            if down.headers.get(header):
                query[name] = down.headers[header]
        with calls.open_call(dst_ep, "PUT", "%s/upload/%s" % (plugin, dst_sid), query,
                             {"content-type": "application/octet-stream"}, down.iter_chunks(), size) as up:
            up.raise_for_status(where_dst)
            answer = _object(up.json(), where_dst)
    # the source hashed what it sent and keeps that digest (digests.py): asking for it
    # costs no second read, and the bridge, the busiest hop, hashes nothing
    digest = _source_digest(calls, "%s/checksum/%s" % (plugin, src_sid), src_ep, src_path, where_src)
    if answer.get("sha256") != digest or (size is not None and answer.get("size") != size):
        raise OrbitError("copy %s -> %s: %s holds %s bytes with sha256 %s, %s sent %s bytes with "
                         "sha256 %s" % (where_src, where_dst, where_dst, answer.get("size"),
                                        answer.get("sha256"), where_src, size, digest), 502)
    return {"path": answer.get("path", dst_path), "size": answer.get("size"), "sha256": digest}


def _source_digest(calls: Any, route: str, endpoint: str, path: str, where: str) -> Optional[str]:
    """The source's ``checksum``, asked again while it answers "pending" (a file it had to
    read anew: changed since it was sent) and its hashing moves."""
    last, moved = -1, time.monotonic()
    while True:
        with calls.open_call(endpoint, "POST", route, body=json.dumps({"path": path}).encode()) as resp:
            resp.raise_for_status(where)
            answer = _object(resp.json(), where)
        if not answer.get("pending"):
            return answer.get("sha256")
        hashed, now = answer.get("hashed"), time.monotonic()
        if isinstance(hashed, int) and hashed > last:
            last, moved = hashed, now
        elif now - moved > CHECKSUM_STALL:
            raise OrbitError("%s: its checksum made no progress for %.0f s" % (where, CHECKSUM_STALL), 504)
        time.sleep(CHECKSUM_POLL)


def _object(answer: Any, where: str) -> Dict[str, Any]:
    if not isinstance(answer, dict):
        raise OrbitError("%s answered %r, not a JSON object" % (where, answer), 502)
    return answer


def _size(down: Any) -> Optional[int]:
    text = down.headers.get("x-orbit-size")
    if text is not None and text.isdigit():
        return int(text)
    return down.length


def _register(calls: Any, endpoint: str, plugin: str) -> str:
    with calls.open_call(endpoint, "POST", "%s/register_session" % plugin) as resp:
        resp.raise_for_status("%s has no %s plugin to copy with" % (endpoint, plugin))
        answer = resp.json()
    if not isinstance(answer, dict) or not isinstance(answer.get("sid"), str):
        raise OrbitError("%s/%s/register_session answered %r" % (endpoint, plugin, answer), 502)
    return answer["sid"]


def _unregister(calls: Any, endpoint: str, plugin: str, sid: str) -> None:
    """Best effort: a session left behind expires by itself."""
    try:
        with calls.open_call(endpoint, "POST", "%s/unregister_session/%s" % (plugin, sid)) as resp:
            resp.read_all(2**16)
    except OrbitError:
        pass
