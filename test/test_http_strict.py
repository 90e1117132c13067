"""The bridge's HTTP/1.1 request reader against hostile and malformed requests, over raw
sockets to a real bridge: exact framing grammar (no smuggling), bounded request heads,
deadlines, ``100 Continue`` only after auth, and no body on 1xx/204/304 answers."""
import json
import socket
import time

import pytest

from orbit_procs import wait_for
from radical_orbit import protocol
from test_bridge_protocol import FakeEndpoint, answered


class Raw:
    """One raw client connection: bytes out, answers parsed one at a time."""

    def __init__(self, orbit, timeout: float = 10.0, source: str = "127.0.0.1"):
        host, port = orbit.url.rsplit("/", 1)[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout,
                                             source_address=(source, 0))
        self.file = self.sock.makefile("rb")
        self.token = orbit.token

    def auth(self) -> bytes:
        return b"Authorization: Bearer %s\r\n" % self.token.encode()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self, method: str = "GET"):
        """(status, headers with lower-case names, body) of the next answer; None at EOF."""
        line = self.file.readline()
        if not line:
            return None
        status = int(line.split()[1])
        headers = {}
        while True:
            field = self.file.readline()
            if field in (b"\r\n", b""):
                break
            name, _, value = field.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status < 200 or status in (204, 304) or method == "HEAD":
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self.file.read(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self.file.readline(), 16)
                body += self.file.read(size)
                self.file.readline()
                if not size:
                    return status, headers, body
        return status, headers, self.file.read()

    def closed(self) -> bool:
        """True when the bridge closed the connection (nothing more arrives)."""
        try:
            return self.file.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def envelope_status(body: bytes) -> int:
    data = json.loads(body)
    assert data["error"] is True and data["detail"]
    return data["status_code"]


def refused_and_closed(orbit, request: bytes, status: int) -> str:
    """Sends ``request``, expects exactly one error answer with ``status``, then EOF."""
    raw = Raw(orbit)
    try:
        raw.send(request)
        got = raw.answer()
        assert got is not None, "no answer to %r" % request[:200]
        assert got[0] == status, (got, request[:200])
        assert envelope_status(got[2]) == status
        assert raw.closed(), "the connection stayed open after %r" % request[:200]
        return json.loads(got[2])["detail"]
    finally:
        raw.close()


def body_then_health(orbit, framing: bytes, body: bytes) -> None:
    """POSTs ``body`` framed by the ``framing`` fields with a GET pipelined right after it:
    both must be answered 200 (the body was read exactly to its end)."""
    raw = Raw(orbit)
    try:
        raw.send(b"POST /endpoint/list HTTP/1.1\r\nHost: x\r\n%s%s\r\n%sGET /health HTTP/1.1\r\nHost: x\r\n%s\r\n"
                 % (raw.auth(), framing, body, raw.auth()))
        assert raw.answer("POST")[0] == 200
        assert raw.answer()[0] == 200       # the pipelined request after the body: framing held
    finally:
        raw.close()


def vm_kib(pid: int, field: str) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


# -- chunked bodies -----------------------------------------------------------------------

@pytest.mark.parametrize("path, token, status", [("endpoint/list", False, 401), ("endpoints", False, 405),
                                                 ("auth", False, 400), ("endpoint/list", True, 400)])
def test_a_negative_chunk_size_is_refused_without_buffering_the_body(orbit_plain, path, token, status):
    orbit_plain.start_bridge()
    pid = orbit_plain.bridge.pid
    raw = Raw(orbit_plain)
    raw.send(b"POST /%s HTTP/1.1\r\nHost: x\r\n%sTransfer-Encoding: chunked\r\n\r\n-1\r\n"
             % (path.encode(), raw.auth() if token else b"") + b"x" * 65536)
    got = raw.answer("POST")
    assert got[0] == status and envelope_status(got[2]) == status
    sent = 0
    block = b"x" * (1 << 20)
    try:
        while sent < 256 << 20:              # the finding: 1 GiB was buffered whole
            raw.send(block)
            sent += len(block)
    except OSError:
        pass
    raw.close()
    assert sent < 64 << 20, "the bridge kept reading a body it had refused (%d MiB)" % (sent >> 20)
    assert vm_kib(pid, "VmHWM") < 200 * 1024, "bridge peak RSS %d KiB" % vm_kib(pid, "VmHWM")
    assert orbit_plain.get("health").status_code == 200


@pytest.mark.parametrize("size", [b"1_0", b"+10", b"0x3", b"-1", b" 3", b"3 ", b"", b"3;", b";x",
                                  b"10000000000000000", b"3;a=\"unterminated"])
