"""The Explorer's shell in a real headless Chromium against one real bridge (TLS, token
auth) and real endpoints shared by the module: the overview's live cards, the phone
layout and its drawer, hash routes with back/forward, generic pages from ui_config, the
notifications panel, keyboard-only use, the bridge page, and a truthful connection
indicator across a bridge restart. Screenshots of each page, at a desktop and a phone
size, go to a temporary directory, or to docs/screenshots/ with ORBIT_SCREENSHOTS=docs."""
import json
import os
import re
import socket
from urllib.parse import quote

import pytest
import requests

from test_explorer import ARGS, CHROMIUM, T, XSS  # noqa: F401  (skips without a browser)
from orbit_procs import Orbit, wait_for  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.browser

#: where the docs keep the screenshots; a test run writes there only when asked
DOC_SHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "screenshots")
#: ORBIT_SCREENSHOTS=docs renews docs/screenshots/; unset, the shots go to a temporary
#: directory (so a plain test run leaves the checkout as it was); any other value is a folder
SHOTS_ENV = "ORBIT_SCREENSHOTS"
#: the folder of this run's screenshots, set by the `chromium` fixture
shots = {"dir": None}
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

#: every element wider than the viewport that does not sit in something scrolling (or
#: clipping) sideways that itself fits: what would make the page scroll sideways
TOO_WIDE = """() => {
  const W = document.documentElement.clientWidth, bad = [];
  const sx = document.documentElement.scrollWidth;
  if (sx > W + 1) bad.push('the document is ' + sx + ' px wide');
  for (const e of document.querySelectorAll('body *')) {
    const r = e.getBoundingClientRect();
    if ((r.width === 0 && r.height === 0) || r.width <= W + 1) continue;
    let p = e.parentElement, inside = false;
    for (; p && p !== document.body; p = p.parentElement) {
      const ox = getComputedStyle(p).overflowX;
      if (ox !== 'visible' && p.getBoundingClientRect().width <= W + 1) { inside = true; break; }
    }
    if (!inside) bad.push(e.tagName + '#' + e.id + '.' + e.className + ': ' + Math.round(r.width) + ' px');
  }
  return bad;
}"""


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """One bridge with hpc1 (sysinfo, echo, staging, psij, rhapsody) and hpc1.compute (sysinfo)."""
    base = tmp_path_factory.mktemp("shell")
    user = base / "user"
    user.mkdir()
    (user / "inputs").mkdir()
    (user / "run-042.log").write_text("step 1\nstep 2\n")
    with open(str(user / "results-with-a-long-descriptive-name.h5"), "wb") as f:
        f.truncate(3 * 2**20)
    o = Orbit(str(base / "home"), tls=True)
    o.start_bridge()
    o.start_endpoint("hpc1", "-p", "sysinfo,echo,staging,psij,rhapsody", "--plugin-config",
                     "staging=" + json.dumps({"roots": [str(user)]}), HOME=str(user))
    o.start_endpoint("hpc1.compute", "-p", "sysinfo")
    yield o
    o.stop()


def shots_dir(tmp_path_factory) -> str:
    """The folder the screenshots go to (see SHOTS_ENV)."""
    want = os.environ.get(SHOTS_ENV, "")
    if want == "docs":
        return DOC_SHOTS
    return want or str(tmp_path_factory.mktemp("screenshots"))


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        shots["dir"] = shots_dir(tmp_path_factory)
        try:
            yield b
        finally:
            b.close()


def new_page(chromium, size=DESKTOP):
    context = chromium.new_context(ignore_https_errors=True, viewport=size)
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    return pg


@pytest.fixture
def desk(chromium):
    pg = new_page(chromium)
    yield pg
    pg.context.close()


@pytest.fixture
def phone(chromium):
    pg = new_page(chromium, PHONE)
    yield pg
    pg.context.close()


def log_in(page, orbit, hash_=""):
    page.goto("%s/?token=%s" % (orbit.url, quote(orbit.token)))
    expect(page).to_have_url(orbit.url + "/", timeout=T)
    expect(page.locator("#conn-state")).to_have_text("live", timeout=T)
    if hash_:
        page.evaluate("h => { location.hash = h; }", hash_)


def shot(page, name):
    """Every page shot must also fit its width: nothing scrolls it sideways."""
    assert_fits(page)
    folder = shots["dir"]
    os.makedirs(folder, exist_ok=True)
    kind = "phone" if page.viewport_size["width"] < 700 else "desktop"
    page.screenshot(path=os.path.join(folder, "%s-%s.png" % (name, kind)))


