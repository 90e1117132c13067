"""A third-party plugin end to end: the example package in examples/third_party_plugin
is built into a wheel, installed into a temp dir, and served by a REAL endpoint that
discovers it through the ``radical_orbit.plugins`` entry point; the SDK talks to it."""
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
import requests

from orbit_procs import REPO, wait_for

import radical_orbit
from radical_orbit.plugins import RHAPSODY_ROLES
from radical_orbit import registry
from radical_orbit.errors import BadRequest

EXAMPLE = os.path.join(REPO, "examples", "third_party_plugin")
BUILD_TIMEOUT = 240
#: Generous for a loaded 2-core CI machine; every wait returns as soon as it can.
EVENT_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def hello_site(tmp_path_factory):
    """The example built with pip (no downloads) and installed with --target; its dir.

    Built from a copy so that setuptools' build/ and *.egg-info never land in examples/."""
    root = tmp_path_factory.mktemp("hello")
    src, wheels, site = root / "src", root / "wheels", root / "site"
    shutil.copytree(EXAMPLE, str(src), ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(wheels), str(src)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    built = sorted(wheels.glob("orbit_hello_plugin-*.whl")) if wheels.exists() else []
    if build.returncode != 0 or not built:
        lines = [l.strip() for l in (build.stderr + build.stdout).splitlines() if l.strip()]
        generic = ("subprocess-exited-with-error", "metadata-generation-failed")
        errors = [l for l in lines if l.startswith("error:") and not l.endswith(generic)]
        errors = errors or lines[-1:] or ["no wheel produced"]
        pytest.skip("cannot build the example wheel offline (pip wheel --no-build-isolation: %s; "
                    "setuptools < 70.1 needs the 'wheel' package)" % errors[0])
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--target", str(site), str(built[0])],
                   check=True, capture_output=True, timeout=BUILD_TIMEOUT)
    assert (site / "orbit_hello" / "client.py").exists() and (site / "orbit_hello" / "hello.js").exists()
    return str(site)


@pytest.fixture
def hello_importable(hello_site, monkeypatch):
    """The installed example on this process's sys.path (for its client class)."""
    monkeypatch.syspath_prepend(hello_site)
    yield hello_site
    for name in [m for m in sys.modules if m == "orbit_hello" or m.startswith("orbit_hello.")]:
        del sys.modules[name]


def pythonpath(site):
    """Orbit.env puts the repo on PYTHONPATH; an override must keep it."""
    return os.pathsep.join([site, REPO])


def topology_plugins(orbit, endpoint):
    resp = orbit.get("endpoint/list", "POST")
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]["endpoints"].get(endpoint, {}).get("plugins", {})


def test_sdk_uses_the_hello_client_and_gets_its_notifications(orbit, hello_importable):
    orbit.start_bridge()
    orbit.start_endpoint("ep", "-p", "hello", PYTHONPATH=pythonpath(hello_importable))

    info = topology_plugins(orbit, "ep")
    assert list(info) == ["hello"]
    assert info["hello"]["client_class"] == "orbit_hello.client.HelloClient"
    assert (info["hello"]["type"], info["hello"]["version"]) == ("hello", "0.1.0")
    assert info["hello"]["namespace"] == "/ep/hello"

    with radical_orbit.BridgeClient(url=orbit.url, cert=orbit.tls["cert"], token=orbit.token) as bridge:
        endpoint = bridge.get_endpoint_client("ep")
        assert endpoint.list_plugins() == ["hello"]
        hello = endpoint.get_plugin("hello")
        from orbit_hello.client import HelloClient
        assert type(hello) is HelloClient and hello.sid.startswith("hello.")

        assert hello.greet("x") == {"greeting": "Hello, x!", "count": 1}
        assert hello.greet("Ada") == {"greeting": "Hello, Ada!", "count": 2}
        with endpoint.get_plugin("hello") as other:
            assert other.greet() == {"greeting": "Hello, world!", "count": 1}
            assert {s["sid"] for s in hello.list_sessions()} == {hello.sid, other.sid}
        assert [s["sid"] for s in hello.list_sessions()] == [hello.sid]
        with pytest.raises(BadRequest):
            hello.greet("   ")
        assert hello.version() == {"name": "hello", "type": "hello", "version": "0.1.0"}

        connected, got = threading.Event(), threading.Event()
        received = []

        def on_shout(endpoint_name, plugin, topic, data):
            received.append((endpoint_name, plugin, topic, data))
            got.set()

        bridge.register_callback(callback=on_shout, endpoint_id="ep", plugin_name="hello", topic="shouted")
        # The topology callback fires once the event stream is connected: shout only then.
        bridge.register_topology_callback(lambda data: connected.set())
        assert connected.wait(EVENT_TIMEOUT), "the SDK's event stream did not connect"

        assert hello.shout("hi there") == {"shouted": "HI THERE!"}
        assert got.wait(EVENT_TIMEOUT), "no 'shouted' notification reached the callback"
        assert received[0] == ("ep", "hello", "shouted", {"sid": hello.sid, "text": "HI THERE!"})
        hello.close()


