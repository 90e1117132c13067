"""psij with the local executor, through a real bridge (TLS, auth) and endpoint: runs
everywhere. The SLURM tier is in test_psij_slurm.py."""
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from orbit_procs import REPO, wait_for
from psij_helpers import (bc, client, detached_sleep, job_manager, notes, pi,  # noqa: F401 (fixtures)
                          process_gone, start_endpoint, start_orbit, state_dir)

from radical_orbit import BadRequest, Conflict, NotFound, Unavailable
from radical_orbit.errors import OrbitError
from radical_orbit.plugins import psij_client

pytest.importorskip("psij")


@pytest.fixture(scope="module")
def orbit(tmp_path_factory):
    o = start_orbit(str(tmp_path_factory.mktemp("psij") / "home"))
    yield o
    o.stop()


def test_local_job_runs_and_each_transition_is_notified_once(pi, notes):
    job = pi.submit_job({"executable": "/bin/echo", "arguments": ["hello", "orbit"]})
    assert job["executor"] == "local" and job["native_id"] and job["state"] in ("QUEUED", "ACTIVE", "COMPLETED")
    final = notes.final(job["job_id"])
    assert final["state"] == "COMPLETED" and final["exit_code"] == 0
    assert final["stdout_tail"] == "hello orbit\n" and final["stderr_tail"] == ""
    marker = pi.submit_job({"executable": "/bin/true"})     # a later job's end: anything due came before it
    notes.final(marker["job_id"])
    assert notes.states(job["job_id"]) == ["QUEUED", "ACTIVE", "COMPLETED"]
    assert [s for s, _ in pi.get_job_status(job["job_id"])["history"]] == ["NEW", "QUEUED", "ACTIVE", "COMPLETED"]


def test_a_failing_job_reports_its_exit_code_and_stderr(pi, notes):
    job = pi.submit_job({"executable": "/bin/sh", "arguments": ["-c", "echo oops >&2; exit 3"]})
    final = notes.final(job["job_id"])
    assert (final["state"], final["exit_code"], final["stderr_tail"]) == ("FAILED", 3, "oops\n")


def test_environment_directory_and_arguments_are_honoured(pi, notes, tmp_path):
    job = pi.submit_job({"executable": "/bin/sh", "arguments": ["-c", 'echo "$GREETING $1"; pwd', "arg0", "a b"],
                         "environment": {"GREETING": "hi", "N": 3}, "directory": str(tmp_path),
                         "attributes": {"process_count": 1}, "name": "named"})
    final = notes.final(job["job_id"])
    assert final["stdout_tail"] == "hi a b\n%s\n" % tmp_path and final["name"] == "named"


def test_local_jobs_run_through_the_quick_launcher_with_pre_post_and_stdin(orbit, pi, notes, tmp_path):
    """The local executor's launcher without psij's log subshell (quicklaunch.py) keeps what
    psij's does: pre- and post-launch scripts, stdin, the exit code, stdout and stderr."""
    (tmp_path / "pre.sh").write_text("export GREETING=hi\n")
    (tmp_path / "post.sh").write_text("echo post > %s/post.txt\n" % tmp_path)
    (tmp_path / "in.txt").write_text("from stdin\n")
    job = pi.submit_job({"executable": "/bin/sh", "arguments": ["-c", "cat; echo $GREETING; echo err >&2; exit 4"],
                         "pre_launch": str(tmp_path / "pre.sh"), "post_launch": str(tmp_path / "post.sh"),
                         "stdin_path": str(tmp_path / "in.txt")})
    final = notes.final(job["job_id"])
    assert (final["state"], final["exit_code"]) == ("FAILED", 4)
    assert (final["stdout_tail"], final["stderr_tail"]) == ("from stdin\nhi\n", "err\n")
    assert (tmp_path / "post.txt").read_text() == "post\n"
    assert os.path.exists(os.path.join(state_dir(orbit, "ep"), "work", "orbit_single_launch.sh"))


def test_status_reads_output_incrementally(pi, notes):
    job = pi.submit_job({"executable": "/bin/sh", "arguments": ["-c", "printf 'one\\ntwo\\n'; printf e >&2"]})
    notes.final(job["job_id"])
    first = pi.get_job_status(job["job_id"])
    assert first["stdout"] == {"data": "one\ntwo\n", "offset": 8, "size": 8, "more": False}
    assert first["stderr"]["data"] == "e" and first["spec"]["executable"] == "/bin/sh"
    later = pi.get_job_status(job["job_id"], stdout_offset=4, stderr_offset=1)
    assert later["stdout"]["data"] == "two\n" and later["stderr"] == {"data": "", "offset": 1, "size": 1,
                                                                        "more": False}


