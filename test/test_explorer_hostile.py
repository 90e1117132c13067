"""The Explorer against a hostile endpoint: a scripted endpoint (the wire protocol written
by the test) whose facts, plugin table, ui_config, answers and notifications carry HTML,
script, `javascript:` URLs, very long words and unicode direction overrides, and that
answers with errors or not at all. Nothing may run, nothing may be inserted as HTML, no
page may scroll sideways, and garbage hash routes open a sensible view."""
import json
import threading
import time

import pytest
import websocket

from test_explorer import T, XSS  # noqa: F401  (skips without a browser)
from test_explorer_shell import TOO_WIDE, DESKTOP, PHONE, chromium, new_page  # noqa: F401  (fixture)
from orbit_procs import Orbit, wait_for  # noqa: E402
from playwright.sync_api import expect  # noqa: E402
from radical_orbit import protocol  # noqa: E402

pytestmark = pytest.mark.browser

#: a word no line can break, longer than any screen
LONG = "W" * 3000
#: right-to-left override: turns the text after it around, up to the end of its paragraph
RLO = "\u202e"
JS = "javascript:window.__xss=1"
HOSTILE = XSS + RLO + LONG
#: as long as a ui_config (8 KiB in all) lets its strings be
HOSTILE_UI = XSS + RLO + "W" * 300
NAME = "evil-" + "x" * 59            # the longest endpoint name there is (64)


def hostile_ui_config():
    field = {"name": "f", "label": HOSTILE_UI, "placeholder": XSS, "help": HOSTILE_UI, "default": HOSTILE_UI}
    return {
        "title": HOSTILE_UI, "description": HOSTILE_UI,
        "sections": [
            {"kind": "form", "title": HOSTILE_UI, "path": "act/{f}", "submit": HOSTILE_UI,
             "fields": [field, {"name": "s", "type": "select", "label": XSS, "options": [XSS, LONG[:300], JS]}]},
            {"kind": "form", "title": "bad path", "path": JS},
            {"kind": "monitor", "title": HOSTILE_UI, "path": "rows", "every": 1, "show": "table",
             "items": "rows", "columns": [{"key": "a", "label": HOSTILE_UI}, {"key": "b", "format": "time"}]},
            {"kind": "monitor", "title": "kv", "path": "kv", "every": 1},
            {"kind": "notifications", "title": HOSTILE_UI, "columns": [{"key": "a", "label": HOSTILE_UI}]},
            {"kind": XSS, "title": HOSTILE_UI},
            {"kind": "valueOf"}, {"kind": "constructor"},
        ],
    }


PLUGINS = {
    "sysinfo": {"type": "sysinfo", "version": HOSTILE_UI, "ui_module": "sysinfo.js", "ui_config": {"title": HOSTILE_UI}},
    "queues": {"type": "queue_info", "ui_module": "queue_info.js"},
    "gen": {"type": "thirdparty", "version": XSS, "ui_config": hostile_ui_config()},
    "nomodule": {"type": XSS, "ui_module": "nothing_here.js", "ui_config": {"title": JS}},
    "jobs": {"type": "psij", "ui_module": "psij.js"},
    "tasks": {"type": "rhapsody", "ui_module": "rhapsody.js"},
    "files": {"type": "staging", "ui_module": "staging.js"},
    # types named like Object's members: no built-in overview part, no page of their own
    "objmember": {"type": "valueOf"},
    "objmember2": {"type": "constructor"},
}
ENDPOINT = {"type": HOSTILE, "role": HOSTILE, "hostname": HOSTILE, "python_version": RLO + XSS,
            "version": JS, "address": HOSTILE}


