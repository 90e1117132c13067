"""Parsers of PBS Pro's output: ``qstat -Qf`` and ``qstat -Bf`` (queue and server
attributes), ``pbsnodes -a`` (nodes), ``qstat -f -F json`` and ``qstat -f`` (jobs), to the
same records the SLURM parsers make, with PBS's states mapped onto SLURM's words."""
import json
import re
import time
from typing import Any, Dict, List, Optional, Tuple

from .values import available, duration_s, features, idle, number, text

Record = Dict[str, Any]

#: PBS job states (one letter) -> the state words queue_info uses for every scheduler.
JOB_STATES = {"Q": "PENDING", "H": "PENDING", "W": "PENDING", "T": "PENDING",
              "R": "RUNNING", "B": "RUNNING", "E": "COMPLETING", "S": "SUSPENDED",
              "U": "SUSPENDED", "F": "COMPLETED", "X": "COMPLETED", "M": "MOVED"}
_JOB_REASON = {"H": "held", "W": "waiting for its start time", "T": "in transit"}
#: PBS node states -> SLURM's words (``free`` becomes IDLE or MIXED by what is assigned).
NODE_STATES = {"job-busy": "ALLOCATED", "job-exclusive": "ALLOCATED", "resv-exclusive": "RESERVED",
               "busy": "ALLOCATED", "down": "DOWN", "offline": "DRAIN", "stale": "NOT_RESPONDING",
               "state-unknown": "UNKNOWN", "unresolvable": "NOT_RESPONDING",
               "maintenance": "MAINT", "sleep": "POWERED_DOWN", "provisioning": "UNKNOWN",
               "wait-provisioning": "UNKNOWN", "initializing": "UNKNOWN"}
_UNITS = {"b": 1.0 / 2**20, "kb": 1.0 / 2**10, "mb": 1, "gb": 2**10, "tb": 2**20,
          "w": 8.0 / 2**20, "kw": 8.0 / 2**10, "mw": 8, "gw": 8 * 2**10}


def blocks(output: str, header: "re.Pattern[str]") -> List[Tuple[str, Dict[str, str]]]:
    """PBS's ``name`` + indented ``key = value`` blocks. Long values continue on lines that
    start with a tab and have no `` = ``; they are joined to the value before them."""
    out = []  # type: List[Tuple[str, Dict[str, str]]]
    attrs = None  # type: Optional[Dict[str, str]]
    last = None  # type: Optional[str]
    for line in output.splitlines():
        if not line.strip():
            continue
        match = header.match(line)
        if match and not line[:1].isspace():
            attrs, last = {}, None
            out.append((match.group(1).strip(), attrs))
        elif attrs is not None and " = " in line:
            key, _, value = line.strip().partition(" = ")
            attrs[key.strip()] = value.strip()
            last = key.strip()
        elif attrs is not None and last is not None and line[:1] == "\t":
            attrs[last] += line.strip()
    return out


QUEUE_HEADER = re.compile(r"^Queue:\s*(\S+)")
SERVER_HEADER = re.compile(r"^Server:\s*(\S+)")
JOB_HEADER = re.compile(r"^Job Id:\s*(\S+)")
NODE_HEADER = re.compile(r"^(\S+)\s*$")


def memory_mb(value: Any) -> Optional[int]:
    match = re.match(r"^\s*(\d+)\s*([kmgt]?[bw])?\s*$", text(value), re.I)
    if not match:
        return None
    return int(int(match.group(1)) * _UNITS[(match.group(2) or "b").lower()])


def _names(value: Any) -> List[str]:
    return [n.split("@")[0] for n in (v.strip() for v in text(value).split(",")) if n]


def _true(value: Any) -> bool:
    return text(value).lower() in ("true", "1", "yes")


def queues_text(output: str, default: Optional[str] = None) -> List[Record]:
    """``qstat -Qf``: execution and routing queues with their limits and ACLs."""
    out = []
    for name, a in blocks(output, QUEUE_HEADER):
        up = _true(a.get("enabled")) and _true(a.get("started"))
        out.append({
            "name": name, "state": "UP" if up else ("DRAIN" if _true(a.get("started")) else "DOWN"),
            "default": name == default, "queue_type": text(a.get("queue_type")),
            "time_limit_s": duration_s(a.get("resources_max.walltime")),
            "default_time_s": duration_s(a.get("resources_default.walltime")),
            "max_nodes": number(a.get("resources_max.nodect")),
            "hidden": False, "root_only": False,
            "allow_users": _names(a.get("acl_users")) if _true(a.get("acl_user_enable")) else [],
            "allow_groups": _names(a.get("acl_groups")) if _true(a.get("acl_group_enable")) else [],
            "allow_accounts": [], "deny_accounts": [], "allow_qos": [],
            "total_nodes": None, "total_cpus": number(a.get("resources_max.ncpus")),
            "total_jobs": number(a.get("total_jobs")),
        })
    if not out and output.strip():
        raise ValueError("no 'Queue:' blocks in qstat -Qf output")
    return out


