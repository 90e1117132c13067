"""Confinement of staging paths to the allowed roots.

A path is checked twice. First by name: ``~`` expanded, links and ``..`` resolved
(``os.path.realpath``), and the result must lie under a resolved root (403 otherwise).
Then by descriptor: the parent directory is opened from the root one component at a
time with ``O_NOFOLLOW``, and every later operation works relative to that directory
descriptor, so a symlink swapped in after the check (even during a transfer) is refused
or never followed: nothing outside the roots is read or written.
"""
import errno
import os
import stat
from typing import Iterable, List, Optional, Tuple

from ...errors import BadRequest, FileNotFound, NotADirectory, PermissionDenied

#: the longest path accepted (the kernel's own limit on Linux)
MAX_PATH = 4096
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def default_roots() -> List[str]:
    """``$HOME`` and ``/tmp``: where a user's files usually are."""
    return [os.path.expanduser("~"), "/tmp"]


class Target:
    """A checked path: its parent directory (resolved), the last component, and the
    root it lies under. ``name`` is empty for a root itself."""

    def __init__(self, path: str, root: str, parent: str, name: str):
        self.path = path
        self.root = root
        self.parent = parent
        self.name = name

    def open_parent(self) -> int:
        """A descriptor of the parent directory, opened from the root without following
        any link on the way: a component swapped for a symlink since the check is 403."""
        return open_below(self.root, self.parent)

    def __repr__(self) -> str:
        return "Target(%r)" % self.path


class Roots:
    """The allowed roots of one staging plugin, resolved once."""

    def __init__(self, roots: Optional[Iterable[str]] = None):
        if isinstance(roots, str) or not (roots is None or isinstance(roots, (list, tuple))):
            raise ValueError("staging's roots must be a list of paths, not %r" % (roots,))
        chosen = list(roots) if roots is not None else default_roots()
        if not chosen:
            raise ValueError("staging needs at least one root")
        resolved = []
        for root in chosen:
            if not isinstance(root, str) or not root:
                raise ValueError("a staging root must be a non-empty path, not %r" % (root,))
            expanded = os.path.expanduser(root)
            if not os.path.isabs(expanded):
                raise ValueError("a staging root must be absolute or start with ~: %r" % root)
            real = os.path.realpath(expanded)
            if real not in resolved:
                resolved.append(real)
        self.roots = resolved
        self.home = os.path.realpath(os.path.expanduser("~"))

    def root_of(self, real: str) -> Optional[str]:
        """The longest root that ``real`` (a resolved path) lies under, if any."""
        best = None
        for root in self.roots:
            if real == root or real.startswith(root.rstrip("/") + "/"):
                if best is None or len(root) > len(best):
                    best = root
        return best

    def check(self, path: object, follow: bool = True) -> Target:
        """Resolve and confine ``path``. ``follow=False`` keeps a final symlink itself
        (remove, rename, overwrite act on the link, not on what it points to)."""
        expanded = expand(path)
        head, name = os.path.split(expanded.rstrip("/") or "/")
        if follow or name in ("", ".", ".."):
            real = os.path.realpath(expanded)
        else:
            real = os.path.join(os.path.realpath(head), name)
        root = self.root_of(real)
        if root is None:
            raise PermissionDenied("%s is outside the allowed roots (%s)" % (path, ", ".join(self.roots)))
        if real == root:
            return Target(real, root, root, "")
        parent, name = os.path.split(real)
        return Target(real, root, parent, name)


def expand(path: object) -> str:
    """``path`` with ``~`` expanded; 400 unless it is then an absolute path."""
    if not isinstance(path, str) or not path:
        raise BadRequest("path must be a non-empty string, not %r" % (path,))
    if "\0" in path or len(path) > MAX_PATH:
        raise BadRequest("path must have no NUL character and at most %d characters" % MAX_PATH)
    if path == "~" or path.startswith("~/"):
        path = os.path.expanduser("~") + path[1:]
    if not os.path.isabs(path):
        raise BadRequest("path must be absolute or start with ~/: %r" % path)
    return path


def open_below(root: str, directory: str, create: bool = False) -> int:
    """Open ``directory`` (resolved, at or under ``root``) component by component from
    ``root`` with ``O_NOFOLLOW``, making missing ones if ``create``; the caller closes
    the descriptor."""
    rel = os.path.relpath(directory, root)
    parts: Tuple[str, ...] = () if rel == "." else tuple(rel.split(os.sep))
    fd = _open_dir(root, None, root, False)
    try:
        for part in parts:
            nxt = _open_dir(part, fd, directory, create)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_dir(name: str, dir_fd: Optional[int], shown: str, create: bool) -> int:
    try:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create:
                raise
        try:
            os.mkdir(name, dir_fd=dir_fd)
        except FileExistsError:
            pass
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOTDIR and _is_link(name, dir_fd):
            exc = OSError(errno.ELOOP, "a symbolic link", name)
        raise fs_error(exc, shown)


def _is_link(name: str, dir_fd: Optional[int]) -> bool:
    """Whether ``name`` is a symlink (``O_DIRECTORY | O_NOFOLLOW`` on a link is
    ``ENOTDIR`` on Linux, not ``ELOOP``)."""
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def fs_error(exc: OSError, path: str) -> Exception:
    """The ORBIT kind for a file-system error on ``path`` (the detail names the path,
    not the descriptor-relative name the call saw)."""
    code = exc.errno
    reason = exc.strerror or str(exc)
    if code == errno.ELOOP:
        return PermissionDenied("%s: a symbolic link appeared on the way; refused" % path)
    if code == errno.ENOENT:
        return FileNotFound("%s: no such file or directory" % path)
    if code == errno.ENOTDIR:
        return NotADirectory("%s: not a directory" % path)
    if code in (errno.EACCES, errno.EPERM):
        return PermissionDenied("%s: %s" % (path, reason))
    if code == errno.ENAMETOOLONG:
        return BadRequest("%s: %s" % (path, reason))
    exc.filename = path
    return exc


def lstat_at(name: str, dir_fd: int, shown: str, missing_ok: bool = False) -> Optional[os.stat_result]:
    """``name``'s own stat below ``dir_fd`` (never following a link); None when it is
    missing and ``missing_ok``, else the ORBIT kind for the error on ``shown``."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        if missing_ok and exc.errno == errno.ENOENT:
            return None
        raise fs_error(exc, shown)
