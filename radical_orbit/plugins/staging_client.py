"""Client side of the staging plugin: move files of any size to and from an endpoint.

``put`` and ``get`` stream in chunks (memory stays at a chunk whatever the size),
hash while streaming and check the digest against the endpoint's, resume an
interrupted transfer (``resume=True``), and report progress to a callback or, on a
terminal, as a bar on stderr. Every request has a connect timeout and a timeout per
chunk read, never one for the whole transfer. Imports nothing of the plugin.
"""
import hashlib
import os
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..client import PluginClient
from ..errors import Conflict, FileExists, OrbitError, RangeNotSatisfiable, Timeout, Unavailable
from .staging.transfer import BUSY_HEADER, RESUME_HEADER, partial_name

#: bytes per read from a local file and per network read
CHUNK = 1 << 20
#: s to open a connection to the bridge
CONNECT_TIMEOUT = 10.0
#: s a streamed transfer may wait for its next chunk (or for the answer after the last:
#: the endpoint fsyncs the file, or hashes the held part of a resumed upload first)
CHUNK_TIMEOUT = 120.0
#: s a copy between endpoints may take as a whole: its answer comes when it is done
COPY_TIMEOUT = 6 * 3600.0
#: the bridge's pseudo-endpoint, where copies between endpoints run
BRIDGE = "bridge"
#: s between two asks for a checksum the endpoint is still computing (each ask waits
#: there for up to its ``checksum_wait`` before it answers "pending")
CHECKSUM_POLL = 0.2
#: s a ``put`` or ``get`` waits in all while the endpoint answers that it runs as many
#: transfers as it allows (its ``max_transfers``: 503, ``X-Orbit-Busy``, Retry-After)
BUSY_WAIT = 600.0

Progress = Callable[[int, int], Any]