def card(page, name):
    return page.locator('[data-card="%s"]' % name)


def own(page, name, css):
    """Inside the card of `name`, not in the cards nested in it."""
    return page.locator('[data-card="%s"] > %s' % (name, css))


def live_numbers(page, name):
    """The card's CPU figure and its 'updated' stamp, once there."""
    expect(own(page, name, ".summary [data-testid=cpu] .value")).to_have_text(re.compile(r"\d+(\.\d)? %"),
                                                                             timeout=T)
    stamp = own(page, name, ".summary [data-testid=stamp]")
    expect(stamp).to_have_text(re.compile(r"updated \d\d:\d\d:\d\d"), timeout=T)
    return stamp.text_content()


def assert_fits(page):
    assert page.evaluate(TOO_WIDE) == []


def test_overview_cards_are_live_and_nested(shell, desk):
    log_in(desk, shell)
    expect(desk.locator("#page-head h2")).to_have_text("Overview", timeout=T)
    hpc1 = card(desk, "hpc1")
    expect(own(desk, "hpc1", ".ep-title [data-testid=ep-state]")).to_have_text("connected", timeout=T)
    expect(own(desk, "hpc1", ".facts")).to_contain_text("host " + socket.gethostname())
    expect(own(desk, "hpc1", ".facts")).to_contain_text("Python 3.")
    expect(own(desk, "hpc1", ".ep-title .badge.info")).to_have_text(re.compile(r"^(standalone|login|compute)$"))
    # hpc1.compute sits inside hpc1's card
    expect(hpc1.locator('[data-card="hpc1.compute"]')).to_be_visible()
    first = live_numbers(desk, "hpc1")
    live_numbers(desk, "hpc1.compute")
    expect(own(desk, "hpc1", ".summary [data-testid=memory] .value")).to_contain_text(" of ")
    expect(own(desk, "hpc1", ".summary [data-testid=gpu]")).to_be_visible()
    # the numbers refresh by themselves, one request at a time per plugin
    metrics = []
    desk.on("request", lambda r: metrics.append(r.url) if "/hpc1/sysinfo/metrics/" in r.url else None)
    expect(own(desk, "hpc1", ".summary [data-testid=stamp]")).not_to_have_text(first, timeout=T)
    assert 1 <= len(metrics) <= 3, metrics
    # a plugin's part shows only where it is loaded: the bridge hosts queue_info by default
    if desk.locator('[data-chip="bridge/queue_info"]').count():
        expect(own(desk, "bridge", ".summary [data-testid=queues]")).to_contain_text(
            re.compile(r"\d+/\d+ idle|none \(backend"), timeout=T)
        expect(own(desk, "bridge", ".summary [data-testid=queue-jobs]")).to_contain_text("my jobs")
    expect(own(desk, "hpc1", ".summary [data-testid=queues]")).to_have_count(0)
    # the cards' pollers hold one session per sysinfo instance
    assert len(shell.get("hpc1/sysinfo/list_sessions").json()["sessions"]) == 1
    shot(desk, "overview")
    # a click on the card opens the endpoint
    own(desk, "hpc1", ".facts").click()
    expect(desk).to_have_url(shell.url + "/#/hpc1", timeout=T)
    expect(desk.locator("#page-head h2")).to_have_text("hpc1")
    expect(desk.locator("[data-plugin-page], .card h3", has_text="Plugins")).to_be_visible(timeout=T)
    shot(desk, "endpoint")
    # leaving the overview ends the cards' sessions; the endpoint page's card has its own
    wait_for(lambda: len(shell.get("hpc1/sysinfo/list_sessions").json()["sessions"]) == 1, T / 1000,
             "one sysinfo session (the endpoint page's card)", 0.2)
    assert desk.errors == []


