"""The globus plugin and its SDK (GlobusClient) through a real bridge and endpoint (TLS,
token auth), with the real globus-sdk on the endpoint talking to a fake Globus process
(test/fake_globus.py) through its base-URL overrides. The fake checks what it receives;
these tests check what it recorded: every route, the token refresh path, the consent
error, a 429 with retry, Globus's error codes, and that no credential reaches a log or
the topology."""
import glob
import json
import os
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("globus_sdk", reason="globus-sdk (the globus extra) is not installed")

from fake_globus import FakeGlobus  # noqa: E402
from orbit_procs import REPO, Orbit, wait_for  # noqa: E402

from radical_orbit import BridgeClient  # noqa: E402
from radical_orbit.errors import BadRequest, OrbitError, Unauthorized  # noqa: E402
from radical_orbit.plugins.globus_client import GlobusClient, GlobusConsentRequired  # noqa: E402

#: the plugin polls fast here, retries at most once, and sleeps at most 1 s for a Retry-After
CONFIG = {"poll_interval": 0.2, "max_retries": 1, "max_sleep": 1.0, "max_wait": 20.0}
CONSENT_SCOPE = ("urn:globus:auth:scope:transfer.api.globus.org:all"
                 "[*https://auth.globus.org/scopes/%s/data_access]")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    f = FakeGlobus(str(tmp_path_factory.mktemp("fake_globus")), task_seconds=0.6)
    yield f
    f.stop()


@pytest.fixture(scope="module")
def orbit(tmp_path_factory, fake):
    """One bridge (TLS, auth) and endpoint ``hpc1`` with the globus plugin, pointed at the
    fake by globus-sdk's own environment variables; ``local`` is the first collection."""
    o = Orbit(str(tmp_path_factory.mktemp("globus") / "home"), tls=True)
    o.start_bridge()
    env = dict(fake.env(), RADICAL_ORBIT_GLOBUS_COLLECTION=fake.collections[0])
    o.start_endpoint("hpc1", "-p", "globus", "--plugin-config", "globus=" + json.dumps(CONFIG), **env)
    yield o
    o.stop()


@pytest.fixture(scope="module")
def bc(orbit):
    client = BridgeClient(url=orbit.url, cert=orbit.tls["cert"], token=orbit.token)
    yield client
    client.close()


@pytest.fixture
def gc(bc, fake):
    """A session with the fake's access token; the topology names GlobusClient as the client."""
    assert isinstance(bc.get_endpoint_client("hpc1").get_plugin("globus", register=False), GlobusClient)
    client = GlobusClient(bc.get_endpoint_client("hpc1"), "globus", access_token=fake.access_token)
    yield client
    client.close()


def count(fake):
    return len(fake.requests())


def since(fake, mark, part=""):
    """The fake's record of the requests after ``mark`` (a ``count`` taken before) whose
    path contains ``part``."""
    return [r for r in fake.requests()[mark:] if part in r["path"]]


# -- sessions and credentials -------------------------------------------------------------
def test_a_session_without_credentials_answers_401_until_it_logs_in(bc, fake):
    ec = bc.get_endpoint_client("hpc1")
    gc = GlobusClient(ec, "globus")            # no arguments, no RADICAL_ORBIT_GLOBUS_* set
    try:
        assert gc.auth is None
        with pytest.raises(Unauthorized) as err:
            gc.tasks()
        assert "no Globus credentials yet" in err.value.detail and "login/" in err.value.detail
        assert gc.login(access_token=fake.access_token) == "access_token"
        assert isinstance(gc.tasks(), list)
        assert [s.get("auth") for s in gc.list_sessions() if s["sid"] == gc.sid] == ["access_token"]
    finally:
        gc.close()


