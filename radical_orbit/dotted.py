"""Import an object named by a dotted path: ``pkg.module:Class`` or ``pkg.module.Class``."""
import importlib
from typing import Any


def import_dotted(path: str) -> Any:
    """Raises ImportError for a missing module and AttributeError for a missing name."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        if part:
            obj = getattr(obj, part)
    return obj
