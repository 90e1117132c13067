"""The old-Python promise, proven: install the project under Python 3.8 (with the
shipped constraints) and run the core tests there, so that the bridge, endpoint
and client processes all run on 3.8. Skips with one line where no 3.8 exists."""
import glob
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONSTRAINTS = os.path.join(REPO, "constraints", "py38.txt")
CORE_TESTS = ["test_e2e.py", "test_http_strict.py", "test_http_units.py", "test_notifications.py",
              "test_plugin_framework.py", "test_staging.py", "test_staging_client.py", "test_sysinfo.py",
              "test_websocket.py", "test_queue_info_parsers.py"]


def find_python38():
    explicit = os.environ.get("ORBIT_PY38")
    if explicit:
        return explicit
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(os.path.join(root, "versions", "3.8.*", "bin", "python3")))
    if found:
        return found[-1]
    which = shutil.which("python3.8")
    if which and "/shims/" not in which:
        return which
    return None


def run(argv, **kwargs):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, **kwargs)


@pytest.mark.py38
def test_core_tests_pass_on_python38(tmp_path):
    python = find_python38()
    if not python or not os.path.exists(python):
        pytest.skip("no Python 3.8 here (set ORBIT_PY38 to its python3): old-Python tier skipped")
    venv = str(tmp_path / "venv38")
    made = run([python, "-m", "venv", venv], timeout=300)
    assert made.returncode == 0, made.stdout
    py = os.path.join(venv, "bin", "python")
    install = run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                   "-c", CONSTRAINTS, REPO, "pytest"], timeout=900, cwd=str(tmp_path))
    if install.returncode != 0 and ("No matching distribution" in install.stdout
                                    or "Could not find a version" in install.stdout):
        pytest.skip("Python 3.8 dependencies unavailable here (no package index?)")
    assert install.returncode == 0, install.stdout
    probe = run([py, "-c", "import radical_orbit, sys; print(radical_orbit.__file__, sys.version_info[:2])"],
                cwd=str(tmp_path), timeout=60)
    assert "site-packages" in probe.stdout and "(3, 8)" in probe.stdout, probe.stdout
    env = dict(os.environ, ORBIT_TEST_INSTALLED="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    tests = [os.path.join(REPO, "test", t) for t in CORE_TESTS]
    result = run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                  "--basetemp", str(tmp_path / "t")] + tests,
                 cwd=str(tmp_path), env=env, timeout=1200)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    print("Python 3.8 tier:", summary)
    assert result.returncode == 0, result.stdout[-6000:]
