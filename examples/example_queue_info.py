#!/usr/bin/env python3
"""Look at the batch queues of a machine through ORBIT: queues, your jobs, your accounts.

Run a bridge first (``radical-orbit-bridge``, no arguments: it hosts queue_info itself, with
the ``none`` backend where no scheduler is installed), then this script, also without
arguments: URL, cert and token come from the environment or from ``~/.radical/orbit/``.
Pass an endpoint name to ask an endpoint on a cluster's login node, ``--all`` for every
user's jobs and every queue.
"""
import argparse
import sys

from radical_orbit import BridgeClient, OrbitError


def hours(seconds):
    if seconds is None:
        return "unlimited"
    return "%d:%02d h" % (seconds // 3600, seconds % 3600 // 60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("endpoint", nargs="?", default="bridge", help="endpoint to ask (default: bridge)")
    parser.add_argument("--all", action="store_true", help="every user's jobs and every queue")
    args = parser.parse_args()
    user = "*" if args.all else None
    with BridgeClient() as bc:
        with bc.get_endpoint_client(args.endpoint).get_plugin("queue_info") as qi:
            backend = qi.backend()
            print("%s: backend %s" % (args.endpoint, backend))
            if backend == "none":
                print("no batch scheduler on this host")
            info = qi.get_info(user=user)
            for name, q in sorted(info["queues"].items()):
                nodes = q["nodes"]
                print("queue %-12s%s %-5s limit %-10s nodes %s total, %s available, %s idle; "
                      "%s CPUs, %s MB, %s GPUs per node" % (
                          name, "*" if q["default"] else " ", q["state"], hours(q["time_limit_s"]),
                          nodes["total"], nodes["available"], nodes["idle"], q["cpus_per_node"],
                          q["memory_per_node_mb"], q["gpus_per_node"]))
            for name in sorted(info["queues"]):
                for job in qi.list_jobs(name, user=user):
                    print("job %-10s %-8s %-10s %-8s %-12s %s" % (job["job_id"], job["user"], name,
                          job["state"], job["name"][:12], job["reason"] or job["node_list"]))
            for a in qi.list_allocations(user=user):
                print("account %-12s user %-8s qos %s fairshare %s" % (a["account"], a["user"],
                      ",".join(a["qos"]), a.get("fairshare")))
            allocation = qi.job_allocation()
            if allocation:
                print("this endpoint runs in job %s on %s" % (allocation["job_id"],
                                                              ", ".join(allocation["nodes"])))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OrbitError, ValueError, OSError) as exc:   # no bridge, no such endpoint, ...
        sys.exit("error: %s" % exc)
