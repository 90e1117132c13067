"""Token auth: a Bearer header or the HttpOnly cookie set by ``POST /auth``, and the
origin rule that keeps other web pages from using that cookie.

``SameSite=Strict`` does not separate ports: a page on another port of the same host is
the same *site*, and the browser sends it our cookie. So a request that the cookie
authenticates must also show it comes from the bridge's own *origin* (scheme, host and
port), as Jupyter Server checks it: ``Sec-Fetch-Site`` and ``Origin``. A Bearer header
is never sent by a browser on its own, so a request carrying one needs no such proof."""
import hmac
import ipaddress
from http.cookies import SimpleCookie
from typing import Iterable, Optional, Tuple
from urllib.parse import urlsplit

from ..errors import Forbidden, Unauthorized

COOKIE = "orbit_token"
#: methods that change nothing (RFC 9110 9.2.1); every other one needs proof of origin
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
#: Sec-Fetch-Site values of a request the bridge's own pages (or the user) made
SAME_ORIGIN_SITES = frozenset(("same-origin", "none"))
DEFAULT_PORTS = {"http": 80, "https": 443}

BEARER = "bearer"
COOKIE_AUTH = "cookie"

#: set on every 401 in which the bridge itself refuses the credential, and removed from
#: every plugin answer it relays: so a client (the Explorer) tells "log in again" from a
#: plugin's own 401 (Globus wanting consent) passed through by an endpoint
REFUSED_HEADER = "X-Orbit-Auth"
REFUSED = "refused"


def refused(detail: str) -> Unauthorized:
    """The bridge's own 401: the token is missing or wrong (see ``REFUSED_HEADER``)."""
    return Unauthorized(detail, headers={"WWW-Authenticate": "Bearer", REFUSED_HEADER: REFUSED})


class Auth:
    def __init__(self, token: Optional[str], host_names: Iterable[str] = ()):
        """``host_names``: the names this bridge is reached by (its bind host, this
        host's names); with auth off, a request naming any other host is refused."""
        self.token = token
        self.enabled = token is not None
        self.host_names = frozenset(n.lower() for n in host_names) | {"localhost"}

    def valid(self, candidate: Optional[str]) -> bool:
        if not self.enabled:
            return True
        if not candidate:
            return False
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    def check(self, method: str, headers, secure: bool, open_route: bool = False,
              cookie_ok: bool = True) -> bool:
        """Raise ``Forbidden`` for a browser request from another origin that the
        cookie would authenticate (or that logs in or out), ``Unauthorized`` for a
        missing or wrong token on a route that needs one. ``cookie_ok=False``: the
        route takes only the Bearer header (``/register``). True when the request
        carried a valid credential (or auth is off), False on an open route without one."""
        if not self.enabled:
            problem = rebinding_problem(headers.get("Host"), self.host_names)
            if problem:
                raise Forbidden(problem)
        token, source = credential(headers)
        if source == COOKIE_AUTH and not cookie_ok:
            token, source = None, None
        if source != BEARER:
            # an open route (the Explorer's files, log in, log out) does not use the cookie
            problem = origin_problem(method, headers, secure,
                                     cookie=source == COOKIE_AUTH and not open_route)
            if problem:
                raise Forbidden("cross-origin request refused: %s" % problem)
        if self.valid(token):
            return True
        if open_route:
            return False
        if not cookie_ok:
            raise refused("this route takes only 'Authorization: Bearer <token>', not the cookie")
        raise refused("missing or wrong token: send 'Authorization: Bearer <token>'")

    def cookie_header(self, secure: bool) -> str:
        return _cookie("%s=%s" % (COOKIE, self.token), secure)

    def expired_cookie_header(self, secure: bool) -> str:
        """Logging out: the browser drops the HttpOnly cookie it cannot touch itself."""
        return _cookie("%s=; Max-Age=0" % COOKIE, secure)


def credential(headers) -> Tuple[Optional[str], Optional[str]]:
    """The token a request carries and where: ``(token, BEARER | COOKIE_AUTH)``, or
    ``(None, None)``. A Bearer header wins over the cookie."""
    header = headers.get("Authorization") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), BEARER
    cookie = headers.get("Cookie")
    if cookie:
        try:
            morsel = SimpleCookie(cookie).get(COOKIE)
        except Exception:
            return None, None
        if morsel is not None:
            return morsel.value, COOKIE_AUTH
    return None, None


def origin_problem(method: str, headers, secure: bool, cookie: bool) -> Optional[str]:
    """Why a request must not run as coming from a browser page of another origin, or
    None. Any request that a browser marks as cross-origin and that changes something
    or uses the cookie is refused; one that changes something with the cookie must also
    say where it comes from (browsers send ``Origin`` with every such request; a
    non-browser client sends the Bearer header instead). This holds with auth off too: a
    web page the user visits cannot drive a ``--no-auth`` bridge through the browser."""
    # a WebSocket handshake is a GET that opens a channel for writing: unsafe too
    unsafe = method.upper() not in SAFE_METHODS or "Upgrade" in headers
    if not unsafe and not cookie:
        return None
    site = (headers.get("Sec-Fetch-Site") or "").strip().lower()
    if site and site not in SAME_ORIGIN_SITES:
        return "Sec-Fetch-Site is %r" % site
    origin = headers.get("Origin")
    if origin is not None:
        own = own_origin(headers.get("Host"), secure)
        if own is None:
            return "no usable Host header to compare Origin %r with" % origin[:200]
        if normal_origin(origin) != own:
            return "Origin %r is not the bridge's origin %s" % (origin[:200], "%s://%s:%d" % own)
        return None
    if unsafe and cookie and not site:
        return "a request authenticated by the cookie must carry an Origin header " \
               "(scripts send 'Authorization: Bearer <token>' instead)"
    return None


def rebinding_problem(host: Optional[str], names: Iterable[str]) -> Optional[str]:
    """Why a request to a bridge without auth must be refused by its Host header, or
    None. A web page can rebind its own DNS name to our address: its requests are then
    same-origin for the browser, and only the Host header (its name) gives them away.
    IP addresses, ``localhost`` and the bridge's own names pass; a request without a
    Host (no browser sends one) too."""
    if not host:
        return None
    try:
        hostname = urlsplit("//" + host.strip()).hostname
    except ValueError:
        hostname = None
    if hostname:
        try:
            ipaddress.ip_address(hostname)
            return None
        except ValueError:
            if hostname in names or hostname.endswith(".localhost"):
                return None
    return ("Host %r is not a name of this bridge: with auth off only its addresses, localhost "
            "and its own host names are accepted (a page rebinding its DNS name to this bridge "
            "would otherwise drive it)" % host[:200])


def own_origin(host: Optional[str], secure: bool) -> Optional[Tuple[str, str, int]]:
    """The bridge's origin as the browser addressed it: our scheme and its Host header."""
    if not host:
        return None
    return normal_origin("%s://%s" % ("https" if secure else "http", host.strip()))


def normal_origin(origin: str) -> Optional[Tuple[str, str, int]]:
    """``(scheme, host, port)`` with the default port filled in, or None for an origin
    that names no host (``null``, ``file://``, garbage)."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username is not None:
        return None
    return parts.scheme, parts.hostname, port if port is not None else DEFAULT_PORTS[parts.scheme]


def _cookie(value: str, secure: bool) -> str:
    parts = [value, "Path=/", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)
