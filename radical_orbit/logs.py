"""Logging set-up: ``--log-level`` > RADICAL_ORBIT_LOG_LVL > RADICAL_LOG_LVL > INFO,
to stderr and a file under ``~/.radical/orbit/logs/`` (RADICAL_ORBIT_LOG_FILE overrides)."""
import logging
import os
import sys
from typing import Optional

from . import config

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


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
    formatter = logging.Formatter(FORMAT)
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
