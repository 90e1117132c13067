"""psij's submit_tunneled and tunnel_status through the bridge: a child endpoint as a
SLURM or local job, with no tunnel, a forward or a reverse one; failures reported; the
token never on any command line and no secret file left behind."""
import json
import os

import psutil
import pytest

import slurm_cluster
from launch_util import CmdlineScan, endpoint_names, files_holding, job_state, reap_children
from orbit_procs import Orbit, wait_for
from sshd import SSHServer, require_sshd

PARENT = "login1"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One bridge, one parent endpoint with psij, an sshd the parent and children trust,
    and a scan of every command line from before the bridge starts to after it stops."""
    pytest.importorskip("psij")
    base = tmp_path_factory.mktemp("launch")
    o = Orbit(str(base / "home"), tls=True)
    scan = CmdlineScan([o.token]).__enter__()
    sshd = None
    try:
        kh = str(base / "known_hosts")
        open(kh, "w").close()
        try:
            require_sshd()
            sshd = SSHServer(str(base / "sshd")).start()
            sshd.trust_in(kh)
        except pytest.skip.Exception:
            sshd = None
        o.start_bridge()
        o.start_endpoint(PARENT, "-p", "psij,sysinfo", "--plugin-config",
                         'psij={"poll_interval": 0.5}', RADICAL_ORBIT_KNOWN_HOSTS=kh)
        sid = o.get("%s/psij/register_session" % PARENT, "POST").json()["sid"]
        yield {"orbit": o, "sid": sid, "sshd": sshd, "scan": scan, "known_hosts": kh}
    finally:
        cancel_all(o)
        reap_children([p.pid for p in [o.bridge] + list(o.endpoints.values()) if p is not None])
        o.stop()
        if sshd is not None:
            sshd.stop()
        scan.__exit__(None, None, None)
    assert scan.scans > 10 and not scan.hits, scan.hits


def cancel_all(o):
    """Launched children are jobs of their own and outlive the parent: cancel them."""
    try:
        sid = o.get("%s/psij/register_session" % PARENT, "POST").json()["sid"]
        for job in o.get("%s/psij/list_jobs/%s" % (PARENT, sid)).json()["jobs"]:
            if job["state"] not in ("COMPLETED", "FAILED", "CANCELED"):
                o.get("%s/psij/cancel/%s/%s" % (PARENT, sid, job["job_id"]), "POST")
    except Exception as exc:
        print("cancelling the launched jobs failed: %s" % exc)


def submit(world, **body):
    r = world["orbit"].get("%s/psij/submit_tunneled/%s" % (PARENT, world["sid"]), "POST",
                           data=json.dumps(body), timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def status(world, name):
    return world["orbit"].get("%s/psij/tunnel_status/%s" % (PARENT, name)).json()


def wait_state(world, name, states, timeout=60):
    return wait_for(lambda: (lambda s: s if s["state"] in states else None)(status(world, name)),
                    timeout, "launch %s to reach %s" % (name, states), interval=0.2)


def cancel(world, job_id):
    return world["orbit"].get("%s/psij/cancel/%s/%s" % (PARENT, world["sid"], job_id), "POST").json()


def dials(pid, port):
    proc = psutil.Process(pid)
    conns = getattr(proc, "net_connections", proc.connections)("tcp")
    return any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED for c in conns)


def child_pid(world, name):
    """The child endpoint among the parent's descendants (a local job)."""
    parent = psutil.Process(world["orbit"].endpoints[PARENT].pid)
    for proc in parent.children(recursive=True):
        cmd = proc.cmdline()
        if "radical_orbit.endpoint" in cmd and name in cmd:
            return proc.pid
    return None


def test_slurm_child_registers_as_compute_and_cancel_removes_it(world):
    slurm_cluster.require_slurm()
    o = world["orbit"]
    launch = submit(world, executor="slurm", plugins="sysinfo", tunnel="none",
                    attributes={"queue_name": "debug", "duration": 300})
    name = launch["name"]
    assert name == "%s.1" % PARENT and launch["state"] in ("pending", "starting")
    connected = wait_state(world, name, ("connected", "failed"), 60)
    assert connected["state"] == "connected" and connected["child"] == name, connected
    assert name in endpoint_names(o)
    role = o.get("%s/sysinfo/host_role" % name).json()
    assert role["role"] == "compute" and role["in_job"]
    launch_dirs = os.listdir(os.path.join(o.home, "launch"))
    assert not any(os.path.exists(os.path.join(o.home, "launch", d, "handoff.json")) for d in launch_dirs)
    cancel(world, launch["job_id"])
    wait_for(lambda: name not in (endpoint_names(o) or [name]), 30, "the child to leave the tree")
    ended = wait_state(world, name, ("ended", "failed"), 30)
    assert ended["state"] == "ended", ended
    wait_for(lambda: not os.listdir(os.path.join(o.home, "launch")), 10, "the launch dir to go")


