"""The globus plugin's parts in one process: settings, which collection is "local",
the credential forms, and the transfer watcher (changes only, bounded, survives a
failing Globus, stops with the plugin)."""
import logging
import threading

import pytest

pytest.importorskip("globus_sdk", reason="globus-sdk (the globus extra) is not installed")

from orbit_procs import wait_for  # noqa: E402

from radical_orbit.errors import BadRequest, NotFound  # noqa: E402
from radical_orbit.plugin import PluginContext  # noqa: E402
from radical_orbit.plugins.globus import GlobusPlugin, local  # noqa: E402
from radical_orbit.plugins.globus.credentials import Credentials  # noqa: E402
from radical_orbit.plugins.globus.settings import Settings  # noqa: E402
from radical_orbit.plugins.globus.watcher import Watcher  # noqa: E402

ID = "aaaaaaaa-0000-4000-8000-00000000000%d"


@pytest.mark.parametrize("config, words", [
    ({"pol_interval": 1}, "unknown globus settings pol_interval"),
    ({"poll_interval": 0}, "poll_interval must be a number"),
    ({"max_retries": 1.5}, "max_retries must be an integer"),
    ({"max_watched": True}, "max_watched must be an integer"),
    ({"transfer_url": ""}, "transfer_url must be a non-empty string"),
])
def test_bad_settings_are_refused_at_load(config, words):
    with pytest.raises(ValueError) as err:
        Settings(config)
    assert words in str(err.value)


def test_local_collection_setting_then_environment_then_globus_connect_personal(tmp_path, monkeypatch):
    gcp = tmp_path / "gcp"
    (gcp / "lta").mkdir(parents=True)
    (gcp / "lta" / "client-id.txt").write_text(ID % 3 + "\n")
    monkeypatch.setenv(local.ENV, ID % 2)
    assert local.find(Settings({"local_collection": ID % 1, "gcp_config_dir": str(gcp)})) == \
        (ID % 1, "setting local_collection")
    assert local.find(Settings({"gcp_config_dir": str(gcp)})) == (ID % 2, "environment " + local.ENV)
    monkeypatch.delenv(local.ENV)
    found, source = local.find(Settings({"gcp_config_dir": str(gcp)}))
    assert found == ID % 3 and source.startswith("Globus Connect Personal")
    nothing = Settings({"gcp_config_dir": str(tmp_path / "none")})
    assert local.find(nothing) == (None, "none")
    assert local.resolve(ID % 4, nothing) == ID % 4
    with pytest.raises(NotFound) as err:
        local.resolve("local", nothing)
    assert local.ENV in err.value.detail


@pytest.mark.parametrize("body, kind", [
    ({"access_token": "A"}, "access_token"),
    ({"refresh_token": "R", "client_id": "C"}, "refresh_token"),
    ({"refresh_token": "R", "client_id": "C", "client_secret": "S"}, "refresh_token"),
    ({"client_id": "C", "client_secret": "S"}, "client_credentials"),
    ({"client_id": "C", "client_secret": "S", "scopes": "x y"}, "client_credentials"),
    ({"access_token": "A", "client_id": None}, "access_token"),
])
def test_credential_forms(body, kind):
    creds = Credentials(body)
    assert creds.kind == kind
    assert all(secret not in repr(creds) for secret in ("A", "R", "S") if secret in body.values())


@pytest.mark.parametrize("body", [{}, {"client_id": "C"}, {"access_token": "A", "refresh_token": "R"},
                                  {"access_token": 5}, {"token": "A"}])
def test_other_credential_shapes_are_400(body):
    with pytest.raises(BadRequest):
        Credentials(body)


class Tasks:
    """A stand-in TransferClient: task_list answers from ``docs``, or raises ``fail``."""

    def __init__(self):
        self.docs = {}
        self.fail = None
        self.calls = 0

    def task_list(self, limit, filter):
        self.calls += 1
        if self.fail:
            raise self.fail
        return {"DATA": [self.docs[t] for t in filter["task_id"] if t in self.docs]}


class Session:
    def __init__(self, client):
        self.sid = "s1"
        self.client = client

    def transfer_client(self):
        return self.client


