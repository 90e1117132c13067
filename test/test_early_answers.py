"""An answer that comes before the bridge has read a request's body (an endpoint
refusing an upload at once) must reach a client that is still sending that body: the
bridge half-closes and drops the rest of the body for a bounded time instead of
closing with unread bytes, which sends a reset that destroys the answer."""
import http.client
import socket
import threading
import time

from radical_orbit import protocol
from radical_orbit.bridge.http import LINGER_SECONDS
from test_bridge_protocol import FakeEndpoint

MiB = 1 << 20
BODY = 12 * MiB          # more than loopback's socket buffers hold, less than the linger bound


def _post(url: str, token: str, path: bytes, result: dict) -> None:
    """POST a 12 MiB body to ``path`` on a raw socket; the answer's status and body (or
    the error that ended the exchange) go into ``result``."""
    host, port = url.rsplit("/", 1)[1].split(":")
    client = socket.create_connection((host, int(port)), timeout=10)
    try:
        client.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                       b"Content-Length: %d\r\n\r\n" % (path, token.encode(), BODY))
        client.sendall(bytes(BODY))
        answer = http.client.HTTPResponse(client)
        answer.begin()
        result.update(status=answer.status, body=answer.read())
    except OSError as exc:
        result["error"] = exc
    finally:
        client.close()


def test_an_early_answer_reaches_a_client_still_sending_its_body(orbit_plain):
    orbit_plain.start_bridge()
    fake = FakeEndpoint(orbit_plain)
    result: dict = {}
    started = time.monotonic()
    sender = threading.Thread(target=_post, args=(orbit_plain.url, orbit_plain.token,
                                                  b"/fake/fake/upload", result))
    sender.start()
    req = fake.next_request()
    assert not req.get("end")                    # the body is still coming
    fake.send(protocol.RESPONSE, id=req["id"], status=409, headers={},
              body=b'{"detail": "exists"}', end=True)
    sender.join(30)
    fake.sock.close()
    assert result.get("status") == 409 and b"exists" in result["body"], result
    # the linger is bounded and holds nothing else up
    assert time.monotonic() - started < LINGER_SECONDS + 10