def test_a_child_that_never_registers_is_failed_and_its_job_cancelled(world):
    slurm_cluster.require_slurm()
    launch = submit(world, executor="slurm", name="never1", plugins="sysinfo", setup="sleep 600",
                    timeout=3, attributes={"duration": 300})
    failed = wait_state(world, "never1", ("failed", "connected", "ended"), 60)
    assert failed["state"] == "failed" and "did not register within 3 s" in failed["reason"], failed
    wait_for(lambda: job_state(launch["native_id"]) in ("CANCELLED", ""), 30, "the job cancelled")
    assert status(world, "never1")["state"] == "failed"


def test_a_failing_setup_is_reported_with_the_wrappers_line(world):
    submit(world, executor="local", name="badsetup", plugins="sysinfo", setup="exit 3")
    failed = wait_state(world, "badsetup", ("failed", "connected", "ended"), 30)
    assert failed["state"] == "failed", failed
    assert "the setup command failed (exit 3)" in failed["reason"], failed


def test_bad_bodies_are_refused_with_400(world):
    o = world["orbit"]
    for body, words in (({"tunnel": "sideways"}, "tunnel must be one of"),
                        ({"name": "bad name"}, "invalid child endpoint name"),
                        ({"timeout": -1}, "timeout must be"),
                        ({"tunnel": "forward", "tunnel_via": "a@b:99999"}, "bad ssh host"),
                        ({"colour": "red"}, "not colour"),
                        ({"log_level": "LOUD"}, "log_level must be one of"),
                        # option-like values would reach the child's argv as options
                        ({"plugins": "--help"}, "plugins must be"),
                        ({"plugins": "sysinfo,-x"}, "plugins must be"),
                        ({"tunnel": "forward", "tunnel_via": "h", "tunnel_identity": "-oProxyCommand=x"},
                         "tunnel_identity must be"),
                        ({"tunnel": "forward", "tunnel_via": "-v"}, "bad ssh host"),
                        ({"tunnel": "reverse", "tunnel_node": "-oBatchMode"}, "bad ssh host")):
        r = o.get("%s/psij/submit_tunneled/%s" % (PARENT, world["sid"]), "POST", data=json.dumps(body))
        assert r.status_code == 400 and words in r.json()["detail"], (body, r.text)
    r = o.get("%s/psij/tunnel_status/nosuch" % PARENT)
    assert r.status_code == 404
    r = o.get("%s/psij/submit_tunneled/%s" % (PARENT, world["sid"]), "POST", data=json.dumps({"name": PARENT}))
    assert r.status_code == 409 and "already connected" in r.json()["detail"], r.text


def test_launches_beyond_max_launches_are_503_with_retry_after(world):
    """Nothing capped submit_tunneled: each call is a batch job, a handoff dir and perhaps a
    tunnel. With ``max_launches`` 1 a second launch while the first is not ended is a 503
    with Retry-After, and once it ended the next one is accepted."""
    o = world["orbit"]
    o.start_endpoint("capped", "-p", "psij", "--plugin-config", 'psij={"poll_interval": 0.5, "max_launches": 1}')
    sid = o.get("capped/psij/register_session", "POST").json()["sid"]
    url = "capped/psij/submit_tunneled/%s" % sid
    body = {"executor": "local", "plugins": "sysinfo", "setup": "sleep 600", "timeout": 60}
    try:
        first = o.get(url, "POST", data=json.dumps(body), timeout=60)
        assert first.status_code == 200, first.text
        again = o.get(url, "POST", data=json.dumps(body), timeout=60)
        assert again.status_code == 503 and "max_launches" in again.json()["detail"], again.text
        assert int(again.headers["Retry-After"]) >= 1
        o.get("capped/psij/cancel/%s/%s" % (sid, first.json()["job_id"]), "POST")
        name = first.json()["name"]
        wait_for(lambda: o.get("capped/psij/tunnel_status/%s" % name).json()["state"] in ("ended", "failed"),
                 30, "the first launch to end")
        body["setup"] = "exit 3"
        third = o.get(url, "POST", data=json.dumps(body), timeout=60)
        assert third.status_code == 200, third.text
        wait_for(lambda: o.get("capped/psij/tunnel_status/%s" % third.json()["name"]).json()["state"]
                 in ("ended", "failed"), 30, "the third launch to end")
    finally:
        o.endpoints.pop("capped").stop()


