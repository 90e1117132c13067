"""The plugin framework in process, no network: the router, ``-p`` resolution, the
base routes of every plugin through PluginHost.dispatch, sessions and their TTL,
errors and the envelope, the ``_orbit`` control namespace, and name rules."""
import errno
import io
import json
import logging
import os
import subprocess
import sys
import threading
import types

from importlib import metadata

import pytest

from orbit_procs import REPO
from radical_orbit import plugin as plugin_mod
from radical_orbit import registry
from radical_orbit.errors import (BadRequest, Conflict, MethodNotAllowed, NotFound, OrbitError,
                                  RangeNotSatisfiable, Unavailable, error_for_status,
                                  from_exception)
from radical_orbit.names import check_name
from radical_orbit.plugin import Plugin, PluginSession, Request, Response, route
from radical_orbit.streams import ReceiveStream
from radical_orbit.plugin_host import PluginHost
from radical_orbit.descriptor import EVERY_ROLE, PluginDescriptor
from radical_orbit.host import ROLES
from radical_orbit.plugins import BUILTIN, RHAPSODY_ROLES
from radical_orbit.router import Router, class_router, compile_rule
from orbit_procs import ManualClock


# -- plugins used by these tests ----------------------------------------------------------
class CounterSession(PluginSession):
    closed = 0

    def __init__(self, plugin, sid):
        super().__init__(plugin, sid)
        self.calls = 0

    def close(self):
        type(self).closed += 1


class CounterPlugin(Plugin):
    plugin_name = "counter"
    version = "2.3.4"
    session_class = CounterSession
    client_class = "tests.CounterClient"
    ui_config = {"title": "Counter"}
    ui_module = "counter.js"

    @route("GET", "count/{sid}")
    def count(self, req, session):
        session.calls += 1
        return {"sid": session.sid, "calls": session.calls}

    @route("GET", "item/{n:int}")
    def item(self, req, n):
        return {"n": n, "type": type(n).__name__}

    @route("GET", "files/{p:path}")
    def files(self, req, p):
        return {"path": p}

    @route("POST", "boom")
    def boom(self, req):
        raise RuntimeError("kaboom")

    @route("POST", "bad_value")
    def bad_value(self, req):
        raise ValueError("not a number")

    @route("POST", "conflict")
    def conflict(self, req):
        raise Conflict("already there")

    @route("POST", "busy")
    def busy(self, req):
        raise Unavailable("try later", retry_after=3)

    @route("POST", "missing_file")
    def missing_file(self, req):
        raise FileNotFoundError("no such file: x")

    @route("POST", "sum")
    def sum_(self, req):
        return {"sum": sum(req.json()["values"])}

    @route("GET", "stream")
    def stream(self, req):
        return Response(io.BytesIO(b"abc" * 10), content_type="application/octet-stream", length=30)

    @route("GET", "chunks")
    def chunks(self, req):
        return Response(iter([b"ab", b"", b"cdef"]), content_type="text/plain")

    @route("POST", "upload")
    def upload(self, req):
        total = 0
        while True:
            piece = req.stream.read(4)
            if not piece:
                break
            total += len(piece)
        return {"received": total}

    @route("POST", "notify/{topic}")
    def notify_route(self, req, topic):
        thread = threading.Thread(target=self.notify, args=(topic, req.json()))
        thread.start()
        thread.join(5)
        return {"notified": topic}


class ShortLived(CounterPlugin):
    """Expires by the tests' ManualClock: a minute of real time never passes in a test."""
    plugin_name = "short"
    session_ttl = 60.0


class Immortal(CounterPlugin):
    plugin_name = "immortal"
    session_ttl = 0


class Notes:
    """Records what the plugins publish."""

    def __init__(self):
        self.seen = []
        self.event = threading.Event()

    def __call__(self, plugin, topic, data):
        self.seen.append((plugin, topic, data, threading.current_thread().name))
        self.event.set()


@pytest.fixture
def notes():
    return Notes()


@pytest.fixture
def host(notes):
    changes = []
    host = PluginHost("ep1", "standalone", {"role": "standalone"}, notes, lambda: changes.append(1))
    host.add("counter", CounterPlugin)
    del changes[:]
    host.changes = changes
    yield host
    host.stop()


def call(host, method, path, body=None, **query):
    raw = b"" if body is None else json.dumps(body).encode()
    req = Request(method, path, {k: [v] for k, v in query.items()}, stream=io.BytesIO(raw),
                  content_length=len(raw))
    resp = host.dispatch(req)
    data = b"".join(resp.chunks(1024))
    if resp.content_type == "application/json" and data:
        return resp.status, json.loads(data)
    return resp.status, data


def register(host, instance="counter"):
    status, body = call(host, "POST", "%s/register_session" % instance)
    assert status == 200, body
    return body["sid"]


# -- the router -----------------------------------------------------------------------------
def test_router_matches_static_rules_and_ignores_outer_slashes():
    r = Router()
    r.add("GET", "a/b", "ab")
    r.add("post", "/a/c/", "ac")
    assert r.match("GET", "a/b") == ("ab", {})
    assert r.match("GET", "/a/b/") == ("ab", {})
    assert r.match("POST", "a/c") == ("ac", {})


