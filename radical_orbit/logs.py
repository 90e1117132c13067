"""Logging set-up: ``--log-level`` > RADICAL_ORBIT_LOG_LVL > RADICAL_LOG_LVL > INFO,
to stderr and a file under ``~/.radical/orbit/logs/`` (RADICAL_ORBIT_LOG_FILE overrides).
Every line, at every level and with its traceback, passes through ``redact`` first."""
import logging
import os
import re
import sys
from typing import Optional
from urllib.parse import unquote_plus

from . import config

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
REDACTED = "<redacted>"
#: a query parameter (or cookie) whose name, percent-decoded and lower-cased, contains
#: one of these carries a secret: ``token``, ``access_token``, ``%74oken``, ``orbit_token``
SECRET_WORDS = ("token", "passw", "secret", "api_key", "apikey", "credential")
#: how many rounds of percent-decoding a name or value gets (``%2574oken`` is two)
DECODE_ROUNDS = 3
# a run between the separators of a request line, a query or a cookie header
_RUN = re.compile(r"[^\s?&;,\"'<>]+")
_AUTH_SCHEME = re.compile(r"\b([Bb]earer|BEARER|Basic)(\s+)[^\s\"',;]+")
# a quoted key and its quoted value, as JSON and Python reprs write them: {"access_token": "T"}
_QUOTED_PAIR = re.compile(r"""(["'])([^"'\s]{1,64})\1(\s*:\s*)(["'])((?:\\.|(?!\4).)*)\4""")


def redact(text: str) -> str:
    """``text`` with the value of every secret-looking parameter replaced, whatever its
    encoding: names are compared after percent-decoding (``?%74oken=T`` logs in as
    ``?token=T``), and a value that decodes to a query with a secret in it goes too
    (``?next=%2F%3Ftoken%3DT``). Quoted pairs (``{"access_token": "T"}``, JSON or a dict's
    repr) and credentials after an auth scheme (``Bearer T``) too."""
    if "=" in text or "%" in text:
        text = _RUN.sub(_redact_run, text)
    if ":" in text:
        text = _QUOTED_PAIR.sub(_redact_pair, text)
    return _AUTH_SCHEME.sub(r"\1\2" + REDACTED, text)


def _redact_pair(match) -> str:
    """``"refresh_token": "T"`` (a JSON body or a dict's repr in a message) keeps its key."""
    quote, name, colon, vquote, value = match.groups()
    if value and value != REDACTED and _secret_name(name):
        return "%s%s%s%s%s%s%s" % (quote, name, quote, colon, vquote, REDACTED, vquote)
    return match.group(0)


def _redact_run(match) -> str:
    run = match.group(0)
    name, eq, value = run.partition("=")
    if not eq:
        return REDACTED if _carries_secret(run) else run
    if value and (_secret_name(name) or _carries_secret(value)):
        return name + "=" + REDACTED
    return run


def _decoded(text: str) -> str:
    for _ in range(DECODE_ROUNDS):
        if "%" not in text and "+" not in text:
            break
        text = unquote_plus(text)
    return text


def _secret_name(name: str) -> bool:
    name = _decoded(name).strip().lower().rsplit("/", 1)[-1]
    return any(word in name for word in SECRET_WORDS)


def _carries_secret(raw: str) -> bool:
    """Whether an encoded run decodes to ``name=value`` pairs with a secret name."""
    if "%" not in raw:
        return False
    for piece in _RUN.findall(_decoded(raw)):
        name, eq, _value = piece.partition("=")
        if eq and _secret_name(name):
            return True
    return False


class RedactingFormatter(logging.Formatter):
    """Redacts the whole formatted line: message, arguments and traceback alike."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def level_name(cli: Optional[str] = None) -> str:
    return (cli or os.environ.get("RADICAL_ORBIT_LOG_LVL") or os.environ.get("RADICAL_LOG_LVL")
            or "INFO").upper()


def setup(program: str, cli_level: Optional[str] = None) -> logging.Logger:
    level = level_name(cli_level)
    if not isinstance(logging.getLevelName(level), int):
        raise config.ConfigError("unknown log level %r (use DEBUG, INFO, WARNING, ERROR)" % level)
    root = logging.getLogger("radical_orbit")
    root.setLevel(level)
    root.handlers[:] = []
    formatter = RedactingFormatter(FORMAT)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    root.addHandler(console)
    path = os.environ.get("RADICAL_ORBIT_LOG_FILE") or os.path.join(
        config.home(), "logs", "%s.log" % program)
    try:
        config.ensure_dir(os.path.dirname(path))
        handler = logging.FileHandler(path)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    except OSError as exc:
        root.warning("cannot write log file %s: %s", path, exc)
    root.propagate = False
    return root


def to_file_only(message: str, level: int = logging.ERROR) -> None:
    """Record ``message`` in the log file but not on the console, where the command
    prints it as its one plain ``error:`` line."""
    root = logging.getLogger("radical_orbit")
    record = root.makeRecord(root.name, level, __file__, 0, message, None, None)
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
