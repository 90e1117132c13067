"""Token auth: a Bearer header or the HttpOnly cookie set by ``POST /auth``."""
import hmac
from http.cookies import SimpleCookie
from typing import Optional

COOKIE = "orbit_token"


class Auth:
    def __init__(self, token: Optional[str]):
        self.token = token
        self.enabled = token is not None

    def valid(self, candidate: Optional[str]) -> bool:
        if not self.enabled:
            return True
        if not candidate:
            return False
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    def request_token(self, headers) -> Optional[str]:
        header = headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        cookie = headers.get("Cookie")
        if cookie:
            try:
                morsel = SimpleCookie(cookie).get(COOKIE)
            except Exception:
                return None
            if morsel is not None:
                return morsel.value
        return None

    def allows(self, headers) -> bool:
        return self.valid(self.request_token(headers))

    def cookie_header(self, secure: bool) -> str:
        return _cookie("%s=%s" % (COOKIE, self.token), secure)

    def expired_cookie_header(self, secure: bool) -> str:
        """Logging out: the browser drops the HttpOnly cookie it cannot touch itself."""
        return _cookie("%s=; Max-Age=0" % COOKIE, secure)


def _cookie(value: str, secure: bool) -> str:
    parts = [value, "Path=/", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)
