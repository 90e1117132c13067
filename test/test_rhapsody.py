"""The rhapsody plugin end to end: a real bridge, a real endpoint ``-p rhapsody`` on the
concurrent backend, the SDK over real sockets. One bridge and endpoint for the module."""
import fractions
import os
import pickle
import subprocess
import sys
import threading
import time

import cloudpickle
import msgpack
import pytest

from orbit_procs import REPO, wait_for
from rhapsody_support import require_rhapsody, start_orbit, wait_for_file

from radical_orbit import BadRequest, BridgeClient, Conflict, Forbidden, NotFound, OrbitError
from radical_orbit.errors import PayloadTooLarge
from radical_orbit.plugins import rhapsody_client
from radical_orbit.plugins.rhapsody_client import (RhapsodyClient, TaskFailed, executable_task,
                                                   function_task)

# The endpoint cannot import this test module: its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(sys.modules["rhapsody_support"])

ENDPOINT = "tasks"


@pytest.fixture(scope="module")
def orbit(tmp_path_factory):
    require_rhapsody()
    o = start_orbit(str(tmp_path_factory.mktemp("rhapsody") / "home"), ENDPOINT)
    yield o
    o.stop()


@pytest.fixture(scope="module")
def bc(orbit):
    with BridgeClient(url=orbit.url, token=orbit.token) as client:
        yield client


@pytest.fixture(scope="module")
def rc(bc):
    with bc.get_endpoint_client(ENDPOINT).get_plugin("rhapsody") as client:
        yield client


def double(x):
    return 2 * x


def lookup(key):
    return {"a": 1}[key]


def test_get_plugin_gives_a_ready_session_on_the_concurrent_backend(rc):
    assert isinstance(rc, RhapsodyClient)
    assert rc.state == "ready" and rc.session_info["backend"] == "concurrent"
    assert rc.python_version.startswith("%d.%d." % sys.version_info[:2])
    stats = rc.statistics()
    assert stats["state"] == "ready" and stats["options"]["backend"] == "concurrent"


def test_ten_thousand_function_tasks_in_batches_complete_with_their_values(rc):
    uids = rc.submit_function_batch(double, [(i,) for i in range(10000)], batch_size=2500)
    assert len(set(uids)) == 10000
    results = rc.wait_tasks(uids, timeout=120)
    assert [r.uid for r in results] == uids
    assert all(r.state == "DONE" for r in results)
    assert [r.result() for r in results] == [2 * i for i in range(10000)]


def test_map_returns_results_in_order(rc):
    assert rc.map(double, range(300), timeout=60) == [2 * i for i in range(300)]


def test_return_values_keep_their_type(rc):
    values = [fractions.Fraction(1, 3), b"\x00bytes", {1, 2}, (1, "a"), None, {"k": [1.5]}]
    uids = rc.submit_tasks([function_task(lambda v: v, (v,)) for v in values])
    got = [r.result() for r in rc.wait_tasks(uids, timeout=60)]
    assert got == values
    assert [type(v) for v in got] == [type(v) for v in values]


class NoStr:
    """A value whose ``str`` raises (as some objects in a broken or lazy state do)."""

    def __str__(self):
        raise RuntimeError("no str for me")

    def __eq__(self, other):
        return isinstance(other, NoStr)


def test_a_value_whose_str_raises_is_returned_not_failed(rc):
    """rhapsody's concurrent backend made ``str(value)`` the task's stdout, on the event
    loop: a value whose ``__str__`` raised failed its task, and a large one held the loop."""
    uid, = rc.submit_tasks([function_task(NoStr)])
    result, = rc.wait_tasks([uid], timeout=60)
    assert result.state == "DONE", result.get("exception")
    assert isinstance(result.result(), NoStr)


def test_function_tasks_take_keyword_arguments(rc):
    def power(base, exponent=2):
        return base ** exponent
    uid, = rc.submit_tasks([function_task(power, (3,), {"exponent": 4}, name="power")])
    result, = rc.wait_tasks([uid], timeout=60)
    assert result.result() == 81 and result["name"] == "power"


def test_a_task_raising_keyerror_reaches_the_client_as_keyerror(rc):
    with pytest.raises(KeyError) as caught:
        rc.map(lookup, ["a", "missing-key"], timeout=60)
    assert caught.value.args == ("missing-key",)
    uid, = rc.submit_tasks([function_task(lookup, ("absent",))])
    result, = rc.wait_tasks([uid], timeout=60)
    assert result.state == "FAILED"
    error = result["exception"]
    assert error["type"] == "KeyError" and error["message"] == "absent"
    assert "lookup" in error["traceback"] and "KeyError" in error["traceback"]
    assert "absent" in getattr(pytest.raises(KeyError, result.result).value, "orbit_traceback")


