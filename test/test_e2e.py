"""End to end: a real bridge (TLS, token auth) and real endpoint processes on loopback."""
import hashlib
import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import msgpack
import pytest
import requests
import websocket

from orbit_procs import wait_for
from radical_orbit import BridgeClient, NotFound
from radical_orbit import protocol


def envelope_of(resp, status):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] is True and body["status_code"] == status and body["detail"]
    return body


def test_register_list_proxy_disconnect(orbit):
    orbit.start_bridge()
    ep = orbit.start_endpoint("hpc1", "-p", "sysinfo,echo", "--role", "standalone")
    data = orbit.get("endpoint/list", "POST").json()["data"]
    assert data["bridge"]["url"] == orbit.url.replace("localhost", "127.0.0.1")
    plugins = data["endpoints"]["hpc1"]["plugins"]
    assert set(plugins) == {"sysinfo", "echo"}
    assert plugins["sysinfo"]["namespace"] == "/hpc1/sysinfo"
    assert set(data["endpoints"]["bridge"]["plugins"]) >= {"sysinfo"}
    summary = orbit.get("endpoints").json()
    row = [r for r in summary["endpoints"] if r["name"] == "hpc1"][0]
    assert row == {"name": "hpc1", "plugins": ["echo", "sysinfo"], "connected": True,
                   "plugin_count": 2, "type": "standalone"}
    assert orbit.get("health").json()["endpoints"] == 1

    r = orbit.get("hpc1/echo/ping?x=1&y=two", headers={"X-Request-ID": "abc-1"})
    assert r.status_code == 200 and r.json() == {"pong": True, "query": {"x": "1", "y": "two"}}
    assert r.headers["X-Request-ID"] == "abc-1"
    sid = orbit.get("hpc1/sysinfo/register_session", "POST").json()["sid"]
    metrics = orbit.get("hpc1/sysinfo/metrics/%s" % sid).json()
    assert metrics["system"]["hostname"] == socket.gethostname()
    envelope_of(orbit.get("hpc1/sysinfo/metrics/nosuchsid"), 404)
    envelope_of(orbit.get("hpc1/nosuchplugin/version"), 404)
    envelope_of(orbit.get("nosuchendpoint/sysinfo/version"), 404)
    envelope_of(orbit.get("bad%20name/sysinfo/version"), 400)
    envelope_of(orbit.get("hpc1/bad%20plugin/version"), 400)
    r = orbit.get("health", headers={"X-Request-ID": "h-2"})
    assert r.headers["X-Request-ID"] == "h-2"
    r = orbit.get("nosuchendpoint/x", headers={"X-Request-ID": "h-3"})
    assert r.status_code == 404 and r.headers["X-Request-ID"] == "h-3"

    r = orbit.get("endpoint/disconnect/hpc1", "POST")
    assert r.json() == {"status": "shutdown", "endpoint": "hpc1"}
    assert ep.wait(10) == 0
    wait_for(lambda: "hpc1" not in orbit.get("endpoint/list", "POST").json()["data"]["endpoints"],
             5, "hpc1 to leave the list")
    envelope_of(orbit.get("endpoint/disconnect/hpc1", "POST"), 404)
    envelope_of(orbit.get("endpoint/disconnect/bridge", "POST"), 400)


