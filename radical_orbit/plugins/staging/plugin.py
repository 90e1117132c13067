"""staging: the routes that move files to and from the machine an endpoint runs on.

Small files go as JSON (``put``, ``get``: base64, capped); files of any size stream as
raw bytes (``upload``, ``download``), resumable and ranged. Every path is confined to
the allowed roots (``paths``); every write is atomic (``transfer``). The route table is
in docs/plugins.md.
"""
import base64
import binascii
import errno
import hashlib
import heapq
import math
import os
import stat
import threading
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional
from urllib.parse import quote

from ...errors import (BadRequest, Conflict, FileExists, IsADirectory, NotADirectory, OrbitError,
                       PayloadTooLarge, PermissionDenied, Unavailable)
from ...plugin import (Plugin, PluginContext, PluginSession, Request, Response, body_bool, body_str,
                       route)
from . import copy, transfer
from .checksums import CHECKSUM_WAIT, HashJobs
from .digests import DigestCache
from .paths import Roots, Target, fs_error, lstat_at, open_below

#: the largest file ``put`` and ``get`` carry as JSON (decoded bytes); beyond: stream it
JSON_FILE_CAP = 8 * 2**20
#: the most entries one ``list`` answer holds (the first by name; config ``max_list``);
#: beyond, ``truncated`` is true and ``next`` is the name to pass as ``after`` for the rest
MAX_LIST = 100000
#: how often (s) one directory's abandoned partial uploads are looked for
SWEEP_EVERY = 3600.0
#: streamed transfers (``upload``, ``download``) running at once: each holds an endpoint
#: worker for as long as it lasts (8 workers by default), so beyond this a newcomer gets
#: 503 with Retry-After and the short calls (list, stat, the Explorer's) keep workers
MAX_TRANSFERS = 4
#: s a client refused for want of a transfer slot is told to wait
TRANSFER_RETRY_AFTER = 5
_MAX_MODE = 0o7777
#: the latest mtime accepted (s): its nanoseconds still fit in 64 bits (the year 2262)
MAX_MTIME = 2**63 / 1e9