class StagingClient(PluginClient):
    """A session with one endpoint's staging plugin (``get_plugin("staging")``)."""

    # -- file system -----------------------------------------------------------------
    def roots(self) -> Dict[str, Any]:
        """``{"roots": [...], "home": ...}``: where this endpoint lets files be read and written."""
        return self._call("GET", "roots")

    def list(self, path: str = "~") -> List[Dict[str, Any]]:
        """All entries of a directory, by name: name, type (file, dir, link, other), size,
        mtime, mode. A directory larger than one answer holds is read page by page."""
        entries: List[Dict[str, Any]] = []
        query: Dict[str, Any] = {"path": path}
        while True:
            answer = self._call("POST", "list", json=query)
            entries.extend(answer["entries"])
            if not answer.get("truncated") or not isinstance(answer.get("next"), str):
                return entries
            query["after"] = answer["next"]

    def stat(self, path: str) -> Dict[str, Any]:
        return self._call("POST", "stat", json={"path": path})

    def mkdir(self, path: str, parents: bool = False, exist_ok: bool = False) -> str:
        return self._call("POST", "mkdir", json={"path": path, "parents": parents,
                                                 "exist_ok": exist_ok})["path"]

    def remove(self, path: str, recursive: bool = False) -> str:
        return self._call("POST", "remove", json={"path": path, "recursive": recursive})["path"]

    def rename(self, src: str, dst: str, overwrite: bool = False) -> str:
        return self._call("POST", "rename", json={"src": src, "dst": dst, "overwrite": overwrite})["path"]

    def checksum(self, path: str) -> Dict[str, Any]:
        """``{"path", "size", "sha256"}`` of a file on the endpoint. A file it has not just
        written or sent whole is read there; one that takes longer than a call may wait is
        answered "pending" with the bytes hashed so far, and this asks again until the
        digest is there, for as long as the hashing moves (``Timeout`` after CHUNK_TIMEOUT
        s without progress)."""
        last, moved = -1, time.monotonic()
        while True:
            answer = self._call("POST", "checksum", json={"path": path},
                                timeout=(CONNECT_TIMEOUT, COPY_TIMEOUT))
            if not (isinstance(answer, dict) and answer.get("pending")):
                return answer
            hashed, now = int(answer.get("hashed") or 0), time.monotonic()
            if hashed > last:
                last, moved = hashed, now
            elif now - moved > CHUNK_TIMEOUT:
                raise Timeout("the checksum of %s on %s made no progress for %.0f s (%d bytes hashed)"
                              % (path, self.endpoint.name, CHUNK_TIMEOUT, hashed))
            time.sleep(CHECKSUM_POLL)

    # -- small files as JSON -----------------------------------------------------------
    def put_bytes(self, data: bytes, tgt: str, overwrite: bool = False) -> Dict[str, Any]:
        """Write a small file in one JSON call (the endpoint caps it: 413 above, use ``put``)."""
        import base64
        return self._call("POST", "put", json={"path": tgt, "overwrite": overwrite,
                                               "data": base64.b64encode(data).decode("ascii")})

    def get_bytes(self, src: str) -> bytes:
        """Read a small file in one JSON call, checked against its sha256."""
        import base64
        answer = self._call("POST", "get", json={"path": src})
        data = base64.b64decode(answer["data"])
        _check_digest(hashlib.sha256(data).hexdigest(), answer.get("sha256"), src)
        return data

    # -- streamed transfers --------------------------------------------------------------
    def put(self, src: str, tgt: str, overwrite: bool = False, resume: bool = False,
            progress: Optional[Progress] = None, keep_mode: bool = True) -> Dict[str, Any]:
        """Upload the local file ``src`` to ``tgt`` on the endpoint (a ``tgt`` ending in
        ``/`` is a directory: the file keeps its name). Atomic on the endpoint: nothing
        appears under ``tgt`` until all bytes arrived and the sha256 matched.
        ``resume=True`` continues from what the endpoint holds of an earlier, interrupted
        upload of ``tgt``; the endpoint checks that part against this file's start before
        it commits, and when it differs (either side changed since) this starts over.
        Returns ``{"path", "size", "sha256"}``. While the endpoint runs as many transfers
        as it allows, this waits and tries again, for BUSY_WAIT s at most."""
        return _when_free(lambda: self._put(src, tgt, overwrite, resume, progress, keep_mode))

    def _put(self, src: str, tgt: str, overwrite: bool, resume: bool, progress: Optional[Progress],
             keep_mode: bool) -> Dict[str, Any]:
        if tgt.endswith("/"):
            tgt += os.path.basename(src)
        with open(src, "rb") as f:
            st = os.fstat(f.fileno())
            size = st.st_size
            offset = self._preflight(tgt, overwrite)
            if not resume or offset > size:
                offset = 0
            hasher = hashlib.sha256()
            _hash_prefix(f, offset, hasher)
            query = {"path": tgt, "overwrite": "true" if overwrite else "false", "offset": offset,
                     "mtime": repr(st.st_mtime)}
            if offset:
                query["held_sha256"] = hasher.hexdigest()
            if keep_mode:
                query["mode"] = "%o" % (st.st_mode & 0o7777)
            body = _FileBody(f, offset, size, hasher, _reporter(progress, "put " + os.path.basename(src)))
            try:
                answer = self._call("PUT", "upload", params=query, data=body if len(body) else b"",
                                    headers={"Content-Type": "application/octet-stream"},
                                    timeout=(CONNECT_TIMEOUT, CHUNK_TIMEOUT))
            except Conflict as exc:
                if not (offset and _header(exc, RESUME_HEADER) == "mismatch"):
                    raise
                answer = None       # the held part was not this file's start, and is gone
            except OrbitError as exc:
                if exc.status_code in (495, 503) and _header(exc, BUSY_HEADER) is None:
                    # a refusal for want of a slot (another client took the last one since the
                    # preflight) reaches a client still sending only as a closed connection
                    self._held(tgt)
                raise
            finally:
                body.report.finish()
        if answer is None:
            return self._put(src, tgt, overwrite, False, progress, keep_mode)
        _check_digest(hasher.hexdigest(), answer.get("sha256"), tgt)
        return answer

    def get(self, src: str, tgt: str, overwrite: bool = False, resume: bool = False,
            progress: Optional[Progress] = None) -> Dict[str, Any]:
        """Download ``src`` from the endpoint to the local ``tgt`` (an existing directory:
        the file keeps its name). The bytes go to ``.<name>.orbit-partial`` next to ``tgt``,
        renamed to ``tgt`` once complete and its sha256 matched the endpoint's; an
        interrupted download leaves that partial, and ``resume=True`` continues it
        (HTTP ``Range``). Returns ``{"path", "size", "sha256"}`` (``path`` the local one).
        A busy endpoint is waited for as by ``put``."""
        return _when_free(lambda: self._get(src, tgt, overwrite, resume, progress))

    def _get(self, src: str, tgt: str, overwrite: bool, resume: bool,
             progress: Optional[Progress]) -> Dict[str, Any]:
        if os.path.isdir(tgt):
            tgt = os.path.join(tgt, os.path.basename(src.rstrip("/")))
        if os.path.exists(tgt) and not overwrite:
            raise FileExistsError("%s exists (pass overwrite=True to replace it)" % tgt)
        partial = _partial_name(tgt)
        hasher = hashlib.sha256()
        offset = 0
        if resume and os.path.exists(partial):
            with open(partial, "rb") as f:
                offset = _hash_prefix(f, None, hasher)
        try:
            resp = self._download(src, offset)
        except RangeNotSatisfiable:
            # the partial holds all of it (verified below), or more than the file now has
            if self.stat(src)["size"] == offset:
                return self._commit_download(src, tgt, partial, offset, hasher.hexdigest(), overwrite)
            offset, hasher = 0, hashlib.sha256()
            resp = self._download(src, 0)
        report = _reporter(progress, "get " + os.path.basename(tgt))
        try:
            if offset and resp.status_code != 206:
                offset, hasher = 0, hashlib.sha256()        # the endpoint sends it all: start over
            total = _total_size(resp, offset)
            done = offset
            with open(partial, "r+b" if offset else "wb") as out:
                out.seek(offset)
                out.truncate()
                report(done, total)
                for chunk in resp.iter_content(CHUNK):
                    out.write(chunk)
                    hasher.update(chunk)
                    done += len(chunk)
                    report(done, total)
                out.flush()
                os.fsync(out.fileno())
        finally:
            report.finish()
            resp.close()
        if total is not None and done != total:
            raise OrbitError("download of %s ended after %d of %d bytes (the partial %s is kept: "
                             "resume=True continues it)" % (src, done, total, partial), 502)
        return self._commit_download(src, tgt, partial, done, hasher.hexdigest(), overwrite)

    def copy(self, src_endpoint: str, src_path: str, dst_endpoint: str, dst_path: str,
             overwrite: bool = False, timeout: float = COPY_TIMEOUT) -> Dict[str, Any]:
        """Copy a file from one endpoint to another (either may be ``bridge``), streamed
        through the bridge, never through this client. Runs on the bridge's staging
        plugin; the answer comes when the copy is done (``timeout`` s at most).
        Returns ``{"path", "size", "sha256"}`` (checked equal at both ends by the bridge).
        While either end runs as many transfers as it allows, this waits as ``put`` does."""
        body = {"src": {"endpoint": src_endpoint, "path": src_path},
                "dst": {"endpoint": dst_endpoint, "path": dst_path}, "overwrite": overwrite}
        if self.endpoint.name == BRIDGE:
            return _when_free(lambda: self._call("POST", "copy", json=body, timeout=(CONNECT_TIMEOUT, timeout)))
        bridge = self.endpoint.bridge.get_endpoint_client(BRIDGE).get_plugin(self.name)
        try:
            return _when_free(lambda: bridge._call("POST", "copy", json=body, timeout=(CONNECT_TIMEOUT, timeout)))
        finally:
            bridge.close()

    # -- plumbing ----------------------------------------------------------------------
    def _call(self, method: str, route: str, **kwargs: Any) -> Any:
        """A route of this session (``<route>/<sid>``)."""
        return self.request(method, "%s/%s" % (route, self.sid), **kwargs)

    def _download(self, src: str, offset: int) -> Any:
        """The streamed answer of ``download`` from ``offset`` on (a ``Range`` past 0)."""
        headers = {"Range": "bytes=%d-" % offset} if offset else {}
        return self._call("GET", "download", params={"path": src}, headers=headers, stream=True,
                          timeout=(CONNECT_TIMEOUT, CHUNK_TIMEOUT))

    def _commit_download(self, src: str, tgt: str, partial: str, size: int, digest: str,
                         overwrite: bool) -> Dict[str, Any]:
        """Check the local digest against the endpoint's, then rename the partial to ``tgt``
        (a mismatch removes the partial: resuming it would only repeat the mismatch)."""
        _check_digest(digest, self.checksum(src)["sha256"], src, partial)
        if not overwrite and os.path.exists(tgt):
            raise FileExistsError("%s appeared during the download (kept as %s)" % (tgt, partial))
        os.replace(partial, tgt)
        return {"path": tgt, "size": size, "sha256": digest}

    def _preflight(self, tgt: str, overwrite: bool) -> int:
        """Refuse what the endpoint would refuse before a large body is sent: an early
        answer reaches an HTTP client that is still sending only as a closed connection.
        Returns the bytes held of an interrupted upload (the path's confinement checked)."""
        held = self._held(tgt)
        if not overwrite:
            try:
                self.stat(tgt)
            except FileNotFoundError:
                return held
            raise FileExists("%s exists on %s (pass overwrite=True to replace it)" % (tgt, self.endpoint.name))
        return held

    def _held(self, tgt: str) -> int:
        """Bytes the endpoint holds of an interrupted upload to ``tgt``; Unavailable (busy,
        waited out by ``_when_free``) while it has no transfer slot free."""
        status = self._call("GET", "upload_status", params={"path": tgt})
        if status.get("free") == 0:
            after = status.get("retry_after")
            raise Unavailable("%s runs as many transfers as it allows; waiting for one to end"
                              % self.endpoint.name, headers={BUSY_HEADER: "transfers"},
                              retry_after=after if isinstance(after, int) else 5)
        return int(status.get("offset") or 0)