def test_chunk_sizes_are_exactly_hex_digits(orbit_plain, size):
    orbit_plain.start_bridge()
    raw = Raw(orbit_plain)
    try:    # as many data bytes as a lenient int(size, 16) takes the size to be
        data = b"a" * min(int(size, 16), 100)
    except ValueError:
        data = b"abc"
    request = (b"POST /endpoint/list HTTP/1.1\r\nHost: x\r\n%sTransfer-Encoding: chunked\r\n\r\n"
               b"%s\r\n%s\r\n0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n%s\r\n" % (raw.auth(), size, data, raw.auth()))
    raw.close()
    refused_and_closed(orbit_plain, request, 400)


def test_valid_chunked_bodies_with_extensions_and_trailers_are_read(orbit_plain):
    orbit_plain.start_bridge()
    body_then_health(orbit_plain, b"Transfer-Encoding: Chunked\r\n",
                     b"3;name=value;q=\"a \\\"b\"\r\nabc\r\n00A \t;x\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n")


def test_chunk_data_must_end_with_crlf(orbit_plain):
    orbit_plain.start_bridge()
    raw = Raw(orbit_plain)
    request = (b"POST /endpoint/list HTTP/1.1\r\nHost: x\r\n%sTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabcX\r\n0\r\n\r\n" % raw.auth())
    raw.close()
    refused_and_closed(orbit_plain, request, 400)


# -- Content-Length and Transfer-Encoding ----------------------------------------------------

def test_transfer_encoding_with_content_length_is_400_and_the_smuggled_request_never_runs(orbit_plain):
    orbit_plain.start_bridge()
    raw = Raw(orbit_plain)
    smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n%s\r\n" % raw.auth()
    body = b"0\r\n\r\n" + smuggled
    request = (b"POST /endpoint/list HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n%s" % (raw.auth(), len(body), body))
    raw.close()
    detail = refused_and_closed(orbit_plain, request, 400)
    assert "Transfer-Encoding and Content-Length" in detail


@pytest.mark.parametrize("lengths", [(b"5", b"30"), (b"5, 30",), (b"5", b"5, 6")])
def test_differing_content_lengths_are_400(orbit_plain, lengths):
    orbit_plain.start_bridge()
    raw = Raw(orbit_plain)
    fields = b"".join(b"Content-Length: %s\r\n" % v for v in lengths)
    request = b"POST /endpoint/list HTTP/1.1\r\nHost: x\r\n%s%s\r\nhello" % (raw.auth(), fields)
    raw.close()
    refused_and_closed(orbit_plain, request, 400)


def test_repeated_equal_content_lengths_are_one(orbit_plain):
    orbit_plain.start_bridge()
    body_then_health(orbit_plain, b"Content-Length: 5\r\nContent-Length: 5, 5\r\n", b"hello")


@pytest.mark.parametrize("value", [b"+10", b"1_0", b"0x3", b"-1", b"1 0", b"\xb2", b"", b"1" * 30])
def test_content_length_is_digits_only(orbit_plain, value):
    orbit_plain.start_bridge()
    raw = Raw(orbit_plain)
    request = b"POST /endpoint/list HTTP/1.1\r\nHost: x\r\n%sContent-Length: %s\r\n\r\n0123456789" % (
        raw.auth(), value)
    raw.close()
    refused_and_closed(orbit_plain, request, 413 if len(value) == 30 else 400)


@pytest.mark.parametrize("coding", [b"xchunked", b"chunked, gzip", b"gzip, chunked", b"identity",
                                    b"chunked, chunked", b"chunked\x0b"])
def test_transfer_encodings_other_than_chunked_are_501(orbit_plain, coding):
    orbit_plain.start_bridge()
    raw = Raw(orbit_plain)
    request = (b"POST /endpoint/list HTTP/1.1\r\nHost: x\r\n%sTransfer-Encoding: %s\r\n\r\n"
               b"3\r\nabc\r\n0\r\n\r\n" % (raw.auth(), coding))
    raw.close()
    refused_and_closed(orbit_plain, request, 400 if coding.endswith(b"\x0b") else 501)


def test_transfer_encoding_in_http_1_0_is_400(orbit_plain):
    orbit_plain.start_bridge()
    raw = Raw(orbit_plain)
    request = b"POST /endpoint/list HTTP/1.0\r\n%sTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % raw.auth()
    raw.close()
    refused_and_closed(orbit_plain, request, 400)


