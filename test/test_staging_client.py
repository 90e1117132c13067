"""The staging SDK (StagingClient) and copies between endpoints, against real bridge and
endpoint processes over TLS with auth on."""
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from urllib.parse import quote

import pytest

from orbit_procs import REPO, Proc, wait_for
from test_cli import clean_env, isolate

from radical_orbit import BridgeClient
from radical_orbit.errors import BadRequest, Conflict, OrbitError, Unavailable
from radical_orbit.plugins.staging_client import StagingClient

MiB = 2 ** 20


class Boom(Exception):
    """Raised from a progress callback to cut a transfer partway."""


def cut(done, total):
    """A progress callback that cuts a transfer once 12 MiB are through."""
    if done >= 12 * MiB:
        raise Boom()


def write_file(path, size):
    """Incompressible content, made quickly: one random MiB with a counter per MiB."""
    seed = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(i.to_bytes(8, "little") + seed[8:])
        f.write(seed[:size % MiB])
    return sha256_of(path)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(MiB), b""):
            h.update(piece)
    return h.hexdigest()


def start(orbit, *endpoints):
    orbit.start_bridge()
    for name in endpoints:
        orbit.start_endpoint(name, "-p", "staging")
    bc = BridgeClient(url=orbit.url, cert=orbit.tls["cert"], token=orbit.token)
    return bc


def staging(bc, endpoint):
    st = bc.get_endpoint_client(endpoint).get_plugin("staging")
    assert isinstance(st, StagingClient)
    return st


def test_put_get_round_trip_with_checksum_and_progress(orbit, tmp_path):
    bc = start(orbit, "ep1")
    st = staging(bc, "ep1")
    src = str(tmp_path / "in.bin")
    size = 5 * MiB + 12345
    digest = write_file(src, size)
    remote_dir = st.mkdir(str(tmp_path / "remote"))
    seen = []
    answer = st.put(src, remote_dir + "/", progress=lambda done, total: seen.append((done, total)))
    assert answer["size"] == size and answer["sha256"] == digest
    assert answer["path"] == os.path.join(remote_dir, "in.bin")
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert st.stat(answer["path"])["size"] == size
    assert [e["name"] for e in st.list(remote_dir)] == ["in.bin"]     # no partial left over
    assert st.checksum(answer["path"])["sha256"] == digest

    seen.clear()
    back = st.get(answer["path"], str(tmp_path / "back.bin"), progress=lambda d, t: seen.append((d, t)))
    assert back == {"path": str(tmp_path / "back.bin"), "size": size, "sha256": digest}
    assert sha256_of(str(tmp_path / "back.bin")) == digest
    assert seen[-1] == (size, size)
    assert not [n for n in os.listdir(str(tmp_path)) if n.endswith(".orbit-partial")]

    small = st.put_bytes(b"hello staging", str(tmp_path / "remote" / "small.txt"))
    assert small["sha256"] == hashlib.sha256(b"hello staging").hexdigest()
    assert st.get_bytes(small["path"]) == b"hello staging"
    assert st.version()["type"] == "staging" and st.health()["status"] == "ok"   # base routes still work
    st.remove(remote_dir, recursive=True)
    with pytest.raises(FileNotFoundError):
        st.stat(remote_dir)
    st.close()
    bc.close()


