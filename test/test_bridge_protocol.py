"""The bridge against a scripted endpoint speaking the wire protocol by hand: what a
misbehaving or reconnecting endpoint, and odd HTTP clients, get."""
import json
import socket
import threading
import time

import pytest
import requests
import websocket

from orbit_procs import wait_for
from radical_orbit import protocol


class FakeEndpoint:
    """A registered endpoint whose every message is written by the test."""

    def __init__(self, orbit, name="fake", resume=None, plugins=None):
        self.sock = websocket.WebSocket()
        self.sock.connect(orbit.url.replace("http", "ws", 1) + "/register",
                          header=["Authorization: Bearer %s" % orbit.token], timeout=10)
        self.send(protocol.HELLO, name=name, resume=resume, pid=1,
                  endpoint={"type": "standalone"}, plugins=plugins or {"fake": {"type": "fake"}})
        self.welcome = self.recv()

    def send(self, kind, **fields):
        self.sock.send(protocol.encode(kind, **fields), websocket.ABNF.OPCODE_BINARY)

    def send_raw(self, data):
        self.sock.send(data, websocket.ABNF.OPCODE_BINARY)

    def recv(self):
        return protocol.decode(self.sock.recv())

    def next_error(self):
        """The next error, past the cancel of a call abandoned just before."""
        while True:
            msg = self.recv()
            if msg["k"] != protocol.CANCEL:
                assert msg["k"] == protocol.ERROR, msg
                return msg

    def next_request(self):
        while True:
            msg = self.recv()
            if msg["k"] == protocol.REQUEST:
                return msg


def answered(orbit, fake, path, **response):
    """The client's answer to ``GET path`` when ``fake`` answers the call with ``response``."""
    result = {}
    t = threading.Thread(target=lambda: result.update(r=orbit.get(path)))
    t.start()
    req = fake.next_request()
    fake.send(protocol.RESPONSE, id=req["id"], **response)
    t.join(10)
    return result["r"]


def listed(orbit):
    return orbit.get("endpoint/list", "POST").json()["data"]["endpoints"]


def test_a_reconnecting_endpoint_gets_its_welcome_before_any_call(orbit_plain):
    orbit_plain.start_bridge()
    first = FakeEndpoint(orbit_plain)          # then goes silent: a stale socket
    assert first.welcome["k"] == protocol.WELCOME
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                orbit_plain.get("fake/fake/x", timeout=2)
            except requests.RequestException:
                pass
    threading.Thread(target=traffic, daemon=True).start()
    try:
        first.next_request()   # calls are going to the stale socket: that is the situation tested
        second = FakeEndpoint(orbit_plain, resume=first.welcome["resume"])
        assert second.welcome["k"] == protocol.WELCOME
    finally:
        stop.set()


def test_a_malformed_message_is_answered_and_the_link_stays(orbit_plain):
    orbit_plain.start_bridge()
    fake = FakeEndpoint(orbit_plain)
    fake.send(protocol.CREDIT, id="not-an-int", n=1)
    reply = fake.recv()
    assert reply["k"] == protocol.ERROR and "malformed credit" in reply["detail"]
    assert "'id' must be a stream id" in reply["detail"] and not reply.get("fatal")
    # the link still carries calls
    r = answered(orbit_plain, fake, "fake/fake/x", status=200, headers={}, body=b"{}", end=True)
    assert r.status_code == 200 and "fake" in listed(orbit_plain)


def test_a_message_that_is_not_the_protocol_closes_that_link_and_delists_it(orbit_plain):
    orbit_plain.start_bridge()
    fake = FakeEndpoint(orbit_plain)
    assert "fake" in listed(orbit_plain)
    fake.send_raw(b"\xc1 not msgpack")
    reply = fake.recv()
    assert reply["k"] == protocol.ERROR and "undecodable" in reply["detail"] and reply["fatal"] is True
    wait_for(lambda: "fake" not in listed(orbit_plain), 10, "the endpoint to be delisted")
    assert orbit_plain.get("health").status_code == 200