@pytest.mark.parametrize("job_spec, executor, field", [
    ({"executable": "/bin/true", "attributes": {"queue_name": "debug"}}, "local", "attributes.queue_name"),
    ({"executable": "/bin/true", "attributes": {"account": "a"}}, "local", "attributes.account"),
    ({"executable": "/bin/true", "attributes": {"duration": 60}}, "local", "attributes.duration"),
    ({"executable": "/bin/true", "attributes": {"reservation_id": "r"}}, "local", "attributes.reservation_id"),
    ({"executable": "/bin/true", "attributes": {"slurm.constraint": "x"}}, "local", "attributes.slurm.constraint"),
    ({"executable": "/bin/true", "attributes": {"node_count": 2}}, "local", "resources.node_count"),
    ({"executable": "/bin/true", "attributes": {"pbs.l": "x"}}, "slurm", "attributes.pbs.l"),
    ({"executable": "/bin/true", "attributes": {"duration": "forever"}}, "slurm", "attributes.duration"),
    ({"executable": "/bin/true", "attributes": {"walltime": 5}}, "slurm", "attributes.walltime"),
    ({"executable": "/bin/true", "attributes": {"node_count": 0}}, "slurm", "attributes.node_count"),
    ({"executable": "/bin/true", "attributes": {"node_count": 2}, "resources": {"node_count": 3}}, "slurm",
     "attributes.node_count"),
    ({"executable": "/bin/true", "resources": {"gpus": 1}}, "slurm", "resources.gpus"),
    ({"executable": "/bin/true", "stdout": "/tmp/x"}, "local", "job_spec.stdout"),
    ({"executable": "/bin/true", "environment": {"A B": "x"}}, "local", "environment.A B"),
    ({"executable": "/bin/true", "arguments": "x"}, "local", "arguments"),
    ({"executable": "/bin/true", "directory": "relative"}, "local", "directory"),
    ({"arguments": []}, "local", "executable"),
    ({"executable": "/bin/true", "attributes": {"slurm.constraint": "a&b"}}, "slurm", "attributes.slurm.constraint"),
    ({"executable": "/bin/true", "name": "my job"}, "slurm", "job_spec.name"),
    ({"executable": "/bin/true", "attributes": {"account": "a b"}}, "slurm", "attributes.account"),
])
def test_a_field_the_executor_would_not_honour_is_refused_naming_it(orbit, pi, job_spec, executor, field):
    with pytest.raises(BadRequest) as err:
        pi.submit_job(job_spec, executor=executor)
    assert field in err.value.detail and err.value.status_code == 400


def test_unknown_executor_and_unknown_body_fields_are_400(orbit, pi):
    r = orbit.get("ep/psij/submit/%s" % pi.sid, "POST", json={"job_spec": {"executable": "/bin/true"},
                                                             "executor": "nosuch"})
    assert r.status_code == 400 and "unknown executor 'nosuch'" in r.json()["detail"] and "slurm" in r.json()["detail"]
    r = orbit.get("ep/psij/submit/%s" % pi.sid, "POST", json={"job_spec": {"executable": "/bin/true"}, "x": 1})
    assert r.status_code == 400 and "not x" in r.json()["detail"]
    assert pi.executors()["default"] == "local" and "slurm" in pi.executors()["executors"]
    r = orbit.get("ep/psij/submit/%s" % pi.sid, "POST", json={"job_spec": {"executable": "/bin/true"},
                                                             "executor": "flux"})
    assert r.status_code == 400 and "executor flux cannot run here" in r.json()["detail"]   # no flux bindings


def test_the_same_key_twice_gives_one_job_also_when_concurrent(pi, notes):
    spec = {"executable": "/bin/sleep", "arguments": ["0.2"]}
    first = pi.submit_job(spec, key="key-seq")
    assert pi.submit_job(spec, key="key-seq")["job_id"] == first["job_id"]
    answers, errors = [], []

    def submit():
        try:
            answers.append(pi.submit_job(spec, key="key-concurrent")["job_id"])
        except Exception as exc:         # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(answers) == 4 and len(set(answers)) == 1
    with pytest.raises(Conflict):
        pi.submit_job({"executable": "/bin/echo"}, key="key-seq")     # same key, another job: refused
    ids = [j["job_id"] for j in pi.list_jobs()]
    assert ids.count(first["job_id"]) == 1 and ids.count(answers[0]) == 1
    notes.final(answers[0])


def test_the_sdk_resends_a_submit_whose_answer_was_lost_with_the_same_key(pi, notes, monkeypatch):
    sent = []
    real = psij_client.PSIJClient.request

    def lose_first_answer(self, method, path, **kwargs):
        answer = real(self, method, path, **kwargs)
        if path.startswith("submit/"):
            sent.append(kwargs["json"]["key"])
            if len(sent) == 1:
                raise Unavailable("the answer was lost")
        return answer
    monkeypatch.setattr(psij_client.PSIJClient, "request", lose_first_answer)
    monkeypatch.setattr(psij_client, "RETRY_PAUSE", 0.01)
    job = pi.submit_job({"executable": "/bin/echo", "arguments": ["once"]})
    assert len(sent) == 2 and sent[0] == sent[1]
    notes.final(job["job_id"])
    assert sum(1 for j in pi.list_jobs() if j["job_id"] == job["job_id"]) == 1
    assert len(notes.states(job["job_id"])) == 3


def test_a_running_job_is_canceled(pi, notes):
    job = pi.submit_job({"executable": "/bin/sleep", "arguments": ["30"]})
    answer = pi.cancel_job(job["job_id"])
    assert answer["cancel_requested"] is True
    # the answer comes once the process is killed (psij killed it up to 0.1 s later, and an
    # endpoint stopped in between left a CANCELED job running)
    assert not _running(int(job["native_id"]))
    final = notes.final(job["job_id"])
    assert final["state"] == "CANCELED"
    assert pi.cancel_job(job["job_id"])["state"] == "CANCELED"     # again: nothing changes
    with pytest.raises(NotFound):
        pi.cancel_job("nosuchjob")