def test_router_segment_parameter_does_not_cross_slashes():
    r = Router()
    r.add("GET", "x/{name}", "x")
    assert r.match("GET", "x/foo") == ("x", {"name": "foo"})
    with pytest.raises(NotFound):
        r.match("GET", "x/foo/bar")
    with pytest.raises(NotFound):
        r.match("GET", "x")


def test_router_int_parameter_is_converted_and_rejects_non_digits():
    r = Router()
    r.add("GET", "blob/{size:int}", "blob")
    assert r.match("GET", "blob/42") == ("blob", {"size": 42})
    assert r.match("GET", "blob/-3") == ("blob", {"size": -3})
    with pytest.raises(NotFound):
        r.match("GET", "blob/4k")


def test_router_path_parameter_takes_the_rest_with_slashes():
    r = Router()
    r.add("GET", "files/{rest:path}", "files")
    assert r.match("GET", "files/a/b/c.txt") == ("files", {"rest": "a/b/c.txt"})


def test_router_unknown_path_is_404_but_wrong_method_is_405_with_allow():
    r = Router()
    r.add("GET", "thing", "get")
    r.add("PUT", "thing", "put")
    r.add("GET", "item/{id}", "item")
    with pytest.raises(NotFound) as nf:
        r.match("GET", "nothing")
    assert nf.value.status_code == 404
    with pytest.raises(MethodNotAllowed) as na:
        r.match("POST", "thing")
    assert na.value.status_code == 405
    assert na.value.headers["Allow"] == "GET, PUT"
    with pytest.raises(MethodNotAllowed) as na:
        r.match("DELETE", "item/7")
    assert na.value.headers["Allow"] == "GET"


def test_router_head_falls_back_to_get():
    r = Router()
    r.add("GET", "thing", "get")
    r.add("GET", "item/{id}", "item")
    assert r.match("HEAD", "thing") == ("get", {})
    assert r.match("HEAD", "item/1") == ("item", {"id": "1"})


def test_router_rejects_duplicate_parameters_and_escapes_literals():
    with pytest.raises(ValueError):
        compile_rule("a/{x}/{x}")
    r = Router()
    r.add("GET", "v1.0/{x}", "dotted")
    with pytest.raises(NotFound):
        r.match("GET", "v1x0/y")


def test_plugin_router_collects_inherited_routes_once_per_class():
    rules = set(class_router(CounterPlugin).rules())
    assert {("POST", "register_session"), ("POST", "unregister_session/{session_id}"),
            ("GET", "version"), ("GET", "list_sessions"), ("GET", "health"),
            ("GET", "ui_config"), ("GET", "count/{sid}")} <= rules
    assert class_router(CounterPlugin) is class_router(CounterPlugin)
    assert class_router(ShortLived) is not class_router(CounterPlugin)
    assert ("GET", "count/{sid}") in class_router(ShortLived).rules()


def test_overriding_a_base_handler_keeps_its_route(notes):
    class CustomHealth(CounterPlugin):
        def health(self, req):
            return {"status": "ok", "custom": True}

    host = PluginHost("ep1", "standalone", {}, notes)
    host.add("custom", CustomHealth)
    assert call(host, "GET", "custom/health") == (200, {"status": "ok", "custom": True})


# -- -p resolution ----------------------------------------------------------------------------
class _ThirdPartyForCompute(Plugin):
    plugin_name = "thirdparty"
    default_roles = ("compute",)


class _PlainThirdParty(Plugin):
    plugin_name = "psij_ext"


#: descriptors of built-ins whose modules do not exist: resolving must never import them
FAKE_BUILTIN = (
    PluginDescriptor("sysinfo", "fake_builtins:Sysinfo", EVERY_ROLE),
    PluginDescriptor("queue_info", "fake_builtins:QueueInfo", ("login",)),
    PluginDescriptor("psij", "fake_builtins:Psij", ("login", "compute"), extra="radical.orbit[psij]"),
    PluginDescriptor("staging", "fake_builtins:Staging", ("login", "standalone")),
    PluginDescriptor("echo", "fake_builtins:Echo"),
)


def entry_point(name, value):
    return metadata.EntryPoint(name=name, value=value, group=registry.ENTRY_POINT_GROUP)


@pytest.fixture
def names(monkeypatch):
    """A fake table: five built-ins (never imported), a third-party descriptor, a
    third-party class with default roles (the form before descriptors), one whose module
    is missing, and one sharing a prefix."""
    module = types.ModuleType("fake_third_party_plugins")
    module.ThirdParty = _ThirdPartyForCompute
    module.Plain = _PlainThirdParty
    module.DESCRIPTOR = PluginDescriptor("described", "fake_third_party_impl:Described", ("standalone",))
    monkeypatch.setitem(sys.modules, "fake_third_party_plugins", module)
    table = {d.name: d for d in FAKE_BUILTIN}
    table["thirdparty"] = entry_point("thirdparty", "fake_third_party_plugins:ThirdParty")
    table["needs_extra"] = entry_point("needs_extra", "no_such_module_xyz:Thing")
    table["psij_ext"] = entry_point("psij_ext", "fake_third_party_plugins:Plain")
    table["described"] = entry_point("described", "fake_third_party_plugins:DESCRIPTOR")
    return table


