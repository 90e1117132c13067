"""One error vocabulary for bridge, endpoint, plugins and client.

Every error travels as the JSON envelope
``{"error": true, "status_code": N, "detail": "..."}``; each kind also
inherits the builtin a Python user would naturally catch.
"""
from typing import Any, Dict, Optional


class OrbitError(Exception):
    """Base of all ORBIT errors; carries an HTTP status code and a readable detail."""

    status_code = 500

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
        return envelope(self.status_code, self.detail)


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


_BY_STATUS = {cls.status_code: cls for cls in (
    BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
    Gone, PayloadTooLarge, Unavailable, Timeout)}


def envelope(status_code: int, detail: str) -> Dict[str, Any]:
    return {"error": True, "status_code": int(status_code), "detail": str(detail)}


def error_for_status(status_code: int, detail: str,
                     headers: Optional[Dict[str, str]] = None) -> OrbitError:
    """The typed error for an HTTP status (the client uses this on every non-2xx answer)."""
    cls = _BY_STATUS.get(status_code, OrbitError)
    if cls is Unavailable:
        retry = (headers or {}).get("Retry-After")
        try:
            retry_after = float(retry) if retry is not None else None
        except ValueError:
            retry_after = None
        return Unavailable(detail, status_code, retry_after=retry_after)
    return cls(detail, status_code)


def from_exception(exc: BaseException) -> OrbitError:
    """Map any exception raised by a handler onto the envelope's vocabulary."""
    if isinstance(exc, OrbitError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return NotFound(str(exc))
    if isinstance(exc, PermissionError):
        return Forbidden(str(exc))
    if isinstance(exc, FileExistsError):
        return Conflict(str(exc))
    if isinstance(exc, ValueError):
        return BadRequest("%s: %s" % (type(exc).__name__, exc))
    return OrbitError("internal error: %s: %s" % (type(exc).__name__, exc), 500)