class StagingPlugin(Plugin):
    plugin_name = "staging"
    version = "1.0.0"
    ui_config = {"title": "Files", "description": "Browse, upload and download files"}

    def __init__(self, name: str, context: PluginContext):
        super().__init__(name, context)
        config = context.config
        self.roots = Roots(config.get("roots"))
        self.json_cap = int(config.get("json_cap", JSON_FILE_CAP))
        self.max_list = int(config.get("max_list", MAX_LIST))
        if self.max_list < 1:
            raise ValueError("staging: max_list must be at least 1")
        self.max_transfers = int(config.get("max_transfers", MAX_TRANSFERS))
        if self.max_transfers < 1:
            raise ValueError("staging: max_transfers must be at least 1")
        self._running = 0
        self._busy: Dict[str, str] = {}
        self._swept: Dict[str, float] = {}
        self._busy_lock = threading.Lock()
        #: digests of files just written or sent whole: ``checksum`` right after is free
        self.digests = DigestCache()
        self.hashes = HashJobs(self.digests, float(config.get("checksum_wait", CHECKSUM_WAIT)))

    def start(self) -> None:
        """Removes abandoned partial uploads in the roots themselves (deeper directories
        are swept when they are next written), off the loading thread."""
        threading.Thread(target=self._sweep_roots, name="staging-sweep", daemon=True).start()

    # -- browsing ------------------------------------------------------------------
    @route("GET", "roots/{sid}")
    def get_roots(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        return {"roots": list(self.roots.roots), "home": self.roots.home}

    @route("POST", "list/{sid}")
    def list_dir(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        """The first ``limit`` entries by name (after the name ``after``, for the next
        page): a directory of any size is read in one pass holding only those names."""
        body = req.json_object()
        target = self.roots.check(body_str(body, "path", "a path"))
        limit = body.get("limit", self.max_list)
        if type(limit) is not int or not 1 <= limit <= self.max_list:
            raise BadRequest("limit must be a whole number from 1 to %d" % self.max_list)
        after = body.get("after")
        if after is not None and not isinstance(after, str):
            raise BadRequest("after must be a name (the 'next' of the page before)")
        fd = open_below(target.root, target.path)
        entries: List[Dict[str, Any]] = []
        try:
            with os.scandir(fd) as found:
                names = heapq.nsmallest(limit + 1, (e.name for e in found if after is None or e.name > after))
            for name in names[:limit]:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    continue            # removed since it was read
                info = describe(name, st)
                if transfer.is_partial(name) and info["type"] == "file":
                    # maybe an upload's (running or resumable), maybe the user's own
                    # file of that name: shown either way, never hidden
                    info["partial"] = True
                entries.append(info)
        except OSError as exc:
            raise fs_error(exc, target.path)
        finally:
            os.close(fd)
        answer = {"path": target.path, "entries": entries, "truncated": len(names) > limit}
        if answer["truncated"]:
            answer["next"] = names[limit - 1]
        return answer

    @route("POST", "stat/{sid}")
    def stat_path(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        target = self.roots.check(body_str(req.json_object(), "path", "a path"))
        info = describe(os.path.basename(target.path) or target.path, _lstat(target))
        info["path"] = target.path
        return info

    # -- changing the tree ----------------------------------------------------------
    @route("POST", "mkdir/{sid}")
    def mkdir(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        body = req.json_object()
        target = self.roots.check(body_str(body, "path", "a path"), follow=False)
        parents = body_bool(body, "parents")
        exist_ok = body_bool(body, "exist_ok")
        if not target.name:
            if exist_ok:
                return {"path": target.path}
            raise FileExists("%s exists (it is a root)" % target.path)
        dir_fd = open_below(target.root, target.parent, create=parents)
        try:
            os.mkdir(target.name, dir_fd=dir_fd)
        except FileExistsError:
            st = lstat_at(target.name, dir_fd, target.path)
            if not (exist_ok and stat.S_ISDIR(st.st_mode)):
                raise FileExists("%s exists" % target.path)
        except OSError as exc:
            raise fs_error(exc, target.path)
        finally:
            os.close(dir_fd)
        return {"path": target.path}

    @route("POST", "remove/{sid}")
    def remove(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        body = req.json_object()
        target = self.roots.check(body_str(body, "path", "a path"), follow=False)
        recursive = body_bool(body, "recursive")
        if not target.name:
            raise PermissionDenied("%s is a root; it cannot be removed" % target.path)
        dir_fd = target.open_parent()
        try:
            st = lstat_at(target.name, dir_fd, target.path)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(target.name, dir_fd=dir_fd)
            elif recursive:
                transfer.remove_tree(target.name, dir_fd, target.path)
            else:
                os.rmdir(target.name, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise Conflict("%s is a directory that is not empty; pass recursive to remove it "
                               "and all it holds" % target.path)
            raise fs_error(exc, target.path)
        finally:
            os.close(dir_fd)
        return {"path": target.path, "removed": True}

    @route("POST", "rename/{sid}")
    def rename(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        body = req.json_object()
        src = self.roots.check(body_str(body, "src", "a path"), follow=False)
        dst = self.roots.check(body_str(body, "dst", "a path"), follow=False)
        overwrite = body_bool(body, "overwrite")
        if not src.name or not dst.name:
            raise PermissionDenied("a root cannot be renamed, nor replaced")
        src_fd = src.open_parent()
        try:
            dst_fd = dst.open_parent()
            try:
                lstat_at(src.name, src_fd, src.path)
                if not overwrite and lstat_at(dst.name, dst_fd, dst.path, missing_ok=True) is not None:
                    raise FileExists("%s exists; pass overwrite to replace it" % dst.path)
                os.replace(src.name, dst.name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            except OSError as exc:
                raise _rename_error(exc, src, dst)
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)
        return {"path": dst.path}

    # -- small files as JSON --------------------------------------------------------
    @route("POST", "put/{sid}")
    def put(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        body = req.json_object()
        target = self.roots.check(body_str(body, "path", "a path"), follow=False)
        data = body.get("data")
        if not isinstance(data, str):
            raise BadRequest("'data' must be the file's bytes in base64")
        if len(data) * 3 // 4 > self.json_cap + 2:
            raise self._too_large(target.path, "upload")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest("'data' is not valid base64: %s" % exc)
        if len(raw) > self.json_cap:
            raise self._too_large(target.path, "upload")
        upload = transfer.Upload(target, body_bool(body, "overwrite"), 0,
                                 _mode(body.get("mode")), _mtime(body.get("mtime")))
        return self._write(upload, _pieces(raw))

    @route("POST", "get/{sid}")
    def get(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        target = self.roots.check(body_str(req.json_object(), "path", "a path"))
        fd, st = transfer.open_read(target)
        try:
            if st.st_size > self.json_cap:
                raise self._too_large(target.path, "download")
            data = _read_upto(fd, self.json_cap + 1)
        finally:
            os.close(fd)
        if len(data) > self.json_cap:
            raise self._too_large(target.path, "download")
        return {"path": target.path, "data": base64.b64encode(data).decode("ascii"),
                "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "mode": stat.S_IMODE(st.st_mode), "mtime": st.st_mtime}

    # -- any size, streamed ---------------------------------------------------------
    @route("PUT", "upload/{sid}")
    def upload(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        target = self.roots.check(_query_path(req), follow=False)
        mode = req.query.get("mode")
        try:
            mode_bits = _mode(int(mode, 8)) if mode is not None else None
        except ValueError:
            raise BadRequest("query parameter mode must be octal digits, e.g. 644")
        mtime = req.query.get("mtime")
        try:
            mtime_s = _mtime(float(mtime)) if mtime is not None else None
        except ValueError:
            raise BadRequest("query parameter mtime must be seconds since the epoch")
        digest, held_digest = req.query.get("sha256"), req.query.get("held_sha256")
        for name, value in (("sha256", digest), ("held_sha256", held_digest)):
            if value is not None and not _is_sha256(value):
                raise BadRequest("query parameter %s must be 64 hex digits" % name)
        upload = transfer.Upload(target, req.query_bool("overwrite"),
                                 req.query_int("offset", 0, 2**63 - 1, 0), mode_bits, mtime_s,
                                 digest, req.content_length, held_digest)
        self._take_slot(target.path)
        try:
            return self._write(upload, req.iter_body(transfer.CHUNK))
        finally:
            self._release_slot()

    @route("GET", "upload_status/{sid}")
    def upload_status(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        """The bytes held of an interrupted upload, and the transfer slots free now: a
        refusal for want of one reaches an HTTP client still sending a large body only
        as a closed connection, so the SDK looks first and waits while none is free."""
        target = self.roots.check(_query_path(req), follow=False)
        with self._busy_lock:
            free = self.max_transfers - self._running
        return {"path": target.path, "offset": transfer.held_offset(target), "free": free,
                "retry_after": TRANSFER_RETRY_AFTER}

    @route("GET", "download/{sid}")
    def download(self, req: Request, session: PluginSession) -> Response:
        target = self.roots.check(_query_path(req))
        self._take_slot(target.path)
        try:
            fd, st = transfer.open_read(target)
        except BaseException:
            self._release_slot()
            raise
        try:
            size = st.st_size
            headers = {"X-Orbit-Size": str(size), "X-Orbit-Mode": "%o" % stat.S_IMODE(st.st_mode),
                       "X-Orbit-Mtime": repr(st.st_mtime), "Accept-Ranges": "bytes"}
            if req.query_bool("attachment"):
                headers["Content-Disposition"] = "attachment; filename*=UTF-8''%s" % quote(target.name or "root", errors="surrogateescape")
            span = transfer.parse_range(req.headers.get("range"), size)
            status, start, end = 200, 0, size
            if span is not None:
                start, end = span
                status = 206
                headers["Content-Range"] = "bytes %d-%d/%d" % (start, end - 1, size)
            os.lseek(fd, start, os.SEEK_SET)
            # a whole file is hashed as it is read, unless its digest is kept already
            hashed = start == 0 and end == size and self.digests.get(st) is None
            body = transfer.FileSlice(fd, end - start, (lambda digest: self.digests.put(st, digest))
                                      if hashed else None, on_close=self._release_slot)
        except BaseException:
            os.close(fd)
            self._release_slot()
            raise
        return Response(body, status, "application/octet-stream", headers, length=end - start)

    @route("POST", "checksum/{sid}")
    def checksum(self, req: Request, session: PluginSession) -> Any:
        """The digest, or 202 ``pending`` with the bytes hashed so far when the file takes
        longer than ``checksum_wait`` s to read (``checksums.py``): ask again."""
        target = self.roots.check(body_str(req.json_object(), "path", "a path"))
        fd, st = transfer.open_read(target)
        try:
            digest, size = self.hashes.digest(fd, st, target.path)
        finally:
            os.close(fd)
        if digest is None:
            return Response.json({"path": target.path, "size": st.st_size, "pending": True,
                                  "hashed": size}, 202)
        return {"path": target.path, "size": size, "sha256": digest}

    @route("POST", "copy/{sid}")
    def copy(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        """Endpoint to endpoint, streamed through the bridge (``copy.py``): only the
        bridge's staging can reach two endpoints."""
        if self.context.bridge is None:
            raise BadRequest("copy runs on the bridge: POST /bridge/%s/copy/{sid}" % self.name)
        return copy.copy(self.context.bridge, self.name, req.json_object())

    # -- helpers ----------------------------------------------------------------------
    def _take_slot(self, path: str) -> None:
        """One of ``max_transfers`` slots for a streamed transfer, released when it ends."""
        with self._busy_lock:
            taken = self._running < self.max_transfers
            if taken:
                self._running += 1
        if not taken:
            raise Unavailable("%s: %d transfers are running on this endpoint (each holds a worker); "
                              "try again shortly" % (path, self.max_transfers),
                              headers={transfer.BUSY_HEADER: "transfers"}, retry_after=TRANSFER_RETRY_AFTER)

    def _release_slot(self) -> None:
        with self._busy_lock:
            self._running -= 1

    def _write(self, upload: transfer.Upload, pieces: Iterable[Any]) -> Dict[str, Any]:
        """Run one write; a second write to the same path meanwhile is 409."""
        key = upload.target.path
        with self._busy_lock:
            if key in self._busy:
                raise Conflict("%s: another upload to this path is in progress" % key)
            self._busy[key] = upload.partial
        try:
            self._maybe_sweep(upload.target)
            result = upload.run(pieces)
            if upload.committed is not None:
                self.digests.put(upload.committed, result["sha256"])
            return result
        finally:
            with self._busy_lock:
                self._busy.pop(key, None)

    def _maybe_sweep(self, target: Target) -> None:
        now = time.monotonic()
        with self._busy_lock:
            last = self._swept.get(target.parent)
            if last is not None and now - last < SWEEP_EVERY:
                return
            if len(self._swept) > MAX_LIST:
                self._swept.clear()
            self._swept[target.parent] = now
            busy = set(self._busy.values())
        try:
            fd = target.open_parent()
        except OrbitError:
            return
        try:
            removed = transfer.sweep_partials(fd, keep=busy)
        except OSError:
            removed = 0
        finally:
            os.close(fd)
        if removed:
            self.log.info("removed %d abandoned partial uploads in %s", removed, target.parent)

    def _sweep_roots(self) -> None:
        for root in self.roots.roots:
            try:
                self._maybe_sweep(Target(os.path.join(root, "x"), root, root, "x"))
            except Exception:
                self.log.exception("sweeping %s for abandoned partial uploads failed", root)

    def _too_large(self, path: str, streamed: str) -> PayloadTooLarge:
        return PayloadTooLarge("%s: more than %d bytes; use the streamed %s route (StagingClient.%s)"
                               % (path, self.json_cap, streamed, "put" if streamed == "upload" else "get"))


def describe(name: str, st: os.stat_result) -> Dict[str, Any]:
    """One directory entry as the routes show it (a link is not followed)."""
    if stat.S_ISLNK(st.st_mode):
        kind = "link"
    elif stat.S_ISDIR(st.st_mode):
        kind = "dir"
    elif stat.S_ISREG(st.st_mode):
        kind = "file"
    else:
        kind = "other"
    return {"name": name, "type": kind, "size": st.st_size, "mtime": st.st_mtime,
            "mode": stat.S_IMODE(st.st_mode)}


def _pieces(data: bytes) -> Iterator[memoryview]:
    """Bytes already in memory (a JSON put) as chunk-sized views, without copies."""
    view = memoryview(data)
    for pos in range(0, len(view), transfer.CHUNK):
        yield view[pos:pos + transfer.CHUNK]


def _lstat(target: Target) -> os.stat_result:
    dir_fd = target.open_parent()
    try:
        if not target.name:
            return os.fstat(dir_fd)
        return lstat_at(target.name, dir_fd, target.path)
    finally:
        os.close(dir_fd)


def _rename_error(exc: OSError, src: Target, dst: Target) -> Exception:
    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
        return Conflict("%s is a directory that is not empty; it cannot be replaced" % dst.path)
    if exc.errno == errno.EXDEV:
        return BadRequest("%s and %s are on different file systems; a rename cannot move "
                          "between them (download and upload instead)" % (src.path, dst.path))
    if exc.errno == errno.EINVAL:
        return BadRequest("%s cannot be moved into itself (%s)" % (src.path, dst.path))
    if exc.errno == errno.ENOTDIR:
        return NotADirectory("%s: a directory cannot replace a file" % dst.path)
    if exc.errno == errno.EISDIR:
        return IsADirectory("%s is a directory: a file cannot replace it" % dst.path)
    return fs_error(exc, "%s -> %s" % (src.path, dst.path))


def _query_path(req: Request) -> str:
    path = req.query.get("path")
    if not path:
        raise BadRequest("query parameter path is required")
    return path


def _mode(value: Any) -> Optional[int]:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= _MAX_MODE:
        raise BadRequest("mode must be permission bits between 0 and 0o7777")
    return value


def _mtime(value: Any) -> Optional[float]:
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 <= value < MAX_MTIME:
        raise BadRequest("mtime must be seconds since the epoch, below %d" % MAX_MTIME)
    return float(value)


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def _read_upto(fd: int, limit: int) -> bytes:
    pieces = []
    got = 0
    while got < limit:
        piece = os.read(fd, min(limit - got, transfer.CHUNK * 4))
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)