def test_resolve_exact_name_wins_over_a_longer_name_with_that_prefix(names):
    assert registry.resolve("psij", "login", names) == ["psij"]
    assert registry.resolve("echo", "login", names) == ["echo"]


def test_resolve_unique_prefix(names):
    assert registry.resolve("que", "login", names) == ["queue_info"]
    assert registry.resolve("sy", "login", names) == ["sysinfo"]


def test_resolve_ambiguous_prefix_is_a_spec_error(names):
    with pytest.raises(registry.PluginSpecError) as exc:
        registry.resolve("s", "login", names)
    assert "ambiguous" in str(exc.value) and "'s'" in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_resolve_unknown_name_is_a_spec_error_listing_the_known(names):
    with pytest.raises(registry.PluginSpecError) as exc:
        registry.resolve("nosuchplugin", "login", names)
    assert "unknown plugin 'nosuchplugin'" in str(exc.value)
    assert "sysinfo" in str(exc.value)


def test_resolve_glob_and_glob_without_match(names):
    assert registry.resolve("s*", "login", names) == ["staging", "sysinfo"]
    assert registry.resolve("psij?ext", "login", names) == ["psij_ext"]
    with pytest.raises(registry.PluginSpecError) as exc:
        registry.resolve("zz*", "login", names)
    assert "matches none" in str(exc.value)


def test_resolve_all_is_every_name_sorted(names):
    assert registry.resolve("all", "login", names) == sorted(names)


@pytest.mark.parametrize("role, expected", [
    ("login", ["psij", "queue_info", "staging", "sysinfo"]),
    ("compute", ["psij", "sysinfo", "thirdparty"]),
    ("standalone", ["described", "staging", "sysinfo"]),
    ("bridge", ["sysinfo"]),
])
def test_default_sets_per_role_come_from_the_descriptors(names, role, expected, caplog):
    with caplog.at_level(logging.WARNING, logger="radical_orbit.registry"):
        assert registry.resolve("default", role, names) == expected
    # the entry point whose module is missing is in no default set, and says so once
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["plugin needs_extra skipped"]
    assert "fake_builtins" not in sys.modules and "fake_third_party_impl" not in sys.modules


def test_resolve_keeps_order_and_drops_duplicates_and_blanks(names):
    assert registry.resolve("echo, sysinfo,,e*,sys", "login", names) == ["echo", "sysinfo"]
    assert registry.resolve("echo,default", "bridge", names) == ["echo", "sysinfo"]


def test_resolve_empty_spec_means_default(names):
    assert registry.resolve("", "bridge", names) == ["sysinfo"]
    assert registry.resolve(None, "bridge", names) == ["sysinfo"]


def test_a_class_entry_point_gets_its_descriptor_from_the_class(names):
    """The form before descriptors: the entry point names the class, whose attributes say
    the rest (importing it is the price)."""
    descriptor = registry.Catalog(names).descriptor("thirdparty")
    assert descriptor == PluginDescriptor("thirdparty", "fake_third_party_plugins:ThirdParty", ("compute",))
    assert registry.Catalog(names).descriptor("described").target == "fake_third_party_impl:Described"


def test_an_entry_point_naming_another_plugins_descriptor_is_skipped_with_one_line(names, caplog):
    names["other"] = entry_point("other", "fake_third_party_plugins:DESCRIPTOR")
    with caplog.at_level(logging.WARNING, logger="radical_orbit.registry"):
        assert registry.Catalog(names).select("other", "login") == []
    assert len(caplog.records) == 1 and "'described'" in caplog.records[0].getMessage()


def test_real_builtins_are_known_and_default_sets_hold_sysinfo_and_staging():
    available = registry.available()
    assert available["sysinfo"].target == "radical_orbit.plugins.sysinfo:SysinfoPlugin"
    assert available["staging"].target == "radical_orbit.plugins.staging:StagingPlugin"
    assert available["echo"].target == "radical_orbit.plugins.echo:EchoPlugin"
    for role in ROLES:
        resolved = registry.resolve("default", role)
        assert "sysinfo" in resolved and "staging" in resolved and "echo" not in resolved
    for descriptor in BUILTIN:
        cls = registry.load_class(descriptor)
        if descriptor.missing():    # an extra not installed here (the Python 3.8 tier has none): skipped
            assert cls is None
            continue
        assert cls is not None and cls.plugin_name == descriptor.name


