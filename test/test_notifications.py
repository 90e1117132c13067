"""Notifications lose nothing: endpoints keep each one until the bridge has it in its
event log, resend after a reconnect, the bridge drops duplicates, and the log survives
``kill -9`` of the bridge so SSE listeners resume by id with nothing missing or twice."""
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import threading

import psutil
import pytest
import requests
import websocket

import durable_plugin
from orbit_procs import wait_for
from radical_orbit import BridgeClient, protocol
from radical_orbit.client import _socket_of
from radical_orbit.bridge import eventlog
from radical_orbit.bridge.eventlog import EventLog, LogBusy
from radical_orbit.bridge.events import NOTIFICATION, TOPOLOGY, EventHub, Filter


# -- helpers ---------------------------------------------------------------------------------
class NumberedEndpoint:
    """A scripted endpoint that numbers its notifications by hand."""

    def __init__(self, orbit, stream, acked=0, name="fake", durable=None):
        self.stream = stream
        self.sock = websocket.WebSocket()
        self.sock.connect(orbit.url.replace("http", "ws", 1) + "/register",
                          header=["Authorization: Bearer %s" % orbit.token], timeout=10)
        self.send(protocol.HELLO, name=name, resume=None, pid=1, endpoint={"type": "standalone"},
                  plugins={}, notes=dict({"stream": stream, "acked": acked},
                                         **({"durable": durable} if durable is not None else {})))
        self.welcome = self.recv()
        assert self.welcome["k"] == protocol.WELCOME, self.welcome

    def send(self, kind, **fields):
        self.sock.send(protocol.encode(kind, **fields), websocket.ABNF.OPCODE_BINARY)

    def recv(self):
        return protocol.decode(self.sock.recv())

    def note(self, seq, i=None):
        self.send(protocol.NOTE, plugin="p", topic="t", data={"i": seq if i is None else i}, ts=0,
                  stream=self.stream, seq=seq)

    def acked_up_to(self, seq):
        """Read acks until one covers ``seq``; returns every ack seen."""
        seen = []
        while not seen or seen[-1] < seq:
            msg = self.recv()
            if msg["k"] == protocol.ACK:
                assert msg["stream"] == self.stream
                seen.append(msg["seq"])
        return seen

    def close(self):
        self.sock.close()


class RawEvents:
    """An SSE reader on its own thread: every event's id and data, in arrival order."""

    def __init__(self, orbit, query="", last_id=None):
        headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
        self.resp = orbit.get("events" + query, stream=True, timeout=30, headers=headers)
        assert self.resp.status_code == 200
        self.events = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        event_id = None
        try:
            for line in self.resp.iter_lines():
                if line.startswith(b"id: "):
                    event_id = int(line[4:])
                elif line.startswith(b"data: "):
                    self.events.append((event_id, json.loads(line[6:])))
        except (requests.RequestException, ValueError, AttributeError):
            pass

    def notes(self):
        return [(e["data"]["plugin"], e["data"]["topic"], e["data"]["data"])
                for _i, e in list(self.events) if e["topic"] == "notification"]

    def last_id(self):
        return self.events[-1][0]

    def close(self):
        """Shut the socket first: closing the response would wait for the reader's recv."""
        sock = _socket_of(self.resp)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(10)
        self.resp.close()


def kill_bridge(orbit):
    orbit.bridge.popen.send_signal(signal.SIGKILL)
    orbit.bridge.popen.wait(10)
    orbit.bridge.stop()


def segments(directory):
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if eventlog.SEGMENT_RE.match(n))


