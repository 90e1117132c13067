"""Client side of the echo plugin."""
from typing import Any, Dict

from ..client import PluginClient


class EchoClient(PluginClient):
    def ping(self, **query: Any) -> Dict[str, Any]:
        return self.get("ping", params=query)

    def echo(self, data: bytes) -> bytes:
        return self.request("POST", "echo", data=data, raw=True)

    def notify(self, topic: str, data: Any) -> Dict[str, Any]:
        return self.post("notify/%s" % topic, json=data)
