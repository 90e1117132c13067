"""echo: a diagnostic plugin that checks the path end to end and measures it.

Not in any default set; load it with ``-p echo``.
"""
from typing import Any, Dict

from ..errors import BadRequest
from ..plugin import Plugin, Request, Response, route

CHUNK = 256 * 1024
MAX_BLOB = 2**40


class EchoPlugin(Plugin):
    plugin_name = "echo"
    version = "1.0.0"
    client_class = "radical_orbit.plugins.echo_client.EchoClient"
    ui_config = {"title": "Echo", "description": "Diagnostics: echo requests and bodies"}

    @route("GET", "ping")
    def ping(self, req: Request) -> Dict[str, Any]:
        return {"pong": True, "query": req.query}

    @route("POST", "echo")
    def echo(self, req: Request) -> Response:
        """Streams the request body back as it arrives: memory stays bounded for any size."""
        return Response(req.stream, content_type=req.content_type or "application/octet-stream",
                        length=req.content_length)

    @route("GET", "blob/{size:int}")
    def blob(self, req: Request, size: int) -> Response:
        if not 0 <= size <= MAX_BLOB:
            raise BadRequest("size must be between 0 and %d" % MAX_BLOB)
        return Response(_zeros(size), content_type="application/octet-stream", length=size)

    @route("POST", "notify/{topic}")
    def notify_route(self, req: Request, topic: str) -> Dict[str, Any]:
        self.notify(topic, req.json())
        return {"notified": topic}


def _zeros(size: int):
    block = bytes(CHUNK)
    while size > 0:
        piece = block if size >= CHUNK else bytes(size)
        size -= len(piece)
        yield piece