def test_reading_the_registry_imports_no_plugin():
    """Listing and resolving the default sets must not import a plugin (nor psutil, which
    only sysinfo needs): a run in a fresh interpreter."""
    code = ("import sys\n"
            "from radical_orbit import registry\n"
            "names = registry.available()\n"
            "sets = [registry.resolve('default', role) for role in ('bridge', 'login', 'compute')]\n"
            "assert 'sysinfo' in names and all('sysinfo' in s for s in sets), sets\n"
            "print(sorted(m for m in sys.modules if m.startswith('radical_orbit.plugins.') or m == 'psutil'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_load_spec_with_an_unknown_name_raises_and_loads_nothing(notes):
    host = PluginHost("ep1", "standalone", {}, notes)
    with pytest.raises(registry.PluginSpecError):
        host.load_spec("echo,nosuchplugin")
    assert host.names() == []


def test_load_spec_loads_the_resolved_set(notes):
    host = PluginHost("ep1", "standalone", {}, notes)
    try:
        assert host.load_spec("ech") == ["echo"]
        assert host.names() == ["echo"]
        info = host.describe()["echo"]
        assert info["client_class"] == "radical_orbit.plugins.echo_client.EchoClient"
    finally:
        host.stop()


# -- descriptors ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(name="bad name", target="a:B"), "plugin name"),
    (dict(name="p", target="not a path"), "not a dotted path"),
    (dict(name="p", target="a:B", client_class="x y"), "not a dotted path"),
    (dict(name="p", target="a:B", default_roles=("head",)), "unknown roles"),
    (dict(name="p", target="a:B", ui_module="../p.js"), "ui_module"),
    (dict(name="p", target="a:B", ui_module="Page.JS"), "ui_module"),
    (dict(name="p", target="a:B", ui_module="other.js", ui_package="pkg"), "p.js"),
    (dict(name="p", target="a:B", ui_package="pkg"), "p.js"),
])
def test_a_descriptor_refuses_what_could_never_work(kwargs, message):
    with pytest.raises(ValueError) as exc:
        PluginDescriptor(**kwargs)
    assert message in str(exc.value)


def test_a_descriptor_is_a_value():
    a = PluginDescriptor("p", "a:B", ["login"], ui_module="p.extra.js", ui_package="pkg")
    assert a == PluginDescriptor("p", "a:B", ("login",), ui_module="p.extra.js", ui_package="pkg")
    assert a.default_roles == ("login",) and hash(a) == hash(PluginDescriptor("p", "a:B", ("login",),
                                                                              "p.extra.js", "pkg"))
    with pytest.raises(AttributeError):
        a.name = "q"


def test_explorer_module_comes_from_the_package_its_descriptor_names_only(tmp_path, monkeypatch):
    pkg = tmp_path / "orbit_pages_xyz"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('finding a page must not import the package')\n")
    (pkg / "pages.js").write_text("// pages\n")
    (pkg / "pages.extra.js").write_text("// not named by the descriptor\n")
    (tmp_path / "secret.js").write_text("// outside the package\n")
    os.symlink(str(tmp_path / "secret.js"), str(pkg / "pages.link.js"))
    monkeypatch.syspath_prepend(str(tmp_path))
    pages = PluginDescriptor("pages", "orbit_pages_xyz.plugin:Pages", ui_module="pages.js",
                             ui_package="orbit_pages_xyz")
    entries = {"pages": pages, "echo": BUILTIN[1]}
    found = os.path.realpath(str(pkg / "pages.js"))
    assert registry.explorer_module("pages.js", entries) == found
    assert registry.explorer_modules(entries) == {"pages.js": found}
    for name in ("pages.extra.js", "echo.js", "../pages.js", "orbit_pages_xyz/pages.js", "__init__.py"):
        assert registry.explorer_module(name, entries) is None, name
    linked = PluginDescriptor("pages", "orbit_pages_xyz.plugin:Pages", ui_module="pages.link.js",
                              ui_package="orbit_pages_xyz")
    assert registry.explorer_module("pages.link.js", {"pages": linked}) is None
    assert "orbit_pages_xyz" not in sys.modules


# -- a missing module or dependency ---------------------------------------------------------------
def warnings_of(caplog):
    return [r for r in caplog.records if r.name.startswith("radical_orbit") and r.levelno >= logging.WARNING]


def test_a_descriptor_whose_module_does_not_exist_is_listed_then_skipped_with_one_line(
        monkeypatch, caplog, notes):
    ghost = PluginDescriptor("ghost", "no_such_module_xyz.plugin:Ghost", EVERY_ROLE)
    monkeypatch.setattr(registry, "BUILTIN", BUILTIN + (ghost,))
    assert registry.available()["ghost"] == ghost
    assert "ghost" in registry.resolve("default", "login")
    host = PluginHost("ep1", "standalone", {}, notes)
    try:
        with caplog.at_level(logging.DEBUG, logger="radical_orbit"):
            rhapsody = ["rhapsody"] if RHAPSODY_ROLES else []     # in the default sets where installed
            assert host.load_spec("default,echo") == rhapsody + ["staging", "sysinfo", "echo"]
        records = warnings_of(caplog)
        assert len(records) == 1, [r.getMessage() for r in records]
        message = records[0].getMessage()
        assert "\n" not in message
        assert message.startswith("plugin ghost skipped:") and "no_such_module_xyz" in message
    finally:
        host.stop()


def test_a_missing_requirement_is_named_with_its_extra_and_nothing_is_imported(caplog):
    needy = PluginDescriptor("needy", "no_such_plugin_module_xyz:Needy", requires=("no_such_dep_xyz",),
                             extra="radical.orbit[needy]")
    with caplog.at_level(logging.DEBUG, logger="radical_orbit"):
        assert registry.load_class(needy) is None
    records = warnings_of(caplog)
    assert len(records) == 1
    assert records[0].getMessage() == ("plugin needy skipped: it needs no_such_dep_xyz, not installed "
                                       "(pip install 'radical.orbit[needy]')")