def test_an_interrupted_put_resumes_from_what_the_endpoint_holds(orbit, tmp_path):
    bc = start(orbit, "ep1")
    st = staging(bc, "ep1")
    src = str(tmp_path / "big.bin")
    size = 40 * MiB + 7
    digest = write_file(src, size)
    tgt = str(tmp_path / "remote.bin")

    with pytest.raises(Boom):
        st.put(src, tgt, progress=cut)
    with pytest.raises(FileNotFoundError):      # nothing under the target name
        st.stat(tgt)
    held = wait_for(lambda: st._held(tgt), 20, "the endpoint to hold part of the upload")
    assert 0 < held < size
    seen = []

    def resume():
        """The cut upload may still be ending on the endpoint: until then it answers 409
        'in progress', which requests, still sending, sees as a closed connection."""
        del seen[:]
        try:
            return st.put(src, tgt, resume=True, progress=lambda d, t: seen.append(d))
        except OrbitError as exc:
            if type(exc) is not Conflict and exc.status_code != 495 and not isinstance(exc, Unavailable):
                raise
            return None
    answer = wait_for(resume, 30, "the resumed upload", interval=0.1)
    assert seen[0] >= held > 0              # it went on from the held offset
    assert answer["size"] == size and answer["sha256"] == digest
    assert st.checksum(tgt)["sha256"] == digest
    assert st._held(tgt) == 0
    st.close()
    bc.close()


def test_a_resume_onto_a_held_part_that_is_not_the_files_start_starts_over(orbit, tmp_path):
    """The local file changed since the upload was cut (or the held part did): the
    endpoint checks the held part against the sender's digest of its start before the
    commit, so a mixed file never replaces the target; the SDK then starts over."""
    bc = start(orbit, "ep1")
    st = staging(bc, "ep1")
    src, tgt = str(tmp_path / "data.bin"), str(tmp_path / "remote.bin")
    write_file(src, 8 * MiB)
    with open(src, "rb") as f:
        held = f.read(3 * MiB)
    with open(str(tmp_path / ".remote.bin.orbit-partial"), "wb") as f:
        f.write(held)                               # what an upload cut at 3 MiB leaves
    with open(tgt, "wb") as f:
        f.write(b"the good old version")
    digest = write_file(src, 8 * MiB)               # the file was made again meanwhile
    seen = []
    answer = st.put(src, tgt, overwrite=True, resume=True, progress=lambda d, t: seen.append(d))
    assert answer["sha256"] == digest and sha256_of(tgt) == digest
    assert seen[0] == 3 * MiB and 0 in seen         # it tried to resume, then started over
    assert not os.path.exists(str(tmp_path / ".remote.bin.orbit-partial"))
    # the route itself: a wrong held_sha256 is 409, the target untouched, the part removed
    with open(str(tmp_path / ".remote.bin.orbit-partial"), "wb") as f:
        f.write(held)
    http = orbit.session()
    url = "%s/ep1/staging/upload/%s" % (orbit.url, st.sid)
    resp = http.put(url, params={"path": tgt, "overwrite": "true", "offset": 3 * MiB,
                                 "held_sha256": hashlib.sha256(b"other").hexdigest()},
                    data=b"x" * MiB, verify=orbit.verify, timeout=30)
    assert resp.status_code == 409 and resp.headers["X-Orbit-Resume"] == "mismatch", resp.text
    assert "offset 0" in resp.json()["detail"]
    assert sha256_of(tgt) == digest and not os.path.exists(str(tmp_path / ".remote.bin.orbit-partial"))
    st.close()
    bc.close()


def test_a_directory_larger_than_one_answer_is_listed_whole_by_name(orbit, tmp_path):
    """An answer holds the first max_list entries by name (not any max_list in the
    directory's own order), ``next`` and ``after`` page on, and the SDK's list follows
    them: nothing is dropped silently."""
    orbit.start_bridge()
    orbit.start_endpoint("ep1", "-p", "staging", "--plugin-config", 'staging={"max_list": 50}')
    bc = BridgeClient(url=orbit.url, cert=orbit.tls["cert"], token=orbit.token)
    st = staging(bc, "ep1")
    big = tmp_path / "big"
    big.mkdir()
    names = ["f%03d" % i for i in range(120)]
    for name in reversed(names):
        (big / name).write_bytes(b"x")
    first = st._call("POST", "list", json={"path": str(big)})
    assert [e["name"] for e in first["entries"]] == names[:50]
    assert first["truncated"] is True and first["next"] == names[49]
    second = st._call("POST", "list", json={"path": str(big), "after": first["next"], "limit": 30})
    assert [e["name"] for e in second["entries"]] == names[50:80] and second["next"] == names[79]
    assert [e["name"] for e in st.list(str(big))] == names
    for bad in ({"limit": 0}, {"limit": 51}, {"limit": "5"}, {"after": 3}):
        with pytest.raises(BadRequest):
            st._call("POST", "list", json=dict(bad, path=str(big)))
    st.close()
    bc.close()


