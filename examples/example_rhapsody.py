#!/usr/bin/env python3
"""Run tasks through ORBIT: Python functions and executables on a rhapsody session.

Run a bridge first (``radical-orbit-bridge``, no arguments: where rhapsody-py is installed,
Python 3.9+, it hosts the rhapsody plugin itself), then this script, also without arguments: URL, cert and token come from the
environment or from ``~/.radical/orbit/``. Pass an endpoint name to run the tasks there.
"""
import argparse
import sys
import time

from radical_orbit import BridgeClient, OrbitError
from radical_orbit.plugins.rhapsody_client import executable_task


def square(x: int) -> int:
    return x * x


def lookup(key: str) -> str:
    return {"a": "alpha"}[key]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("endpoint", nargs="?", default="bridge", help="the endpoint to run the tasks on (default: the bridge itself)")
    endpoint = parser.parse_args().endpoint
    with BridgeClient() as bc:
        with bc.get_endpoint_client(endpoint).get_plugin("rhapsody") as rc:
            print("session %s on %s (Python %s)" % (rc.sid, rc.session_info["backend"], rc.python_version))
            start = time.monotonic()
            squares = rc.map(square, range(1000), timeout=120)
            print("1000 squares in %.2f s, sum %d" % (time.monotonic() - start, sum(squares)))

            uid, = rc.submit_tasks([executable_task("/bin/sh", ["-c", "echo hello from $(hostname); exit 3"])])
            done, = rc.wait_tasks([uid], timeout=60)
            print("executable %s: %s, exit code %s, stdout %r" % (uid, done.state, done["exit_code"],
                                                                 done["stdout"].strip()))
            try:
                rc.map(lookup, ["a", "b"], timeout=60)
            except KeyError as exc:
                print("lookup('b') raised KeyError(%s) on %s, re-raised here" % (exc, endpoint))
            print("statistics:", rc.statistics()["counts"])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OrbitError, ValueError, OSError) as exc:   # no bridge, no such endpoint, ...
        sys.exit("error: %s" % exc)