def test_load_class_refuses_what_is_not_a_plugin(caplog):
    assert registry.load_class(PluginDescriptor("notaplugin", "radical_orbit.errors:NotFound")) is None
    assert "is not a Plugin class" in warnings_of(caplog)[0].getMessage()


def test_run_time_load_of_a_plugin_with_a_missing_extra_is_501(host, monkeypatch):
    needy = PluginDescriptor("needs_extra", "no_such_module_xyz:Thing")
    monkeypatch.setattr(registry, "available", lambda: {"needs_extra": needy})
    status, body = call(host, "POST", "_orbit/plugins/load", {"plugin": "needs_extra"})
    assert status == 501
    assert "cannot be loaded here" in body["detail"] and "no_such_module_xyz" in body["detail"]


# -- the base routes of every plugin ------------------------------------------------------------
def test_register_session_returns_a_sid_prefixed_by_the_instance(host):
    sid = register(host)
    assert sid.startswith("counter.")
    assert register(host) != sid


def test_unregister_session_is_ok_then_404(host):
    CounterSession.closed = 0
    sid = register(host)
    assert call(host, "POST", "counter/unregister_session/%s" % sid) == (200, {"ok": True})
    assert CounterSession.closed == 1
    status, body = call(host, "POST", "counter/unregister_session/%s" % sid)
    assert status == 404
    assert CounterSession.closed == 1


def test_sessions_are_capped_and_a_freed_place_is_taken_again(host, monkeypatch):
    """A caller cannot open sessions without bound: past max_sessions, 503 with Retry-After
    and the envelope; unregistering one makes room."""
    monkeypatch.setattr(CounterPlugin, "max_sessions", 3)
    sids = [register(host) for _ in range(3)]
    req = Request("POST", "counter/register_session", {}, stream=io.BytesIO(b""), content_length=0)
    resp = host.dispatch(req)
    body = json.loads(b"".join(resp.chunks(1024)))
    assert resp.status == 503 and body["error"] is True
    assert "3 sessions open" in body["detail"] and resp.headers.get("Retry-After") == "60"
    assert call(host, "POST", "counter/unregister_session/%s" % sids[0])[0] == 200
    assert register(host) not in sids


def test_unregister_unknown_session_is_404(host):
    status, body = call(host, "POST", "counter/unregister_session/counter.9999.nothere")
    assert status == 404
    assert body["error"] is True and body["status_code"] == 404


def test_version(host):
    assert call(host, "GET", "counter/version") == (
        200, {"name": "counter", "type": "counter", "version": "2.3.4"})


def test_list_sessions_shows_live_sessions(host):
    a, b = register(host), register(host)
    call(host, "POST", "counter/unregister_session/%s" % a)
    status, body = call(host, "GET", "counter/list_sessions")
    assert status == 200
    assert [s["sid"] for s in body["sessions"]] == [b]
    assert set(body["sessions"][0]) >= {"sid", "created", "idle_s"}


def test_health(host):
    register(host)
    status, body = call(host, "GET", "counter/health")
    assert status == 200
    assert body["status"] == "ok" and body["plugin"] == "counter" and body["sessions"] == 1
    assert isinstance(body["pid"], int)


def test_ui_config(host):
    assert call(host, "GET", "counter/ui_config") == (
        200, {"ui_config": {"title": "Counter"}, "ui_module": "counter.js"})


def test_describe_names_namespace_type_and_client_class(host):
    info = host.describe()["counter"]
    assert info == {"type": "counter", "namespace": "/ep1/counter", "version": "2.3.4",
                    "enabled": True, "ui_config": {"title": "Counter"},
                    "ui_module": "counter.js", "client_class": "tests.CounterClient"}


def test_is_enabled_gets_the_host_facts(notes):
    class OnlyOnLogin(CounterPlugin):
        @classmethod
        def is_enabled(cls, host):
            return host.get("role") == "login"

    host = PluginHost("ep1", "compute", {"role": "compute"}, notes)
    host.add("x", OnlyOnLogin)
    assert host.describe()["x"]["enabled"] is False


# -- dispatch: parameters, bodies, streams ------------------------------------------------------
def test_sid_rule_receives_the_live_session(host):
    sid = register(host)
    assert call(host, "GET", "counter/count/%s" % sid) == (200, {"sid": sid, "calls": 1})
    assert call(host, "GET", "counter/count/%s" % sid) == (200, {"sid": sid, "calls": 2})


def test_session_route_with_unknown_sid_is_404(host):
    status, body = call(host, "GET", "counter/count/counter.0001.deadbeef")
    assert status == 404


def test_session_route_after_unregister_is_410(host):
    sid = register(host)
    call(host, "POST", "counter/unregister_session/%s" % sid)
    status, body = call(host, "GET", "counter/count/%s" % sid)
    assert status == 410


def test_int_and_path_parameters_through_dispatch(host):
    assert call(host, "GET", "counter/item/12") == (200, {"n": 12, "type": "int"})
    assert call(host, "GET", "counter/files/a/b/c.txt") == (200, {"path": "a/b/c.txt"})
    assert call(host, "GET", "counter/item/twelve")[0] == 404


def test_wrong_method_is_405_with_allow_header(host):
    resp = host.dispatch(Request("POST", "counter/version"))
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET"
    assert json.loads(resp.body)["status_code"] == 405