def hostile_answer(path: str):
    """What the endpoint answers to `path`: hostile values in every field a page reads."""
    if path.endswith("register_session"):
        return {"sid": XSS}
    if "/metrics/" in path:
        return {"system": {"hostname": HOSTILE, "os": HOSTILE, "kernel": XSS, "user": RLO + "resu"},
                "cpu": {"model": HOSTILE, "percent": XSS, "cores_logical": LONG, "load": [XSS, 1e308],
                        "percent_per_core": [1e308, -1, XSS]},
                "memory": {"percent": 1e308, "used": -5, "total": XSS, "swap_total": 1, "swap_used": LONG},
                "gpus": [{"name": HOSTILE, "utilization": LONG, "memory_total": XSS}],
                "disks": [{"mount": HOSTILE, "device": XSS, "fstype": LONG, "type": "__proto__", "percent": XSS}],
                "network": [{"name": HOSTILE, "is_up": XSS, "addresses": [{"address": HOSTILE, "family": XSS}]}]}
    if path.endswith("host_role"):
        return {"role": HOSTILE, "python_version": XSS, "scheduler": JS, "in_job": True}
    if "/get_info/" in path:
        return {"backend": HOSTILE, "queues": {HOSTILE: {"state": XSS, "default": True,
                                                         "nodes": {"idle": XSS, "total": LONG}}}}
    if "/list_all_jobs/" in path or "/list_jobs/" in path:
        return {"jobs": [{"state": HOSTILE, "name": XSS, "id": LONG, "job_id": XSS + LONG[:200],
                          "executable": HOSTILE, "executor": XSS, "native_id": LONG, "exit_code": XSS,
                          "created": XSS}, {"state": "constructor", "job_id": "constructor"}]}
    if "/tasks/list_sessions" in path:
        return {"sessions": [{"sid": XSS, "counts": {XSS: 1, "__proto__": 2}, "tasks": XSS, "backend": HOSTILE}]}
    if "/statistics/" in path:
        return {"total": 2, "counts": {HOSTILE: 1}}
    if "/list_tasks/" in path:
        return {"tasks": [{"uid": XSS + LONG[:200], "name": HOSTILE, "kind": XSS, "state": HOSTILE,
                           "exit_code": XSS, "finished": XSS},
                          {"uid": "proto-task", "name": "p", "kind": "k", "state": "constructor"}]}
    if "/roots/" in path:
        return {"roots": ["/" + XSS], "home": "/" + XSS}
    if "/files/list/" in path:
        return {"path": "/" + XSS, "entries": [{"name": HOSTILE, "type": "file", "size": 1e308, "mtime": XSS},
                                               {"name": XSS, "type": "dir", "size": XSS, "mtime": 1e308}]}
    if "/rows" in path:
        return {"rows": [{"a": HOSTILE, "b": XSS}, {"a": {"x": XSS}, "b": 1e308}]}
    if "/kv" in path:
        return {HOSTILE: HOSTILE, "nested": {XSS: [LONG]}}
    return {"detail": HOSTILE}


class HostileEndpoint:
    """Registers `NAME` with a hostile description and answers every call in `mode`:
    "hostile" (200, hostile JSON), "error" (502 envelope with a hostile detail), "html"
    (a 200 text/html page with a script) or "silent" (no answer at all)."""

    def __init__(self, orbit: Orbit):
        self.mode = "hostile"
        self.requests = []
        self.lock = threading.Lock()
        self.sock = websocket.WebSocket()
        self.sock.connect(orbit.url.replace("http", "ws", 1) + "/register",
                          header=["Authorization: Bearer %s" % orbit.token], timeout=10)
        self.send(protocol.HELLO, name=NAME, resume=None, pid=1, endpoint=ENDPOINT, plugins=PLUGINS)
        assert protocol.decode(self.sock.recv())["k"] == protocol.WELCOME
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, name="hostile-endpoint", daemon=True)
        self.thread.start()

    def send(self, kind, **fields):
        with self.lock:
            self.sock.send(protocol.encode(kind, **fields), websocket.ABNF.OPCODE_BINARY)

    def notify(self, plugin: str, topic: str, data) -> None:
        self.send(protocol.NOTE, plugin=plugin, topic=topic, data=data, ts=time.time())

    def _serve(self) -> None:
        self.sock.settimeout(1.0)
        while not self.stopped:
            try:
                msg = protocol.decode(self.sock.recv())
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:
                return
            if msg["k"] == protocol.REQUEST:
                self.requests.append(msg["path"])
                self._answer(msg)

    def _answer(self, req) -> None:
        mode = self.mode
        if mode == "silent":
            return
        if mode == "error":
            status, ctype = 502, "application/json"
            body = json.dumps({"error": True, "status_code": 502, "detail": HOSTILE})
        elif mode == "html":
            status, ctype = 200, "text/html"
            body = "<html><script>window.__xss=1</script>" + XSS + "</html>"
        else:
            status, ctype = 200, "application/json"
            body = json.dumps(hostile_answer(req["path"]))
        self.send(protocol.RESPONSE, id=req["id"], status=status, headers={"Content-Type": ctype},
                  body=body.encode(), end=True)

    def close(self) -> None:
        self.stopped = True
        self.sock.close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    o = Orbit(str(tmp_path_factory.mktemp("hostile") / "home"), tls=False)
    o.start_bridge()
    fake = HostileEndpoint(o)
    wait_for(lambda: NAME in o.get("endpoint/list", "POST").json()["data"]["endpoints"], 10, "the hostile endpoint")
    yield o, fake
    fake.close()
    o.stop()


