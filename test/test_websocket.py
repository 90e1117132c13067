"""Tests for radical_orbit.websocket against a real echo server subprocess.

The websockets client (an independent implementation) checks the happy
paths; raw sockets send the malformed frames a well-behaved client never
would.
"""

import base64
import http.client
import json
import os
import queue
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from radical_orbit import websocket as ws  # noqa: E402
from radical_orbit.tlssocket import TLSSocket  # noqa: E402

ECHO_SERVER = os.path.join(HERE, "ws_echo_server.py")
TIMEOUT = 20.0
MAX_SIZE = 2 * 2 ** 20


def start_server(*args):
    """Start the echo server on a free port; return (process, port) once it listens."""
    proc = subprocess.Popen(
        [sys.executable, ECHO_SERVER, "--port", "0"] + list(args),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=TIMEOUT)
    except queue.Empty:
        line = ""
    if not line.startswith("READY "):
        proc.kill()
        _, err = proc.communicate(timeout=TIMEOUT)
        pytest.fail("echo server did not start: %r %s" % (line, err))
    return proc, int(line.split()[1])


def stop_server(proc):
    proc.terminate()
    try:
        proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def port():
    proc, port = start_server("--max-size", str(MAX_SIZE))
    yield port
    stop_server(proc)


@pytest.fixture
def client(port):
    sync_client = pytest.importorskip("websockets.sync.client")
    with sync_client.connect("ws://127.0.0.1:%d/" % port, open_timeout=TIMEOUT,
                             close_timeout=TIMEOUT, max_size=None) as conn:
        yield conn


# ------------------------------------------------------------------ raw client