def test_unknown_plugin_and_unknown_route_are_404(host):
    assert call(host, "GET", "nosuch/version")[0] == 404
    assert call(host, "GET", "counter/nosuch")[0] == 404


def test_json_body(host):
    assert call(host, "POST", "counter/sum", {"values": [1, 2, 3]}) == (200, {"sum": 6})


def test_invalid_json_body_is_400(host):
    req = Request("POST", "counter/sum", stream=io.BytesIO(b"{nope"))
    resp = host.dispatch(req)
    assert resp.status == 400
    assert "not valid JSON" in json.loads(resp.body)["detail"]


def test_json_body_over_the_cap_is_413(host, monkeypatch):
    monkeypatch.setattr(plugin_mod, "MAX_JSON_BODY", 16)
    status, body = call(host, "POST", "counter/sum", {"values": list(range(50))})
    assert status == 413


def test_streamed_request_body(host):
    req = Request("POST", "counter/upload", stream=io.BytesIO(b"x" * 1001), content_length=1001)
    resp = host.dispatch(req)
    assert json.loads(resp.body) == {"received": 1001}


def test_file_like_and_iterator_response_bodies_are_chunked(host):
    resp = host.dispatch(Request("GET", "counter/stream"))
    assert resp.status == 200 and resp.length == 30
    pieces = list(resp.chunks(7))
    assert max(len(p) for p in pieces) <= 7 and b"".join(pieces) == b"abc" * 10
    resp = host.dispatch(Request("GET", "counter/chunks"))
    assert resp.content_type == "text/plain" and resp.length is None
    assert list(resp.chunks(3)) == [b"ab", b"cde", b"f"]


def test_response_json_helper_and_bytes_length():
    resp = Response.json({"a": 1}, status=201, headers={"X-Test": "1"})
    assert (resp.status, resp.content_type, resp.headers) == (201, "application/json", {"X-Test": "1"})
    assert json.loads(resp.body) == {"a": 1} and resp.length == len(resp.body)


def test_notify_from_another_thread_reaches_the_host(host, notes):
    assert call(host, "POST", "counter/notify/progress", {"done": 3}) == (200, {"notified": "progress"})
    assert notes.event.wait(5)
    plugin, topic, data, thread = notes.seen[0]
    assert (plugin, topic, data) == ("counter", "progress", {"done": 3})
    assert thread != threading.current_thread().name


# -- errors and the envelope ----------------------------------------------------------------
def test_exception_in_handler_is_a_500_envelope(host, caplog):
    with caplog.at_level(logging.ERROR, logger="radical_orbit.plugin_host"):
        status, body = call(host, "POST", "counter/boom")
    assert status == 500
    assert body == {"error": True, "status_code": 500, "detail": "internal error: RuntimeError: kaboom"}
    assert any("counter/boom" in r.getMessage() for r in caplog.records)


def test_value_error_in_handler_is_400(host):
    status, body = call(host, "POST", "counter/bad_value")
    assert status == 400
    assert body["detail"] == "ValueError: not a number"


@pytest.mark.parametrize("path, status", [
    ("counter/conflict", 409), ("counter/missing_file", 404), ("counter/busy", 503)])
def test_typed_errors_keep_their_status(host, path, status):
    resp = host.dispatch(Request("POST", path))
    assert resp.status == status
    assert json.loads(resp.body)["status_code"] == status
    if status == 503:
        assert resp.headers["Retry-After"] == "3"


def test_error_envelope_shape(host):
    resp = host.dispatch(Request("GET", "counter/nosuch"))
    assert resp.content_type == "application/json"
    body = json.loads(resp.body)
    assert set(body) == {"error", "status_code", "detail"}
    assert body["error"] is True and body["status_code"] == resp.status == 404
    assert isinstance(body["detail"], str) and body["detail"]


@pytest.mark.parametrize("exc, status, kind, builtin", [
    (FileNotFoundError(2, "No such file", "/x"), 404, "FileNotFoundError", FileNotFoundError),
    (FileExistsError(17, "File exists", "/x"), 409, "FileExistsError", FileExistsError),
    (PermissionError(13, "Permission denied", "/x"), 403, "PermissionError", PermissionError),
    (NotADirectoryError(20, "Not a directory", "/x"), 400, "NotADirectoryError", NotADirectoryError),
    (IsADirectoryError(21, "Is a directory", "/x"), 400, "IsADirectoryError", IsADirectoryError),
    (OSError(errno.ENOSPC, "No space left on device"), 507, None, OSError),
])
def test_file_errors_carry_a_kind_the_client_maps_back(exc, status, kind, builtin):
    """A builtin file error raised by a handler becomes an envelope whose optional
    ``kind`` makes the client raise the precise class (still the status's kind)."""
    err = from_exception(exc)
    body = err.envelope()
    assert body["status_code"] == status and body.get("kind") == kind
    assert set(body) - {"kind"} == {"error", "status_code", "detail"}
    back = error_for_status(status, body["detail"], {}, body.get("kind"))
    assert isinstance(back, builtin) and isinstance(back, OrbitError)
    assert type(back) is type(err) and back.status_code == status


