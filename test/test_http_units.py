"""Units of the bridge's request reading and admission, without processes: the framing
grammar (bridge/framing.py) and the connection budgets (bridge/admission.py)."""
import io
import time

import pytest

from radical_orbit.bridge import admission, framing
from radical_orbit.bridge.admission import Admission, RefusalLog
from radical_orbit.bridge.framing import BodyReader, Framing, HeadError, read_head
from radical_orbit.errors import BadRequest, PayloadTooLarge


def head(data: bytes, **limits):
    return read_head(io.BufferedReader(io.BytesIO(data)), **limits)


def body(data: bytes, framing_: Framing, limit: int = 1 << 20) -> bytes:
    return BodyReader(io.BufferedReader(io.BytesIO(data)), framing_, limit).read()


def test_a_head_is_parsed_with_its_framing():
    h = head(b"POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length:  12 \r\nX-Empty:\r\n\r\nrest")
    assert (h.method, h.target, h.version) == ("POST", "/a?b", "HTTP/1.1")
    assert h.line == "POST /a?b HTTP/1.1"
    assert h.headers.items() == [("Host", "x"), ("Content-Length", "12"), ("X-Empty", "")]
    assert h.headers["content-length"] == "12" and "HOST" in h.headers
    assert h.framing == Framing(12, False)


