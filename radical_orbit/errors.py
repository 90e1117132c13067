"""One error vocabulary for bridge, endpoint, plugins and client.

Every error travels as the JSON envelope
``{"error": true, "status_code": N, "detail": "..."}``; each kind also
inherits the builtin a Python user would naturally catch. Kinds that share a
status code with a more general one (``FileNotFound`` is a 404 like ``NotFound``)
add an optional ``"kind"`` field to the envelope, so that the client raises the
same, more precise, class.
"""
import errno
from typing import Any, Dict, Optional


class OrbitError(Exception):
    """Base of all ORBIT errors; carries an HTTP status code and a readable detail."""

    status_code = 500
    #: set on kinds the status code alone does not name; sent as the envelope's ``kind``
    kind: Optional[str] = None

    def __init__(self, detail: str = "", status_code: Optional[int] = None,
                 headers: Optional[Dict[str, str]] = None):
        super().__init__(detail)
        self.detail = detail or self.__class__.__name__
        if status_code is not None:
            self.status_code = status_code
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        return "%d: %s" % (self.status_code, self.detail)

    def envelope(self) -> Dict[str, Any]:
        return envelope(self.status_code, self.detail, self.kind)


class BadRequest(OrbitError, ValueError):
    status_code = 400


class Unauthorized(OrbitError, PermissionError):
    status_code = 401


class Forbidden(OrbitError, PermissionError):
    status_code = 403


class NotFound(OrbitError, LookupError):
    status_code = 404


class MethodNotAllowed(OrbitError):
    status_code = 405


class Conflict(OrbitError, FileExistsError):
    status_code = 409


class Gone(OrbitError, LookupError):
    status_code = 410


class PayloadTooLarge(OrbitError, ValueError):
    status_code = 413


class Unavailable(OrbitError, ConnectionError):
    """503: the peer is gone or saturated; ``retry_after`` says when to try again."""

    status_code = 503

    def __init__(self, detail: str = "", status_code: Optional[int] = None,
                 headers: Optional[Dict[str, str]] = None,
                 retry_after: Optional[float] = None):
        super().__init__(detail, status_code, headers)
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers.setdefault("Retry-After", str(max(1, int(round(retry_after)))))


class Timeout(OrbitError, TimeoutError):
    status_code = 504


class RangeNotSatisfiable(OrbitError, ValueError):
    """416: a ``Range`` header that does not fit the resource."""

    status_code = 416


class InsufficientStorage(OrbitError, OSError):
    """507: the disk (or quota) is full; whatever was partly written is removed."""

    status_code = 507


# -- file kinds: the builtin a caller of a file API expects, on an ORBIT status ------
class FileNotFound(NotFound, FileNotFoundError):
    kind = "FileNotFoundError"


class FileExists(Conflict):
    """409: the target exists (``Conflict`` is already a ``FileExistsError``)."""

    kind = "FileExistsError"


class NotADirectory(BadRequest, NotADirectoryError):
    kind = "NotADirectoryError"


class IsADirectory(BadRequest, IsADirectoryError):
    kind = "IsADirectoryError"


class PermissionDenied(Forbidden):
    """403 from the file system or outside the allowed paths (``Forbidden`` is a
    ``PermissionError`` already)."""

    kind = "PermissionError"


_BY_STATUS = {cls.status_code: cls for cls in (
    BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
    Gone, PayloadTooLarge, RangeNotSatisfiable, Unavailable, Timeout,
    InsufficientStorage)}

_BY_KIND = {cls.kind: cls for cls in (
    FileNotFound, FileExists, NotADirectory, IsADirectory, PermissionDenied)}


def envelope(status_code: int, detail: str, kind: Optional[str] = None) -> Dict[str, Any]:
    body: Dict[str, Any] = {"error": True, "status_code": int(status_code), "detail": str(detail)}
    if kind:
        body["kind"] = str(kind)
    return body


def error_for_status(status_code: int, detail: str,
                     headers: Optional[Dict[str, str]] = None,
                     kind: Optional[str] = None) -> OrbitError:
    """The typed error for an HTTP status and the envelope's optional ``kind`` (the
    client uses this on every non-2xx answer); a kind unknown here, or one that does
    not belong to the status, falls back to the status's class."""
    cls = _BY_STATUS.get(status_code, OrbitError)
    by_kind = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if by_kind is not None and by_kind.status_code == status_code:
        err = by_kind(detail, status_code)
    elif cls is Unavailable:
        retry = next((v for k, v in (headers or {}).items() if str(k).lower() == "retry-after"), None)
        try:
            retry_after = float(retry) if retry is not None else None
        except ValueError:
            retry_after = None
        err = Unavailable(detail, status_code, retry_after=retry_after)
    else:
        err = cls(detail, status_code)
    # a plugin's own headers (X-Orbit-Busy, ...) stay readable on the error
    err.headers.update((k, v) for k, v in (headers or {}).items() if str(k).lower().startswith("x-orbit-"))
    return err


def from_exception(exc: BaseException) -> OrbitError:
    """Map any exception raised by a handler onto the envelope's vocabulary."""
    if isinstance(exc, OrbitError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return FileNotFound(str(exc))
    if isinstance(exc, PermissionError):
        return PermissionDenied(str(exc))
    if isinstance(exc, FileExistsError):
        return FileExists(str(exc))
    if isinstance(exc, NotADirectoryError):
        return NotADirectory(str(exc))
    if isinstance(exc, IsADirectoryError):
        return IsADirectory(str(exc))
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(str(exc))
    if isinstance(exc, ValueError):
        return BadRequest("%s: %s" % (type(exc).__name__, exc))
    return OrbitError("internal error: %s: %s" % (type(exc).__name__, exc), 500)
