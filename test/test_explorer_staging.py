"""The Explorer's file browser (share/plugins/staging.js) in a real headless Chromium,
against a real bridge (TLS, token auth) and an endpoint running the staging plugin with
its home in the test's directory: upload by the file picker, list, download the bytes
back, mkdir, rename, delete, overwrite, errors, and file names that are HTML."""
import hashlib
import json
import os
import re
from urllib.parse import quote

import pytest

from test_explorer import T, XSS, browser, log_in, page  # noqa: F401  (fixtures)
from orbit_procs import wait_for  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.browser


class Dialogs:
    """Answers the page's confirm()/prompt() in order and records their messages."""

    def __init__(self, page):
        self.answers = []
        self.messages = []
        page.on("dialog", self._on)

    def _on(self, dialog):
        self.messages.append(dialog.message)
        answer = self.answers.pop(0) if self.answers else False
        if answer is False:
            dialog.dismiss()
        elif answer is True:
            dialog.accept()
        else:
            dialog.accept(answer)


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "user"
    path.mkdir()
    return path


def open_files(page, orbit, home, name="hpc1", roots=None):
    """Bridge, an endpoint whose $HOME is `home` and whose staging roots are `roots`
    (default: just `home`), and its Files page open."""
    orbit.start_bridge()
    config = "staging=" + json.dumps({"roots": [str(r) for r in (roots or [home])]})
    orbit.start_endpoint(name, "-p", "staging", "--plugin-config", config, HOME=str(home))
    log_in(page, orbit)
    if page.locator("#menu").is_visible():     # at phone width the tree is a drawer
        page.click("#menu")
    page.locator('[data-plugin="%s/staging"]' % name).click()
    expect(page.locator("[data-testid=staging-crumbs] .here")).to_have_text(
        os.path.realpath(str(home)), timeout=T)
    return page.locator("[data-testid=staging-listing]")


def row(page, name):
    return page.locator("[data-testid=staging-listing] tr[data-name=%s]" % _css_string(name))