def default_queue(output: str) -> Optional[str]:
    """``qstat -Bf``: the server's ``default_queue``."""
    for _, attrs in blocks(output, SERVER_HEADER):
        if attrs.get("default_queue"):
            return attrs["default_queue"]
    return None


def nodes_text(output: str) -> List[Record]:
    """``pbsnodes -a``."""
    out = []
    for name, a in blocks(output, NODE_HEADER):
        raw = text(a.get("state")) or "state-unknown"
        assigned = number(a.get("resources_assigned.ncpus")) or 0
        states = set()
        for word in raw.split(","):
            word = word.strip()
            if word == "free":
                states.add("MIXED" if assigned else "IDLE")
            elif word:
                states.add(NODE_STATES.get(word, word.upper()))
        queues = _names(a.get("queue")) + _names(a.get("resources_available.Qlist"))
        ngpus = number(a.get("resources_available.ngpus")) or 0
        gpu_model = text(a.get("resources_available.gpu_model") or a.get("resources_available.gpu_type"))
        out.append({
            "name": name, "state": raw, "states": sorted(states),
            "available": available(states), "idle": idle(states),
            "partitions": queues, "cpus": number(a.get("resources_available.ncpus")),
            "cpus_allocated": assigned,
            "memory_mb": memory_mb(a.get("resources_available.mem")),
            "memory_free_mb": None,
            "gpus": ngpus, "gpu_types": [gpu_model] if gpu_model and ngpus else [],
            "gres": "", "features": features(a.get("resources_available.feature")),
            "reason": text(a.get("comment")),
        })
    return out


def _ctime(value: Any) -> Optional[int]:
    """PBS prints times like ``Fri Dec  1 10:00:05 2023`` (local time), or epoch numbers."""
    if isinstance(value, (int, float)):
        return int(value)
    raw = " ".join(text(value).split())
    if raw.isdigit():
        return int(raw)
    try:
        return int(time.mktime(time.strptime(raw, "%a %b %d %H:%M:%S %Y")))
    except ValueError:
        return None


def _flatten(data: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}  # type: Dict[str, Any]
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, prefix + key + "."))
        else:
            out[prefix + key] = value
    return out


def _job(job_id: str, a: Dict[str, Any], now: float) -> Record:
    letter = text(a.get("job_state")).upper()[:1]
    state = JOB_STATES.get(letter, letter or "UNKNOWN")
    start = _ctime(a.get("stime"))
    exec_host = text(a.get("exec_host"))
    hosts = []  # type: List[str]
    for part in exec_host.split("+"):
        host = part.split("/")[0]
        if host and host not in hosts:
            hosts.append(host)
    limit = duration_s(a.get("Resource_List.walltime"))
    return {
        "job_id": job_id, "name": text(a.get("Job_Name")),
        "user": text(a.get("euser")) or text(a.get("Job_Owner")).split("@")[0],
        "account": text(a.get("Account_Name") or a.get("project")),
        "partition": text(a.get("queue")), "state": state, "native_state": letter,
        "reason": text(a.get("comment")) or _JOB_REASON.get(letter, ""),
        "nodes": number(a.get("Resource_List.nodect")), "cpus": number(a.get("Resource_List.ncpus")),
        "time_limit_s": limit,
        "time_used_s": duration_s(a.get("resources_used.walltime")),
        "submit_time": _ctime(a.get("qtime") or a.get("ctime")), "start_time": start,
        "end_time": start + limit if start and limit else None,
        "priority": number(a.get("Priority")), "node_list": ",".join(hosts),
        "qos": "",
    }


def jobs_json(output: str, now: Optional[float] = None) -> List[Record]:
    """``qstat -f -F json`` (PBS Pro 18 and newer)."""
    now = time.time() if now is None else now
    try:
        data = json.loads(output)
    except ValueError as exc:
        raise ValueError("not JSON: %s" % exc)
    if not isinstance(data, dict):
        raise ValueError("qstat JSON is not an object")
    jobs = data.get("Jobs") or {}
    if not isinstance(jobs, dict):
        raise ValueError("qstat JSON 'Jobs' is not an object")
    return [_job(job_id, _flatten(attrs), now) for job_id, attrs in jobs.items() if isinstance(attrs, dict)]


def jobs_text(output: str, now: Optional[float] = None) -> List[Record]:
    """``qstat -f`` (older PBS without ``-F json``)."""
    now = time.time() if now is None else now
    return [_job(job_id, attrs, now) for job_id, attrs in blocks(output, JOB_HEADER)]