def test_an_exception_that_does_not_pickle_comes_back_as_task_failed_with_its_text(rc):
    def fail():
        class Unpicklable(Exception):
            def __init__(self):
                super().__init__("cannot travel")
                self.lock = threading.Lock()
        raise Unpicklable()
    uid, = rc.submit_tasks([function_task(fail)])
    result, = rc.wait_tasks([uid], timeout=60)
    with pytest.raises(TaskFailed) as caught:
        result.result()
    assert caught.value.type_name.endswith("Unpicklable") and caught.value.message == "cannot travel"
    assert "fail" in caught.value.traceback


def test_an_executable_tasks_stdout_stderr_and_exit_code_arrive(rc):
    ok, bad = rc.submit_tasks([executable_task("/bin/echo", ["hello", "world"]),
                               executable_task("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"])])
    first, second = rc.wait_tasks([ok, bad], timeout=60)
    assert (first.state, first["exit_code"], first["stdout"]) == ("DONE", 0, "hello world\n")
    assert first.result() == "hello world\n"
    assert (second.state, second["exit_code"]) == ("FAILED", 3)
    assert (second["stdout"], second["stderr"]) == ("out\n", "err\n")
    with pytest.raises(TaskFailed, match="exited with 3: err"):
        second.result()
    detail = rc.get_task(bad)
    assert detail["stdout"] == "out\n" and detail["kind"] == "executable"


def test_executable_tasks_take_cwd_env_and_shell(rc, tmp_path):
    uid, = rc.submit_tasks([executable_task("echo $GREETING from $(pwd)", cwd=str(tmp_path), shell=True,
                                            env={"GREETING": "hi", "PATH": os.environ["PATH"]})])
    result, = rc.wait_tasks([uid], timeout=60)
    assert result["stdout"] == "hi from %s\n" % tmp_path


def test_a_mismatched_python_minor_version_is_refused(orbit, rc, monkeypatch):
    # What another Python's client sends: refused by the endpoint with a clear 400.
    body = {"python": "3.7", "template": {"function": cloudpickle.dumps(double)},
            "args_list": cloudpickle.dumps([(1,)])}
    resp = orbit.get("%s/rhapsody/submit/%s" % (ENDPOINT, rc.sid), "POST", data=msgpack.packb(body),
                     headers={"Content-Type": "application/msgpack"})
    assert resp.status_code == 400
    detail = resp.json()["detail"]
    assert "Python version mismatch" in detail and "3.7" in detail and "%d.%d" % sys.version_info[:2] in detail
    # The SDK refuses before it sends anything, naming both versions.
    before = rc.statistics()["total"]
    monkeypatch.setattr(rhapsody_client, "PYTHON", "3.7")
    with pytest.raises(BadRequest, match="Python version mismatch: this client runs Python 3.7"):
        rc.map(double, [1])
    with pytest.raises(BadRequest, match="Python version mismatch"):
        rc.submit_tasks([function_task(double, (1,))])
    assert rc.statistics()["total"] == before
    # Executable tasks do not depend on the client's Python.
    uid, = rc.submit_tasks([executable_task("/bin/true")])
    assert rc.wait_tasks([uid], timeout=60)[0].state == "DONE"


def test_pickled_tasks_without_a_python_version_are_refused(orbit, rc):
    body = {"tasks": [{"function": cloudpickle.dumps(double)}]}
    resp = orbit.get("%s/rhapsody/submit/%s" % (ENDPOINT, rc.sid), "POST", data=msgpack.packb(body),
                     headers={"Content-Type": "application/msgpack"})
    assert resp.status_code == 400 and "'python'" in resp.json()["detail"]


def test_json_bodies_work_for_executables_and_base64_pickles(orbit, rc):
    import base64
    base = "%s/rhapsody/" % ENDPOINT
    resp = orbit.get(base + "submit/" + rc.sid, "POST", json={
        "tasks": [{"executable": "/bin/echo", "arguments": ["json"], "uid": "json-exe"}]})
    assert resp.status_code == 200 and resp.json() == {"uids": ["json-exe"]}
    fn = base64.b64encode(cloudpickle.dumps(double)).decode()
    args = base64.b64encode(cloudpickle.dumps((21,))).decode()
    resp = orbit.get(base + "submit/" + rc.sid, "POST", json={
        "python": "%d.%d" % sys.version_info[:2], "tasks": [{"function": fn, "args": args, "uid": "json-fn"}]})
    assert resp.status_code == 200
    resp = orbit.get(base + "wait/" + rc.sid, "POST", json={"uids": ["json-exe", "json-fn"], "timeout": 10})
    done = {t["uid"]: t for t in resp.json()["done"]}
    assert done["json-exe"]["stdout"] == "json\n"
    assert done["json-fn"]["return_text"] == "42"
    assert cloudpickle.loads(base64.b64decode(done["json-fn"]["return_value"])) == 42