# -- end to end, real processes ---------------------------------------------------------------
def test_ten_thousand_notifications_survive_three_kill_9s_of_the_bridge(orbit_plain):
    total = 10000
    orbit_plain.start_bridge()
    orbit_plain.start_endpoint("hpc1", "-p", "echo")
    bc = BridgeClient(url=orbit_plain.url, token=orbit_plain.token)
    got, dropped = [], []
    bc.register_callback(lambda e, p, t, d: got.append(d["i"]), endpoint_id="hpc1", topic="n")
    bc.register_callback(lambda e, p, t, d: dropped.append(d), plugin_name="_orbit")
    marks = []
    bc.register_callback(lambda e, p, t, d: marks.append(d), endpoint_id="hpc1", topic="mark")
    wait_for(lambda: bc._events.connected.is_set(), 10, "the SDK's event stream")
    r = orbit_plain.get("hpc1/echo/notify_many/n?count=%d&rate=500" % total, "POST")
    assert r.status_code == 200, r.text
    kills = []
    for _ in range(3):
        seen = len(got)
        wait_for(lambda: len(got) >= seen + 400, 30, "notifications flowing before a kill")
        kill_bridge(orbit_plain)
        kills.append(len(got))
        orbit_plain.start_bridge()
    assert kills[-1] < total, "the stream ended before the third kill: the test proved nothing"
    wait_for(lambda: len(got) >= total, 40, "all %d notifications (have %d)" % (total, len(got)))
    # a marker notified after the last one comes behind any resend of it on the same stream
    assert orbit_plain.get("hpc1/echo/notify/mark", "POST", json={"end": True}).status_code == 200
    wait_for(lambda: marks, 20, "the marker notification")
    bc.close()
    assert dropped == []
    assert len(got) == total and got == list(range(total)), (
        "missing %s, twice %s" % (sorted(set(range(total)) - set(got))[:10],
                                  sorted(i for i in set(got) if got.count(i) > 1)[:10]))


def test_a_durable_backlog_waits_on_the_plugins_disk_not_in_memory(orbit_plain, tmp_path):
    """A plugin's durable stream (Plugin.durable_notes with ``read``) while the bridge is
    away: the endpoint holds at most --durable-note-memory of them in memory and reads the
    rest back from the plugin's disk when it resends; each arrives once, in order, also
    when the bridge dies again in the middle of the resend."""
    count, size, held = 3000, 10000, 50
    orbit_plain.start_bridge()
    site = durable_plugin.install(str(tmp_path / "site"))
    ep = orbit_plain.start_endpoint(
        "hpc1", "-p", durable_plugin.NAME, "--durable-note-memory", str(held),
        "--plugin-config", '%s={"db": "%s"}' % (durable_plugin.NAME, tmp_path / "notes.sqlite"),
        PYTHONPATH=os.pathsep.join(filter(None, [site, orbit_plain.env().get("PYTHONPATH")])))
    bc = BridgeClient(url=orbit_plain.url, token=orbit_plain.token)
    got, dropped = [], []
    bc.register_callback(lambda e, p, t, d: got.append((t, d["i"])), endpoint_id="hpc1")
    bc.register_callback(lambda e, p, t, d: dropped.append(d), plugin_name="_orbit")
    wait_for(lambda: bc._events.connected.is_set(), 10, "the SDK's event stream")
    base = "hpc1/%s/emit/" % durable_plugin.NAME
    assert orbit_plain.get(base + "live?count=3", "POST").status_code == 200
    wait_for(lambda: len(got) == 3, 20, "three live notifications")
    assert orbit_plain.get(base + "away?count=%d&size=%d&delay_ms=1000" % (count, size), "POST").status_code == 200
    rss = psutil.Process(ep.pid).memory_info().rss
    kill_bridge(orbit_plain)
    wait_for(lambda: "emitted %d notification(s) on away" % count in ep.output(), 60, "the backlog recorded")
    grown = psutil.Process(ep.pid).memory_info().rss - rss
    assert grown < count * size * 0.4, "the endpoint grew %.1f MiB for %.1f MiB of notifications" % (
        grown / 2**20, count * size / 2**20)
    orbit_plain.start_bridge()
    wait_for(lambda: len(got) >= 3 + count // 3, 60, "the resend under way")
    if len(got) < 3 + count:
        kill_bridge(orbit_plain)            # again, in the middle of the resend
        orbit_plain.start_bridge()
    wait_for(lambda: len(got) >= 3 + count, 60, "every notification (have %d)" % len(got))
    assert orbit_plain.get(base + "after?count=2", "POST").status_code == 200
    wait_for(lambda: len(got) >= 5 + count, 20, "the live ones after the backlog")
    wait_for(lambda: orbit_plain.get(base.replace("emit/", "pending")).json()["pending"] == 0, 20,
             "the plugin to learn that the bridge has them all")
    bc.close()
    assert dropped == []
    expected = [("live", i) for i in range(3)] + [("away", i) for i in range(count)] + [("after", 0), ("after", 1)]
    assert got == expected, "missing %s, twice %s" % (
        [e for e in expected if e not in got][:5], sorted({e for e in got if got.count(e) > 1})[:5])


@contextlib.contextmanager
def small_disk(path, size="512k"):
    """A tmpfs of ``size`` at ``path`` (root only; the test is skipped elsewhere)."""
    os.makedirs(path)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", path],
                             capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (root only): %s" % mounted.stderr.strip())
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True, timeout=30)