def test_overview_counts_my_jobs_by_state(shell, desk):
    """psij's part of a card: the jobs run through that endpoint, by state, kept current."""
    log_in(desk, shell)
    jobs = own(desk, "hpc1", ".summary [data-testid=psij-jobs]")
    expect(jobs).to_be_visible(timeout=T)
    expect(own(desk, "hpc1.compute", ".summary [data-testid=psij-jobs]")).to_have_count(0)
    sid = shell.get("hpc1/psij/register_session", "POST", json={}).json()["sid"]
    try:
        for _ in range(2):
            answer = shell.get("hpc1/psij/submit/" + sid, "POST", json={"job_spec": {"executable": "/bin/true"}})
            assert answer.status_code == 200, answer.text
        answer = shell.get("hpc1/psij/submit/" + sid, "POST",
                           json={"job_spec": {"executable": "/bin/sh", "arguments": ["-c", "exit 3"]}})
        assert answer.status_code == 200, answer.text
        expect(jobs).to_contain_text("completed 2", timeout=T)
        expect(jobs).to_contain_text("failed 1")
        expect(jobs.locator(".badge.bad")).to_have_text("failed 1")
    finally:
        shell.get("hpc1/psij/unregister_session/" + sid, "POST")
    assert desk.errors == []


def test_overview_counts_my_tasks(shell, desk):
    """rhapsody's part of a card: the tasks of every session on the endpoint, read
    without a session of its own (which would start a backend)."""
    def sids():
        return {s["sid"] for s in shell.get("hpc1/rhapsody/list_sessions").json()["sessions"]}
    earlier = sids()
    log_in(desk, shell)
    tasks = own(desk, "hpc1", ".summary [data-testid=rhapsody-summary]")
    expect(tasks).to_be_visible(timeout=T)
    sid = shell.get("hpc1/rhapsody/register_session", "POST", json={}).json()["sid"]
    try:
        wait_for(lambda: shell.get("hpc1/rhapsody/statistics/" + sid).json()["state"] == "ready", T / 1000,
                 "the rhapsody backend", 0.2)
        answer = shell.get("hpc1/rhapsody/submit/" + sid, "POST",
                           json={"tasks": [{"executable": "/bin/true"} for _ in range(3)]})
        assert answer.status_code == 200, answer.text
        expect(tasks).to_contain_text("done 3", timeout=T)      # by state, from list_sessions' counts
    finally:
        shell.get("hpc1/rhapsody/unregister_session/" + sid, "POST")
    assert sids() == earlier      # the overview registered none
    assert desk.errors == []


def test_back_and_forward_between_views(shell, desk):
    log_in(desk, shell)
    own(desk, "hpc1", ".ep-title a").click()
    expect(desk).to_have_url(shell.url + "/#/hpc1", timeout=T)
    desk.locator('[data-plugin="hpc1/sysinfo"]').click()
    expect(desk.locator("#sysinfo-hostname")).to_have_text(socket.gethostname(), timeout=T)
    shot(desk, "sysinfo")
    desk.go_back()
    expect(desk).to_have_url(shell.url + "/#/hpc1", timeout=T)
    expect(desk.locator("#page-head h2")).to_have_text("hpc1", timeout=T)
    desk.go_back()
    expect(desk.locator("#page-head h2")).to_have_text("Overview", timeout=T)
    desk.go_forward()
    expect(desk.locator("#page-head h2")).to_have_text("hpc1", timeout=T)
    desk.go_forward()
    expect(desk.locator("#sysinfo-hostname")).to_have_text(socket.gethostname(), timeout=T)
    # a bookmark opens the view directly
    desk.goto(shell.url + "/#/bridge")
    expect(desk.locator("#page-head h2")).to_have_text("Bridge", timeout=T)
    desk.goto(shell.url + "/#/hpc1/staging")
    expect(desk.locator("[data-testid=staging-listing] tr[data-name=inputs]")).to_be_visible(timeout=T)
    shot(desk, "staging")
    desk.goto(shell.url + "/#/hpc1/psij")
    expect(desk.locator("[data-testid=psij-executor]")).to_have_value("local", timeout=T)
    shot(desk, "psij")
    desk.goto(shell.url + "/#/hpc1/rhapsody")
    expect(desk.locator("[data-testid=rhapsody-sessions]")).to_be_visible(timeout=T)
    shot(desk, "rhapsody")
    desk.goto(shell.url + "/#/bridge/queue_info")
    expect(desk.locator("[data-testid=qi-backend]")).to_be_visible(timeout=T)
    shot(desk, "queue_info")
    assert desk.errors == []