def log_in(page, orbit, hash_="#/"):
    page.goto("%s/?token=%s%s" % (orbit.url, orbit.token, hash_))
    expect(page.locator("#conn-state")).to_have_text("live", timeout=T)


#: what a very long value must not do to the layout: make the page's own area scroll
#: sideways, or make a heading, a badge, a name or a line of facts fill the screen
TOO_BIG = """() => {
  const bad = [], p = document.getElementById('page');
  if (p.scrollWidth > p.clientWidth + 1) bad.push('#page scrolls sideways by ' + (p.scrollWidth - p.clientWidth));
  const limits = [['#page-head h2', 120], ['#page-head .crumbs', 60], ['#page-head .desc', 80],
                  ['.card h3', 60], ['.badge', 40], ['.ep-card .facts', 90], ['.ep-title a', 90],
                  ['#tree a', 40], ['.chips a', 40], ['.card button', 60], ['.error-box', 220],
                  ['#notifications li', 260], ['.big', 120], ['.form-grid > label', 80], ['.form-grid .help', 80]];
  for (const [css, max] of limits) {
    for (const e of document.querySelectorAll(css)) {
      const r = e.getBoundingClientRect();
      if (r.height > max) bad.push(css + ' is ' + Math.round(r.height) + ' px high');
      if (r.width > document.documentElement.clientWidth) bad.push(css + ' is ' + Math.round(r.width) + ' px wide');
    }
  }
  return bad;
}"""


def assert_safe(page, where):
    """Nothing ran, nothing became an element, and nothing scrolls the page sideways or
    fills it."""
    assert page.evaluate("typeof window.__xss") == "undefined", where
    assert page.locator("#app img, #app script, #notes img").count() == 0, where
    assert page.evaluate(TOO_WIDE) == [], where
    assert page.evaluate(TOO_BIG) == [], where
    assert page.errors == [], where


