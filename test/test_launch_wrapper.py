"""The batch wrapper and an endpoint inside a job: found installations, sbatch on the
test cluster, the compute role, scancel and the job's end time."""
import os
import shutil
import subprocess
import sys
import time

import pytest

import slurm_cluster
from launch_util import WRAPPER, batch_env, endpoint_names, job_state, sbatch, scancel, wait_job_done
from orbit_procs import INSTALLED, Orbit, Proc, wait_for
from radical_orbit.command import Result
from radical_orbit.endpoint.jobend import JobEndWatch, job_end_time


@pytest.fixture(scope="module")
def orbit(tmp_path_factory):
    o = Orbit(str(tmp_path_factory.mktemp("launch") / "home"), tls=True)
    o.start_bridge()
    yield o
    o.stop()


def job_home(orbit, tmp_path) -> str:
    """A config dir holding what a user copies for a hand-written batch script."""
    home = str(tmp_path / "jobhome")
    os.makedirs(home, mode=0o700)
    shutil.copyfile(orbit.tls["cert"], os.path.join(home, "bridge_cert.pem"))
    with open(os.path.join(home, "bridge.url"), "w") as f:
        f.write(orbit.url)
    fd = os.open(os.path.join(home, "bridge.token"), os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(orbit.token)
    return home


def fake_install(tmp_path, layout: str) -> str:
    """A bin dir laid out like a venv (own python3) or a pip --user / system prefix
    (a console script only), each printing how it was run."""
    bindir = tmp_path / layout / "bin"
    bindir.mkdir(parents=True)
    shutil.copy(WRAPPER, str(bindir))
    (bindir / "radical-orbit-endpoint").write_text("#!/bin/sh\necho console-script \"$@\"\n")
    if layout == "venv":
        (bindir / "python3").write_text("#!/bin/sh\necho venv-python \"$@\"\n")
    for f in bindir.iterdir():
        f.chmod(0o755)
    return str(bindir)


@pytest.mark.parametrize("layout, expected", [
    ("venv", "venv-python -m radical_orbit.endpoint --name x"),
    ("user", "console-script --name x"),
])
def test_wrapper_runs_the_installation_it_belongs_to(tmp_path, layout, expected):
    bindir = fake_install(tmp_path, layout)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([os.path.join(bindir, "radical-orbit-endpoint-wrapper.sh"), "--name", "x"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == expected, out.stderr


def test_wrapper_copied_to_a_spool_dir_uses_radical_orbit_prefix(tmp_path):
    bindir = fake_install(tmp_path, "venv")
    spool = tmp_path / "spool"
    spool.mkdir()
    shutil.copy(WRAPPER, str(spool / "slurm_script"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RADICAL_ORBIT_PREFIX": str(tmp_path / "venv")}
    out = subprocess.run([str(spool / "slurm_script"), "-p", "sysinfo"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "venv-python -m radical_orbit.endpoint -p sysinfo", out.stderr


def test_wrapper_without_any_installation_says_so_in_one_line(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    shutil.copy(WRAPPER, str(spool / "slurm_script"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RADICAL_ORBIT_PYTHON": "/bin/false"}
    out = subprocess.run([str(spool / "slurm_script")], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot find an ORBIT installation" in lines[0]


@pytest.mark.skipif(INSTALLED, reason="exercises the checkout layout")
def test_wrapper_under_nohup_from_an_empty_environment(orbit, tmp_path):
    """nohup, no PATH but the system's: the setup puts a python on PATH (as `module
    load` would); the wrapper finds the checkout it lives in."""
    home = job_home(orbit, tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RADICAL_ORBIT_HOME": home,
           "RADICAL_ORBIT_SETUP": "PATH=%s:$PATH" % os.path.dirname(sys.executable)}
    proc = Proc([WRAPPER, "--name", "nohup-ep", "-p", "sysinfo"], env, str(tmp_path / "nohup.out"),
                python="nohup")
    try:
        orbit.wait_listed("nohup-ep", 30, proc)
        role = orbit.get("nohup-ep/sysinfo/host_role").json()
        assert role["role"] in ("login", "standalone") and not role["in_job"]
    finally:
        assert proc.stop() == 0


def test_wrapper_under_sbatch_registers_a_compute_endpoint_and_scancel_removes_it(orbit, tmp_path):
    slurm_cluster.require_slurm()
    home = job_home(orbit, tmp_path)
    name = "sb%d" % (os.getpid() % 100000)
    out = str(tmp_path / "job.out")
    started = time.monotonic()
    job = sbatch(["-t", "5", "-o", out, "-J", "orbit-wrapper-test", WRAPPER, "--name", name,
                  "-p", "sysinfo"], batch_env(home), str(tmp_path))
    try:
        wait_for(lambda: name in (endpoint_names(orbit) or ()), 30, "the job's endpoint", interval=0.1)
        listed_after = time.monotonic() - started
        role = orbit.get("%s/sysinfo/host_role" % name).json()
        assert role["role"] == "compute" and role["in_job"], role
        assert listed_after < 15, listed_after
        scancel(job)
        wait_for(lambda: name not in (endpoint_names(orbit) or [name]), 30, "the endpoint to leave")
        assert wait_job_done(job) in ("CANCELLED", "gone")
    finally:
        scancel(job)
    with open(out) as f:
        log = f.read()
    assert "received SIGTERM: stopping" in log, log


def test_endpoint_in_a_job_stops_before_the_job_time_runs_out(orbit, tmp_path):
    slurm_cluster.require_slurm()
    home = job_home(orbit, tmp_path)
    name = "end%d" % (os.getpid() % 100000)
    out = str(tmp_path / "job.out")
    job = sbatch(["-t", "1", "-o", out, WRAPPER, "--name", name, "-p", "sysinfo",
                  "--job-end-margin", "52"], batch_env(home), str(tmp_path))
    try:
        wait_for(lambda: name in (endpoint_names(orbit) or ()), 30, "the job's endpoint", interval=0.1)
        wait_for(lambda: name not in (endpoint_names(orbit) or [name]), 40, "the endpoint to leave")
        assert wait_job_done(job) in ("COMPLETED", "gone")
    finally:
        scancel(job)
    with open(out) as f:
        log = f.read()
    assert "the batch job's time is running out: stopping" in log, log


def test_job_end_time_reads_squeue_and_pbs():
    def runner(answers):
        def run(argv, timeout):
            return Result(0, answers[argv[0]], "")
        return run
    end = job_end_time({"SLURM_JOB_ID": "7"}, runner({"squeue": "2030-01-02T03:04:05\n"}))
    assert end == time.mktime((2030, 1, 2, 3, 4, 5, 0, 0, -1))
    assert job_end_time({"SLURM_JOB_ID": "7", "SLURM_JOB_END_TIME": "1900000000"}) == 1900000000.0
    assert job_end_time({"SLURM_JOB_ID": "7"}, runner({"squeue": "N/A\n"})) is None
    qstat = "Job Id: 1.pbs\n    stime = Wed Jan  2 03:00:00 2030\n    Resource_List.walltime = 01:30:00\n"
    end = job_end_time({"PBS_JOBID": "1.pbs"}, runner({"qstat": qstat}))
    assert end == time.mktime((2030, 1, 2, 4, 30, 0, 0, 0, -1))
    assert job_end_time({}) is None


def test_a_hung_squeue_is_killed_with_its_children_at_the_timeout(monkeypatch, tmp_path):
    """jobend ran squeue with subprocess.run: on timeout it killed squeue alone, and a child
    of a wrapper script (here a sleep) lived on. run_bounded kills the process group."""
    import radical_orbit.endpoint.jobend as jobend
    fake, pidfile = tmp_path / "squeue", tmp_path / "child.pid"
    fake.write_text("#!/bin/sh\nsleep 20 &\necho $! > %s\nexec sleep 20\n" % pidfile)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, os.environ["PATH"]))
    monkeypatch.setattr(jobend, "COMMAND_TIMEOUT", 0.5)
    start = time.monotonic()
    assert job_end_time({"SLURM_JOB_ID": "7"}) is None
    assert time.monotonic() - start < 5
    child = int(pidfile.read_text())
    try:
        wait_for(lambda: not _alive(child), 5, "the wrapper's child to be killed too")
    finally:
        if _alive(child):
            os.kill(child, 9)


def _alive(pid: int) -> bool:
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_job_end_watch_stops_margin_seconds_before_the_end():
    stopped = []
    end = time.time() + 30.5
    watch = JobEndWatch(lambda: stopped.append(time.time()), margin=30, end_time=lambda: end).start()
    try:
        time.sleep(0.2)
        assert not stopped
        wait_for(lambda: stopped, 5, "the watch to stop the endpoint")
        assert stopped[0] >= end - 30
    finally:
        watch.close()


def test_job_end_watch_survives_a_failing_look_at_the_scheduler(monkeypatch):
    """An exception while asking for the end time (odd scheduler output) ended the watch's
    thread silently, and the endpoint was then killed with its job instead of stopping."""
    import radical_orbit.endpoint.jobend as jobend
    monkeypatch.setattr(jobend, "FAILURE_RETRY", 0.05)
    answers = iter([OverflowError("mktime argument out of range")])

    def end_time():
        for failure in answers:
            raise failure
        return time.time() - 1
    stopped = []
    watch = JobEndWatch(lambda: stopped.append(True), margin=0, end_time=end_time).start()
    try:
        wait_for(lambda: stopped, 5, "the watch to stop the endpoint after a failed look")
    finally:
        watch.close()


def test_handoff_file_is_private_read_once_and_refused_when_readable_by_others(tmp_path):
    from radical_orbit.config import ConfigError
    from radical_orbit.endpoint.handoff import BridgeAccess, read_handoff, write_handoff
    directory = str(tmp_path / "launch" / "a1")
    path = write_handoff(directory, BridgeAccess("http://127.0.0.1:9", None, "sekrit-token-1"), port=5)
    assert os.stat(directory).st_mode & 0o777 == 0o700 and os.stat(path).st_mode & 0o777 == 0o600
    got = read_handoff(path)
    assert got.access.token == "sekrit-token-1" and got.extra == {"port": 5}
    assert not os.path.exists(path)
    path = write_handoff(str(tmp_path / "launch" / "a2"), BridgeAccess("http://127.0.0.1:9", None, "t-2"))
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="must not be readable by group or others"):
        read_handoff(path)
