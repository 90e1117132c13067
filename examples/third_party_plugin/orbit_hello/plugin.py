"""The endpoint side: a session route that counts greetings and a route that notifies."""
import threading
from typing import Any, Dict

from radical_orbit.errors import BadRequest
from radical_orbit.plugin import Plugin, PluginSession, Request, route


class HelloSession(PluginSession):
    """Per-client state: how many greetings this session has had."""

    def __init__(self, plugin: Plugin, sid: str):
        super().__init__(plugin, sid)
        self.greetings = 0
        # Requests run on the endpoint's worker threads: two calls of one session may overlap.
        self._lock = threading.Lock()

    def count(self) -> int:
        with self._lock:
            self.greetings += 1
            return self.greetings

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info["greetings"] = self.greetings
        return info


class HelloPlugin(Plugin):
    plugin_name = "hello"
    version = "0.1.0"
    session_class = HelloSession
    session_ttl = 600.0
    ui_config = {"title": "Hello", "description": "Greetings per session, and shouts to every listener"}

    @route("GET", "greet/{sid}")
    def greet(self, req: Request, session: HelloSession) -> Dict[str, Any]:
        name = req.query.get("name", "world").strip()
        if not name:
            raise BadRequest("'name' must not be empty")
        return {"greeting": "Hello, %s!" % name, "count": session.count()}

    @route("POST", "shout/{sid}")
    def shout(self, req: Request, session: HelloSession) -> Dict[str, Any]:
        body = req.json()
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise BadRequest("body needs 'text': a non-empty string")
        loud = text.upper() + "!"
        self.notify("shouted", {"sid": session.sid, "text": loud})
        return {"shouted": loud}