def fill_up(path):
    """Take every free block of the file system at ``path``."""
    fd = os.open(os.path.join(path, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, bytes(65536)):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def test_a_full_disk_holds_back_acks_not_live_events(orbit_plain, tmp_path):
    """The event log's disk fills up: listeners still get every notification at once, the
    bridge says so once, and acknowledges none it could not write (the endpoint keeps
    them). Once there is room again the held-back events are written, in order, and
    acknowledged without waiting for the next notification; a restart replays them."""
    with small_disk(str(tmp_path / "small")) as disk:
        orbit_plain.start_bridge("--event-log-dir", os.path.join(disk, "events"), "--ping-interval", "1")
        events = RawEvents(orbit_plain, "?topic=t")
        fake = NumberedEndpoint(orbit_plain, "stream-full")
        acks, errors = [], []

        def read():                         # answers pings too: the endpoint stays alive
            while True:
                try:
                    msg = fake.recv()
                except Exception:
                    return
                (acks if msg["k"] == protocol.ACK else errors).append(msg)
        threading.Thread(target=read, daemon=True).start()
        for seq in (1, 2, 3):
            fake.note(seq)
        wait_for(lambda: acks and acks[-1]["seq"] == 3, 10, "the first three acknowledged")
        before = events.last_id()
        fill_up(disk)
        pad = "x" * 20000                   # more than the free end of a page: each needs a new one
        for seq in range(4, 14):
            fake.send(protocol.NOTE, plugin="p", topic="t", data={"i": seq, "pad": pad}, ts=0,
                      stream="stream-full", seq=seq)
        wait_for(lambda: len(events.notes()) == 13, 10, "every notification live")
        fake.send(protocol.NOTE, plugin="p", topic="t", data=1, ts=0, stream="stream-full", seq="x")
        wait_for(lambda: errors, 10, "the answer to a bad note (behind any ack of the ones before)")
        assert max(a["seq"] for a in acks) == 3, "acknowledged what the full disk did not take"
        out = orbit_plain.bridge.output()
        assert out.count("cannot write the event log") == 1 and "Traceback" not in out
        os.unlink(os.path.join(disk, "filler"))
        wait_for(lambda: acks[-1]["seq"] == 13, 15, "the held-back ones acknowledged once written")
        assert "can be written again" in orbit_plain.bridge.output()
        events.close()
        fake.close()
        kill_bridge(orbit_plain)
        orbit_plain.start_bridge("--event-log-dir", os.path.join(disk, "events"))
        resumed = RawEvents(orbit_plain, "?topic=t", last_id=before)
        wait_for(lambda: len(resumed.notes()) >= 10, 10, "the replay from disk")
        again = NumberedEndpoint(orbit_plain, "stream-full")
        assert again.welcome["notes"] == {"acked": 13}
        again.close()
        resumed.close()
        orbit_plain.bridge.stop()
        assert [n[2]["i"] for n in resumed.notes()] == list(range(4, 14))


def test_resent_duplicates_are_dropped_also_after_a_bridge_restart(orbit_plain):
    orbit_plain.start_bridge()
    events = RawEvents(orbit_plain, "?topic=t")
    first = NumberedEndpoint(orbit_plain, "stream-a")
    assert first.welcome["notes"] == {"acked": 0}
    for seq in (1, 2, 3):
        first.note(seq)
    assert first.acked_up_to(3)[-1] == 3
    first.close()
    wait_for(lambda: "fake" not in orbit_plain.get("endpoint/list", "POST").json()["data"]["endpoints"],
             10, "the first connection to go")
    again = NumberedEndpoint(orbit_plain, "stream-a")
    assert again.welcome["notes"] == {"acked": 3}       # the bridge says what it already has
    for seq in (2, 3, 4):                               # an endpoint that resends anyway
        again.note(seq)
    assert again.acked_up_to(4)[-1] == 4
    wait_for(lambda: len(events.notes()) >= 4, 10, "four notifications")
    last_id = events.last_id()
    events.close()
    again.close()

    orbit_plain.bridge.stop()
    orbit_plain.start_bridge()
    third = NumberedEndpoint(orbit_plain, "stream-a")   # acked 0: it lost track, the bridge did not
    assert third.welcome["notes"] == {"acked": 4}
    third.note(4)
    third.note(5)
    assert third.acked_up_to(5)[-1] == 5
    resumed = RawEvents(orbit_plain, "?topic=t", last_id=last_id)
    wait_for(lambda: resumed.notes(), 10, "the notification after the restart")
    third.note(6)
    wait_for(lambda: len(resumed.notes()) >= 2, 10, "the next live one")
    resumed.close()
    third.close()
    assert [n[2]["i"] for n in events.notes()] == [1, 2, 3, 4]
    assert [n[2]["i"] for n in resumed.notes()] == [5, 6]


def test_a_gap_in_the_numbers_is_published_as_dropped(orbit_plain):
    orbit_plain.start_bridge()
    events = RawEvents(orbit_plain)
    fake = NumberedEndpoint(orbit_plain, "stream-b")
    fake.note(1)
    fake.note(5)
    assert fake.acked_up_to(5)[-1] == 5
    wait_for(lambda: len(events.notes()) >= 3, 10, "three events")
    events.close()
    fake.close()
    assert events.notes() == [("p", "t", {"i": 1}),
                              ("_orbit", "notifications_dropped", {"count": 3, "first": 2, "last": 4}),
                              ("p", "t", {"i": 5})]
    assert "endpoint fake dropped 3 notification(s)" in orbit_plain.bridge.output()


def test_a_durable_stream_named_in_the_hello_is_no_gap_for_a_bridge_that_never_saw_it(orbit_plain):
    """A plugin's durable stream (Plugin.durable_notes) goes on from the number its store
    last had acknowledged; a bridge without that history (a fresh event log) takes the
    hello's ``durable`` marks, so the next number is not reported as a gap, and a number
    at or below the mark is not published again."""
    orbit_plain.start_bridge()
    events = RawEvents(orbit_plain)
    fake = NumberedEndpoint(orbit_plain, "stream-d", durable={"psij-store": 7})
    for seq in (7, 8):
        fake.send(protocol.NOTE, plugin="p", topic="t", data={"i": seq}, ts=0, stream="psij-store", seq=seq)
    acks = []
    while not acks or acks[-1] < 8:
        msg = fake.recv()
        if msg["k"] == protocol.ACK and msg["stream"] == "psij-store":
            acks.append(msg["seq"])
    fake.note(1)
    wait_for(lambda: len(events.notes()) >= 2, 10, "two events")
    events.close()
    fake.close()
    assert events.notes() == [("p", "t", {"i": 8}), ("p", "t", {"i": 1})]
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(protocol.encode(protocol.HELLO, name="x", resume=None, pid=1, endpoint={}, plugins={},
                                        notes={"stream": "s", "acked": 0, "durable": {"": 1}}), (protocol.HELLO,))


def test_a_burst_of_notifications_costs_a_handful_of_acks(orbit_plain):
    orbit_plain.start_bridge()
    fake = NumberedEndpoint(orbit_plain, "stream-burst")
    frames = b"".join(websocket.ABNF.create_frame(
        protocol.encode(protocol.NOTE, plugin="p", topic="t", data={"i": seq}, ts=0,
                        stream="stream-burst", seq=seq), websocket.ABNF.OPCODE_BINARY).format()
                      for seq in range(1, 2001))
    fake.sock.sock.sendall(frames)                  # one write: the bridge reads them in bulk
    acks = fake.acked_up_to(2000)
    fake.close()
    assert acks == sorted(acks) and acks[-1] == 2000
    assert len(acks) <= 2000 // 256 + 60, "%d acks for 2000 notifications" % len(acks)


def test_a_bad_note_number_is_refused_and_the_link_goes_on(orbit_plain):
    orbit_plain.start_bridge()
    fake = NumberedEndpoint(orbit_plain, "stream-c")
    fake.send(protocol.NOTE, plugin="p", topic="t", data=1, ts=0, stream="stream-c", seq="x")
    msg = fake.recv()
    assert msg["k"] == protocol.ERROR and "'seq' must be a notification number" in msg["detail"]
    fake.send(protocol.NOTE, plugin="p", topic="t", data=1, ts=0, stream="stream-c")
    msg = fake.recv()
    assert msg["k"] == protocol.ERROR and "'stream' and 'seq' go together" in msg["detail"]
    fake.note(1)                                    # the link goes on
    assert fake.acked_up_to(1) == [1]
    fake.close()
    assert orbit_plain.get("health").status_code == 200


def test_an_endpoint_outbox_overflow_is_counted_and_reported(orbit_plain):
    orbit_plain.start_bridge()
    ep = orbit_plain.start_endpoint("hpc1", "-p", "echo", "--note-buffer", "5")
    events = RawEvents(orbit_plain)
    wait_for(lambda: events.events, 10, "the first snapshot")
    last_id = events.last_id()
    events.close()
    assert orbit_plain.get("hpc1/echo/notify_many/n?count=20&delay_ms=2500", "POST").status_code == 200
    kill_bridge(orbit_plain)
    wait_for(lambda: "(5 waiting)" in ep.output() and "outbox full" in ep.output(), 15,
             "the endpoint to keep the newest five")
    orbit_plain.start_bridge()
    resumed = RawEvents(orbit_plain, last_id=last_id)
    wait_for(lambda: len(resumed.notes()) >= 6, 15, "the report and the five kept")
    resumed.close()
    assert resumed.notes() == [("_orbit", "notifications_dropped", {"count": 15, "first": 1, "last": 15})] + [
        ("echo", "n", {"i": i}) for i in range(15, 20)]


def test_a_torn_log_tail_is_skipped_and_replay_goes_on(orbit_plain):
    orbit_plain.start_bridge()
    events = RawEvents(orbit_plain, "?topic=t")
    fake = NumberedEndpoint(orbit_plain, "stream-d")
    for seq in (1, 2, 3):
        fake.note(seq)
    wait_for(lambda: len(events.notes()) == 3, 10, "three notifications")
    first_id = [i for i, e in events.events if e["topic"] == "notification"][0]
    events.close()
    kill_bridge(orbit_plain)
    newest = segments(os.path.join(orbit_plain.home, "events"))[-1]
    with open(newest, "ab") as f:
        f.write(b'0badc0de {"i":99999999999999999,"t":"notification"}\t{"topic":"notif')   # cut mid-write
    orbit_plain.start_bridge()
    assert "cutting" in orbit_plain.bridge.output()
    resumed = RawEvents(orbit_plain, "?topic=t", last_id=first_id)
    fake = NumberedEndpoint(orbit_plain, "stream-d")
    assert fake.welcome["notes"] == {"acked": 3}
    fake.note(4)
    wait_for(lambda: len(resumed.notes()) >= 3, 10, "the replay and the new one")
    resumed.close()
    fake.close()
    assert [n[2]["i"] for n in resumed.notes()] == [2, 3, 4]
    ids = [i for i, e in resumed.events if e["topic"] == "notification"]
    assert ids == sorted(ids) and ids[-1] < 99999999999999999, "ids continue from the log, not the torn line"


def test_a_second_bridge_on_the_same_event_log_is_refused(orbit_plain):
    orbit_plain.start_bridge()
    from orbit_procs import Proc
    second = Proc(["-m", "radical_orbit.bridge", "--port", "0"], orbit_plain.env(),
                  os.path.join(orbit_plain.home, "second-bridge.out"))
    assert second.wait(20) == 1
    out = second.output()
    assert "in use by another bridge (pid %d)" % orbit_plain.bridge.pid in out
    assert "Traceback" not in out
    second.stop()


# -- the log itself, in process -----------------------------------------------------------------
def note_of(event):
    """The notification an event carries ({endpoint, plugin, topic, data})."""
    return json.loads(bytes(event.data()))["data"]


def fill(hub, n, start=0):
    return [hub.notify("ep", "p", "t", {"i": i}).seq for i in range(start, start + n)]


def reopened(directory, max_events=100, max_bytes=2**20):
    hub = EventHub(ring_size=max_events, ring_bytes=max_bytes)
    hub.attach_log(EventLog(directory, max_events, max_bytes))
    return hub


def test_the_log_is_private_and_one_bridge_at_a_time(tmp_path):
    directory = str(tmp_path / "events")
    hub = reopened(directory)
    fill(hub, 3)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in segments(directory))
    with pytest.raises(LogBusy, match="in use by another bridge"):
        EventLog(directory, 100, 2**20).open(0)
    hub.close()
    again = reopened(directory)
    assert len(again._ring) == 3
    again.close()


