"""The Explorer's queue_info page (share/plugins/queue_info.js) in a real headless Chromium,
against a real bridge and an endpoint on the SLURM test cluster: partitions with their
availability and limits, my jobs and all jobs per queue, the accounts, cancel with a
confirmation (refused, then accepted), and a job name that is HTML shown as text."""
import os
import subprocess

import pytest

from test_explorer import T, XSS, browser, log_in, page  # noqa: F401  (fixtures)
from test_explorer_staging import Dialogs
from orbit_procs import wait_for  # noqa: E402
from playwright.sync_api import expect  # noqa: E402
from slurm_cluster import require_slurm

pytestmark = pytest.mark.browser


def squeue_state(job_id):
    return subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
                          capture_output=True, text=True, timeout=30).stdout.strip()


@pytest.fixture
def sleeper():
    require_slurm()
    name = "qi-%d-%s" % (os.getpid(), XSS)
    out = subprocess.run(["sbatch", "--parsable", "-p", "batch", "-A", "testacct", "-t", "2", "-J", name,
                          "-o", "/dev/null", "--wrap", "sleep 60"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip().split(";")[0]
    wait_for(lambda: squeue_state(job_id) == "RUNNING", 30, "job %s RUNNING" % job_id, interval=0.2)
    yield job_id, name
    subprocess.run(["scancel", job_id], capture_output=True, timeout=30)


def test_queues_jobs_accounts_and_cancel(orbit, page, sleeper):
    job_id, name = sleeper
    orbit.start_bridge("-p", "none")
    orbit.start_endpoint("hpc", "-p", "queue_info")
    log_in(page, orbit)
    dialogs = Dialogs(page)
    page.locator('[data-plugin="hpc/queue_info"]').click()

    queues = page.locator("[data-testid=qi-queues]")
    expect(queues.locator("tr[data-queue=debug] [data-testid=default]")).to_be_visible(timeout=T)
    batch = queues.locator("tr[data-queue=batch]")
    expect(batch.locator("[data-testid=limit]")).to_have_text("1 h 0 min")
    expect(batch.locator("[data-testid=available]")).to_have_text("1 / 1")
    expect(batch.locator("[data-testid=state]")).to_have_text("UP")
    expect(page.locator("[data-testid=qi-backend]")).to_contain_text("backend slurm")
    accounts = page.locator("[data-testid=qi-allocations]")
    expect(accounts.locator("td", has_text="testacct").first).to_be_visible(timeout=T)

    # my jobs in every queue, then only batch's, then only debug's (none of mine there)
    row = page.locator("[data-testid=qi-jobs] tr[data-job='%s']" % job_id)
    expect(row).to_be_visible(timeout=T)
    expect(row.locator("td").nth(1)).to_have_text(name)             # the HTML in the name is text
    expect(row.locator("[data-testid=state]")).to_have_text("RUNNING")
    batch.locator("[data-action=pick]").click()
    expect(page.locator("[data-testid=qi-queue-select]")).to_have_value("batch")
    expect(row).to_be_visible(timeout=T)
    page.locator("[data-testid=qi-queue-select]").select_option("debug")
    expect(row).to_have_count(0, timeout=T)
    page.locator("[data-testid=qi-scope]").select_option("*")
    page.locator("[data-testid=qi-queue-select]").select_option("")
    expect(row).to_be_visible(timeout=T)

    # cancel asks first: refused, nothing happens; accepted, the scheduler cancels the job
    dialogs.answers = [False]
    row.locator("[data-action=cancel]").click()
    assert job_id in dialogs.messages[-1] and "Cancel" in dialogs.messages[-1]
    assert squeue_state(job_id) == "RUNNING"
    dialogs.answers = [True]
    row.locator("[data-action=cancel]").click()
    expect(page.locator("[data-testid=qi-cancelled]")).to_contain_text("cancelled job %s" % job_id, timeout=T)
    wait_for(lambda: squeue_state(job_id) == "CANCELLED", 30, "job %s CANCELLED" % job_id, interval=0.2)
    expect(row).to_have_count(0, timeout=T)
    assert page.evaluate("window.__xss") is None
    assert page.errors == []
