"""psij on the SLURM test cluster, through a real bridge (TLS, auth) and endpoint; skips with
one line where no cluster answers (slurm_cluster.require_slurm)."""
import glob
import io
import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest

import slurm_cluster
from orbit_procs import REPO, wait_for
from psij_helpers import bc, notes, pi, start_endpoint, start_orbit, state_dir  # noqa: F401 (fixtures)

from radical_orbit import BadRequest

pytest.importorskip("psij")


@pytest.fixture(scope="module")
def orbit(tmp_path_factory):
    slurm_cluster.require_slurm()
    o = start_orbit(str(tmp_path_factory.mktemp("psij_slurm") / "home"))
    yield o
    o.stop()


def sacct(job, name, fields="State,ExitCode"):
    """``fields`` of a job as accounting records it, once it has the record (by id and name:
    a cluster whose state was wiped reuses ids; ORBIT appends its job id to the name)."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-S", "now-1days", "-j", job["native_id"],
                          "--name", "%s.orbit-%s" % (name, job["job_id"]),
                          "-o", fields], capture_output=True, text=True, timeout=20).stdout.strip()
    return tuple(out.splitlines()[-1].split("|")) if out else None


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def test_a_slurm_job_runs_each_transition_arrives_once_and_sacct_agrees(pi, notes):
    name = unique("orbit-run")
    job = pi.submit_job({"executable": "/bin/sh", "arguments": ["-c", 'echo "$GREETING" on $SLURM_JOB_PARTITION; sleep 1'],
                         "environment": {"GREETING": "it's a 'quoted' $HOME world"},
                         "name": name, "attributes": {"queue_name": "debug", "account": "testacct", "duration": 120,
                                        "node_count": 1, "process_count": 1}}, executor="slurm")
    assert job["native_id"].isdigit()
    final = notes.final(job["job_id"], timeout=60)
    assert (final["state"], final["exit_code"], final["stdout_tail"]) == ("COMPLETED", 0, "it's a 'quoted' $HOME world on debug\n")
    marker = pi.submit_job({"executable": "/bin/true"})
    notes.final(marker["job_id"])
    assert notes.states(job["job_id"]) == ["QUEUED", "ACTIVE", "COMPLETED"]
    times = [t for _, t in pi.get_job_status(job["job_id"])["history"]]
    assert times == sorted(times)
    assert wait_for(lambda: (sacct(job, name) or ("",))[0] == "COMPLETED" and
                    sacct(job, name), 30, "sacct's record") == ("COMPLETED", "0:0")
    assert sacct(job, name, "Partition,Account,Timelimit") == ("debug", "testacct", "00:02:00")


def test_a_running_slurm_job_is_canceled(pi, notes):
    name = unique("orbit-cancel")
    job = pi.submit_job({"executable": "/bin/sleep", "arguments": ["60"], "name": name}, executor="slurm")
    wait_for(lambda: "ACTIVE" in notes.states(job["job_id"]), 30, "the job to run")
    pi.cancel_job(job["job_id"])
    assert notes.final(job["job_id"], timeout=30)["state"] == "CANCELED"
    assert wait_for(lambda: (sacct(job, name) or ("",))[0].startswith("CANCELLED"), 30,
                    "sacct's record")


def test_a_job_over_the_partition_time_limit_is_refused_with_sbatch_message(pi):
    with pytest.raises(BadRequest) as err:
        pi.submit_job({"executable": "/bin/true", "attributes": {"queue_name": "batch", "duration": "02:00:00"}},
                      executor="slurm")
    assert "sbatch: error" in err.value.detail and "Requested time limit is invalid" in err.value.detail
    with pytest.raises(BadRequest) as err:
        pi.submit_job({"executable": "/bin/true", "attributes": {"queue_name": "nosuch"}}, executor="slurm")
    assert "invalid partition specified: nosuch" in err.value.detail


def test_slurm_constraint_reaches_the_script_and_the_refusal_is_reported(orbit, pi, tmp_path):
    from psij.executors.batch.slurm import SlurmExecutorConfig
    import psij
    from radical_orbit.plugins.psij import spec as specs

    checked = specs.check({"executable": "/bin/true", "name": "n1", "attributes": {"slurm.constraint": "bigmem",
                                                                      "custom_attributes": {"slurm.qos": "normal"}}},
                          "slurm")
    executor = psij.JobExecutor.get_instance("slurm", config=SlurmExecutorConfig(work_directory=tmp_path))
    job = psij.Job(specs.build(checked, "slurm", str(tmp_path / "o"), str(tmp_path / "e"), "0123abcd"))
    script = io.StringIO()
    executor.generate_submit_script(job, executor._create_script_context(job), script)
    assert '#SBATCH --constraint="bigmem"' in script.getvalue()
    assert '#SBATCH --qos="normal"' in script.getvalue()
    assert '#SBATCH --job-name="n1.orbit-0123abcd"' in script.getvalue()      # unique: looked up by it
    with pytest.raises(BadRequest) as err:      # the node has no features: sbatch says so, we pass it on
        pi.submit_job({"executable": "/bin/true", "attributes": {"slurm.constraint": "bigmem"}}, executor="slurm")
    assert "Invalid feature specification" in err.value.detail
    assert glob.glob(os.path.join(state_dir(orbit, "ep"), "work", "slurm", "*.job")) == []   # no script left


def test_the_example_runs_a_slurm_job(orbit):
    env = orbit.env()
    env["PYTHONPATH"] = REPO
    r = subprocess.run([sys.executable, os.path.join(REPO, "examples", "example_psij.py"), "--endpoint", "ep",
                        "--executor", "slurm", "--queue", "debug", "--account", "testacct", "--duration", "00:02:00"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(slurm native id" in r.stdout and "COMPLETED, exit code 0" in r.stdout and "greeting ORBIT" in r.stdout


def test_the_same_key_twice_gives_one_slurm_job(pi, notes):
    spec = {"executable": "/bin/sleep", "arguments": ["1"], "name": "orbit-key-test"}
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(pi.submit_job(spec, executor="slurm", key="k-slurm")))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 3 and len({a["native_id"] for a in answers}) == 1
    notes.final(answers[0]["job_id"], timeout=60)
    assert pi.submit_job(spec, executor="slurm", key="k-slurm")["job_id"] == answers[0]["job_id"]
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i %j"], capture_output=True, text=True,
                         timeout=20).stdout
    assert answers[0]["native_id"] in out.split()


def test_kill_9_of_the_endpoint_while_a_job_runs(orbit, pi, notes):
    job = pi.submit_job({"executable": "/bin/sh", "arguments": ["-c", "sleep 3; echo survived; exit 0"]},
                        executor="slurm")
    wait_for(lambda: "ACTIVE" in notes.states(job["job_id"]), 30, "the job to run")
    orbit.endpoints["ep"].popen.send_signal(signal.SIGKILL)
    orbit.endpoints["ep"].wait(10)
    start_endpoint(orbit, "ep")
    listed = {j["job_id"]: j for j in pi.list_jobs()}
    assert listed[job["job_id"]]["native_id"] == job["native_id"]
    final = notes.final(job["job_id"], timeout=60)
    assert (final["state"], final["exit_code"], final["stdout_tail"]) == ("COMPLETED", 0, "survived\n")
    marker = pi.submit_job({"executable": "/bin/true"})
    notes.final(marker["job_id"])
    assert notes.states(job["job_id"]) == ["QUEUED", "ACTIVE", "COMPLETED"]
    assert [s for s, _ in pi.get_job_status(job["job_id"])["history"]] == ["NEW", "QUEUED", "ACTIVE", "COMPLETED"]


FLAKY_SBATCH = """#!/bin/sh
# the real sbatch, then what the mode file says: a failure after the submit, a hang past
# the command timeout, the endpoint killed before it records the id, or no submit at all
mode=$(cat %(mode)s 2>/dev/null)
if [ "$mode" != drop ]; then %(real)s "$@" || exit $?; fi
case "$mode" in
  hang) exec sleep 60 ;;
  kill) kill -9 $PPID; exit 1 ;;
  fail|drop) echo 'sbatch: error: Batch job submission failed: Socket timed out on send/recv operation' >&2; exit 1 ;;
