"""The Jobs page's "Launch an endpoint" card in headless Chromium against a real bridge:
a child launched from the form goes connected and appears in the tree under its parent;
cancel ends it and it leaves the tree; a failing launch shows its reason as text."""
import pytest

from test_explorer import T, XSS, browser, log_in, page  # noqa: F401  (fixtures)
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser
pytest.importorskip("psij")


def open_jobs(page, orbit):
    orbit.start_bridge()
    orbit.start_endpoint("hpc1", "-p", "psij,sysinfo", "--plugin-config", 'psij={"poll_interval": 0.5}')
    log_in(page, orbit)
    if page.locator("#menu").is_visible():
        page.click("#menu")
    page.locator('[data-plugin="hpc1/psij"]').click()
    expect(page.locator("[data-testid=launch-executor]")).to_have_value("local", timeout=T)


def test_launch_a_child_see_it_in_the_tree_and_cancel_it(orbit, page):
    open_jobs(page, orbit)
    page.on("dialog", lambda dialog: dialog.accept())
    page.fill("[data-testid=launch-plugins]", "sysinfo")
    page.click("[data-testid=launch-submit]")
    row = page.locator("[data-testid=launch-list] tr[data-launch='hpc1.1']")
    expect(row.locator("[data-testid=launch-state]")).to_have_text("connected", timeout=T)
    expect(page.locator('[data-endpoint-link="hpc1.1"]')).to_have_count(1, timeout=T)
    expect(row.locator("[data-testid=launch-child]")).to_have_attribute("href", "#/hpc1.1")
    row.locator("[data-testid=launch-cancel]").click()
    expect(row.locator("[data-testid=launch-state]")).to_have_text("ended", timeout=T)
    expect(page.locator('[data-endpoint-link="hpc1.1"]')).to_have_count(0, timeout=T)


def test_a_failed_launch_shows_its_reason_as_text(orbit, page):
    open_jobs(page, orbit)
    page.fill("[data-testid=launch-name]", "bad1")
    page.fill("[data-testid=launch-setup]", "echo '%s'; exit 3" % XSS)
    page.click("[data-testid=launch-submit]")
    row = page.locator("[data-testid=launch-list] tr[data-launch='bad1']")
    expect(row.locator("[data-testid=launch-state]")).to_have_text("failed", timeout=T)
    expect(row.locator("[data-testid=launch-reason]")).to_contain_text("the setup command failed (exit 3)")
    expect(row.locator("[data-testid=launch-reason]")).to_contain_text(XSS)
    assert page.evaluate("window.__xss") is None
    page.select_option("[data-testid=launch-tunnel]", "forward")
    page.fill("[data-testid=launch-via]", "me@host:99999")
    page.click("[data-testid=launch-submit]")
    expect(page.locator("[data-testid=launch-error]")).to_contain_text("bad ssh host", timeout=T)