VIEWS = ["#/", "#/" + NAME, "#/%s/sysinfo" % NAME, "#/%s/queues" % NAME, "#/%s/gen" % NAME,
         "#/%s/nomodule" % NAME, "#/%s/jobs" % NAME, "#/%s/tasks" % NAME, "#/%s/files" % NAME, "#/bridge"]


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_hostile_names_and_answers_stay_text_and_fit(hostile, chromium, size):
    orbit, fake = hostile
    fake.mode = "hostile"
    page = new_page(chromium, size)
    try:
        log_in(page, orbit)
        for plugin, data in (("gen", {"a": HOSTILE}), (XSS, HOSTILE), ("sysinfo", [JS, {XSS: LONG}])):
            fake.notify(plugin, XSS + RLO, data)
        expect(page.locator("#notes-count")).to_have_text("3", timeout=T)
        for view in VIEWS:
            page.evaluate("h => { location.hash = h; }", view)
            expect(page.locator("#page-head h2")).to_be_visible(timeout=T)
            if view.endswith("/sysinfo"):
                expect(page.locator("#sysinfo-hostname")).to_contain_text(XSS, timeout=T)
            if view.endswith("/gen"):
                expect(page.locator("[data-generic=monitor] td").first).to_contain_text(XSS, timeout=T)
                # kinds named like Object's members are unknown kinds, and the page goes on
                for kind in ("valueOf", "constructor"):
                    expect(page.locator("[data-generic=unknown]", has_text="unknown section kind " + kind)) \
                        .to_have_count(1)
            if view.endswith(("/jobs", "/tasks", "/files")):
                # the page read the hostile answers (and shows them as text)
                expect(page.locator("[data-plugin-page]")).to_contain_text(XSS, timeout=T)
            if view == "#/":
                expect(page.locator('[data-card="%s"] [data-testid=cpu]' % NAME)).to_be_visible(timeout=T)
                for inst in ("objmember", "objmember2"):
                    expect(page.locator('[data-summary="%s/%s"]' % (NAME, inst))).to_have_count(0)
            page.wait_for_timeout(300)
            assert_safe(page, view)
        page.click("#notes-toggle")
        expect(page.locator("#notifications li")).to_have_count(3)
        assert_safe(page, "notifications")
    finally:
        page.context.close()


def test_states_named_like_object_members_are_unknown_states(hostile, chromium):
    """A job or task whose state is "constructor" is no terminal state and has no badge
    colour: psij's and rhapsody's state tables are looked up by own keys only."""
    orbit, fake = hostile
    fake.mode = "hostile"
    page = new_page(chromium, DESKTOP)
    try:
        log_in(page, orbit, "#/%s/jobs" % NAME)
        job = page.locator("tbody tr", has=page.locator("[data-testid=psij-state]", has_text="constructor"))
        expect(job).to_have_count(1, timeout=T)
        assert job.locator("[data-testid=psij-state]").get_attribute("class").strip() == "badge"
        expect(job.locator("[data-testid=psij-cancel]")).to_have_count(1)
        page.evaluate("h => { location.hash = h; }", "#/%s/tasks" % NAME)
        task = page.locator("tbody tr", has=page.locator("[data-testid=rhapsody-open]", has_text="proto-task"))
        expect(task).to_have_count(1, timeout=T)
        assert task.locator("[data-state=constructor]").get_attribute("class").strip() == "badge"
        expect(task.locator("[data-testid=rhapsody-cancel]")).to_have_count(1)
        assert page.errors == []
    finally:
        page.context.close()


#: hashes no link makes: names of Object's own members, bad percent-escapes, too many
#: parts, markup, a huge name
GARBAGE = ["#/__proto__", "#/constructor", "#/toString", "#/%s/__proto__" % NAME, "#/%s/constructor" % NAME,
           "#/%E0%A4%A", "#/a/b/c/d", "#//", "#/%3Cimg%20src%3Dx%20onerror%3Dwindow.__xss%3D1%3E",
           "#/" + "A" * 5000, "#/bridge/..%2F..", "#/%00/%00"]


def test_garbage_routes_open_a_sensible_view(hostile, chromium):
    orbit, fake = hostile
    fake.mode = "hostile"
    page = new_page(chromium, PHONE)
    try:
        log_in(page, orbit)
        for hash_ in GARBAGE:
            page.evaluate("h => { location.hash = h; }", hash_)
            head = page.locator("#page-head h2")
            expect(head).to_be_visible(timeout=T)
            parts = hash_[2:].split("/")
            if len(parts) == 1 and parts[0] and not parts[0].startswith("%"):
                # an endpoint that is not there says so, whatever its name
                expect(page.locator("#page-head [data-testid=ep-state]")).to_have_text("not connected")
            if hash_.startswith("#/%s/" % NAME):
                expect(page.locator("#page .error-box")).to_contain_text("No plugin")
            page.wait_for_timeout(100)
            assert_safe(page, hash_)
        # back through all of them and forward again: each step opens a view, nothing fails
        for _ in GARBAGE[:4]:
            page.go_back()
            expect(page.locator("#page-head h2")).to_be_visible(timeout=T)
        assert_safe(page, "back")
    finally:
        page.context.close()