esac
"""


def test_a_submit_whose_outcome_is_unknown_is_found_by_name_or_fails_not_found(orbit, bc, tmp_path):
    """sbatch failing or hanging after the controller took the job, or the endpoint killed
    before it recorded the id: the job ran while ORBIT said FAILED 'not known'. It is looked
    up by its unique name now and followed with its real native id, each transition notified
    once; a job the scheduler never got ends FAILED, not found, once its look-up time is over."""
    import shutil
    from psij_helpers import JobNotes

    fake, mode = tmp_path / "bin", tmp_path / "mode"
    fake.mkdir()
    (fake / "sbatch").write_text(FLAKY_SBATCH % {"mode": mode, "real": shutil.which("sbatch")})
    (fake / "sbatch").chmod(0o755)
    config = 'psij={"poll_interval": 0.5, "command_timeout": 2, "submit_lookup": 3}'
    path = "%s:%s" % (fake, os.environ["PATH"])
    orbit.start_endpoint("flaky", "-p", "psij", "--plugin-config", config, PATH=path)
    flaky_notes = JobNotes(bc, "flaky")
    with bc.get_endpoint_client("flaky").get_plugin("psij") as flaky:
        jobs = {}
        for how in ("fail", "hang"):
            mode.write_text(how)
            jobs[how] = flaky.submit_job({"executable": "/bin/sh", "arguments": ["-c", "sleep 1; echo " + how],
                                          "name": "flaky-" + how}, executor="slurm", key=how)
            assert jobs[how]["native_id"] and jobs[how]["native_id"].isdigit(), jobs[how]
        mode.write_text("drop")
        lost = flaky.submit_job({"executable": "/bin/true"}, executor="slurm")
        assert (lost["state"], lost["native_id"]) == ("QUEUED", None) and "outcome unknown" in lost["message"]
        for how, job in jobs.items():
            final = flaky_notes.final(job["job_id"], timeout=60)
            assert (final["state"], final["exit_code"], final["stdout_tail"]) == ("COMPLETED", 0, how + "\n")
            assert final["native_id"] == job["native_id"]
            assert flaky.submit_job({"executable": "/bin/sh", "arguments": ["-c", "sleep 1; echo " + how],
                                     "name": "flaky-" + how}, executor="slurm", key=how)["job_id"] == job["job_id"]
        final = flaky_notes.final(lost["job_id"], timeout=30)
        assert final["state"] == "FAILED" and "not found in squeue/sacct" in final["message"], final
        # killed between sbatch and recording the id: found at the restart
        mode.write_text("kill")
        with pytest.raises(Exception):
            flaky.submit_job({"executable": "/bin/sh", "arguments": ["-c", "echo killed"]}, executor="slurm")
        orbit.endpoints["flaky"].wait(10)
        mode.write_text("")
        orbit.start_endpoint("flaky", "-p", "psij", "--plugin-config", config, PATH=path)
        known = {j["job_id"] for j in jobs.values()} | {lost["job_id"]}
        [killed] = [j for j in flaky.list_jobs() if j["job_id"] not in known]
        final = flaky_notes.final(killed["job_id"], timeout=60)
        assert (final["state"], final["stdout_tail"]) == ("COMPLETED", "killed\n") and final["native_id"].isdigit()
        marker = flaky.submit_job({"executable": "/bin/true"})
        flaky_notes.final(marker["job_id"])
        for job in list(jobs.values()) + [killed]:
            assert flaky_notes.states(job["job_id"]) in (["QUEUED", "ACTIVE", "COMPLETED"], ["QUEUED", "COMPLETED"])
        assert flaky_notes.states(lost["job_id"]) == ["QUEUED", "FAILED"]
        out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True,
                             timeout=20).stdout.split()
        assert all(out.count("flaky-%s.orbit-%s" % (how, job["job_id"])) == 1 for how, job in jobs.items())
    orbit.endpoints.pop("flaky").stop()
