"""Parsers of SLURM's output, one per command and form, each to the plugin's own records.

JSON shapes differ by version and each parser accepts them all: 22.05 (openapi v0.0.38:
states are strings, limits plain numbers or null) and 23.x/24.x (v0.0.39-v0.0.41: states
are lists, numbers are ``{"set", "infinite", "number"}``). The text forms (``scontrol ... -o``,
``squeue -o``, ``sacctmgr -P``, ``sshare -P``) are for versions or sites where ``--json``
does not work. A parser raises ValueError on output it cannot read, so that the caller
tries the next form.
"""
import json
import time
from typing import Any, Dict, List, Optional

from .values import (available, duration_s, features, gres_gpus, idle, key_values, minutes_s,
                     node_states, number, text)

Record = Dict[str, Any]

#: ``squeue -o`` fields, ``|``-separated; the job name comes last because it may hold ``|``.
SQUEUE_FORMAT = "%i|%u|%a|%P|%T|%r|%D|%C|%l|%M|%V|%S|%e|%Q|%N|%q|%j"
#: ``sacctmgr -P show assoc format=`` fields.
ASSOC_FORMAT = "cluster,account,user,partition,share,qos,defaultqos,grptres,maxtres,maxjobs,maxsubmit,maxwall"
#: ``sshare -P -o`` fields.
SSHARE_FORMAT = "Account,User,RawShares,NormShares,FairShare"


def load_json(output: str, key: str) -> List[Dict[str, Any]]:
    """The list under ``key`` of a SLURM JSON answer; ValueError when it is not one, and
    a SchedulerError-worthy message when SLURM put errors in it."""
    try:
        data = json.loads(output)
    except ValueError as exc:
        raise ValueError("not JSON: %s" % exc)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError("no %r list in the JSON" % key)
    return [item for item in data[key] if isinstance(item, dict)]


def _names(value: Any) -> List[str]:
    """A list of names from a list or a comma-separated string; ``ALL`` and nothing give []."""
    items = value if isinstance(value, list) else text(value).split(",")
    names = [text(item) for item in items]
    return [n for n in names if n and n.upper() != "ALL"]