def test_the_watcher_reports_changes_once_until_the_end_and_survives_failures(caplog):
    notes = []
    client = Tasks()
    watcher = Watcher(lambda topic, data: notes.append(data), 0.02, 10, logging.getLogger("test.watch"))
    watcher.start("test-watch")
    try:
        session = Session(client)
        client.docs[ID % 1] = {"task_id": ID % 1, "status": "ACTIVE", "bytes_transferred": 0}
        watcher.watch(session, ID % 1)
        wait_for(lambda: notes, 5, "the first transfer_status")
        calls = client.calls
        wait_for(lambda: client.calls >= calls + 5, 5, "more polls")
        assert len(notes) == 1                                   # nothing changed: nothing said
        client.fail = RuntimeError("globus is down")
        wait_for(lambda: "globus is down" in caplog.text, 5, "the failure logged")
        client.fail = None
        client.docs[ID % 1] = {"task_id": ID % 1, "status": "SUCCEEDED", "bytes_transferred": 10}
        wait_for(lambda: len(notes) == 2, 5, "the final transfer_status")
        assert notes[1]["status"] == "SUCCEEDED" and notes[1]["bytes_transferred"] == 10
        assert watcher.watching() == []                          # ended: no longer polled
    finally:
        watcher.stop()
    assert not watcher._thread.is_alive()


def test_the_watcher_logs_a_garbled_task_list_once_as_a_failed_poll(caplog):
    """A task list with entries that are not task documents raised in the round and
    logged a traceback every poll_interval, not once a minute as a failed poll."""
    polls = []
    answers = [{"DATA": [1, "x"]}, {"DATA": [{"task_id": ["odd"], "status": "ACTIVE"}]}]
    client = Tasks()
    client.task_list = lambda limit, filter: polls.append(1) or answers[len(polls) % 2]
    watcher = Watcher(lambda topic, data: None, 0.02, 10, logging.getLogger("test.watch"))
    watcher.start("test-watch")
    try:
        watcher.watch(Session(client), ID % 1)
        wait_for(lambda: len(polls) >= 10, 10, "ten polls of both answers")
        assert "not what Globus sends for a task list" in caplog.text
        assert watcher._thread.is_alive()
    finally:
        watcher.stop()
    assert "failed a round" not in caplog.text and caplog.text.count("polling Globus tasks") == 1


def test_the_watcher_is_bounded_and_forgets_a_closed_session():
    watcher = Watcher(lambda topic, data: None, 3600, 3, logging.getLogger("test.watch"))
    one, two = Session(Tasks()), Session(Tasks())
    for i in range(5):
        watcher.watch(one if i % 2 else two, ID % i)
    assert watcher.watching() == [ID % 2, ID % 3, ID % 4]       # the oldest went first
    watcher.forget(one)
    assert watcher.watching() == [ID % 2, ID % 4]


def test_the_plugin_stops_its_watcher_and_closes_sessions():
    plugin = GlobusPlugin("globus", PluginContext("ep", "standalone", lambda *a: None))
    plugin.start()
    names = [t.name for t in threading.enumerate()]
    assert "globus-watch-globus" in names
    plugin.stop()
    assert "globus-watch-globus" not in [t.name for t in threading.enumerate()]


@pytest.mark.parametrize("line", [
    '{"access_token": "SECRET", "client_id": "abc"}',                 # a JSON body
    "{'refresh_token': 'SECRET', 'client_id': 'abc'}",                # a dict's repr
    '{"client_secret":"SECRET"}',
    "grant_type=refresh_token&refresh_token=SECRET&client_id=abc",    # the token grant's form
    "Authorization: Basic SECRET",                                    # a confidential client
    "Authorization: Bearer SECRET",
])
def test_every_shape_a_globus_credential_takes_is_redacted(line):
    from radical_orbit.logs import redact
    assert "SECRET" not in redact(line) and "<redacted>" in redact(line)
    assert "abc" in redact(line) or "abc" not in line                 # the client id stays readable


def test_a_collection_id_with_a_trailing_newline_is_not_a_uuid():
    """``$`` matched before a final newline: "<uuid>\\n" passed as a Globus id."""
    from radical_orbit.plugins.globus.plugin import _uuid
    good = "0123abcd-0123-4567-89ab-0123456789ab"
    assert _uuid(good.upper(), "collection id") == good
    for bad in (good + "\n", "\n" + good, good[:-1]):
        with pytest.raises(BadRequest):
            _uuid(bad, "collection id")
