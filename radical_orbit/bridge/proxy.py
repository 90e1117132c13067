"""Forwards ``/<endpoint>/<rest>`` to that endpoint over its WebSocket.

The request body is read from the client in chunks and sent as DATA under the
stream's send window; the response body is written to the client as its chunks
arrive, returning credit as they go. Memory per request is bounded by the
window whatever the body size.
"""
import logging
from typing import Any, Dict, Iterator, Optional

from .. import protocol
from .auth import REFUSED_HEADER
from ..streams import Piece, pump
from .connection import AnsweredEarly, EndpointConnection, Pending
from .framing import BodyReader

log = logging.getLogger("radical_orbit.bridge.proxy")

#: headers the bridge never forwards: auth belongs to the bridge, hop-by-hop belongs to HTTP
_DROP = frozenset(("authorization", "cookie", "connection", "keep-alive", "transfer-encoding",
                   "te", "upgrade", "proxy-authorization", "host", "content-length"))
_HOP_BY_HOP_RESPONSE = frozenset(("connection", "keep-alive", "transfer-encoding",
                                  "content-length", "content-type", "set-cookie", "set-cookie2",
                                  "x-content-type-options", "content-security-policy",
                                  REFUSED_HEADER.lower()))
PROXIED_ANSWER_HEADERS = {"X-Content-Type-Options": "nosniff",
                          "Content-Security-Policy": "sandbox; default-src 'none'"}


def plugin_headers(headers) -> Dict[str, str]:
    """What a plugin may see of the client's headers (lower-case names): never the
    client's credentials, never HTTP's hop-by-hop headers."""
    return {k.lower(): v for k, v in headers.items() if k.lower() not in _DROP}


def answer_headers(headers: Optional[Dict[Any, Any]]) -> Dict[str, str]:
    """A plugin's answer headers (an endpoint's, or a bridge-hosted plugin's) minus
    hop-by-hop ones, cookies (the bridge's origin belongs to the Explorer) and the mark of
    the bridge's own auth refusal (a plugin's 401 must not pass for one), plus
    headers that keep an answer served from that origin from running as a page there."""
    result = {str(k): str(v) for k, v in (headers or {}).items()
              if str(k).lower() not in _HOP_BY_HOP_RESPONSE}
    result.update(PROXIED_ANSWER_HEADERS)
    return result


class ProxyCall:
    """One forwarded request. The whole request body is pumped before the response is
    relayed (HTTP clients read only after sending); a complete early answer (an error)
    stops the pumping and the client connection is closed after it."""

    def __init__(self, conn: EndpointConnection, settings: Dict[str, Any]):
        self.conn = conn
        self.chunk = conn.settings["chunk"]
        self.deadline = settings["request_timeout"]
        self.idle = settings["stream_idle_timeout"]
        self.max_pending = settings["max_pending"]
        self.finished = False

    def forward(self, method: str, path: str, query: str, headers, body: BodyReader) -> Pending:
        """Send the request (and its body) and wait for the response head."""
        pending = self.conn.open_request(self.max_pending, self.idle)
        try:
            fwd = plugin_headers(headers)
            try:
                pump(_pieces(body, self.chunk),
                     lambda first, end: self.conn.send(
                         protocol.REQUEST, id=pending.id, method=method, path=path, query=query,
                         headers=fwd, body=first, end=end, length=body.length, deadline=self.deadline),
                     lambda chunk, end: self.conn.send(protocol.DATA, id=pending.id, body=chunk, end=end),
                     pending.open_window, self.idle)
            except AnsweredEarly:
                pass
            pending.wait(self.deadline)
            return pending
        except Exception:
            self.conn.close_request(pending, cancel=True)
            raise

    @staticmethod
    def response_headers(pending: Pending) -> Dict[str, str]:
        return answer_headers(pending.response.get("headers"))

    def body_chunks(self, pending: Pending) -> Iterator[bytes]:
        """The response body as it arrives; ``finished`` tells whether it was read to its end."""
        for chunk in pending.body.iter_chunks():
            yield chunk
        self.finished = True


def _pieces(body: BodyReader, size: int) -> Iterator[Piece]:
    """The client's request body in chunks of at most ``size`` bytes, each flagged last or not."""
    while True:
        chunk = body.read(size)
        yield chunk, body.done
        if body.done:
            return
