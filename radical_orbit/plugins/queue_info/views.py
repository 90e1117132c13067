"""The routes' answers, made from a backend's records the same way for every scheduler:
queues with their nodes counted, who may use which queue, and the jobs of a user."""
import grp
import os
import pwd
from typing import Any, Dict, Iterable, List, Optional, Set

Record = Dict[str, Any]
#: ``?user=*``: every user (and every queue, not only the usable ones)
ALL_USERS = "*"


def current_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def groups_of(user: str) -> Set[str]:
    """The Unix groups of ``user`` on this host (its primary group and those listing it)."""
    names = set()  # type: Set[str]
    try:
        entry = pwd.getpwnam(user)
        names.add(grp.getgrgid(entry.pw_gid).gr_name)
    except KeyError:
        pass
    try:
        names.update(g.gr_name for g in grp.getgrall() if user in g.gr_mem)
    except OSError:
        pass
    return names


def accounts_of(user: str, assocs: Iterable[Record]) -> Set[str]:
    return {a["account"] for a in assocs if a.get("user") == user and a.get("account")}


def usable(part: Record, user: str, groups: Set[str], accounts: Optional[Set[str]]) -> bool:
    """Whether ``user`` may submit to ``part``, as far as the partition's own rules say:
    hidden and root-only partitions, user and group ACLs, AllowAccounts and DenyAccounts.
    ``accounts`` None means the accounts are not known (no accounting): not checked."""
    if part.get("hidden"):
        return False
    if part.get("root_only") and user != "root":
        return False
    allow_users = set(part.get("allow_users") or ())
    if allow_users and user not in allow_users:
        return False
    allow_groups = set(part.get("allow_groups") or ())
    if allow_groups and not allow_groups & groups:
        return False
    if accounts:
        allow = set(part.get("allow_accounts") or ())
        if allow and not allow & accounts:
            return False
        deny = set(part.get("deny_accounts") or ())
        if deny and accounts <= deny:
            return False
    return True


def queues(parts: List[Record], nodes: List[Record], user: str, groups: Set[str],
           accounts: Optional[Set[str]], everything: bool) -> Dict[str, Record]:
    """name -> queue: limits, node counts (total / available / idle), the largest node's
    CPUs, memory and GPUs, features; only usable queues unless ``everything``."""
    out = {}
    for part in parts:
        ok = usable(part, user, groups, accounts)
        if not (ok or everything):
            continue
        members = [n for n in nodes if part["name"] in n.get("partitions", ())]
        total = len(members) if members else (part.get("total_nodes") or 0)
        feats = []  # type: List[str]
        for n in members:
            feats.extend(f for f in n.get("features", ()) if f not in feats)
        gpu_types = []  # type: List[str]
        for n in members:
            gpu_types.extend(t for t in n.get("gpu_types", ()) if t not in gpu_types)
        out[part["name"]] = {
            "name": part["name"], "state": part.get("state", "UNKNOWN"),
            "default": bool(part.get("default")), "usable": ok,
            "time_limit_s": part.get("time_limit_s"), "default_time_s": part.get("default_time_s"),
            "max_nodes": part.get("max_nodes"),
            "nodes": {"total": total,
                      "available": sum(1 for n in members if n.get("available")) if members else None,
                      "idle": sum(1 for n in members if n.get("idle")) if members else None},
            "cpus_total": part.get("total_cpus") or sum(n.get("cpus") or 0 for n in members) or None,
            "cpus_per_node": _largest(members, "cpus"),
            "memory_per_node_mb": _largest(members, "memory_mb"),
            "gpus_per_node": _largest(members, "gpus") or 0,
            "gpu_types": gpu_types, "features": feats,
            "allow_accounts": part.get("allow_accounts") or [],
            "hidden": bool(part.get("hidden")),
        }
    return out


def _largest(nodes: List[Record], key: str) -> Optional[int]:
    values = [n.get(key) for n in nodes if isinstance(n.get(key), int)]
    return max(values) if values else None


def jobs_of(jobs: List[Record], user: str, queue: Optional[str] = None) -> List[Record]:
    """The jobs of ``user`` (every user's with ``*``), in ``queue`` when one is given."""
    return [j for j in jobs
            if (user == ALL_USERS or j.get("user") == user)
            and (queue is None or j.get("partition") == queue)]


def allocations_of(assocs: List[Record], user: str) -> List[Record]:
    """The associations that let a user run jobs (those with a user), for ``user`` or all."""
    return [a for a in assocs if a.get("user") and (user == ALL_USERS or a["user"] == user)]
