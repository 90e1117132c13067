"""queue_info on the SLURM test cluster (test/slurm/start.sh), through a real bridge and
endpoint: both partitions with their limits, the node, a running job (submitted here and
cancelled through the route), the association, and errors in the envelope. One bridge for
the module; it hosts queue_info itself (the embedded default, a scheduler being present)."""
import os
import socket
import subprocess

import pytest

from orbit_procs import Orbit, wait_for
from radical_orbit import BridgeClient
from radical_orbit.errors import Conflict, NotFound, OrbitError
from slurm_cluster import require_slurm

NODE = socket.gethostname().split(".")[0]
JOB_SECONDS = 30


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    require_slurm()
    orbit = Orbit(str(tmp_path_factory.mktemp("qi") / "home"), tls=True)
    try:
        orbit.start_bridge()
        orbit.start_endpoint("hpc", "-p", "queue_info")
        with BridgeClient(url=orbit.url, cert=orbit.tls["cert"], token=orbit.token) as bc:
            yield orbit, bc
    finally:
        orbit.stop()


@pytest.fixture(scope="module")
def qi(site):
    with site[1].get_endpoint_client("hpc").get_plugin("queue_info") as client:
        yield client


@pytest.fixture
def sleeper():
    """A short job in partition batch, cancelled afterwards whatever the test did."""
    out = subprocess.run(["sbatch", "--parsable", "-p", "batch", "-A", "testacct", "-t", "2",
                          "-J", "orbit-qi-%d" % os.getpid(), "-o", "/dev/null",
                          "--wrap", "sleep %d" % JOB_SECONDS],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip().split(";")[0]
    yield job_id
    subprocess.run(["scancel", job_id], capture_output=True, timeout=30)


def test_partitions_with_limits_and_the_node(qi):
    assert qi.backend() == "slurm"
    queues = qi.get_info(user="*", force=True)["queues"]
    assert {"debug", "batch"} <= set(queues)
    debug, batch = queues["debug"], queues["batch"]
    assert debug["default"] is True and batch["default"] is False
    assert debug["time_limit_s"] is None
    assert batch["time_limit_s"] == 3600 and batch["default_time_s"] == 600
    for queue in (debug, batch):
        assert queue["state"] == "UP" and queue["usable"] is True
        assert queue["nodes"]["total"] == 1 and queue["nodes"]["available"] == 1
        assert queue["cpus_per_node"] == os.cpu_count() and queue["memory_per_node_mb"] > 0
    nodes = {n["name"]: n for n in qi.nodelist(force=True)}
    assert nodes[NODE]["partitions"] == ["debug", "batch"] and nodes[NODE]["available"] is True


def test_running_job_is_listed_then_cancelled_through_the_route(qi, sleeper):
    def running():
        jobs = {j["job_id"]: j for j in qi.list_jobs("batch", user="*", force=True)}
        job = jobs.get(sleeper)
        return job if job and job["state"] == "RUNNING" else None
    job = wait_for(running, 30, "job %s RUNNING in list_jobs" % sleeper, interval=0.3)
    assert job["name"] == "orbit-qi-%d" % os.getpid() and job["account"] == "testacct"
    assert job["partition"] == "batch" and job["node_list"] == NODE and job["time_limit_s"] == 120
    assert job["start_time"] and job["cpus"] >= 1
    assert sleeper in [j["job_id"] for j in qi.list_all_jobs(user="*")]
    assert sleeper not in [j["job_id"] for j in qi.list_jobs("debug", user="*")]

    answer = qi.cancel_job(sleeper)
    assert answer["cancelled"] is True and answer["previous_state"] == "RUNNING"

    def cancelled():
        out = subprocess.run(["squeue", "-h", "-t", "all", "-j", sleeper, "-o", "%T"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        return out == "CANCELLED"
    wait_for(cancelled, 30, "job %s CANCELLED in squeue" % sleeper, interval=0.2)
    # the cancel dropped the cached job list: no force needed to see the job gone
    assert sleeper not in [j["job_id"] for j in qi.list_all_jobs(user="*")]
    with pytest.raises(Conflict, match="already ended: CANCELLED"):
        qi.cancel_job(sleeper)
    with pytest.raises(NotFound, match="Invalid job id"):
        qi.cancel_job("987654321")


def test_the_association(qi):
    allocations = qi.list_allocations(user="*", force=True)
    mine = [a for a in allocations if a["account"] == "testacct" and a["user"] == "root"]
    assert len(mine) == 1
    assert mine[0]["cluster"] == "localcluster" and "normal" in mine[0]["qos"]


def test_the_bridge_hosts_queue_info_with_a_scheduler_present(site):
    orbit, bc = site
    plugins = bc.topology()["endpoints"]["bridge"]["plugins"]
    assert plugins["queue_info"]["enabled"] is True
    with bc.get_endpoint_client("bridge").get_plugin("queue_info") as qi:
        assert qi.backend() == "slurm"
        assert {"debug", "batch"} <= set(qi.get_info()["queues"])


def test_scheduler_timeout_and_none_backend_through_the_bridge(site):
    orbit, bc = site
    ep = bc.get_endpoint_client("hpc")
    ep.load_plugin("queue_info", name="qi_slow", config={"command_timeout": 0.001, "prefetch": False})
    ep.load_plugin("queue_info", name="qi_none", config={"backend": "none"})
    try:
        with ep.get_plugin("qi_slow") as slow:
            with pytest.raises(OrbitError) as info:
                slow.get_info()
            assert info.value.status_code == 504 and "did not answer within" in info.value.detail
        # the raw answer is the envelope
        sid = orbit.get("hpc/qi_slow/register_session", "POST").json()["sid"]
        raw = orbit.get("hpc/qi_slow/list_all_jobs/%s" % sid)
        assert raw.status_code == 504 and raw.json()["error"] is True
        with ep.get_plugin("qi_none") as none:
            assert none.backend() == "none" and none.get_info()["queues"] == {}
            assert none.list_all_jobs() == [] and none.job_allocation() is None
    finally:
        ep.unload_plugin("qi_slow")
        ep.unload_plugin("qi_none")