def test_json_template_items_carry_base64_arguments(orbit, rc):
    import base64
    fn = base64.b64encode(cloudpickle.dumps(double)).decode()
    items = [{"args": base64.b64encode(cloudpickle.dumps((i,))).decode()} for i in (4, 5)]
    resp = orbit.get("%s/rhapsody/submit/%s" % (ENDPOINT, rc.sid), "POST", json={
        "python": "%d.%d" % sys.version_info[:2], "template": {"function": fn}, "items": items})
    assert resp.status_code == 200, resp.text
    assert [r.result() for r in rc.wait_tasks(resp.json()["uids"], timeout=60)] == [8, 10]


def test_the_template_form_merges_items_over_the_template(orbit, rc):
    resp = orbit.get("%s/rhapsody/submit/%s" % (ENDPOINT, rc.sid), "POST", json={
        "template": {"executable": "/bin/echo", "name": "echoes"},
        "items": [{"arguments": ["one"]}, {"arguments": ["two"], "name": "second"}]})
    assert resp.status_code == 200
    results = rc.wait_tasks(resp.json()["uids"], timeout=60)
    assert [(r["stdout"], r["name"]) for r in results] == [("one\n", "echoes"), ("two\n", "second")]


@pytest.mark.parametrize("body, status, words", [
    ({"tasks": [{"executable": "/bin/true", "colour": "red"}]}, 400, "unknown fields ['colour']"),
    ({"tasks": [{"executable": "/bin/true", "function": b"x"}], "python": "%d.%d" % sys.version_info[:2]},
     400, "exactly one of"),
    ({"tasks": [{}]}, 400, "exactly one of"),
    ({"tasks": [{"executable": "/bin/true", "arguments": "-l"}]}, 400, "arguments must be a list"),
    ({"tasks": [{"executable": "/bin/true", "env": {"A": 1}}]}, 400, "env must map strings"),
    ({"tasks": [{"executable": "/bin/true", "uid": "bad uid"}]}, 400, "uid must match"),
    ({"tasks": [], "template": {}}, 400, "not both"),
    ({"tasks": []}, 400, "no tasks"),
    ({"template": {"executable": "/bin/true"}}, 400, "'items'"),
    ({"tasks": [{"function": b"not a pickle"}], "python": "%d.%d" % sys.version_info[:2]}, 400,
     "cannot be unpickled"),
    ({"tasks": [{"executable": "/bin/true"}], "extra": 1}, 400, "unknown submit fields"),
    # the plugin's own name for an args_list entry's arguments was open to clients: a 500
    ({"tasks": [{"function": cloudpickle.dumps(double), "_args": 5}], "python": "%d.%d" % sys.version_info[:2]},
     400, "unknown fields ['_args']"),
    ({"tasks": [{"executable": "/bin/true", "_args": ["x"]}]}, 400, "unknown fields ['_args']"),
    # msgpack maps may have bytes keys: sorting them with str keys for the message was a 500
    ({"tasks": [{b"x": 1, "y": 2, "executable": "/bin/true"}]}, 400, "map keys must be strings"),
    ({b"tasks": 1, "x": 2}, 400, "map keys must be strings"),
    # a template's own 'args' next to an args_list was dropped without a word
    ({"template": {"function": cloudpickle.dumps(double), "args": cloudpickle.dumps((1,))},
      "args_list": cloudpickle.dumps([(2,)]), "python": "%d.%d" % sys.version_info[:2]}, 400,
     "'args' goes in args_list"),
    # backend_kwargs carried cwd, env and shell past their checks
    ({"tasks": [{"executable": "/bin/true", "backend_kwargs": {"env": {"A": 1}}}]}, 400, "env must map strings"),
    ({"tasks": [{"executable": "/bin/true", "backend_kwargs": {"cwd": 5}}]}, 400, "cwd must be a non-empty"),
    ({"tasks": [{"executable": "/bin/true", "backend_kwargs": {"shell": "yes"}}]}, 400, "shell must be true"),
])
def test_bad_submissions_get_a_clear_error(orbit, rc, body, status, words):
    resp = orbit.get("%s/rhapsody/submit/%s" % (ENDPOINT, rc.sid), "POST", data=msgpack.packb(body),
                     headers={"Content-Type": "application/msgpack"})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] is True and words in resp.json()["detail"]


