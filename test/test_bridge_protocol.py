"""The bridge against a scripted endpoint speaking the wire protocol by hand: what a
misbehaving or reconnecting endpoint, and odd HTTP clients, get."""
import json
import socket
import threading

import pytest
import requests
import websocket

from orbit_procs import wait_for
from radical_orbit import protocol


class FakeEndpoint:
    """A registered endpoint whose every message is written by the test."""

    def __init__(self, orbit, name="fake", resume=None):
        self.sock = websocket.WebSocket()
        self.sock.connect(orbit.url.replace("http", "ws", 1) + "/register",
                          header=["Authorization: Bearer %s" % orbit.token], timeout=10)
        self.send(protocol.HELLO, name=name, resume=resume, pid=1,
                  endpoint={"type": "standalone"}, plugins={"fake": {"type": "fake"}})
        self.welcome = self.recv()

    def send(self, kind, **fields):
        self.sock.send(protocol.encode(kind, **fields), websocket.ABNF.OPCODE_BINARY)

    def send_raw(self, data):
        self.sock.send(data, websocket.ABNF.OPCODE_BINARY)

    def recv(self):
        return protocol.decode(self.sock.recv())

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


def test_a_malformed_message_closes_that_link_and_delists_it(orbit_plain):
    orbit_plain.start_bridge()
    fake = FakeEndpoint(orbit_plain)
    assert "fake" in listed(orbit_plain)
    fake.send(protocol.CREDIT, id="not-an-int", n=1)
    reply = fake.recv()
    assert reply["k"] == protocol.ERROR and "malformed credit" in reply["detail"]
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
