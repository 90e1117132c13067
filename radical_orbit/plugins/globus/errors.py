"""Globus failures -> ORBIT's error envelope.

A missing consent (Globus's ConsentRequired / an auth requirements error) becomes 401
with what to do; Globus's 401/403/404/409/429 keep their codes (a 429 its Retry-After);
any other answer, a 400 included, is 502 with Globus's own code and message (a 400 is
Globus refusing what the plugin sent on the caller's behalf: its detail says so, and
what Globus objected to); an unreachable Globus is 502, a timeout 504. Details name
Globus's code and request id, never a credential.
"""
import contextlib
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence

import globus_sdk
from globus_sdk import gare

from ...errors import OrbitError, Timeout

#: Globus statuses passed through as they are; any other becomes 502
KEPT = (401, 403, 404, 409, 429)
#: the envelope's ``kind`` of a consent-required 401 (the SDK raises GlobusConsentRequired)
CONSENT_KIND = "GlobusConsentRequired"
CONSENT_MARK = "required scopes: "
#: what globus-sdk raises when an answer of Globus is not what it reads (a token answer
#: without its fields, an HTML page where JSON belongs): Globus's doing, never the caller's
UNREADABLE = (ValueError, KeyError, TypeError, AttributeError)
#: characters of an answer that is not Globus's document a detail quotes
SNIPPET = 200


class GlobusFailure(OrbitError):
    """An error Globus answered, in ORBIT's vocabulary."""


class ConsentRequired(GlobusFailure):
    """401: Globus needs the user's consent to more scopes, or a fresh login, first."""

    status_code = 401
    kind = CONSENT_KIND

    def __init__(self, requirement: "gare.GARE", message: Optional[str]):
        params = requirement.authorization_parameters
        self.required_scopes: List[str] = list(params.required_scopes or [])
        needs = []
        if params.session_required_identities or params.session_required_single_domain:
            needs.append("log in with %s" % ", ".join((params.session_required_identities or []) +
                                                      (params.session_required_single_domain or [])))
        if params.session_required_mfa:
            needs.append("log in with multi-factor authentication")
        if params.session_required_policies:
            needs.append("satisfy the policies %s" % ", ".join(params.session_required_policies))
        scopes = " ".join(self.required_scopes)
        if scopes:
            needs.append("consent to %s (e.g. `globus session consent '%s'` with the Globus CLI, or "
                         "your app's login flow asking for these scopes)" % (scopes, scopes))
        detail = ("Globus needs more authorization before it does this (%s: %s). Log in to Globus "
                  "again and %s, then start a new globus session here with the new tokens; %s%s"
                  % (requirement.code, params.session_message or message or "no message",
                     "; ".join(needs) or "grant what Globus asks for", CONSENT_MARK, scopes or "(none)"))
        super().__init__(detail)


def translate(exc: BaseException) -> OrbitError:
    """The ORBIT error for a globus-sdk exception (others come back unchanged as 500s)."""
    if isinstance(exc, globus_sdk.GlobusAPIError):
        return _api_error(exc)
    if isinstance(exc, globus_sdk.GlobusTimeoutError):
        return Timeout("Globus did not answer in time: %s" % _short(exc))
    if isinstance(exc, globus_sdk.NetworkError):
        return GlobusFailure("cannot reach Globus: %s" % _short(exc), 502)
    if isinstance(exc, OrbitError):
        return exc
    return GlobusFailure("globus-sdk could not use Globus's answer (a proxy or a network in between?): "
                         "%s: %s" % (type(exc).__name__, _short(exc)), 502)


def _api_error(exc: "globus_sdk.GlobusAPIError") -> OrbitError:
    requirement = gare.to_gare(exc)
    if requirement is not None:
        return ConsentRequired(requirement, exc.message)
    status = exc.http_status
    message = exc.message or exc.http_reason or "no message"
    detail = "Globus %s: %s: %s" % (status, exc.code or "Error", message)
    if exc.request_id:
        detail += " (Globus request id %s)" % exc.request_id
    if status == 401:
        detail += "; the credentials were refused (an expired or revoked token?): start a new globus session"
    elif status == 400:
        detail = "Globus refused the request as invalid: " + detail
    if status not in KEPT:
        return GlobusFailure(detail, 502)
    headers: Dict[str, str] = {}
    retry = exc.headers.get("Retry-After") if status == 429 else None
    if retry:
        headers["Retry-After"] = retry
    return GlobusFailure(detail, status, headers=headers)


def document(response: Any, what: str, keys: Sequence[str] = (), listing: bool = False) -> Dict[str, Any]:
    """Globus's answer as the JSON object it must be: with ``keys`` (not null), and with
    ``DATA`` a list of objects for a ``listing``. Anything else (a proxy's HTML page, JSON
    of another shape) is 502 quoting what came, not a 500 further on or a 200 passing it
    along."""
    data = getattr(response, "data", response)
    if isinstance(data, dict) and all(data.get(key) is not None for key in keys):
        entries = data.get("DATA")
        if not listing or (isinstance(entries, list) and all(isinstance(e, dict) for e in entries)):
            return data
    text = getattr(response, "text", None)
    if not isinstance(text, str):
        text = repr(data)
    raise GlobusFailure("Globus answered with something that is not what Globus sends for %s "
                        "(a proxy or a network in between?): %s" % (what, _snippet(text)), 502)


def _snippet(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return (text[:SNIPPET] + "...") if len(text) > SNIPPET else (text or "an empty body")


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__


@contextlib.contextmanager
def globus_errors() -> Iterator[None]:
    """Run a Globus call (nothing else: what it raises is Globus's doing); its failure
    leaves as the ORBIT error, without the SDK's exception chained to it (a traceback
    of it would be logged for a 5xx)."""
    try:
        yield
    except OrbitError:
        raise
    except (globus_sdk.GlobusError,) + UNREADABLE as exc:
        raise translate(exc) from None
