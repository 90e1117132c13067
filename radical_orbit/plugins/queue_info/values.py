"""Small readers for the values schedulers print, shared by the SLURM and PBS parsers:
durations, numbers in SLURM's JSON shapes, node states, GRES strings and host lists."""
import re
from typing import Any, Dict, Iterable, List, Optional, Set

#: Node states that make a node unavailable for new jobs (SLURM names; PBS's are mapped).
UNAVAILABLE = frozenset(("DOWN", "DRAIN", "DRAINED", "DRAINING", "MAINT", "FAIL", "FAILING",
                         "POWERED_DOWN", "POWER_DOWN", "POWERING_DOWN", "NOT_RESPONDING",
                         "FUTURE", "INVAL", "UNKNOWN", "REBOOT_ISSUED", "OFFLINE"))
#: The suffixes sinfo and scontrol append to a state, and the flag each one means.
_STATE_SUFFIX = {"*": "NOT_RESPONDING", "~": "POWERED_DOWN", "#": "POWERING_UP",
                 "%": "POWERING_DOWN", "!": "POWER_DOWN", "@": "REBOOT_REQUESTED",
                 "$": "MAINT", "^": "REBOOT_ISSUED", "-": "PLANNED"}
_SHORT_STATE = {"alloc": "ALLOCATED", "mix": "MIXED", "comp": "COMPLETING", "drng": "DRAINING",
                "drain": "DRAIN", "drained": "DRAIN", "maint": "MAINT", "resv": "RESERVED",
                "npc": "PERFCTRS", "pow_up": "POWERING_UP", "boot": "REBOOT_ISSUED",
                "unk": "UNKNOWN", "plnd": "PLANNED", "inval": "INVAL", "futr": "FUTURE"}
#: Job states after which a job no longer counts as queued or running.
TERMINAL_JOB_STATES = frozenset(("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL",
                                 "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY",
                                 "REVOKED", "SPECIAL_EXIT", "FINISHED"))
_NONE_TEXT = frozenset(("", "(null)", "n/a", "none", "null", "unknown"))


def text(value: Any) -> str:
    """A printed value, "" for SLURM's and PBS's ways of saying nothing."""
    if value is None:
        return ""
    value = str(value).strip()
    return "" if value.lower() in _NONE_TEXT else value


def number(value: Any) -> Optional[int]:
    """An integer from a plain number, a numeric string or SLURM 23.x+'s
    ``{"set", "infinite", "number"}`` object; None for unset, infinite or unparsable."""
    if isinstance(value, dict):
        if value.get("infinite") or not value.get("set", True):
            return None
        value = value.get("number")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    match = re.match(r"^\s*(-?\d+)", str(value))
    return int(match.group(1)) if match else None


def is_infinite(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value.get("infinite"))
    return isinstance(value, str) and value.strip().upper() in ("UNLIMITED", "INFINITE", "INFINITY")


def minutes_s(value: Any) -> Optional[int]:
    """Seconds from a limit given in minutes (SLURM's JSON); None for unlimited or unset."""
    minutes = number(value)
    return None if minutes is None or is_infinite(value) else minutes * 60