def test_msgpack_maps_with_bytes_keys_are_400_on_every_route(orbit, rc):
    base = "%s/rhapsody/" % ENDPOINT
    for path, body in (("register_session", {b"backend": 1, "x": 1}), ("wait/" + rc.sid, {b"uids": 1})):
        resp = orbit.get(base + path, "POST", data=msgpack.packb(body, use_bin_type=True),
                         headers={"Content-Type": "application/msgpack"})
        assert resp.status_code == 400 and "map keys must be strings" in resp.json()["detail"], resp.text


def test_garbage_bodies_are_400_not_crashes(orbit, rc):
    url = "%s/rhapsody/submit/%s" % (ENDPOINT, rc.sid)
    assert orbit.get(url, "POST", data=b"\xc1\xc1", headers={"Content-Type": "application/msgpack"}).status_code == 400
    assert orbit.get(url, "POST", data=b"{nope", headers={"Content-Type": "application/json"}).status_code == 400
    assert orbit.get(url, "POST", json={"tasks": [{"function": "***"}]}).status_code == 400
    deep = orbit.get(url, "POST", data='{"tasks": %s%s}' % ("[" * 100000, "]" * 100000),
                     headers={"Content-Type": "application/json"})    # was a 500: RecursionError
    assert deep.status_code == 400 and "not valid JSON" in deep.json()["detail"], deep.text
    assert rc.statistics()["state"] == "ready"


def test_task_uids_are_unique_per_session_and_unknown_ones_are_404(rc):
    rc.submit_tasks([executable_task("/bin/true", uid="mine.1")])
    with pytest.raises(Conflict, match="mine.1"):
        rc.submit_tasks([executable_task("/bin/true", uid="mine.1")])
    with pytest.raises(NotFound):
        rc.get_task("no-such-task")
    with pytest.raises(NotFound):
        rc.wait_tasks(["no-such-task"], timeout=5)


def test_list_tasks_get_task_and_statistics(rc):
    uids = rc.submit_tasks([executable_task("/bin/true", name="listed-%d" % i) for i in range(3)])
    rc.wait_tasks(uids, timeout=60)
    total = rc.statistics()["total"]
    listed = rc.list_tasks(offset=total - 3, limit=10)
    assert listed["offset"] == total - 3 and listed["total"] == total
    mine = [t for t in listed["tasks"] if t["uid"] in uids]
    assert [t["name"] for t in mine] == ["listed-0", "listed-1", "listed-2"]
    assert all(t["state"] == "DONE" and "stdout" not in t for t in mine)
    failed = rc.list_tasks(state="FAILED")
    assert failed["tasks"] and all(t["state"] == "FAILED" for t in failed["tasks"])
    assert rc.get_task(uids[0])["name"] == "listed-0"
    stats = rc.statistics()
    assert stats["total"] == listed["total"] and stats["counts"]["DONE"] >= 3
    assert stats["finished"] + stats["active"] == stats["total"]


def test_cancel_one_task_and_cancel_all(bc, tmp_path):
    gate = str(tmp_path / "gate")
    ec = bc.get_endpoint_client(ENDPOINT)
    with RhapsodyClient(ec, "rhapsody", workers=1) as rc:
        assert rc.statistics()["options"]["workers"] == 1
        uids = rc.submit_tasks([function_task(wait_for_file, (gate,)) for _ in range(4)])
        answer = rc.cancel_task(uids[1])
        assert answer == {"uid": uids[1], "cancelled": True, "state": "CANCELED"}
        assert rc.cancel_all_tasks() == 3
        results = rc.wait_tasks(uids, timeout=30)
        assert [r.state for r in results] == ["CANCELED"] * 4
        with pytest.raises(TaskFailed, match="cancelled"):
            results[0].result()
        assert rc.cancel_task(uids[0])["cancelled"] is False
        assert rc.statistics()["counts"] == {"CANCELED": 4}
        open(gate, "w").close()             # the one that was running ends


def test_task_status_notifications_are_batched(bc, rc):
    seen = []
    handle = bc.register_callback(lambda ep, plugin, topic, data: seen.append(data),
                                  endpoint_id=ENDPOINT, plugin_name="rhapsody", topic="task_status")
    try:
        wait_for(lambda: bc._events is not None and bc._events.connected.is_set(), 10, "the event stream")
        uids = rc.submit_function_batch(double, [(i,) for i in range(2000)])
        rc.wait_tasks(uids, timeout=60)

        def final_states():
            states = {}
            for note in [n for n in list(seen) if n["sid"] == rc.sid]:
                states.update(note["tasks"])
            return all(states.get(u) == "DONE" for u in uids) and states
        wait_for(final_states, 20, "DONE of every task in task_status notifications")
        notes = [n for n in seen if n["sid"] == rc.sid]
        assert len(notes) < 100, "%d notifications for 2000 tasks: not batched" % len(notes)
    finally:
        bc.unregister_callback(handle)