def test_an_interrupted_get_resumes_the_local_partial(orbit, tmp_path):
    bc = start(orbit, "ep1")
    st = staging(bc, "ep1")
    src = str(tmp_path / "big.bin")
    size = 40 * MiB + 3
    digest = write_file(src, size)
    tgt = str(tmp_path / "down" / "big.bin")
    os.makedirs(os.path.dirname(tgt))

    with pytest.raises(Boom):
        st.get(src, tgt, progress=cut)
    assert not os.path.exists(tgt)
    partial = str(tmp_path / "down" / ".big.bin.orbit-partial")
    held = os.path.getsize(partial)
    assert 12 * MiB <= held < size
    seen = []
    answer = st.get(src, os.path.dirname(tgt), resume=True, progress=lambda d, t: seen.append(d))
    assert seen[0] == held
    assert answer == {"path": tgt, "size": size, "sha256": digest}
    assert sha256_of(tgt) == digest and not os.path.exists(partial)
    # a partial that holds the whole file: nothing left to download (the endpoint answers
    # 416 to the range), only the digest is checked
    shutil.copyfile(src, str(tmp_path / "down" / ".again.bin.orbit-partial"))
    seen = []
    answer = st.get(src, str(tmp_path / "down" / "again.bin"), resume=True, progress=lambda d, t: seen.append(d))
    assert answer["sha256"] == digest and seen == []
    assert sha256_of(str(tmp_path / "down" / "again.bin")) == digest
    st.close()
    bc.close()


def test_errors_are_the_builtin_file_errors(orbit, tmp_path):
    bc = start(orbit, "ep1")
    st = staging(bc, "ep1")
    src = str(tmp_path / "a.txt")
    write_file(src, 1000)
    st.put(src, str(tmp_path / "b.txt"))
    with pytest.raises(FileExistsError) as exc:
        st.put(src, str(tmp_path / "b.txt"))
    assert isinstance(exc.value, OrbitError) and exc.value.status_code == 409
    assert st.put(src, str(tmp_path / "b.txt"), overwrite=True)["size"] == 1000
    big = str(tmp_path / "big.bin")             # larger than what the bridge drains of a refused body
    write_file(big, 24 * MiB)
    with pytest.raises(FileExistsError):
        st.put(big, str(tmp_path / "b.txt"))
    with pytest.raises(FileExistsError):                # a local target is not overwritten either
        st.get(str(tmp_path / "b.txt"), src)
    with pytest.raises(FileNotFoundError) as exc:
        st.get(str(tmp_path / "missing"), str(tmp_path / "x"))
    assert exc.value.status_code == 404 and not os.path.exists(str(tmp_path / "x"))
    with pytest.raises(FileNotFoundError):
        st.put(str(tmp_path / "missing"), str(tmp_path / "y"))      # the local source
    with pytest.raises(PermissionError) as exc:
        st.stat("/proc/self/status")
    assert exc.value.status_code == 403
    with pytest.raises(PermissionError):
        st.put(src, "/etc/orbit-should-not-be-here")
    with pytest.raises(NotADirectoryError):
        st.list(str(tmp_path / "b.txt"))
    with pytest.raises(IsADirectoryError):
        st.get(str(tmp_path), str(tmp_path / "dir-as-file"))
    with pytest.raises(FileExistsError):
        st.mkdir(str(tmp_path))
    with pytest.raises(BadRequest):          # copy runs on the bridge, not on an endpoint
        st._call("POST", "copy", json={"src": {"endpoint": "ep1", "path": src},
                                       "dst": {"endpoint": "ep1", "path": src + ".2"}})
    st.close()
    bc.close()


