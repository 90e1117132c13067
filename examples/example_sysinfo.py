#!/usr/bin/env python3
"""Read the bridge host's system facts through ORBIT.

Run a bridge first (``radical-orbit-bridge``, no arguments), then this script,
also without arguments: URL, cert and token come from the environment or from
``~/.radical/orbit/``. Pass an endpoint name to ask another endpoint.
"""
import argparse
import sys

from radical_orbit import BridgeClient, OrbitError


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return "%.1f %s" % (n, unit)
        n /= 1024.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("endpoint", nargs="?", default="bridge", help="the endpoint to ask (default: the bridge itself)")
    endpoint = parser.parse_args().endpoint
    with BridgeClient() as bc:
        print("endpoints:", ", ".join(bc.list_endpoints()))
        with bc.get_endpoint_client(endpoint).get_plugin("sysinfo") as si:
            role = si.host_role()
            metrics = si.get_metrics()
    system, cpu, mem = metrics["system"], metrics["cpu"], metrics["memory"]
    print("%s (%s, Python %s): %s %s, up %.0f s" % (system["hostname"], role["role"],
          role["python_version"], system["kernel"], system["arch"], system["uptime"]))
    print("cpu: %s, %s cores, %.0f%% busy, load %s" % (cpu["model"], cpu["cores_logical"],
          cpu["percent"], cpu["load"]))
    print("memory: %s of %s used" % (human(mem["used"]), human(mem["total"])))
    for disk in metrics["disks"]:
        print("disk %-20s %-10s %-9s %s free" % (disk["mount"], disk["fstype"], disk["type"],
                                                 human(disk["free"])))
    for gpu in metrics["gpus"]:
        print("gpu %s %s" % (gpu["vendor"], gpu["name"]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OrbitError, ValueError, OSError) as exc:   # no bridge, no such endpoint, ...
        sys.exit("error: %s" % exc)