@pytest.mark.parametrize("mode", ["error", "html"])
def test_an_endpoint_that_answers_errors_or_html_on_every_page(hostile, chromium, mode):
    orbit, fake = hostile
    fake.mode = mode
    page = new_page(chromium, PHONE)
    try:
        log_in(page, orbit)
        for view in VIEWS:
            page.evaluate("h => { location.hash = h; }", view)
            expect(page.locator("#page-head h2")).to_be_visible(timeout=T)
            if view.endswith("/sysinfo") and mode == "error":
                expect(page.locator("#page .error-box").first).to_contain_text("HTTP 502", timeout=T)
            page.wait_for_timeout(300)
            assert_safe(page, view)
    finally:
        fake.mode = "hostile"
        page.context.close()


def test_a_silent_endpoint_gets_one_request_per_part_and_the_page_stays_usable(hostile, chromium):
    """The endpoint takes every call and never answers: each overview part waits for its
    one request instead of piling more up, and every view still opens at once."""
    orbit, fake = hostile
    fake.mode = "silent"
    page = new_page(chromium, DESKTOP)
    try:
        del fake.requests[:]
        log_in(page, orbit)
        expect(page.locator('[data-card="%s"]' % NAME)).to_be_visible(timeout=T)
        page.wait_for_timeout(6000)       # longer than the overview's 5 s between polls
        parts = page.locator('[data-card="%s"] [data-summary]' % NAME).count()
        assert 0 < len(fake.requests) <= parts, (parts, fake.requests)
        for view in VIEWS:
            page.evaluate("h => { location.hash = h; }", view)
            expect(page.locator("#page-head h2")).to_be_visible(timeout=5000)
            assert_safe(page, view)
    finally:
        fake.mode = "hostile"
        page.context.close()


def test_the_bridge_answering_errors_and_urls_that_would_run(hostile, chromium):
    """The bridge's own /health fails with a hostile detail: the bridge page says so as
    text. And el() drops every spelling of a `javascript:` URL the URL parser accepts."""
    orbit, fake = hostile
    page = new_page(chromium, PHONE)
    try:
        page.route("**/health", lambda route: route.fulfill(
            status=500, content_type="application/json",
            body=json.dumps({"error": True, "status_code": 500, "detail": HOSTILE})))
        log_in(page, orbit, "#/bridge")
        expect(page.locator("#page table.kv")).to_contain_text("unknown (HTTP 500: " + XSS, timeout=T)
        assert_safe(page, "bridge")
        kept = page.evaluate("""() => ['java\\tscript:window.__xss=1', 'java\\nscript:window.__xss=1',
                                      '\\x01 javascript:window.__xss=1', ' JaVaScRiPt:window.__xss=1',
                                      'vbscript:x', 'data:text/html,<script>window.__xss=1</script>']
          .map(u => OrbitExplorer.el('a', {href: u}).getAttribute('href'))""")
        assert kept == [None] * 6, kept
        assert page.evaluate("OrbitExplorer.el('a', {href: '#/x'}).getAttribute('href')") == "#/x"
    finally:
        page.context.close()


def test_a_flood_of_notifications_from_ever_new_sources_stays_bounded(hostile, chromium):
    """600 notifications, each from a plugin name never seen before: the panel keeps
    the newest 200, and its filter menus list only the sources of those it keeps."""
    orbit, fake = hostile
    page = new_page(chromium, DESKTOP)
    try:
        log_in(page, orbit)
        for i in range(600):
            fake.notify("p%04d-%s" % (i, XSS), "t", {"i": i})
        expect(page.locator("#notifications li").first).to_contain_text('"i":599', timeout=T)
        expect(page.locator("#notes-count")).to_have_text("200")
        assert page.locator("#notes-plugin option").count() == 201       # "all plugins" + 200
        page.click("#notes-toggle")
        page.select_option("#notes-plugin", "p0599-" + XSS)
        expect(page.locator("#notifications li:visible")).to_have_count(1)
        assert_safe(page, "flood")
    finally:
        page.context.close()