def _css_string(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def test_upload_by_picker_list_and_download_back(orbit, page, home, tmp_path):
    data = os.urandom(3 * 2**20 + 12345)
    src = tmp_path / "results.bin"
    src.write_bytes(data)
    open_files(page, orbit, home)
    page.locator("[data-testid=staging-picker]").set_input_files(str(src))
    line = row(page, "results.bin")
    expect(line).to_be_visible(timeout=T)
    expect(line.locator("[data-testid=size]")).to_have_text("3.01 MiB")
    assert line.locator("[data-testid=size]").get_attribute("title") == "%d bytes" % len(data)
    expect(page.locator(".st-transfer.done")).to_contain_text("uploaded", timeout=T)
    assert (home / "results.bin").read_bytes() == data
    assert [p.name for p in home.iterdir()] == ["results.bin"]     # no partial left behind
    with page.expect_download(timeout=T) as info:
        line.locator("[data-action=download]").click()
    download = info.value
    assert download.suggested_filename == "results.bin"
    got = open(download.path(), "rb").read()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    # the file name itself is a link to the same download
    with page.expect_download(timeout=T) as info:
        line.locator(".lbl").click()
    assert open(info.value.path(), "rb").read() == data
    assert page.errors == []


def test_roots_from_the_plugin_config(orbit, page, home, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "on-scratch.dat").write_bytes(b"s")
    open_files(page, orbit, home, roots=[home, scratch])
    roots = page.locator("[data-testid=staging-roots] option")
    expect(roots).to_have_count(2, timeout=T)
    assert roots.all_text_contents() == [os.path.realpath(str(home)) + " (home)",
                                         os.path.realpath(str(scratch))]
    page.locator("[data-testid=staging-roots]").select_option(os.path.realpath(str(scratch)))
    expect(row(page, "on-scratch.dat")).to_be_visible(timeout=T)
    expect(page.locator("[data-testid=staging-crumbs] .here")).to_have_text(os.path.realpath(str(scratch)))
    # the parent of a root is outside every root: no way up from here
    expect(page.locator("[data-action=up]")).to_be_disabled()
    (scratch / "sub").mkdir()
    page.locator("[data-action=refresh]").click()
    row(page, "sub").locator(".lbl").click()
    expect(page.locator("[data-action=up]")).to_be_enabled(timeout=T)
    page.locator("[data-action=up]").click()
    expect(row(page, "on-scratch.dat")).to_be_visible(timeout=T)
    assert page.errors == []


def test_mkdir_navigate_rename_delete(orbit, page, home):
    (home / "a.txt").write_text("alpha")
    listing = open_files(page, orbit, home)
    dialogs = Dialogs(page)
    expect(row(page, "a.txt")).to_be_visible(timeout=T)
    # mkdir
    dialogs.answers = ["runs"]
    page.locator("[data-action=mkdir]").click()
    expect(row(page, "runs")).to_be_visible(timeout=T)
    assert (home / "runs").is_dir()
    # folders sort first; sorting by name descending keeps them first
    expect(listing.locator("tbody tr").first).to_have_attribute("data-name", "runs")
    page.locator("th button[data-sort=name]").click()
    expect(page.locator("th[aria-sort=descending] button[data-sort=name]")).to_be_visible()
    expect(listing.locator("tbody tr").first).to_have_attribute("data-name", "runs")
    # into the folder and back by the breadcrumb
    row(page, "runs").locator(".lbl").click()
    expect(page.locator("[data-testid=staging-empty]")).to_be_visible(timeout=T)
    expect(page.locator("[data-testid=staging-crumbs] .here")).to_have_text("runs")
    page.locator("[data-testid=staging-crumbs] button").first.click()
    expect(row(page, "a.txt")).to_be_visible(timeout=T)
    # rename a file, then onto an existing name: asked, refused, nothing changes
    dialogs.answers = ["b.txt"]
    row(page, "a.txt").locator("[data-action=rename]").click()
    expect(row(page, "b.txt")).to_be_visible(timeout=T)
    expect(row(page, "a.txt")).to_have_count(0)
    assert (home / "b.txt").read_text() == "alpha"
    (home / "c.txt").write_text("gamma")
    dialogs.answers = ["c.txt", False]
    row(page, "b.txt").locator("[data-action=rename]").click()
    expect(page.locator("[data-testid=staging-error]")).to_contain_text("409", timeout=T)
    assert "already exists" in dialogs.messages[-1]
    assert (home / "c.txt").read_text() == "gamma" and (home / "b.txt").exists()
    # delete asks first; a refusal deletes nothing
    dialogs.answers = [False]
    row(page, "b.txt").locator("[data-action=delete]").click()
    assert "b.txt" in dialogs.messages[-1]
    assert (home / "b.txt").exists()
    dialogs.answers = [True]
    row(page, "b.txt").locator("[data-action=delete]").click()
    expect(row(page, "b.txt")).to_have_count(0, timeout=T)
    assert not (home / "b.txt").exists()
    # a folder with files in it goes with its content, after a question that says so
    (home / "runs" / "out.dat").write_bytes(b"x" * 10)
    dialogs.answers = [True]
    row(page, "runs").locator("[data-action=delete]").click()
    expect(row(page, "runs")).to_have_count(0, timeout=T)
    assert "everything in it" in dialogs.messages[-1]
    assert sorted(p.name for p in home.iterdir()) == ["c.txt"]
    assert page.errors == []


def test_upload_over_an_existing_file_asks(orbit, page, home, tmp_path):
    (home / "data.csv").write_text("old")
    src = tmp_path / "data.csv"
    src.write_text("new content")
    open_files(page, orbit, home)
    dialogs = Dialogs(page)
    expect(row(page, "data.csv")).to_be_visible(timeout=T)
    dialogs.answers = [False]
    page.locator("[data-testid=staging-picker]").set_input_files(str(src))
    expect(page.locator(".st-transfer.failed")).to_contain_text("not replaced", timeout=T)
    assert (home / "data.csv").read_text() == "old"
    assert "already exists" in dialogs.messages[-1]
    dialogs.answers = [True]
    page.locator("[data-testid=staging-picker]").set_input_files(str(src))
    expect(page.locator(".st-transfer.done")).to_be_visible(timeout=T)
    assert (home / "data.csv").read_text() == "new content"
    expect(row(page, "data.csv").locator("[data-testid=size]")).to_have_text("11 B", timeout=T)


def test_errors_show_the_envelope_detail(orbit, page, home):
    (home / "gone.txt").write_text("soon gone")
    (home / "inside").mkdir()
    (home / "to-inside").symlink_to(str(home / "inside"))
    (home / "escape").symlink_to("/etc")
    open_files(page, orbit, home)
    expect(row(page, "gone.txt")).to_be_visible(timeout=T)
    # a link out of the allowed roots: refused by the endpoint, said on the page
    row(page, "escape").locator(".lbl").click()
    error = page.locator("[data-testid=staging-error]")
    expect(error).to_contain_text("Cannot open escape: HTTP 403", timeout=T)
    # a link to a folder inside them opens it
    row(page, "to-inside").locator(".lbl").click()
    expect(page.locator("[data-testid=staging-empty]")).to_be_visible(timeout=T)
    expect(error).to_be_hidden()
    page.locator("[data-action=up]").click()
    expect(row(page, "gone.txt")).to_be_visible(timeout=T)
    os.unlink(str(home / "gone.txt"))
    row(page, "gone.txt").locator("[data-action=download]").click()
    expect(error).to_contain_text("Cannot download gone.txt: HTTP 404", timeout=T)
    expect(error).to_contain_text("gone.txt")
    # the next listing drops the row and the error
    page.locator("[data-action=refresh]").click()
    expect(row(page, "gone.txt")).to_have_count(0, timeout=T)
    expect(error).to_be_hidden()


def test_file_names_are_text_not_html(orbit, page, home):
    name = XSS + ".txt"
    (home / name).write_text("payload")
    (home / (XSS + "dir")).mkdir()
    open_files(page, orbit, home)
    line = row(page, name)
    expect(line).to_be_visible(timeout=T)
    expect(line.locator(".lbl")).to_have_text(name)
    expect(row(page, XSS + "dir").locator(".lbl")).to_have_text(XSS + "dir")
    row(page, XSS + "dir").locator(".lbl").click()
    expect(page.locator("[data-testid=staging-crumbs] .here")).to_have_text(XSS + "dir", timeout=T)
    assert page.locator("#page img").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.errors == []


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_layout_screenshot(orbit, page, home, tmp_path, width, height):
    """Not a pixel check: the page fits the width (no sideways scrolling of the listing)
    and a screenshot is kept in the test's temporary directory for a look."""
    for i, size in enumerate((0, 900, 2**20 * 5, 2**31)):
        with open(str(home / ("file-%d-with-a-long-descriptive-name.dat" % i)), "wb") as f:
            f.truncate(size)
    (home / "inputs").mkdir()
    page.set_viewport_size({"width": width, "height": height})
    open_files(page, orbit, home)
    expect(row(page, "inputs")).to_be_visible(timeout=T)
    expect(row(page, "file-3-with-a-long-descriptive-name.dat").locator("[data-testid=size]")) \
        .to_have_text("2.00 GiB")
    page.screenshot(path=str(tmp_path / ("staging-%d.png" % width)), full_page=True)
    overflow = page.evaluate("(() => { var p = document.getElementById('page');"
                             " return p.scrollWidth - p.clientWidth; })()")
    assert overflow <= 1, "the page scrolls sideways by %d px at %d px" % (overflow, width)


def test_drop_files_onto_the_listing(orbit, page, home):
    open_files(page, orbit, home)
    expect(page.locator("[data-testid=staging-empty]")).to_be_visible(timeout=T)
    # what a drag from the desktop delivers: a DataTransfer holding File objects
    page.evaluate("""() => {
      const dt = new DataTransfer();
      dt.items.add(new File(['first file\\n'], 'one.txt', {type: 'text/plain'}));
      dt.items.add(new File([new Uint8Array(70000).fill(7)], 'two.bin'));
      const zone = document.querySelector('[data-testid=staging-drop]');
      for (const type of ['dragenter', 'dragover', 'drop']) {
        zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
      }
    }""")
    expect(row(page, "one.txt")).to_be_visible(timeout=T)
    expect(row(page, "two.bin").locator("[data-testid=size]")).to_have_text("68.4 KiB", timeout=T)
    assert (home / "one.txt").read_text() == "first file\n"
    assert (home / "two.bin").read_bytes() == b"\x07" * 70000
    assert page.errors == []


def test_cancelled_upload_resumes(orbit, page, home, tmp_path):
    """Cancel halfway (the upload throttled to 2 MiB/s by the browser), then pick the
    file again: the page offers to continue from what the endpoint holds, and the PUT
    carries offset=."""
    data = os.urandom(12 * 2**20)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    open_files(page, orbit, home)
    dialogs = Dialogs(page)
    puts = []
    page.on("request", lambda r: puts.append(r.url) if r.method == "PUT" else None)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                  "downloadThroughput": -1, "uploadThroughput": 2 * 2**20})
    page.locator("[data-testid=staging-picker]").set_input_files(str(src))
    transfer = page.locator(".st-transfer[data-name='big.bin']")
    expect(transfer.locator(".info")).to_contain_text("MiB of", timeout=T)
    page.wait_for_function("() => { const b = document.querySelector('.st-transfer .st-progress');"
                           " return b && +b.getAttribute('aria-valuenow') >= 25; }", timeout=T)
    page.screenshot(path=str(tmp_path / "staging-upload.png"))
    transfer.locator("[data-action=cancel]").click()
    expect(transfer).to_have_class(re.compile("failed"), timeout=T)
    expect(transfer.locator(".info")).to_contain_text("cancelled")
    assert not (home / "big.bin").exists()
    partial = home / ".big.bin.orbit-partial"
    wait_for(lambda: partial.exists() and partial.stat().st_size > 0, T / 1000, "the partial upload", 0.1)
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                  "downloadThroughput": -1, "uploadThroughput": -1})
    dialogs.answers = [True]
    page.locator("[data-testid=staging-picker]").set_input_files(str(src))
    expect(page.locator(".st-transfer.done[data-name='big.bin']")).to_be_visible(timeout=T)
    assert "Continue from there" in dialogs.messages[-1]
    assert "offset=" in puts[-1] and "offset=" not in puts[0]
    assert (home / "big.bin").read_bytes() == data
    assert not partial.exists()