def test_forward_tunnel_launch_carries_the_child_link(world):
    sshd = world["sshd"] or pytest.skip("no sshd here")
    launch = submit(world, executor="local", name="fwdkid", plugins="sysinfo", tunnel="forward",
                    tunnel_via=sshd.via, tunnel_identity=sshd.user_key)
    assert wait_state(world, "fwdkid", ("connected", "failed"), 60)["state"] == "connected"
    pid = child_pid(world, "fwdkid")
    ssh = [c for c in psutil.Process(pid).children() if c.name() == "ssh"][0]
    port = int(ssh.cmdline()[ssh.cmdline().index("-L") + 1].split(":")[1])
    assert dials(pid, port)
    cancel(world, launch["job_id"])
    assert wait_state(world, "fwdkid", ("ended", "failed"), 30)["state"] == "ended"


def test_reverse_tunnel_launch_carries_the_child_link(world):
    sshd = world["sshd"] or pytest.skip("no sshd here")
    launch = submit(world, executor="local", name="revkid", plugins="sysinfo", tunnel="reverse",
                    tunnel_node=sshd.via, tunnel_identity=sshd.user_key)
    connected = wait_state(world, "revkid", ("connected", "failed"), 60)
    assert connected["state"] == "connected", connected
    tunnel = wait_for(lambda: (lambda t: t if t["state"] == "up" else None)(status(world, "revkid")["tunnel_status"]),
                      10, "the tunnel to count as up")
    cmd = psutil.Process(tunnel["pid"]).cmdline()
    port = int(cmd[cmd.index("-R") + 1].split(":")[1])
    assert dials(child_pid(world, "revkid"), port)
    cancel(world, launch["job_id"])
    assert wait_state(world, "revkid", ("ended", "failed"), 30)["state"] == "ended"
    wait_for(lambda: status(world, "revkid")["tunnel_status"]["pid"] is None, 15, "the ssh -R to stop")


def test_reverse_tunnel_to_an_unknown_host_key_fails_the_launch(world, tmp_path):
    world["sshd"] or pytest.skip("no sshd here")
    stranger = SSHServer(str(tmp_path / "stranger")).start()
    try:
        launch = submit(world, executor="local", name="revbad", plugins="sysinfo", tunnel="reverse",
                        tunnel_node=stranger.via, tunnel_identity=stranger.user_key)
        failed = wait_state(world, "revbad", ("failed", "connected"), 60)
    finally:
        stranger.stop()
    assert failed["state"] == "failed" and "Host key verification failed" in failed["reason"], failed
    job = world["orbit"].get("%s/psij/status/%s/%s" % (PARENT, world["sid"], launch["job_id"])).json()
    wait_for(lambda: world["orbit"].get("%s/psij/status/%s/%s" % (PARENT, world["sid"], launch["job_id"]))
             .json()["state"] == "CANCELED", 20, "the job cancelled", interval=0.2)
    assert job["job_id"] == launch["job_id"]