def test_every_route_needs_the_token(orbit):
    orbit.start_bridge()
    orbit.start_endpoint("hpc1", "-p", "echo")
    anon = dict(verify=orbit.verify, timeout=10)
    for method, path in [("POST", "endpoint/list"), ("GET", "endpoint/list"), ("GET", "endpoints"),
                         ("POST", "endpoint/disconnect/hpc1"), ("POST", "bridge/terminate"),
                         ("GET", "events"), ("GET", "health"), ("GET", "hpc1/echo/ping"),
                         ("GET", "bridge/sysinfo/homedir"), ("GET", "register")]:
        r = requests.request(method, "%s/%s" % (orbit.url, path), **anon)
        envelope_of(r, 401)
        r = requests.request(method, "%s/%s" % (orbit.url, path),
                             headers={"Authorization": "Bearer wrong"}, **anon)
        envelope_of(r, 401)
    # what a browser needs before login stays open
    assert requests.get(orbit.url + "/", **anon).status_code == 200
    assert requests.get(orbit.url + "/plugins/sysinfo.js", **anon).status_code == 200
    envelope_of(requests.post(orbit.url + "/auth", json={"token": "wrong"}, **anon), 401)
    r = requests.post(orbit.url + "/auth", json={"token": orbit.token}, **anon)
    assert r.status_code == 200
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    assert requests.get(orbit.url + "/health", cookies=r.cookies, **anon).status_code == 200
    r = requests.get(orbit.url + "/?token=" + orbit.token, allow_redirects=False, **anon)
    assert r.status_code == 303 and r.headers["Location"] == "/" and "HttpOnly" in r.headers["Set-Cookie"]
    # the token is printed once for the user (the login URL) but never logged
    log_file = os.path.join(orbit.home, "logs", "bridge.log")

    def logged():
        with open(log_file) as f:
            return f.read()
    wait_for(lambda: "?token=<redacted>" in logged(), 10, "the login request in the access log")
    assert orbit.token not in logged()


def test_proxy_strips_credentials(orbit):
    orbit.start_bridge("-p", "sysinfo,echo")
    orbit.start_endpoint("hpc1", "-p", "echo")
    seen = orbit.get("hpc1/echo/headers", headers={"Cookie": "orbit_token=%s" % orbit.token,
                                                   "X-Request-ID": "rid-9", "X-Custom": "kept"}).json()
    assert "authorization" not in seen["headers"] and "cookie" not in seen["headers"]
    assert seen["headers"]["x-custom"] == "kept" and seen["request_id"] == "rid-9"
    assert orbit.token not in json.dumps(seen)
    local = orbit.get("bridge/echo/headers", headers={"Cookie": "orbit_token=%s" % orbit.token}).json()
    assert "authorization" not in local["headers"] and "cookie" not in local["headers"]


def test_large_bodies_cross_both_ways(orbit):
    orbit.start_bridge()
    orbit.start_endpoint("hpc1", "-p", "echo")
    payload = os.urandom(3 * 2**20 + 17)
    r = orbit.get("hpc1/echo/echo", "POST", data=payload, timeout=60)
    assert r.status_code == 200 and r.content == payload

    def chunks():
        for i in range(64):
            yield bytes([i]) * 2**20
    digest = hashlib.sha256(b"".join(chunks())).hexdigest()
    r = orbit.get("hpc1/echo/echo", "POST", data=chunks(), timeout=120, stream=True)
    h = hashlib.sha256()
    size = 0
    for piece in r.iter_content(2**20):
        h.update(piece)
        size += len(piece)
    assert size == 64 * 2**20 and h.hexdigest() == digest
    r = orbit.get("hpc1/echo/blob/%d" % (20 * 2**20), timeout=60)
    assert len(r.content) == 20 * 2**20


def test_small_requests_are_not_starved_by_a_big_one(orbit):
    orbit.start_bridge()
    orbit.start_endpoint("hpc1", "-p", "echo")
    big = threading.Thread(target=lambda: orbit.get("hpc1/echo/blob/%d" % (200 * 2**20), timeout=120))
    big.start()
    try:
        start = time.monotonic()
        for _ in range(20):
            assert orbit.get("hpc1/echo/ping").status_code == 200
        assert time.monotonic() - start < 10
    finally:
        big.join(120)


def test_dead_endpoint_fails_inflight_with_503(orbit):
    orbit.start_bridge()
    ep = orbit.start_endpoint("hpc1", "-p", "echo")
    result = {}

    def slow():
        start = time.monotonic()
        result["resp"] = orbit.get("hpc1/echo/sleep/30000", timeout=30)
        result["t"] = time.monotonic()
        result["start"] = start
    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: "sleep/30000" in ep.output(), 10, "the request to reach the endpoint")
    killed = time.monotonic()
    ep.signal(signal.SIGKILL)
    t.join(10)
    body = envelope_of(result["resp"], 503)
    assert "hpc1" in body["detail"]
    assert result["t"] - killed < 2.0
    envelope_of(orbit.get("hpc1/echo/ping"), 404)