def test_credentials_are_checked_strictly(bc, fake):
    ec = bc.get_endpoint_client("hpc1")
    with pytest.raises(BadRequest) as err:
        ec.request("POST", "globus/register_session", json={"refresh_token": "x"})
    assert "refresh_token + client_id" in err.value.detail
    with pytest.raises(BadRequest) as err:
        ec.request("POST", "globus/register_session", json={"access_token": "a", "password": "p"})
    assert "unknown credential fields password" in err.value.detail
    # a refresh token Globus refuses registers nothing: Globus's 400 invalid_grant is a 502
    # (a 400 here would say the caller's request was malformed) naming what Globus refused
    before = len(ec.get_plugin("globus", register=False).list_sessions())
    with pytest.raises(OrbitError) as err:
        GlobusClient(ec, "globus", refresh_token="not-issued", client_id=fake.client_id)
    assert err.value.status_code == 502 and "invalid_grant" in err.value.detail
    assert "Globus refused the request as invalid" in err.value.detail
    assert "refresh token not valid for this client" in err.value.detail
    assert len(ec.get_plugin("globus", register=False).list_sessions()) == before


def test_refresh_token_session_refreshes_after_globus_answers_401(bc, fake):
    mark = count(fake)
    gc = GlobusClient(bc.get_endpoint_client("hpc1"), "globus",
                      refresh_token=fake.refresh_token, client_id=fake.client_id)
    try:
        assert gc.auth == "refresh_token"
        grants = [r for r in since(fake, mark) if r["path"] == "/v2/oauth2/token"]
        assert len(grants) == 1                   # the first access token, at login
        assert grants[0]["body"] == {"grant_type": "refresh_token", "refresh_token": fake.refresh_token,
                                     "client_id": fake.client_id}
        assert gc.get_endpoint(fake.collections[0])["display_name"] == "Fake Lab Collection"
        first = since(fake, mark, "/v0.10/endpoint/")[-1]["auth"]
        fake.control("expire", {})                # Globus now answers 401 to that token
        mark2 = count(fake)
        assert gc.get_endpoint(fake.collections[1])["display_name"] == "Fake HPC Scratch"
        seen = [(r["path"].split("/")[-1] if "oauth2" not in r["path"] else "token", r["auth"] == first)
                for r in since(fake, mark2)]
        # refused with the old token, a refresh grant, the same call again with the new one
        assert seen == [(fake.collections[1], True), ("token", False), (fake.collections[1], False)]
    finally:
        gc.close()


def test_a_plain_access_token_that_expires_stops_its_polling_and_says_what_to_do(orbit, bc, fake):
    """A session with a plain access token (nothing to refresh it with) whose token
    expires while one of its transfers is watched: the watcher polled it, and logged the
    refusal, for ever. Now it stops polling that session once Globus answers 401, logs
    that once, and the session's calls answer 401 saying to log in again, which works."""
    import requests
    issued = requests.post(fake.url + "/v2/oauth2/token", timeout=10,
                           data={"grant_type": "refresh_token", "refresh_token": fake.refresh_token,
                                 "client_id": fake.client_id}).json()["access_token"]
    gc = GlobusClient(bc.get_endpoint_client("hpc1"), "globus", access_token=issued)
    endpoint = orbit.endpoints["hpc1"]
    fake.control("config", {"hold": True})      # the transfer stays ACTIVE: watched
    try:
        lab, scratch = fake.collections
        task_id = gc.submit("local", scratch, [("/~/notes.txt", "/~/expiring.txt")])["task_id"]

        def polls():
            return [r for r in fake.requests("/task_list") if r["auth"] == "Bearer " + issued]
        wait_for(lambda: polls(), 10, "the watcher polling the task")
        fake.control("expire", {})                 # Globus now answers 401 to that token
        wait_for(lambda: "Globus refused the credentials of session %s" % gc.sid in endpoint.output(), 10,
                 "the refusal logged")
        refused = len(polls())
        with pytest.raises(OrbitError) as err:
            gc.task(task_id)
        assert err.value.status_code == 401
        assert "Globus refused its credentials" in err.value.detail and "POST login/" in err.value.detail
        with pytest.raises(OrbitError) as err:
            gc.tasks()
        assert err.value.status_code == 401 and "POST login/" in err.value.detail
        time.sleep(CONFIG["poll_interval"] * 10)   # ten rounds of the watcher: none asks Globus
        assert len(polls()) == refused
        assert endpoint.output().count("Globus refused the credentials of session %s" % gc.sid) == 1
        assert "polling Globus tasks of session %s" % gc.sid not in endpoint.output()
        # new credentials: the session answers again
        gc.login(access_token=fake.access_token)
        assert gc.task(task_id)["task_id"] == task_id
        assert gc.cancel(task_id)["code"] == "Canceled"     # nothing lands on scratch
    finally:
        fake.control("config", {"hold": False})
        gc.close()