def test_phone_layout_and_drawer(shell, phone):
    phone.goto(shell.url + "/")
    expect(phone.locator("#login-token")).to_be_focused(timeout=T)
    assert_fits(phone)
    shot(phone, "login")
    log_in(phone, shell)
    live_numbers(phone, "hpc1")
    assert_fits(phone)
    expect(phone.locator("#sidebar")).to_be_hidden()
    shot(phone, "overview")
    phone.click("#menu")
    expect(phone.locator("#sidebar")).to_be_visible()
    expect(phone.locator("#menu")).to_have_attribute("aria-expanded", "true")
    phone.wait_for_function("() => getComputedStyle(document.getElementById('sidebar')).transform === 'none'")
    shot(phone, "drawer")
    # the drawer takes the focus; the page behind it is inert
    expect(phone.locator("#views a").first).to_be_focused()
    for _ in range(8):
        phone.keyboard.press("Tab")
        assert phone.evaluate("() => !document.getElementById('right').contains(document.activeElement)")
    phone.keyboard.press("Escape")
    expect(phone.locator("#sidebar")).to_be_hidden(timeout=T)
    for target, check, name in (
            ("hpc1", "#page-head h2", "endpoint"),
            ("hpc1/sysinfo", "#sysinfo-hostname", "sysinfo"),
            ("hpc1/staging", "[data-testid=staging-listing] tr[data-name=inputs]", "staging"),
            ("hpc1/echo", "[data-generic=form] >> nth=0", "generic"),
            ("hpc1/psij", "[data-testid=psij-executor]", "psij"),
            ("bridge/queue_info", "[data-testid=qi-backend]", "queue_info"),
            ("hpc1/rhapsody", "[data-testid=rhapsody-sessions]", "rhapsody")):
        phone.click("#menu")
        link = '[data-plugin="%s"]' % target if "/" in target else '[data-endpoint-link="%s"]' % target
        phone.locator(link).click()
        expect(phone.locator("#sidebar")).to_be_hidden(timeout=T)
        expect(phone.locator(check)).to_be_visible(timeout=T)
        if name == "sysinfo":
            expect(phone.locator("[data-plugin-page] .card h3", has_text="Disks")).to_be_visible(timeout=T)
        assert_fits(phone)
        shot(phone, name)
    phone.evaluate("location.hash = '#/bridge'")
    expect(phone.locator("#terminate")).to_be_visible(timeout=T)
    assert_fits(phone)
    shot(phone, "bridge")
    assert phone.errors == []


def test_generic_page_and_notifications_panel(shell, desk):
    log_in(desk, shell, "#/hpc1/echo")
    form = desk.locator("[data-generic=form]:has(h3:text-is('Send a notification'))")
    expect(form).to_be_visible(timeout=T)
    expect(desk.locator("[data-generic=monitor]:has(h3:text-is('Health'))")).to_contain_text("sessions", timeout=T)
    # the empty notifications panel takes no room until opened
    assert desk.locator("#notes").is_hidden()
    form.get_by_label("Topic").fill("greeting")
    form.get_by_label("Message").fill(XSS)
    form.get_by_role("button", name="Notify").click()
    expect(form.locator("[data-testid=generic-result]")).to_contain_text("greeting", timeout=T)
    table = desk.locator("[data-generic=notifications] tbody")
    expect(table.locator("tr")).to_have_count(1, timeout=T)
    expect(table.locator("td").nth(2)).to_have_text(XSS)
    # a GET form: its fields go to the query, the answer shown as JSON
    ping = desk.locator("[data-generic=form]:has(h3:text-is('Ping'))")
    ping.get_by_label("Colour").select_option("green")
    ping.get_by_label("Loud").check()
    ping.get_by_role("button", name="Ping").click()
    expect(ping.locator("[data-testid=generic-result] pre")).to_contain_text('"color": "green"', timeout=T)
    expect(ping.locator("[data-testid=generic-result] pre")).to_contain_text('"loud": "true"')
    # a monitor as a table, with its empty state
    expect(desk.locator("[data-generic=monitor]:has(h3:text-is('Sessions'))")).to_contain_text("no sessions",
                                                                                    timeout=T)
    # a required field left empty is said, not sent
    form.get_by_label("Topic").fill("")
    form.get_by_role("button", name="Notify").click()
    expect(form.locator("[data-testid=generic-result]")).to_contain_text("Topic is required")
    # one from another endpoint-plugin pair, for the filters
    assert shell.get("hpc1/echo/notify/other", "POST", json={"msg": "two"}).status_code == 200
    expect(desk.locator("#notes-count")).to_have_text("2", timeout=T)
    desk.click("#notes-toggle")
    expect(desk.locator("#notes")).to_be_visible()
    expect(desk.locator("#notifications li:visible")).to_have_count(2)
    desk.select_option("#notes-endpoint", "hpc1")
    desk.select_option("#notes-plugin", "echo")
    expect(desk.locator("#notifications li:visible")).to_have_count(2)
    shot(desk, "generic")
    desk.select_option("#notes-plugin", "")
    assert desk.locator("#notes-plugin option").all_text_contents() == ["all plugins", "echo"]
    assert desk.locator("#page img, #notes img").count() == 0
    assert desk.evaluate("typeof window.__xss") == "undefined"
    desk.click("#notes-clear")
    expect(desk.locator("#notes-count")).to_have_text("0")
    expect(desk.locator("#notes-empty")).to_be_visible()
    desk.click("#notes-close")
    expect(desk.locator("#notes")).to_be_hidden()
    assert desk.errors == []