def test_an_upload_waits_while_the_endpoint_runs_all_its_transfers(orbit, page, home, tmp_path):
    """The only transfer slot is held by a download nobody reads: the page says it waits
    (a PUT now would be refused while sending, seen as a cut connection) and uploads once
    the slot is free; a download asked for meanwhile is refused on the page."""
    (home / "held.bin").write_bytes(os.urandom(64 * 2**20))
    orbit.start_bridge()
    config = "staging=" + json.dumps({"roots": [str(home)], "max_transfers": 1})
    orbit.start_endpoint("hpc1", "-p", "staging", "--plugin-config", config, HOME=str(home))
    http = orbit.session()
    base = "%s/hpc1/staging" % orbit.url
    sid = http.post(base + "/register_session", verify=orbit.verify, timeout=10).json()["sid"]
    held = http.get("%s/download/%s" % (base, sid), params={"path": str(home / "held.bin")}, stream=True,
                    verify=orbit.verify, timeout=30)
    assert held.status_code == 200
    log_in(page, orbit)
    if page.locator("#menu").is_visible():
        page.click("#menu")
    page.locator('[data-plugin="hpc1/staging"]').click()
    expect(page.locator("[data-testid=staging-crumbs] .here")).to_have_text(os.path.realpath(str(home)), timeout=T)
    data = os.urandom(300000)
    src = tmp_path / "small.bin"
    src.write_bytes(data)
    page.locator("[data-testid=staging-picker]").set_input_files(str(src))
    transfer = page.locator(".st-transfer[data-name='small.bin']")
    expect(transfer.locator(".info")).to_contain_text("waiting: hpc1 runs as many transfers", timeout=T)
    # a download meanwhile says why it cannot start, on the page (not a failed download)
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    row(page, "held.bin").locator("[data-action=download]").click()
    expect(page.locator("[data-testid=staging-error]")).to_contain_text("hpc1 runs as many transfers", timeout=T)
    assert downloads == []
    held.close()
    expect(page.locator(".st-transfer.done[data-name='small.bin']")).to_be_visible(timeout=T)
    assert (home / "small.bin").read_bytes() == data
    assert page.errors == []


