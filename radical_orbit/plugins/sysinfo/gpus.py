"""GPU discovery: NVIDIA through nvidia-smi, AMD through rocm-smi, Intel through sysfs.

Parsers take text so that they can be tested with canned outputs; probes run
the tools with a timeout and treat a missing tool as "no GPUs of that vendor".
Memory sizes are reported in bytes, utilization in percent (None if unknown).
"""
import json
import logging
import os
import re
import shlex
from typing import Any, Callable, Dict, List, Optional

from .commands import COMMAND_TIMEOUT, read_text, run_command

log = logging.getLogger("radical_orbit.plugins.sysinfo")

GPU = Dict[str, Any]

MIB = 2**20
NVIDIA_FIELDS = ("index", "name", "memory.total", "memory.used", "utilization.gpu")
NVIDIA_COMMAND = ["nvidia-smi", "--query-gpu=" + ",".join(NVIDIA_FIELDS),
                  "--format=csv,noheader,nounits"]
ROCM_COMMAND = ["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--showuse", "--json"]
#: rocm-smi has renamed its product fields across releases; the first present one wins.
ROCM_NAME_KEYS = ("card series", "device name", "card model", "card sku")
ROCM_MEMORY_TOTAL = "vram total memory (b)"
ROCM_MEMORY_USED = "vram total used memory (b)"
ROCM_USE = "gpu use (%)"
SYS_CLASS_DRM = "/sys/class/drm"
INTEL_VENDOR = "0x8086"
INTEL_DRIVERS = ("i915", "xe")
_CARD = re.compile(r"card(\d+)$")


def gpu_record(vendor: str, index: int, name: str, memory_total: Optional[int] = None,
               memory_used: Optional[int] = None, utilization: Optional[float] = None) -> GPU:
    """One GPU in the shape every vendor shares, so the UI needs no vendor cases."""
    return {"vendor": vendor, "index": index, "name": name, "memory_total": memory_total,
            "memory_used": memory_used, "utilization": utilization}


def _number(text: Any) -> Optional[float]:
    """A float from a tool's field; None for the "[N/A]" / "[Not Supported]" placeholders."""
    try:
        return float(str(text).strip())
    except (TypeError, ValueError):
        return None


def _mib_to_bytes(text: str) -> Optional[int]:
    value = _number(text)
    return None if value is None else int(value * MIB)


# -- NVIDIA ------------------------------------------------------------------
def parse_nvidia_smi(text: str) -> List[GPU]:
    """Parse ``nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu
    --format=csv,noheader,nounits``; a name containing commas is kept whole."""
    gpus = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < len(NVIDIA_FIELDS) or not parts[0].isdigit():
            continue
        name = ", ".join(parts[1:-3])
        total, used, util = parts[-3:]
        gpus.append(gpu_record("nvidia", int(parts[0]), name, _mib_to_bytes(total),
                               _mib_to_bytes(used), _number(util)))
    return gpus


def probe_nvidia(timeout: float = COMMAND_TIMEOUT) -> List[GPU]:
    out = run_command(NVIDIA_COMMAND, timeout)
    return parse_nvidia_smi(out) if out else []


# -- AMD ---------------------------------------------------------------------
def _json_object(text: str) -> Dict[str, Any]:
    """The JSON object in ``text``; rocm-smi may print warnings around it."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return {}
    try:
        data = json.loads(text[start:end + 1])
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _rocm_name(fields: Dict[str, Any]) -> str:
    for key in ROCM_NAME_KEYS:
        value = str(fields.get(key, "")).strip()
        if value and value.upper() != "N/A":
            return value
    return "AMD GPU"


def _int_or_none(value: Any) -> Optional[int]:
    number = _number(value)
    return None if number is None else int(number)


def parse_rocm_smi(text: str) -> List[GPU]:
    """Parse ``rocm-smi --showproductname --showmeminfo vram --showuse --json``:
    one ``cardN`` object per GPU, keys matched case-insensitively."""
    gpus = []
    for key, fields in _json_object(text).items():
        match = _CARD.match(key)
        if not match or not isinstance(fields, dict):
            continue
        lowered = {str(k).strip().lower(): v for k, v in fields.items()}
        gpus.append(gpu_record("amd", int(match.group(1)), _rocm_name(lowered),
                               _int_or_none(lowered.get(ROCM_MEMORY_TOTAL)),
                               _int_or_none(lowered.get(ROCM_MEMORY_USED)),
                               _number(lowered.get(ROCM_USE))))
    return sorted(gpus, key=lambda gpu: gpu["index"])


def probe_amd(timeout: float = COMMAND_TIMEOUT) -> List[GPU]:
    out = run_command(ROCM_COMMAND, timeout)
    return parse_rocm_smi(out) if out else []


# -- Intel -------------------------------------------------------------------

def _card_number(entry: str) -> int:
    match = _CARD.match(entry)
    return int(match.group(1)) if match else -1


def _lspci_name(slot: str, timeout: float) -> str:
    """The marketing name lspci knows for a PCI slot; sysfs only has numeric ids."""
    out = run_command(["lspci", "-mm", "-s", slot], timeout)
    try:
        fields = shlex.split(out or "")
    except ValueError:
        return ""
    return fields[3] if len(fields) > 3 else ""


def _intel_memory(card: str) -> Dict[str, Optional[int]]:
    """Device memory of discrete Intel GPUs, where the driver exposes it."""
    total = _int_or_none(read_text(os.path.join(card, "lmem_total_bytes")))
    avail = _int_or_none(read_text(os.path.join(card, "lmem_avail_bytes")))
    used = total - avail if total is not None and avail is not None else None
    return {"memory_total": total, "memory_used": used}


def probe_intel(drm_root: str = SYS_CLASS_DRM, timeout: float = COMMAND_TIMEOUT) -> List[GPU]:
    """Intel GPUs are the DRM cards with PCI vendor 0x8086 bound to i915 or xe."""
    try:
        entries = sorted((e for e in os.listdir(drm_root) if _CARD.match(e)), key=_card_number)
    except OSError:
        return []
    gpus = []
    for entry in entries:
        card = os.path.join(drm_root, entry)
        device = os.path.join(card, "device")
        driver = os.path.basename(os.path.realpath(os.path.join(device, "driver")))
        if read_text(os.path.join(device, "vendor")).lower() != INTEL_VENDOR or driver not in INTEL_DRIVERS:
            continue
        slot = os.path.basename(os.path.realpath(device))
        device_id = read_text(os.path.join(device, "device")).lower().replace("0x", "")
        name = _lspci_name(slot, timeout) or "Intel GPU [8086:%s]" % device_id
        memory = _intel_memory(card)
        gpus.append(gpu_record("intel", len(gpus), name, memory["memory_total"],
                               memory["memory_used"]))
    return gpus


# -- all vendors -------------------------------------------------------------
def probe_gpus(timeout: float = COMMAND_TIMEOUT) -> List[GPU]:
    """All GPUs of all vendors; one vendor's probe failing does not hide the others."""
    probes: List[Callable[..., List[GPU]]] = [probe_nvidia, probe_amd, probe_intel]
    gpus: List[GPU] = []
    for probe in probes:
        try:
            gpus.extend(probe(timeout=timeout))
        except Exception:
            log.exception("GPU probe %s failed", probe.__name__)
    return gpus