class _FileBody:
    """An upload body: ``len`` known (so requests sends a Content-Length, no chunked
    coding), chunks read, hashed and reported as they are sent."""

    def __init__(self, f, offset: int, size: int, hasher, report: "_Report"):
        self.f, self.offset, self.size = f, offset, size
        self.hasher = hasher
        self.report = report

    def __len__(self) -> int:
        return self.size - self.offset

    def __iter__(self) -> Iterator[bytes]:
        self.f.seek(self.offset)
        done = self.offset
        self.report(done, self.size)
        while done < self.size:
            chunk = self.f.read(min(CHUNK, self.size - done))
            if not chunk:
                raise OSError("%s shrank during the upload (%d of %d bytes read)"
                              % (getattr(self.f, "name", "the file"), done, self.size))
            self.hasher.update(chunk)
            done += len(chunk)
            yield chunk
            self.report(done, self.size)


class _Report:
    """Calls the progress callback, or draws a bar on stderr when that is a terminal."""

    def __init__(self, callback: Optional[Progress], label: str):
        self.callback = callback
        self.bar = callback is None and _is_tty(sys.stderr)
        self.label = label
        self.started = time.monotonic()
        self.drawn = 0.0
        self.last: Tuple[int, Optional[int]] = (0, None)

    def __call__(self, done: int, total: Optional[int]) -> None:
        self.last = (done, total)
        if self.callback is not None:
            self.callback(done, total if total is not None else -1)
        elif self.bar:
            now = time.monotonic()
            if now - self.drawn >= 0.1 or (total is not None and done >= total):
                self.drawn = now
                sys.stderr.write("\r" + _bar_line(self.label, done, total, now - self.started))
                sys.stderr.flush()

    def finish(self) -> None:
        """End the bar's line (also after a failure: the next output starts on its own line)."""
        if self.bar and self.drawn:
            done, total = self.last
            sys.stderr.write("\r" + _bar_line(self.label, done, total, time.monotonic() - self.started) + "\n")
            sys.stderr.flush()