def test_keyboard_only_login_and_navigation(shell, desk):
    desk.goto(shell.url + "/")
    expect(desk.locator("#login")).to_be_visible(timeout=T)
    expect(desk.locator("#login-token")).to_be_focused(timeout=T)
    expect(desk.get_by_label("Token")).to_be_visible()
    shot(desk, "login")
    desk.keyboard.type(shell.token)
    desk.keyboard.press("Enter")
    expect(desk.locator("#conn-state")).to_have_text("live", timeout=T)
    expect(desk.locator("#page-head h2")).to_be_focused(timeout=T)
    target = '[data-plugin="hpc1/sysinfo"]'
    for _ in range(60):
        desk.keyboard.press("Tab")
        if desk.evaluate("s => document.activeElement.matches(s)", target):
            break
    else:
        raise AssertionError("Tab never reached the sysinfo link")
    # the focus is visible: an outline on the focused control
    outline = desk.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline
    desk.keyboard.press("Enter")
    expect(desk).to_have_url(shell.url + "/#/hpc1/sysinfo", timeout=T)
    expect(desk.locator("#sysinfo-hostname")).to_have_text(socket.gethostname(), timeout=T)
    expect(desk.locator("#page-head h2")).to_be_focused()
    # every control on the shell has a name a screen reader can say
    unnamed = desk.evaluate("""() => [...document.querySelectorAll('button, a[href], input, select, textarea')]
        .filter(e => e.getClientRects().length)
        .filter(e => !(e.getAttribute('aria-label') || (e.labels && e.labels.length) || e.textContent.trim()))
        .map(e => e.outerHTML.slice(0, 80))""")
    assert unnamed == []
    assert desk.errors == []


def test_bridge_page_asks_before_terminating(shell, desk):
    log_in(desk, shell, "#/bridge")
    expect(desk.locator("#page-head h2")).to_have_text("Bridge", timeout=T)
    facts = desk.locator(".card", has_text="This bridge")
    expect(facts).to_contain_text(re.compile(r"uptime\s*\d+ (s|min|h)"), timeout=T)
    expect(desk.locator("#page-head .crumbs")).to_contain_text(":%d" % shell._port)
    row = desk.locator("tr", has=desk.locator('[data-bridge-ep="hpc1"]'))
    expect(row.locator("td").nth(3)).to_have_text("5")
    expect(desk.locator('tr', has=desk.locator('[data-bridge-ep="hpc1.compute"]')).locator("td").nth(3)).to_have_text("1")
    expect(row.locator("[data-action=disconnect]")).to_have_attribute("aria-label", "Disconnect endpoint hpc1")
    # Terminate is here, far from Log out, and asks first, naming the bridge: no means no
    assert desk.locator("#topbar #terminate").count() == 0
    asked = []

    def refuse(dialog):
        asked.append(dialog.message)
        dialog.dismiss()
    desk.on("dialog", refuse)
    shot(desk, "bridge")
    desk.click("#terminate")
    wait_for(lambda: asked, T / 1000, "the confirmation")
    assert "Terminate the bridge at" in asked[0] and str(shell._port) in asked[0]
    row.locator("[data-action=disconnect]").click()
    wait_for(lambda: len(asked) == 2, T / 1000, "the disconnect confirmation")
    assert '"hpc1"' in asked[1]
    assert shell.bridge.alive() and shell.endpoints["hpc1"].alive()
    expect(desk.locator("#conn-state")).to_have_text("live")
    assert desk.errors == []