def test_wait_job_ends_by_polling_when_the_event_stream_is_cut(orbit, monkeypatch):
    from radical_orbit import client as sdk

    def cut(self):
        raise ConnectionError("cut")
    monkeypatch.setattr(sdk.EventListener, "_follow", cut)
    monkeypatch.setattr(psij_client, "STREAM_CONNECT_WAIT", 0.1)
    with client(orbit) as bc2:
        pi2 = bc2.get_endpoint_client("ep").get_plugin("psij")
        job = pi2.submit_job({"executable": "/bin/sleep", "arguments": ["0.3"]})
        final = pi2.wait_job(job["job_id"], timeout=20, poll=0.2)
        assert final["state"] == "COMPLETED" and final["stdout"]["data"] == ""


def test_wait_job_of_a_job_already_ended_has_the_output_tails(pi, notes):
    """README's first job prints ``final["stdout_tail"]``: a job that ended before wait_job
    asked came back from the status poll without it (KeyError on a fast machine)."""
    job = pi.submit_job({"executable": "/bin/sh", "arguments": ["-c", "echo out; echo err >&2"]})
    notes.final(job["job_id"])
    final = pi.wait_job(job["job_id"], timeout=20)
    assert (final["stdout_tail"], final["stderr_tail"]) == ("out\n", "err\n"), final
    running = pi.submit_job({"executable": "/bin/sleep", "arguments": ["30"]})
    assert "stdout_tail" not in pi.get_job_status(running["job_id"])
    pi.cancel_job(running["job_id"])
    notes.final(running["job_id"])