def test_replay_across_a_reopen_is_exact(tmp_path):
    directory = str(tmp_path / "events")
    hub = reopened(directory)
    ids = fill(hub, 10)
    hub.publish(TOPOLOGY, {"endpoints": {"old": {}}})
    hub.close()
    hub = reopened(directory)
    new = fill(hub, 2, start=10)
    assert new[0] == ids[-1] + 2, "ids continue after the last logged one (the topology marker)"
    _listener, backlog = hub.subscribe(Filter(), ids[6], lambda: {"endpoints": {"now": {}}})
    notes = [note_of(e) for e in backlog if e.topic == NOTIFICATION]
    assert [n["data"]["i"] for n in notes] == [7, 8, 9, 10, 11]
    assert backlog[-1].topic == TOPOLOGY and b'"now"' in backlog[-1].wire   # the current one, not the old
    hub.close()


def test_torn_and_damaged_lines_are_skipped(tmp_path):
    directory = str(tmp_path / "events")
    hub = reopened(directory)
    fill(hub, 5)
    hub.close()
    path = segments(directory)[-1]
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    lines[2] = lines[2].replace(b'"i":1}', b'"i":7}')           # bit rot in the middle: CRC fails
    with open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\x00\x00\x00garbage")      # and a torn tail
    hub = reopened(directory)
    assert [note_of(e)["data"]["i"] for e in hub._ring] == [0, 2, 3, 4]
    fill(hub, 1, start=5)
    hub.close()
    hub = reopened(directory)
    assert len(hub._ring) == 5
    hub.close()