def test_bridge_restart_every_badge_says_so_then_resumes(shell, desk, phone):
    events = []
    desk.on("request", lambda r: events.append(r.url) if "/events" in r.url else None)
    log_in(phone, shell, "#/hpc1")
    log_in(desk, shell)
    live_numbers(desk, "hpc1.compute")
    desk.evaluate("window.__same_page = 1")
    badges = desk.locator("[data-testid=ep-state]")
    expect(own(desk, "hpc1.compute", ".ep-title [data-testid=ep-state]")).to_have_text("connected")
    assert badges.count() >= 3     # the bridge's card, hpc1's, hpc1.compute's
    shell.bridge.stop()
    expect(desk.locator("#conn-state")).to_have_text("reconnecting", timeout=5000)
    for i in range(badges.count()):
        expect(badges.nth(i)).to_have_text("bridge unreachable", timeout=5000)
    expect(desk.locator("[data-ep-dot].ok")).to_have_count(0)
    expect(desk.locator("#connbar")).to_contain_text(re.compile(r"Next try at \d\d:\d\d:\d\d \(in \d+ s\)"),
                                                     timeout=5000)
    shot(desk, "reconnecting")
    expect(phone.locator("#conn-state")).to_have_text("reconnecting", timeout=5000)
    expect(phone.locator("#page-head [data-testid=ep-state]")).to_have_text("bridge unreachable")
    assert_fits(phone)
    shot(phone, "reconnecting")
    shell.start_bridge(port=shell._port)
    for name in ("hpc1", "hpc1.compute"):
        shell.wait_listed(name, 60)
    expect(desk.locator("#conn-state")).to_have_text("live", timeout=T)
    expect(desk.locator("#connbar")).to_be_hidden()
    for i in range(badges.count()):
        expect(badges.nth(i)).to_have_text("connected", timeout=T)
    # the cards keep updating, on the same page, and the stream resumed where it was
    stamp = own(desk, "hpc1.compute", ".summary [data-testid=stamp]")
    before = stamp.text_content()
    expect(stamp).not_to_have_text(before, timeout=T)
    expect(stamp).to_contain_text("updated")
    assert desk.evaluate("window.__same_page") == 1
    assert "last_event_id=" in events[-1], events
    expect(phone.locator("#page-head [data-testid=ep-state]")).to_have_text("connected", timeout=T)
    assert desk.errors == []


def test_offline_then_online_and_a_lost_login(shell, desk):
    log_in(desk, shell, "#/hpc1")
    expect(own(desk, "hpc1", ".ep-title [data-testid=ep-state]")).to_have_text("connected", timeout=T)
    desk.context.set_offline(True)
    expect(desk.locator("#conn-state")).to_have_text("offline", timeout=5000)
    expect(desk.locator("#page-head [data-testid=ep-state]")).to_have_text("bridge unreachable")
    expect(desk.locator("#connbar")).to_contain_text("no network")
    desk.context.set_offline(False)
    expect(desk.locator("#conn-state")).to_have_text("live", timeout=T)
    expect(desk.locator("#page-head [data-testid=ep-state]")).to_have_text("connected")
    # the login cookie goes away: the next request (the card's poll) answers 401 -> login view
    desk.context.clear_cookies()
    expect(desk.locator("#login")).to_be_visible(timeout=T)
    expect(desk.locator("#login-error")).to_contain_text("log in again")
    expect(desk.locator("#app")).to_be_hidden()
    # and logging in again returns to the same view
    desk.fill("#login-token", shell.token)
    desk.press("#login-token", "Enter")
    expect(desk.locator("#page-head h2")).to_have_text("hpc1", timeout=T)
    assert desk.errors == []


#: a page for the echo plugin, registered by the test: its button asks the plugin to
#: answer with a status (echo's `status/{code}` route) and shows what came back
STATUS_PAGE = """() => OrbitExplorer.registerPlugin('echo', {render: function (container, ctx) {
  var out = OrbitExplorer.el('p', {'data-testid': 'status-out'}, 'not asked');
  var ask = OrbitExplorer.el('button', {'data-testid': 'status-ask', onclick: function () {
    ctx.api('GET', 'status/401').then(function () { out.textContent = 'ok'; },
                                      function (err) { out.textContent = err.message; });
  }}, 'ask');
  OrbitExplorer.util.replace(container, ask, out);
}})"""


