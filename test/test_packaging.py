"""The install promises of setup.cfg, checked without installing: every extra installs
on Python 3.8 (the core's oldest), whatever setuptools the user's pip brings."""
import configparser
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: distributions that exist for Python 3.9+ only: an extra naming one must say so
PY39_ONLY = ("rhapsody-py", "dask", "websockets", "playwright")


def extras():
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(os.path.join(REPO, "setup.cfg"))
    return dict(cfg["options.extras_require"])


def test_a_marker_is_on_a_line_of_its_own():
    """setuptools 56 (what a Python 3.8 venv brings) splits a one-line extra at ';', so
    `rhapsody = rhapsody-py; python_version >= "3.9"` became two requirements and
    `pip install '.[rhapsody]'` failed on 3.8 instead of installing nothing."""
    for name, value in extras().items():
        if ";" in value:
            assert value.startswith("\n"), "extra %r: put a requirement with a marker on its own line" % name


def test_py39_only_requirements_carry_their_marker():
    """`pip install '.[all]'` on 3.8 failed: rhapsody-py has no 3.8 release."""
    for name, value in extras().items():
        for line in filter(None, (ln.strip() for ln in value.splitlines())):
            if line.split(";")[0].split("[")[0].strip() in PY39_ONLY:
                assert 'python_version >= "3.9"' in line, "extra %r: %r needs its marker" % (name, line)
