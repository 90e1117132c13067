"""The commands as an operator meets them: the embedded default, set-up checks and
fatal errors (exit 1 with one clear line)."""
import os
import re
import socket
import subprocess
import sys
import time

import pytest
import requests

from orbit_procs import INSTALLED, REPO, Proc, clean_env, make_cert, wait_for

from radical_orbit import BridgeClient, Unavailable
from radical_orbit.plugins import RHAPSODY_ROLES


def run_cmd(module, args, env, timeout=30):
    return subprocess.run([sys.executable, "-m", module] + list(args), env=env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          cwd=REPO)


#: a DEBUG or INFO log record (e.g. a plugin that loaded before another failed): not the error
PROGRESS_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO) ")


def one_error_line(stderr):
    lines = [l for l in stderr.strip().splitlines() if l.strip() and not PROGRESS_LINE.match(l)]
    assert len(lines) == 1, stderr
    return lines[0]


def isolate(monkeypatch, home):
    """This test process sees only the config dir, like a fresh user."""
    for key in list(os.environ):
        if key.startswith("RADICAL_ORBIT"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("RADICAL_ORBIT_HOME", home)


def test_embedded_default_and_the_example(tmp_path, monkeypatch):
    home = str(tmp_path / "home")
    env = clean_env(home)
    isolate(monkeypatch, home)
    bridge = Proc(["-m", "radical_orbit.bridge", "--port", "0"], env, str(tmp_path / "bridge.out"))
    try:
        match = wait_for(lambda: re.search(r"Explorer: (http://127\.0\.0\.1:\d+)/ \(log in with the "
                                           r"token from the file (\S+)\)", bridge.output()), 20, "the URL")
        url = match.group(1)
        assert match.group(2) == os.path.join(home, "bridge.token")
        with open(os.path.join(home, "bridge.token")) as f:
            token = f.read().strip()
        assert token not in bridge.output()    # stdout is a file here, as under nohup
        assert os.stat(os.path.join(home, "bridge.token")).st_mode & 0o777 == 0o600
        assert os.stat(home).st_mode & 0o777 == 0o700
        assert os.stat(os.path.join(home, "logs")).st_mode & 0o777 == 0o700
        with open(os.path.join(home, "bridge.url")) as f:
            assert f.read().strip() == url
        bc = BridgeClient()  # everything from the config dir
        bc.wait_for_endpoint("bridge", timeout=10)
        with open(os.path.join(home, "logs", "bridge.log")) as f:
            assert token not in f.read()
        example = subprocess.run([sys.executable, os.path.join(REPO, "examples", "example_sysinfo.py")],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 universal_newlines=True, timeout=60)
        assert example.returncode == 0, example.stdout
        assert socket.gethostname() in example.stdout and "memory:" in example.stdout
        bc.close()
    finally:
        assert bridge.stop() == 0, bridge.output()


@pytest.mark.parametrize("example", ["example_sysinfo.py", "example_staging.py"])
def test_an_example_without_a_bridge_says_so_in_one_line(tmp_path, example):
    home = tmp_path / "home"
    home.mkdir()
    (home / "bridge.url").write_text("http://127.0.0.1:%d\n" % free_port())
    r = subprocess.run([sys.executable, os.path.join(REPO, "examples", example)], env=clean_env(str(home)),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert r.returncode == 1
    assert "error: 503: cannot reach the bridge" in one_error_line(r.stderr) and "bridge.url" in r.stderr


def test_an_unreachable_bridge_is_warned_of_once_not_at_every_attempt(tmp_path):
    """An endpoint waiting for a bridge that is down for hours logs one warning, then one a
    minute (every attempt only at DEBUG), so a batch job's output does not fill up."""
    env = clean_env(str(tmp_path), RADICAL_ORBIT_RECONNECT_MAX="0.02")
    out = tmp_path / "endpoint.out"
    endpoint = Proc(["-m", "radical_orbit.endpoint", "--name", "waiting", "--url",
                     "http://127.0.0.1:%d" % free_port(), "--token", "x" * 32, "--log-level", "DEBUG"],
                    env, str(out))
    try:
        wait_for(lambda: endpoint.output().count("; retrying in") >= 20, 30, "20 connection attempts")
        warnings = [l for l in endpoint.output().splitlines() if "WARNING" in l and "cannot reach" in l]
        assert len(warnings) == 1, warnings
        assert "said again once a minute" in warnings[0]
    finally:
        assert endpoint.stop() == 0, endpoint.output()


def test_the_sdk_refuses_an_empty_token(tmp_path, monkeypatch):
    """As the commands do: token="" is a mistake, not a request to read bridge.token."""
    isolate(monkeypatch, str(tmp_path))
    with pytest.raises(ValueError, match="the token is empty"):
        BridgeClient(url="http://127.0.0.1:1", token="")


def test_the_sdk_reads_its_token_from_a_private_file(orbit_plain, tmp_path, monkeypatch):
    """BridgeClient(token_file=...) takes the token from the file over the environment,
    and refuses a file others can read, as --token-file does."""
    orbit_plain.start_bridge()
    isolate(monkeypatch, str(tmp_path))
    monkeypatch.setenv("RADICAL_ORBIT_BRIDGE_TOKEN", "not-the-one-0123456789abcdef")
    token_file = tmp_path / "secret"
    token_file.write_text(orbit_plain.token + "\n")
    token_file.chmod(0o600)
    bc = BridgeClient(url=orbit_plain.url, token_file=str(token_file))
    assert "bridge" in bc.list_endpoints()
    token_file.chmod(0o644)
    with pytest.raises(ValueError, match="has mode 0644"):
        BridgeClient(url=orbit_plain.url, token_file=str(token_file))


def test_bridge_url_file_is_never_overwritten(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "bridge.url").write_text("https://hub.example.org:8443\n")
    env = clean_env(str(home))
    bridge = Proc(["-m", "radical_orbit.bridge", "--port", "0", "--no-auth"], env, str(tmp_path / "b.out"))
    try:
        wait_for(lambda: "Connect an endpoint" in bridge.output(), 20, "the bridge")
        assert (home / "bridge.url").read_text() == "https://hub.example.org:8443\n"
        assert "AUTH IS OFF" in bridge.output()
    finally:
        bridge.stop()


def test_a_stale_bridge_url_is_named_by_the_bridge_the_sdk_and_the_endpoint(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    url_file = str(home / "bridge.url")
    with socket.socket() as s:      # a port nobody listens on: the bridge of an earlier run
        s.bind(("127.0.0.1", 0))
        stale = "http://127.0.0.1:%d" % s.getsockname()[1]
    (home / "bridge.url").write_text(stale + "\n")
    env = clean_env(str(home))
    bridge = Proc(["-m", "radical_orbit.bridge", "--port", "0", "--no-auth"], env, str(tmp_path / "b.out"))
    try:
        wait_for(lambda: "Connect an endpoint" in bridge.output(), 20, "the bridge")
        banner = [l for l in bridge.output().splitlines() if l.startswith("  WARNING:")]
        assert len(banner) == 1 and "%s names %s, not this bridge" % (url_file, stale) in banner[0]
        assert "rm %s" % url_file in banner[0] and "--url" in banner[0]
        with open(str(home / "logs" / "bridge.log")) as f:
            assert "%s names %s, not this bridge" % (url_file, stale) in f.read()
    finally:
        bridge.stop()
    isolate(monkeypatch, str(home))
    with pytest.raises(Unavailable) as err:
        BridgeClient(timeout=5).health()
    assert "cannot reach the bridge at %s (URL from the file %s)" % (stale, url_file) in str(err.value)
    ep = Proc(["-m", "radical_orbit.endpoint", "--name", "x", "-p", "echo"],
              clean_env(str(home), RADICAL_ORBIT_BRIDGE_TOKEN="t"), str(tmp_path / "ep.out"))
    try:
        wait_for(lambda: "retrying" in ep.output(), 20, "the endpoint's first retry")
        assert "(URL from the file %s, token from RADICAL_ORBIT_BRIDGE_TOKEN)" % url_file in ep.output()
    finally:
        assert ep.stop() == 0


def test_key_and_token_files_readable_by_others_stop_the_bridge(tmp_path):
    certs = make_cert(str(tmp_path))
    os.chmod(certs["key"], 0o644)
    env = clean_env(str(tmp_path / "home"))
    r = run_cmd("radical_orbit.bridge", ["--port", "0", "--cert", certs["cert"], "--key", certs["key"]], env)
    assert r.returncode == 1
    line = one_error_line(r.stderr)
    assert "mode 0644" in line and "chmod 600" in line
    os.makedirs(str(tmp_path / "home2"))
    token = tmp_path / "home2" / "bridge.token"
    token.write_text("secret\n")
    os.chmod(str(token), 0o640)
    r = run_cmd("radical_orbit.bridge", ["--port", "0"], clean_env(str(tmp_path / "home2")))
    assert r.returncode == 1 and "bridge.token has mode 0640" in one_error_line(r.stderr)


def test_plain_http_on_a_public_address_is_refused(tmp_path):
    r = run_cmd("radical_orbit.bridge", ["--host", "0.0.0.0", "--port", "0"], clean_env(str(tmp_path)))
    assert r.returncode == 1 and "--insecure" in one_error_line(r.stderr)


@pytest.mark.parametrize("value", ["0", "-1", "31", "nan"])
def test_a_keepalive_out_of_range_is_a_one_line_error(tmp_path, value):
    r = run_cmd("radical_orbit.bridge", ["--port", "0", "--keepalive", value], clean_env(str(tmp_path)))
    line = one_error_line(r.stderr)
    assert r.returncode == 1 and "--keepalive" in line and ("at most 30 seconds" in line or "above 0" in line)


def test_port_in_use_and_unknown_plugin_are_one_line_errors(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = run_cmd("radical_orbit.bridge", ["--port", str(port)], clean_env(str(tmp_path)))
        line = one_error_line(r.stderr)
        assert r.returncode == 1 and "already in use: stop what listens there, or give --port" in line, line
    r = run_cmd("radical_orbit.bridge", ["--port", "0", "-p", "nosuchplugin"], clean_env(str(tmp_path)))
    assert r.returncode == 1 and "unknown plugin 'nosuchplugin'" in one_error_line(r.stderr)


@pytest.mark.parametrize("args, message", [
    (["--plugin-config", "staging"], "must be NAME=JSON-object"),
    (["--plugin-config", "staging={roots"], "not valid JSON"),
    (["--plugin-config", "staging=[1]"], "must be a JSON object"),
    (["--plugin-config", "echo={}"], "--plugin-config for echo, which is not among the plugins loaded here"),
    (["-p", "none", "--plugin-config", "staging={}"], "-p none loads no bridge plugins"),
    # -p staging: plugins loaded before the refused one would each log a line first
    (["-p", "staging", "--plugin-config", 'staging={"roots": "/scratch"}'],
     "plugin staging did not start with its --plugin-config: staging's roots must be a list of paths"),
    (["-p", "staging", "--plugin-config", 'staging={"roots": ["scratch"]}'], "a staging root must be absolute"),
])
def test_a_bad_plugin_config_is_a_one_line_error(tmp_path, args, message):
    r = run_cmd("radical_orbit.bridge", ["--port", "0"] + args, clean_env(str(tmp_path)))
    assert r.returncode == 1 and message in one_error_line(r.stderr)


def test_endpoint_without_url_names_all_three_sources(tmp_path, monkeypatch):
    r = run_cmd("radical_orbit.endpoint", ["--name", "x"], clean_env(str(tmp_path)))
    line = one_error_line(r.stderr)
    assert r.returncode == 1
    assert "--url" in line and "RADICAL_ORBIT_BRIDGE_URL" in line and "bridge.url" in line
    r = run_cmd("radical_orbit.endpoint", ["--name", "x", "--url", "https://localhost:1"],
                clean_env(str(tmp_path)))
    line = one_error_line(r.stderr)
    assert "RADICAL_ORBIT_BRIDGE_CERT" in line and "bridge_cert.pem" in line
    r = run_cmd("radical_orbit.endpoint", ["--name", "bad name", "--url", "http://x"], clean_env(str(tmp_path)))
    assert r.returncode == 1 and "invalid endpoint name" in one_error_line(r.stderr)
    isolate(monkeypatch, str(tmp_path))
    with pytest.raises(ValueError) as err:
        BridgeClient()
    assert "RADICAL_ORBIT_BRIDGE_URL" in str(err.value) and "bridge.url" in str(err.value)
    with pytest.raises(ValueError) as err:
        BridgeClient(url="https://localhost:1")
    assert "RADICAL_ORBIT_BRIDGE_CERT" in str(err.value)


def test_endpoint_with_a_bad_token_or_wrong_cert_exits_1(orbit, tmp_path):
    orbit.start_bridge()
    ep = orbit.start_endpoint("hpc1", wait=False, RADICAL_ORBIT_BRIDGE_TOKEN="wrong")
    assert ep.wait(20) == 1
    out = ep.output()
    assert "wrong" not in out.replace("RADICAL_ORBIT_BRIDGE_TOKEN", "")
    refused = [l for l in out.splitlines() if "refused the token" in l]
    assert len(refused) == 1, out               # one plain line, not a log record besides it
    assert refused[0].startswith("error: the bridge at %s refused the token (HTTP 401)" % orbit.url)
    assert refused[0].endswith("(URL from RADICAL_ORBIT_BRIDGE_URL, token from RADICAL_ORBIT_BRIDGE_TOKEN)")
    assert "Traceback" not in out
    with open(os.path.join(orbit.home, "logs", "endpoint-hpc1.log")) as f:
        assert "refused the token" in f.read()   # the log file keeps the record
    other = make_cert(str(tmp_path))
    ep = orbit.start_endpoint("hpc2", wait=False, RADICAL_ORBIT_BRIDGE_CERT=other["cert"])
    assert ep.wait(20) == 1
    assert "TLS failure" in ep.output()


def test_sigterm_is_a_clean_stop(orbit):
    orbit.start_bridge()
    ep = orbit.start_endpoint("hpc1", "-p", "echo")
    assert ep.stop() == 0
    idle = orbit.session()   # an idle keep-alive connection must not hold the stop up
    assert idle.get(orbit.url + "/health", verify=orbit.verify, timeout=10).status_code == 200
    started = time.monotonic()
    assert orbit.bridge.stop() == 0
    assert time.monotonic() - started < 5
    idle.close()


def test_a_token_that_cannot_travel_in_a_cookie_is_refused(tmp_path):
    r = run_cmd("radical_orbit.bridge", ["--port", "0", "--token", "has space;and semicolon"],
                clean_env(str(tmp_path)))
    assert r.returncode == 1 and "may only contain" in one_error_line(r.stderr)


def test_batch_wrapper_runs_the_setup_then_the_endpoint(tmp_path):
    wrapper = (os.path.join(os.path.dirname(sys.executable), "radical-orbit-endpoint-wrapper.sh")
               if INSTALLED else os.path.join(REPO, "scripts", "radical-orbit-endpoint-wrapper.sh"))
    env = clean_env(str(tmp_path), RADICAL_ORBIT_SETUP="echo setup-ran >&2")
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    r = subprocess.run([wrapper, "--help"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=60, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "setup-ran" in r.stderr and "usage: radical-orbit-endpoint" in r.stdout
    assert "RADICAL_ORBIT_SETUP" in r.stdout
    env["RADICAL_ORBIT_SETUP"] = "echo loading; module-that-does-not-exist load python; echo after"
    r = subprocess.run([wrapper, "--name", "x"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=60, cwd=str(tmp_path))
    assert r.returncode == 1 and "after" not in r.stdout
    assert ("the setup command failed (exit 127): RADICAL_ORBIT_SETUP=\"%s\"" % env["RADICAL_ORBIT_SETUP"]
            in r.stderr.strip().splitlines()[-1])


def test_wildcard_bind_prints_both_url_forms(tmp_path):
    home = str(tmp_path / "home")
    bridge = Proc(["-m", "radical_orbit.bridge", "--host", "0.0.0.0", "--port", "0", "--insecure"],
                  clean_env(home), str(tmp_path / "b.out"))
    try:
        wait_for(lambda: "also reachable at" in bridge.output(), 20, "the bridge's URLs")
        out = bridge.output()
        fqdn_url = re.search(r"bridge serving at (http://\S+)", out).group(1)
        ip_url = re.search(r"also reachable at (http://\S+)", out).group(1)
        from radical_orbit.bridge.urls import host_name
        assert host_name() in fqdn_url and re.match(r"http://\d+\.\d+\.\d+\.\d+:\d+$", ip_url)
        with open(os.path.join(home, "bridge.url")) as f:
            assert f.read().strip() == fqdn_url
    finally:
        bridge.stop()


def test_role_detection(tmp_path):
    from radical_orbit.host import detect_role
    assert detect_role({"PATH": str(tmp_path), "SLURM_JOB_ID": "42"}) == "compute"
    assert detect_role({"PATH": str(tmp_path), "PBS_JOBID": "7.pbs"}) == "compute"
    assert detect_role({"PATH": str(tmp_path)}) == "standalone"
    sbatch = tmp_path / "sbatch"
    sbatch.write_text("#!/bin/sh\n")
    sbatch.chmod(0o755)
    assert detect_role({"PATH": str(tmp_path)}) == "login"


def test_default_plugin_set_follows_the_role(orbit):
    orbit.start_bridge()
    orbit.start_endpoint("node1", "--role", "compute")
    info = orbit.get("endpoint/list", "POST").json()["data"]["endpoints"]["node1"]
    assert info["endpoint"]["type"] == "compute"
    assert sorted(info["plugins"]) == sorted(["queue_info", "staging", "sysinfo"]
                                         + (["rhapsody"] if RHAPSODY_ROLES else []))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_url_and_token_files_exist_before_the_port_accepts_connections(tmp_path):
    for attempt in range(3):
        home = tmp_path / ("home%d" % attempt)
        port = free_port()
        bridge = Proc(["-m", "radical_orbit.bridge", "--port", str(port)], clean_env(str(home)),
                      str(tmp_path / ("b%d.out" % attempt)))

        def port_open():
            assert bridge.alive(), bridge.output()
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        try:
            wait_for(port_open, 20, "the port to open", interval=0.001)
            # the moment a connection is accepted, a client finds everything it needs
            assert (home / "bridge.url").read_text().strip() == "http://127.0.0.1:%d" % port
            assert (home / "bridge.token").read_text().strip()
        finally:
            bridge.stop()


BAD_OPTIONS = [
    ("bridge", ["--port", "99999"], "--port: '99999' is not a port"),
    ("bridge", ["--port", "-1"], "is not a port"),
    ("bridge", ["--port", "http"], "is not a port"),
    ("bridge", ["--request-timeout", "-5"], "--request-timeout: '-5' is not a duration"),
    ("bridge", ["--request-timeout", "nan"], "is not a duration"),
    ("bridge", ["--ping-interval", "0"], "--ping-interval: '0' is not a duration"),
    ("bridge", ["--max-pending", "0"], "--max-pending: '0' is not a count"),
    ("bridge", ["--max-connections", "1.5"], "--max-connections: '1.5' is not a count"),
    ("bridge", ["--token", ""], "--token: the token is empty"),
    ("bridge", ["--token", "a b"], "--token: the token may only contain"),
    ("bridge", ["--token", "x" * 20, "--no-auth"], "not allowed with argument"),
    ("bridge", ["--token-file", "/nonexistent/token"], "--token-file: no such file: /nonexistent/token"),
    ("bridge", ["--cert", "/nonexistent.pem"], "--cert: no such file: /nonexistent.pem"),
    ("bridge", ["--key", "/nonexistent.pem"], "--key: no such file"),
    ("bridge", ["--host", ""], "is not an address to bind"),
    ("bridge", ["-p", ""], "must not be empty"),
    ("bridge", ["-p", ",,"], "-p/--plugins: ',,' names no plugin"),
    ("endpoint", ["-p", " , "], "-p/--plugins: ' , ' names no plugin"),
    ("bridge", ["--log-level", "LOUD"], "unknown log level 'LOUD'"),
    ("bridge", ["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ("endpoint", ["--url", "ftp://x"], "must start with http://, https://, ws:// or wss://"),
    ("endpoint", ["--url", "http://[::1"], "Invalid IPv6 URL"),
    ("endpoint", ["--url", "http://::1:8000"], "an IPv6 address goes in brackets"),
    ("endpoint", ["--url", "http://localhost:99999"], "the port must be a number from 1 to 65535"),
    ("endpoint", ["--url", "http://"], "names no host"),
    ("endpoint", ["--url", "http://127.0.0.1:1", "--cert", "{cert}"], "is plain HTTP"),
    ("endpoint", ["--url", "https://localhost:1", "--cert", "/nonexistent.pem"], "--cert: no such file"),
    ("endpoint", ["--url", "https://localhost:1", "--cert", "{cert}", "--token", "x" * 32],
     "bridge certificate {cert} is not a PEM certificate"),
    ("bridge", ["--port", "0", "--cert", "{cert}", "--key", "{key}"], "cannot load the certificate {cert}"),
    ("endpoint", ["--workers", "0"], "--workers: '0' is not a count"),
    ("endpoint", ["--queue-size", "-1"], "--queue-size: '-1' is not a count"),
    ("endpoint", ["--token", ""], "--token: the token is empty"),
    ("endpoint", ["--token-file", "/nonexistent/token"], "no such file"),
    ("endpoint", ["--token-file", "{open_token}", "--url", "http://127.0.0.1:1"], "has mode 0644"),
    ("endpoint", ["--name", "bad name"], "invalid endpoint name 'bad name'"),
    ("endpoint", ["--log-level", "chatty"], "unknown log level"),
    ("endpoint", ["--role", "king"], "invalid choice: 'king'"),
    ("endpoint", ["--tunnel-via", " "], "--tunnel-via: must not be empty"),
    ("endpoint", ["--name", "x"], "bad bridge URL 'ftp://x': it must start with http://, https://, ws:// or "
                                  "wss:// (from RADICAL_ORBIT_BRIDGE_URL)"),
]


def test_every_bad_option_is_one_line_and_exit_1(tmp_path):
    open_token = tmp_path / "open.token"
    open_token.write_text("x" * 32)
    open_token.chmod(0o644)
    cert = tmp_path / "cert.pem"
    cert.write_text("not used\n")
    key = tmp_path / "key.pem"
    key.write_text("not a key either\n")
    key.chmod(0o600)
    env = clean_env(str(tmp_path / "home"))
    runs = []
    for program, args, expected in BAD_OPTIONS:
        args = [a.format(cert=cert, key=key, open_token=open_token) for a in args]
        expected = expected.format(cert=cert)
        run_env = dict(env, RADICAL_ORBIT_BRIDGE_URL="ftp://x") if args == ["--name", "x"] else env
        runs.append((program, args, expected, subprocess.Popen(
            [sys.executable, "-m", "radical_orbit." + program] + args, env=run_env, cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)))
    for program, args, expected, proc in runs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, (program, args, err)
        line = one_error_line(err)
        assert line.startswith("error: ") and expected in line, (program, args, line)
        assert "Traceback" not in err and not out, (program, args)


def test_help_steers_away_from_a_token_on_the_command_line(tmp_path):
    for program in ("bridge", "endpoint"):
        r = run_cmd("radical_orbit." + program, ["--help"], clean_env(str(tmp_path)))
        text = " ".join(r.stdout.split())
        assert r.returncode == 0 and "--token-file PATH" in text
        assert "visible to every user of this machine in the process list" in text
        assert "prefer --token-file or RADICAL_ORBIT_BRIDGE_TOKEN" in text


def test_token_file_for_both_commands(orbit_plain, tmp_path):
    token_file = tmp_path / "secret"
    token_file.write_text("a-token-read-from-a-file-0123456789\n")
    token_file.chmod(0o600)
    orbit_plain.token = "a-token-read-from-a-file-0123456789"
    bridge = orbit_plain.start_bridge("--token-file", str(token_file))
    ep = orbit_plain.start_endpoint("hpc1", "-p", "echo", "--token-file", str(token_file),
                                    RADICAL_ORBIT_BRIDGE_TOKEN="not-the-one")
    assert orbit_plain.token not in bridge.output() and orbit_plain.token not in ep.output()
    assert "(log in with the token from the file %s)" % token_file in bridge.output()
    assert not os.path.exists(os.path.join(orbit_plain.home, "bridge.token"))
    assert "Connect an endpoint: radical-orbit-endpoint --name NAME --url %s --token-file %s\n" % (
        orbit_plain.url, token_file) in bridge.output()
    other = Proc(["-m", "radical_orbit.bridge", "--port", "0", "--token", "t" * 32],
                 clean_env(str(tmp_path / "other")), str(tmp_path / "other.out"))
    try:
        wait_for(lambda: "Connect an endpoint" in other.output(), 20, "the banner")
        assert "(with this bridge's token from --token: --token-file F or RADICAL_ORBIT_BRIDGE_TOKEN)" \
            in other.output()
    finally:
        assert other.stop() == 0
    token_file.chmod(0o640)
    r = run_cmd("radical_orbit.endpoint", ["--name", "x", "--url", orbit_plain.url,
                                           "--token-file", str(token_file)], clean_env(str(tmp_path)))
    assert r.returncode == 1 and "has mode 0640" in one_error_line(r.stderr)


def test_the_login_url_with_the_token_goes_to_a_terminal_only(tmp_path):
    import pty
    home = tmp_path / "home"
    home.mkdir()
    (home / "bridge.token").write_text("the-file-token-0123456789abcdef\n")
    (home / "bridge.token").chmod(0o600)
    given = "the-given-token-0123456789abcdef"
    master, slave = pty.openpty()
    bridge = subprocess.Popen([sys.executable, "-m", "radical_orbit.bridge", "--port", "0",
                               "--token", given], env=clean_env(str(home)), cwd=REPO,
                              stdout=slave, stderr=subprocess.DEVNULL)
    os.close(slave)
    seen = b""
    try:
        while b"Connect an endpoint" not in seen:
            seen += os.read(master, 4096)
    finally:
        bridge.terminate()
        bridge.wait(10)
        os.close(master)
    text = seen.decode()
    assert re.search(r"Explorer login: http://127\.0\.0\.1:\d+/\?token=%s" % given, text), text
    assert "bridge.token" not in text and "Token file" not in text   # it holds another token
    r = Proc(["-m", "radical_orbit.bridge", "--port", "0", "--token", given], clean_env(str(home)),
             str(tmp_path / "b.out"))
    try:
        wait_for(lambda: "Connect an endpoint" in r.output(), 20, "the banner")
        out = r.output()
        assert given not in out and "bridge.token" not in out
        assert "(log in with the token from --token)" in out
    finally:
        r.stop()


def test_explorer_files_survive_a_reinstall_under_a_running_bridge(tmp_path):
    import shutil
    prefix = tmp_path / "prefix"       # an installation of its own: no other share/ to fall back on
    shutil.copytree(os.path.join(REPO, "radical_orbit"), str(prefix / "radical_orbit"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(os.path.join(REPO, "share"), str(prefix / "share"))
    env = clean_env(str(tmp_path / "home"))
    env["PYTHONPATH"] = str(prefix)
    out = tmp_path / "b.out"
    with open(str(out), "wb") as log:
        bridge = subprocess.Popen([sys.executable, "-m", "radical_orbit.bridge", "--port", "0", "--no-auth"],
                                  env=env, cwd=str(tmp_path), stdout=log, stderr=subprocess.STDOUT)
    try:
        url = wait_for(lambda: re.search(r"ORBIT bridge: (\S+)", out.read_text()), 20, "the URL").group(1)
        before = {path: requests.get(url + path, timeout=10) for path in ("/", "/plugins/sysinfo.js")}
        assert all(r.status_code == 200 for r in before.values())
        shutil.move(str(prefix / "share"), str(tmp_path / "old-share"))    # pip removes the old files
        for path, old in before.items():
            now = requests.get(url + path, timeout=10)
            assert now.status_code == 200 and now.content == old.content
        assert requests.get(url + "/plugins/nosuch.js", timeout=10).status_code == 404
    finally:
        bridge.terminate()
        assert bridge.wait(10) == 0


def test_tls_on_a_wildcard_bind_prints_urls_the_certificate_names(tmp_path):
    from radical_orbit.bridge.urls import host_name, outbound_ipv4
    fqdn, ip = host_name(), outbound_ipv4()
    only_local = make_cert(str(tmp_path))          # localhost and 127.0.0.1 only
    os.makedirs(str(tmp_path / "real"))
    real = make_cert(str(tmp_path / "real"), san="DNS:%s,IP:%s,DNS:localhost,IP:127.0.0.1" % (fqdn, ip))
    home = str(tmp_path / "home")
    for certs in (only_local, real):
        bridge = Proc(["-m", "radical_orbit.bridge", "--host", "0.0.0.0", "--port", "0", "--no-auth",
                       "--cert", certs["cert"], "--key", certs["key"]], clean_env(home),
                      str(tmp_path / "b.out"))
        try:
            out = wait_for(lambda: "Connect an endpoint" in bridge.output() and bridge.output(), 20, "the banner")
            url = re.search(r"ORBIT bridge: (https://\S+)", out).group(1)
            if certs is only_local:
                assert url.startswith("https://localhost:")
                assert "names localhost, 127.0.0.1 but neither this host's name %s nor its address %s" \
                    % (fqdn, ip) in out
                assert "subjectAltName=DNS:%s,IP:%s" % (fqdn, ip) in out
            else:
                assert url.startswith("https://%s:" % fqdn) and "certificate" not in out
                ip_url = re.search(r"also reachable at (https://\S+)", out).group(1)
                assert ip_url.startswith("https://%s:" % ip)
                for dial in (url, ip_url):      # both pass the pinned client's host-name check
                    assert BridgeClient(url=dial, cert=certs["cert"], timeout=10).health()["status"] == "ok"
        finally:
            bridge.stop()
        os.unlink(os.path.join(home, "bridge.url"))