def test_deadline_gives_504_and_backpressure_503(orbit):
    orbit.start_bridge("--request-timeout", "1", "--max-pending", "3")
    orbit.start_endpoint("hpc1", "-p", "echo", "--workers", "1", "--queue-size", "1")
    r = orbit.get("hpc1/echo/sleep/3000")
    envelope_of(r, 504)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: orbit.get("hpc1/echo/sleep/800"), range(6)))
    statuses = sorted(a.status_code for a in answers)
    assert 503 in statuses, statuses
    busy = [a for a in answers if a.status_code == 503]
    assert all(a.headers.get("Retry-After") for a in busy)
    assert all(a.json()["error"] is True for a in busy)


def test_topology_callback_registered_after_the_snapshot_gets_it(orbit_plain):
    """The README registers a notification callback, then a topology callback: by then the
    stream's one snapshot may have gone by, and the second callback must still get it."""
    orbit = orbit_plain
    orbit.start_bridge()
    bc = BridgeClient(url=orbit.url, token=orbit.token)
    bc.register_callback(lambda *args: None)
    wait_for(lambda: bc._events._topology is not None, 10, "the stream's topology snapshot")
    topologies = []
    bc.register_topology_callback(topologies.append)
    assert [sorted(t["endpoints"]) for t in topologies] == [["bridge"]]
    orbit.start_endpoint("hpc1", "-p", "echo")
    wait_for(lambda: any("hpc1" in t["endpoints"] for t in topologies), 10,
             "the topology callback hearing of hpc1")
    bc.close()


def test_bridge_restart_is_survived_by_endpoints_and_sdk(orbit):
    orbit.start_bridge()
    orbit.start_endpoint("hpc1", "-p", "echo")
    bc = BridgeClient(url=orbit.url, cert=orbit.tls["cert"], token=orbit.token)
    got, topologies = [], []
    arrived = threading.Event()
    bc.register_callback(endpoint_id="hpc1", plugin_name="echo", topic="ping",
                         callback=lambda *args: (got.append(args), arrived.set()))
    bc.register_topology_callback(topologies.append)
    wait_for(lambda: bc._events.connected.is_set() and topologies, 10, "the SDK's event stream")
    orbit.get("hpc1/echo/notify/ping", "POST", json={"n": 1})
    assert arrived.wait(10)
    assert got[0] == ("hpc1", "echo", "ping", {"n": 1})
    last_before = bc._events.last_id

    orbit.bridge.stop()
    arrived.clear()
    restarted = time.monotonic()
    orbit.start_bridge()
    orbit.wait_listed("hpc1", timeout=5)
    assert time.monotonic() - restarted < 5 + 2
    wait_for(lambda: bc._events.connected.is_set() and int(bc._events.last_id) > int(last_before),
             10, "the SDK to resume its event stream")
    wait_for(lambda: any("hpc1" in t["endpoints"] for t in topologies[1:]), 10,
             "a topology callback listing hpc1 after the restart")
    orbit.get("hpc1/echo/notify/ping", "POST", json={"n": 2})
    assert arrived.wait(10)
    assert got[-1] == ("hpc1", "echo", "ping", {"n": 2})
    bc.close()


def test_sse_replays_missed_events_by_last_event_id(orbit):
    orbit.start_bridge()
    orbit.start_endpoint("hpc1", "-p", "echo")
    first = orbit.get("events", stream=True, timeout=10)
    ids = []
    for line in first.iter_lines():
        if line.startswith(b"id: "):
            ids.append(line[4:].decode())
            break
    first.close()
    for i in range(3):
        orbit.get("hpc1/echo/notify/t%d" % i, "POST", json={"i": i})
    resp = orbit.get("events?topic=notification", stream=True, timeout=10,
                     headers={"Last-Event-ID": ids[0]})
    seen = []
    for line in resp.iter_lines():
        if line.startswith(b"data: "):
            seen.append(json.loads(line[6:]))
            if len(seen) == 3:
                break
    resp.close()
    assert [s["data"]["topic"] for s in seen] == ["t0", "t1", "t2"]
    assert all(s["topic"] == "notification" and s["data"]["endpoint"] == "hpc1" for s in seen)