def test_a_body_a_route_leaves_unread_is_never_taken_for_the_next_request(orbit_plain):
    orbit_plain.start_bridge()
    raw = Raw(orbit_plain)
    smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s"
             % (raw.auth(), len(smuggled), smuggled))
    assert raw.answer()[0] == 200
    assert raw.closed()
    raw.close()


# -- Expect: 100-continue ---------------------------------------------------------------------

def test_100_continue_is_not_sent_before_auth(orbit_plain):
    orbit_plain.start_bridge()
    raw = Raw(orbit_plain)
    raw.send(b"POST /endpoint/list HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
             b"Expect: 100-continue\r\n\r\n")
    status, headers, body = raw.answer("POST")
    assert status == 401 and envelope_status(body) == 401
    assert headers.get("connection") == "close" and raw.closed()
    raw.close()


def test_100_continue_comes_once_the_body_is_wanted(orbit_plain):
    orbit_plain.start_bridge()
    raw = Raw(orbit_plain)
    raw.send(b"POST /endpoint/list HTTP/1.1\r\nHost: x\r\n%sContent-Length: 5\r\n"
             b"Expect: 100-continue\r\n\r\n" % raw.auth())
    assert raw.answer("POST")[0] == 100
    raw.send(b"hello")
    assert raw.answer("POST")[0] == 200
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n%s\r\n" % raw.auth())
    assert raw.answer()[0] == 200            # still the same keep-alive connection
    raw.close()


def test_a_refused_100_continue_request_is_answered_without_reading_the_body(orbit_plain):
    orbit_plain.start_bridge()
    raw = Raw(orbit_plain)
    raw.send(b"POST /nosuch/x HTTP/1.1\r\nHost: x\r\n%sContent-Length: 5\r\n"
             b"Expect: 100-continue\r\n\r\n" % raw.auth())
    status, _headers, body = raw.answer("POST")
    assert status == 404 and envelope_status(body) == 404
    assert raw.closed()
    raw.close()


# -- request heads: grammar, size, deadline -------------------------------------------------

@pytest.mark.parametrize("head", [
    b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n",               # whitespace before the colon
    b"GET /health HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",     # obsolete line folding
    b"GET /health HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",            # NUL in a value
    b"GET /health HTTP/1.1\r\nX-A: a\rb\r\n\r\n",              # bare CR
    b"GET  /health HTTP/1.1\r\n\r\n",                          # two spaces
    b"GET /he\x7flth HTTP/1.1\r\n\r\n",                         # control character in the target
    b"G(T /health HTTP/1.1\r\n\r\n",                           # method is not a token
    b"GET /health HTTP/1.1 \r\n\r\n",                          # trailing space
    b"GET /health http/1.1\r\n\r\n",
])
def test_malformed_heads_are_400(orbit_plain, head):
    orbit_plain.start_bridge()
    refused_and_closed(orbit_plain, head, 400)


def test_bare_lf_line_ends_and_leading_empty_lines_are_accepted(orbit_plain):
    orbit_plain.start_bridge()
    raw = Raw(orbit_plain)
    raw.send(b"\r\nGET /health HTTP/1.1\nHost: x\n%s\n" % raw.auth().replace(b"\r\n", b"\n"))
    assert raw.answer()[0] == 200
    raw.close()


def test_a_head_over_the_cap_is_431_and_a_long_request_line_414(orbit_plain):
    orbit_plain.start_bridge()
    big = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: %s\r\n" % (b"p" * 4000) * 17 + b"\r\n"
    refused_and_closed(orbit_plain, big, 431)
    refused_and_closed(orbit_plain, b"GET /health HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", 431)
    refused_and_closed(orbit_plain, b"GET /%s HTTP/1.1\r\n\r\n" % (b"a" * 70000), 414)


def test_max_head_bytes_is_a_setting(orbit_plain):
    orbit_plain.start_bridge("--max-head-bytes", "4096")
    raw = Raw(orbit_plain)
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n%sX-Pad: %s\r\n\r\n" % (raw.auth(), b"p" * 5000)
    raw.close()
    refused_and_closed(orbit_plain, head, 431)
    assert orbit_plain.get("health", headers={"X-Pad": "p" * 3000}).status_code == 200


def test_a_trickled_head_is_cut_at_the_deadline(orbit_plain):
    orbit_plain.start_bridge("--head-timeout", "2")
    raw = Raw(orbit_plain)
    started = time.monotonic()
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    raw.sock.settimeout(0.3)
    answer = b""
    while time.monotonic() - started < 8:      # one byte every 0.3 s would hold it forever
        try:
            raw.send(b"X")
            answer = raw.sock.recv(65536)
            break
        except socket.timeout:
            continue
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert 1.5 < time.monotonic() - started < 5
    raw.close()


