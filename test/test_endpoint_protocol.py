"""A real endpoint against a scripted bridge: a small WebSocket server on
radical_orbit.websocket whose every message is written by the test. Whatever the
bridge sends, the endpoint answers protocol errors and stays alive and serving."""
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orbit_procs import wait_for
from radical_orbit import protocol
from radical_orbit import websocket as ws

TIMEOUT = 20.0


class FakeBridge:
    """Accepts endpoints at /register; each registration is handed to the test as a
    (socket, hello) pair, and the test answers the hello itself."""

    def __init__(self):
        self.links: "queue.Queue" = queue.Queue()
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = TIMEOUT

            def do_GET(self):
                sock = ws.accept(self, max_message_size=protocol.MAX_MESSAGE, idle_timeout=60)
                if sock is None:
                    return
                message = sock.recv()
                if message is None:
                    return
                done = threading.Event()
                bridge.links.put((ScriptedLink(sock, done), protocol.decode(message.data)))
                done.wait(120)          # the test owns the socket until it is done with it

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()

    def next_link(self):
        return self.links.get(timeout=TIMEOUT)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class ScriptedLink:
    def __init__(self, sock, done):
        self.sock = sock
        self.done = done

    def send(self, kind, **fields):
        self.sock.send_binary(protocol.encode(kind, **fields))

    def send_raw(self, data):
        self.sock.send_binary(data)

    def welcome(self, **settings):
        self.send(protocol.WELCOME, resume="key", settings=dict(protocol.DEFAULT_SETTINGS, **settings))

    def recv(self):
        """The next message (the endpoint's notes and plugin updates skipped)."""
        result = []
        reader = threading.Thread(target=lambda: result.append(self.sock.recv()), daemon=True)
        reader.start()
        reader.join(TIMEOUT)
        assert result and result[0] is not None, "the endpoint sent nothing or hung up"
        msg = protocol.decode(result[0].data)
        return msg if msg["k"] not in (protocol.NOTE, protocol.PLUGINS) else self.recv()

    def call(self, rid, path="echo/ping"):
        self.send(protocol.REQUEST, id=rid, method="GET", path=path, query="", headers={},
                  body=b"", end=True, length=0, deadline=30.0)
        return self.recv()

    def close(self):
        self.sock.close()
        self.done.set()


@pytest.fixture
def fake_bridge():
    bridge = FakeBridge()
    yield bridge
    bridge.stop()


def start_endpoint(orbit, bridge, name="ep1"):
    orbit.url = bridge.url
    return orbit.start_endpoint(name, "-p", "echo", wait=False)


def test_the_endpoint_answers_malformed_messages_and_keeps_serving(orbit_plain, fake_bridge):
    proc = start_endpoint(orbit_plain, fake_bridge)
    link, hello = fake_bridge.next_link()
    assert hello["k"] == protocol.HELLO and hello["name"] == "ep1"
    link.welcome()
    assert link.call(1)["status"] == 200
    cases = (
        (dict(k=protocol.REQUEST), "malformed req message: 'id' is missing", None),
        (dict(k=protocol.REQUEST, id=2, method="GET", path=5), "'path' must be a str", 2),
        (dict(k=protocol.REQUEST, id=3, method="GET", path="echo/ping", headers={"a": 1}),
         "'headers' must map header names", 3),
        (dict(k=protocol.REQUEST, id=4, method="GET", path="echo/ping", body="text"), "'body' must be bytes", 4),
        (dict(k=protocol.REQUEST, id=True, method="GET", path="echo/ping"), "'id' must be a stream id", None),
        (dict(k=protocol.CREDIT, id=9, n="lots"), "'n' must be a byte count", 9),
        (dict(k=protocol.DATA, id=9, end="yes"), "'end' must be a bool", 9),
        (dict(k=protocol.CANCEL, id=-3), "'id' must be a stream id", None),
        (dict(k=protocol.SHUTDOWN, reason=7), "'reason' must be a str", None),
        (dict(k=protocol.WELCOME, resume="x"), "unexpected welcome message", None),
        (dict(k="no-such-kind", id=1), "unknown message kind", None),
    )
    for fields, problem, rid in cases:
        kind = fields.pop("k")
        link.send(kind, **fields)
        reply = link.recv()
        assert reply["k"] == protocol.ERROR and problem in reply["detail"], (kind, reply)
        assert reply.get("id") == rid and not reply.get("fatal"), reply
        assert proc.alive()
    link.send(protocol.ERROR, detail=["not", "a", "str"])     # no answer: no error ping-pong
    reply = link.call(10)
    assert reply["k"] == protocol.RESPONSE and reply["id"] == 10 and reply["status"] == 200
    assert proc.alive()
    link.close()


def test_the_endpoint_closes_a_link_that_is_not_the_protocol_and_registers_again(orbit_plain, fake_bridge):
    proc = start_endpoint(orbit_plain, fake_bridge)
    link, _hello = fake_bridge.next_link()
    link.welcome()
    link.send_raw(b"\xc1 not msgpack")
    reply = link.recv()
    assert reply["k"] == protocol.ERROR and reply["fatal"] is True and "undecodable" in reply["detail"]
    link.close()
    again, hello = fake_bridge.next_link()
    assert hello["name"] == "ep1" and proc.alive()
    again.welcome()
    assert again.call(1)["status"] == 200
    again.close()


@pytest.mark.parametrize("welcome", [dict(resume=5), dict(resume="k", settings={"chunk": 0}),
                                     dict(resume="k", settings={"window": 10, "chunk": 100})])
def test_a_malformed_welcome_is_retried_not_fatal(orbit_plain, fake_bridge, welcome):
    proc = start_endpoint(orbit_plain, fake_bridge)
    link, _hello = fake_bridge.next_link()
    link.send(protocol.WELCOME, **welcome)
    again, _hello = fake_bridge.next_link()
    link.close()
    assert proc.alive()
    again.welcome()
    assert again.call(1)["status"] == 200
    wait_for(lambda: "bad message: malformed welcome" in proc.output(), 10, "the endpoint's log line")
    again.close()