def test_endpoint_buffers_notifications_while_disconnected(orbit):
    orbit.start_bridge()
    ep = orbit.start_endpoint("hpc1", "-p", "echo")
    bc = BridgeClient(url=orbit.url, cert=orbit.tls["cert"], token=orbit.token)
    got = []
    bc.register_callback(callback=lambda e, p, t, d: got.append((t, d)), endpoint_id="hpc1")
    wait_for(lambda: bc._events.connected.is_set(), 10, "the event stream")
    for i in range(3):
        orbit.get("hpc1/echo/notify/while-away?delay_ms=%d" % (1500 + 100 * i), "POST", json={"i": i})
    orbit.bridge.stop()
    wait_for(lambda: ep.output().count("lost the bridge connection") >= 1, 10, "the endpoint to notice")
    wait_for(lambda: "(3 waiting)" in ep.output(), 10, "the endpoint to buffer all three")
    orbit.start_bridge()
    orbit.wait_listed("hpc1", timeout=5, proc=ep)
    wait_for(lambda: len([g for g in got if g[0] == "while-away"]) == 3, 10,
             "the buffered notifications after the restart")
    assert [d["i"] for t, d in got if t == "while-away"] == [0, 1, 2]
    bc.close()


def test_dynamic_plugin_load_is_announced(orbit):
    orbit.start_bridge()
    orbit.start_endpoint("hpc1", "-p", "sysinfo")
    resp = orbit.get("events?topic=topology", stream=True, timeout=10)
    lines = resp.iter_lines()
    next(l for l in lines if l.startswith(b"data: "))
    r = orbit.get("hpc1/_orbit/plugins/load", "POST", json={"plugin": "echo"})
    assert r.status_code == 200 and r.json()["loaded"] == "echo"
    for line in lines:
        if line.startswith(b"data: ") and b'"echo"' in line:
            break
    resp.close()
    assert "echo" in orbit.get("endpoint/list", "POST").json()["data"]["endpoints"]["hpc1"]["plugins"]
    envelope_of(orbit.get("hpc1/_orbit/plugins/load", "POST", json={"plugin": "nosuch"}), 404)
    envelope_of(orbit.get("hpc1/_orbit/plugins/load", "POST", json={"plugin": "echo"}), 409)
    assert orbit.get("hpc1/_orbit/plugins/unload", "POST", json={"name": "echo"}).status_code == 200
    wait_for(lambda: "echo" not in orbit.get("endpoint/list", "POST").json()["data"]["endpoints"]["hpc1"]["plugins"],
             5, "echo to leave the topology")


def test_duplicate_name_is_refused_then_retried(orbit):
    orbit.start_bridge()
    first = orbit.start_endpoint("hpc1", "-p", "echo")
    second = orbit.start_endpoint("hpc1", "-p", "echo", wait=False)
    wait_for(lambda: "taken by a live endpoint" in second.output(), 10, "the duplicate to be refused")
    assert second.alive(), "a refused endpoint keeps retrying"
    first.stop()
    wait_for(lambda: "registered with" in second.output(), 15, "the second to take the name over")
    orbit.wait_listed("hpc1", proc=second)


def test_terminate_stops_bridge_and_endpoints_wait(orbit):
    orbit.start_bridge()
    ep = orbit.start_endpoint("hpc1", "-p", "echo")
    r = orbit.get("bridge/terminate", "POST")
    assert r.json()["status"] == "terminating"
    assert orbit.bridge.wait(10) == 0
    wait_for(lambda: "retrying in" in ep.output(), 10, "the endpoint to retry")
    assert ep.alive()
    orbit.start_bridge()
    orbit.wait_listed("hpc1", timeout=10, proc=ep)


def test_oversized_and_malformed_input_get_the_envelope(orbit):
    orbit.start_bridge()
    orbit.start_endpoint("hpc1", "-p", "echo")
    envelope_of(orbit.get("auth", "POST", data=b"x" * (2 * 2**20)), 413)
    envelope_of(orbit.get("auth", "POST", data=b"{not json"), 400)
    envelope_of(orbit.get("hpc1/echo/notify/x", "POST", data=b"{not json"), 400)
    envelope_of(orbit.get("hpc1/echo/notify/x", "POST", data=b" " * (17 * 2**20), timeout=60), 413)
    envelope_of(orbit.get("hpc1/echo/blob/notanint"), 404)
    envelope_of(orbit.get("hpc1/echo/ping", "DELETE"), 405)
    envelope_of(orbit.get("events?last_event_id=abc"), 400)
    assert orbit.get("hpc1/echo/ping").status_code == 200


