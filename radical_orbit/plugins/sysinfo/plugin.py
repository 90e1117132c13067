"""The sysinfo plugin: what is this machine, and how busy is it?

Cheap facts (memory, disks, network) are taken per request. CPU utilisation is
sampled by its own thread (see ``cpu.py``): per-request readings would each cover
a different window. Slow
probes (GPU tools, CPU model) run in a background thread started by ``start``
and refreshed every ``prefetch_interval`` seconds, so a request never waits
for ``nvidia-smi``; ``metrics`` serves the latest prefetched result.
"""
import os
import threading
import time
from typing import Any, Dict, List, Optional

from ...host import host_facts
from ...plugin import Plugin, PluginContext, PluginSession, Request, route
from .commands import COMMAND_TIMEOUT
from .cpu import CPU_INTERVAL, CpuSampler
from .disks import DiskProbe
from .gpus import GPU, probe_gpus
from .system import cpu_info, cpu_model, memory_info, network_info, os_name, system_info

#: Seconds between two background refreshes of the GPU list.
PREFETCH_INTERVAL = 60.0
#: Seconds after ``start`` during which a request waits for the first probe (bounded, not per request).
FIRST_PROBE_WAIT = 1.0
#: Seconds ``stop`` waits for the prefetch thread (a probe in flight may take its command timeout).
STOP_JOIN_TIMEOUT = 2.0


class SysinfoPlugin(Plugin):
    plugin_name = "sysinfo"
    version = "1.0.0"
    ui_config = {"title": "System", "description": "Host, CPU, memory, disks, network and GPUs"}

    prefetch_interval = PREFETCH_INTERVAL
    first_probe_wait = FIRST_PROBE_WAIT
    probe_timeout = COMMAND_TIMEOUT
    cpu_interval = CPU_INTERVAL

    def __init__(self, name: str, context: PluginContext):
        super().__init__(name, context)
        self.disks = DiskProbe()
        self.cpu = CpuSampler(self.cpu_interval)
        # Replaced whole by the prefetch thread; readers see the old or the new value.
        self._gpus: List[GPU] = []
        self._cpu_model = ""
        self._os_name = ""
        self._probed = threading.Event()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._started_at: Optional[float] = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Start sampling the CPU and prefetching the slow probes."""
        self.cpu.start("sysinfo-cpu-%s" % self.name)
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._prefetch_loop, daemon=True,
                                        name="sysinfo-prefetch-%s" % self.name)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(STOP_JOIN_TIMEOUT)
        self.cpu.stop(STOP_JOIN_TIMEOUT)
        super().stop()

    def _prefetch_loop(self) -> None:
        self._guarded(self._probe_static)
        while not self._stopping.is_set():
            self._guarded(self._probe_gpus)
            self._probed.set()
            if self._stopping.wait(self.prefetch_interval):
                return

    def _guarded(self, probe: Any) -> None:
        """A failing probe is logged; the prefetch thread must survive it."""
        try:
            probe()
        except Exception:
            self.log.exception("sysinfo probe %s failed", probe.__name__)

    def _probe_static(self) -> None:
        self._os_name = os_name()
        self._cpu_model = cpu_model(self.probe_timeout)

    def _probe_gpus(self) -> None:
        self._gpus = probe_gpus(self.probe_timeout)

    def _first_probe_remaining(self) -> float:
        """Seconds a request may still wait for the first probes (only right after start)."""
        if self._started_at is None:
            return 0.0
        return max(0.0, self._started_at + self.first_probe_wait - time.monotonic())

    def _wait_first_probe(self) -> None:
        """Right after start, give the first probe a moment so GPUs show up at once."""
        remaining = self._first_probe_remaining()
        if remaining > 0:
            self._probed.wait(remaining)

    # -- routes --------------------------------------------------------------
    @route("GET", "homedir")
    def homedir(self, req: Request) -> Dict[str, Any]:
        return {"homedir": os.path.expanduser("~")}

    @route("GET", "host_role")
    def host_role(self, req: Request) -> Dict[str, Any]:
        """Gathered once by the host: ``getfqdn`` can take seconds on a badly resolving node."""
        if not self.context.facts:
            self.context.facts = host_facts(self.context.role)
        return dict(self.context.facts)

    @route("GET", "metrics/{sid}")
    def metrics(self, req: Request, session: PluginSession) -> Dict[str, Any]:
        usage = self.cpu.latest(self._first_probe_remaining())
        self._wait_first_probe()
        return {"system": system_info(self._os_name), "cpu": cpu_info(self._cpu_model, usage),
                "memory": memory_info(), "disks": self.disks.snapshot(),
                "network": network_info(), "gpus": list(self._gpus)}
