"""examples/example_queue_info.py runs as written: against the embedded default bridge with
no arguments (queue_info with the scheduler of this machine, or its `none` backend), and
against an endpoint on the SLURM test cluster."""
import os
import re
import subprocess
import sys

from orbit_procs import REPO, Orbit, Proc, clean_env, wait_for
from slurm_cluster import require_slurm, slurm_available

EXAMPLE = os.path.join(REPO, "examples", "example_queue_info.py")


def run_example(env, *args):
    return subprocess.run([sys.executable, EXAMPLE] + list(args), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)


def test_the_example_against_the_embedded_default(tmp_path):
    home = str(tmp_path / "home")
    env = clean_env(home)
    bridge = Proc(["-m", "radical_orbit.bridge", "--port", "0"], env, str(tmp_path / "bridge.out"))
    try:
        wait_for(lambda: re.search(r"Explorer: http://127\.0\.0\.1:\d+/", bridge.output()), 20, "the URL")
        out = run_example(env)
        assert out.returncode == 0, out.stdout
        if slurm_available():
            assert "bridge: backend slurm" in out.stdout
            assert re.search(r"queue debug +\* UP", out.stdout) and "limit 1:00 h" in out.stdout
        else:
            assert "backend" in out.stdout
    finally:
        assert bridge.stop() == 0, bridge.output()


def test_the_example_against_a_cluster_endpoint(tmp_path):
    require_slurm()
    orbit = Orbit(str(tmp_path / "home"), tls=True)
    try:
        orbit.start_bridge("-p", "none")
        orbit.start_endpoint("cluster", "-p", "queue_info")
        out = run_example(orbit.env(), "cluster", "--all")
        assert out.returncode == 0, out.stdout
        assert "cluster: backend slurm" in out.stdout
        assert re.search(r"queue batch +UP +limit 1:00 h +nodes 1 total", out.stdout), out.stdout
        assert re.search(r"account testacct +user root", out.stdout), out.stdout
        missing = run_example(orbit.env(), "nosuchendpoint")
        assert missing.returncode == 1 and "error: 404" in missing.stdout
    finally:
        orbit.stop()