def test_a_client_gone_before_the_answer_cancels_the_stream(orbit_plain):
    orbit_plain.start_bridge()
    fake = FakeEndpoint(orbit_plain)
    host, port = orbit_plain.url.rsplit("/", 1)[1].split(":")
    client = socket.create_connection((host, int(port)), timeout=10)
    client.sendall(b"GET /fake/fake/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                   % orbit_plain.token.encode())
    req = fake.next_request()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()                                  # reset: the answer has nowhere to go
    for _ in range(3):                              # the first writes may still be buffered
        fake.send(protocol.RESPONSE, id=req["id"], status=200, headers={"content-type": "x/y"},
                  body=b"x" * 65536, end=False, length=None)
        fake.send(protocol.DATA, id=req["id"], body=b"y" * 65536, end=False)
    seen = []
    while True:
        msg = fake.recv()
        seen.append(msg["k"])
        if msg["k"] == protocol.CANCEL:
            assert msg["id"] == req["id"]
            break
    # and the bridge keeps no pending call for it: a new call still gets through
    r = answered(orbit_plain, fake, "fake/fake/small", status=200, headers={}, body=b"{}", end=True)
    assert r.status_code == 200


def test_endpoint_headers_cannot_split_the_answer_or_set_cookies(orbit_plain):
    orbit_plain.start_bridge()
    fake = FakeEndpoint(orbit_plain)
    r = answered(orbit_plain, fake, "fake/fake/x", status=200, end=True, body=b"<script>x</script>",
                 headers={"content-type": "text/html\r\nSet-Cookie: a=1", "x-evil": "v\r\nSet-Cookie: evil=1",
                          "set-cookie": "orbit_token=stolen", "bad name": "x"})
    assert r.status_code == 200 and "Set-Cookie" not in r.headers
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Security-Policy"].startswith("sandbox")
    assert "bad name" not in r.headers and "\n" not in r.headers["X-Evil"]


def test_an_invalid_status_from_an_endpoint_is_502(orbit_plain):
    orbit_plain.start_bridge()
    fake = FakeEndpoint(orbit_plain)
    r = answered(orbit_plain, fake, "fake/fake/x", status="200 OK", end=True, body=b"", headers={})
    assert r.status_code == 502 and r.json()["error"] is True


def test_head_of_a_streamed_answer_keeps_the_connection_usable(orbit_plain):
    orbit_plain.start_bridge("-p", "sysinfo,echo")
    orbit_plain.start_endpoint("hpc1", "-p", "echo")
    with orbit_plain.session() as s:
        for path in ("hpc1/echo/blob/1000000", "bridge/echo/blob/1000000"):
            head = s.head("%s/%s" % (orbit_plain.url, path), timeout=10)
            assert head.status_code == 200 and head.content == b""
            after = s.get("%s/hpc1/echo/ping" % orbit_plain.url, timeout=10)
            assert after.json()["pong"] is True


def test_chunked_bodies_reach_bridge_plugins_whole(orbit_plain):
    orbit_plain.start_bridge("-p", "sysinfo,echo")
    body = json.dumps({"pad": "x" * 100000}).encode()

    def pieces():
        yield body[:5]
        yield body[5:70000]
        yield body[70000:]
    r = orbit_plain.get("bridge/echo/notify/chunked", "POST", data=pieces(),
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("where", ["bridge", "hpc1"])
def test_path_parameters_are_unquoted_once_everywhere(orbit_plain, where):
    orbit_plain.start_bridge("-p", "sysinfo,echo")
    orbit_plain.start_endpoint("hpc1", "-p", "echo")
    r = orbit_plain.get("%s/echo/notify/a%%2541b" % where, "POST", json={})
    assert r.json()["notified"] == "a%41b"


# -- the schema, the hello deadline and names (issue 5, findings 4, 5, 6, 9) ----------------
def register_raw(orbit, **hello):
    """A hello written by the test; returns the bridge's reply and the socket."""
    sock = websocket.WebSocket()
    sock.connect(orbit.url.replace("http", "ws", 1) + "/register",
                 header=["Authorization: Bearer %s" % orbit.token], timeout=10)
    fields = dict(name="fake", resume=None, pid=1, endpoint={"type": "standalone"},
                  plugins={"fake": {"type": "fake"}})
    fields.update(hello)
    sock.send(protocol.encode(protocol.HELLO, **fields), websocket.ABNF.OPCODE_BINARY)
    reply = protocol.decode(sock.recv())
    return reply, sock


class SseReader:
    """An /events stream read on a thread: the topology snapshots it carried, and
    whether the bridge ended it."""

    def __init__(self, orbit):
        self.resp = orbit.get("events?topic=topology", stream=True, timeout=30)
        self.topologies = []
        self.ended = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for line in self.resp.iter_lines():
                if line.startswith(b"data: "):
                    self.topologies.append(json.loads(line[6:])["data"])
        except (requests.RequestException, AttributeError):    # closed by the test
            pass
        self.ended = True

    def saw(self, name):
        return any(name in t["endpoints"] for t in self.topologies)

    def close(self):
        self.resp.close()


def test_bin_keys_in_the_plugin_table_are_refused_and_topology_lives_on(orbit_plain):
    orbit_plain.start_bridge()
    sse = SseReader(orbit_plain)
    try:
        for plugins in ({b"bin": {"type": "x"}}, {"p": {b"k": 1}}, {"p": {"ui_config": {"a": [{b"deep": 1}]}}}):
            reply, sock = register_raw(orbit_plain, name="bad", plugins=plugins)
            assert reply["k"] == protocol.ERROR and reply["fatal"] is True, reply
            assert "malformed hello message: 'plugins'" in reply["detail"]
            sock.close()
        assert "invalid plugin instance name bytes b'bin'" in register_raw(
            orbit_plain, name="bad", plugins={b"bin": {}})[0]["detail"]
        for path, method in (("endpoint/list", "POST"), ("endpoints", "GET")):
            assert orbit_plain.get(path, method).status_code == 200
        # the topology publisher still publishes: a new endpoint shows up on the stream
        fake = FakeEndpoint(orbit_plain, name="good")
        assert fake.welcome["k"] == protocol.WELCOME
        wait_for(lambda: sse.saw("good"), 10, "a topology event listing 'good'")
        assert "bad" not in listed(orbit_plain) and not sse.ended
    finally:
        sse.close()


def test_wrong_types_are_answered_with_errors_naming_the_field(orbit_plain):
    orbit_plain.start_bridge()
    fake = FakeEndpoint(orbit_plain)
    r = answered(orbit_plain, fake, "fake/fake/x", status=200, headers={}, body="not bytes", end=True)
    assert r.status_code == 502 and "'body' must be bytes" in r.json()["detail"]
    reply = fake.next_error()
    assert reply["id"] is not None and "malformed res" in reply["detail"]
    for kind, fields, problem in (
            (protocol.NOTE, dict(plugin="fake", topic="t", data={b"k": 1}), "map key that is not a str"),
            (protocol.NOTE, dict(plugin="fake", data={}), "'topic' is missing"),
            (protocol.PLUGINS, dict(plugins=[]), "'plugins' must be the plugin table"),
            (protocol.CREDIT, dict(id=-1, n=1), "'id' must be a stream id"),
            (protocol.REQUEST, dict(id=1), "unexpected req message"),
            ("no-such-kind", {}, "unknown message kind")):
        fake.send(kind, **fields)
        reply = fake.next_error()
        assert problem in reply["detail"], (kind, reply)
    # a malformed error gets no answer (no ping-pong): the next reply is the next call's
    fake.send(protocol.ERROR, detail=5)
    r = answered(orbit_plain, fake, "fake/fake/x", status=200, headers={}, body=b"{}", end=True)
    assert r.status_code == 200 and "fake" in listed(orbit_plain)


def test_oversize_descriptions_are_refused_and_sse_listeners_stay(orbit_plain):
    orbit_plain.start_bridge()
    sse = SseReader(orbit_plain)
    try:
        huge = {"p": {"type": "x", "ui_config": {"blob": "x" * (39 * 2**20 // 10)}}}
        for i in range(5):
            reply, sock = register_raw(orbit_plain, name="huge%d" % i, plugins=huge)
            assert reply["k"] == protocol.ERROR and "exceed the 65536-byte limit of a hello" in reply["detail"]
            sock.close()
        cases = (({"p": {"ui_config": {"a": "x" * 9000}}}, "ui_config of"),
                 ({"p": {"type": "x" * 17000}}, "describes plugin 'p' in"),
                 ({"p%d" % i: {} for i in range(129)}, "lists 129 plugins"))
        for plugins, problem in cases:
            reply, sock = register_raw(orbit_plain, name="big", plugins=plugins)
            assert reply["k"] == protocol.ERROR and problem in reply["detail"], reply
            sock.close()
        fake = FakeEndpoint(orbit_plain, name="small")
        assert fake.welcome["k"] == protocol.WELCOME
        fake.send(protocol.PLUGINS, plugins={"p": {"ui_config": {"a": "x" * 9000}}})
        assert "ui_config of" in fake.recv()["detail"]
        wait_for(lambda: sse.saw("small"), 10, "a topology event listing 'small'")
        assert not sse.ended
        assert listed(orbit_plain)["small"]["plugins"] == {"fake": {"type": "fake"}}
    finally:
        sse.close()


def test_a_websocket_that_never_says_hello_is_closed_despite_pings(orbit_plain):
    orbit_plain.start_bridge("--hello-timeout", "1")
    sock = websocket.WebSocket()
    sock.connect(orbit_plain.url.replace("http", "ws", 1) + "/register",
                 header=["Authorization: Bearer %s" % orbit_plain.token], timeout=10)
    started = time.monotonic()
    stop = threading.Event()

    def pinger():
        while not stop.wait(0.1):
            try:
                sock.ping()
            except (websocket.WebSocketException, OSError):
                return
    threading.Thread(target=pinger, daemon=True).start()
    try:
        while True:
            opcode, frame = sock.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            assert time.monotonic() - started < 10, "still open after 10 s"
    finally:
        stop.set()
    code = int.from_bytes(frame.data[:2], "big")
    assert code == 1008 and b"no message in time" in frame.data, frame.data
    assert orbit_plain.get("health").status_code == 200


@pytest.mark.parametrize("name,status", [("bridge\n", 400), ("ep1\n", 400), ("BRIDGE", 400),
                                         ("Bridge", 400), ("Events", 400), ("EP1", 409)])
def test_names_match_whole_and_compare_case_insensitively(orbit_plain, name, status):
    orbit_plain.start_bridge()
    live = FakeEndpoint(orbit_plain, name="ep1")
    assert live.welcome["k"] == protocol.WELCOME
    reply, sock = register_raw(orbit_plain, name=name)
    assert reply["k"] == protocol.REFUSE and reply["status"] == status, reply
    assert set(listed(orbit_plain)) == {"bridge", "ep1"}     # the bridge's own plugins, and ep1


@pytest.mark.parametrize("client_class", ["subprocess.Popen", "os.system", "radical_orbit.client.log"])
def test_the_sdk_takes_no_callable_but_a_plugin_client_from_an_endpoint(orbit_plain, client_class):
    """An endpoint names its plugins' client classes; the SDK would call whatever it named."""
    from radical_orbit.client import BridgeClient, PluginClient
    orbit_plain.start_bridge()
    fake = FakeEndpoint(orbit_plain, plugins={"fake": {"type": "fake", "client_class": client_class}})
    client = BridgeClient(url=orbit_plain.url, token=orbit_plain.token)
    plugin = client.get_endpoint_client("fake").get_plugin("fake", register=False)
    assert type(plugin) is PluginClient
    fake.sock.close()


def test_a_bridge_hosted_plugin_answer_cannot_run_as_a_page_or_set_cookies(orbit_plain):
    """Like an endpoint's answer: served from the Explorer's origin, so sandboxed."""
    orbit_plain.start_bridge("-p", "echo")
    r = orbit_plain.get("bridge/echo/echo", "POST", data=b"<script>x</script>",
                        headers={"Content-Type": "text/html"})
    assert r.status_code == 200 and r.content == b"<script>x</script>"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Security-Policy"].startswith("sandbox")


def test_an_answer_longer_than_its_length_is_cut_there_not_split_into_a_second(orbit_plain):
    """An endpoint declares ``length`` 5 and sends more: what follows would be read as the
    answer to the client's next (pipelined) request. The bridge stops at the length and
    closes the connection."""
    orbit_plain.start_bridge()
    fake = FakeEndpoint(orbit_plain)
    host, port = orbit_plain.url.rsplit("/", 1)[1].split(":")
    client = socket.create_connection((host, int(port)), timeout=10)
    ask = b"GET /fake/fake/a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % orbit_plain.token.encode()
    client.sendall(ask + ask.replace(b"/fake/fake/a", b"/health"))      # pipelined
    req = fake.next_request()
    fake.send(protocol.RESPONSE, id=req["id"], status=200, headers={}, body=b"hello", end=False, length=5)
    fake.send(protocol.DATA, id=req["id"], end=True,
              body=b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 4\r\n\r\nevil")
    received = b""
    while True:
        piece = client.recv(65536)
        if not piece:
            break
        received += piece
    client.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"Content-Length: 5" in head and b"Connection: close" not in head
    assert body == b"hello", received
    kinds = []
    while not kinds or kinds[-1] == protocol.CREDIT:   # credit for what was read may come first
        kinds.append(fake.recv()["k"])
    assert kinds[-1] == protocol.CANCEL, kinds          # the rest of the stream is abandoned
    assert orbit_plain.get("health").status_code == 200


def test_refused_claimants_that_never_answer_the_close_do_not_hold_up_registration(orbit_plain):
    """Each refusal waits (boundedly) for the claimant's close frame; it did so under the
    registration lock, so ten claimants of a taken name that never read kept every other
    endpoint from registering for about 30 s."""
    orbit_plain.start_bridge()
    FakeEndpoint(orbit_plain, name="taken")
    claimants = []

    def claim():
        sock = websocket.WebSocket()
        sock.connect(orbit_plain.url.replace("http", "ws", 1) + "/register",
                     header=["Authorization: Bearer %s" % orbit_plain.token], timeout=10)
        sock.send(protocol.encode(protocol.HELLO, name="taken", resume=None, pid=2, endpoint={},
                                  plugins={}), websocket.ABNF.OPCODE_BINARY)
        claimants.append(sock)                      # and never reads again
    threads = [threading.Thread(target=claim) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    started = time.monotonic()
    other = FakeEndpoint(orbit_plain, name="other")
    took = time.monotonic() - started
    assert other.welcome["k"] == protocol.WELCOME
    assert took < 2.5, "another endpoint's registration took %.1f s" % took
    for sock in claimants:
        sock.close(timeout=1)