def test_wait_job_refuses_absurd_timeouts_and_bounds_its_poll(pi, notes, monkeypatch):
    """wait_job(timeout=nan) waited for ever and poll=0 (or below) sent status calls in a
    tight loop."""
    job = pi.submit_job({"executable": "/bin/sleep", "arguments": ["0.5"]})
    for bad in (float("nan"), -1, "10", None):
        with pytest.raises(ValueError):
            pi.wait_job(job["job_id"], timeout=bad)
    calls = []
    real = pi.get_job_status
    monkeypatch.setattr(pi, "get_job_status", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(psij_client, "STREAM_CONNECT_WAIT", 0.0)
    assert pi.wait_job(job["job_id"], timeout=1e300, poll=-5)["state"] == "COMPLETED"
    assert len(calls) < 20, len(calls)


def test_the_bridge_hosts_psij_with_the_local_executor(bc):
    with bc.get_endpoint_client("bridge").get_plugin("psij") as bp:
        job = bp.submit_job({"executable": "/bin/echo", "arguments": ["from the bridge"]})
        final = bp.wait_job(job["job_id"], timeout=20)
        assert final["state"] == "COMPLETED"
        assert bp.get_job_status(job["job_id"])["stdout"]["data"] == "from the bridge\n"


def test_the_example_runs_against_the_embedded_default(orbit):
    env = orbit.env()
    env["PYTHONPATH"] = REPO
    r = subprocess.run([sys.executable, os.path.join(REPO, "examples", "example_psij.py")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "COMPLETED, exit code 0" in r.stdout and "greeting ORBIT" in r.stdout


def test_jobs_survive_a_kill_9_of_the_endpoint_and_end_once(orbit, pi, notes):
    """Local jobs running while their endpoint is killed: listed after the restart, and their
    end notified once with the exit code their launcher recorded (psij alone reports 0 for a
    re-attached process, and nothing for one that ended while the endpoint was down)."""
    import psutil
    done = pi.submit_job({"executable": "/bin/echo", "arguments": ["before"]})
    notes.final(done["job_id"])
    running = pi.submit_job({"executable": "/bin/sh", "arguments": ["-c", "sleep 3; exit 3"]})
    quick = pi.submit_job({"executable": "/bin/sh", "arguments": ["-c", "sleep 0.5; exit 5"]})
    ok = pi.submit_job({"executable": "/bin/sleep", "arguments": ["3"]})
    for job in (running, quick, ok):
        wait_for(lambda: "ACTIVE" in notes.states(job["job_id"]), 10, "the job to run")
    orbit.endpoints["ep"].popen.send_signal(signal.SIGKILL)
    orbit.endpoints["ep"].wait(10)
    wait_for(lambda: not psutil.pid_exists(int(quick["native_id"])), 10, "a job to end while the endpoint is down")
    start_endpoint(orbit, "ep")
    listed = {j["job_id"]: j for j in pi.list_jobs()}       # a new session is registered by itself
    assert listed[done["job_id"]]["state"] == "COMPLETED" and running["job_id"] in listed
    final = notes.final(running["job_id"], timeout=30)
    assert (final["state"], final["exit_code"]) == ("FAILED", 3), final
    final = notes.final(quick["job_id"], timeout=30)
    assert (final["state"], final["exit_code"]) == ("FAILED", 5), final
    final = notes.final(ok["job_id"], timeout=30)
    assert (final["state"], final["exit_code"]) == ("COMPLETED", 0), final
    marker = pi.submit_job({"executable": "/bin/true"})
    notes.final(marker["job_id"])
    for job, end in ((running, "FAILED"), (quick, "FAILED"), (ok, "COMPLETED"), (done, "COMPLETED")):
        assert notes.states(job["job_id"]) == ["QUEUED", "ACTIVE", end]
    assert pi.get_job_status(quick["job_id"])["exit_code"] == 5
    assert os.path.exists(os.path.join(state_dir(orbit, "ep"), "jobs.sqlite"))


@pytest.mark.parametrize("point", ["COMPLETED", "COMPLETED:sent"])
def test_a_terminal_notification_recorded_just_before_a_kill_9_arrives_once(orbit, pi, notes, point):
    """The endpoint SIGKILLs itself right after a job's COMPLETED is committed (before it is
    sent; or right after sending, before the ack is recorded): after the restart the
    recorded notification is sent again and arrives over SSE exactly once."""
    ep = orbit.endpoints["ep"]
    ep.popen.send_signal(signal.SIGKILL)
    ep.wait(10)
    ep = start_endpoint(orbit, "ep", RADICAL_ORBIT_TEST_KILL_AFTER_RECORD=point)
    job = pi.submit_job({"executable": "/bin/sleep", "arguments": ["0.3"]})
    wait_for(lambda: not ep.alive(), 20, "the endpoint to kill itself at %s" % point)
    start_endpoint(orbit, "ep")
    final = notes.final(job["job_id"], timeout=30)
    assert final["state"] == "COMPLETED" and final["exit_code"] == 0
    marker = pi.submit_job({"executable": "/bin/true"})
    notes.final(marker["job_id"])
    assert notes.states(job["job_id"]) == ["QUEUED", "ACTIVE", "COMPLETED"]
    db = sqlite3.connect(os.path.join(state_dir(orbit, "ep"), "jobs.sqlite"))
    try:
        wait_for(lambda: db.execute("SELECT COUNT(*) FROM notes").fetchone()[0] == 0, 10,
                 "the store to forget the acknowledged notifications")
    finally:
        db.close()


def test_a_bad_session_or_job_is_an_envelope(orbit, pi):
    r = orbit.get("ep/psij/status/nosession/x")
    assert r.status_code == 404 and r.json()["error"] is True
    r = orbit.get("ep/psij/status/%s/nosuchjob" % pi.sid)
    assert r.status_code == 404 and "no job nosuchjob" in r.json()["detail"]
    r = orbit.get("ep/psij/status/%s/nosuchjob?stdout_offset=-1" % pi.sid)
    assert r.status_code == 400
    r = orbit.get("ep/psij/submit/%s" % pi.sid, "POST", data=b"[1]")
    assert r.status_code == 400


def test_process_count_runs_that_many_local_processes(pi, notes):
    job = pi.submit_job({"executable": "/bin/echo", "arguments": ["x"], "attributes": {"process_count": 3}})
    final = notes.final(job["job_id"])
    assert final["state"] == "COMPLETED" and final["stdout_tail"] == "x\nx\nx\n"


def test_a_cancel_the_scheduler_reports_as_completed_or_failed_is_canceled(tmp_path):
    from radical_orbit.plugin import DurableNotes
    from radical_orbit.plugins.psij.store import JobStore
    from radical_orbit.plugins.psij.watcher import Watcher

    store = JobStore(str(tmp_path / "jobs.sqlite"))
    sent = []
    watcher = Watcher(store, DurableNotes(lambda topic, data: sent.append(data), store.notes_acked))
    for job_id, reported in (("a", "COMPLETED"), ("b", "FAILED")):
        store.insert(job_id, None, "slurm", {"executable": "/bin/true"}, "/nonexistent.out", "/nonexistent.err", "s")
        watcher.advance(job_id, "QUEUED", None, None, 1.0)
        store.request_cancel(job_id)
        watcher.advance(job_id, reported, 0, None, 2.0)
        watcher.advance(job_id, "CANCELED", None, None, 3.0)       # a second terminal report: nothing
    assert [(n["job_id"], n["state"]) for n in sent] == [("a", "QUEUED"), ("a", "CANCELED"),
                                                          ("b", "QUEUED"), ("b", "CANCELED")]
    assert "the scheduler reported COMPLETED" in sent[1]["message"]
    store.close()


def test_a_cancel_asked_before_a_restarted_endpoint_reattached_the_job_is_carried_out(tmp_path):
    """After a restart jobs are attached again on a thread of their own; a cancel that came
    first found no psij job, did nothing, and the job ran to its end (then shown CANCELED).
    Now the attach carries the recorded cancel out, and once every job is attached a job
    that could not be is a 502 saying how to cancel it, not a silent no-op."""
    from radical_orbit.plugins.psij.watcher import process_started

    pid = detached_sleep()
    jobs = job_manager(str(tmp_path), poll_interval=0.5)

    def gone():
        return process_gone(pid)
    try:
        jobs.store.insert("j1", None, "local", {"executable": "/bin/sleep", "arguments": ["30"]},
                          str(tmp_path / "j1.out"), str(tmp_path / "j1.err"), "s")
        jobs.store.set_native("j1", str(pid), process_started("local", str(pid)))
        jobs.watcher.advance("j1", "ACTIVE", None, None, time.time())
        assert jobs.cancel("j1")["cancel_requested"] is True        # before the attach
        jobs.resume()
        wait_for(gone, 10, "the re-attached job's process to be killed")
        wait_for(lambda: jobs.get("j1")["state"] == "CANCELED", 10, "the job to be CANCELED")
        # psij's reaper, which kills the cancelled job at every pass, still sees jobs end
        time.sleep(0.3)     # a few reaper passes with the cancelled process gone
        after = jobs.submit({"executable": "/bin/true"})
        wait_for(lambda: jobs.get(after["job_id"])["state"] == "COMPLETED", 10, "a later local job to end")
        jobs.store.insert("j2", None, "slurm", {"executable": "/bin/true"}, "/dev/null", "/dev/null", "s")
        jobs.store.set_native("j2", "4242")
        jobs.watcher.advance("j2", "QUEUED", None, None, time.time())      # recorded, not attached
        with pytest.raises(OrbitError, match="not watched by this endpoint"):
            jobs.cancel("j2")
    finally:
        if not gone():
            os.kill(pid, signal.SIGKILL)
        jobs.close()


def test_a_cancel_racing_the_look_up_that_finds_the_job_or_its_end_is_carried_out(tmp_path, monkeypatch):
    """A cancel read the job without its native id, then the look-up thread found and
    attached it (reading no cancel yet): the cancel did nothing and the job ran to its end
    (then shown CANCELED). And a cancel whose job ended between its read and the kill was a
    502 saying the job is not watched. The cancel reads the job again after recording it."""
    pid = detached_sleep()
    jobs = job_manager(str(tmp_path), poll_interval=0.5)

    def gone():
        return process_gone(pid)
    try:
        jobs.resume()
        jobs.store.insert("j1", None, "local", {"executable": "/bin/sleep", "arguments": ["30"]},
                          str(tmp_path / "j1.out"), str(tmp_path / "j1.err"), "s")
        jobs.watcher.advance("j1", "QUEUED", None, None, time.time())     # submit outcome unknown
        request_cancel = jobs.store.request_cancel

        def found_meanwhile(job_id):
            jobs._adopt(job_id, str(pid))       # the look-up finds it between the cancel's read and record
            request_cancel(job_id)
        monkeypatch.setattr(jobs.store, "request_cancel", found_meanwhile)
        jobs.cancel("j1")
        wait_for(gone, 10, "the job found meanwhile to be killed")
        wait_for(lambda: jobs.get("j1")["state"] == "CANCELED", 10, "the job to be CANCELED")
        monkeypatch.setattr(jobs.store, "request_cancel", request_cancel)
        jobs.store.insert("j2", None, "slurm", {"executable": "/bin/true"}, "/dev/null", "/dev/null", "s")
        jobs.store.set_native("j2", "4242")
        jobs.watcher.advance("j2", "COMPLETED", 0, None, time.time())     # ended after the cancel's read
        jobs._cancel_live("j2", jobs.executors.get("local"))
    finally:
        if not gone():
            os.kill(pid, signal.SIGKILL)
        jobs.close()


def test_a_job_resume_and_the_look_up_thread_both_find_is_attached_once(tmp_path, monkeypatch):
    """After a restart, resume looks a job whose submit outcome was unknown up itself while
    the look-up thread (woken by each job added) may look it up too: both found it and
    attached it twice. Look-ups run one at a time; the second sees the native id."""
    from radical_orbit.plugins.psij import lookup

    jobs = job_manager(str(tmp_path), keep_days=0)
    second = threading.Event()
    calls = []

    def finder(name, since, timeout):
        calls.append(name)
        if len(calls) == 1:
            second.wait(2.0)        # a look-up running alongside would arrive meanwhile
        else:
            second.set()
        return "4242"
    attached = []
    monkeypatch.setitem(lookup.FINDERS, "slurm", finder)
    monkeypatch.setattr(jobs, "_attach", lambda record, native: attached.append(native))
    try:
        jobs.store.insert("j1", None, "slurm", {"executable": "/bin/true"}, "/dev/null", "/dev/null", "s")
        jobs.watcher.advance("j1", "QUEUED", None, None, time.time())     # submit outcome unknown
        both = [threading.Thread(target=jobs._resolve, args=("j1",)) for _ in range(2)]
        for t in both:
            t.start()
        for t in both:
            t.join(10)
        assert attached == ["4242"] and len(calls) == 1
    finally:
        jobs.close()


def test_psij_reaper_survives_killing_a_reattached_job_that_is_gone(tmp_path):
    """psij's reaper kills a cancelled job at every pass until it sees it end; for a job
    attached by pid the kill raised once the process was gone, so the pass never reached
    the check that the job ended (the job stayed in the reaper, and every local job after
    it was never seen ending). The executor ORBIT makes has that kill fixed."""
    import psutil
    from radical_orbit.plugins.psij.executors import Executors
    executor = Executors(str(tmp_path), lambda job, status: None).get("local")
    entry_class = type(executor).attach.__globals__["_AttachedProcessEntry"]
    gone = subprocess.Popen(["/bin/true"])
    process = psutil.Process(gone.pid)
    gone.wait()
    entry = entry_class.__new__(entry_class)
    entry.process = process
    entry.kill()


def test_the_child_wakeup_pokes_psij_when_a_watched_process_exits(monkeypatch):
    from radical_orbit.plugins.psij import wakeup

    poked = threading.Event()
    monkeypatch.setattr(wakeup, "_reaper_poke", lambda: poked.set)
    watcher = wakeup.ChildWakeup()
    if not watcher.enabled:
        pytest.skip("no pidfd_open here (Python < 3.9 or Linux < 5.3): psij's own polling is used")
    child = subprocess.Popen(["/bin/sleep", "0.3"])
    try:
        watcher.watch(child.pid)
        assert not poked.wait(0.1)
        assert poked.wait(10)
    finally:
        child.wait(10)
        watcher.stop()


def test_a_scheduler_command_that_hangs_is_cut_by_the_command_timeout(orbit, bc, tmp_path):
    """A fake sbatch that never answers: the submit returns after command_timeout. The job
    may be queued, so it stays recorded, QUEUED with its submit outcome unknown (it was
    FAILED 'not known' while it could run), and is looked up by name; the SDK's retry with the
    same key, which used to run sbatch again (a job twice), answers that job. Never found,
    it ends FAILED saying so once submit_lookup has passed."""
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "calls"
    (fake / "sbatch").write_text("#!/bin/sh\necho sbatch >> %s\nexec sleep 60\n" % calls)
    (fake / "sbatch").chmod(0o755)
    orbit.start_endpoint("slowsched", "-p", "psij", "--plugin-config", 'psij={"command_timeout": 1, "submit_lookup": 2}',
                         PATH="%s:%s" % (fake, os.environ["PATH"]))
    with bc.get_endpoint_client("slowsched").get_plugin("psij") as slow:
        body = {"job_spec": {"executable": "/bin/true"}, "executor": "slurm", "key": "once"}
        r = orbit.get("slowsched/psij/submit/%s" % slow.sid, "POST", json=body)
        assert r.status_code == 200 and r.json()["state"] == "QUEUED", r.text
        assert "outcome unknown" in r.json()["message"] and "sbatch did not answer within 1 s" in r.json()["message"]
        again = orbit.get("slowsched/psij/submit/%s" % slow.sid, "POST", json=body)
        assert again.status_code == 200 and again.json()["job_id"] == r.json()["job_id"], again.text
        assert calls.read_text().count("sbatch") == 1
        # SLURM's own "socket timed out": the controller may have queued it too
        (fake / "sbatch").write_text("#!/bin/sh\necho sbatch >> %s\necho 'sbatch: error: Batch job "
                                     "submission failed: Socket timed out on send/recv operation' >&2\n"
                                     "exit 1\n" % calls)
        body["key"] = "socket"
        r = orbit.get("slowsched/psij/submit/%s" % slow.sid, "POST", json=body)
        assert r.status_code == 200 and "Socket timed out" in r.json()["message"], r.text
        again = orbit.get("slowsched/psij/submit/%s" % slow.sid, "POST", json=body)
        assert again.status_code == 200 and again.json()["job_id"] == r.json()["job_id"], again.text
        assert calls.read_text().count("sbatch") == 2
        for job in slow.list_jobs():
            ended = wait_for(lambda: slow.get_job_status(job["job_id"])["state"] != "QUEUED" and
                             slow.get_job_status(job["job_id"]), 30, "the look-up to give up")
            assert ended["state"] == "FAILED" and "not found in squeue/sacct" in ended["message"], ended
    orbit.endpoints.pop("slowsched").stop()


def test_a_job_whose_scheduler_cannot_be_asked_is_not_given_up(orbit, bc, tmp_path):
    """Past submit_lookup, a job whose submit outcome is unknown is given up (FAILED) only
    on the scheduler's own answer that it is not there: while squeue cannot be asked, the
    job may be running, so it stays QUEUED and is looked up again."""
    fake = tmp_path / "bin"
    fake.mkdir()
    asked = tmp_path / "asked"
    (fake / "sbatch").write_text("#!/bin/sh\nexec sleep 60\n")
    (fake / "squeue").write_text("#!/bin/sh\necho squeue >> %s\necho 'slurm_load_jobs error: "
                                 "Unable to contact slurm controller' >&2\nexit 1\n" % asked)
    for tool in ("sbatch", "squeue"):
        (fake / tool).chmod(0o755)
    orbit.start_endpoint("nosched", "-p", "psij", "--plugin-config", 'psij={"command_timeout": 1, "submit_lookup": 1}',
                         PATH="%s:%s" % (fake, os.environ["PATH"]))
    with bc.get_endpoint_client("nosched").get_plugin("psij") as ps:
        job = ps.submit_job({"executable": "/bin/true"}, executor="slurm")
        assert job["state"] == "QUEUED" and "outcome unknown" in job["message"], job
        # look-ups well past submit_lookup (at least 0.5 s apart), every one unanswered
        wait_for(lambda: asked.exists() and asked.read_text().count("squeue") >= 4, 30, "four look-ups")
        assert ps.get_job_status(job["job_id"])["state"] == "QUEUED"
        (fake / "squeue").write_text("#!/bin/sh\nexit 0\n")       # answers: no such job
        ended = wait_for(lambda: ps.get_job_status(job["job_id"])["state"] != "QUEUED" and
                         ps.get_job_status(job["job_id"]), 30, "the look-up to give up")
        assert ended["state"] == "FAILED" and "not found in squeue/sacct" in ended["message"], ended
    orbit.endpoints.pop("nosched").stop()


def test_output_paths_a_spec_names_are_the_ones_status_reads(pi, notes, tmp_path):
    """A job_spec's own stdout_path: status and the terminal notification read the default
    file the job never wrote, so its output looked empty."""
    out = str(tmp_path / "mine.out")
    job = pi.submit_job({"executable": "/bin/echo", "arguments": ["in my file"], "stdout_path": out})
    final = notes.final(job["job_id"])
    assert final["stdout_tail"] == "in my file\n"
    assert pi.get_job_status(job["job_id"])["stdout"]["data"] == "in my file\n"


def test_an_output_path_that_is_a_fifo_blocks_neither_status_nor_notifications(pi, notes, tmp_path):
    """A spec may name a FIFO as its stdout: once the job had ended, the terminal
    notification's tail opened it and waited for a writer for ever (psij's thread: no job
    ended after that), and so did every status call. Only regular files are read now."""
    fifo = str(tmp_path / "out.fifo")
    os.mkfifo(fifo)
    job = pi.submit_job({"executable": "/bin/echo", "arguments": ["into the fifo"], "stdout_path": fifo})
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)      # lets the job's launcher open it
    try:
        final = notes.final(job["job_id"], timeout=20)
    finally:
        os.close(reader)
    assert final["state"] == "COMPLETED" and final["stdout_tail"] == ""
    assert pi.get_job_status(job["job_id"])["stdout"]["data"] == ""
    after = pi.submit_job({"executable": "/bin/true"})
    assert notes.final(after["job_id"])["state"] == "COMPLETED"


def test_hostile_specs_and_bodies_are_400_naming_the_field(orbit, pi):
    url = "ep/psij/submit/%s" % pi.sid
    for job_spec, words in (
            ({"executable": "/bin/true", "environment": {"A": "x\u0000y"}}, "environment.A"),
            ({"executable": "/bin/true", "environment": {"A": "x" * 200000}}, "environment.A"),
            ({"executable": "/bin/true", "resources": {"process_count": 10 ** 6}}, "process_count"),
            ({"executable": "/bin/true", "launcher": "multiple", "resources": {"processes_per_node": 10 ** 6}},
             "processes_per_node"),
            ({"executable": "/bin/echo", "stdout_path": "out.txt"}, "stdout_path must be an absolute path")):
        r = orbit.get(url, "POST", json={"job_spec": job_spec})
        assert r.status_code == 400 and words in r.json()["detail"], r.text
    r = orbit.get(url, "POST", data='{"job_spec": {"executable": "/bin/true", "environment": {"A": Infinity}}}')
    assert r.status_code == 400 and "environment.A" in r.json()["detail"], r.text
    r = orbit.get(url, "POST", data='{"job_spec": ' + "[" * 100000 + "]" * 100000 + "}")
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"], r.text


def test_a_batch_command_is_killed_with_its_children_and_keeps_the_locale(tmp_path, monkeypatch):
    """psij's batch commands ran with subprocess.run: on timeout the command alone was killed
    and a child of a wrapper script lived on. They run with run_bounded now (the process
    group is killed), in the caller's locale (sbatch's environment is the job's)."""
    from radical_orbit.plugins.psij.executors import CommandTimedOut, timed_run_command
    hang, pidfile = tmp_path / "squeue", tmp_path / "child.pid"
    hang.write_text("#!/bin/sh\nsleep 20 &\necho $! > %s\nexec sleep 20\n" % pidfile)
    hang.chmod(0o755)
    with pytest.raises(CommandTimedOut):
        timed_run_command(0.5)([str(hang)])
    child = int(pidfile.read_text())

    def gone():
        return process_gone(child)
    try:
        wait_for(gone, 5, "the command's child to be killed too")
    finally:
        if not gone():
            os.kill(child, signal.SIGKILL)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    assert timed_run_command(5)(["/bin/sh", "-c", "echo $LC_ALL"]).strip() == "C.UTF-8"


def test_jobs_that_ended_longer_ago_than_keep_days_are_pruned_with_their_files(orbit, bc):
    """Records and output files were kept for ever. With ``keep_days`` an ended job is
    forgotten with its files, periodically and at load; a job still running never is, and
    0 keeps everything."""
    def start(keep_days):
        return orbit.start_endpoint("keeper", "-p", "psij", "--plugin-config",
                                    'psij={"poll_interval": 0.5, "keep_days": %s}' % keep_days)
    outputs = os.path.join(state_dir(orbit, "keeper"), "output")
    start(0.00003)          # 2.6 s
    with bc.get_endpoint_client("keeper").get_plugin("psij") as keeper:
        running = keeper.submit_job({"executable": "/bin/sleep", "arguments": ["60"]})
        wait_for(lambda: keeper.get_job_status(running["job_id"])["state"] == "ACTIVE", 10, "the job to run")
        done = keeper.submit_job({"executable": "/bin/echo", "arguments": ["pruned"]})
        wait_for(lambda: keeper.get_job_status(done["job_id"])["state"] == "COMPLETED", 10, "the job to end")
        assert os.path.exists(os.path.join(outputs, done["job_id"] + ".out"))
        wait_for(lambda: done["job_id"] not in [j["job_id"] for j in keeper.list_jobs()], 20,
                 "the ended job to be pruned")
        assert not [f for f in os.listdir(outputs) if f.startswith(done["job_id"])]
        # older than keep_days too, but running: kept
        assert keeper.get_job_status(running["job_id"])["state"] == "ACTIVE"
        keeper.cancel_job(running["job_id"])
        wait_for(lambda: keeper.get_job_status(running["job_id"])["state"] == "CANCELED", 10, "the cancel")
        wait_for(lambda: not _running(int(running["native_id"])), 10, "the canceled job's process to end")
    orbit.endpoints.pop("keeper").stop()
    db = sqlite3.connect(os.path.join(state_dir(orbit, "keeper"), "jobs.sqlite"))
    try:
        db.execute("UPDATE jobs SET updated = updated - 40 * 86400 WHERE job_id = ?", (running["job_id"],))
        db.commit()
    finally:
        db.close()
    for keep_days, kept in ((0, True), (30, False)):
        start(keep_days)
        with bc.get_endpoint_client("keeper").get_plugin("psij") as keeper:
            assert (running["job_id"] in [j["job_id"] for j in keeper.list_jobs()]) is kept
        orbit.endpoints.pop("keeper").stop()
    assert not [f for f in os.listdir(outputs) if f.startswith(running["job_id"])]


def test_pruning_a_batch_job_removes_what_psij_left_in_its_work_dir(tmp_path):
    """psij's batch executors keep ``<native id>.out`` of every job that completed in their
    work dir: a pruned job takes it along, unless a job still watched has that native id."""
    jobs = job_manager(str(tmp_path), keep_days=1)
    try:
        work = tmp_path / "work" / "slurm"
        work.mkdir(parents=True)
        for job_id, native, final in (("old", "101", True), ("reused", "202", True), ("running", "202", False)):
            jobs.store.insert(job_id, None, "slurm", {"executable": "/bin/true"}, "/dev/null", "/dev/null", "s")
            jobs.store.set_native(job_id, native)
            jobs.watcher.advance(job_id, "COMPLETED" if final else "ACTIVE", 0, None, time.time())
            (work / (native + ".out")).write_text("launcher output")
        jobs.store._db.execute("UPDATE jobs SET updated = updated - 2 * 86400")
        assert jobs.prune() == 2
        assert sorted(os.listdir(str(work))) == ["202.out"]
        assert [j["job_id"] for j in jobs.list()] == ["running"]
    finally:
        jobs.close()


def test_pruning_a_reattached_batch_job_removes_its_submit_script(tmp_path):
    """psij's batch executors write ``<psij id>.job`` and only the psij.Job that submitted
    it removes it: a job watched to its end by one attached after a restart left it for
    ever. Pruning takes it along; the script of a job not yet ended stays."""
    # a store an earlier version wrote, without the psij id column, is carried on
    os.makedirs(str(tmp_path / "old"))
    db = sqlite3.connect(str(tmp_path / "old" / "jobs.sqlite"))
    db.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, submit_key TEXT UNIQUE, executor TEXT NOT NULL,"
               " native_id TEXT, state TEXT NOT NULL, exit_code INTEGER, message TEXT, spec TEXT NOT NULL,"
               " stdout_path TEXT NOT NULL, stderr_path TEXT NOT NULL, sid TEXT, created REAL NOT NULL,"
               " updated REAL NOT NULL, cancel_requested INTEGER NOT NULL DEFAULT 0,"
               " history TEXT NOT NULL DEFAULT '[]', process_started REAL)")
    db.commit()
    db.close()
    job_manager(str(tmp_path / "old")).close()

    jobs = job_manager(str(tmp_path), keep_days=1)
    try:
        work = tmp_path / "work" / "slurm"
        work.mkdir(parents=True)
        for job_id, native, psij_id, final in (("ended", "301", "1c6f0e1a-0000-4000-8000-000000000001", True),
                                               ("running", "302", "1c6f0e1a-0000-4000-8000-000000000002", False)):
            jobs.store.insert(job_id, None, "slurm", {"executable": "/bin/true"}, "/dev/null", "/dev/null", "s")
            jobs.store.set_psij_id(job_id, psij_id)
            jobs.store.set_native(job_id, native)
            jobs.watcher.advance(job_id, "COMPLETED" if final else "ACTIVE", 0, None, time.time())
            (work / (psij_id + ".job")).write_text("#!/bin/bash\n")
        jobs.store._db.execute("UPDATE jobs SET updated = updated - 2 * 86400")
        assert jobs.prune() == 1
        assert os.listdir(str(work)) == ["1c6f0e1a-0000-4000-8000-000000000002.job"]
    finally:
        jobs.close()


def test_a_relative_state_dir_gives_jobs_absolute_output_and_exit_paths(tmp_path, monkeypatch):
    """A relative ``state_dir`` setting made relative output paths, which a job with its
    own ``directory`` wrote there while status read them from the endpoint's directory."""
    monkeypatch.chdir(tmp_path)
    jobs = job_manager("rel")
    try:
        assert os.path.isabs(jobs.output_dir) and os.path.isabs(jobs.exit_path("x"))
        assert jobs.output_dir == str(tmp_path / "rel" / "output")
    finally:
        jobs.close()


def _running(pid: int) -> bool:
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_the_store_keeps_its_notification_stream_and_numbers_across_a_reopen(tmp_path):
    from radical_orbit import protocol
    from radical_orbit.plugins.psij.store import JobStore

    path = str(tmp_path / "jobs.sqlite")
    store = JobStore(path)
    store.insert("a", None, "local", {"executable": "/bin/true"}, "/x.out", "/x.err", "s")
    note = lambda record: ("job_status", {"state": record["state"]})    # noqa: E731
    assert store.advance("a", "QUEUED", None, None, 1.0, note)[1:3] == (1, "job_status")
    assert store.advance("a", "ACTIVE", None, None, 2.0, note)[1] == 2
    store.notes_acked(1)
    stream = store.stream
    store.close()
    store = JobStore(path)
    assert (store.stream, store.acked) == (stream, 1)
    assert store.pending_notes() == [(2, "job_status", {"state": "ACTIVE"})]
    assert store.advance("a", "COMPLETED", 0, None, 3.0, note)[1] == 3
    store.close()
    hello = dict(name="ep", resume=None, pid=1, endpoint={}, plugins={},
                 notes={"stream": "x", "acked": 0, "durable": {stream: -1}})
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(protocol.encode(protocol.HELLO, **hello), (protocol.HELLO,))