def test_a_plugins_401_is_the_pages_error_the_bridges_own_logs_out(shell, desk):
    """A 401 that a plugin answers (Globus wanting consent, through an endpoint) is shown
    by its page and leaves the login alone; the bridge's own refusal, marked by its
    header (which no plugin answer carries), still returns to the login view."""
    from radical_orbit.bridge.auth import REFUSED, REFUSED_HEADER
    from radical_orbit.bridge.proxy import answer_headers
    own_401 = requests.get(shell.url + "/endpoint/list", verify=shell.verify, timeout=10)
    assert own_401.status_code == 401 and own_401.headers.get(REFUSED_HEADER) == REFUSED
    plugins_401 = shell.get("hpc1/echo/status/401")
    assert plugins_401.status_code == 401 and REFUSED_HEADER not in plugins_401.headers
    assert REFUSED_HEADER not in answer_headers({REFUSED_HEADER: REFUSED, "X-Other": "1"})
    log_in(desk, shell)
    desk.evaluate(STATUS_PAGE)
    desk.evaluate("location.hash = '#/hpc1/echo'")
    desk.locator("[data-testid=status-ask]").click()
    expect(desk.locator("[data-testid=status-out]")).to_contain_text("HTTP 401", timeout=T)
    expect(desk.locator("#app")).to_be_visible()
    assert desk.locator("#login").is_hidden()
    # the same call once the login is gone: the bridge refuses it itself -> login view
    desk.context.clear_cookies()
    desk.locator("[data-testid=status-ask]").click()
    expect(desk.locator("#login")).to_be_visible(timeout=T)
    expect(desk.locator("#login-error")).to_contain_text("log in again")
    assert desk.errors == []


def test_the_bridges_own_401_to_a_pages_own_calls_logs_out(shell, desk, tmp_path):
    """The calls a page makes by itself, not by ctx.api (psij's look at the endpoint's
    queue_info, staging's XHR upload), follow the shell's rule too: the bridge's own 401
    (the token revoked while the page is open) returns to the login view."""
    def bridge_refuses(route):
        # the bridge's real answer to the same call without a login
        got = requests.request(route.request.method, route.request.url, verify=shell.verify, timeout=10)
        assert got.status_code == 401
        route.fulfill(status=got.status_code, headers=dict(got.headers), body=got.content)
    for what, pattern in (("psij", "**/endpoint/list"), ("staging", "**/upload/**")):
        log_in(desk, shell)
        desk.route(pattern, bridge_refuses)
        desk.evaluate("h => { location.hash = h; }", "#/hpc1/" + what)
        if what == "staging":
            expect(desk.locator("[data-testid=staging-listing] table")).to_be_visible(timeout=T)
            src = tmp_path / "refused.txt"
            src.write_text("x")
            desk.locator("[data-testid=staging-picker]").set_input_files(str(src))
        expect(desk.locator("#login")).to_be_visible(timeout=T)
        expect(desk.locator("#login-error")).to_contain_text("log in again")
        desk.unroute(pattern)
    assert desk.errors == []


def test_a_session_that_ends_is_registered_again(shell, desk):
    """The page's session is ended behind its back (the endpoint answers 410 for it
    afterwards): the next refresh registers a new one and the page carries on."""
    def sids():
        return {s["sid"] for s in shell.get("hpc1/sysinfo/list_sessions").json()["sessions"]}
    earlier = sids()
    log_in(desk, shell, "#/hpc1/sysinfo")
    expect(desk.locator("#sysinfo-hostname")).to_have_text(socket.gethostname(), timeout=T)
    wait_for(lambda: len(sids() - earlier) == 1, T / 1000, "the page's one session", 0.2)
    old = (sids() - earlier).pop()
    assert shell.get("hpc1/sysinfo/unregister_session/" + old, "POST").status_code == 200
    assert shell.get("hpc1/sysinfo/metrics/" + old).status_code in (404, 410)
    wait_for(lambda: len(sids() - earlier - {old}) == 1, T / 1000, "a new session", 0.2)
    stamp = desk.locator(".sysinfo-stamp")
    before = stamp.text_content()
    expect(stamp).not_to_have_text(before, timeout=T)
    expect(desk.locator(".error-box:visible")).to_have_count(0)
    assert desk.errors == []
    # closing the tab ends the page's session too
    desk.close(run_before_unload=True)
    wait_for(lambda: not (sids() - earlier), T / 1000, "the closed page's session to end", 0.2)
