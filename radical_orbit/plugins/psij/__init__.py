"""psij: submit, watch and cancel batch (and local) jobs through psij-python, durably."""
from .plugin import PsijPlugin

__all__ = ["PsijPlugin"]