def test_wait_tasks_falls_back_to_polling_without_notifications(rc, monkeypatch):
    monkeypatch.setattr(rc, "_on_note", lambda *a: None)   # as if the event stream were down
    uid, = rc.submit_tasks([function_task(double, (5,))])
    rc._finished.discard(uid)
    result, = rc.wait_tasks([uid], timeout=30)
    assert result.result() == 10


def test_wait_tasks_times_out_with_a_count(bc, tmp_path):
    gate = str(tmp_path / "gate")
    with bc.get_endpoint_client(ENDPOINT).get_plugin("rhapsody") as rc:
        uid, = rc.submit_tasks([function_task(wait_for_file, (gate,))])
        started = time.monotonic()
        with pytest.raises(OrbitError, match="1 of 1 tasks not finished"):
            rc.wait_tasks([uid], timeout=0.5)
        assert time.monotonic() - started < 5
        open(gate, "w").close()
        assert rc.wait_tasks([uid], timeout=30)[0].result() == gate


def test_an_endpoint_can_forbid_pickled_tasks(bc):
    ec = bc.get_endpoint_client(ENDPOINT)
    ec.load_plugin("rhapsody", name="nopickle", config={"allow_pickle": False, "max_tasks_per_call": 5})
    try:
        with ec.get_plugin("nopickle") as rc:
            assert rc.session_info["allow_pickle"] is False
            with pytest.raises(Forbidden, match="allow_pickle"):
                rc.map(double, [1])
            uids = rc.submit_tasks([executable_task("/bin/true")])
            assert rc.wait_tasks(uids, timeout=60)[0].state == "DONE"
            with pytest.raises(PayloadTooLarge, match="at most 5"):
                rc.submit_tasks([executable_task("/bin/true")] * 6, batch_size=6)
    finally:
        ec.unload_plugin("nopickle")