def test_client_credentials_session(bc, fake):
    mark = count(fake)
    gc = GlobusClient(bc.get_endpoint_client("hpc1"), "globus",
                      client_id=fake.conf_client_id, client_secret=fake.client_secret)
    try:
        assert gc.auth == "client_credentials"
        grant = [r for r in since(fake, mark) if r["path"] == "/v2/oauth2/token"][0]
        assert grant["body"]["grant_type"] == "client_credentials"
        assert "transfer.api.globus.org:all" in grant["body"]["scope"]
        assert grant["auth"].startswith("Basic ")          # the secret went as Basic auth only
        assert [c["id"] for c in gc.endpoint_search(text="scratch")] == [fake.collections[1]]
    finally:
        gc.close()


# -- collections ------------------------------------------------------------------------------
def test_ls_mkdir_rename_endpoint_and_search(gc, fake):
    lab, scratch = fake.collections
    mark = count(fake)
    listing = gc.ls(lab)
    assert listing["collection"] == lab and listing["path"] == "/home/fake/"
    assert [(e["name"], e["type"]) for e in listing["entries"]] == [("data", "dir"), ("notes.txt", "file")]
    assert [e["name"] for e in gc.ls(lab, "/~/data/")["entries"]] == ["run1.h5", "run2.h5"]
    assert gc.ls(scratch, "/~/incoming/", show_hidden=False)["entries"] == []
    assert gc.mkdir(scratch, "/~/results/")["code"] == "DirectoryCreated"
    assert gc.rename(scratch, "/~/results/", "/~/results-1/")["code"] == "FileRenamed"
    assert [e["name"] for e in gc.ls(scratch)["entries"]] == ["incoming", "results-1"]
    assert gc.get_endpoint(scratch)["display_name"] == "Fake HPC Scratch"
    assert {c["id"] for c in gc.endpoint_search(scope="my-endpoints")} == {lab, scratch}
    got = since(fake, mark)
    assert all(r["auth"] == "Bearer " + fake.access_token for r in got)
    mkdir = [r for r in got if r["path"].endswith("/mkdir")][0]
    assert mkdir["body"] == {"DATA_TYPE": "mkdir", "path": "/~/results/"}
    rename = [r for r in got if r["path"].endswith("/rename")][0]
    assert rename["body"] == {"DATA_TYPE": "rename", "old_path": "/~/results/", "new_path": "/~/results-1/"}
    hidden = [r for r in got if r["path"].endswith("/ls")][2]
    assert hidden["query"]["show_hidden"] == "0" and hidden["query"]["path"] == "/~/incoming/"


def test_local_names_the_endpoints_collection(gc, fake):
    assert gc.local_collection() == {"collection": fake.collections[0],
                                     "source": "environment RADICAL_ORBIT_GLOBUS_COLLECTION"}
    assert gc.ls("local")["collection"] == fake.collections[0]