def _when_free(call: Callable[[], Any]) -> Any:
    """``call()``, made again after the Retry-After of the 503 an endpoint answers when it
    runs as many transfers as it allows (``X-Orbit-Busy``), until it goes through or
    BUSY_WAIT s have passed; any other failure is raised at once."""
    deadline = time.monotonic() + BUSY_WAIT
    while True:
        try:
            return call()
        except Unavailable as exc:
            after = _header(exc, "Retry-After") or ""
            if _header(exc, BUSY_HEADER) is None or not after.isdigit() \
                    or time.monotonic() + int(after) > deadline:
                raise
            time.sleep(int(after))


def _header(exc: OrbitError, name: str) -> Optional[str]:
    """A header of the answer an error came in (names compared without case)."""
    for key, value in (exc.headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def _reporter(callback: Optional[Progress], label: str) -> _Report:
    return _Report(callback, label)


def _is_tty(stream: Any) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _bar_line(label: str, done: int, total: Optional[int], seconds: float, width: int = 30) -> str:
    rate = done / seconds / 2**20 if seconds > 0 else 0.0
    if not total:
        return "%s %s %.1f MiB/s" % (label[:30], _human(done), rate)
    filled = int(width * done / total)
    return "%-30s [%s%s] %3d%% %s of %s %.1f MiB/s " % (
        label[:30], "#" * filled, "." * (width - filled), 100 * done // total, _human(done),
        _human(total), rate)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return "%.1f %s" % (n, unit)
        n /= 1024.0
    return "%.1f TiB" % n


def _hash_prefix(f, length: Optional[int], hasher) -> int:
    """Hash the first ``length`` bytes of ``f`` (None: all of it); returns how many."""
    f.seek(0)
    done = 0
    while length is None or done < length:
        chunk = f.read(CHUNK if length is None else min(CHUNK, length - done))
        if not chunk:
            break
        hasher.update(chunk)
        done += len(chunk)
    return done


def _partial_name(tgt: str) -> str:
    """A partial download sits next to its target, named as the endpoint names an upload's."""
    head, name = os.path.split(os.path.abspath(tgt))
    return os.path.join(head, partial_name(name))


def _total_size(resp: Any, offset: int) -> Optional[int]:
    """The whole file's size: ``X-Orbit-Size``, else from Content-Range or Content-Length."""
    size = resp.headers.get("X-Orbit-Size")
    if size and size.isdigit():
        return int(size)
    crange = resp.headers.get("Content-Range", "")
    if "/" in crange and crange.rsplit("/", 1)[1].isdigit():
        return int(crange.rsplit("/", 1)[1])
    length = resp.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _check_digest(local: str, remote: Optional[str], path: str, partial: Optional[str] = None) -> None:
    if remote != local:
        if partial is not None:
            try:
                os.unlink(partial)
            except OSError:
                pass
        raise OrbitError("sha256 mismatch for %s: here %s, on the endpoint %s" % (path, local, remote), 502)
