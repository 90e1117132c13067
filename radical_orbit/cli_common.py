"""What both command-line programs share: a parser whose usage errors are one line
and exit 1 like every other fatal error, option types checked at parse time,
fatal-error exits and signal handling."""
import argparse
import json
import logging
import os
import signal
import sys
from typing import Any, Callable, Dict, List, NoReturn, Optional, Tuple

from . import config

#: What --help says of --token, on both commands.
TOKEN_HELP = ("the access token; visible to every user of this machine in the process list, "
              "so prefer --token-file or %s" % config.ENV_TOKEN)
TOKEN_FILE_HELP = "read the access token from this file (it must not be readable by group or others)"


def fatal(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr, then exit non-zero."""
    sys.stderr.write("error: %s\n" % message)
    sys.stderr.flush()
    raise SystemExit(code)


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one ``error:`` line and exit 1, not usage and exit 2."""

    def error(self, message: str) -> NoReturn:
        fatal("%s (see %s --help)" % (message, self.prog))


def port(text: str) -> int:
    """A TCP port to bind: 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("%r is not a port: use 0 to 65535" % text)
    return value


def seconds(text: str) -> float:
    """A duration: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("%r is not a duration: give seconds above 0" % text)
    return value


def seconds_up_to(maximum: float) -> Callable[[str], float]:
    """A duration above 0 and at most ``maximum`` seconds."""
    def bounded(text: str) -> float:
        value = seconds(text)
        if value > maximum:
            raise argparse.ArgumentTypeError("%r must be more than 0 and at most %g seconds" % (text, maximum))
        return value
    return bounded


def count(text: str) -> int:
    """A count of things: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("%r is not a count: give a whole number of at least 1" % text)
    return value


def existing_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError("no such file: %s" % text)
    return text


def token(text: str) -> str:
    try:
        return config.check_token(text)
    except config.ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def url(text: str) -> str:
    try:
        return config.check_url(text)
    except config.ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def log_level(text: str) -> str:
    level = text.upper()
    if not isinstance(logging.getLevelName(level), int):
        raise argparse.ArgumentTypeError("unknown log level %r: use DEBUG, INFO, WARNING or ERROR" % text)
    return level


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def plugin_spec(text: str) -> str:
    """A ``-p`` value: at least one name between its commas (``-p ,`` loads nothing)."""
    non_empty(text)
    if not any(token.strip() for token in text.split(",")):
        raise argparse.ArgumentTypeError("%r names no plugin (give names, or 'none' on the bridge)" % text)
    return text


PLUGIN_CONFIG_HELP = ("configure a plugin loaded at start: NAME=JSON-object, e.g. "
                      "'staging={\"roots\": [\"~\", \"/scratch/me\"]}'; repeatable")


def plugin_config(text: str) -> Tuple[str, Dict[str, Any]]:
    """``NAME={...}``: a plugin's config as given with ``--plugin-config``."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError("%r must be NAME=JSON-object, e.g. staging={\"roots\": [\"~\"]}" % text)
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("the config of %s is not valid JSON: %s" % (name, exc))
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("the config of %s must be a JSON object" % name)
    return name, value


def plugin_configs(pairs: Optional[List[Tuple[str, Dict[str, Any]]]]) -> Dict[str, Dict[str, Any]]:
    """Repeated ``--plugin-config`` flags as one dict; a later flag adds to (and wins
    over) an earlier one for the same plugin."""
    configs: Dict[str, Dict[str, Any]] = {}
    for name, value in pairs or ():
        configs.setdefault(name, {}).update(value)
    return configs


def on_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT ask for a clean stop (exit code 0)."""
    def handler(signum, _frame):
        logging.getLogger("radical_orbit").info("received %s: stopping", signal.Signals(signum).name)
        stop()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
