#!/usr/bin/env python3
"""Copy a directory with Globus through an ORBIT endpoint, watch it, and list the result.

The endpoint must load the globus plugin (``radical-orbit-endpoint --name hpc1 -p
sysinfo,staging,globus``; it needs ``pip install 'radical.orbit[globus]'``). Credentials
come from the environment of this script (never the command line, which other users
can read):

- ``RADICAL_ORBIT_GLOBUS_ACCESS_TOKEN``: a Transfer access token, e.g. from
  ``globus login`` then ``globus session show`` / your app's login flow; or
- ``RADICAL_ORBIT_GLOBUS_REFRESH_TOKEN`` with ``RADICAL_ORBIT_GLOBUS_CLIENT_ID`` (the
  native app the refresh token was issued to), which the endpoint renews by itself; or
- ``RADICAL_ORBIT_GLOBUS_CLIENT_ID`` with ``RADICAL_ORBIT_GLOBUS_CLIENT_SECRET`` (a
  confidential client acting as itself).

Against real Globus, with a Globus Connect Personal collection on the endpoint's machine
(or ``RADICAL_ORBIT_GLOBUS_COLLECTION`` set there) as ``local``:

    RADICAL_ORBIT_GLOBUS_ACCESS_TOKEN=... python examples/example_globus.py \\
        --endpoint hpc1 --source local --destination <collection id> \\
        --path /~/results/ --target /~/incoming/results/

The test suite runs it against a fake Globus (test/fake_globus.py).
"""
import argparse
import sys

from radical_orbit import BridgeClient, OrbitError
from radical_orbit.plugins.globus_client import GlobusClient, GlobusConsentRequired, credentials_from_env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default="bridge", help="endpoint with the globus plugin")
    parser.add_argument("--source", default="local", help='source collection id, or "local"')
    parser.add_argument("--destination", required=True, help='destination collection id, or "local"')
    parser.add_argument("--path", required=True, help="directory to copy, e.g. /~/results/")
    parser.add_argument("--target", required=True, help="where it goes on the destination")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the transfer")
    args = parser.parse_args()
    if not credentials_from_env():
        sys.exit("error: no Globus credentials: set RADICAL_ORBIT_GLOBUS_ACCESS_TOKEN, or "
                 "RADICAL_ORBIT_GLOBUS_REFRESH_TOKEN with RADICAL_ORBIT_GLOBUS_CLIENT_ID, or "
                 "RADICAL_ORBIT_GLOBUS_CLIENT_ID with RADICAL_ORBIT_GLOBUS_CLIENT_SECRET")
    with BridgeClient() as bc:
        changes = []
        bc.register_callback(lambda ep, plugin, topic, data: changes.append(data),
                             endpoint_id=args.endpoint, topic="transfer_status")
        ec = bc.get_endpoint_client(args.endpoint)
        with GlobusClient(ec, "globus") as gc:      # credentials from RADICAL_ORBIT_GLOBUS_*
            print("session %s (%s); local collection: %s" % (gc.sid, gc.auth, gc.local_collection()["collection"]))
            for entry in gc.ls(args.source, args.path)["entries"]:
                print("  %-5s %12s  %s" % (entry["type"], entry.get("size", ""), entry["name"]))
            task = gc.submit(args.source, args.destination, [(args.path, args.target, True)],
                             label="ORBIT example", sync_level="checksum")
            print("submitted task %s (%s)" % (task["task_id"], task["code"]))
            done = gc.wait(task["task_id"], timeout=args.timeout)
            print("task %s: %s, %s files, %s bytes" % (done["task_id"], done["status"],
                                                       done.get("files_transferred"), done.get("bytes_transferred")))
            for entry in gc.ls(args.destination, args.target)["entries"]:
                print("  %-5s %12s  %s" % (entry["type"], entry.get("size", ""), entry["name"]))
        print("transfer_status notifications seen: %s" % ", ".join(str(c.get("status")) for c in list(changes)))
    return 0 if done["status"] == "SUCCEEDED" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except GlobusConsentRequired as exc:
        sys.exit("error: Globus needs consent to %s: %s" % (" ".join(exc.required_scopes), exc.detail))
    except (OrbitError, ValueError, OSError) as exc:
        sys.exit("error: %s" % exc)