def mask_frame(opcode, payload, fin=True, rsv=0, masked=True):
    """Encode a client frame by hand (independently of the module under test)."""
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 2 ** 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawClient:
    """A bare-socket WebSocket client that can break the rules on purpose."""

    def __init__(self, port, pipelined=b""):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        self.sock.sendall((
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (port, key)).encode("ascii") + pipelined)
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed the connection")
        return data

    def _read(self, count):
        while len(self.buffer) < count:
            self.buffer += self._recv()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def send(self, *args, **kwargs):
        self.sock.sendall(mask_frame(*args, **kwargs))

    def recv_frame(self):
        first, second = self._read(2)
        assert not second & 0x80, "server frames must not be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(length)

    def expect_close(self):
        """Read until the server's close frame; return its code (None if empty)."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == ws.OPCODE_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if payload else None

    def expect_eof(self):
        """True once the server hung up (after any buffered bytes)."""
        while True:
            if not self.sock.recv(65536):
                return True

    def close(self):
        self.sock.close()


@pytest.fixture
def raw(port):
    conn = RawClient(port)
    yield conn
    conn.close()


# --------------------------------------------------------- websockets client

def test_text_echo(client):
    client.send("héllo wörld ✓")
    assert client.recv(timeout=TIMEOUT) == "héllo wörld ✓"


def test_binary_echo(client):
    client.send(b"\x00\x01\xfe\xff")
    assert client.recv(timeout=TIMEOUT) == b"\x00\x01\xfe\xff"


def test_large_binary_echo(client):
    data = os.urandom(2 ** 20)
    client.send(data)
    assert client.recv(timeout=TIMEOUT) == data


def test_fragmented_message(client):
    client.send(["frag", "mented ", "méssage"])
    assert client.recv(timeout=TIMEOUT) == "fragmented méssage"
    client.send([b"\x01\x02", b"\x03"])
    assert client.recv(timeout=TIMEOUT) == b"\x01\x02\x03"


def test_ping_pong(client):
    assert client.ping(b"are you there").wait(TIMEOUT)


def test_close_handshake_echoes_code(client):
    client.close(4001, "bye")
    assert client.protocol.close_code == 4001


def test_oversize_message_closes_1009(client):
    exceptions = pytest.importorskip("websockets.exceptions")
    client.send(b"x" * (MAX_SIZE + 1))
    with pytest.raises(exceptions.ConnectionClosedError) as info:
        client.recv(timeout=TIMEOUT)
    assert info.value.rcvd.code == ws.CLOSE_MESSAGE_TOO_BIG


def test_oversize_fragmented_message_closes_1009(client):
    exceptions = pytest.importorskip("websockets.exceptions")
    client.send([b"x" * (MAX_SIZE // 2), b"y" * (MAX_SIZE // 2), b"z"])
    with pytest.raises(exceptions.ConnectionClosedError) as info:
        client.recv(timeout=TIMEOUT)
    assert info.value.rcvd.code == ws.CLOSE_MESSAGE_TOO_BIG


# ------------------------------------------------------------------ handshake

def handshake_response(port, **overrides):
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode("ascii"),
        "Sec-WebSocket-Version": "13",
    }
    headers.update(overrides)
    headers = {name: value for name, value in headers.items() if value is not None}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/", headers=headers)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def test_wrong_version_gets_426(port):
    status, headers, body = handshake_response(port, **{"Sec-WebSocket-Version": "8"})
    assert status == 426
    assert ("Sec-WebSocket-Version", "13") in headers
    assert json.loads(body.decode("utf-8"))["status_code"] == 426


def test_missing_version_gets_426(port):
    status, headers, _ = handshake_response(port, **{"Sec-WebSocket-Version": None})
    assert status == 426
    assert ("Sec-WebSocket-Version", "13") in headers


def test_missing_key_gets_400(port):
    status, _, body = handshake_response(port, **{"Sec-WebSocket-Key": None})
    assert status == 400
    answer = json.loads(body.decode("utf-8"))
    assert answer["error"] is True and answer["status_code"] == 400 and answer["detail"]


def test_short_key_gets_400(port):
    short = base64.b64encode(os.urandom(8)).decode("ascii")
    status, _, _ = handshake_response(port, **{"Sec-WebSocket-Key": short})
    assert status == 400


def test_plain_get_is_not_an_upgrade(port):
    status, _, body = handshake_response(port, Upgrade=None, Connection=None)
    assert status == 200 and body


# ------------------------------------------------------- protocol violations

def test_invalid_utf8_closes_1007(raw):
    raw.send(ws.OPCODE_TEXT, b"ok \xff")
    assert raw.expect_close() == ws.CLOSE_INVALID_DATA
    assert raw.expect_eof()


def test_invalid_utf8_in_first_fragment_fails_fast(raw):
    raw.send(ws.OPCODE_TEXT, b"\xed\xa0\x80", fin=False)
    assert raw.expect_close() == ws.CLOSE_INVALID_DATA


def test_truncated_utf8_at_message_end_closes_1007(raw):
    raw.send(ws.OPCODE_TEXT, "é".encode("utf-8")[:1])
    assert raw.expect_close() == ws.CLOSE_INVALID_DATA


def test_unmasked_frame_closes_1002(raw):
    raw.send(ws.OPCODE_BINARY, b"hello", masked=False)
    assert raw.expect_close() == ws.CLOSE_PROTOCOL_ERROR
    assert raw.expect_eof()


@pytest.mark.parametrize("frames", [
    [(ws.OPCODE_BINARY, b"x", {"rsv": 0x40})],
    [(0x3, b"", {})],
    [(ws.OPCODE_CONT, b"x", {})],
    [(ws.OPCODE_TEXT, b"a", {"fin": False}), (ws.OPCODE_TEXT, b"b", {})],
    [(ws.OPCODE_PING, b"x" * 126, {})],
    [(ws.OPCODE_PING, b"x", {"fin": False})],
    [(ws.OPCODE_CLOSE, b"\x03", {})],
    [(ws.OPCODE_CLOSE, struct.pack("!H", 1005), {})],
    [(ws.OPCODE_CLOSE, struct.pack("!H", 2999), {})],
], ids=["rsv", "opcode", "orphan-cont", "nested-start", "long-ping", "fragmented-ping",
        "close-1-byte", "close-1005", "close-2999"])
def test_protocol_errors_close_1002(raw, frames):
    for opcode, payload, options in frames:
        raw.send(opcode, payload, **options)
    assert raw.expect_close() == ws.CLOSE_PROTOCOL_ERROR


def test_64bit_length_with_high_bit_closes_1002(raw):
    raw.sock.sendall(struct.pack("!BBQ", 0x82, 0xFF, 2 ** 63) + os.urandom(4))
    assert raw.expect_close() == ws.CLOSE_PROTOCOL_ERROR


def test_close_reason_not_utf8_closes_1007(raw):
    raw.send(ws.OPCODE_CLOSE, struct.pack("!H", 1000) + b"\xff")
    assert raw.expect_close() == ws.CLOSE_INVALID_DATA


def test_control_frames_between_fragments(raw):
    raw.send(ws.OPCODE_TEXT, b"frag", fin=False)
    raw.send(ws.OPCODE_PING, b"mid")
    raw.send(ws.OPCODE_CONT, b"ment", fin=False)
    raw.send(ws.OPCODE_PONG, b"unsolicited")
    raw.send(ws.OPCODE_CONT, b"ed")
    assert raw.recv_frame() == (ws.OPCODE_PONG, b"mid")
    assert raw.recv_frame() == (ws.OPCODE_TEXT, b"fragmented")


def test_frames_sent_with_the_handshake_are_not_lost(port):
    raw = RawClient(port, pipelined=mask_frame(ws.OPCODE_TEXT, b"eager") + mask_frame(ws.OPCODE_BINARY, b"\x01"))
    try:
        assert raw.recv_frame() == (ws.OPCODE_TEXT, b"eager")
        assert raw.recv_frame() == (ws.OPCODE_BINARY, b"\x01")
    finally:
        raw.close()


def test_empty_close_is_answered_with_1000(raw):
    raw.send(ws.OPCODE_CLOSE, b"")
    assert raw.expect_close() == ws.CLOSE_NORMAL
    assert raw.expect_eof()


# ------------------------------------------------------------------------ TLS

@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for localhost / 127.0.0.1: (certfile, keyfile)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command not available")
    directory = tmp_path_factory.mktemp("tls")
    key, cert = str(directory / "key.pem"), str(directory / "cert.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT)
    return cert, key


@pytest.fixture(scope="module")
def tls_server(tls_cert):
    pytest.importorskip("websockets.sync.client")
    cert, key = tls_cert
    proc, port = start_server("--max-size", str(MAX_SIZE), "--cert", cert, "--key", key)
    yield port, cert
    stop_server(proc)


def test_tls_echo(tls_server):
    from websockets.sync.client import connect
    port, cert = tls_server
    context = ssl.create_default_context(cafile=cert)
    with connect("wss://127.0.0.1:%d/" % port, ssl=context, open_timeout=TIMEOUT,
                 close_timeout=TIMEOUT, max_size=None) as conn:
        conn.send("secure ✓")
        assert conn.recv(timeout=TIMEOUT) == "secure ✓"
        data = os.urandom(2 ** 20)
        conn.send(data)
        assert conn.recv(timeout=TIMEOUT) == data
        assert conn.ping(b"tls").wait(TIMEOUT)
        conn.close(4002)
        assert conn.protocol.close_code == 4002


def test_tls_stalled_handshake_does_not_block_others(tls_server):
    from websockets.sync.client import connect
    port, cert = tls_server
    stalled = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        context = ssl.create_default_context(cafile=cert)
        with connect("wss://127.0.0.1:%d/" % port, ssl=context, open_timeout=TIMEOUT,
                     close_timeout=TIMEOUT) as conn:
            conn.send("still served")
            assert conn.recv(timeout=TIMEOUT) == "still served"
    finally:
        stalled.close()


# ------------------------------------------------- in-process, on a socketpair

def make_pair(**kwargs):
    server_sock, client_sock = socket.socketpair()
    client_sock.settimeout(TIMEOUT)
    return ws.WebSocket(server_sock, **kwargs), server_sock, client_sock


def read_server_frame(sock, buffer):
    """(opcode, payload, rest of buffer) of one unmasked frame read from sock."""
    def need(count):
        nonlocal buffer
        while len(buffer) < count:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            buffer += chunk
    need(2)
    length = buffer[1] & 0x7F
    offset = 2
    if length == 126:
        need(4)
        (length,) = struct.unpack("!H", buffer[2:4])
        offset = 4
    elif length == 127:
        need(10)
        (length,) = struct.unpack("!Q", buffer[2:10])
        offset = 10
    need(offset + length)
    return buffer[0] & 0x0F, buffer[offset:offset + length], buffer[offset + length:]


def test_apply_mask_matches_bytewise_xor():
    key = b"\x01\x82\x43\xf4"
    data = os.urandom(1001)
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert ws.apply_mask(key, data) == expected
    assert ws.apply_mask(key, data[5:], 5) == expected[5:]
    assert ws.apply_mask(key, b"") == b""
    for size in (ws.LANE_MASK_MIN - 1, ws.LANE_MASK_MIN, 300001):
        data = os.urandom(size)
        expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
        for offset in (0, 1, 2, 3, 6):
            assert ws.apply_mask(key, data[offset:], offset) == expected[offset:]


def test_mask_in_place_masks_only_past_start():
    key = b"\x9a\x02\x7e\xc1"
    for size in (0, 3, ws.LANE_MASK_MIN - 1, ws.LANE_MASK_MIN + 5, 262147):
        data = os.urandom(size)
        for start, offset in ((0, 0), (14, 0), (3, 7)):
            head = os.urandom(start)
            buffer = bytearray(head + data)
            ws.mask_in_place(buffer, key, start, offset)
            assert bytes(buffer[:start]) == head
            assert bytes(buffer[start:]) == bytes(b ^ key[(i + offset) % 4] for i, b in enumerate(data))


def test_client_frames_are_masked_and_decode_back():
    payload = os.urandom(70000)
    frame = ws.encode_client_frame(ws.OPCODE_BINARY, payload)
    assert frame[0] == 0x82 and frame[1] == 0x80 | 127
    length = int.from_bytes(frame[2:10], "big")
    key = frame[10:14]
    assert length == len(payload) and ws.apply_mask(key, frame[14:]) == payload
    assert frame[14:] != payload


def test_concurrent_senders_never_interleave_frames():
    conn, server_sock, client_sock = make_pair()
    payloads = [bytes([n]) * (70000 + n) for n in range(8)]
    errors = []

    def sender(payload):
        try:
            for _ in range(5):
                conn.send_binary(payload)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    buffer = b""
    received = []
    for _ in range(5 * len(payloads)):
        opcode, payload, buffer = read_server_frame(client_sock, buffer)
        assert opcode == ws.OPCODE_BINARY
        received.append(payload)
    for thread in threads:
        thread.join(TIMEOUT)
    assert not errors
    assert sorted(received) == sorted(payloads * 5)
    server_sock.close()
    client_sock.close()


def test_close_from_another_thread_while_recv_blocks():
    conn, server_sock, client_sock = make_pair()
    result = queue.Queue()
    reader = threading.Thread(target=lambda: result.put(conn.recv()))
    reader.start()
    closer = threading.Thread(target=conn.close, args=(4003, "shutting down"))
    closer.start()
    opcode, payload, _ = read_server_frame(client_sock, b"")
    assert (opcode, payload) == (ws.OPCODE_CLOSE, struct.pack("!H", 4003) + b"shutting down")
    assert conn.closed
    with pytest.raises(ws.ConnectionClosed):
        conn.send_text("too late")
    client_sock.sendall(mask_frame(ws.OPCODE_CLOSE, struct.pack("!H", 4003)))
    assert result.get(timeout=TIMEOUT) is None
    closer.join(TIMEOUT)
    assert not closer.is_alive()
    assert conn.close_code == 4003
    conn.close()
    server_sock.close()
    client_sock.close()


def test_close_reason_is_cut_at_a_character_boundary():
    payload = ws._encode_close_payload(1000, "é" * 100)
    assert len(payload) <= 125
    payload[2:].decode("utf-8")
    with pytest.raises(ValueError):
        ws._encode_close_payload(1005, "")


def test_peer_close_then_send_raises_and_close_is_idempotent():
    conn, server_sock, client_sock = make_pair()
    client_sock.sendall(mask_frame(ws.OPCODE_CLOSE, struct.pack("!H", 1001) + b"away"))
    assert conn.recv() is None
    assert (conn.close_code, conn.close_reason) == (1001, "away")
    opcode, payload, _ = read_server_frame(client_sock, b"")
    assert (opcode, payload) == (ws.OPCODE_CLOSE, struct.pack("!H", 1001))
    assert client_sock.recv(100) == b""
    with pytest.raises(ws.ConnectionClosed):
        conn.send_binary(b"x")
    with pytest.raises(ws.ConnectionClosed):
        conn.ping()
    conn.close()
    conn.close()
    assert conn.recv() is None
    server_sock.close()
    client_sock.close()


def test_ping_payload_is_limited_to_125_bytes():
    conn, server_sock, client_sock = make_pair()
    with pytest.raises(ValueError):
        conn.ping(b"x" * 126)
    conn.ping(b"x" * 125)
    assert read_server_frame(client_sock, b"")[:2] == (ws.OPCODE_PING, b"x" * 125)
    server_sock.close()
    client_sock.close()


def test_idle_timeout_counts_as_lost():
    conn, server_sock, client_sock = make_pair(idle_timeout=0.2)
    result = queue.Queue()
    threading.Thread(target=lambda: result.put(conn.recv()), daemon=True).start()
    assert result.get(timeout=TIMEOUT) is None
    assert conn.close_code == ws.CLOSE_ABNORMAL
    assert client_sock.recv(100) == b""
    server_sock.close()
    client_sock.close()


def tls_pair(cert, key):
    """(server-side WebSocket, server TLSSocket, client SSLSocket) over a socketpair.

    The server side is wrapped as the bridge wraps its connections; the
    client SSLSocket is only ever used by the test's main thread.
    """
    server_raw, client_raw = socket.socketpair()
    client_raw.settimeout(TIMEOUT)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    server_sock = TLSSocket(server_raw, server_context, server_side=True)
    outcome = queue.Queue()

    def handshake():
        try:
            server_sock.do_handshake(TIMEOUT)
            outcome.put(None)
        except Exception as exc:  # reported below
            outcome.put(exc)

    thread = threading.Thread(target=handshake)
    thread.start()
    client_sock = client_context.wrap_socket(client_raw, server_hostname="localhost")
    error = outcome.get(timeout=TIMEOUT)
    thread.join(TIMEOUT)
    if error is not None:
        raise error
    return ws.WebSocket(server_sock), server_sock, client_sock


def test_tls_senders_and_reader_in_different_threads(tls_cert):
    """Several threads send while the owner blocks in recv: the TLS session must survive.

    (OpenSSL forbids two threads inside one session; unserialized, this
    breaks the connection in a good share of the rounds.)
    """
    senders, per_sender = 4, 150
    for _ in range(20):
        conn, server_sock, client_sock = tls_pair(*tls_cert)
        received = []
        reader = threading.Thread(target=lambda: received.extend(iter(conn.recv, None)))
        reader.start()
        errors = []

        def send(number):
            try:
                for index in range(per_sender):
                    conn.send_binary(struct.pack("!HH", number, index) + bytes([number]) * (100 + index * 37 % 3000))
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
        for thread in threads:
            thread.start()
        buffer = b""
        last = {}
        replies = 0
        for count in range(1, senders * per_sender + 1):
            opcode, payload, buffer = read_server_frame(client_sock, buffer)
            number, index = struct.unpack("!HH", payload[:4])
            assert opcode == ws.OPCODE_BINARY
            assert payload[4:] == bytes([number]) * (100 + index * 37 % 3000)
            assert last.get(number, -1) == index - 1
            last[number] = index
            if count % 10 == 0:
                client_sock.sendall(mask_frame(ws.OPCODE_BINARY, struct.pack("!I", replies) + b"c" * 500))
                replies += 1
        for thread in threads:
            thread.join(TIMEOUT)
        assert not errors
        client_sock.sendall(mask_frame(ws.OPCODE_CLOSE, struct.pack("!H", 1000)))
        reader.join(TIMEOUT)
        assert [struct.unpack("!I", m.data[:4])[0] for m in received] == list(range(replies))
        assert conn.close_code == 1000
        server_sock.close()
        client_sock.close()


def test_tls_close_from_another_thread_when_the_peer_never_answers(tls_cert, monkeypatch):
    monkeypatch.setattr(ws, "CLOSE_TIMEOUT", 0.5)
    conn, server_sock, client_sock = tls_pair(*tls_cert)
    result = queue.Queue()
    reader = threading.Thread(target=lambda: result.put(conn.recv()))
    reader.start()
    conn.close(1001)
    assert read_server_frame(client_sock, b"")[:2] == (ws.OPCODE_CLOSE, struct.pack("!H", 1001))
    assert result.get(timeout=TIMEOUT) is None
    reader.join(TIMEOUT)
    assert conn.close_code == 1001
    server_sock.close()
    client_sock.close()