def test_copy_between_endpoints_and_the_bridge(orbit, tmp_path):
    bc = start(orbit, "ep1", "ep2")
    st1, st2 = staging(bc, "ep1"), staging(bc, "ep2")
    src = str(tmp_path / "one.bin")
    size = 9 * MiB + 99
    digest = write_file(src, size)
    for d in ("ep2", "bridge", "back"):
        os.makedirs(str(tmp_path / d))
    # the two endpoints run on this host: distinct directories stand for distinct machines
    os.chmod(src, 0o640)
    os.utime(src, (1700000000.5, 1700000000.5))
    answer = st1.copy("ep1", src, "ep2", str(tmp_path / "ep2" / "one.bin"))
    assert answer["size"] == size and answer["sha256"] == digest
    assert st2.checksum(str(tmp_path / "ep2" / "one.bin"))["sha256"] == digest
    copied = os.stat(str(tmp_path / "ep2" / "one.bin"))      # mode and mtime came along
    assert copied.st_mode & 0o7777 == 0o640 and abs(copied.st_mtime - 1700000000.5) < 1e-3
    with pytest.raises(FileExistsError):
        st1.copy("ep1", src, "ep2", str(tmp_path / "ep2" / "one.bin"))
    assert st1.copy("ep1", src, "ep2", str(tmp_path / "ep2" / "one.bin"), overwrite=True)["sha256"] == digest
    # endpoint -> bridge -> endpoint
    assert st2.copy("ep2", str(tmp_path / "ep2" / "one.bin"), "bridge",
                    str(tmp_path / "bridge" / "one.bin"))["sha256"] == digest
    assert st1.copy("bridge", str(tmp_path / "bridge" / "one.bin"), "ep1",
                    str(tmp_path / "back" / "one.bin"))["sha256"] == digest
    assert sha256_of(str(tmp_path / "back" / "one.bin")) == digest
    with pytest.raises(FileNotFoundError):
        st1.copy("ep1", str(tmp_path / "missing"), "ep2", str(tmp_path / "ep2" / "m"))
    with pytest.raises(LookupError):
        st1.copy("ep1", src, "no-such-endpoint", str(tmp_path / "nowhere"))
    assert not os.path.exists(str(tmp_path / "ep2" / "m"))
    # the bridge closed the sessions it opened for the copies
    assert wait_for(lambda: len(st2.list_sessions()) == 1, 10, "the copies' sessions to close")
    st1.close()
    st2.close()
    bc.close()


def test_a_large_copy_keeps_the_bridge_memory_bounded(orbit, tmp_path):
    psutil = pytest.importorskip("psutil")
    bc = start(orbit, "ep1", "ep2")
    st = staging(bc, "ep1")
    src = str(tmp_path / "large.bin")
    size = 256 * MiB + 1
    digest = write_file(src, size)
    os.makedirs(str(tmp_path / "dst"))
    bridge = psutil.Process(orbit.bridge.pid)
    before = bridge.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], bridge.memory_info().rss)
            stop.wait(0.01)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        answer = st.copy("ep1", src, "ep2", str(tmp_path / "dst" / "large.bin"), timeout=300)
    finally:
        stop.set()
        sampler.join(5)
    assert answer["size"] == size and answer["sha256"] == digest
    assert sha256_of(str(tmp_path / "dst" / "large.bin")) == digest
    grown = (peak[0] - before) / MiB
    assert grown < 48, "the bridge grew by %.0f MiB during a 256 MiB copy" % grown
    st.close()
    bc.close()


