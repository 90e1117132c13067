"""sysinfo: host, CPU, memory, disks, network and GPUs of the machine an endpoint runs on."""
from .plugin import SysinfoPlugin

__all__ = ["SysinfoPlugin"]
