"""Host, CPU, memory and network facts from psutil and /proc.

Everything here is cheap and taken per request, except ``cpu_model`` and
``os_name`` which do not change and are probed once in the background.
"""
import getpass
import os
import platform
import shlex
import socket
import time
from typing import Any, Dict, List, Optional

import psutil

from .commands import COMMAND_TIMEOUT, run_command

PROC_CPUINFO = "/proc/cpuinfo"
OS_RELEASE = "/etc/os-release"
#: /proc/cpuinfo keys naming the CPU, by architecture: x86 (and newer ARM), MIPS, POWER, old ARM, RISC-V.
CPUINFO_MODEL_KEYS = ("model name", "cpu model", "cpu", "processor", "uarch")
FAMILY_NAMES = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6", psutil.AF_LINK: "mac"}


# -- static facts (probed once, in the background) ----------------------------
def _cpuinfo_fields(text: str) -> Dict[str, str]:
    """The first value of each key of /proc/cpuinfo, keys lower-cased."""
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if sep and value and key not in fields:
            fields[key] = value
    return fields


def cpu_model_from_cpuinfo(text: str) -> str:
    """The CPU name in /proc/cpuinfo; ARM servers often have none (then lscpu knows it)."""
    fields = _cpuinfo_fields(text)
    for key in CPUINFO_MODEL_KEYS:
        value = fields.get(key, "")
        if value and not value.isdigit():
            return value
    return ""


def cpu_model_from_lscpu(text: str) -> str:
    return _cpuinfo_fields(text).get("model name", "")


def cpu_model(timeout: float = COMMAND_TIMEOUT) -> str:
    """The CPU's marketing name: /proc/cpuinfo, else lscpu, else the architecture."""
    try:
        with open(PROC_CPUINFO) as handle:
            model = cpu_model_from_cpuinfo(handle.read())
    except OSError:
        model = ""
    if not model:
        model = cpu_model_from_lscpu(run_command(["lscpu"], timeout) or "")
    return model or platform.processor() or platform.machine()


def os_release_name(text: str) -> str:
    """PRETTY_NAME (else NAME VERSION) of an os-release file."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        try:
            parts = shlex.split(value)
        except ValueError:
            continue
        values[key.strip()] = " ".join(parts)
    if values.get("PRETTY_NAME"):
        return values["PRETTY_NAME"]
    return " ".join(v for v in (values.get("NAME"), values.get("VERSION")) if v)


def os_name() -> str:
    try:
        with open(OS_RELEASE) as handle:
            name = os_release_name(handle.read())
    except OSError:
        name = ""
    return name or platform.system()


# -- per request -------------------------------------------------------------
def current_user() -> str:
    """The login name; a container user without a passwd entry gets the uid."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def system_info(os_label: str) -> Dict[str, Any]:
    boot_time = psutil.boot_time()
    return {"hostname": socket.gethostname(), "user": current_user(),
            "uptime": max(0.0, round(time.time() - boot_time, 1)), "boot_time": boot_time,
            "kernel": platform.release(), "os": os_label or platform.system(),
            "arch": platform.machine()}


def _freq_mhz() -> Optional[float]:
    """Current clock; psutil has none (or raises) on some VMs and ARM boards."""
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        return None
    return round(freq.current, 1) if freq and freq.current else None


def _load() -> List[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def cpu_info(model: str, usage: Dict[str, Any]) -> Dict[str, Any]:
    """CPU facts; ``usage`` is the sampler's latest ``percent`` and ``percent_per_core``."""
    return {"model": model, "cores_physical": psutil.cpu_count(logical=False),
            "cores_logical": psutil.cpu_count(logical=True),
            "percent": usage["percent"], "percent_per_core": list(usage["percent_per_core"]),
            "load": _load(), "freq_mhz": _freq_mhz()}


def memory_info() -> Dict[str, Any]:
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    return {"total": memory.total, "available": memory.available, "used": memory.used,
            "percent": memory.percent, "swap_total": swap.total, "swap_used": swap.used}


def _addresses(entries: List[Any]) -> List[Dict[str, Any]]:
    return [{"family": FAMILY_NAMES[entry.family], "address": entry.address,
             "netmask": entry.netmask}
            for entry in entries if entry.family in FAMILY_NAMES and entry.address]


def network_info() -> List[Dict[str, Any]]:
    """Every interface with its addresses; ``speed_mbps`` is None where the driver does not say."""
    try:
        addrs, stats = psutil.net_if_addrs(), psutil.net_if_stats()
    except OSError:
        return []
    interfaces = []
    for name in sorted(set(addrs) | set(stats)):
        stat = stats.get(name)
        interfaces.append({"name": name, "addresses": _addresses(addrs.get(name, [])),
                           "is_up": bool(stat and stat.isup),
                           "speed_mbps": (stat.speed or None) if stat else None})
    return interfaces
