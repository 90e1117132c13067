"""Real bridge and endpoint processes for tests: started with the project's own
commands, readiness by polling with a deadline, always stopped."""
import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: ORBIT_TEST_INSTALLED=1 tests the installed package (the Python 3.8 tier), not the checkout
INSTALLED = os.environ.get("ORBIT_TEST_INSTALLED") == "1"
URL_LINE = re.compile(r"ORBIT bridge: (\S+)")


def clean_env(home: str, **extra: str) -> Dict[str, str]:
    """This environment without any RADICAL_ORBIT_* variable, with its own config dir: what a
    user's fresh shell would have (for commands and examples run as a user would)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADICAL_ORBIT")}
    env.update(RADICAL_ORBIT_HOME=home, PYTHONUNBUFFERED="1", **extra)
    if not INSTALLED:
        env["PYTHONPATH"] = REPO
    return env


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    """Poll ``predicate`` until it returns a true value; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


class ManualClock:
    """A monotonic clock that moves only when told: ``plugin.clock = ManualClock()``, then
    ``clock.advance(ttl + 1)`` expires a session without waiting for it."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_cert(directory: str, host: str = "localhost", san: Optional[str] = None) -> Dict[str, str]:
    """A self-signed cert for ``host`` and 127.0.0.1 (or the names in ``san``), key mode 0600."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=%s" % host,
                    "-addext", "subjectAltName=%s" % (san or "DNS:%s,IP:127.0.0.1" % host)],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return {"cert": cert, "key": key}


class Proc:
    """A child process with its output in a file (no pipe to fill up)."""

    def __init__(self, argv: List[str], env: Dict[str, str], log_path: str, python: str = sys.executable):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen([python] + argv, env=env, stdout=self._log,
                                      stderr=subprocess.STDOUT,
                                      cwd=os.path.dirname(log_path) if INSTALLED else REPO)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


class Orbit:
    """A test's ORBIT: one config dir, a bridge and any number of endpoints."""

    def __init__(self, home: str, tls: bool = True, python: str = sys.executable):
        self.home = home
        self.python = python
        os.makedirs(home, exist_ok=True)
        self.tls = make_cert(home) if tls else None
        self.token = "test-token-%d" % os.getpid()
        self.bridge: Optional[Proc] = None
        self.url: Optional[str] = None
        self.endpoints: Dict[str, Proc] = {}
        self._port = 0

    def env(self, **extra: str) -> Dict[str, str]:
        env = dict(os.environ)
        env.update({"RADICAL_ORBIT_HOME": self.home, "PYTHONUNBUFFERED": "1",
                    "RADICAL_ORBIT_BRIDGE_TOKEN": self.token,
                    "RADICAL_ORBIT_LOG_LVL": "DEBUG"})
        if not INSTALLED:
            env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        if self.url:
            env["RADICAL_ORBIT_BRIDGE_URL"] = self.url
        if self.tls:
            env["RADICAL_ORBIT_BRIDGE_CERT"] = self.tls["cert"]
        env.update(extra)
        return env

    def start_bridge(self, *args: str, port: Optional[int] = None, timeout: float = 20.0) -> Proc:
        """Start (or restart on the same port) the bridge and wait until it answers."""
        argv = ["-m", "radical_orbit.bridge", "--port", str(port if port is not None else self._port)]
        if self.tls:
            argv += ["--cert", self.tls["cert"], "--key", self.tls["key"]]
        argv += list(args)
        log = os.path.join(self.home, "bridge-%d.out" % time.monotonic_ns())
        self.bridge = proc = Proc(argv, self.env(), log, self.python)
        match = wait_for(lambda: URL_LINE.search(proc.output()) or (not proc.alive() and "exit"),
                         timeout, "the bridge to print its URL")
        assert match != "exit", "bridge exited:\n" + proc.output()
        self.url = match.group(1).replace("127.0.0.1", "localhost") if self.tls else match.group(1)
        self._port = int(self.url.rsplit(":", 1)[1])
        wait_for(lambda: self._healthy(), timeout, "the bridge's /health")
        return proc

    def _healthy(self) -> bool:
        try:
            return self.get("health").status_code == 200
        except requests.RequestException:
            return False

    def start_endpoint(self, name: str, *args: str, wait: bool = True, timeout: float = 20.0,
                       **env: str) -> Proc:
        log = os.path.join(self.home, "endpoint-%s-%d.out" % (name, time.monotonic_ns()))
        proc = Proc(["-m", "radical_orbit.endpoint", "--name", name] + list(args),
                    self.env(**env), log, self.python)
        self.endpoints[name] = proc
        if wait:
            self.wait_listed(name, timeout, proc)
        return proc

    def wait_listed(self, name: str, timeout: float = 20.0, proc: Optional[Proc] = None) -> None:
        def listed():
            if proc is not None and not proc.alive():
                raise AssertionError("endpoint %s exited:\n%s" % (name, proc.output()))
            try:
                return name in self.get("endpoint/list", "POST").json()["data"]["endpoints"]
            except (requests.RequestException, ValueError, KeyError):
                return False
        wait_for(listed, timeout, "endpoint %s to be listed" % name)

    def session(self) -> requests.Session:
        s = requests.Session()
        s.headers["Authorization"] = "Bearer %s" % self.token
        return s

    @property
    def verify(self):
        """Per request: a session-level verify loses to REQUESTS_CA_BUNDLE in requests."""
        return self.tls["cert"] if self.tls else True

    def get(self, path: str, method: str = "GET", timeout: float = 10.0, **kwargs) -> requests.Response:
        kwargs.setdefault("verify", self.verify)
        with self.session() as s:
            return s.request(method, "%s/%s" % (self.url, path.lstrip("/")), timeout=timeout, **kwargs)

    def stop(self) -> None:
        for proc in self.endpoints.values():
            proc.stop()
        if self.bridge is not None:
            self.bridge.stop()
