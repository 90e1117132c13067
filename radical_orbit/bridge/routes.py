"""The bridge's HTTP handler: its own routes (SPEC 5), the Explorer files, the
event stream, endpoint registration, and the proxy for everything else.

Each bridge route is declared once, with ``@route`` on the method that serves it;
the first path segments of those routes (plus ``bridge``) are the names no
endpoint can take (``RESERVED``, read by ``names.check_endpoint_name``)."""
import json
import logging
import time
from typing import Any, Dict, FrozenSet, List, Optional, Tuple
from urllib.parse import parse_qs, unquote

from .. import protocol
from ..descriptor import UI_MODULE_RE
from ..errors import BadRequest, MethodNotAllowed, NotFound, OrbitError, from_exception
from ..names import NAME_RE
from ..plugin import Request, parse_query
from ..router import Router, class_router, route
from .auth import refused
from .calls import BRIDGE
from .events import Filter
from .framing import READ_CHUNK, BodyReader
from .http import Handler, http_chunk
from .proxy import ProxyCall, answer_headers, plugin_headers

log = logging.getLogger("radical_orbit.bridge.routes")

JAVASCRIPT = "text/javascript; charset=utf-8"
DRAIN_LIMIT = 16 * 2**20
ANONYMOUS_DRAIN_LIMIT = 64 * 1024
SSE_RETRY_MS = 2000
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
EXPLORER_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

#: routes a browser reaches before it has logged in
OPEN_ROUTES = frozenset(("route_explorer", "route_plugin_module", "route_login", "route_logout"))
#: routes that take only the Bearer header, never the browser's cookie
BEARER_ONLY_ROUTES = frozenset(("route_register",))


