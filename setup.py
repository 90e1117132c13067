"""Installs the package, the three commands and the Explorer files under <prefix>/share/radical.orbit."""
import os

from setuptools import setup


def share_files():
    out = []
    for root, _dirs, files in os.walk("share"):
        if files:
            target = os.path.join("share", "radical.orbit", os.path.relpath(root, "share"))
            out.append((os.path.normpath(target), [os.path.join(root, f) for f in sorted(files)]))
    return out


setup(
    data_files=share_files(),
    scripts=["scripts/radical-orbit-endpoint-wrapper.sh"],
)
