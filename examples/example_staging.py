#!/usr/bin/env python3
"""Move a file to an endpoint and back through ORBIT, and check it arrived intact.

Run a bridge first (``radical-orbit-bridge``, no arguments), then this script, also
without arguments: it uses the bridge's own staging (the embedded default). Pass an
endpoint name to use another endpoint. It writes a few MiB under /tmp on the endpoint
and removes what it made.
"""
import argparse
import hashlib
import os
import sys
import tempfile

from radical_orbit import BridgeClient, OrbitError

SIZE = 3 * 2**20 + 12345


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("endpoint", nargs="?", default="bridge", help="the endpoint to move the file to and back (default: the bridge itself)")
    endpoint = parser.parse_args().endpoint
    with tempfile.TemporaryDirectory() as here, BridgeClient() as bc:
        local = os.path.join(here, "data.bin")
        with open(local, "wb") as f:
            f.write(os.urandom(SIZE))
        with bc.get_endpoint_client(endpoint).get_plugin("staging") as st:
            print("roots on %s: %s" % (endpoint, ", ".join(st.roots()["roots"])))
            remote_dir = st.mkdir("/tmp/orbit-example-%d" % os.getpid(), exist_ok=True)
            try:
                remote = remote_dir + "/data.bin"
                sent = st.put(local, remote)
                print("put %s -> %s:%s: %d bytes, sha256 %s" % (local, endpoint, remote, sent["size"],
                                                                 sent["sha256"][:16]))
                for entry in st.list(remote_dir):
                    print("  %-10s %-5s %d bytes" % (entry["name"], entry["type"], entry["size"]))
                back = st.get(remote, os.path.join(here, "back.bin"))
                print("get %s:%s -> %s: %d bytes" % (endpoint, remote, back["path"], back["size"]))
                with open(local, "rb") as a, open(back["path"], "rb") as b:
                    same = hashlib.sha256(a.read()).digest() == hashlib.sha256(b.read()).digest()
                print("round trip intact:", same)
            finally:
                st.remove(remote_dir, recursive=True)
                print("removed %s:%s" % (endpoint, remote_dir))
    return 0 if same else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OrbitError, ValueError, OSError) as exc:   # no bridge, no such endpoint, ...
        sys.exit("error: %s" % exc)