def test_an_idle_unauthenticated_connection_is_closed_after_the_head_timeout(orbit_plain):
    orbit_plain.start_bridge("--head-timeout", "1")
    quiet = Raw(orbit_plain)
    started = time.monotonic()
    assert quiet.closed()
    assert time.monotonic() - started < 4
    quiet.close()


def test_an_authenticated_keep_alive_connection_may_idle_past_the_head_timeout(orbit_plain):
    orbit_plain.start_bridge("--head-timeout", "1")
    raw = Raw(orbit_plain)
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n%s\r\n" % raw.auth())
    assert raw.answer()[0] == 200
    time.sleep(2.0)                 # longer than the head timeout: what is tested
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n%s\r\n" % raw.auth())
    assert raw.answer()[0] == 200
    raw.close()


# -- answers without a body ---------------------------------------------------------------------

@pytest.mark.parametrize("where", ["hpc1", "bridge"])
def test_204_and_304_answers_carry_no_body(orbit_plain, where):
    orbit_plain.start_bridge("-p", "sysinfo,echo")
    orbit_plain.start_endpoint("hpc1", "-p", "echo")
    raw = Raw(orbit_plain)
    for code in (204, 304, 200):
        raw.send(b"GET /%s/echo/status/%d HTTP/1.1\r\nHost: x\r\n%s\r\n" % (where.encode(), code, raw.auth()))
        status, headers, body = raw.answer()
        assert status == code
        if code != 200:
            assert "content-length" not in headers and "transfer-encoding" not in headers
    # a body written after the 204 or the 304 would have been read as this answer's head
    assert json.loads(body) == {"status": 200}
    raw.close()


def test_an_endpoint_answer_with_a_1xx_status_is_502(orbit_plain):
    orbit_plain.start_bridge()
    fake = FakeEndpoint(orbit_plain)
    r = answered(orbit_plain, fake, "fake/fake/x", status=101, end=True, body=b"", headers={})
    assert r.status_code == 502 and r.json()["error"] is True


def test_a_streamed_204_from_an_endpoint_has_no_body(orbit_plain):
    orbit_plain.start_bridge()
    fake = FakeEndpoint(orbit_plain)
    raw = Raw(orbit_plain)
    raw.send(b"GET /fake/fake/x HTTP/1.1\r\nHost: x\r\n%s\r\n" % raw.auth())
    req = fake.next_request()
    fake.send(protocol.RESPONSE, id=req["id"], status=204, headers={}, body=b"not for the client",
              end=False, length=None)
    status, headers, _ = raw.answer()
    assert status == 204 and "transfer-encoding" not in headers
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n%s\r\n" % raw.auth())
    assert raw.answer()[0] == 200
    raw.close()
    wait_for(lambda: fake.recv()["k"] == protocol.CANCEL, 10, "the cancel of the unsent body")


@pytest.mark.parametrize("request_head", [b"POST /endpoints", b"POST /endpoint/nosuch", b"PUT /health"])
def test_a_request_failing_before_auth_is_not_read_to_its_end(orbit_plain, request_head):
    """An unknown route or a wrong method is found before the token is checked: a client
    that never authenticated still gets no more of our reading than a small body's worth
    (it got 16 MiB, waiting up to the head deadline for a body it never sent)."""
    orbit_plain.start_bridge("--head-timeout", "60")
    raw = Raw(orbit_plain, timeout=20)
    raw.send(request_head + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n" + b"x" * 1024)
    status, headers, body = raw.answer()
    assert status in (400, 404, 405) and envelope_status(body) == status
    assert headers.get("connection") == "close" and raw.closed()
    raw.close()


def test_a_response_header_name_with_a_line_break_is_dropped(orbit_plain):
    orbit_plain.start_bridge()
    fake = FakeEndpoint(orbit_plain)
    raw = Raw(orbit_plain)
    raw.send(b"GET /fake/fake/x HTTP/1.1\r\nHost: x\r\n%s\r\n" % raw.auth())
    req = fake.next_request()
    fake.send(protocol.RESPONSE, id=req["id"], status=200, end=True, body=b"{}",
              headers={"X-Split\n": "v", "X-Fine": "w"})
    status, headers, body = raw.answer()
    assert status == 200 and headers.get("x-fine") == "w" and body == b"{}"
    assert not any(name.startswith("x-split") or "\n" in name for name in headers)
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n%s\r\n" % raw.auth())
    assert raw.answer()[0] == 200
    raw.close()
