"""Moving bytes in and out of files: atomic, resumable writes and ranged reads, each
hashed (sha256) as it streams and never held whole in memory.

A write goes to a partial file ``.<name>.orbit-partial`` next to the target (same
file system, so the commit is one atomic rename). The partial survives an interrupted
upload, so a client can resume at the offset it holds; it is removed on a checksum
mismatch and on a full disk. The commit fsyncs the data, applies mode and mtime, and
renames; without ``overwrite`` it links (``EEXIST`` if the target appeared meanwhile)
so that an existing file is never replaced by accident.
"""
import errno
import fcntl
import hashlib
import os
import stat
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ... import protocol
from ...errors import (BadRequest, Conflict, FileExists, FileNotFound, InsufficientStorage, IsADirectory,
                       RangeNotSatisfiable)
from .paths import Target, fs_error, lstat_at

#: bytes per read and write: the protocol's chunk, so a piece is never split or joined
CHUNK = protocol.DEFAULT_SETTINGS["chunk"]
PARTIAL_SUFFIX = ".orbit-partial"
#: the longest file name in bytes (NAME_MAX of Linux's file systems)
NAME_MAX = 255
#: a partial older than this (s) is abandoned: removed when its directory is next written
STALE_PARTIAL_S = 24 * 3600.0
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_WRITE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
#: the answer header of a resume refused because the held part is not the sender's
RESUME_HEADER = "X-Orbit-Resume"
#: the answer header of a refusal for want of a transfer slot (the SDK waits and tries again)
BUSY_HEADER = "X-Orbit-Busy"
_NO_LINK = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS)


def partial_name(name: str) -> str:
    """``.<name>.orbit-partial``; for a name too long to take the additions (a file
    system's NAME_MAX counts bytes), its start plus a digest of all of it, so that any
    name that may exist has a partial name that may too, always the same one (a resume
    finds it)."""
    whole = "." + name + PARTIAL_SUFFIX
    if len(os.fsencode(whole)) <= NAME_MAX:
        return whole
    tag = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    room = NAME_MAX - len(os.fsencode("." + tag + PARTIAL_SUFFIX))
    start = name
    while len(os.fsencode(start)) > room:
        start = start[:-1]
    return "." + start + tag + PARTIAL_SUFFIX


def is_partial(name: str) -> bool:
    return name.startswith(".") and name.endswith(PARTIAL_SUFFIX)