# -- transfers ----------------------------------------------------------------------------------
def test_submit_wait_and_transfer_status_notifications(bc, gc, fake):
    lab, scratch = fake.collections
    notes, done = [], threading.Event()

    def on_status(endpoint, plugin, topic, data):
        notes.append(data)
        if data.get("status") in ("SUCCEEDED", "FAILED"):
            done.set()

    handle = bc.register_callback(on_status, endpoint_id="hpc1", plugin_name="globus", topic="transfer_status")
    try:
        wait_for(lambda: bc._events.connected.is_set(), 10, "the event stream")
        mark = count(fake)
        fake.control("config", {"hold": True})      # it stays ACTIVE until the watcher said so
        try:
            answer = gc.submit("local", scratch, [("/~/data/", "/~/copy/", True),
                                                  {"source": "/~/notes.txt", "destination": "/~/n.txt"}],
                               label="orbit test", sync_level="checksum", verify_checksum=True)
            assert answer["code"] == "Accepted"
            wait_for(lambda: [n for n in notes if n["status"] == "ACTIVE"], 15, "an ACTIVE transfer_status")
        finally:
            fake.control("config", {"hold": False})
        task = gc.wait(answer["task_id"], timeout=30)
        assert task["status"] == "SUCCEEDED" and task["files_transferred"] == 3
        assert task["bytes_transferred"] == 1000 + 2500 + 12
        assert done.wait(15), notes
        mine = [n for n in notes if n["task_id"] == answer["task_id"]]
        assert [n["status"] for n in mine] == ["ACTIVE", "SUCCEEDED"]     # once per change
        assert mine[0]["label"] == "orbit test" and mine[1]["bytes_transferred"] == 3512
        assert sorted(e["name"] for e in gc.ls(scratch, "/~/copy/")["entries"]) == ["run1.h5", "run2.h5"]
        sent = [r for r in since(fake, mark) if r["path"] == "/v0.10/transfer"][0]["body"]
        assert sent["DATA_TYPE"] == "transfer" and sent["source_endpoint"] == lab
        assert sent["destination_endpoint"] == scratch and sent["label"] == "orbit test"
        assert sent["sync_level"] == 3 and sent["verify_checksum"] is True
        assert sent["submission_id"] == answer["submission_id"]
        assert [(i["source_path"], i["destination_path"], i.get("recursive")) for i in sent["DATA"]] == [
            ("/~/data/", "/~/copy/", True), ("/~/notes.txt", "/~/n.txt", False)]
        assert gc.task(answer["task_id"])["status"] == "SUCCEEDED"
        listed = gc.tasks(status="SUCCEEDED")
        assert answer["task_id"] in [t["task_id"] for t in listed]
        assert answer["task_id"] not in [t["task_id"] for t in gc.tasks(status=["ACTIVE", "INACTIVE"])]
    finally:
        bc.unregister_callback(handle)


def test_a_retried_submit_with_its_submission_id_makes_no_second_task(gc, fake):
    lab, scratch = fake.collections
    sub = gc.submission_id()
    first = gc.submit(lab, scratch, [("/~/notes.txt", "/~/again.txt")], submission_id=sub)
    again = gc.submit(lab, scratch, [("/~/notes.txt", "/~/again.txt")], submission_id=sub)
    assert first["code"] == "Accepted" and again["code"] == "Duplicate"
    assert again["task_id"] == first["task_id"]
    assert len([t for t in fake.control("tasks")["tasks"] if t["task_id"] == first["task_id"]]) == 1


def test_cancel_and_delete(gc, fake):
    lab, scratch = fake.collections
    fake.control("config", {"task_seconds": 30})
    try:
        task = gc.submit(lab, scratch, [("/~/data/run1.h5", "/~/slow.h5")], label="slow")
        assert gc.cancel(task["task_id"])["code"] == "Canceled"
        ended = gc.wait(task["task_id"], timeout=10)
        assert ended["status"] == "FAILED" and ended["nice_status"] == "CANCELED"
        assert gc.cancel(task["task_id"])["code"] == "TaskComplete"
    finally:
        fake.control("config", {"task_seconds": 0.6})
    gc.mkdir(scratch, "/~/trash/")
    deleted = gc.delete(scratch, ["/~/trash/"], recursive=True, label="clean up")
    assert gc.wait(deleted["task_id"], timeout=30)["status"] == "SUCCEEDED"
    assert "trash" not in [e["name"] for e in gc.ls(scratch)["entries"]]
    body = fake.requests("/v0.10/delete$")[-1]["body"]
    assert body["DATA_TYPE"] == "delete" and body["endpoint"] == scratch and body["recursive"] is True
    assert body["DATA"] == [{"DATA_TYPE": "delete_item", "path": "/~/trash/"}]