def test_an_unknown_or_mismatched_kind_falls_back_to_the_status():
    assert type(error_for_status(404, "x", {}, "NoSuchKindError")) is NotFound
    assert type(error_for_status(404, "x", {}, "FileExistsError")) is NotFound
    assert type(error_for_status(409, "x", {}, ["not", "a", "str"])) is Conflict
    assert type(error_for_status(416, "x")) is RangeNotSatisfiable


# -- sessions and their TTL -----------------------------------------------------------------
def short_lived(host):
    """Add a ShortLived plugin whose sessions age by a clock the test moves."""
    plugin = host.add("short", ShortLived)
    plugin.clock = ManualClock()
    return plugin.clock


def test_session_idle_longer_than_ttl_answers_410_and_is_closed(notes):
    CounterSession.closed = 0
    host = PluginHost("ep1", "standalone", {}, notes)
    clock = short_lived(host)
    sid = register(host, "short")
    clock.advance(ShortLived.session_ttl - 1)
    assert call(host, "GET", "short/count/%s" % sid)[0] == 200
    clock.advance(ShortLived.session_ttl + 1)
    status, body = call(host, "GET", "short/count/%s" % sid)
    assert status == 410 and body["status_code"] == 410
    assert CounterSession.closed == 1
    assert call(host, "GET", "short/list_sessions") == (200, {"sessions": []})


def test_expire_sessions_reaps_idle_sessions_then_410(notes):
    CounterSession.closed = 0
    host = PluginHost("ep1", "standalone", {}, notes)
    clock = short_lived(host)
    sid = register(host, "short")
    host.expire_sessions()
    assert CounterSession.closed == 0
    clock.advance(ShortLived.session_ttl + 1)
    host.expire_sessions()
    assert CounterSession.closed == 1
    assert call(host, "GET", "short/health")[1]["sessions"] == 0
    assert call(host, "GET", "short/count/%s" % sid)[0] == 410


def test_session_route_refreshes_the_idle_timer(notes):
    host = PluginHost("ep1", "standalone", {}, notes)
    clock = short_lived(host)
    sid = register(host, "short")
    for _ in range(4):                      # 1.6 TTLs in all, never a whole TTL idle
        clock.advance(0.4 * ShortLived.session_ttl)
        assert call(host, "GET", "short/count/%s" % sid)[0] == 200
    host.expire_sessions()
    assert call(host, "GET", "short/count/%s" % sid)[0] == 200
    clock.advance(1.2 * ShortLived.session_ttl)
    assert call(host, "GET", "short/count/%s" % sid)[0] == 410


def test_ttl_zero_never_expires(notes):
    host = PluginHost("ep1", "standalone", {}, notes)
    plugin = host.add("immortal", Immortal)
    clock = plugin.clock = ManualClock()
    sid = register(host, "immortal")
    clock.advance(10 ** 6)
    host.expire_sessions()
    assert call(host, "GET", "immortal/count/%s" % sid)[0] == 200


def test_unregister_of_an_expired_session_is_404(notes):
    host = PluginHost("ep1", "standalone", {}, notes)
    clock = short_lived(host)
    sid = register(host, "short")
    clock.advance(ShortLived.session_ttl + 1)
    assert call(host, "POST", "short/unregister_session/%s" % sid)[0] == 404


def test_stop_closes_all_sessions(notes):
    CounterSession.closed = 0
    host = PluginHost("ep1", "standalone", {}, notes)
    host.add("counter", CounterPlugin)
    register(host)
    register(host)
    host.stop()
    assert CounterSession.closed == 2


# -- the _orbit control namespace -------------------------------------------------------------
def test_control_lists_loaded_and_available(host):
    status, body = call(host, "GET", "_orbit/plugins")
    assert status == 200
    assert list(body["loaded"]) == ["counter"]
    assert {"echo", "sysinfo"} <= set(body["available"])


def test_control_load_and_unload_announce_the_change(host):
    assert call(host, "POST", "_orbit/plugins/load", {"plugin": "echo"}) == (
        200, {"loaded": "echo", "plugins": ["counter", "echo"]})
    assert call(host, "POST", "_orbit/plugins/load", {"plugin": "ech", "name": "echo2"}) == (
        200, {"loaded": "echo2", "plugins": ["counter", "echo", "echo2"]})
    assert call(host, "GET", "echo2/ping")[1]["pong"] is True
    assert call(host, "POST", "_orbit/plugins/unload", {"name": "echo"}) == (
        200, {"unloaded": "echo", "plugins": ["counter", "echo2"]})
    assert len(host.changes) == 3
    assert call(host, "GET", "echo/ping")[0] == 404


def test_control_errors(host):
    assert call(host, "POST", "_orbit/plugins/load", {})[0] == 400
    assert call(host, "POST", "_orbit/plugins/load", {"plugin": "nosuchplugin"})[0] == 404
    assert call(host, "POST", "_orbit/plugins/load", {"plugin": "echo", "name": "counter"})[0] == 409
    assert call(host, "POST", "_orbit/plugins/unload", {})[0] == 400
    assert call(host, "POST", "_orbit/plugins/unload", {"name": "nosuch"})[0] == 404
    assert call(host, "GET", "_orbit/plugins/load")[0] == 405
    assert host.changes == []


