"""The Jobs page (share/plugins/psij.js) in a real headless Chromium against a real bridge
(TLS, token auth) and an endpoint with psij: submit from the form, the row follows the
job_status notifications to its end without a reload, the output streams in the detail
view, cancel asks first; with queue_info on a SLURM endpoint the queue and account are menus."""
import pytest

import slurm_cluster
from test_explorer import T, XSS, browser, log_in, page  # noqa: F401  (fixtures)
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser
pytest.importorskip("psij")


def open_jobs(page, orbit, plugins="psij"):
    orbit.start_bridge()
    orbit.start_endpoint("hpc1", "-p", plugins, "--plugin-config", 'psij={"poll_interval": 0.5}')
    log_in(page, orbit)
    if page.locator("#menu").is_visible():
        page.click("#menu")
    page.locator('[data-plugin="hpc1/psij"]').click()
    expect(page.locator("[data-testid=psij-executor]")).to_have_value("local", timeout=T)


def submit(page, executable, arguments, env=None):
    page.fill("[data-testid=psij-executable]", executable)
    page.fill("[data-testid=psij-arguments]", "\n".join(arguments))
    for name, value in (env or {}).items():
        page.click("[data-testid=psij-env-add]")
        page.locator("[data-testid=psij-env] .pj-row .k").last.fill(name)
        page.locator("[data-testid=psij-env] .pj-row .v").last.fill(value)
    said = page.locator("[data-testid=psij-submitted]")
    before = said.inner_text()
    page.click("[data-testid=psij-submit]")
    expect(said).to_contain_text("submitted", timeout=T)
    expect(said).not_to_have_text(before, timeout=T)
    return said.inner_text().split()[1]


def test_submit_a_local_job_watch_it_complete_and_read_its_output(orbit, page):
    open_jobs(page, orbit)
    job_id = submit(page, "/bin/sh", ["-c", 'echo "hi $WHO"; sleep 1; echo bye >&2'], {"WHO": XSS})
    row = page.locator("[data-testid=psij-jobs] tr[data-job-id='%s']" % job_id)
    expect(row.locator("[data-testid=psij-state]")).to_have_text("ACTIVE", timeout=T)
    expect(row.locator("[data-testid=psij-state]")).to_have_text("COMPLETED", timeout=T)
    expect(page.locator("[data-testid=psij-stdout]")).to_have_text("hi %s\n" % XSS, timeout=T)
    expect(page.locator("[data-testid=psij-stderr]")).to_have_text("bye\n", timeout=T)
    assert page.evaluate("window.__xss") is None
    # a second job, then back to the first one's output by its button
    other = submit(page, "/bin/echo", ["second"])
    expect(page.locator("[data-testid=psij-stdout]")).to_have_text("second\n", timeout=T)
    assert other != job_id
    row.locator("[data-testid=psij-open]").click()
    expect(page.locator("[data-testid=psij-stdout]")).to_have_text("hi %s\n" % XSS, timeout=T)


def test_cancel_asks_first_and_the_row_ends_canceled(orbit, page):
    open_jobs(page, orbit)
    asked = []

    def on_dialog(dialog):
        asked.append(dialog.message)
        dialog.accept()
    page.on("dialog", on_dialog)
    job_id = submit(page, "/bin/sleep", ["30"])
    row = page.locator("[data-testid=psij-jobs] tr[data-job-id='%s']" % job_id)
    expect(row.locator("[data-testid=psij-state]")).to_have_text("ACTIVE", timeout=T)
    row.locator("[data-testid=psij-cancel]").click()
    expect(row.locator("[data-testid=psij-state]")).to_have_text("CANCELED", timeout=T)
    assert len(asked) == 1 and job_id in asked[0]
    # a refused field comes back as the envelope's detail
    page.select_option("[data-testid=psij-executor]", "local")
    page.fill("[data-testid=psij-executable]", "relative/path")
    page.fill("[data-testid=psij-directory]", "not/absolute")
    page.click("[data-testid=psij-submit]")
    expect(page.locator("[data-testid=psij-error]")).to_contain_text("job_spec.directory", timeout=T)


def test_queue_and_account_come_from_queue_info_on_a_slurm_endpoint(orbit, page):
    slurm_cluster.require_slurm()
    open_jobs(page, orbit, "psij,queue_info")
    page.select_option("[data-testid=psij-executor]", "slurm")
    queue = page.locator("select[data-testid=psij-queue]")
    expect(queue.locator("option[value=batch]")).to_have_count(1, timeout=T)
    expect(queue.locator("option[value=debug]")).to_have_count(1)
    page.select_option("select[data-testid=psij-queue]", "debug")
    account = page.locator("select[data-testid=psij-account]")
    expect(account.locator("option[value=testacct]")).to_have_count(1, timeout=T)
    page.select_option("select[data-testid=psij-account]", "testacct")
    page.fill("[data-testid=psij-duration]", "00:02:00")
    job_id = submit(page, "/bin/echo", ["from slurm"])
    row = page.locator("[data-testid=psij-jobs] tr[data-job-id='%s']" % job_id)
    expect(row.locator("[data-testid=psij-state]")).to_have_text("COMPLETED", timeout=T)
    expect(page.locator("[data-testid=psij-stdout]")).to_have_text("from slurm\n", timeout=T)