def test_bad_input_is_400_before_globus_is_asked(gc, fake):
    lab, scratch = fake.collections
    mark = count(fake)
    cases = [
        (lambda: gc.submit(lab, scratch, [("/a", "/b")], sync_level="fast"), "sync_level"),
        (lambda: gc.submit(lab, scratch, [("/a", "/b")], colour="red"), "does not take colour"),
        (lambda: gc.submit(lab, scratch, []), "items must be a non-empty list"),
        (lambda: gc.submit(lab, "not-a-uuid", [("/a", "/b")]), "not a Globus id"),
        (lambda: gc.task("not-a-task"), "not a Globus id"),
        (lambda: gc.ls("x" * 36), "not a Globus id"),
        (lambda: gc.endpoint_search(), "needs ?text= or ?scope="),
    ]
    for call, words in cases:
        with pytest.raises(BadRequest) as err:
            call()
        assert words in err.value.detail
    # only the submission ids were fetched: nothing else reached Globus
    assert {r["path"] for r in since(fake, mark)} <= {"/v0.10/submission_id"}


# -- Globus's errors --------------------------------------------------------------------------------
def test_consent_required_is_401_saying_what_to_do(gc, fake):
    lab = fake.collections[0]
    scope = CONSENT_SCOPE % lab
    fake.control("inject", {"path": "/ls$", "status": 403, "body": {
        "code": "ConsentRequired", "message": "Missing required data_access consent",
        "request_id": "abc123", "required_scopes": [scope]}})
    with pytest.raises(GlobusConsentRequired) as err:
        gc.ls(lab)
    assert err.value.status_code == 401 and err.value.required_scopes == [scope]
    assert "globus session consent" in err.value.detail and "start a new globus session" in err.value.detail
    assert gc.ls(lab)["entries"]                  # one injection: the next call is served


def test_429_is_retried_after_retry_after(gc, fake):
    fake.control("inject", {"path": "/task_list$", "status": 429, "headers": {"Retry-After": "1"},
                            "body": {"code": "RateLimited", "message": "slow down"}})
    mark = count(fake)
    started = time.monotonic()
    assert isinstance(gc.tasks(), list)
    assert time.monotonic() - started >= 0.9
    assert [r["path"] for r in since(fake, mark)] == ["/v0.10/task_list", "/v0.10/task_list"]


def test_a_429_that_persists_keeps_its_code_and_retry_after(bc, gc, fake):
    fake.control("inject", {"path": "/task_list$", "status": 429, "count": 2, "headers": {"Retry-After": "1"},
                            "body": {"code": "RateLimited", "message": "slow down"}})
    with pytest.raises(OrbitError) as err:
        gc.tasks()
    assert err.value.status_code == 429 and "RateLimited: slow down" in err.value.detail
    resp = bc.session.get("%s/hpc1/globus/tasks/%s" % (bc.url, gc.sid), verify=bc.verify, timeout=30)
    assert resp.status_code == 200               # the two injections were used up above
    fake.control("inject", {"path": "/task_list$", "status": 429, "count": 2, "headers": {"Retry-After": "1"},
                            "body": {"code": "RateLimited", "message": "slow down"}})
    resp = bc.session.get("%s/hpc1/globus/tasks/%s" % (bc.url, gc.sid), verify=bc.verify, timeout=30)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "1"
    assert resp.json() == {"error": True, "status_code": 429, "detail": resp.json()["detail"]}


@pytest.mark.parametrize("status, code, kept", [
    (400, "ClientError.BadRequest", 502), (401, "AuthenticationFailed", 401), (403, "PermissionDenied", 403),
    (404, "ClientError.NotFound", 404),
    (409, "Conflict", 409), (500, "ExternalError.DirListingFailed", 502),
    (502, "ExternalError.DirListingFailed.GCDisconnected", 502)])
