"""Run Autobahn|Testsuite's fuzzingclient against the radical_orbit echo server.

    python test/autobahn/run_autobahn.py [--cases 6.4.*] [--workdir DIR] [--tls]

wstest only runs on Python 2.7.  It is found through ORBIT_PY27 or pyenv
(``$(pyenv root)/versions/2.7.*/bin/python``) and autobahntestsuite is
installed once into a cache directory (ORBIT_AUTOBAHN_CACHE, default
``~/.cache/radical_orbit/autobahntestsuite``).  Cases 12 and 13 (compression)
are excluded since permessage-deflate is never negotiated.  ``--tls`` runs the
same cases over wss with a throwaway self-signed certificate (needs openssl).

Exit status: 0 when no case FAILED, 1 when some did, 2 when Autobahn could
not be set up (no Python 2.7, install failed).
"""

import argparse
import collections
import glob
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ECHO_SERVER = os.path.join(os.path.dirname(HERE), "ws_echo_server.py")

AUTOBAHN_REQUIREMENT = "autobahntestsuite==25.10.1"
INSTALL_TIMEOUT = 900
RUN_TIMEOUT = 3600
SERVER_START_TIMEOUT = 30
AGENT = "radical_orbit"
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
PASSING = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED")

LAUNCHER = """\
import site, sys
site.addsitedir(sys.argv.pop(1))
from autobahntestsuite import wstest
wstest.run()
"""


class AutobahnUnavailable(Exception):
    """Autobahn|Testsuite cannot run here (reason in the message, one line)."""


def find_python27() -> str:
    """Path of a Python 2.7 interpreter, or raise AutobahnUnavailable."""
    explicit = os.environ.get("ORBIT_PY27")
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise AutobahnUnavailable("ORBIT_PY27=%s is not executable" % explicit)
    roots = [os.environ.get("PYENV_ROOT"), os.path.expanduser("~/.pyenv")]
    try:
        roots.insert(0, subprocess.run(["pyenv", "root"], stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, universal_newlines=True,
                                       timeout=30).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    for root in roots:
        if not root:
            continue
        candidates = sorted(glob.glob(os.path.join(root, "versions", "2.7.*", "bin", "python")))
        if candidates:
            return candidates[-1]
    raise AutobahnUnavailable("no Python 2.7 found (set ORBIT_PY27 or install it with pyenv)")


def cache_dir() -> str:
    default = os.path.join(os.path.expanduser("~"), ".cache", "radical_orbit", "autobahntestsuite")
    return os.environ.get("ORBIT_AUTOBAHN_CACHE", default)


def ensure_installed(python27: str, directory: str) -> str:
    """Install autobahntestsuite into ``directory`` once; return the site directory."""
    site_dir = os.path.join(directory, "site")
    stamp = os.path.join(directory, "installed.txt")
    if os.path.exists(stamp):
        with open(stamp) as handle:
            if handle.read().strip() == AUTOBAHN_REQUIREMENT:
                return site_dir
    os.makedirs(directory, exist_ok=True)
    log_path = os.path.join(directory, "install.log")
    command = [python27, "-m", "pip", "install", "--disable-pip-version-check",
               "--target", site_dir, "--upgrade", AUTOBAHN_REQUIREMENT]
    try:
        with open(log_path, "w") as log:
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, timeout=INSTALL_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        raise AutobahnUnavailable("installing %s failed: %s" % (AUTOBAHN_REQUIREMENT, exc))
    if result.returncode != 0:
        raise AutobahnUnavailable("installing %s failed (see %s)" % (AUTOBAHN_REQUIREMENT, log_path))
    with open(stamp, "w") as handle:
        handle.write(AUTOBAHN_REQUIREMENT + "\n")
    return site_dir


def make_certificate(workdir: str):
    """A throwaway self-signed certificate for 127.0.0.1: (certfile, keyfile)."""
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   stdin=subprocess.DEVNULL, timeout=60)
    return cert, key