def test_hello_loads_and_unloads_at_run_time(orbit_plain, hello_site):
    orbit = orbit_plain
    orbit.start_bridge()
    orbit.start_endpoint("ep", "-p", "sysinfo", PYTHONPATH=pythonpath(hello_site))
    assert list(topology_plugins(orbit, "ep")) == ["sysinfo"]
    control = orbit.get("ep/_orbit/plugins").json()
    assert "hello" in control["available"] and list(control["loaded"]) == ["sysinfo"]

    resp = orbit.get("ep/_orbit/plugins/load", "POST", json={"plugin": "hello"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"loaded": "hello", "plugins": ["hello", "sysinfo"]}
    info = wait_for(lambda: topology_plugins(orbit, "ep").get("hello"), EVENT_TIMEOUT,
                    "hello in the topology", interval=0.05)
    assert info["client_class"] == "orbit_hello.client.HelloClient"
    # the endpoint names its Explorer module, but JavaScript comes only from the bridge's
    # own installation, where this package is not installed
    assert info["ui_module"] == "hello.js"
    assert requests.get(orbit.url + "/plugins/hello.js", timeout=10).status_code == 404

    sid = orbit.get("ep/hello/register_session", "POST").json()["sid"]
    greeting = orbit.get("ep/hello/greet/%s" % sid, params={"name": "run time"})
    assert greeting.json() == {"greeting": "Hello, run time!", "count": 1}

    again = orbit.get("ep/_orbit/plugins/load", "POST", json={"plugin": "hello"})
    assert again.status_code == 409 and again.json()["error"] is True
    second = orbit.get("ep/_orbit/plugins/load", "POST", json={"plugin": "hel", "name": "hello2"})
    assert second.status_code == 200, second.text
    wait_for(lambda: "hello2" in topology_plugins(orbit, "ep"), EVENT_TIMEOUT, "hello2 in the topology",
             interval=0.05)

    resp = orbit.get("ep/_orbit/plugins/unload", "POST", json={"name": "hello"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"unloaded": "hello", "plugins": ["hello2", "sysinfo"]}
    wait_for(lambda: "hello" not in topology_plugins(orbit, "ep"), EVENT_TIMEOUT,
             "hello to leave the topology", interval=0.05)
    assert orbit.get("ep/hello/greet/%s" % sid).status_code == 404
    assert orbit.get("ep/_orbit/plugins/unload", "POST", json={"name": "hello"}).status_code == 404
    assert sorted(topology_plugins(orbit, "ep")) == ["hello2", "sysinfo"]


def test_the_bridge_serves_the_explorer_module_its_installed_package_ships(orbit_plain, hello_site,
                                                                          monkeypatch):
    """hello's descriptor names hello.js in package orbit_hello: a bridge with the package
    installed serves it at /plugins/hello.js, beside the Explorer's own modules."""
    monkeypatch.setenv("PYTHONPATH", hello_site)
    orbit = orbit_plain
    orbit.start_bridge("-p", "none")
    with open(os.path.join(hello_site, "orbit_hello", "hello.js"), "rb") as f:
        shipped = f.read()
    resp = requests.get(orbit.url + "/plugins/hello.js", timeout=10)   # before login, like index.html
    assert resp.status_code == 200, resp.text
    assert resp.content == shipped
    assert resp.headers["Content-Type"].startswith("text/javascript")
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert requests.get(orbit.url + "/plugins/sysinfo.js", timeout=10).status_code == 200
    for name in ("hello.extra.js", "orbit_hello.js", "client.py", "..%2Forbit_hello%2Fhello.js",
                 "%2E%2E%2Fhello.js", "Hello.js"):
        resp = requests.get(orbit.url + "/plugins/" + name, timeout=10)
        assert resp.status_code == 404 and resp.json()["error"] is True, name


LEGACY_PLUGIN = """from radical_orbit.plugin import Plugin, route


class LegacyPlugin(Plugin):
    plugin_name = "legacy"
    version = "0.0.1"
    client_class = "orbit_legacy.LegacyClient"
    ui_module = "legacy.js"
    default_roles = ("compute",)

    @route("GET", "hi")
    def hi(self, req):
        return {"hi": True}
"""


def legacy_site(root):
    """An installed package whose entry point names the plugin class, as before descriptors
    (a dist-info directory is all importlib.metadata needs to find it)."""
    site = root / "legacy-site"
    (site / "orbit_legacy").mkdir(parents=True)
    (site / "orbit_legacy" / "__init__.py").write_text(LEGACY_PLUGIN)
    info = site / "orbit_legacy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: orbit-legacy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[radical_orbit.plugins]\nlegacy = orbit_legacy:LegacyPlugin\n")
    return str(site)


def test_an_entry_point_to_the_class_still_works(orbit_plain, tmp_path):
    """Backward compatible: the class's default_roles, client_class and ui_module are its
    descriptor; -p default on a compute node loads it."""
    orbit = orbit_plain
    orbit.start_bridge("-p", "none")
    orbit.start_endpoint("ep", "--role", "compute", "-p", "default",
                         PYTHONPATH=pythonpath(legacy_site(tmp_path)))
    info = topology_plugins(orbit, "ep")
    rhapsody = ["rhapsody"] if RHAPSODY_ROLES else []     # in the default sets where installed
    assert sorted(info) == sorted(["legacy", "queue_info", "staging", "sysinfo"] + rhapsody)
    assert info["legacy"]["client_class"] == "orbit_legacy.LegacyClient"
    assert info["legacy"]["ui_module"] == "legacy.js"
    assert orbit.get("ep/legacy/hi").json() == {"hi": True}


def test_unknown_plugin_makes_the_endpoint_exit_1_with_one_line(orbit_plain):
    orbit = orbit_plain
    orbit.start_bridge()
    proc = orbit.start_endpoint("ep", "-p", "nosuchplugin", wait=False)
    assert proc.wait(EVENT_TIMEOUT) == 1
    output = proc.output()
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert errors == ["error: unknown plugin 'nosuchplugin' (known: %s)"
                      % ", ".join(sorted(registry.available()))], output
    assert "Traceback" not in output
    assert "ep" not in orbit.get("endpoint/list", "POST").json()["data"]["endpoints"]


def test_hello_without_the_package_installed_is_unknown(orbit_plain):
    orbit = orbit_plain
    orbit.start_bridge()
    proc = orbit.start_endpoint("ep", "-p", "hello", wait=False)
    assert proc.wait(EVENT_TIMEOUT) == 1
    assert "error: unknown plugin 'hello'" in proc.output()


def sse_thread_is_reading() -> bool:
    """Whether the SDK's listener thread is blocked in a socket read (its innermost
    Python frame is the socket file's ``readinto``)."""
    frames = sys._current_frames()
    for thread in threading.enumerate():
        frame = frames.get(thread.ident) if thread.name == "orbit-sse" else None
        if frame is not None and frame.f_code.co_name == "readinto":
            return True
    return False


def test_closing_the_sdk_while_listening_is_prompt_and_quiet(orbit_plain, monkeypatch):
    orbit = orbit_plain
    orbit.start_bridge()
    failures = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))
    connected = threading.Event()
    bridge = radical_orbit.BridgeClient(url=orbit.url, token=orbit.token)
    bridge.register_topology_callback(lambda data: connected.set())
    assert connected.wait(EVENT_TIMEOUT)
    wait_for(sse_thread_is_reading, EVENT_TIMEOUT, "the SDK's listener to block on the stream")
    started = time.monotonic()
    bridge.close()
    assert time.monotonic() - started < 5.0
    assert failures == []


def test_the_plugin_guide_shows_the_example_verbatim():
    with open(os.path.join(REPO, "docs", "plugins.md")) as f:
        guide = f.read()
    for rel in ("pyproject.toml", "orbit_hello/__init__.py", "orbit_hello/plugin.py", "orbit_hello/client.py",
                "orbit_hello/hello.js"):
        with open(os.path.join(EXAMPLE, rel)) as f:
            source = f.read()
        assert "`%s`:\n\n```" % rel in guide and "\n%s```\n" % source in guide, \
            "docs/plugins.md no longer shows examples/third_party_plugin/%s as it is" % rel