class Hostile:
    """A pickle that runs code when loaded: it makes the directory ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_hostile_pickle_is_never_loaded_where_pickles_are_forbidden(orbit, bc, tmp_path):
    """``args_list`` was unpickled before the allow_pickle check (and before the Python
    version check): a hostile client ran code on an endpoint that forbids pickles."""
    ec = bc.get_endpoint_client(ENDPOINT)
    ec.load_plugin("rhapsody", name="nopickle2", config={"allow_pickle": False})
    try:
        with ec.get_plugin("nopickle2") as rc:
            for i, body in enumerate([
                    {"template": {"function": b"x"}, "args_list": None},
                    {"template": {"executable": "/bin/true"}, "args_list": None},
                    {"tasks": [{"executable": "/bin/true"}], "args_list": None},
                    {"template": {"executable": "/bin/true"}, "items": [{}], "args_list": None}]):
                marker = str(tmp_path / ("ran-%d" % i))
                body["args_list"] = pickle.dumps(Hostile(marker))
                resp = orbit.get("%s/nopickle2/submit/%s" % (ENDPOINT, rc.sid), "POST",
                                 data=msgpack.packb(body, use_bin_type=True),
                                 headers={"Content-Type": "application/msgpack"})
                assert resp.status_code in (400, 403), resp.text
                assert not os.path.exists(marker), "the endpoint ran the client's pickle (%s)" % body
    finally:
        ec.unload_plugin("nopickle2")


def test_a_bad_plugin_setting_refuses_the_load(bc):
    ec = bc.get_endpoint_client(ENDPOINT)
    with pytest.raises(OrbitError, match="unknown settings"):
        ec.load_plugin("rhapsody", name="badconfig", config={"colour": "red"})


def test_register_answers_at_once_then_409_until_ready_and_409_with_the_reason_once_failed(bc, orbit):
    """A Dask scheduler that does not answer: the session starts in the background, its
    routes answer 409 meanwhile, and a session_status notification reports the failure."""
    ec = bc.get_endpoint_client(ENDPOINT)
    ec.load_plugin("rhapsody", name="slowstart", config={"init_timeout": 3})
    statuses = []
    handle = bc.register_callback(lambda ep, plugin, topic, data: statuses.append(data),
                                  endpoint_id=ENDPOINT, plugin_name="slowstart", topic="session_status")
    try:
        wait_for(lambda: bc._events.connected.is_set(), 10, "the event stream")
        started = time.monotonic()
        rc = RhapsodyClient(ec, "slowstart", register=False)
        info = rc.post("register_session", json={"backend": "dask", "dask_scheduler": "tcp://127.0.0.1:9"})
        assert time.monotonic() - started < 2
        assert info["state"] == "initializing" and info["backend"] == "dask"
        rc.sid = info["sid"]
        with pytest.raises(Conflict, match="still starting"):
            rc.submit_tasks([executable_task("/bin/true")])
        assert rc.statistics()["state"] == "initializing"
        wait_for(lambda: [s for s in statuses if s["sid"] == rc.sid], 30, "the session_status notification")
        status = [s for s in statuses if s["sid"] == rc.sid][0]
        assert status["state"] == "failed" and "backend dask failed to start" in status["error"]
        assert "127.0.0.1:9" in status["error"]
        with pytest.raises(Conflict, match="cannot run tasks: backend dask failed to start"):
            rc.submit_tasks([executable_task("/bin/true")])
        assert rc.statistics()["error"] == status["error"]
        rc.close()
    finally:
        bc.unregister_callback(handle)
        ec.unload_plugin("slowstart")


def test_unknown_backends_and_options_are_400(bc):
    ec = bc.get_endpoint_client(ENDPOINT)
    with pytest.raises(BadRequest, match="not available here"):
        RhapsodyClient(ec, "rhapsody", backend="no-such-backend")
    with pytest.raises(BadRequest, match="needs a scheduler address"):
        RhapsodyClient(ec, "rhapsody", backend="dask")
    with pytest.raises(BadRequest, match="unknown session options"):
        RhapsodyClient(ec, "rhapsody", colour="red")
    backends = ec.request("GET", "rhapsody/backends")
    assert backends["default"] == "concurrent" and {"concurrent", "dask", "noop"} <= set(backends["available"])


def test_a_session_that_cannot_start_leaves_nothing_behind(bc):
    """A RhapsodyClient whose session was refused, or whose backend failed to start,
    raised with no object to close: its notification callback stayed registered on the
    BridgeClient and the failed session open on the endpoint for an hour."""
    ec = bc.get_endpoint_client(ENDPOINT)
    ec.load_plugin("rhapsody", name="nostart", config={"init_timeout": 1})
    try:
        callbacks = len(bc._events._callbacks) if bc._events else 0
        with pytest.raises(BadRequest):
            RhapsodyClient(ec, "nostart", backend="no-such-backend")
        with pytest.raises(OrbitError, match="backend dask failed to start"):
            RhapsodyClient(ec, "nostart", backend="dask", dask_scheduler="tcp://127.0.0.1:9")
        assert len(bc._events._callbacks) == callbacks
        assert ec.request("GET", "nostart/list_sessions")["sessions"] == []
    finally:
        ec.unload_plugin("nostart")


def test_the_noop_backend_is_offered_too(bc):
    with RhapsodyClient(bc.get_endpoint_client(ENDPOINT), "rhapsody", backend="noop") as rc:
        uids = rc.submit_tasks([function_task(double, (1,))] * 5)
        assert [r.state for r in rc.wait_tasks(uids, timeout=30)] == ["DONE"] * 5


def test_unregistering_closes_the_session(bc):
    ec = bc.get_endpoint_client(ENDPOINT)
    rc = ec.get_plugin("rhapsody")
    sid = rc.sid
    rc.close()
    with pytest.raises(OrbitError) as caught:
        ec.request("GET", "rhapsody/statistics/%s" % sid)
    assert caught.value.status_code == 410


def test_the_example_runs_against_the_embedded_default(orbit):
    out = subprocess.run([sys.executable, os.path.join(REPO, "examples", "example_rhapsody.py")],
                         env=orbit.env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1000 squares in" in out.stdout and "sum 332833500" in out.stdout
    assert "exit code 3, stdout 'hello from" in out.stdout
    assert "raised KeyError('b')" in out.stdout


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_cancelling_an_executable_kills_its_processes(rc, tmp_path):
    pidfile = tmp_path / "pid"
    uid, = rc.submit_tasks([executable_task("/bin/sh", ["-c", "sleep 60 & echo $! > %s; wait" % pidfile])])
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "the task's child to start")
    child = int(pidfile.read_text())
    assert rc.cancel_task(uid)["cancelled"] is True
    wait_for(lambda: not _alive(child), 10, "the task's whole process group to be killed")
    assert rc.wait_tasks([uid], timeout=30)[0].state == "CANCELED"


def test_an_endpoint_with_tasks_running_stops_at_once_and_leaves_no_process(orbit, tmp_path):
    gate, pidfile = str(tmp_path / "gate"), tmp_path / "pid"
    proc = orbit.start_endpoint("stopper", "-p", "rhapsody")
    with BridgeClient(url=orbit.url, token=orbit.token) as bc:
        rc = bc.get_endpoint_client("stopper").get_plugin("rhapsody")
        rc.submit_tasks([function_task(wait_for_file, (gate, 120)),
                         executable_task("/bin/sh", ["-c", "sleep 120 & echo $! > %s; wait" % pidfile])])
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "the executable's child")
    child = int(pidfile.read_text())
    started = time.monotonic()
    assert proc.stop(timeout=20) == 0
    assert time.monotonic() - started < 10, "the endpoint waited for its tasks"
    wait_for(lambda: not _alive(child), 10, "the executable's process to be gone")
    open(gate, "w").close()


def test_zz_the_endpoint_logged_no_unexpected_errors(orbit):
    log = orbit.endpoints[ENDPOINT].output()
    assert "never retrieved" not in log and "rhapsody event loop:" not in log
    assert "internal error" not in log and "ERROR   radical_orbit" not in log


def test_a_task_uid_with_a_trailing_newline_is_refused():
    """``$`` matched before a final newline: "t1\\n" passed as a uid, and a later
    /task/{sid}/t1 could never name it."""
    from radical_orbit.errors import BadRequest
    from radical_orbit.plugins.rhapsody import wire
    python = "%d.%d" % sys.version_info[:2]
    ok = wire.parse_submit({"tasks": [{"executable": "/bin/true", "uid": "t1"}]}, 10, False, python)
    assert len(ok) == 1
    with pytest.raises(BadRequest, match="uid must match"):
        wire.parse_submit({"tasks": [{"executable": "/bin/true", "uid": "t1\n"}]}, 10, False, python)


def test_executables_run_at_most_workers_at_a_time(bc, tmp_path):
    """rhapsody's concurrent backend starts every executable task at once: a 100k-task
    submit forked until the host ran out of processes and ~90% failed. ORBIT's backend runs
    at most ``workers`` of them at a time, the rest wait their turn."""
    running = tmp_path / "running"
    running.mkdir()
    script = 'mkdir %s/$$; ls %s | wc -l; sleep 0.2; rmdir %s/$$' % ((running,) * 3)
    with RhapsodyClient(bc.get_endpoint_client(ENDPOINT), "rhapsody", workers=2) as rc2:
        uids = rc2.submit_tasks([executable_task("/bin/sh", ["-c", script]) for _ in range(12)])
        results = rc2.wait_tasks(uids, timeout=60)
    assert all(r.state == "DONE" for r in results), [r.state for r in results]
    assert max(int(r["stdout"].strip()) for r in results) <= 2


def test_an_executables_output_is_kept_up_to_a_cap(tmp_path):
    """A task's stdout and stderr were read whole into the endpoint's memory: a task that
    prints gigabytes took the endpoint down. Each is kept up to MAX_OUTPUT bytes."""
    import asyncio
    from radical_orbit.plugins.rhapsody import backends, settings
    from radical_orbit.plugins.rhapsody.pool import DaemonThreadPool
    backend = backends.concurrent_backend_class()(DaemonThreadPool(1, "cap-test"))
    big = settings.MAX_OUTPUT * 3
    task = {"uid": "t1", "executable": "/bin/sh",
            "arguments": ["-c", "yes a | tr -d '\\n' | head -c %d; head -c %d /dev/zero >&2; exit 4" % (big, big)]}
    done, state = asyncio.run(backend._execute_command(task))
    assert state == "FAILED" and done["exit_code"] == 4
    assert done["stdout"].startswith("a" * 1000)
    assert settings.MAX_OUTPUT <= len(done["stdout"]) < settings.MAX_OUTPUT + 200
    assert "more bytes not kept" in done["stdout"] and "more bytes not kept" in done["stderr"]


def test_a_wait_answer_is_bounded_and_the_sdk_fetches_the_rest(orbit, bc):
    """``wait`` put every finished record in one answer: 5,000 tasks with 4 MiB of output
    each made one 40 GB answer on the endpoint, the bridge and the client. An answer holds
    at most ``max_answer_bytes`` (at least one record); the rest come with the next call."""
    ec = bc.get_endpoint_client(ENDPOINT)
    ec.load_plugin("rhapsody", name="smallanswer", config={"max_answer_bytes": 1000000})
    try:
        with ec.get_plugin("smallanswer") as rc:
            uids = rc.submit_tasks([executable_task("/bin/sh", ["-c", "head -c 400000 /dev/zero | tr '\\0' %s" % c])
                                    for c in "abcdef"])
            body = msgpack.packb({"uids": uids, "timeout": 30})
            resp = orbit.get("%s/smallanswer/wait/%s" % (ENDPOINT, rc.sid), "POST", data=body, timeout=60,
                             headers={"Content-Type": "application/msgpack", "Accept": "application/msgpack"})
            answer = msgpack.unpackb(resp.content)
            assert 1 <= len(answer["done"]) <= 3 and answer["held"] == 6 - len(answer["done"])
            assert len(resp.content) < 1300000 and sorted(answer["pending"]) == sorted(
                set(uids) - {r["uid"] for r in answer["done"]})
            results = rc.wait_tasks(uids, timeout=60)
            assert [r["stdout"] for r in results] == [c * 400000 for c in "abcdef"]
    finally:
        ec.unload_plugin("smallanswer")


def test_a_session_with_tasks_running_is_not_idle(tmp_path):
    """A workflow that submits long tasks and comes back later found them killed: a session
    was closed after session_ttl without a call although its tasks still ran. The idle
    time of a session counts from when its last task ended."""
    import io
    from orbit_procs import ManualClock
    from radical_orbit.plugin import PluginContext, Request
    from radical_orbit.plugins.rhapsody import RhapsodyPlugin
    from radical_orbit.plugins.rhapsody.wire import parse_submit
    require_rhapsody()
    plugin = RhapsodyPlugin("rh", PluginContext("ep", "standalone", lambda *a: None,
                                                config={"work_dir": str(tmp_path)}))
    plugin.clock = clock = ManualClock()
    gate = str(tmp_path / "gate")
    try:
        sid = plugin.register_session(Request("POST", "register_session", stream=io.BytesIO(b"")))["sid"]
        session = plugin.get_session(sid)
        wait_for(lambda: session.state == "ready", 30, "the session's backend")
        python = "%d.%d" % sys.version_info[:2]
        uid, = session.submit(parse_submit({"python": python, "tasks": [{
            "function": cloudpickle.dumps(wait_for_file), "args": cloudpickle.dumps((gate, 60))}]},
            10, True, python))
        clock.advance(plugin.session_ttl + 1)
        assert plugin.expire_sessions() == 0 and session.state == "ready"
        open(gate, "w").close()
        wait_for(lambda: session.wait([uid], 0)[0], 30, "the task to end")
        assert plugin.expire_sessions() == 0                 # idle from now on
        clock.advance(plugin.session_ttl + 1)
        assert plugin.expire_sessions() == 1 and session.state == "closed"
    finally:
        open(gate, "w").close()
        plugin.stop()


def test_max_records_forgets_finished_tasks_behind_a_running_one(bc, tmp_path):
    """The oldest records were forgotten only while the oldest was finished: one long task
    at the front kept every later record, and a session's memory grew without bound."""
    gate = str(tmp_path / "gate")
    ec = bc.get_endpoint_client(ENDPOINT)
    ec.load_plugin("rhapsody", name="fewrecords", config={"max_records": 5})
    try:
        with ec.get_plugin("fewrecords") as rc:
            first, = rc.submit_tasks([function_task(wait_for_file, (gate, 60))])
            quick = rc.submit_tasks([executable_task("/bin/true") for _ in range(10)])
            rc.wait_tasks(quick, timeout=60)
            last = rc.submit_tasks([executable_task("/bin/true")])
            stats = rc.statistics()
            assert stats["total"] == 5 and stats["forgotten"] == 7, stats
            kept = [t["uid"] for t in rc.list_tasks()["tasks"]]
            assert kept[0] == first and kept[-1:] == last and set(kept[1:4]) <= set(quick)
            open(gate, "w").close()
            assert rc.wait_tasks([first], timeout=60)[0].result() == gate
    finally:
        open(gate, "w").close()
        ec.unload_plugin("fewrecords")


