"""Cross-origin protection: a request the login cookie authenticates must come from the
bridge's own origin when it changes anything (or when the browser marks it cross-site);
``/register`` takes only the Bearer header. In process for the rule, then against a real
bridge with the headers a browser would send. The browser itself: test_explorer.py."""
import json

import pytest
import requests
import websocket

from orbit_procs import wait_for
from radical_orbit.bridge.auth import Auth, normal_origin, origin_problem
from radical_orbit.bridge.framing import Headers
from radical_orbit.errors import Forbidden, Unauthorized
from test_e2e import envelope_of

TOKEN = "t0ken-for-the-rule"


def headers(**fields):
    h = Headers()
    for name, value in fields.items():
        h.add(name.replace("_", "-"), value)
    return h


def cookie(**fields):
    return headers(Cookie="orbit_token=%s" % TOKEN, Host="127.0.0.1:8000", **fields)


# -- the rule, in process -----------------------------------------------------------------
@pytest.mark.parametrize("fields", [
    {"Origin": "http://127.0.0.1:8999"},                       # another port: same site
    {"Origin": "https://127.0.0.1:8000"},                      # another scheme
    {"Origin": "http://localhost:8000"},                       # another host name
    {"Origin": "null"},                                        # sandboxed frame, file://
    {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {},                                                        # no browser said where from
])
def test_a_cookie_post_not_shown_to_be_same_origin_is_refused(fields):
    with pytest.raises(Forbidden, match="cross-origin"):
        Auth(TOKEN).check("POST", cookie(**fields), secure=False)


@pytest.mark.parametrize("fields", [
    {"Origin": "http://127.0.0.1:8000"},
    {"Origin": "HTTP://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "none"},
])
def test_a_cookie_post_from_the_bridges_own_origin_runs(fields):
    Auth(TOKEN).check("POST", cookie(**fields), secure=False)


def test_default_ports_and_tls_are_part_of_the_origin():
    auth = Auth(TOKEN)
    auth.check("DELETE", headers(Cookie="orbit_token=" + TOKEN, Host="orbit.example.org",
                                 Origin="https://orbit.example.org"), secure=True)
    auth.check("PUT", headers(Cookie="orbit_token=" + TOKEN, Host="[::1]:8000",
                              Origin="http://[::1]:8000"), secure=False)
    with pytest.raises(Forbidden):
        auth.check("POST", headers(Cookie="orbit_token=" + TOKEN, Host="orbit.example.org:443",
                                   Origin="http://orbit.example.org"), secure=True)
    assert normal_origin("https://a.b") == ("https", "a.b", 443)
    assert normal_origin("http://a.b/path") is None and normal_origin("file://") is None


def test_a_cookie_get_is_refused_only_when_the_browser_says_cross_site():
    auth = Auth(TOKEN)
    auth.check("GET", cookie(), secure=False)                              # curl, old browsers
    auth.check("GET", cookie(Sec_Fetch_Site="same-origin"), secure=False)  # the Explorer
    for fields in ({"Sec-Fetch-Site": "same-site"}, {"Origin": "http://127.0.0.1:1"}):
        with pytest.raises(Forbidden):
            auth.check("GET", cookie(**fields), secure=False)
    # a WebSocket handshake is a GET that opens a channel for writing
    with pytest.raises(Forbidden):
        auth.check("GET", cookie(Upgrade="websocket"), secure=False)


def test_the_bearer_header_needs_no_origin():
    auth = Auth(TOKEN)
    bearer = headers(Authorization="Bearer " + TOKEN, Host="127.0.0.1:8000")
    auth.check("POST", bearer, secure=False)
    bearer.add("Origin", "http://elsewhere:1")   # no browser sends our token on its own
    auth.check("POST", bearer, secure=False)
    with pytest.raises(Unauthorized):
        auth.check("POST", headers(Authorization="Bearer wrong", Host="127.0.0.1:8000"), secure=False)


def test_register_takes_only_the_bearer_header():
    auth = Auth(TOKEN)
    with pytest.raises(Unauthorized, match="only 'Authorization: Bearer"):
        auth.check("GET", cookie(Upgrade="websocket", Origin="http://127.0.0.1:8000"),
                   secure=False, cookie_ok=False)
    auth.check("GET", headers(Authorization="Bearer " + TOKEN, Upgrade="websocket"),
               secure=False, cookie_ok=False)


def test_open_routes_refuse_cross_origin_writes_only():
    auth = Auth(TOKEN)
    # login CSRF: another page must not log the browser in (or out)
    with pytest.raises(Forbidden):
        auth.check("POST", headers(Host="127.0.0.1:8000", Origin="http://127.0.0.1:8999"),
                   secure=False, open_route=True)
    auth.check("POST", headers(Host="127.0.0.1:8000"), secure=False, open_route=True)  # curl
    # a link from another local app to the Explorer page still opens it
    auth.check("GET", cookie(Sec_Fetch_Site="same-site"), secure=False, open_route=True)


def test_with_auth_off_other_pages_still_cannot_write():
    off = Auth(None)
    with pytest.raises(Forbidden):
        off.check("POST", headers(Host="127.0.0.1:8000", Sec_Fetch_Site="cross-site"), secure=False)
    with pytest.raises(Forbidden):
        off.check("GET", headers(Host="127.0.0.1:8000", Upgrade="websocket",
                                 Origin="http://127.0.0.1:8999"), secure=False, cookie_ok=False)
    off.check("POST", headers(Host="127.0.0.1:8000"), secure=False)


def test_origin_problem_names_the_reason():
    assert "Origin 'http://x:1'" in origin_problem("POST", cookie(Origin="http://x:1"), False, True)
    assert origin_problem("GET", headers(Origin="http://x:1"), False, False) is None


# -- a real bridge, with the headers a browser sends ----------------------------------------
def test_cookie_requests_from_another_origin_change_nothing(orbit_plain):
    o = orbit_plain
    o.start_bridge()
    o.start_endpoint("ep", "-p", "echo")
    o.start_endpoint("victim", "-p", "echo")
    port = o.url.rsplit(":", 1)[1]
    own, foreign = "http://127.0.0.1:%s" % port, "http://127.0.0.1:%d" % (int(port) % 60000 + 1)
    jar = {"orbit_token": o.token}
    events = o.get("events?topic=notification", stream=True, timeout=30)
    lines = events.iter_lines()

    def post(path, **hdrs):
        return requests.post("%s/%s" % (o.url, path), cookies=jar, json={"x": 1}, headers=hdrs, timeout=10)
    for hdrs in ({"Origin": foreign}, {"Origin": foreign, "Sec-Fetch-Site": "same-site"},
                 {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}, {}):
        detail = envelope_of(post("ep/echo/notify/csrf", **hdrs), 403)["detail"]
        assert "cross-origin" in detail
        envelope_of(post("endpoint/disconnect/victim", **hdrs), 403)
        envelope_of(post("bridge/terminate", **hdrs), 403)
    # a cross-site GET with the cookie is refused too; a plain one (curl with a cookie) runs
    r = requests.get(o.url + "/ep/echo/ping", cookies=jar, headers={"Sec-Fetch-Site": "same-site"}, timeout=10)
    envelope_of(r, 403)
    assert requests.get(o.url + "/ep/echo/ping", cookies=jar, timeout=10).status_code == 200
    # the same requests from the bridge's own origin run
    assert post("ep/echo/notify/same-origin", Origin=own).status_code == 200
    assert post("ep/echo/notify/fetch-metadata", **{"Sec-Fetch-Site": "same-origin"}).status_code == 200
    # and a script's Bearer header needs no Origin
    assert o.get("ep/echo/notify/bearer", "POST", json={}).status_code == 200
    topics = []
    for line in lines:
        event = json.loads(line[6:]) if line.startswith(b"data: ") else {}
        if event.get("topic") == "notification":
            topics.append(event["data"]["topic"])
            if topics[-1] == "bearer":
                break
    events.close()
    assert topics == ["same-origin", "fetch-metadata", "bearer"]
    assert "victim" in o.get("endpoint/list", "POST").json()["data"]["endpoints"]
    assert o.bridge.alive()


def test_login_from_another_origin_is_refused(orbit_plain):
    o = orbit_plain
    o.start_bridge()
    own = o.url
    r = requests.post(o.url + "/auth", json={"token": o.token}, headers={"Origin": "http://127.0.0.1:1"}, timeout=10)
    envelope_of(r, 403)
    assert "Set-Cookie" not in r.headers
    envelope_of(requests.delete(o.url + "/auth", headers={"Sec-Fetch-Site": "same-site"}, timeout=10), 403)
    for hdrs in ({"Origin": own}, {}):
        r = requests.post(o.url + "/auth", json={"token": o.token}, headers=hdrs, timeout=10)
        assert r.status_code == 200 and "HttpOnly" in r.headers["Set-Cookie"]


def test_the_origin_of_a_tls_bridge_is_https(orbit):
    orbit.start_bridge()
    port = orbit.url.rsplit(":", 1)[1]
    jar = {"orbit_token": orbit.token}
    kw = dict(cookies=jar, verify=orbit.verify, timeout=10)
    r = requests.post(orbit.url + "/endpoint/list", headers={"Origin": "http://localhost:" + port}, **kw)
    envelope_of(r, 403)
    r = requests.post(orbit.url + "/endpoint/list", headers={"Origin": "https://localhost:" + port}, **kw)
    assert r.status_code == 200


def _ws(o, **kw):
    ws = websocket.WebSocket()
    ws.connect(o.url.replace("http", "ws", 1) + "/register", timeout=10, **kw)
    return ws


def test_register_refuses_the_cookie(orbit_plain):
    o = orbit_plain
    o.start_bridge()
    own = o.url
    for kw in ({"cookie": "orbit_token=" + o.token, "origin": own},
               {"cookie": "orbit_token=" + o.token, "suppress_origin": True},
               {"cookie": "orbit_token=" + o.token, "origin": "http://127.0.0.1:1"}):
        with pytest.raises(websocket.WebSocketBadStatusException) as err:
            _ws(o, **kw)
        assert err.value.status_code in (401, 403)
    # what an endpoint sends: the Bearer header, no Origin
    ws = _ws(o, header=["Authorization: Bearer " + o.token], suppress_origin=True)
    ws.close()


def test_an_event_stream_websocket_with_the_cookie_is_refused(orbit_plain):
    o = orbit_plain
    o.start_bridge()
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        ws = websocket.WebSocket()
        ws.connect(o.url.replace("http", "ws", 1) + "/events", timeout=10,
                   cookie="orbit_token=" + o.token, origin="http://127.0.0.1:1")
    assert err.value.status_code == 403


def test_a_no_auth_bridge_refuses_a_page_from_another_origin(orbit_plain):
    o = orbit_plain
    o.start_bridge("--no-auth")
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        _ws(o, origin="http://127.0.0.1:1")
    assert err.value.status_code == 403
    r = requests.post(o.url + "/bridge/terminate", headers={"Sec-Fetch-Site": "cross-site"}, timeout=10)
    envelope_of(r, 403)
    wait_for(lambda: requests.get(o.url + "/health", timeout=10).status_code == 200, 10, "the bridge")


def test_a_refused_cross_origin_post_is_not_read_to_its_end(orbit_plain):
    """Like a request without the token: the bridge answers at once and closes rather than
    reading a large body a foreign page sends."""
    import socket
    o = orbit_plain
    o.start_bridge()
    port = int(o.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /endpoint/list HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: http://127.0.0.1:1\r\n"
                  b"Cookie: orbit_token=%s\r\nContent-Length: 10485760\r\n\r\n" % (port, o.token.encode()))
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = s.recv(4096)
            assert piece, answer
            answer += piece
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 403") and b"Connection: close" in head


@pytest.mark.parametrize("host, refused", [
    ("evil.example:8000", True), ("EVIL.example", True), ("127.0.0.1.nip.io:8000", True),
    ("127.0.0.1:8000", False), ("[::1]:8000", False), ("localhost:8000", False),
    ("LocalHost", False), ("app.localhost:8000", False), ("myhost", False), (None, False)])
def test_with_auth_off_a_host_header_not_naming_the_bridge_is_refused(host, refused):
    """DNS rebinding: a page whose name now resolves to the bridge is same-origin for the
    browser; with no token to stop it, its Host header is what tells."""
    off = Auth(None, ("myhost",))
    headers = {"Host": host} if host else {}
    if refused:
        with pytest.raises(Forbidden) as err:
            off.check("GET", headers, secure=False)
        assert "not a name of this bridge" in err.value.detail
    else:
        assert off.check("GET", headers, secure=False)
    # with auth on the token decides: a rebinding page has no cookie for its name
    with pytest.raises(Unauthorized):
        Auth(TOKEN).check("GET", headers, secure=False)


def test_a_no_auth_bridge_refuses_a_rebound_host_name(orbit_plain):
    o = orbit_plain
    o.start_bridge("--no-auth")
    port = int(o.url.rsplit(":", 1)[1])
    for host in ("evil.example:%d" % port, "127.0.0.1:%d" % port, "localhost:%d" % port):
        r = requests.post(o.url + "/bridge/staging/register_session",
                          headers={"Host": host, "Origin": "http://%s" % host}, timeout=10)
        if host.startswith("evil"):
            envelope_of(r, 403)
        else:
            assert r.status_code == 200, r.text
