"""Finds the ``share/`` files (the Explorer) from a checkout or an installed prefix."""
import os
import site
import sys
from typing import List, Optional

SUBDIR = os.path.join("share", "radical.orbit")
MARKER = "index.html"


def candidates() -> List[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [os.path.join(os.path.dirname(here), "share")]          # a checkout
    for prefix in (sys.prefix, sys.exec_prefix, getattr(site, "USER_BASE", None) or "",
                   "/usr/local", "/usr"):
        if prefix:
            dirs.append(os.path.join(prefix, SUBDIR))
    env = os.environ.get("RADICAL_ORBIT_SHARE")
    if env:
        dirs.insert(0, env)
    return dirs


def share_dir() -> Optional[str]:
    for path in candidates():
        if os.path.isfile(os.path.join(path, MARKER)):
            return path
    return None