def duration_s(value: Any) -> Optional[int]:
    """Seconds from ``[D-]HH:MM:SS``, ``MM:SS`` or ``MM`` (SLURM, PBS walltime); None for
    UNLIMITED, NONE, N/A, INVALID or anything else."""
    raw = text(value)
    if not raw or is_infinite(raw):
        return None
    match = re.match(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$", raw)
    if not match:
        return None
    days, first, second, third = match.groups()
    parts = [int(p) for p in (first, second, third) if p is not None]
    if days is not None:
        while len(parts) < 3:          # D-HH, D-HH:MM, D-HH:MM:SS
            parts.append(0)
    elif len(parts) == 1:              # minutes
        parts = [0, parts[0], 0]
    elif len(parts) == 2:              # MM:SS
        parts = [0] + parts
    hours, minutes, seconds = parts
    return (int(days or 0) * 24 + hours) * 3600 + minutes * 60 + seconds


def node_states(*values: Any) -> Set[str]:
    """The set of state words of a node, from any of: a list (23.x+ JSON), a string with
    ``+`` between states (scontrol), a short sinfo state with its suffix (``down*``,
    ``idle~``), and 22.05's ``state_flags`` list."""
    words = set()  # type: Set[str]
    for value in values:
        items = value if isinstance(value, (list, tuple)) else str(value or "").split("+")
        for item in items:
            word = str(item).strip()
            while word and word[-1] in _STATE_SUFFIX:
                words.add(_STATE_SUFFIX[word[-1]])
                word = word[:-1]
            if word:
                words.add(_SHORT_STATE.get(word.lower(), word.upper()))
    if "DRAIN" in words and ("ALLOCATED" in words or "MIXED" in words):
        words.add("DRAINING")
    return words


def available(states: Iterable[str]) -> bool:
    return not (set(states) & UNAVAILABLE)


def idle(states: Iterable[str]) -> bool:
    """Free for a whole-node job right now."""
    states = set(states)
    return available(states) and "IDLE" in states and not states & {"ALLOCATED", "MIXED", "COMPLETING",
                                                                     "RESERVED"}


def gres_gpus(value: Any) -> Dict[str, Any]:
    """GPUs in a GRES string: ``gpu:8(S:0-7)``, ``gpu:mi250:4``, ``gpu:a100:2(S:0),gpu:v100:2``,
    ``gpu`` (one) or ``gres/gpu=4`` (TRES). Returns ``{"count": n, "types": [...]}``."""
    count, types = 0, []   # type: int, List[str]
    for entry in _split_top(text(value)):
        entry = re.sub(r"\(.*?\)", "", entry).strip()
        if entry.startswith("gres/"):
            entry = entry[len("gres/"):].replace("=", ":")
        parts = entry.split(":")
        if parts[0] != "gpu":
            continue
        amount = 1
        if len(parts) >= 2 and parts[-1].isdigit():
            amount = int(parts[-1])
            kind = parts[1] if len(parts) >= 3 else ""
        else:
            kind = parts[1] if len(parts) >= 2 else ""
        count += amount
        if kind and kind not in types:
            types.append(kind)
    return {"count": count, "types": types}


def _split_top(value: str, opening: str = "(", closing: str = ")") -> List[str]:
    """Split on commas that are not inside ``opening``/``closing`` (``gpu:2(S:0,1),nvme:1``,
    ``nid[001-003,007],login1``)."""
    out, depth, cur = [], 0, ""
    for ch in value:
        if ch == opening:
            depth += 1
        elif ch == closing:
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return [item.strip() for item in out if item.strip()]


def features(value: Any) -> List[str]:
    """Node features from a list (23.x+) or a comma-separated string (22.05, text)."""
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        items = text(value).split(",")
    return [item.strip() for item in items if text(item)]


def expand_hostlist(value: str, limit: int = 100000) -> List[str]:
    """``nid[001-003,007],login1`` -> ``nid001 nid002 nid003 nid007 login1``; brackets in
    several places multiply (``r[1-2]n[1-2]``). At most ``limit`` names."""
    hosts = []  # type: List[str]
    for item in _split_top(text(value), "[", "]"):
        for host in _expand_one(item):
            hosts.append(host)
            if len(hosts) >= limit:
                return hosts
    return hosts


def _expand_one(item: str) -> List[str]:
    match = re.search(r"\[([^\]]*)\]", item)
    if not match:
        return [item]
    head, tail = item[:match.start()], item[match.end():]
    names = []
    for part in match.group(1).split(","):
        low, _, high = part.partition("-")
        if high and low.isdigit() and high.isdigit():
            width = len(low)
            names.extend("%s%0*d" % (head, width, n) for n in range(int(low), int(high) + 1))
        else:
            names.append(head + part)
    return [name + rest for name in names for rest in _expand_one(tail)]


def key_values(line: str) -> Dict[str, str]:
    """``scontrol show ... -o``: ``Key=Value Key2=Value with no spaces ...`` on one line.
    A value runs to the next `` Key=``, so values with spaces (OS=Linux 6.1 #1) survive."""
    out = {}  # type: Dict[str, str]
    for match in re.finditer(r"(?:^|\s)([A-Za-z][\w/:.]*)=(.*?)(?=\s+[A-Za-z][\w/:.]*=|\s*$)", line):
        out[match.group(1)] = match.group(2).strip()
    return out