def test_globus_errors_keep_their_codes_others_are_502(gc, fake, status, code, kept):
    fake.control("inject", {"path": "/ls$", "status": status,
                            "body": {"code": code, "message": "fake says %d" % status, "request_id": "r%d" % status}})
    with pytest.raises(OrbitError) as err:
        gc.ls(fake.collections[0])
    assert err.value.status_code == kept
    assert "fake says %d" % status in err.value.detail and code in err.value.detail
    assert "r%d" % status in err.value.detail      # Globus's request id, for its support desk
    if status == 400:                              # Globus refused what the plugin sent
        assert "Globus refused the request as invalid: Globus 400" in err.value.detail


GARBAGE = [
    {"raw": "<html><body><h1>502 Bad Gateway</h1> nginx</body></html>", "status": 200},   # a proxy's page
    {"raw": "[1, 2]", "status": 200, "content_type": "application/json"},                 # JSON, not a document
    {"raw": '{"DATA": 5, "value": null}', "status": 200, "content_type": "application/json"},
    {"raw": '{"DATA": [1, "x"]}', "status": 200, "content_type": "application/json"},
]


def test_an_answer_that_is_not_globuss_document_is_502_on_every_route(gc, fake):
    """An HTML page or JSON of another shape where Globus's document belongs was a 500
    (internal error), a 400 (as if the caller had erred) or a 200 with ``null``."""
    lab, scratch = fake.collections
    task = gc.submit(lab, scratch, [("/~/notes.txt", "/~/garbage.txt")])["task_id"]
    calls = {"task": lambda: gc.task(task), "wait": lambda: gc.wait(task, timeout=1),
             "tasks": gc.tasks, "ls": lambda: gc.ls(lab), "endpoint": lambda: gc.get_endpoint(lab),
             "endpoint_search": lambda: gc.endpoint_search(text="lab"), "cancel": lambda: gc.cancel(task),
             "mkdir": lambda: gc.mkdir(scratch, "/~/g/"), "rename": lambda: gc.rename(scratch, "/~/a", "/~/b"),
             "submission_id": gc.submission_id, "submit": None}
    wrong = []
    for answer in GARBAGE:
        for name, call in calls.items():
            if name == "submit":            # its submission id is fetched before the injection
                sub = gc.submission_id()
                call = lambda: gc.submit(lab, scratch, [("/a", "/b")], submission_id=sub)  # noqa: E731
            fake.control("inject", dict(answer, path="/transfer$" if name == "submit" else ".", count=3))
            try:
                call()
            except OrbitError as err:
                if err.status_code != 502 or "not what Globus sends" not in err.detail:
                    wrong.append((name, answer["raw"][:20], err.status_code, err.detail[:120]))
            else:
                wrong.append((name, answer["raw"][:20], 200, "answered"))
            finally:
                fake.control("uninject", {})
    assert not wrong, "\n".join(map(str, wrong))


def test_a_token_answer_that_globus_sdk_cannot_read_is_502(bc, fake):
    """Globus Auth answering garbage to a token grant (at login, or at the refresh after a
    401) made globus-sdk raise KeyError or TypeError: a 500 internal error."""
    ec = bc.get_endpoint_client("hpc1")
    answers = [{"raw": "<html>sign-in portal</html>", "status": 200},
               {"raw": "{}", "status": 200, "content_type": "application/json"},
               {"raw": '{"access_token": "x", "resource_server": "transfer.api.globus.org", "expires_in": "soon"}',
                "status": 200, "content_type": "application/json"}]
    try:
        for answer in answers:
            fake.control("inject", dict(answer, path="/token$"))
            with pytest.raises(OrbitError) as err:
                GlobusClient(ec, "globus", refresh_token=fake.refresh_token, client_id=fake.client_id)
            assert err.value.status_code == 502 and "could not use Globus's answer" in err.value.detail, \
                err.value.detail
        gc = GlobusClient(ec, "globus", refresh_token=fake.refresh_token, client_id=fake.client_id)
        try:
            fake.control("expire", {})                    # the next call refreshes its token
            fake.control("inject", dict(answers[1], path="/token$"))
            with pytest.raises(OrbitError) as err:
                gc.tasks()
            assert err.value.status_code == 502 and "could not use Globus's answer" in err.value.detail
            assert isinstance(gc.tasks(), list)          # the next refresh is served
        finally:
            gc.close()
    finally:
        fake.control("uninject", {})