def undecodable():
    raise ValueError("no file " + os.fsdecode(b"run-\xff.dat"))      # a name that is not UTF-8


def test_text_with_undecodable_bytes_reaches_msgpack_clients(orbit, rc):
    """A surrogate-escaped file name in an exception message, or a task name sent in JSON
    with a lone surrogate, could not be packed: every msgpack ``wait`` (the SDK's) was a
    400 UnicodeEncodeError, and ``wait_tasks`` could never fetch those tasks."""
    uid, = rc.submit_tasks([function_task(undecodable)])
    resp = orbit.get("%s/rhapsody/submit/%s" % (ENDPOINT, rc.sid), "POST",
                     data='{"tasks": [{"executable": "/bin/true", "name": "run-\\udcff"}]}',
                     headers={"Content-Type": "application/json"})
    named, = resp.json()["uids"]
    failed, done = rc.wait_tasks([uid, named], timeout=60)
    assert failed["exception"]["message"] == "no file run-\\udcff.dat"
    assert done.state == "DONE" and done["name"] == "run-\\udcff"
    assert rc.get_task(named)["name"] == "run-\\udcff"


def test_wait_with_a_nan_timeout_is_refused(orbit, rc):
    """Python's JSON reader takes NaN, which passed ``timeout < 0`` and made wait answer at once."""
    r = orbit.get("%s/rhapsody/wait/%s" % (ENDPOINT, rc.sid), "POST", data='{"timeout": NaN}',
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "'timeout' must be" in r.json()["detail"], r.text
