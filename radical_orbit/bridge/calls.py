"""Calls from the bridge's own plugins to endpoints (and to the bridge itself).

A bridge-hosted plugin gets a ``BridgeCalls`` as ``context.bridge``: it opens a call to
any endpoint through the same proxy machinery that serves clients (flow-controlled
bodies, the bridge's timeouts), so a plugin such as staging's ``copy`` can pump one
endpoint's download into another's upload with bounded memory, never holding a body
whole. Endpoint-hosted plugins get ``context.bridge = None``.
"""
import json
from typing import Any, Dict, Iterable, Iterator, Optional, Union

from ..errors import NotFound, OrbitError, error_for_status
from ..plugin import Request, encode_query, parse_query
from .connection import EndpointConnection, Pending
from .framing import READ_CHUNK
from .proxy import ProxyCall

#: the pseudo-endpoint of the bridge's own plugins
BRIDGE = "bridge"
#: bytes of an error answer read to get its detail
MAX_ERROR_BODY = 64 * 1024

Body = Union[None, bytes, Iterable[bytes]]


class CallResponse:
    """The answer of one call: ``status``, ``headers`` (lower-case names), the body as
    chunks (``iter_chunks``, each wait bounded by the bridge's stream idle timeout).
    ``close`` releases the call; a body not read to its end is cancelled at the endpoint."""

    def __init__(self, status: int, headers: Dict[str, str], chunks: Iterator[bytes],
                 length: Optional[int], release=None):
        self.status = status
        self.headers = {str(k).lower(): str(v) for k, v in headers.items()}
        self.length = length
        self._chunks = chunks
        self._release = release
        self._finished = False

    def iter_chunks(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if chunk:
                yield chunk
        self._finished = True

    def read_all(self, limit: int) -> bytes:
        """The whole body, for small answers (OrbitError 502 beyond ``limit`` bytes)."""
        out, got = [], 0
        for chunk in self.iter_chunks():
            got += len(chunk)
            if got > limit:
                raise OrbitError("answer larger than %d bytes" % limit, 502)
            out.append(chunk)
        return b"".join(out)

    def json(self, limit: int = 2**20) -> Any:
        try:
            return json.loads(self.read_all(limit) or b"null")
        except ValueError as exc:
            raise OrbitError("answer is not JSON: %s" % exc, 502)

    def raise_for_status(self, what: str) -> None:
        """The typed error of a non-2xx answer (its envelope's detail, prefixed by ``what``)."""
        if self.status < 400:
            return
        detail = kind = None
        try:
            body = self.json(MAX_ERROR_BODY)
            if isinstance(body, dict):
                detail, kind = body.get("detail"), body.get("kind")
        except OrbitError:
            pass
        finally:
            self.close()
        raise error_for_status(self.status, "%s: %s" % (what, detail or "status %d" % self.status),
                               self.headers, kind)

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release(self._finished)

    def __enter__(self) -> "CallResponse":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class BridgeCalls:
    """What a bridge-hosted plugin may call: ``open_call``, nothing else of the bridge."""

    def __init__(self, bridge):
        self._bridge = bridge

    def open_call(self, endpoint: str, method: str, path: str,
                  query: Optional[Dict[str, Any]] = None, headers: Optional[Dict[str, str]] = None,
                  body: Body = None, length: Optional[int] = None) -> CallResponse:
        """Send ``method /<endpoint>/<path>?<query>`` with ``body`` (bytes, or an iterable
        of chunks pulled as the endpoint's window allows) and return once the answer's
        head is in. Waits are bounded by ``request_timeout`` (the head) and
        ``stream_idle_timeout`` (each chunk either way). The caller closes the answer."""
        query_string = encode_query(query or {})
        reader = ChunkReader(body, length)
        if endpoint == BRIDGE:
            return self._local(method, path, query_string, headers or {}, reader)
        conn = self._bridge.topology.get(endpoint)
        if conn is None:
            raise NotFound("no endpoint %r" % endpoint)
        return _remote(conn, self._bridge.settings, method, path, query_string, headers or {}, reader)

    def _local(self, method: str, path: str, query: str, headers: Dict[str, str],
               reader: "ChunkReader") -> CallResponse:
        host = self._bridge.local
        if host is None:
            raise NotFound("this bridge hosts no plugins")
        req = Request(method, path, parse_query(query), headers, reader,
                      "bridge-call", reader.length)
        resp = host.dispatch(req)
        chunks = resp.chunks(READ_CHUNK)
        return CallResponse(resp.status, dict(resp.headers, **{"content-type": resp.content_type}),
                            chunks, resp.length, lambda finished: chunks.close())


def _remote(conn: EndpointConnection, settings: Dict[str, Any], method: str, path: str,
            query: str, headers: Dict[str, str], reader: "ChunkReader") -> CallResponse:
    call = ProxyCall(conn, settings)
    pending: Pending = call.forward(method, path, query, headers, reader)
    msg = pending.response
    try:
        status = msg.get("status")
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise OrbitError("endpoint %s answered with an invalid status %r" % (conn.name, status), 502)
        fields = dict(msg.get("headers") or {})
        if msg.get("end", True):
            chunks: Iterator[bytes] = iter((msg.get("body") or b"",))
        else:
            chunks = call.body_chunks(pending)
    except Exception:
        conn.close_request(pending, cancel=True)
        raise
    return CallResponse(status, fields, chunks, msg.get("length"),
                        lambda finished: conn.close_request(pending, cancel=not (finished or msg.get("end", True))))


class ChunkReader:
    """An iterable of chunks read as a request body: ``read(size)``, ``done`` and
    ``length``, the interface of the bridge's own BodyReader, so the proxy and the
    bridge's plugin host take it unchanged. A chunk is handed on without copying when
    it fits the read."""

    def __init__(self, body: Body, length: Optional[int] = None):
        if body is None:
            body = b""
        if isinstance(body, (bytes, bytearray)):
            length = len(body)
            body = (bytes(body),)
        self.length = length
        self._it = iter(body)
        self._buffer = b""
        self._done = False
        self.consumed = 0

    @property
    def done(self) -> bool:
        return self._done

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_CHUNK), b""))
        while not self._buffer and not self._done:
            try:
                self._buffer = next(self._it)
            except StopIteration:
                self._done = True
        piece, self._buffer = self._buffer[:size], self._buffer[size:]
        if len(piece) == 0:
            return b""
        self.consumed += len(piece)
        if self.length is not None and self.consumed > self.length:
            raise OrbitError("a body longer than its declared %d bytes" % self.length, 502)
        if self.length is not None and self.consumed == self.length and not self._buffer:
            self._done = True
            self._end()
        return piece

    def _end(self) -> None:
        """Run the source to its end once the declared length is in: a streamed answer
        read to its end is finished, not cancelled, when its call closes."""
        for extra in self._it:
            if extra:
                raise OrbitError("a body longer than its declared %d bytes" % self.length, 502)

    def drain(self, max_bytes: int = 1 << 20, invite: bool = True) -> bool:
        """Read and drop what is left (the plugin host's contract for bodies)."""
        dropped = 0
        while not self._done and dropped <= max_bytes:
            dropped += len(self.read(READ_CHUNK))
        return self._done