def _raw_register(orbit):
    ws = websocket.WebSocket(sslopt={"ca_certs": orbit.tls["cert"]})
    ws.connect(orbit.url.replace("https", "wss") + "/register",
               header=["Authorization: Bearer %s" % orbit.token], timeout=10)
    return ws


def test_malformed_frames_are_refused_with_a_clear_error(orbit):
    orbit.start_bridge()
    ws = _raw_register(orbit)
    ws.send_binary(b"\xc1garbage")
    reply = protocol.decode(ws.recv())
    assert reply["k"] == "error" and "undecodable" in reply["detail"]
    ws.close()
    ws = _raw_register(orbit)
    ws.send_binary(msgpack.packb({"v": 99, "k": "hello", "name": "x"}))
    reply = protocol.decode(ws.recv())
    assert reply["k"] == "error" and "version 99" in reply["detail"]
    ws.close()
    ws = _raw_register(orbit)
    ws.send(protocol.encode("hello", name="bad name!", plugins={}), websocket.ABNF.OPCODE_BINARY)
    reply = protocol.decode(ws.recv())
    assert reply["k"] == "refuse" and reply["status"] == 400 and reply["retry"] is False
    ws.close()
    for name in ("bridge", "events", "health"):
        ws = _raw_register(orbit)
        ws.send(protocol.encode("hello", name=name, plugins={}), websocket.ABNF.OPCODE_BINARY)
        assert protocol.decode(ws.recv())["status"] == 400
        ws.close()
    # the bridge is unharmed
    assert orbit.get("health").status_code == 200


def test_sdk_typed_errors_and_plugin_clients(orbit):
    orbit.start_bridge()
    orbit.start_endpoint("hpc1", "-p", "sysinfo,echo")
    bc = BridgeClient(url=orbit.url, cert=orbit.tls["cert"], token=orbit.token)
    assert bc.list_endpoints() == ["bridge", "hpc1"]
    ec = bc.get_endpoint_client("hpc1")
    si = ec.get_plugin("sysinfo")
    assert si.host_role()["hostname"] == socket.gethostname()
    assert si.get_metrics()["memory"]["total"] > 0
    with pytest.raises(NotFound) as err:
        ec.get_plugin("nosuch")
    assert err.value.status_code == 404
    with pytest.raises(NotFound):
        bc.get_endpoint_client("nosuch").get_plugin("sysinfo")
    with pytest.raises(LookupError):
        bc.get_endpoint_client("nosuch").get_plugin("sysinfo")
    si.close()
    bc.wait_for_endpoint("hpc1", timeout=5)
    with pytest.raises(Exception) as err:
        bc.wait_for_endpoint(["hpc1", "later"], timeout=0.5)
    assert err.value.status_code == 504
    bad = BridgeClient(url=orbit.url, cert=orbit.tls["cert"], token="wrong")
    with pytest.raises(PermissionError):
        bad.health()
    bc.close()


def test_a_client_leaving_mid_download_cancels_the_stream_on_the_endpoint(orbit):
    orbit.start_bridge()
    ep = orbit.start_endpoint("hpc1", "-p", "echo")
    resp = orbit.get("hpc1/echo/blob/%d" % (2**30), stream=True, timeout=30)
    got = 0
    for piece in resp.iter_content(2**20):
        got += len(piece)
        if got >= 4 * 2**20:
            break
    resp.close()
    wait_for(lambda: "response stream abandoned" in ep.output(), 15, "the endpoint to drop the stream")
    assert orbit.get("hpc1/echo/ping").status_code == 200


