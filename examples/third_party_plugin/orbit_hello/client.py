"""The client side: what ``EndpointClient.get_plugin("hello")`` returns."""
from typing import Any, Dict

from radical_orbit.client import PluginClient


class HelloClient(PluginClient):
    def greet(self, name: str = "world") -> Dict[str, Any]:
        """``{"greeting": "Hello, <name>!", "count": <greetings in this session>}``."""
        return self.get("greet/%s" % self.sid, params={"name": name})

    def shout(self, text: str) -> Dict[str, Any]:
        """Publish ``text`` as a ``shouted`` notification to every listener."""
        return self.post("shout/%s" % self.sid, json={"text": text})
