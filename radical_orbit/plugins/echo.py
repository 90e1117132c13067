"""echo: a diagnostic plugin that checks the path end to end and measures it.

Not in any default set; load it with ``-p echo``.
"""
import tempfile
import threading
import time
from typing import Any, Dict

from ..errors import BadRequest
from ..plugin import Plugin, Request, Response, route

CHUNK = 256 * 1024
MAX_BLOB = 2**40
SPOOL_IN_MEMORY = 2**20
MAX_NOTIFY_COUNT = 10**6


class EchoPlugin(Plugin):
    plugin_name = "echo"
    version = "1.0.0"
    #: the Explorer builds echo's page from this (docs/explorer.md, "Generic pages")
    ui_config = {
        "title": "Echo",
        "description": "Diagnostics: echo requests and bodies",
        "sections": [
            {"kind": "form", "title": "Send a notification", "method": "POST", "path": "notify/{topic}",
             "submit": "Notify",
             "fields": [{"name": "topic", "label": "Topic", "required": True, "default": "hello"},
                        {"name": "msg", "label": "Message", "type": "textarea"},
                        {"name": "delay_ms", "label": "Delay (ms)", "type": "integer", "in": "query",
                         "default": 0}]},
            {"kind": "form", "title": "Ping", "method": "GET", "path": "ping", "submit": "Ping",
             "result": "json",
             "fields": [{"name": "color", "label": "Colour", "type": "select",
                         "options": ["red", "green", "blue"], "default": "red"},
                        {"name": "loud", "label": "Loud", "type": "checkbox"}]},
            {"kind": "monitor", "title": "Health", "path": "health", "every": 5},
            {"kind": "monitor", "title": "Sessions", "path": "list_sessions", "every": 10,
             "show": "table", "items": "sessions", "empty": "no sessions",
             "columns": [{"key": "sid", "label": "session"},
                         {"key": "idle_s", "label": "idle", "format": "duration", "num": True}]},
            {"kind": "notifications", "title": "Notifications", "columns": [
                {"key": "msg", "label": "message"}], "max": 20, "wide": True},
        ],
    }

    @route("GET", "ping", inline=True)
    def ping(self, req: Request) -> Dict[str, Any]:
        return {"pong": True, "query": req.query}

    @route("GET", "headers", inline=True)
    def headers(self, req: Request) -> Dict[str, Any]:
        """The request headers as the plugin sees them (after the bridge's filtering)."""
        return {"headers": req.headers, "request_id": req.request_id}

    @route("POST", "echo")
    def echo(self, req: Request) -> Response:
        """Sends the request body back. The body is spooled (to disk past 1 MiB) before the
        answer starts: HTTP clients send the whole request before they read the response,
        so echoing while receiving would stall both directions once the windows fill."""
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        size = 0
        if req.stream is not None:
            for piece in iter(lambda: req.stream.read(CHUNK), b""):
                spool.write(piece)
                size += len(piece)
        spool.seek(0)
        return Response(spool, content_type=req.content_type or "application/octet-stream",
                        length=size)

    @route("GET", "blob/{size:int}")
    def blob(self, req: Request, size: int) -> Response:
        if not 0 <= size <= MAX_BLOB:
            raise BadRequest("size must be between 0 and %d" % MAX_BLOB)
        return Response(_zeros(size), content_type="application/octet-stream", length=size)

    @route("GET", "sleep/{ms:int}")
    def sleep(self, req: Request, ms: int) -> Dict[str, Any]:
        """Holds a worker for ``ms`` milliseconds: for deadline and backpressure checks."""
        if not 0 <= ms <= 3600 * 1000:
            raise BadRequest("ms must be between 0 and 3600000")
        threading.Event().wait(ms / 1000.0)
        return {"slept_ms": ms}

    @route("GET", "status/{code:int}", inline=True)
    def status(self, req: Request, code: int) -> Response:
        """Answers with status ``code`` and a small body, whatever the code: the bridge
        must drop the body of a 204 or 304 (checks of the HTTP framing)."""
        if not 200 <= code <= 599:
            raise BadRequest("code must be between 200 and 599")
        return Response(b'{"status": %d}' % code, status=code)

    @route("POST", "notify/{topic}")
    def notify_route(self, req: Request, topic: str) -> Dict[str, Any]:
        """Publishes the body as a notification, now or after ``?delay_ms=`` (from a
        timer thread, as a plugin watching jobs would)."""
        data = req.json()
        delay = req.query_int("delay_ms", 0, 3600 * 1000, 0) / 1000.0
        if delay > 0:
            timer = threading.Timer(delay, self.notify, (topic, data))
            timer.daemon = True
            timer.start()
        else:
            self.notify(topic, data)
        return {"notified": topic, "delay_ms": int(delay * 1000)}

    @route("POST", "notify_many/{topic}")
    def notify_many(self, req: Request, topic: str) -> Dict[str, Any]:
        """``?count=N`` notifications ``{"i": 0..N-1}`` from a background thread, at
        ``?rate=`` per second (0: as fast as possible), after ``?delay_ms=``: a stream
        of numbered events for checking that none is lost or repeated."""
        count = req.query_int("count", 1, MAX_NOTIFY_COUNT)
        rate = req.query_int("rate", 0, 10**6, 0)
        delay = req.query_int("delay_ms", 0, 3600 * 1000, 0) / 1000.0

        def emit() -> None:
            threading.Event().wait(delay)
            started = time.monotonic()
            for i in range(count):
                if rate:
                    ahead = started + i / rate - time.monotonic()
                    if ahead > 0:
                        threading.Event().wait(ahead)
                self.notify(topic, {"i": i})

        threading.Thread(target=emit, name="echo-notify-many", daemon=True).start()
        return {"notifying": topic, "count": count, "rate": rate}


def _zeros(size: int):
    block = bytes(CHUNK)
    while size > 0:
        piece = block if size >= CHUNK else bytes(size)
        size -= len(piece)
        yield piece