def test_example_launch_runs_a_child_through_the_sdk(world):
    import subprocess
    import sys
    from orbit_procs import REPO
    o = world["orbit"]
    out = subprocess.run([sys.executable, os.path.join(REPO, "examples", "example_launch.py"),
                          "--endpoint", PARENT, "--timeout", "60"], env=o.env(), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "registered after" in out.stdout and "as role" in out.stdout, out.stdout
    assert "after cancel: ended" in out.stdout, out.stdout
    # what README promises of tunnel_status after wait_for_endpoint, and of a cancel
    registered = next(ln for ln in out.stdout.splitlines() if "registered after" in ln)
    assert registered.endswith(": connected"), out.stdout
    after = next(ln for ln in out.stdout.splitlines() if ln.startswith("after cancel"))
    assert out.stdout.split()[1] not in after, out.stdout


def test_the_bridge_hosted_psij_launches_a_child_too(world):
    """On the bridge (pseudo-endpoint ``bridge``) the launcher takes URL, cert and token
    from the bridge's environment and config dir."""
    import subprocess
    import sys
    from orbit_procs import REPO
    o = world["orbit"]
    out = subprocess.run([sys.executable, os.path.join(REPO, "examples", "example_launch.py"),
                          "--timeout", "60"], env=o.env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "launched bridge.1" in out.stdout and "after cancel: ended" in out.stdout, out.stdout


def test_a_restarted_parent_still_follows_its_launch(world):
    """Launches are kept in the parent's psij state dir: after a restart tunnel_status still
    knows the child, and the job's end still ends the launch and removes its directory."""
    slurm_cluster.require_slurm()
    o = world["orbit"]
    launch = submit(world, executor="slurm", name="keep1", plugins="sysinfo", attributes={"duration": 300})
    assert wait_state(world, "keep1", ("connected", "failed"), 60)["state"] == "connected"
    assert o.endpoints[PARENT].stop() == 0
    o.start_endpoint(PARENT, "-p", "psij,sysinfo", "--plugin-config", 'psij={"poll_interval": 0.5}',
                     RADICAL_ORBIT_KNOWN_HOSTS=world["known_hosts"])
    world["sid"] = o.get("%s/psij/register_session" % PARENT, "POST").json()["sid"]
    again = status(world, "keep1")
    assert again["state"] == "connected" and again["job_id"] == launch["job_id"], again
    cancel(world, launch["job_id"])
    assert wait_state(world, "keep1", ("ended", "failed"), 60)["state"] == "ended"
    wait_for(lambda: "keep1" not in (endpoint_names(o) or ["keep1"]), 30, "the child to leave")


def test_no_secret_file_is_left_behind(world):
    o = world["orbit"]
    for name in ("never1", "badsetup", "fwdkid", "revkid", "revbad", "keep1"):
        r = o.get("%s/psij/tunnel_status/%s" % (PARENT, name))
        if r.status_code == 200:
            wait_state(world, name, ("ended", "failed"), 30)
    root = os.path.join(o.home, "launch")
    wait_for(lambda: not os.path.isdir(root) or not os.listdir(root), 20, "every launch dir to go")
    assert files_holding(o.home, o.token) == []


def test_asking_the_bridge_for_names_does_not_hold_the_launch_lock(tmp_path, monkeypatch):
    """submit_tunneled asks the bridge which names are taken (an HTTP call of up to
    BRIDGE_TIMEOUT s): psij's watcher thread, reporting any job's state change, must not
    wait behind it."""
    import threading
    import types
    from radical_orbit.errors import BadRequest
    from radical_orbit.plugins.psij import launch as launch_mod

    monkeypatch.setenv("RADICAL_ORBIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RADICAL_ORBIT_BRIDGE_URL", "http://127.0.0.1:9")

    def refuse(spec, executor, _x, sid):
        raise BadRequest("no jobs in this test")

    jobs = types.SimpleNamespace(state_dir=str(tmp_path), default_executor="local", submit=refuse,
                                 watcher=types.SimpleNamespace(add_listener=lambda f: None))
    plugin = types.SimpleNamespace(context=types.SimpleNamespace(endpoint="login1"), jobs=jobs, name="psij")
    group = launch_mod.Launches(plugin)
    asked, answer = threading.Event(), threading.Event()

    def slow_listed():
        asked.set()
        answer.wait(10)
        return set()
    monkeypatch.setattr(group, "_listed", slow_listed)
    monkeypatch.setattr(launch_mod, "wrapper_path", lambda: "/bin/true")
    errors = []
    submitter = threading.Thread(target=lambda: errors.append(_raises(group.submit, {"name": "kid"}, "s")))
    submitter.start()
    try:
        assert asked.wait(10)
        reporter = threading.Thread(target=group._on_job, args=({"job_id": "other", "state": "ACTIVE"},))
        reporter.start()
        reporter.join(2)
        assert not reporter.is_alive(), "psij's watcher waited for the bridge's answer"
    finally:
        answer.set()
        submitter.join(10)
    assert errors and isinstance(errors[0], BadRequest)


def _raises(call, *args):
    try:
        call(*args)
    except Exception as exc:
        return exc
    return None