def test_a_name_that_is_not_utf8_is_listed_downloaded_and_renamed(orbit, page, home, tmp_path):
    """A Latin-1 name from an old archive comes as lone surrogates, which encodeURIComponent
    refuses: the page still lists the folder (it failed whole with 'URI malformed'), the
    download link carries the name's own bytes (%E9) and fetches that file, and a rename
    (JSON) works on it."""
    with open(os.path.join(os.fsencode(str(home)), b"caf\xe9.txt"), "wb") as f:
        f.write(b"latin")
    (home / "ok.txt").write_bytes(b"ok")
    open_files(page, orbit, home)
    expect(row(page, "ok.txt")).to_be_visible(timeout=T)
    odd = page.locator("[data-testid=staging-listing] tr[data-name^=caf]")
    expect(odd).to_have_count(1)
    escaped = quote(os.fsencode(str(home / "caf\udce9.txt")), safe="")
    assert "?path=%s&" % escaped in odd.locator("a.lbl").get_attribute("href")
    with page.expect_download(timeout=T) as info:
        odd.locator("[data-action=download]").click()
    assert open(info.value.path(), "rb").read() == b"latin"
    dialogs = Dialogs(page)
    dialogs.answers = ["cafe.txt"]
    odd.locator("[data-action=rename]").click()
    expect(row(page, "cafe.txt").locator("a.lbl")).to_be_visible(timeout=T)
    assert (home / "cafe.txt").read_bytes() == b"latin"
    assert page.errors == []


def test_a_resume_onto_a_held_part_of_another_file_starts_over(orbit, page, home, tmp_path):
    """The endpoint holds 1 MiB of an earlier upload of another big.bin; the user says
    continue: the page sends its digest of its own first MiB, the endpoint finds they
    differ and removes the part, and the page starts over (a mix was committed)."""
    data = os.urandom(3 * 2**20)
    (home / ".big.bin.orbit-partial").write_bytes(os.urandom(2**20))
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    open_files(page, orbit, home)
    dialogs = Dialogs(page)
    dialogs.answers = [True]
    puts = []
    page.on("request", lambda r: puts.append(r.url) if r.method == "PUT" else None)
    page.locator("[data-testid=staging-picker]").set_input_files(str(src))
    expect(page.locator(".st-transfer.done[data-name='big.bin']")).to_be_visible(timeout=T)
    assert "Continue from there" in dialogs.messages[-1]
    assert "held_sha256=" in puts[0] and "offset=" not in puts[-1], puts
    assert (home / "big.bin").read_bytes() == data
    assert not (home / ".big.bin.orbit-partial").exists()
    assert page.errors == []