def test_a_frozen_endpoint_is_dropped_after_three_silent_ping_intervals(orbit):
    orbit.start_bridge("--ping-interval", "1")
    ep = orbit.start_endpoint("hpc1", "-p", "echo")
    result = {}
    t = threading.Thread(target=lambda: result.update(resp=orbit.get("hpc1/echo/sleep/60000", timeout=30)))
    t.start()
    wait_for(lambda: "sleep/60000" in ep.output(), 10, "the call to reach the endpoint")
    frozen = time.monotonic()
    ep.signal(signal.SIGSTOP)
    try:
        t.join(20)
        envelope_of(result["resp"], 503)
        assert time.monotonic() - frozen < 8
        wait_for(lambda: "hpc1" not in orbit.get("endpoint/list", "POST").json()["data"]["endpoints"],
                 5, "hpc1 to leave the list")
    finally:
        ep.signal(signal.SIGCONT)
    orbit.wait_listed("hpc1", timeout=20, proc=ep)


def test_an_endpoint_notices_a_frozen_bridge_and_comes_back(orbit):
    orbit.start_bridge("--ping-interval", "1")
    ep = orbit.start_endpoint("hpc1", "-p", "echo")
    orbit.bridge.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: "bridge silent for" in ep.output(), 8, "the endpoint to notice")
    finally:
        orbit.bridge.signal(signal.SIGCONT)
    wait_for(lambda: ep.output().count("registered with") >= 2, 30, "the endpoint to register again")
    orbit.wait_listed("hpc1", timeout=10, proc=ep)


def test_garbage_http_gets_the_envelope(orbit_plain):
    orbit_plain.start_bridge()
    host, port = orbit_plain.url.rsplit("/", 1)[1].split(":")
    for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/2.0\r\n\r\n", b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n",
                b"GET /health HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 150 + b"\r\n"):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(raw)
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                piece = s.recv(65536)
                if not piece:
                    break
                data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        assert status in (400, 431, 505), head
        assert json.loads(body) == {"error": True, "status_code": status, "detail": json.loads(body)["detail"]}


def test_an_oversized_notification_is_dropped_not_the_link(orbit):
    orbit.start_bridge()
    ep = orbit.start_endpoint("hpc1", "-p", "echo")
    r = orbit.get("hpc1/echo/notify/huge", "POST", json={"blob": "x" * (5 * 2**20)}, timeout=30)
    assert r.status_code == 200
    wait_for(lambda: "notification echo/huge dropped" in ep.output(), 10, "the drop to be logged")
    assert orbit.get("hpc1/echo/ping").status_code == 200
    assert "lost the bridge connection" not in ep.output()


def test_connections_beyond_the_cap_are_refused_and_the_bridge_recovers(orbit_plain):
    orbit_plain.start_bridge("--max-connections", "3")
    orbit_plain.start_endpoint("hpc1", "-p", "echo")           # connection 1: the endpoint
    events = orbit_plain.get("events", stream=True, timeout=10)  # connection 2: an event stream
    keep = orbit_plain.session()                                # connection 3: keep-alive client
    assert keep.get(orbit_plain.url + "/hpc1/echo/ping", timeout=10).status_code == 200
    refused = requests.get(orbit_plain.url + "/health", timeout=10,
                           headers={"Authorization": "Bearer " + orbit_plain.token})
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert refused.json()["error"] is True and "--max-connections 3" in refused.json()["detail"]
    wait_for(lambda: "refused 1 connections in the last" in orbit_plain.bridge.output(), 5,
             "the refusal summary in the log")
    events.close()
    keep.close()
    wait_for(lambda: _health_ok(orbit_plain), 10, "a free connection slot")


def _health_ok(orbit):
    try:
        return requests.get(orbit.url + "/health", timeout=5,
                            headers={"Authorization": "Bearer " + orbit.token}).status_code == 200
    except requests.ConnectionError:
        return False


def test_an_idle_event_stream_gets_keepalive_comments(orbit_plain):
    orbit_plain.start_bridge("--keepalive", "0.2")
    resp = orbit_plain.get("events?topic=nothing-happens-here", stream=True, timeout=30)
    lines = resp.iter_lines()
    assert next(l for l in lines if l.startswith(b"retry:")) == b"retry: 2000"
    comments = (l for l in lines if l.startswith(b":"))
    assert next(comments) == b": keepalive" and next(comments) == b": keepalive"
    resp.close()