# -- names ----------------------------------------------------------------------------------------
BAD_NAMES = ["", "bad name", "-dash", "_orbit", ".hidden", "a/b", "x" * 65, "caf\u00e9", None, 7]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_instance_names_are_refused(notes, name):
    host = PluginHost("ep1", "standalone", {}, notes)
    with pytest.raises(BadRequest):
        host.add(name, CounterPlugin)
    assert host.names() == []


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n])
def test_run_time_load_with_a_bad_name_is_400(host, name):
    status, body = call(host, "POST", "_orbit/plugins/load", {"plugin": "echo", "name": name})
    assert status == 400, body
    assert "invalid plugin instance" in body["detail"]
    assert host.names() == ["counter"]


@pytest.mark.parametrize("name", ["a", "A1", "queue_info", "echo-2", "v1.2", "x" * 64])
def test_good_names_pass(name):
    assert check_name(name) == name


@pytest.mark.parametrize("path, raw", [
    ("_orbit/plugins/load", b'["echo"]'),
    ("_orbit/plugins/load", b'{"plugin": 5}'),
    ("_orbit/plugins/unload", b'"echo"'),
])
def test_control_with_a_malformed_body_is_400(host, path, raw):
    resp = host.dispatch(Request("POST", path, stream=io.BytesIO(raw)))
    assert resp.status == 400


@pytest.mark.parametrize("spec", ["all", "echo,sysinfo"])
def test_control_load_of_several_plugins_is_a_clear_400(host, spec):
    status, body = call(host, "POST", "_orbit/plugins/load", {"plugin": spec})
    assert status == 400 and "unpack" not in body["detail"]


def test_a_receive_stream_refuses_a_sender_past_its_window():
    from radical_orbit.streams import ReceiveStream
    credits = []
    stream = ReceiveStream(credits.append, timeout=1.0, max_buffered=10)
    stream.feed(b"12345", False)
    stream.feed(b"67890", False)
    stream.feed(b"x", False)
    assert stream.read(5) == b"12345"
    with pytest.raises(OrbitError) as err:
        stream.read()
    assert err.value.status_code == 502


def test_iter_body_hands_over_whole_stream_pieces_or_reads_by_size():
    fed = ReceiveStream(lambda n: None, timeout=5)
    for piece in (b"a" * 10, b"b" * 3):
        fed.feed(piece, False)
    fed.feed(b"", True)
    assert list(Request("PUT", "x", stream=fed).iter_body(4)) == [b"a" * 10, b"b" * 3]
    assert list(Request("PUT", "x", stream=io.BytesIO(b"0123456789")).iter_body(4)) == [
        b"0123", b"4567", b"89"]
    assert list(Request("PUT", "x").iter_body()) == []


@pytest.mark.parametrize("query, value", [({}, False), ({"f": [""]}, True), ({"f": ["yes"]}, True),
                                          ({"f": ["0"]}, False), ({"f": ["true", "off"]}, False)])
def test_query_bool(query, value):
    assert Request("GET", "x", query).query_bool("f") is value


def test_query_bool_and_int_refuse_what_they_cannot_read():
    with pytest.raises(BadRequest):
        Request("GET", "x", {"f": ["maybe"]}).query_bool("f")
    assert Request("GET", "x", {"n": ["7"]}).query_int("n", 0, 10) == 7
    assert Request("GET", "x", {}).query_int("n", 0, 10, 3) == 3
    for raw in ("x", "11", "-1"):
        with pytest.raises(BadRequest):
            Request("GET", "x", {"n": [raw]}).query_int("n", 0, 10)
    with pytest.raises(BadRequest):
        Request("GET", "x", {}).query_int("n", 0, 10)


def test_a_plugin_that_fails_to_start_is_skipped_with_one_line(monkeypatch, caplog):
    from radical_orbit import registry

    class Broken(Plugin):
        plugin_name = "broken"

        def start(self):
            raise RuntimeError("no scheduler here")

    broken = PluginDescriptor("broken", "x:Broken")
    monkeypatch.setattr(registry, "available", lambda: {"broken": broken, "echo": BUILTIN[1]})
    real_load = registry.load_class
    monkeypatch.setattr(registry, "load_class", lambda d: Broken if d is broken else real_load(d))
    host = PluginHost("ep1", "standalone", {}, lambda *a: None)
    with caplog.at_level("ERROR", logger="radical_orbit.plugin_host"):
        assert host.load_spec("broken,echo") == ["echo"]
    lines = [r for r in caplog.records if "broken" in r.getMessage()]
    assert len(lines) == 1 and "no scheduler here" in lines[0].getMessage()
    assert host.names() == ["echo"]


def test_body_field_helpers():
    from radical_orbit.plugin import body_bool, body_str
    assert body_str({"path": "/x"}, "path") == "/x"
    assert body_bool({}, "f") is False and body_bool({}, "f", True) is True
    assert body_bool({"f": True}, "f") is True
    for body in ({}, {"path": ""}, {"path": 3}):
        with pytest.raises(BadRequest) as err:
            body_str(body, "path", "a path")
        assert "a path" in err.value.detail
    for value in ("false", 0, None):
        with pytest.raises(BadRequest):
            body_bool({"f": value}, "f")
