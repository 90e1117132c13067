#!/usr/bin/env python3
"""Time from launching a child endpoint as a batch job to the child being listed on the
bridge, on the test SLURM cluster: by hand (``sbatch`` of the wrapper, the reference),
through psij's ``submit_tunneled`` with no tunnel, with a forward and with a reverse ssh
tunnel (a real sshd on loopback). Each way is run ``--rounds`` times, interleaved; medians
are printed with their ratio to the reference. Without a cluster it measures the ``local``
executor instead (and says so).

    python bench/launch_bench.py [--rounds 5] [--executor slurm|local]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(BENCH), "test"))
from launch_util import WRAPPER, batch_env, endpoint_names, reap_children, sbatch, scancel  # noqa: E402
from orbit_procs import Orbit, wait_for  # noqa: E402
from slurm_cluster import slurm_available  # noqa: E402
from sshd import SSHServer  # noqa: E402

PARENT = "benchlogin"
LISTED_TIMEOUT = 120.0


def listed_after(orbit: Orbit, name: str, started: float) -> float:
    wait_for(lambda: name in (endpoint_names(orbit) or ()), LISTED_TIMEOUT, "%s listed" % name, interval=0.02)
    return time.monotonic() - started


def gone(orbit: Orbit, name: str) -> None:
    wait_for(lambda: name not in (endpoint_names(orbit) or [name]), 60, "%s gone" % name, interval=0.1)


class Bench:
    def __init__(self, base: str, executor: str):
        self.base, self.executor = base, executor
        self.orbit = Orbit(os.path.join(base, "home"), tls=True)
        self.sshd = SSHServer(os.path.join(base, "sshd")) if shutil.which("sshd") or os.path.exists(
            "/usr/sbin/sshd") else None
        self.kh = os.path.join(base, "known_hosts")
        self.n = 0

    def __enter__(self) -> "Bench":
        open(self.kh, "w").close()
        if self.sshd is not None:
            self.sshd.start().trust_in(self.kh)
        o = self.orbit
        o.start_bridge()
        o.start_endpoint(PARENT, "-p", "psij", "--plugin-config", 'psij={"poll_interval": 0.5}',
                         RADICAL_ORBIT_KNOWN_HOSTS=self.kh)
        self.sid = o.get("%s/psij/register_session" % PARENT, "POST").json()["sid"]
        return self

    def __exit__(self, *exc) -> None:
        self.orbit.stop()
        if self.sshd is not None:
            self.sshd.stop()

    def by_hand(self) -> float:
        """The reference: sbatch the wrapper, with URL/token/cert in a config dir."""
        self.n += 1
        name = "hand%d" % self.n
        home = os.path.join(self.base, "hand%d" % self.n)
        os.makedirs(home, mode=0o700)
        shutil.copyfile(self.orbit.tls["cert"], os.path.join(home, "bridge_cert.pem"))
        with open(os.path.join(home, "bridge.url"), "w") as f:
            f.write(self.orbit.url)
        fd = os.open(os.path.join(home, "bridge.token"), os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.orbit.token)
        started = time.monotonic()
        if self.executor == "slurm":
            job = sbatch(["-t", "5", "-o", os.path.join(home, "out"), WRAPPER, "--name", name, "-p", "sysinfo"],
                         batch_env(home), home)
            try:
                return listed_after(self.orbit, name, started)
            finally:
                scancel(job)
                gone(self.orbit, name)
        proc = subprocess.Popen([WRAPPER, "--name", name, "-p", "sysinfo"], env=batch_env(home),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return listed_after(self.orbit, name, started)
        finally:
            proc.terminate()
            proc.wait(10)
            gone(self.orbit, name)

    def launched(self, tunnel: str) -> float:
        self.n += 1
        name = "%s%d" % (tunnel[:3], self.n)
        body: Dict[str, object] = {"executor": self.executor, "name": name, "plugins": "sysinfo",
                                   "tunnel": tunnel, "timeout": LISTED_TIMEOUT}
        if self.executor == "slurm":
            body["attributes"] = {"duration": 300}
        if tunnel == "forward":
            body.update(tunnel_via=self.sshd.via, tunnel_identity=self.sshd.user_key)
        if tunnel == "reverse":
            body.update(tunnel_node=self.sshd.via, tunnel_identity=self.sshd.user_key)
        started = time.monotonic()
        r = self.orbit.get("%s/psij/submit_tunneled/%s" % (PARENT, self.sid), "POST", data=json.dumps(body),
                           timeout=60)
        assert r.status_code == 200, r.text
        try:
            return listed_after(self.orbit, name, started)
        finally:
            self.orbit.get("%s/psij/cancel/%s/%s" % (PARENT, self.sid, r.json()["job_id"]), "POST")
            gone(self.orbit, name)
            reap_children([self.orbit.endpoints[PARENT].pid])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--executor", choices=("slurm", "local"), default=None)
    args = p.parse_args()
    executor = args.executor or ("slurm" if slurm_available() else "local")
    if executor == "slurm" and not slurm_available():
        print("no SLURM cluster answers: use --executor local")
        return 1
    ways = ["by hand", "none", "forward", "reverse"]
    times: Dict[str, List[float]] = {w: [] for w in ways}
    base = tempfile.mkdtemp(prefix="orbit-launch-bench-")
    try:
        with Bench(base, executor) as b:
            if b.sshd is None:
                ways = ways[:2]
            for _ in range(args.rounds):
                for way in ways:
                    times[way].append(b.by_hand() if way == "by hand" else b.launched(way))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("launch to listed, %s executor, %d rounds (median, min..max; ratio to sbatch by hand):"
          % (executor, args.rounds))
    ref = statistics.median(times["by hand"])
    for way in ways:
        t = times[way]
        label = "sbatch wrapper by hand" if way == "by hand" else "submit_tunneled, tunnel %s" % way
        print("  %-32s %7.2f s  (%.2f..%.2f)  %.2fx" % (label, statistics.median(t), min(t), max(t),
                                                       statistics.median(t) / ref))
    return 0


if __name__ == "__main__":
    sys.exit(main())
