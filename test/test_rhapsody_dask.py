"""The rhapsody plugin's dask backend against a real ``dask.distributed`` scheduler and two
workers, each a process of its own started here (loopback only) and stopped after."""
import json
import os
import sys

import cloudpickle
import pytest

from orbit_procs import Proc, wait_for
from rhapsody_support import require_rhapsody, start_orbit

from radical_orbit import BadRequest, BridgeClient
from radical_orbit.plugins import rhapsody_client
from radical_orbit.plugins.rhapsody_client import RhapsodyClient, executable_task, function_task

cloudpickle.register_pickle_by_value(sys.modules[__name__])

ENDPOINT = "dasktasks"


def dask_available() -> None:
    require_rhapsody()
    pytest.importorskip("distributed", reason="dask.distributed is not installed: dask tests skipped")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two workers on 127.0.0.1; yields the scheduler's address."""
    dask_available()
    home = tmp_path_factory.mktemp("dask")
    scheduler_file = str(home / "scheduler.json")
    env = dict(os.environ, PYTHONUNBUFFERED="1", DASK_DISTRIBUTED__WORKER__DAEMON="False")
    procs = [Proc(["-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                   "--no-dashboard", "--scheduler-file", scheduler_file], env, str(home / "scheduler.out"))]
    try:
        address = wait_for(lambda: _address(scheduler_file, procs[0]), 60, "the dask scheduler")
        for i in range(2):
            procs.append(Proc(["-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1",
                               "--nthreads", "2", "--no-dashboard", "--no-nanny", "--name", "w%d" % i,
                               "--local-directory", str(home / ("w%d" % i))],
                              env, str(home / ("worker%d.out" % i))))
        wait_for(lambda: _workers(procs[0]) >= 2 or _dead(procs), 60, "two dask workers")
        assert not _dead(procs), "a dask process exited:\n" + "\n".join(p.output()[-2000:] for p in procs)
        yield address
    finally:
        for proc in reversed(procs):
            proc.stop()


def _address(path: str, proc: Proc):
    if not proc.alive():
        raise AssertionError("the dask scheduler exited:\n" + proc.output())
    try:
        with open(path) as f:
            return json.load(f)["address"]
    except (OSError, ValueError, KeyError):
        return None


def _workers(scheduler: Proc) -> int:
    return scheduler.output().count("Register worker")


def _dead(procs) -> bool:
    return any(not p.alive() for p in procs)


@pytest.fixture(scope="module")
def orbit(tmp_path_factory, cluster):
    o = start_orbit(str(tmp_path_factory.mktemp("rhapsody-dask") / "home"), ENDPOINT,
                    RADICAL_ORBIT_RHAPSODY_BACKEND="dask", RADICAL_ORBIT_RHAPSODY_DASK_SCHEDULER=cluster)
    yield o
    o.stop()


@pytest.fixture(scope="module")
def rc(orbit):
    with BridgeClient(url=orbit.url, token=orbit.token) as bc:
        with bc.get_endpoint_client(ENDPOINT).get_plugin("rhapsody") as client:
            yield client


def where(x):
    import socket
    import threading
    return x * x, threading.current_thread().name, os.getpid(), socket.gethostname()


def lookup(key):
    return {"a": 1}[key]


def test_the_environment_picks_the_dask_backend_and_its_scheduler(rc, cluster):
    stats = rc.statistics()
    assert rc.session_info["backend"] == "dask"
    assert stats["options"] == {"backend": "dask", "dask_scheduler": cluster}


def test_ten_thousand_function_tasks_run_on_the_dask_workers(rc, orbit):
    uids = rc.submit_function_batch(where, [(i,) for i in range(10000)], batch_size=2500)
    results = rc.wait_tasks(uids, timeout=300)
    values = [r.result() for r in results]
    assert [v[0] for v in values] == [i * i for i in range(10000)]
    pids = {v[2] for v in values}
    assert orbit.endpoints[ENDPOINT].pid not in pids
    assert len(pids) == 2, "tasks ran in %d processes, not on the two workers" % len(pids)


def test_a_keyerror_on_a_dask_worker_reaches_the_client_as_keyerror(rc):
    with pytest.raises(KeyError) as caught:
        rc.map(lookup, ["a", "not-there"], timeout=60)
    assert caught.value.args == ("not-there",)


def test_an_executable_on_a_dask_worker_brings_stdout_and_exit_code(rc):
    uid, = rc.submit_tasks([executable_task("/bin/sh", ["-c", "echo from-dask; exit 4"])])
    result, = rc.wait_tasks([uid], timeout=60)
    assert (result.state, result["exit_code"], result["stdout"]) == ("FAILED", 4, "from-dask\n")


def test_binary_output_of_an_executable_on_dask_is_text_not_a_failure(rc):
    """rhapsody's dask backend decoded an executable's output strictly: one byte that is not
    UTF-8 failed the task with UnicodeDecodeError. It reads like the concurrent backend's."""
    uid, = rc.submit_tasks([executable_task("/bin/sh", ["-c", "printf 'ok \\377\\376 end'; printf '\\377' >&2"])])
    result, = rc.wait_tasks([uid], timeout=60)
    assert (result.state, result["exit_code"]) == ("DONE", 0), result.get("exception")
    assert result["stdout"] == "ok \ufffd\ufffd end" and result["stderr"] == "\ufffd"


def test_a_mismatched_python_minor_is_refused_on_dask_too(rc, monkeypatch):
    monkeypatch.setattr(rhapsody_client, "PYTHON", "3.6")
    with pytest.raises(BadRequest, match="Python version mismatch"):
        rc.submit_tasks([function_task(lookup, ("a",))])


def test_two_sessions_on_one_scheduler_keep_their_tasks_apart(orbit, cluster):
    with BridgeClient(url=orbit.url, token=orbit.token) as bc:
        ec = bc.get_endpoint_client(ENDPOINT)
        with RhapsodyClient(ec, "rhapsody", backend="dask", dask_scheduler=cluster) as one, \
                RhapsodyClient(ec, "rhapsody", backend="dask", dask_scheduler=cluster) as two:
            a = one.submit_tasks([function_task(lookup, ("a",), uid="same")])
            b = two.submit_tasks([function_task(where, (3,), uid="same")])
            assert one.wait_tasks(a, timeout=60)[0].result() == 1
            assert two.wait_tasks(b, timeout=60)[0].result()[0] == 9