def test_the_staging_example_against_the_embedded_default(tmp_path, monkeypatch):
    home = str(tmp_path / "home")
    env = clean_env(home)
    isolate(monkeypatch, home)
    bridge = Proc(["-m", "radical_orbit.bridge", "--port", "0"], env, str(tmp_path / "bridge.out"))
    try:
        wait_for(lambda: re.search(r"Explorer: http://127\.0\.0\.1:\d+/", bridge.output()), 20, "the URL")
        example = subprocess.run([sys.executable, os.path.join(REPO, "examples", "example_staging.py")],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 universal_newlines=True, timeout=120)
        assert example.returncode == 0, example.stdout
        assert "round trip intact: True" in example.stdout and "removed bridge:" in example.stdout
    finally:
        assert bridge.stop() == 0, bridge.output()


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_the_progress_bar_is_drawn_on_a_terminal_only(monkeypatch):
    from radical_orbit.plugins import staging_client as sc
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    report = sc._reporter(None, "put data.bin")
    for done in range(0, 11 * MiB, MiB):
        report(done, 10 * MiB)
    report.finish()
    lines = tty.getvalue()
    assert lines.startswith("\rput data.bin") and "100% 10.0 MiB of 10.0 MiB" in lines and lines.endswith("\n")
    called = []
    report = sc._reporter(lambda done, total: called.append((done, total)), "x")   # a callback: no bar
    report(5, 10)
    assert called == [(5, 10)] and tty.getvalue() == lines
    pipe = io.StringIO()                  # not a terminal: nothing
    monkeypatch.setattr(sys, "stderr", pipe)
    report = sc._reporter(None, "x")
    report(5, 10)
    report.finish()
    assert pipe.getvalue() == ""


def test_a_checksum_right_after_a_transfer_does_not_read_the_file_again(tmp_path, monkeypatch):
    """In process: the digest of an upload, or of a whole download, is kept by the file's
    identity (device, inode, size, mtime, ctime); a file changed since is hashed again."""
    from radical_orbit.plugin import Request
    from radical_orbit.plugin_host import PluginHost
    from radical_orbit.plugins.staging import checksums
    from radical_orbit.plugins.staging.plugin import StagingPlugin

    host = PluginHost("ep", "standalone", {}, lambda *a: None)
    host.add("staging", StagingPlugin, {"roots": [str(tmp_path)]})

    def call(method, route, body=b"", **query):
        resp = host.dispatch(Request(method, "staging/" + route, {k: [str(v)] for k, v in query.items()},
                                     {}, io.BytesIO(body), "t", len(body)))
        data = b"".join(resp.chunks(MiB))
        assert resp.status < 400, data
        return data
    sid = json.loads(call("POST", "register_session"))["sid"]
    path = str(tmp_path / "f.bin")
    data = os.urandom(3 * MiB + 1)
    digest = hashlib.sha256(data).hexdigest()
    assert json.loads(call("PUT", "upload/" + sid, data, path=path))["sha256"] == digest

    hashed = []
    real_run = checksums.HashJobs._run
    monkeypatch.setattr(checksums.HashJobs, "_run", lambda self, key, job: hashed.append(key) or real_run(self, key, job))
    checksum = lambda: json.loads(call("POST", "checksum/" + sid, json.dumps({"path": path}).encode()))
    assert checksum()["sha256"] == digest and hashed == []          # kept from the upload

    with open(path, "r+b") as f:        # same size, same mtime, other bytes: ctime tells
        st = os.fstat(f.fileno())
        f.write(b"\0" * 10)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = hashlib.sha256(b"\0" * 10 + data[10:]).hexdigest()
    assert checksum()["sha256"] == changed and len(hashed) == 1

    os.utime(path, (1e9, 1e9))          # a new identity: a whole download hashes it on the way
    assert call("GET", "download/" + sid, path=path) == b"\0" * 10 + data[10:]
    assert checksum()["sha256"] == changed and len(hashed) == 1
    host.stop()


