"""The Explorer's Globus page (share/plugins/globus.js) in a real headless Chromium,
against a real bridge (TLS, token auth), an endpoint with the globus plugin and the fake
Globus: credentials by the form (password fields, never shown again), two collections
side by side, a transfer followed live by transfer_status, cancel, Globus's errors, and
names from Globus that are HTML."""
import json

import pytest

pytest.importorskip("globus_sdk", reason="globus-sdk (the globus extra) is not installed")

from test_explorer import T, XSS, browser, log_in, page  # noqa: F401,E402  (fixtures)
from fake_globus import FakeGlobus  # noqa: E402
from orbit_procs import Orbit  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

import requests  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    f = FakeGlobus(str(tmp_path_factory.mktemp("fake_globus")), task_seconds=1.0)
    yield f
    f.stop()


@pytest.fixture(scope="module")
def orbit(tmp_path_factory, fake):
    o = Orbit(str(tmp_path_factory.mktemp("globus_explorer") / "home"), tls=True)
    o.start_bridge()
    env = dict(fake.env(), RADICAL_ORBIT_GLOBUS_COLLECTION=fake.collections[0])
    o.start_endpoint("hpc1", "-p", "globus", "--plugin-config",
                     "globus=" + json.dumps({"poll_interval": 0.2, "max_retries": 0}), **env)
    yield o
    o.stop()


def open_globus(page, orbit, fake):
    log_in(page, orbit)
    page.locator('[data-plugin="hpc1/globus"]').click()
    expect(page.locator("[data-testid=globus-local]")).to_contain_text(fake.collections[0], timeout=T)
    token = page.locator("[data-testid=globus-login] input[data-field=access_token]")
    assert token.get_attribute("type") == "password"
    token.fill(fake.access_token)
    page.locator("[data-testid=globus-login] button[type=submit]").click()
    expect(page.locator("[data-testid=globus-auth]")).to_have_text("signed in: access_token", timeout=T)
    assert token.input_value() == ""                       # the page keeps no copy
    assert fake.access_token not in page.content()


def pane(page, side):
    return page.locator("[data-testid=globus-%s]" % side)


def test_sign_in_browse_transfer_live_and_cancel(orbit, page, fake):
    lab, scratch = fake.collections
    open_globus(page, orbit, fake)
    left, right = pane(page, "left"), pane(page, "right")
    expect(left.locator("[data-testid=globus-collection]")).to_have_value("local")
    expect(left.locator("tr[data-name=notes\\.txt]")).to_be_visible(timeout=T)
    right.locator("[data-testid=globus-collection]").fill(scratch)
    right.locator("[data-action=list]").click()
    expect(right.locator("tr[data-name=incoming]")).to_be_visible(timeout=T)
    # into a folder and back up
    left.locator("tr[data-name=data] button.dir").click()
    expect(left.locator("tr[data-name=run1\\.h5]")).to_be_visible(timeout=T)
    left.locator("[data-action=up]").click()
    expect(left.locator("tr[data-name=data]")).to_be_visible(timeout=T)
    # tick the folder, submit: a row that turns SUCCEEDED by the notifications alone
    left.locator("tr[data-name=data] input[type=checkbox]").check()
    page.locator("[data-testid=globus-label]").fill("from the explorer")
    page.locator("[data-testid=globus-sync]").select_option("checksum")
    page.locator("[data-testid=globus-submit]").click()
    row = page.locator("[data-testid=globus-transfers] tr", has_text="from the explorer")
    expect(row.locator("[data-testid=globus-task-status]")).to_have_text("SUCCEEDED", timeout=T)
    expect(row).to_contain_text("2 / 1")
    sent = fake.requests("/v0.10/transfer$")[-1]["body"]
    assert sent["label"] == "from the explorer" and sent["sync_level"] == 3
    assert sent["DATA"][0]["source_path"] == "/home/fake/data/" and sent["DATA"][0]["recursive"] is True
    right.locator("[data-action=list]").click()
    expect(right.locator("tr[data-name=data]")).to_be_visible(timeout=T)
    # a slow one, cancelled from its row
    fake.control("config", {"task_seconds": 60})
    try:
        left.locator("tr[data-name=data] input[type=checkbox]").uncheck()
        left.locator("tr[data-name=notes\\.txt] input[type=checkbox]").check()
        page.locator("[data-testid=globus-label]").fill("slow one")
        page.locator("[data-testid=globus-submit]").click()
        slow = page.locator("[data-testid=globus-transfers] tr", has_text="slow one")
        expect(slow.locator("[data-testid=globus-task-status]")).to_have_text("ACTIVE (Queued)", timeout=T)
        slow.locator("[data-action=cancel]").click()
        expect(slow.locator("[data-testid=globus-task-status]")).to_have_text("FAILED (CANCELED)", timeout=T)
        expect(slow.locator("[data-action=cancel]")).to_have_count(0)
    finally:
        fake.control("config", {"task_seconds": 1.0})
    assert page.errors == []


def test_globus_errors_and_html_names_are_text(orbit, page, fake):
    lab = fake.collections[0]
    # a file whose name is HTML, made through the fake's own Transfer API
    resp = requests.post("%s/v0.10/operation/endpoint/%s/mkdir" % (fake.url, lab), timeout=10,
                         headers={"Authorization": "Bearer " + fake.access_token},
                         json={"DATA_TYPE": "mkdir", "path": "/~/" + XSS.replace("/", "") + "/"})
    assert resp.status_code == 202, resp.text
    open_globus(page, orbit, fake)
    left = pane(page, "left")
    expect(left.locator("button.dir", has_text=XSS.replace("/", ""))).to_be_visible(timeout=T)
    assert page.evaluate("window.__xss") is None
    # a consent requirement on the next listing: the page says what to do
    fake.control("inject", {"path": "/ls$", "status": 403, "body": {
        "code": "ConsentRequired", "message": "Missing required data_access consent",
        "required_scopes": ["urn:globus:auth:scope:transfer.api.globus.org:all[*https://auth.globus.org/"
                            "scopes/%s/data_access]" % lab]}})
    left.locator("[data-action=list]").click()
    error = page.locator("[data-testid=globus-error]")
    expect(error).to_contain_text("HTTP 401", timeout=T)
    expect(error).to_contain_text("globus session consent")
    # nothing ticked: said, nothing sent
    page.locator("[data-testid=globus-submit]").click()
    expect(error).to_contain_text("Tick the files or folders")
    assert page.evaluate("window.__xss") is None
    assert page.errors == []