class Trickle(io.RawIOBase):
    """A raw stream that hands out ``step`` bytes per read, as a slow client does."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step = data, step

    def readable(self):
        return True

    def readinto(self, buffer):
        piece, self.data = self.data[:self.step], self.data[self.step:]
        buffer[:len(piece)] = piece
        return len(piece)


@pytest.mark.parametrize("step", [1, 7, 64, 4096])
def test_a_head_arriving_in_pieces_is_the_same_head(step):
    data = b"\r\nGET /x HTTP/1.1\r\nHost: x\nA: 1\r\n\r\nnext"
    rfile = io.BufferedReader(Trickle(data, step))
    h = read_head(rfile)
    assert (h.line, h.headers.items()) == ("GET /x HTTP/1.1", [("Host", "x"), ("A", "1")])
    assert rfile.read() == b"next"


def test_a_connection_closed_before_a_whole_head_is_no_head():
    assert head(b"") is None
    assert head(b"GET / HTTP/1.1\r\nHost: x\r\n") is None
    assert head(b"GET / HTT") is None


@pytest.mark.parametrize("data, status", [
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5 + b"\r\n", 431),
    (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nX: " + b"y" * 300 + b"\r\n\r\n", 431),
    (b"GET / HTTP/3.0\r\n\r\n", 505),
])
def test_head_limits(data, status):
    with pytest.raises(HeadError) as err:
        head(data, max_bytes=256, max_fields=4)
    assert err.value.status_code == status


@pytest.mark.parametrize("fields, expected", [
    ([], Framing(0, False)),
    ([("Content-Length", "0")], Framing(0, False)),
    ([("content-length", "7"), ("Content-Length", "7")], Framing(7, False)),
    ([("Transfer-Encoding", "CHUNKED")], Framing(0, True)),
    ([("Transfer-Encoding", " chunked ")], Framing(0, True)),
])
def test_request_framing(fields, expected):
    assert framing.request_framing("HTTP/1.1", fields) == expected


@pytest.mark.parametrize("version, fields, status", [
    ("HTTP/1.1", [("Content-Length", "1"), ("Transfer-Encoding", "chunked")], 400),
    ("HTTP/1.1", [("Content-Length", "1"), ("Content-Length", "2")], 400),
    ("HTTP/1.1", [("Content-Length", "0x1")], 400),
    ("HTTP/1.1", [("Content-Length", "+1")], 400),
    ("HTTP/1.1", [("Content-Length", "1" * 20)], 413),
    ("HTTP/1.1", [("Transfer-Encoding", "gzip")], 501),
    ("HTTP/1.1", [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")], 501),
    ("HTTP/1.0", [("Transfer-Encoding", "chunked")], 400),
])
def test_request_framing_refusals(version, fields, status):
    with pytest.raises(HeadError) as err:
        framing.request_framing(version, fields)
    assert err.value.status_code == status


def test_chunked_bodies_are_read_exactly():
    assert body(b"3\r\nabc\r\nA;x=\"y\"\r\n0123456789\r\n0\r\nT: v\r\n\r\n", Framing(0, True)) == b"abc0123456789"


@pytest.mark.parametrize("data", [b"-1\r\nx", b"+3\r\nabc\r\n0\r\n\r\n", b"0x3\r\nabc\r\n0\r\n\r\n",
                                  b"1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n", b"3\nabc\r\n0\r\n\r\n",
                                  b"3\r\nabcd\r\n0\r\n\r\n", b"3\r\nabc\r\n0\r\nbad trailer\r\n\r\n",
                                  b"3" + b" " * 5000 + b"\r\n"])
def test_malformed_chunked_bodies_are_400(data):
    with pytest.raises(BadRequest):
        body(data, Framing(0, True))


def test_the_body_cap_holds_for_both_framings():
    with pytest.raises(PayloadTooLarge):
        BodyReader(io.BufferedReader(io.BytesIO(b"")), Framing(11, False), 10)
    with pytest.raises(PayloadTooLarge):
        body(b"b\r\n" + b"x" * 11 + b"\r\n0\r\n\r\n", Framing(0, True), limit=10)


def test_100_continue_is_sent_at_the_first_read_only():
    sent = []
    reader = BodyReader(io.BufferedReader(io.BytesIO(b"hello")), Framing(5, False), 100,
                        send_continue=lambda: sent.append(1))
    assert not reader.invited and not reader.drain(invite=False) and sent == []
    assert reader.read(2) == b"he" and sent == [1]
    assert reader.read() == b"llo" and sent == [1]


class FakeSock:
    def __init__(self):
        self.shut = False

    def shutdown(self, how):
        self.shut = True


def test_admission_budgets_and_shedding():
    a = Admission(max_connections=10, max_unauthenticated=3, max_per_source=2, shed_min_age=0.05)
    t1, _ = a.admit("1.1.1.1", FakeSock())
    t2, _ = a.admit("1.1.1.1", FakeSock())
    ticket, cap = a.admit("1.1.1.1", FakeSock())
    assert ticket is None and cap == "per-source cap 2"
    a.authenticated(t1)                               # out of the unauthenticated budget
    t3, _ = a.admit("1.1.1.1", FakeSock())
    t4, _ = a.admit("2.2.2.2", FakeSock())
    ticket, cap = a.admit("3.3.3.3", FakeSock())
    assert ticket is None and cap == "unauthenticated cap 3"
    assert a.head_done(t4) is True                    # a head arrived: not sheddable any more
    time.sleep(0.06)
    t5, cap = a.admit("3.3.3.3", FakeSock())
    assert t5 is not None and t2.shed and t2.sock.shut and not t3.shed
    assert a.head_done(t2) is False                   # its thread answers 503
    assert a.counts() == {"connections": 4, "unauthenticated": 3, "waiting_for_head": 2, "sources": 3}
    for t in (t1, t2, t3, t4, t5):
        a.release(t)
        a.release(t)                                  # twice is once
    assert a.counts() == {"connections": 0, "unauthenticated": 0, "waiting_for_head": 0, "sources": 0}


def test_the_refusal_log_is_one_line_per_interval():
    log = RefusalLog(interval=60)
    for i in range(1000):
        log.note("per-source cap 64", "127.0.0.%d" % (i % 5))
    log.note(admission.SHED, "127.0.0.9")
    level, line = log.summary()
    assert line.startswith("refused 1000 connections in the last")
    assert "per-source cap 64: 1000, from 127.0.0.0 200" in line and "and 2 more" in line
    assert "shed slow unauthenticated connections for newcomers: 1, from 127.0.0.9 1" in line
    log.note("per-source cap 64", "127.0.0.1")
    assert log.summary() is None                      # within the interval: counted, not logged


def test_the_fd_limit_bounds_the_connections():
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard file-descriptor limit")
    assert admission.connections_the_fd_limit_allows(10 ** 9) == hard - admission.FD_RESERVE
    assert admission.connections_the_fd_limit_allows(10) == 10


def test_explorer_modules_list_the_installed_plugins_once(monkeypatch, tmp_path):
    """GET /plugins/<file> is open: a module that is not in share/ must not cost a scan
    of every installed distribution per request."""
    from radical_orbit import registry
    from radical_orbit.bridge.static import ExplorerFiles
    scans = []
    monkeypatch.setattr(registry, "available", lambda: scans.append(1) or {})
    files = ExplorerFiles(str(tmp_path))
    for _ in range(3):
        assert files.plugin_module("no_such_module_xyz.js") is None
    assert len(scans) == 1