def test_a_checksum_longer_than_a_call_may_wait_is_pending_then_done(tmp_path, monkeypatch):
    """In process: a file whose hashing outlasts ``checksum_wait`` is answered 202 with
    the bytes hashed so far (a 300 GB file would outlast the bridge's request timeout);
    the hashing goes on, two callers share it, and asking again gives the digest."""
    from radical_orbit.plugin import Request
    from radical_orbit.plugin_host import PluginHost
    from radical_orbit.plugins.staging import checksums
    from radical_orbit.plugins.staging.plugin import StagingPlugin

    data = os.urandom(3 * MiB + 5)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    gate, real_pread, threads = threading.Event(), os.pread, []

    def slow_pread(fd, n, pos):
        if pos >= MiB:
            assert gate.wait(20)
        return real_pread(fd, n, pos)
    monkeypatch.setattr(os, "pread", slow_pread)
    real_run = checksums.HashJobs._run
    monkeypatch.setattr(checksums.HashJobs, "_run", lambda self, key, job: threads.append(key) or real_run(self, key, job))
    host = PluginHost("ep", "standalone", {}, lambda *a: None)
    host.add("staging", StagingPlugin, {"roots": [str(tmp_path)], "checksum_wait": 0.2})
    try:
        sid = json.loads(host.dispatch(Request("POST", "staging/register_session")).body)["sid"]

        def checksum():
            body = json.dumps({"path": str(path)}).encode()
            resp = host.dispatch(Request("POST", "staging/checksum/" + sid, {}, {}, io.BytesIO(body), "t", len(body)))
            return resp.status, json.loads(b"".join(resp.chunks(MiB)))
        for _ in range(2):
            status, answer = checksum()
            assert status == 202 and answer["pending"] is True
            assert answer["hashed"] == MiB and answer["size"] == len(data) and "sha256" not in answer
        gate.set()
        wait_for(lambda: checksum()[0] == 200, 10, "the digest")
        assert checksum() == (200, {"path": str(path), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        assert len(threads) == 1
    finally:
        gate.set()
        host.stop()


def test_the_sdk_asks_again_while_a_checksum_is_pending(monkeypatch):
    """The SDK's checksum polls a pending answer until the digest, and gives up when the
    hashing stops moving."""
    from radical_orbit.errors import Timeout
    from radical_orbit.plugins import staging_client

    answers = [{"pending": True, "hashed": 1}, {"pending": True, "hashed": 2}, {"path": "/f", "size": 3, "sha256": "ab"}]
    client = StagingClient.__new__(StagingClient)
    client.endpoint = type("E", (), {"name": "ep"})()
    monkeypatch.setattr(StagingClient, "_call", lambda self, *a, **k: answers.pop(0))
    monkeypatch.setattr(staging_client, "CHECKSUM_POLL", 0.0)
    assert client.checksum("/f") == {"path": "/f", "size": 3, "sha256": "ab"} and not answers
    monkeypatch.setattr(StagingClient, "_call", lambda self, *a, **k: {"pending": True, "hashed": 7})
    monkeypatch.setattr(staging_client, "CHUNK_TIMEOUT", 0.05)
    with pytest.raises(Timeout, match="made no progress"):
        client.checksum("/f")


def test_a_copy_cut_by_its_source_going_away_leaves_no_file(orbit, tmp_path):
    bc = start(orbit, "ep1", "ep2")
    st = staging(bc, "ep2")
    src = str(tmp_path / "src.bin")
    write_file(src, 512 * MiB)
    os.makedirs(str(tmp_path / "dst"))
    partial = str(tmp_path / "dst" / ".out.bin.orbit-partial")
    failure = []

    def run():
        try:
            st.copy("ep1", src, "ep2", str(tmp_path / "dst" / "out.bin"), timeout=120)
        except OrbitError as exc:
            failure.append(exc)
    copier = threading.Thread(target=run, daemon=True)
    copier.start()
    wait_for(lambda: os.path.exists(partial) and os.path.getsize(partial) > 0, 60, "the copy to start")
    orbit.endpoints["ep1"].signal(9)                 # the source dies mid-copy
    copier.join(120)
    assert not copier.is_alive() and failure, "the copy did not fail"
    assert failure[0].status_code in (502, 503, 504), failure[0]
    assert not os.path.exists(str(tmp_path / "dst" / "out.bin"))
    assert st._held(str(tmp_path / "dst" / "out.bin")) < 512 * MiB     # kept for a resume, never committed
    assert st.checksum(src)["size"] == 512 * MiB       # the bridge and the destination carry on
    st.close()
    bc.close()


def test_put_and_get_wait_while_the_endpoint_runs_all_the_transfers_it_allows(monkeypatch):
    """A 503 marked X-Orbit-Busy (the endpoint's max_transfers are running) is waited out
    (its Retry-After) and the transfer made again; any other 503 is raised at once."""
    from radical_orbit.plugins import staging_client

    busy = Unavailable("2 transfers are running", headers={"X-Orbit-Busy": "transfers"}, retry_after=5)
    slept = []
    monkeypatch.setattr(staging_client.time, "sleep", slept.append)
    outcomes = [busy, busy, {"path": "/t", "size": 1, "sha256": "ab"}]

    def attempt(self, *args):
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    monkeypatch.setattr(StagingClient, "_put", attempt)
    monkeypatch.setattr(StagingClient, "_get", attempt)
    client = StagingClient.__new__(StagingClient)
    assert client.put("/s", "/t")["sha256"] == "ab" and slept == [5, 5]
    outcomes[:] = [Unavailable("endpoint ep disconnected", retry_after=1)]
    with pytest.raises(Unavailable, match="disconnected"):
        client.get("/s", "/t")
    assert slept == [5, 5]
    monkeypatch.setattr(staging_client, "BUSY_WAIT", 3.0)
    outcomes[:] = [busy]
    with pytest.raises(Unavailable, match="transfers are running"):
        client.get("/s", "/t")


def test_put_and_get_over_real_sockets_wait_while_the_endpoint_runs_all_its_transfers(orbit, tmp_path,
                                                                                        monkeypatch):
    """The busy mark must survive the trip (endpoint, bridge, HTTP, the SDK's error), and
    a put must learn it before it sends a large body (a refusal then reaches it only as
    a closed connection): both wait their Retry-After and go through."""
    from radical_orbit.plugins import staging_client
    orbit.start_bridge()
    orbit.start_endpoint("ep1", "-p", "staging", "--plugin-config", 'staging={"max_transfers": 1}')
    bc = BridgeClient(url=orbit.url, cert=orbit.tls["cert"], token=orbit.token)
    st = staging(bc, "ep1")
    src = str(tmp_path / "src.bin")
    digest = write_file(src, 64 * MiB)
    slept, real_sleep = [], staging_client.time.sleep

    def sleep(seconds):
        if threading.current_thread().name.startswith("waiter"):
            slept.append(seconds)
        real_sleep(seconds)
    monkeypatch.setattr(staging_client.time, "sleep", sleep)
    held = st._download(src, 0)                     # holds the slot while nothing reads it
    results = {}
    waiters = [threading.Thread(target=lambda: results.update(put=_outcome(st.put, src, str(tmp_path / "up.bin"))),
                                name="waiter-put"),
               threading.Thread(target=lambda: results.update(get=_outcome(st.get, src, str(tmp_path / "down.bin"))),
                                name="waiter-get")]
    for waiter in waiters:
        waiter.start()
    wait_for(lambda: len(slept) >= 2 or results, 20, "both transfers to be refused once")
    held.close()
    for waiter in waiters:
        waiter.join(60)
    assert slept[:2] == [5, 5] and results["put"].get("sha256") == digest, (slept, results)
    assert results["get"].get("sha256") == digest, results
    # a copy whose source is busy waits too (the bridge passes the mark on)
    held = st._download(src, 0)
    del slept[:]
    copier = threading.Thread(target=lambda: results.update(copy=_outcome(
        st.copy, "ep1", src, "bridge", str(tmp_path / "copied.bin"))), name="waiter-copy")
    copier.start()
    wait_for(lambda: slept or "copy" in results, 20, "the copy to be refused once")
    held.close()
    copier.join(60)
    assert slept == [5] and results["copy"].get("sha256") == digest, (slept, results)
    st.close()
    bc.close()


def _outcome(call, *args):
    try:
        return call(*args)
    except Exception as exc:
        return {"error": repr(exc)}


def test_names_that_are_not_utf8_go_through_every_route(orbit, tmp_path):
    """Old HPC data holds names that are not valid UTF-8: they travel as surrogateescape
    strings in JSON and as percent-escaped bytes in query strings, and name the same file."""
    bc = start(orbit, "ep1")
    st = staging(bc, "ep1")
    root = tmp_path / "root"
    root.mkdir()
    broot = os.fsencode(str(root))
    with open(os.path.join(broot, b"caf\xe9.dat"), "wb") as f:          # Latin-1 "café"
        f.write(b"latin-1 bytes")
    with open(os.path.join(broot, b"caf\xc3\xa9.dat"), "wb") as f:      # UTF-8 "café"
        f.write(b"utf-8 bytes")
    latin, utf8 = str(root / "caf\udce9.dat"), str(root / "caf\u00e9.dat")
    assert sorted(e["name"] for e in st.list(str(root))) == ["caf\u00e9.dat", "caf\udce9.dat"]

    local = tmp_path / "local"
    local.mkdir()
    assert st.get(latin, str(local / "caf\udce9.dat"))["size"] == len(b"latin-1 bytes")
    assert st.get(utf8, str(local / "caf\u00e9.dat"))["size"] == len(b"utf-8 bytes")
    with open(os.path.join(os.fsencode(str(local)), b"caf\xe9.dat"), "rb") as f:
        assert f.read() == b"latin-1 bytes"
    with open(os.path.join(os.fsencode(str(local)), b"caf\xc3\xa9.dat"), "rb") as f:
        assert f.read() == b"utf-8 bytes"

    answer = st.put(str(local / "caf\udce9.dat"), str(root / "new\udcff.bin"))
    assert answer["path"] == str(root / "new\udcff.bin")
    with open(os.path.join(broot, b"new\xff.bin"), "rb") as f:
        assert f.read() == b"latin-1 bytes"

    # a raw, correctly percent-encoded URL names the file by its bytes; U+FFFD names another
    url = "%s/ep1/staging/download/%s?path=" % (orbit.url, st.sid)
    session = orbit.session()
    resp = session.get(url + quote(os.fsencode(str(root / "new\udcff.bin"))), verify=orbit.verify, timeout=30)
    assert resp.status_code == 200 and resp.content == b"latin-1 bytes"
    resp = session.get(url + quote(os.fsencode(latin)) + "&attachment=1", verify=orbit.verify, timeout=30)
    assert resp.status_code == 200 and resp.content == b"latin-1 bytes"
    assert resp.headers["Content-Disposition"].endswith("''caf%E9.dat")
    resp = session.get(url + quote(str(root / "new\ufffd.bin")), verify=orbit.verify, timeout=30)
    assert resp.status_code == 404, resp.text

    # a copy through the bridge passes such names on in its own query strings
    os.makedirs(str(tmp_path / "bridge"))
    assert st.copy("ep1", latin, "bridge", str(tmp_path / "bridge" / "x\udcfe"))["size"] == 13
    assert st.copy("bridge", str(tmp_path / "bridge" / "x\udcfe"), "ep1", str(root / "y\udcfd"))["size"] == 13
    with open(os.path.join(broot, b"y\xfd"), "rb") as f:
        assert f.read() == b"latin-1 bytes"
    assert sorted(os.listdir(broot)) == [b"caf\xc3\xa9.dat", b"caf\xe9.dat", b"new\xff.bin", b"y\xfd"]
    st.close()
    bc.close()