def start_echo_server(*args):
    """Start the echo server (64 MiB messages) on a free port; return (process, port)."""
    proc = subprocess.Popen([sys.executable, ECHO_SERVER, "--port", "0"] + list(args),
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            universal_newlines=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=SERVER_START_TIMEOUT)
    except queue.Empty:
        line = ""
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        raise RuntimeError("echo server did not start: %r" % line)
    return proc, int(line.split()[1])


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_fuzzingclient(python27: str, site_dir: str, workdir: str, url: str, cases) -> dict:
    """Run wstest in ``workdir`` and return this agent's entries of the report index."""
    launcher = os.path.join(workdir, "wstest_launcher.py")
    with open(launcher, "w") as handle:
        handle.write(LAUNCHER)
    spec = {
        "outdir": "./reports/servers",
        "servers": [{"agent": AGENT, "url": url}],
        "cases": cases,
        "exclude-cases": ["12.*", "13.*"],
        "exclude-agent-cases": {},
    }
    spec_path = os.path.join(workdir, "fuzzingclient.json")
    with open(spec_path, "w") as handle:
        json.dump(spec, handle, indent=2)
    log_path = os.path.join(workdir, "wstest.log")
    with open(log_path, "w") as log:
        result = subprocess.run([python27, launcher, site_dir, "-m", "fuzzingclient", "-s", spec_path],
                                cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT)
    index_path = os.path.join(workdir, "reports", "servers", "index.json")
    if result.returncode != 0 or not os.path.exists(index_path):
        raise RuntimeError("wstest exited with %d, no report (see %s)" % (result.returncode, log_path))
    with open(index_path) as handle:
        return json.load(handle)[AGENT]


def _case_key(case_id: str):
    return tuple(int(part) for part in case_id.split("."))


def _count_line(label: str, counts) -> str:
    names = list(BEHAVIORS) + sorted(set(counts) - set(BEHAVIORS))
    return "  %-14s " % (label + ":") + ", ".join("%s %d" % (name, counts.get(name, 0)) for name in names)


def summarize(results: dict):
    """(summary text, ids of failed cases) for one agent's report index entries.

    A case fails when its behavior is FAILED, or when its close behavior is
    anything but a passing one (Autobahn also reports e.g. WRONG CODE, UNCLEAN).
    """
    counts = collections.Counter(entry["behavior"] for entry in results.values())
    close_counts = collections.Counter(entry["behaviorClose"] for entry in results.values())
    lines = ["Autobahn fuzzingclient: %d cases" % len(results),
             _count_line("behavior", counts), _count_line("behaviorClose", close_counts)]
    failed = []
    for case_id in sorted(results, key=_case_key):
        entry = results[case_id]
        if entry["behavior"] != "OK" or entry["behaviorClose"] != "OK":
            lines.append("  %-8s behavior=%s close=%s" % (case_id, entry["behavior"], entry["behaviorClose"]))
        if entry["behavior"] == "FAILED" or entry["behaviorClose"] not in PASSING:
            failed.append(case_id)
    return "\n".join(lines), failed


def run(cases=None, workdir=None, tls: bool = False):
    """Set up Autobahn, run it against a fresh echo server; return (summary, failed ids)."""
    python27 = find_python27()
    site_dir = ensure_installed(python27, cache_dir())
    workdir = workdir or tempfile.mkdtemp(prefix="orbit-autobahn-")
    os.makedirs(workdir, exist_ok=True)
    server_args = []
    if tls:
        cert, key = make_certificate(workdir)
        server_args = ["--cert", cert, "--key", key]
    proc, port = start_echo_server(*server_args)
    url = "%s://127.0.0.1:%d" % ("wss" if tls else "ws", port)
    try:
        results = run_fuzzingclient(python27, site_dir, workdir, url, cases or ["*"])
    finally:
        stop(proc)
    summary, failed = summarize(results)
    reports = os.path.join(workdir, "reports", "servers")
    return summary + "\n  server: %s\n  reports: %s" % (url, reports), failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", help="case patterns (default: all but 12.* and 13.*)")
    parser.add_argument("--workdir", help="where the spec, log and reports go (default: a new temp dir)")
    parser.add_argument("--tls", action="store_true", help="run over wss with a self-signed certificate")
    args = parser.parse_args(argv)
    try:
        summary, failed = run(args.cases, args.workdir, args.tls)
    except AutobahnUnavailable as exc:
        print("Autobahn unavailable: %s" % exc, file=sys.stderr)
        return 2
    print(summary)
    if failed:
        print("FAILED cases: %s" % " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
