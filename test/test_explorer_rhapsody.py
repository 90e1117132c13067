"""The Explorer's Tasks page (share/plugins/rhapsody.js) in a real headless Chromium,
against a real bridge (TLS, token auth) and an endpoint ``-p rhapsody``: submit an
executable from the form, the live task table, a task's output shown as text, another
session (the SDK's) shown from the sessions table, cancel and cancel all."""
import sys

import cloudpickle
import pytest

from test_explorer import T, XSS, browser, log_in, page  # noqa: F401  (fixtures)
from rhapsody_support import require_rhapsody, wait_for_file
from playwright.sync_api import expect  # noqa: E402

from radical_orbit import BridgeClient
from radical_orbit.plugins.rhapsody_client import RhapsodyClient, function_task

pytestmark = pytest.mark.browser
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(sys.modules["rhapsody_support"])


def lookup(key):
    return {"a": 1}[key]


def open_tasks(page, orbit, name="hpc1"):
    orbit.start_bridge()
    orbit.start_endpoint(name, "-p", "rhapsody")
    log_in(page, orbit)
    page.locator('[data-plugin="%s/rhapsody"]' % name).click()
    expect(page.locator("[data-testid=rhapsody-stats]")).to_contain_text("ready", timeout=T)


def test_submit_watch_inspect_and_cancel_tasks_from_the_page(orbit, page, tmp_path):
    require_rhapsody()
    open_tasks(page, orbit)
    # an executable from the form, run through the shell; its output is HTML-looking text
    page.locator("[data-testid=rhapsody-exe]").fill("echo '%s'; echo oops >&2; exit 3" % XSS)
    page.locator("[data-testid=rhapsody-args]").fill("")
    page.locator("[data-testid=rhapsody-shell]").check()
    page.locator("[data-testid=rhapsody-name]").fill("from the page")
    page.locator("[data-testid=rhapsody-submit]").click()
    expect(page.locator("[data-testid=rhapsody-submitted]")).to_contain_text("submitted 1 task", timeout=T)
    row = page.locator("[data-testid=rhapsody-task-row]", has_text="from the page")
    expect(row.locator("[data-state=FAILED]")).to_be_visible(timeout=T)
    row.locator("[data-testid=rhapsody-open]").click()
    expect(page.locator("[data-testid=rhapsody-stdout]")).to_have_text(XSS + "\n", timeout=T)
    expect(page.locator("[data-testid=rhapsody-stderr]")).to_have_text("oops\n")
    expect(page.locator("[data-testid=rhapsody-detail]")).to_contain_text("exit code3")
    expect(page.locator("[data-testid=rhapsody-count-FAILED]")).to_have_text("FAILED 1", timeout=T)
    # three copies at once
    page.locator("[data-testid=rhapsody-shell]").uncheck()
    page.locator("[data-testid=rhapsody-exe]").fill("/bin/echo")
    page.locator("[data-testid=rhapsody-args]").fill("three times")
    page.locator("[data-testid=rhapsody-copies]").fill("3")
    page.locator("[data-testid=rhapsody-submit]").click()
    expect(page.locator("[data-testid=rhapsody-count-DONE]")).to_have_text("DONE 3", timeout=T)

    # the SDK's session, shown from the sessions table: values, exceptions, cancel
    with BridgeClient(url=orbit.url, token=orbit.token, cert=orbit.tls["cert"]) as bc:
        with RhapsodyClient(bc.get_endpoint_client("hpc1"), "rhapsody", workers=1) as rc:
            done = rc.submit_tasks([function_task(lookup, ("a",), name="value"),
                                    function_task(lookup, ("b",), name="raises")])
            rc.wait_tasks(done, timeout=60)
            gate = str(tmp_path / "gate")
            slow = rc.submit_tasks([function_task(wait_for_file, (gate,), name="nap-%d" % i) for i in range(4)])
            sessions = page.locator("[data-testid=rhapsody-sessions]")
            expect(sessions).to_contain_text(rc.sid, timeout=T)
            sessions.locator("tr", has_text=rc.sid).locator("[data-testid=rhapsody-view]").click()
            expect(page.locator("[data-testid=rhapsody-shown]")).to_have_text(rc.sid, timeout=T)
            page.locator("[data-testid=rhapsody-task-row]", has_text="raises") \
                .locator("[data-testid=rhapsody-open]").click()
            expect(page.locator("[data-testid=rhapsody-exception]")).to_have_text("KeyError: b", timeout=T)
            expect(page.locator("[data-testid=rhapsody-traceback]")).to_contain_text("lookup")
            page.locator("[data-testid=rhapsody-task-row]", has_text="value") \
                .locator("[data-testid=rhapsody-open]").click()
            expect(page.locator("[data-testid=rhapsody-return]")).to_have_text("1", timeout=T)
            last = page.locator("[data-testid=rhapsody-task-row]", has_text="nap-3")
            last.locator("[data-testid=rhapsody-cancel]").click()
            expect(last.locator("[data-state=CANCELED]")).to_be_visible(timeout=T)
            page.once("dialog", lambda dialog: dialog.accept())
            page.locator("[data-testid=rhapsody-cancel-all]").click()
            expect(page.locator("[data-testid=rhapsody-count-CANCELED]")).to_have_text("CANCELED 4", timeout=T)
            assert [r.state for r in rc.wait_tasks(slow, timeout=30)] == ["CANCELED"] * 4
            open(gate, "w").close()         # the one that was running ends
    assert page.evaluate("window.__xss") is None