def test_the_log_stays_bounded_and_keeps_the_newest(tmp_path):
    directory = str(tmp_path / "events")
    hub = reopened(directory, max_events=100)
    hub.notify_once("ep", "p", "t", 0, "early-stream", 7)
    fill(hub, 2000)
    files = segments(directory)
    on_disk = sum(open(p, "rb").read().count(b"\n") - 1 for p in files)
    assert len(files) <= eventlog.SEGMENTS + 2 and 100 <= on_disk <= 200
    hub.close()
    hub = reopened(directory, max_events=100)
    kept = [note_of(e)["data"]["i"] for e in hub._ring]
    assert kept == list(range(1900, 2000))
    # the stream's high-water mark outlived the segment that recorded it
    assert hub.notify_once("ep", "p", "t", 0, "early-stream", 7) == 7
    hub.close()


def test_a_bridge_whose_log_cannot_be_written_runs_from_memory(orbit_plain, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    orbit_plain.start_bridge("--event-log-dir", str(blocker / "events"))
    wait_for(lambda: "no event log" in orbit_plain.bridge.output(), 10, "the warning")
    events = RawEvents(orbit_plain, "?topic=t")
    fake = NumberedEndpoint(orbit_plain, "stream-e")
    fake.note(1)
    assert fake.acked_up_to(1) == [1]
    wait_for(lambda: events.notes(), 10, "the notification")
    events.close()
    fake.close()


def test_a_failing_write_is_cut_back_held_and_written_in_order_later(tmp_path, monkeypatch, caplog):
    """Without root (no tmpfs to fill): a writev that puts half a line on disk and then
    fails. The torn half is cut off, the events are held back and not acknowledged, the
    failure is one log line, and the next write puts them all on disk in order."""
    directory = str(tmp_path / "events")
    hub = reopened(directory, max_events=40)
    assert hub.notify_once("ep", "p", "t", {"i": 1}, "s", 1) == 1

    def torn(fd, pieces):
        data = b"".join(bytes(p) for p in pieces)
        os.write(fd, data[:len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "writev", torn)
    with caplog.at_level(logging.ERROR, logger="radical_orbit.bridge.eventlog"):
        acks = [hub.notify_once("ep", "p", "t", {"i": k}, "s", k) for k in range(2, 31)]
    assert acks == [1] * 29
    assert len(caplog.records) == 1 and "cannot write the event log" in caplog.records[0].getMessage()
    assert not hub.retry_log()                      # still failing
    monkeypatch.undo()
    assert hub.retry_log() and hub.logged("s") == 30
    hub.close()
    hub = reopened(directory, max_events=40)
    assert [note_of(e)["data"]["i"] for e in hub._ring] == list(range(1, 31))
    hub.close()


def test_a_backlog_beyond_the_log_bound_drops_the_oldest_and_never_acks_past_them(tmp_path, monkeypatch):
    directory = str(tmp_path / "events")
    hub = reopened(directory, max_events=10)
    monkeypatch.setattr(os, "writev", lambda fd, pieces: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    for k in range(1, 26):
        hub.notify_once("ep", "p", "t", {"i": k}, "s", k)
    monkeypatch.undo()
    assert hub.retry_log()
    assert hub.logged("s") == 0, "1-15 never reached the disk: the endpoint must keep them"
    assert hub.notify_once("ep", "p", "t", {"i": 26}, "s", 26) == 0
    hub.close()