def test_an_unreachable_globus_is_502(bc, fake, tmp_path):
    """A second plugin instance whose transfer URL is a closed port."""
    ec = bc.get_endpoint_client("hpc1")
    ec.load_plugin("globus", name="globus_down",
                   config={"transfer_url": "http://127.0.0.1:9/", "max_retries": 0, "http_timeout": 5})
    try:
        gc = GlobusClient(ec, "globus_down", access_token=fake.access_token)
        with pytest.raises(OrbitError) as err:
            gc.tasks()
        assert err.value.status_code == 502 and "cannot reach Globus" in err.value.detail
    finally:
        ec.unload_plugin("globus_down")


# -- the example, the missing extra ---------------------------------------------------------------
def test_the_example_runs_against_the_fake(orbit, fake):
    env = orbit.env(RADICAL_ORBIT_GLOBUS_ACCESS_TOKEN=fake.access_token)
    out = subprocess.run([sys.executable, os.path.join(REPO, "examples", "example_globus.py"),
                          "--endpoint", "hpc1", "--source", "local", "--destination", fake.collections[1],
                          "--path", "/~/data/", "--target", "/~/from-example/"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCEEDED" in out.stdout and "run1.h5" in out.stdout
    assert fake.access_token not in out.stdout + out.stderr


def test_the_example_without_credentials_says_which_to_set(tmp_path):
    """It logged in with none and failed at Globus with 'POST login/<sid> with access_token'."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADICAL_ORBIT_GLOBUS_")}
    out = subprocess.run([sys.executable, os.path.join(REPO, "examples", "example_globus.py"),
                          "--destination", "x", "--path", "/~/a/", "--target", "/~/b/"],
                         env=dict(env, RADICAL_ORBIT_HOME=str(tmp_path), PYTHONPATH=REPO), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and out.stdout == "", out.stdout + out.stderr
    assert out.stderr.startswith("error: no Globus credentials: set RADICAL_ORBIT_GLOBUS_ACCESS_TOKEN"), out.stderr


def test_without_globus_sdk_the_plugin_is_skipped_with_one_line(orbit):
    code = ("import sys; sys.modules['globus_sdk'] = None\n"
            "import radical_orbit, radical_orbit.client, radical_orbit.plugins.globus_client\n"
            "from radical_orbit.endpoint.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    log = os.path.join(orbit.home, "no-sdk.out")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, "--name", "nosdk", "-p", "globus,sysinfo"],
                                env=orbit.env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        orbit.wait_listed("nosdk")
        plugins = orbit.get("endpoint/list", "POST").json()["data"]["endpoints"]["nosdk"]["plugins"]
        assert sorted(plugins) == ["sysinfo"]
    finally:
        proc.terminate()
        proc.wait(15)
    lines = [line for line in open(log).read().splitlines() if "globus" in line]
    assert len(lines) == 1, lines
    assert "plugin globus skipped: it needs globus_sdk, not installed (pip install 'radical.orbit[globus]')" in lines[0]


# -- last: nothing secret anywhere ---------------------------------------------------------------------
def test_no_credential_in_logs_topology_or_sessions(orbit, bc, fake):
    secrets_ = set(fake.secrets()) | set(fake.seen_tokens())
    assert len(secrets_) >= 4                         # the static, refresh, secret and issued tokens
    texts = [orbit.bridge.output()] + [p.output() for p in orbit.endpoints.values()]
    for path in glob.glob(os.path.join(orbit.home, "logs", "*.log")):
        texts.append(open(path, errors="replace").read())
    texts.append(json.dumps(bc.topology()))
    texts.append(json.dumps(bc.get_endpoint_client("hpc1").request("GET", "globus/list_sessions")))
    assert any("globus" in t for t in texts[:2])     # the logs did see the plugin at work
    for secret in secrets_:
        assert not any(secret in t for t in texts), "a credential leaked"
