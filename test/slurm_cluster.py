"""The SLURM test tier: tests that need the single-node cluster started by
`test/slurm/start.sh` (CI starts it) call `require_slurm()`, which skips them
with one line where no cluster answers."""
import shutil
import subprocess

import pytest

_state = {}


def slurm_available() -> bool:
    """True when `sinfo` answers and the node is usable; probed once per run."""
    if "up" not in _state:
        up = False
        if shutil.which("sinfo"):
            try:
                out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True,
                                     text=True, timeout=10)
                up = out.returncode == 0 and any(
                    s.strip().rstrip("*") in ("idle", "mix", "alloc", "comp")
                    for s in out.stdout.split())
            except (OSError, subprocess.SubprocessError):
                up = False
        _state["up"] = up
    return _state["up"]


def require_slurm() -> None:
    if not slurm_available():
        pytest.skip("no SLURM test cluster answers (start it with test/slurm/start.sh, as root)")