class Upload:
    """One write of ``target`` from a stream, resumable at ``offset`` (the bytes the
    partial already holds; 0 starts over). ``held_sha256``, the sender's digest of its
    first ``offset`` bytes, is checked against the held part before the commit: a
    partial changed since (or another file's) is removed, never committed."""

    def __init__(self, target: Target, overwrite: bool = False, offset: int = 0,
                 mode: Optional[int] = None, mtime: Optional[float] = None,
                 sha256: Optional[str] = None, length: Optional[int] = None,
                 held_sha256: Optional[str] = None):
        if not target.name:
            raise IsADirectory("%s is a root directory" % target.path)
        self.target = target
        self.overwrite = overwrite
        self.offset = offset
        self.mode = mode
        self.mtime = mtime
        self.expected = sha256.lower() if sha256 else None
        self.length = length
        self.held_sha256 = held_sha256.lower() if held_sha256 and offset else None
        self.partial = partial_name(target.name)
        #: the committed file's lstat, once ``run`` succeeded (what its digest belongs to)
        self.committed: Optional[os.stat_result] = None

    def run(self, pieces: Iterable[bytes]) -> Dict[str, Any]:
        """Write ``pieces`` (the body as it arrives), check and commit; returns
        ``{"path", "size", "sha256"}``."""
        dir_fd = self.target.open_parent()
        try:
            self._check_target(dir_fd)
            fd = self._open_partial(dir_fd)
            try:
                digest, size = self._receive(dir_fd, fd, pieces)
                try:
                    self._finish(fd)
                except OSError as exc:
                    raise self._error(exc, dir_fd)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            self._commit(dir_fd)
            _fsync_dir(dir_fd)
            try:
                self.committed = os.stat(self.target.name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                pass
        finally:
            os.close(dir_fd)
        return {"path": self.target.path, "size": size, "sha256": digest}

    def _check_target(self, dir_fd: int) -> None:
        st = lstat_at(self.target.name, dir_fd, self.target.path, missing_ok=True)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectory("%s is a directory" % self.target.path)
        if not self.overwrite:
            raise FileExists("%s exists; pass overwrite to replace it" % self.target.path)

    def _open_partial(self, dir_fd: int) -> int:
        held = held_offset(self.target, dir_fd)
        if self.offset not in (0, held):
            raise Conflict("%s: the endpoint holds %d bytes of a partial upload, not %d; resume at "
                           "offset %d or start over at 0" % (self.target.path, held, self.offset, held))
        try:
            fd = os.open(self.partial, _WRITE_FLAGS, 0o666, dir_fd=dir_fd)
        except OSError as exc:
            raise self._error(exc, dir_fd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BadRequest("%s: the partial upload is not a regular file" % self.target.path)
            _lock_partial(fd, self.target.path)
            if self.offset == 0:
                os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _receive(self, dir_fd: int, fd: int, pieces: Iterable[bytes]) -> Tuple[str, int]:
        os.lseek(fd, self.offset, os.SEEK_SET)
        sha = TrailingHash(fd, self.offset, self.held_sha256)
        received = 0
        try:
            for piece in pieces:
                try:
                    _write_all(fd, piece)
                except OSError as exc:
                    raise self._error(exc, dir_fd)
                sha.wrote(len(piece))
                received += len(piece)
        except BaseException:
            sha.abandon()
            raise
        size = self.offset + received
        if self.length is not None and received != self.length:
            sha.abandon()
            raise BadRequest("%s: the body ended after %d of %d bytes; the endpoint holds %d bytes, "
                             "resume at that offset" % (self.target.path, received, self.length, size))
        try:
            digest = sha.hexdigest()
        except HeldMismatch:
            _unlink_quietly(self.partial, dir_fd)
            raise Conflict("%s: the %d bytes the endpoint held of an earlier upload are not the start "
                           "of this file (changed since, on either side); they were removed: upload "
                           "again from offset 0" % (self.target.path, self.offset),
                           headers={RESUME_HEADER: "mismatch"})
        if self.expected is not None and digest != self.expected:
            _unlink_quietly(self.partial, dir_fd)
            raise BadRequest("%s: sha256 mismatch: received %s, expected %s; nothing was written"
                             % (self.target.path, digest, self.expected))
        return digest, size

    def _finish(self, fd: int) -> None:
        if self.mode is not None:
            os.fchmod(fd, self.mode)
        if self.mtime is not None:
            os.utime(fd, (self.mtime, self.mtime))
        os.fsync(fd)

    def _commit(self, dir_fd: int) -> None:
        try:
            if self.overwrite:
                os.replace(self.partial, self.target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                _rename_no_replace(self.partial, self.target.name, dir_fd)
        except FileExistsError:
            raise FileExists("%s appeared during the upload; the data is kept: upload again with "
                             "overwrite at offset %d to replace it" % (self.target.path, self._held(dir_fd)))
        except OSError as exc:
            raise self._error(exc, dir_fd)

    def _held(self, dir_fd: int) -> int:
        st = lstat_at(self.partial, dir_fd, self.target.path, missing_ok=True)
        return st.st_size if st is not None else 0

    def _error(self, exc: OSError, dir_fd: int) -> Exception:
        """A full disk removes the partial (507); anything else keeps it for a resume."""
        if exc.errno in _NO_SPACE:
            _unlink_quietly(self.partial, dir_fd)
            return InsufficientStorage("%s: %s; the partial upload was removed"
                                       % (self.target.path, exc.strerror or "no space left"))
        return fs_error(exc, self.target.path)


class HeldMismatch(Exception):
    """The held part of a resumed upload is not what its sender holds."""


class TrailingHash:
    """sha256 of a file being written, computed by a thread that reads it back from its
    start (``pread``, the writer's offset untouched) and follows the writer. A resumed
    upload's held prefix is thus hashed while the rest of the body arrives, instead of
    before (which would stall the sender for as long as a large prefix takes to read),
    hashing overlaps writing, and the digest is of the bytes as stored. With
    ``held_sha256`` the digest of the first ``held`` bytes is checked on the way
    (``HeldMismatch`` from ``hexdigest``)."""

    def __init__(self, fd: int, held: int, held_sha256: Optional[str] = None):
        self._fd = fd
        self._held = held
        self._held_sha256 = held_sha256
        self._sha = hashlib.sha256()
        self._written = held
        self._ended = False
        self._stopped = False
        self._error: Optional[BaseException] = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="staging-sha256", daemon=True)
        self._thread.start()

    def wrote(self, n: int) -> None:
        with self._cond:
            self._written += n
            self._cond.notify()

    def hexdigest(self) -> str:
        """Waits until everything written is hashed."""
        with self._cond:
            self._ended = True
            self._cond.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._sha.hexdigest()

    def abandon(self) -> None:
        """Stops the thread (before the file is closed)."""
        with self._cond:
            self._ended = self._stopped = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        pos = 0
        try:
            while True:
                with self._cond:
                    while pos >= self._written and not self._ended:
                        self._cond.wait()
                    upto = self._written
                if pos >= upto:
                    return
                while pos < upto and not self._stopped:
                    # a read ends at the held part's end, where its digest is checked
                    stop = self._held if self._held_sha256 is not None and pos < self._held else upto
                    data = os.pread(self._fd, min(stop - pos, 4 * CHUNK), pos)
                    if not data:
                        raise BadRequest("the partial upload shrank while it was hashed; start over at offset 0")
                    self._sha.update(data)
                    pos += len(data)
                    if pos == self._held and self._held_sha256 is not None:
                        if self._sha.copy().hexdigest() != self._held_sha256:
                            raise HeldMismatch()
                if self._stopped:
                    return
        except BaseException as exc:
            self._error = exc


def held_offset(target: Target, dir_fd: Optional[int] = None) -> int:
    """How many bytes of a partial upload to ``target`` the endpoint holds (0: none)."""
    if not target.name:
        return 0
    own = dir_fd is None
    fd = target.open_parent() if own else dir_fd
    try:
        st = lstat_at(partial_name(target.name), fd, target.path, missing_ok=True)
    finally:
        if own:
            os.close(fd)
    return st.st_size if st is not None and stat.S_ISREG(st.st_mode) else 0


def sweep_partials(dir_fd: int, keep: Iterable[str] = (), now: Optional[float] = None,
                   max_age: float = STALE_PARTIAL_S) -> int:
    """Remove the abandoned partials (older than ``max_age``, not in ``keep``: those
    being written) in one directory."""
    now = time.time() if now is None else now
    keep = set(keep)
    removed = 0
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if not is_partial(entry.name) or entry.name in keep:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > max_age:
                removed += _unlink_quietly(entry.name, dir_fd)
    return removed


class FileSlice:
    """A file-like view of ``length`` bytes of an open file, from its current offset;
    ``close`` closes the file (the response's streaming closes it when done) and then
    calls ``on_close``, once. ``on_sha256`` (for a whole file): the bytes are hashed as
    they are read, and it is called with the digest once all ``length`` of them were."""

    def __init__(self, fd: int, length: int, on_sha256: Optional[Callable[[str], None]] = None,
                 on_close: Optional[Callable[[], Any]] = None):
        self._file = os.fdopen(fd, "rb", buffering=0)
        self._left = length
        self._on_sha256 = on_sha256
        self._on_close = on_close
        self._sha = hashlib.sha256() if on_sha256 is not None else None

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size is None or size < 0 else min(size, self._left)
        data = self._file.read(want) or b""
        self._left -= len(data)
        if not data:
            self._left, self._sha = 0, None         # the file shrank: no digest of it
        elif self._sha is not None:
            self._sha.update(data)
            if self._left == 0:
                self._on_sha256(self._sha.hexdigest())
        return data

    def close(self) -> None:
        self._file.close()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


def open_read(target: Target) -> Tuple[int, os.stat_result]:
    """A descriptor for reading ``target``, a regular file, and its stat; never follows
    a link swapped in for the last component."""
    if not target.name:
        raise IsADirectory("%s is a directory" % target.path)
    dir_fd = target.open_parent()
    try:
        fd = os.open(target.name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise fs_error(exc, target.path)
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectory("%s is a directory" % target.path)
        if not stat.S_ISREG(st.st_mode):
            raise BadRequest("%s is not a regular file" % target.path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def parse_range(header: Optional[str], size: int) -> Optional[Tuple[int, int]]:
    """``(start, end)`` (end exclusive) of a single ``bytes=`` range, or None for the
    whole file; 416 (with the size in ``Content-Range``) for one that is malformed or does
    not fit. As RFC 9110 14.2 allows, a Range of another unit (which a server must
    ignore) or of several ranges (no multipart answers here) gets the whole file."""
    if header is None or not header.strip():
        return None
    unit, _, spec = header.strip().partition("=")
    bad = RangeNotSatisfiable("cannot serve Range %r of a %d-byte file (one bytes=N-, N-M or -K range)"
                              % (header[:80], size), headers={"Content-Range": "bytes */%d" % size})
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        raise bad
    try:
        if first == "":
            count = int(last)
            if count <= 0:
                raise bad
            start, end = max(0, size - count), size
        else:
            start = int(first)
            end = size if last == "" else min(size, int(last) + 1)
    except ValueError:
        raise bad
    if start < 0 or start >= size or end <= start:
        raise bad
    return start, end


def remove_tree(name: str, dir_fd: int, shown: str) -> None:
    """Remove directory ``name`` below ``dir_fd`` and all it holds, by descriptors (a
    link inside is removed, never followed). Iterative, with one directory open at a
    time whatever the depth (a recursion ran out of stack, or of descriptors, on a deep
    tree): it goes back up by ``..``, checked to be the directory it came from."""
    cur = _open_dir_nofollow(name, dir_fd, shown)
    # per level: its name, its shown path, its identity, and its subdirectories still to remove
    stack: List[Tuple[str, str, Tuple[int, int], List[str]]] = []
    try:
        stack.append((name, shown, _identity(cur), _clear(cur, shown)))
        while True:
            level, here, _, pending = stack[-1]
            if pending:
                child = pending.pop()
                path = os.path.join(here, child)
                try:
                    nxt = _open_dir_nofollow(child, cur, path)
                except FileNotFound:
                    continue                    # removed meanwhile
                os.close(cur)
                cur = nxt
                stack.append((child, path, _identity(cur), _clear(cur, path)))
                continue
            if len(stack) == 1:
                break
            up = os.open("..", _DIR_FLAGS, dir_fd=cur)
            os.close(cur)
            cur = up
            if _identity(cur) != stack[-2][2]:
                raise Conflict("%s was moved while it was removed; stopped" % here)
            try:
                os.rmdir(level, dir_fd=cur)
            except OSError as exc:
                raise fs_error(exc, here)
            stack.pop()
    finally:
        os.close(cur)
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except OSError as exc:
        raise fs_error(exc, shown)


def _open_dir_nofollow(name: str, dir_fd: int, shown: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise fs_error(exc, shown)


def _identity(fd: int) -> Tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _clear(fd: int, shown: str) -> List[str]:
    """Unlink all but the subdirectories of the directory open as ``fd``; returns those."""
    subdirs = []
    with os.scandir(fd) as entries:
        children = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    for child, is_dir in children:
        if is_dir:
            subdirs.append(child)
            continue
        try:
            os.unlink(child, dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise fs_error(exc, os.path.join(shown, child))
    return subdirs


def _rename_no_replace(src: str, dst: str, dir_fd: int) -> None:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (FileExistsError), atomically
    where the file system has hard links, else with a check just before."""
    try:
        os.link(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        if lstat_at(dst, dir_fd, dst, missing_ok=True) is not None:
            raise FileExistsError(errno.EEXIST, "exists", dst)
        os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    os.unlink(src, dir_fd=dir_fd)


def _lock_partial(fd: int, shown: str) -> None:
    """Hold the partial for this upload alone. The plugin turns away a second upload to
    a path it is writing, but another plugin instance or endpoint writing the same file
    system (the bridge's staging and a local endpoint's both have /tmp; login nodes share
    $HOME) cannot see that: the lock on the file itself can (released when it is closed)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise Conflict("%s: another upload to this path is in progress (here or on another "
                       "endpoint writing this file system)" % shown)
    except OSError:
        pass        # a file system without locks: the plugin's own check still holds


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(dir_fd: int) -> None:
    """Make the rename durable; some file systems cannot fsync a directory."""
    try:
        os.fsync(dir_fd)
    except OSError:
        pass


def _unlink_quietly(name: str, dir_fd: int) -> int:
    try:
        os.unlink(name, dir_fd=dir_fd)
        return 1
    except OSError:
        return 0