class BridgeHandler(Handler):
    bridge = None  # set on the per-bridge subclass

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    # -- dispatch --------------------------------------------------------------
    def dispatch(self) -> None:
        raw_path, _, self.query_string = self.path.partition("?")
        self.rel_path = raw_path.lstrip("/")
        self.request_id = self.headers.get("X-Request-ID")
        try:
            name, params = self._route()
            if self.bridge.auth.check(self.command, self.headers, self.bridge.tls is not None,
                                      open_route=name in OPEN_ROUTES, cookie_ok=name not in BEARER_ONLY_ROUTES):
                self.authenticated()
            getattr(self, name)(**params)
        except OrbitError as err:
            self._fail(err)
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.debug("client %s went away: %s", self.client_address[0], exc)
            self.close_connection = True
        except Exception as exc:
            log.exception("[%s] %s %s failed", self.request_id or "-", self.command, self.rel_path)
            self._fail(from_exception(exc))

    def _route(self) -> Tuple[str, Dict[str, Any]]:
        """A bridge route, or the proxy for any path that does not start with a reserved
        name (checked first: most traffic is proxied and needs no route matching)."""
        first = unquote(self.rel_path.split("/", 1)[0])
        if first and first not in RESERVED:
            return "route_proxy", {"endpoint": first}
        try:
            return ROUTES.match(self.command, unquote(self.rel_path))
        except (NotFound, MethodNotAllowed):
            if first == BRIDGE:
                return "route_proxy", {"endpoint": first}
            raise

    @property
    def query(self) -> Dict[str, List[str]]:
        return parse_qs(self.query_string, keep_blank_values=True)

    def _fail(self, err: OrbitError) -> None:
        # a client the auth check refused (no token, another origin), or that failed before
        # it (an unknown route, a wrong method) without having authenticated on this
        # connection, gets no more of our reading than a small body's worth
        anonymous = err.status_code in (401, 403) or not self._authenticated
        self._discard_body(ANONYMOUS_DRAIN_LIMIT if anonymous else DRAIN_LIMIT)
        headers = dict(err.headers)
        try:
            self.send_json(err.envelope(), err.status_code, headers)
        except OSError:
            self.close_connection = True

    def _discard_body(self, limit: int) -> None:
        """Read and drop an unread body (up to ``limit`` bytes) so that the client, still
        sending, can read our answer, and keep-alive goes on; beyond that, close."""
        try:
            body = self.request_body or self.body_reader(limit)
            if body.drain(limit, invite=False):
                return
        except (OrbitError, OSError):
            pass
        self.close_connection = True

    def body(self, limit: Optional[int] = None) -> BodyReader:
        return self.body_reader(limit or self.bridge.settings["max_json_body"])

    def json_body(self) -> Dict[str, Any]:
        raw = self.body().read()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise BadRequest("request body is not valid JSON: %s" % exc)
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object")
        return data

    # -- the Explorer --------------------------------------------------------------
    @route("GET", "")
    def route_explorer(self) -> None:
        token = self.query.get("token", [None])[-1]
        if token is not None:
            if self.bridge.auth.valid(token):
                headers = {"Location": "/", "Set-Cookie": self.bridge.auth.cookie_header(self.bridge.tls is not None)}
            else:
                headers = {"Location": "/#login-failed"}
            headers.update(EXPLORER_HEADERS)
            return self.send_bytes(303, b"", "text/plain", headers)
        self._static("index.html", "text/html; charset=utf-8")

    @route("GET", "plugins/{file}")
    def route_plugin_module(self, file: str) -> None:
        """The Explorer's own modules and the built-ins' come from ``share/plugins/``; a
        plugin package installed on the bridge may ship its own (its descriptor's
        ``ui_package``). Endpoints never supply JavaScript."""
        if not UI_MODULE_RE.match(file):
            raise NotFound("no Explorer module %r" % file)
        data = self.bridge.explorer.plugin_module(file)
        if data is None:
            raise NotFound("no Explorer module %r" % file)
        self.send_bytes(200, data, JAVASCRIPT, EXPLORER_HEADERS)

    def _static(self, rel: str, content_type: str) -> None:
        data = self.bridge.explorer.get(rel)
        if data is None:
            if self.bridge.explorer.root is None:
                raise NotFound("the Explorer files (share/) are not installed")
            raise NotFound("no such file: %s" % rel)
        self.send_bytes(200, data, content_type, EXPLORER_HEADERS)

    @route("POST", "auth")
    def route_login(self) -> None:
        token = self.json_body().get("token")
        if not self.bridge.auth.enabled:
            return self.send_json({"ok": True, "auth": False})
        if not isinstance(token, str) or not self.bridge.auth.valid(token):
            raise refused("wrong token")
        self.send_json({"ok": True}, headers={
            "Set-Cookie": self.bridge.auth.cookie_header(self.bridge.tls is not None)})

    @route("DELETE", "auth")
    def route_logout(self) -> None:
        self.body().drain()
        self.send_json({"ok": True}, headers={
            "Set-Cookie": self.bridge.auth.expired_cookie_header(self.bridge.tls is not None)})

    # -- bridge routes ---------------------------------------------------------------
    @route("GET", "endpoint/list")
    @route("POST", "endpoint/list")
    def route_endpoint_list(self) -> None:
        if self.command == "POST":
            self.body().drain()
        self.send_bytes(200, self.bridge.topology.snapshot_json())

    @route("GET", "endpoints")
    def route_endpoints(self) -> None:
        self.send_json(self.bridge.topology.summary())

    @route("GET", "health")
    def route_health(self) -> None:
        self.send_json({"status": "ok", "endpoints": self.bridge.topology.count(),
                        "uptime_s": round(time.time() - self.bridge.started, 3),
                        "listeners": self.bridge.hub.listener_count})

    @route("POST", "endpoint/disconnect/{name}")
    def route_disconnect(self, name: str) -> None:
        self.body().drain()
        if name == BRIDGE:
            raise BadRequest("the bridge's own plugins cannot be disconnected; use /bridge/terminate")
        conn = self.bridge.topology.get(name)
        if conn is None:
            raise NotFound("no endpoint %r" % name)
        conn.send(protocol.SHUTDOWN, reason="disconnect requested through the bridge")
        log.info("endpoint %s asked to shut down", name)
        self.send_json({"status": "shutdown", "endpoint": name})

    @route("POST", "bridge/terminate")
    def route_terminate(self) -> None:
        self.body().drain()
        log.info("terminate requested by %s", self.client_address[0])
        self.close_connection = True
        self.send_json({"status": "terminating", "endpoints": self.bridge.topology.count()})
        self.bridge.stop()

    @route("GET", "register")
    def route_register(self) -> None:
        self.bridge.register(self)

    # -- events ------------------------------------------------------------------------
    @route("GET", "events")
    def route_events(self) -> None:
        q = lambda key: (self.query.get(key) or [None])[-1]
        last = self.headers.get("Last-Event-ID") or q("last_event_id")
        try:
            last_id = int(last) if last not in (None, "") else None
        except ValueError:
            raise BadRequest("Last-Event-ID must be an event id (an integer)")
        flt = Filter(q("endpoint"), q("plugin"), q("topic"))
        hub = self.bridge.hub
        listener, backlog = hub.subscribe(flt, last_id, self.bridge.topology.snapshot)
        self.close_connection = True
        # each write reaches the client as its own chunk (HTTP/1.1) or raw bytes (HTTP/1.0)
        chunked = self.request_version == "HTTP/1.1"
        frame = http_chunk if chunked else bytes
        try:
            head = self._head(200, "text/event-stream", SSE_HEADERS,
                              "Transfer-Encoding: chunked" if chunked else None)
            if self.command == "HEAD":
                self.wfile.write(head)
                return
            first = b"retry: %d\n\n" % SSE_RETRY_MS + b"".join(e.wire for e in backlog)
            self.wfile.write(head + frame(first))
            keepalive = self.bridge.settings["sse_keepalive"]
            while True:
                events = listener.take(keepalive)
                if events:
                    self.wfile.write(frame(b"".join(e.wire for e in events)))
                elif listener.overflowed or listener.closed:
                    break
                else:
                    self.wfile.write(frame(b": keepalive\n\n"))
                if listener.overflowed:
                    log.warning("SSE listener %s too slow: disconnected", self.client_address[0])
                    break
        except OSError:
            pass
        finally:
            hub.unsubscribe(listener)
            if chunked and self.command != "HEAD":
                try:
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass

    # -- the proxy ---------------------------------------------------------------------
    def route_proxy(self, endpoint: str) -> None:
        rest = self.rel_path.partition("/")[2]
        if not NAME_RE.match(endpoint):
            raise BadRequest("invalid endpoint name %r" % endpoint)
        body = self.body(self.bridge.settings["max_proxy_body"])
        if endpoint == BRIDGE:
            return self._local(rest, body)
        conn = self.bridge.topology.get(endpoint)
        if conn is None:
            raise NotFound("no endpoint %r" % endpoint)
        call = ProxyCall(conn, self.bridge.settings)
        pending = call.forward(self.command, rest, self.query_string, self.headers, body)
        answered = False
        try:
            if not body.done:
                self.close_connection = True
            msg = pending.response
            headers = call.response_headers(pending)
            status = msg.get("status")
            if not isinstance(status, int) or not 200 <= status <= 599:
                raise OrbitError("endpoint %s answered with an invalid status %r" % (endpoint, status), 502)
            ctype = str((msg.get("headers") or {}).get("content-type", "application/json"))
            if msg.get("end", True):
                self.send_bytes(status, msg.get("body") or b"", ctype, headers)
                answered = True
            else:
                self._stream(status, call.body_chunks(pending), ctype, msg.get("length"), headers)
                answered = call.finished
        finally:
            conn.close_request(pending, cancel=not answered)

    def _local(self, rest: str, body: BodyReader) -> None:
        host = self.bridge.local
        if host is None:
            raise NotFound("this bridge hosts no plugins")
        req = Request(self.command, rest, parse_query(self.query_string), plugin_headers(self.headers), body,
                      self.request_id or "", body.length)
        resp = host.dispatch(req)
        if not body.done and not body.drain():
            self.close_connection = True
        headers = answer_headers(resp.headers)
        if isinstance(resp.body, (bytes, bytearray)):
            return self.send_bytes(resp.status, bytes(resp.body), resp.content_type, headers)
        try:
            self._stream(resp.status, resp.chunks(READ_CHUNK), resp.content_type, resp.length, headers)
        finally:
            # a HEAD (or a failure before the first chunk) never starts the chunks, whose
            # end would close the body: a file, or a slot of a plugin's, would leak
            close = getattr(resp.body, "close", None)
            if close is not None:
                close()

    def _stream(self, status, chunks, ctype, length, headers) -> None:
        """A streamed answer; a break (endpoint gone, client gone) closes this connection
        (the caller cancels what is left on the endpoint)."""
        try:
            self.send_stream(status, chunks, ctype, length, headers)
        except OrbitError as err:
            log.warning("[%s] response stream broke: %s", self.request_id or "-", err.detail)
            self.close_connection = True
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


def reserved_names(routes: Router) -> FrozenSet[str]:
    """The names no endpoint can take: the bridge's own plugins, and each first segment of
    the bridge's routes (an endpoint of that name would be shadowed by the route). A route
    whose first segment has a parameter is refused (ValueError): the proxy would take its paths."""
    return routes.first_segments() | {BRIDGE}


ROUTES = class_router(BridgeHandler)
RESERVED = reserved_names(ROUTES)
