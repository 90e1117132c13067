"""Client side of the sysinfo plugin; imports nothing of the plugin (no psutil needed)."""
from typing import Any, Dict

from ..client import PluginClient


class SysinfoClient(PluginClient):
    def homedir(self) -> str:
        """The home directory of the user the endpoint runs as."""
        return self.get("homedir")["homedir"]

    def host_role(self) -> Dict[str, Any]:
        """Role (bridge, login, compute, standalone), hostname, Python version, ... of the host."""
        return self.get("host_role")

    def get_metrics(self) -> Dict[str, Any]:
        """system, cpu, memory, disks, network and gpus, as one snapshot."""
        return self.get("metrics/%s" % self.sid)
