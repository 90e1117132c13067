"""Secrets never reach a log, at any level: parameters are redacted by their decoded
name (``?%74oken=`` logs in as ``?token=``), credentials after an auth scheme too."""
import glob
import http.client
import logging
import os
import sys

import pytest

from orbit_procs import wait_for
from radical_orbit.logs import REDACTED, RedactingFormatter, redact


@pytest.mark.parametrize("line, kept", [
    ('"GET /?%74oken=SECRET HTTP/1.1" 303 0', '"GET /?%74oken=<redacted> HTTP/1.1" 303 0'),
    ('"GET /?%74%6Fken=SECRET&a=1 HTTP/1.1"', '"GET /?%74%6Fken=<redacted>&a=1 HTTP/1.1"'),
    ("GET /?%2574oken=SECRET", "GET /?%2574oken=<redacted>"),
    ("GET /?TOKEN=SECRET", "GET /?TOKEN=<redacted>"),
    ("GET /ep/echo/x?a=1;token=SECRET", "GET /ep/echo/x?a=1;token=<redacted>"),
    ("GET /?access_token=SECRET&refresh_token=SECRET&password=SECRET&client_secret=SECRET&b=2",
     "GET /?access_token=<redacted>&refresh_token=<redacted>&password=<redacted>"
     "&client_secret=<redacted>&b=2"),
    ("GET /?next=%2Flogin%3Ftoken%3DSECRET", "GET /?next=<redacted>"),
    ("GET /?token%3DSECRET", "GET /?<redacted>"),
    ("Authorization: Bearer SECRET", "Authorization: Bearer <redacted>"),
    ("Cookie: orbit_token=SECRET; theme=dark", "Cookie: orbit_token=<redacted>; theme=dark"),
    ("GET /ep/echo/blob/10?size=3&x=%20 HTTP/1.1", "GET /ep/echo/blob/10?size=3&x=%20 HTTP/1.1"),
    ("the token has only 5 characters", "the token has only 5 characters"),
])
def test_redact_by_decoded_name(line, kept):
    assert redact(line) == kept


def test_redacting_twice_changes_nothing():
    once = redact("GET /?token=SECRET&%74oken=SECRET HTTP/1.1")
    assert redact(once) == once == "GET /?token=<redacted>&%74oken=<redacted> HTTP/1.1"


def test_the_formatter_redacts_arguments_and_tracebacks():
    fmt = RedactingFormatter("%(message)s")
    try:
        raise ValueError("bad url /?%74oken=SECRET")
    except ValueError:
        record = logging.LogRecord("radical_orbit.x", logging.ERROR, __file__, 1, "GET %s failed",
                                   ("/?token=SECRET",), exc_info=sys.exc_info())
    text = fmt.format(record)
    assert "SECRET" not in text and "ValueError: bad url /?%74oken=" + REDACTED in text
    assert text.startswith("GET /?token=" + REDACTED)


def _raw_get(orbit, target, headers=None):
    host, port = orbit.url.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", target, headers=headers or {})   # sent as written: no re-quoting
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_no_secret_reaches_a_log_at_debug(orbit_plain):
    o = orbit_plain
    o.start_bridge()                       # RADICAL_ORBIT_LOG_LVL=DEBUG (orbit_procs)
    o.start_endpoint("ep", "-p", "echo")
    bearer = {"Authorization": "Bearer " + o.token}
    assert _raw_get(o, "/?%74oken=SECRET1") == 303
    assert _raw_get(o, "/?%74%6Fken=SECRET2") == 303
    assert _raw_get(o, "/?%74oken=" + o.token) == 303          # a real login
    assert _raw_get(o, "/ep/echo/ping?token=SECRET3&access_token=SECRET4", bearer) == 200
    assert _raw_get(o, "/ep/echo/ping?x=1", {"Cookie": "orbit_token=" + o.token}) == 200
    assert _raw_get(o, "/ep/nosuchplugin/x?%74oken=SECRET5", bearer) == 404
    assert _raw_get(o, "/health", {"Authorization": "Bearer SECRET6"}) == 401
    logs = os.path.join(o.home, "logs")

    def text():
        out = [o.bridge.output()] + [p.output() for p in o.endpoints.values()]
        for path in glob.glob(os.path.join(logs, "*.log")):
            with open(path, encoding="utf-8", errors="replace") as f:
                out.append(f.read())
        return "\n".join(out)
    # the access log has seen every request: the last one's line is there
    wait_for(lambda: "/health HTTP/1.1\" 401" in text(), 10, "the access log")
    wait_for(lambda: "ping" in text() and "[" in text(), 10, "the endpoint's debug line")
    everything = text()
    assert "?%74oken=<redacted>" in everything and "?%74%6Fken=<redacted>" in everything
    for secret in ["SECRET%d" % i for i in range(1, 7)] + [o.token]:
        # the token is printed once on stdout (the login URL): that line is for the user
        lines = [ln for ln in everything.splitlines() if secret in ln and "Explorer login:" not in ln]
        assert lines == [], "%s leaked: %s" % (secret, lines)