def _state_word(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(str(v) for v in value) or "UNKNOWN"
    return text(value).upper() or "UNKNOWN"


# -- partitions ---------------------------------------------------------------------
def partitions_json(output: str) -> List[Record]:
    """``scontrol show partition --json`` (23.02 and newer)."""
    out = []
    for p in load_json(output, "partitions"):
        flags = [str(f).upper() for f in (p.get("flags") or [])]
        state = (p.get("partition") or {}).get("state") if isinstance(p.get("partition"), dict) else None
        maximums, defaults = p.get("maximums") or {}, p.get("defaults") or {}
        nodes = p.get("nodes") or {}
        out.append({
            "name": text(p.get("name")),
            "state": _state_word(state),
            "default": True if "DEFAULT" in flags else (None if not flags else False),
            "time_limit_s": minutes_s(maximums.get("time")),
            "default_time_s": minutes_s(defaults.get("time")),
            "max_nodes": number(maximums.get("nodes")),
            "hidden": "HIDDEN" in flags,
            "root_only": "ROOT_ONLY" in flags,
            "allow_accounts": _names((p.get("accounts") or {}).get("allowed")),
            "deny_accounts": _names((p.get("accounts") or {}).get("deny")),
            "allow_groups": _names((p.get("groups") or {}).get("allowed")),
            "allow_qos": _names((p.get("qos") or {}).get("allowed")),
            "node_expr": text(nodes.get("configured")),
            "total_nodes": number(nodes.get("total")),
            "total_cpus": number((p.get("cpus") or {}).get("total")),
        })
    return out


def partitions_text(output: str) -> List[Record]:
    """``scontrol show partition -o`` (every version)."""
    out = []
    for line in output.splitlines():
        kv = key_values(line)
        if "PartitionName" not in kv:
            continue
        out.append({
            "name": kv["PartitionName"],
            "state": kv.get("State", "UNKNOWN").upper(),
            "default": kv.get("Default", "NO").upper() == "YES",
            "time_limit_s": duration_s(kv.get("MaxTime")),
            "default_time_s": duration_s(kv.get("DefaultTime")),
            "max_nodes": number(kv.get("MaxNodes")),
            "hidden": kv.get("Hidden", "NO").upper() == "YES",
            "root_only": kv.get("RootOnly", "NO").upper() == "YES",
            "allow_accounts": _names(kv.get("AllowAccounts")),
            "deny_accounts": _names(kv.get("DenyAccounts")),
            "allow_groups": _names(kv.get("AllowGroups")),
            "allow_qos": _names(kv.get("AllowQos")),
            "node_expr": text(kv.get("Nodes")),
            "total_nodes": number(kv.get("TotalNodes")),
            "total_cpus": number(kv.get("TotalCPUs")),
        })
    if not out and output.strip():
        raise ValueError("no PartitionName= lines")
    return out


def default_partition(output: str) -> Optional[str]:
    """``sinfo -h -o %P``: the default partition is the one marked ``*``."""
    for line in output.split():
        if line.endswith("*"):
            return line[:-1]
    return None


# -- nodes --------------------------------------------------------------------------
def _node(name: str, states: set, partitions: List[str], cpus: Any, alloc: Any, memory: Any,
          free: Any, gres: Any, feats: Any, reason: Any, state_text: str) -> Record:
    gpus = gres_gpus(gres)
    return {"name": name, "state": state_text, "states": sorted(states),
            "available": available(states), "idle": idle(states),
            "partitions": partitions, "cpus": number(cpus), "cpus_allocated": number(alloc),
            "memory_mb": number(memory), "memory_free_mb": number(free),
            "gpus": gpus["count"], "gpu_types": gpus["types"], "gres": text(gres),
            "features": features(feats), "reason": text(reason)}


def nodes_json(output: str) -> List[Record]:
    """``scontrol show node --json`` (23.02+) and ``sinfo --json`` of 22.05: both list
    ``nodes``; 22.05 gives the state as a lowercase word plus ``state_flags``."""
    out = []
    for n in load_json(output, "nodes"):
        states = node_states(n.get("state"), n.get("state_flags") or [])
        raw = n.get("state")
        state_text = "+".join(str(s) for s in raw) if isinstance(raw, list) else text(raw).upper()
        flags = n.get("state_flags") or []
        if flags and not isinstance(raw, list):
            state_text = "+".join([state_text] + [str(f) for f in flags])
        feats = n.get("features") if n.get("features") not in (None, "") else n.get("active_features")
        out.append(_node(text(n.get("name")), states, _names(n.get("partitions")),
                         n.get("cpus"), n.get("alloc_cpus"), n.get("real_memory"),
                         n.get("free_mem", n.get("free_memory")), n.get("gres"), feats,
                         n.get("reason"), state_text))
    return out


def nodes_text(output: str) -> List[Record]:
    """``scontrol show node -o`` (every version)."""
    out = []
    for line in output.splitlines():
        kv = key_values(line)
        if "NodeName" not in kv:
            continue
        state = kv.get("State", "UNKNOWN")
        out.append(_node(kv["NodeName"], node_states(state), _names(kv.get("Partitions")),
                         kv.get("CPUTot"), kv.get("CPUAlloc"), kv.get("RealMemory"),
                         kv.get("FreeMem"), kv.get("Gres"), kv.get("AvailableFeatures"),
                         kv.get("Reason"), state))
    if not out and output.strip():
        raise ValueError("no NodeName= lines")
    return out


# -- jobs ---------------------------------------------------------------------------
def _epoch(value: Any) -> Optional[int]:
    seconds = number(value)
    return seconds if seconds else None


def _used(state: str, start: Optional[int], now: float) -> Optional[int]:
    return max(0, int(now - start)) if start and state == "RUNNING" else None


def jobs_json(output: str, now: Optional[float] = None) -> List[Record]:
    """``squeue --json``: 22.05 (``job_state`` a string, ``time_limit`` minutes or null)
    and 23.x/24.x (lists and number objects). 22.05 ignores ``-u``/``-p``/``-t`` here, so
    the caller filters."""
    now = time.time() if now is None else now
    out = []
    for j in load_json(output, "jobs"):
        state = _state_word(j.get("job_state"))
        start = _epoch(j.get("start_time"))
        out.append({
            "job_id": str(number(j.get("job_id"))),
            "name": text(j.get("name")), "user": text(j.get("user_name")),
            "account": text(j.get("account")), "partition": text(j.get("partition")),
            "state": state, "reason": text(j.get("state_reason")),
            "nodes": number(j.get("node_count")), "cpus": number(j.get("cpus")),
            "time_limit_s": minutes_s(j.get("time_limit")), "time_used_s": _used(state, start, now),
            "submit_time": _epoch(j.get("submit_time")), "start_time": start,
            "end_time": _epoch(j.get("end_time")), "priority": number(j.get("priority")),
            "node_list": text(j.get("nodes")), "qos": text(j.get("qos")),
        })
    return out


def _iso_epoch(value: str) -> Optional[int]:
    raw = text(value)
    try:
        return int(time.mktime(time.strptime(raw, "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def jobs_text(output: str) -> List[Record]:
    """``squeue -h -o SQUEUE_FORMAT``."""
    out = []
    for line in output.splitlines():
        if not line.strip():
            continue
        cols = line.split("|", 16)
        if len(cols) != 17:
            raise ValueError("squeue line with %d fields, not 17: %r" % (len(cols), line[:200]))
        (job_id, user, account, partition, state, reason, nodes, cpus, limit, used, submit,
         start, end, priority, node_list, qos, name) = cols
        out.append({
            "job_id": job_id.strip(), "name": name, "user": text(user), "account": text(account),
            "partition": text(partition), "state": text(state).upper(), "reason": text(reason),
            "nodes": number(nodes), "cpus": number(cpus), "time_limit_s": duration_s(limit),
            "time_used_s": duration_s(used), "submit_time": _iso_epoch(submit),
            "start_time": _iso_epoch(start), "end_time": _iso_epoch(end),
            "priority": number(priority), "node_list": text(node_list), "qos": text(qos),
        })
    return out


# -- associations -------------------------------------------------------------------
def _tres(value: Any) -> str:
    """A TRES list of 23.x (``[{"type": "cpu", "count": 4}, {"type": "gres", "name": "gpu", ...}]``)
    as SLURM's own text, ``cpu=4,gres/gpu=2``."""
    if isinstance(value, list):
        parts = []
        for item in value:
            if isinstance(item, dict) and item.get("count") is not None:
                kind = text(item.get("type"))
                name = text(item.get("name"))
                parts.append("%s=%s" % (kind + ("/" + name if name else ""), item.get("count")))
        return ",".join(parts)
    return text(value)


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def assocs_json(output: str) -> List[Record]:
    """``sacctmgr show assoc --json`` (23.02 and newer)."""
    out = []
    for a in load_json(output, "associations"):
        qos = a.get("qos")
        out.append({
            "cluster": text(a.get("cluster")), "account": text(a.get("account")),
            "user": text(a.get("user")), "partition": text(a.get("partition")),
            "qos": _names(qos), "default_qos": text(_dig(a, "default", "qos")),
            "shares": number(a.get("shares_raw")),
            "grp_tres": _tres(_dig(a, "max", "tres", "total")),
            "max_tres_per_job": _tres(_dig(a, "max", "tres", "per", "job")),
            "max_jobs": number(_dig(a, "max", "jobs", "per", "count")),
            "max_submit": number(_dig(a, "max", "jobs", "per", "submitted")),
            "max_wall_s": minutes_s(_dig(a, "max", "jobs", "per", "wall_clock")),
        })
    return out


def assocs_text(output: str) -> List[Record]:
    """``sacctmgr -n -P show assoc format=ASSOC_FORMAT`` (every version)."""
    out = []
    for line in output.splitlines():
        if not line.strip():
            continue
        cols = line.split("|")
        if len(cols) < 12:
            raise ValueError("sacctmgr line with %d fields, not 12: %r" % (len(cols), line[:200]))
        cluster, account, user, partition, share, qos, dqos, grp, maxtres, maxjobs, maxsub, wall = cols[:12]
        out.append({
            "cluster": text(cluster), "account": text(account), "user": text(user),
            "partition": text(partition), "qos": _names(qos), "default_qos": text(dqos),
            "shares": number(share), "grp_tres": text(grp), "max_tres_per_job": text(maxtres),
            "max_jobs": number(maxjobs), "max_submit": number(maxsub), "max_wall_s": duration_s(wall),
        })
    return out


def fairshare_text(output: str) -> Dict[tuple, Optional[float]]:
    """``sshare -n -P -a -o SSHARE_FORMAT``: ``(account, user) -> FairShare``."""
    out = {}  # type: Dict[tuple, Optional[float]]
    for line in output.splitlines():
        cols = line.split("|")
        if len(cols) < 5:
            continue
        try:
            value = float(cols[4]) if cols[4].strip() else None
        except ValueError:
            value = None
        out[(cols[0].strip(), cols[1].strip())] = value
    return out
