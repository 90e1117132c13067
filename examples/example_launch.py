#!/usr/bin/env python3
"""Launch an endpoint on a compute node as a batch job, use its plugins, then end it.

The parent endpoint (here ``hpc1``, on a login node) submits ORBIT's wrapper through psij;
the child ``hpc1.<n>`` registers with the bridge from inside the job. With no arguments it
uses the bridge's own psij and the ``local`` executor (start ``radical-orbit-bridge``
first), which shows the whole path on one machine:

    python examples/example_launch.py
    python examples/example_launch.py --endpoint hpc1 --executor slurm --queue debug --account myacct
    python examples/example_launch.py --endpoint hpc1 --executor slurm --tunnel forward

URL, cert and token come from the environment or from ``~/.radical/orbit/``; the job gets
them through a private handoff file, never on its command line.
"""
import argparse
import sys
import time

from radical_orbit import BridgeClient, OrbitError


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", default="bridge", help="the parent endpoint, hosting psij (default: the bridge)")
    p.add_argument("--executor", default="local", help="local, slurm, pbs, lsf or flux (default: local)")
    p.add_argument("--queue", help="queue (partition) for a batch executor")
    p.add_argument("--account", help="account to charge, for a batch executor")
    p.add_argument("--duration", default="00:10:00", help="the job's walltime (default 00:10:00)")
    p.add_argument("--tunnel", default="none", choices=("none", "forward", "reverse"),
                   help="how the child reaches the bridge (default: directly)")
    p.add_argument("--tunnel-via", help="[user@]host[:port] of the login host, for --tunnel forward")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds to wait for the child to register (default 600)")
    args = p.parse_args()

    attributes = {k: v for k, v in (("queue_name", args.queue), ("account", args.account)) if v}
    if args.executor != "local":
        attributes["duration"] = args.duration
    extra = {"tunnel_via": args.tunnel_via} if args.tunnel_via else {}
    with BridgeClient() as bc:
        with bc.get_endpoint_client(args.endpoint).get_plugin("psij") as pi:
            started = time.monotonic()
            launch = pi.submit_tunneled(executor=args.executor, attributes=attributes, plugins="sysinfo",
                                        tunnel=args.tunnel, timeout=args.timeout, **extra)
            name = launch["name"]
            print("launched %s as %s job %s: %s" % (name, args.executor, launch["native_id"], launch["state"]))
            try:
                bc.wait_for_endpoint(name, timeout=args.timeout)
            except OrbitError as exc:
                print("the child did not register: %s (%s)" % (exc, pi.tunnel_status(name)["reason"]))
                pi.cancel_job(launch["job_id"])
                return 1
            print("%s registered after %.1f s: %s" % (name, time.monotonic() - started,
                                                     settled(pi, name, ("connected", "failed", "ended"))))
            with bc.get_endpoint_client(name).get_plugin("sysinfo") as si:
                role = si.host_role()
                print("%s runs on %s as role %s" % (name, role["hostname"], role["role"]))
            pi.cancel_job(launch["job_id"])
            state = settled(pi, name, ("ended", "failed"))
            deadline = time.monotonic() + 60
            while name in bc.list_endpoints() and time.monotonic() < deadline:
                time.sleep(0.5)
            print("after cancel: %s; endpoints now %s" % (state, bc.list_endpoints()))
    return 0


def settled(pi, name: str, states, timeout: float = 60.0) -> str:
    """The launch's state once it is one of ``states``: the parent notices a change within a
    second or two (it watches the bridge's endpoint list), not at the same instant."""
    deadline = time.monotonic() + timeout
    state = pi.tunnel_status(name)["state"]
    while state not in states and time.monotonic() < deadline:
        time.sleep(0.5)
        state = pi.tunnel_status(name)["state"]
    return state


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OrbitError as exc:
        print("error: %s" % exc, file=sys.stderr)
        sys.exit(1)
