"""The sysinfo plugin in process: metrics, disk classification, hung/vanished mounts,
GPU probes with canned and fake tools, and session expiry."""
import collections
import json
import os
import socket
import stat
import threading
import time

import psutil
import pytest

from radical_orbit import registry
from radical_orbit.dotted import import_dotted
from radical_orbit.errors import Gone, NotFound
from radical_orbit.host import host_facts
from radical_orbit.plugin import PluginContext, Request
from radical_orbit.plugin_host import PluginHost
from radical_orbit.plugins.sysinfo import SysinfoPlugin, cpu, disks, gpus, system
from radical_orbit.plugins.sysinfo.commands import run_command

from orbit_procs import ManualClock, wait_for

Part = collections.namedtuple("Part", "device mountpoint fstype opts")
#: Small enough to keep the suite fast, large enough for a loaded CI machine.
SHORT_TIMEOUT = 0.3
#: Upper bound for calls that must not wait for a hung probe.
PROMPT = 2.0

NVIDIA_CSV = """\
0, NVIDIA A100-SXM4-40GB, 40960, 1024, 37
1, NVIDIA A100-SXM4-40GB, 40960, [N/A], [Not Supported]
"""

ROCM_JSON = """\
WARNING: AMD GPU device(s) is/are in a low-power state. Check power control/runtime_status

{"card0": {"GPU use (%)": "12", "VRAM Total Memory (B)": "68702699520",
           "VRAM Total Used Memory (B)": "10960896", "Card series": "AMD Instinct MI210",
           "Card model": "0x0c34", "Card vendor": "Advanced Micro Devices, Inc. [AMD/ATI]"},
 "card1": {"GPU use (%)": "0", "VRAM Total Memory (B)": "68702699520",
           "VRAM Total Used Memory (B)": "0", "Card Series": "N/A", "Card Model": "0x740f"},
 "system": {"Driver version": "6.2.4"}}
"""


def make_plugin(**attrs):
    plugin = SysinfoPlugin("sysinfo", PluginContext("ep1", "standalone", lambda *a: None))
    for key, value in attrs.items():
        setattr(plugin, key, value)
    return plugin


@pytest.fixture
def plugin():
    plugin = make_plugin()
    plugin.start()
    yield plugin
    plugin.stop()


@pytest.fixture
def host():
    host = PluginHost("ep1", "standalone", host_facts("standalone"), lambda *a: None)
    host.add("sysinfo", SysinfoPlugin)
    yield host
    host.stop()


def call(host, method, path):
    response = host.dispatch(Request(method, path))
    return response.status, json.loads(response.body)


def new_sid(plugin):
    return plugin.register_session(Request("POST", "register_session"))["sid"]


def fake_tool(tmp_path, monkeypatch, name, script):
    """An executable ``name`` first on PATH, running the shell ``script``."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    tool = bindir / name
    tool.write_text("#!/bin/sh\n" + script + "\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", "%s%s%s" % (bindir, os.pathsep, os.environ.get("PATH", "")))
    return tool


# -- routes --------------------------------------------------------------------
def test_metrics_shape_and_values(host):
    status, body = call(host, "POST", "sysinfo/register_session")
    assert status == 200
    status, metrics = call(host, "GET", "sysinfo/metrics/%s" % body["sid"])
    assert status == 200
    assert set(metrics) == {"system", "cpu", "memory", "disks", "network", "gpus"}
    system_ = metrics["system"]
    assert system_["hostname"] == socket.gethostname()
    assert system_["uptime"] > 0 and system_["boot_time"] > 0
    assert system_["kernel"] and system_["arch"] and system_["os"] and system_["user"]
    cpu_ = metrics["cpu"]
    assert cpu_["cores_logical"] >= 1
    assert cpu_["cores_physical"] is None or cpu_["cores_physical"] >= 1
    assert 0.0 <= cpu_["percent"] <= 100.0
    assert len(cpu_["percent_per_core"]) == cpu_["cores_logical"]
    assert all(0.0 <= p <= 100.0 for p in cpu_["percent_per_core"])
    assert len(cpu_["load"]) == 3
    assert isinstance(cpu_["model"], str)
    memory = metrics["memory"]
    assert memory["total"] > 0 and 0 < memory["available"] <= memory["total"]
    assert metrics["disks"], "at least one disk"
    for disk in metrics["disks"]:
        assert set(disk) == {"mount", "device", "fstype", "type", "total", "used", "free", "percent"}
        assert disk["type"] in ("shared", "local ssd", "local hdd", "unknown")
    assert any(nic["name"] for nic in metrics["network"])
    assert isinstance(metrics["gpus"], list)


def test_homedir_and_host_role(host):
    status, body = call(host, "GET", "sysinfo/homedir")
    assert status == 200 and body["homedir"] == os.path.expanduser("~")
    status, facts = call(host, "GET", "sysinfo/host_role")
    assert status == 200
    assert facts["role"] == "standalone"
    assert facts["hostname"] == socket.gethostname()
    assert facts["python_version"]


def test_unknown_session_is_404(host, plugin):
    status, body = call(host, "GET", "sysinfo/metrics/sysinfo.9999.deadbeef")
    assert status == 404 and body["error"] is True
    with pytest.raises(NotFound):
        plugin.get_session("sysinfo.9999.deadbeef")


def test_expired_session_is_410(host, plugin):
    sysinfo = host._plugins["sysinfo"]
    clock = sysinfo.clock = plugin.clock = ManualClock()
    _, body = call(host, "POST", "sysinfo/register_session")
    sid = new_sid(plugin)
    clock.advance(sysinfo.session_ttl + 1)
    status, _ = call(host, "GET", "sysinfo/metrics/%s" % body["sid"])
    assert status == 410
    with pytest.raises(Gone):
        plugin.get_session(sid)


def test_prefetch_thread_is_named_daemon_and_stops():
    plugin = make_plugin()
    plugin.start()
    thread = plugin._thread
    assert thread.daemon and thread.name.startswith("sysinfo-prefetch")
    started = time.monotonic()
    plugin.stop()
    assert not thread.is_alive()
    assert time.monotonic() - started < PROMPT


# -- CPU utilisation ---------------------------------------------------------------
Times = collections.namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def times(busy, idle, guest=0.0):
    """A per-core cpu_times record with ``busy`` s of user time (guest time is inside it)."""
    return Times(busy, 0.0, 0.0, idle, 0.0, 0.0, 0.0, 0.0, guest, 0.0)


def test_utilisation_total_and_per_core_from_deltas():
    before = [times(10, 10), times(10, 10)]
    after = [times(19, 11), times(10.5, 19.5, guest=1.0)]   # core 0: 90 % busy; core 1: 5 %
    figures = cpu.utilisation(before, after)
    assert figures["percent_per_core"] == [90.0, 5.0]
    assert figures["percent"] == 47.5
    assert cpu.utilisation(before, before) == {"percent": 0.0, "percent_per_core": [0.0, 0.0]}


def test_cpu_sampler_owns_the_counters_and_every_thread_reads_its_figures(monkeypatch):
    """Readers never touch the counters: eight threads get the one latest window, where
    ``psutil.cpu_percent`` would have given each thread its own (a first call says 0 %)."""
    samples = iter([[times(0, 0), times(0, 0)], [times(8, 2), times(3, 7)]])
    monkeypatch.setattr(cpu.psutil, "cpu_times", lambda percpu=False: next(samples))
    monkeypatch.setattr(cpu, "MIN_WINDOW", 0.0)
    sampler = cpu.CpuSampler()
    assert sampler.sample() is None            # one sample is no window yet
    expected = {"percent": 55.0, "percent_per_core": [80.0, 30.0]}
    assert sampler.sample() == expected
    readings = []
    threads = [threading.Thread(target=lambda: readings.append(sampler.latest())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROMPT)
    assert readings == [expected] * 8          # and no further sample was taken (none left)


def test_cpu_sampler_thread_publishes_and_stops():
    sampler = cpu.CpuSampler(interval=0.05, first_interval=0.05)
    sampler.start()
    try:
        figures = sampler.latest(wait=PROMPT)
        assert 0.0 <= figures["percent"] <= 100.0
        assert len(figures["percent_per_core"]) == psutil.cpu_count()
    finally:
        sampler.stop(PROMPT)
    assert not sampler._thread.is_alive()


#: The utilisation a busy core must show: well below 100, far above what the old
#: per-thread readings gave (11-27 %, and 0 % for a worker's first call).
BUSY_PERCENT = 60.0
#: Readings taken once the endpoint is up: more than its worker threads, so that every
#: worker answers at least one of them.
BUSY_READINGS = 12
BUSY_LOOP = "import time\nwhile True:\n    pass\n"


def test_metrics_show_busy_cores_busy_through_bridge_and_endpoint(orbit_plain):
    """N busy processes on N cores: every reading of ``metrics`` through a real bridge and
    endpoint, from the first one on, shows the machine and every core busy."""
    import subprocess
    import sys
    orbit = orbit_plain
    orbit.start_bridge("-p", "none")
    cores = psutil.cpu_count()
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(cores)]
    try:
        handles = [psutil.Process(proc.pid) for proc in busy]
        wait_for(lambda: all(h.cpu_times().user > 0.2 for h in handles), 30.0,
                 "the busy loops to be running")
        orbit.start_endpoint("ep", "-p", "sysinfo", timeout=60.0)
        sid = orbit.get("ep/sysinfo/register_session", "POST", timeout=30.0).json()["sid"]
        readings = []
        for _ in range(BUSY_READINGS):
            resp = orbit.get("ep/sysinfo/metrics/%s" % sid, timeout=30.0)
            assert resp.status_code == 200, resp.text
            readings.append(resp.json()["cpu"])
        for reading in readings:
            assert reading["percent"] > BUSY_PERCENT, readings
            assert len(reading["percent_per_core"]) == cores
            assert all(p > BUSY_PERCENT for p in reading["percent_per_core"]), readings
    finally:
        for proc in busy:
            proc.kill()
        for proc in busy:
            proc.wait(10)


# -- disk classification ---------------------------------------------------------
@pytest.mark.parametrize("fstype, device", [
    ("lustre", "10.0.0.1@o2ib:/scratch"), ("gpfs", "gpfs0"), ("nfs4", "nas:/home"),
    ("nfs", "nas:/proj"), ("beegfs", "beegfs_nodev"), ("dvs", "/lus/home"),
    ("ceph", "mon1:6789:/"), ("cephfs", "cephfs"), ("panfs", "panfs://realm"),
    ("wekafs", "default"), ("cifs", "//server/share"), ("fuse.sshfs", "user@host:/data"),
    ("fuse", "cvmfs2"), ("Lustre", "x"), ("weirdfs", "server:/export"),
])
def test_shared_filesystems(fstype, device, tmp_path):
    assert disks.classify_mount(fstype, device, str(tmp_path)) == "shared"


@pytest.fixture
def sys_block(tmp_path):
    """A fake /sys/class/block: sda (ssd, with sda1), sdb (hdd, with sdb1),
    dm-0 on sdb1 named vg-home, dm-1 on sda1 and sdb1, nvme0n1 without the flag, loop0."""
    devices, block = tmp_path / "devices", tmp_path / "class_block"
    block.mkdir()

    def disk(name, rotational=None, parts=(), slaves=()):
        path = devices / name
        (path / "queue").mkdir(parents=True)
        if rotational is not None:
            (path / "queue" / "rotational").write_text("%d\n" % rotational)
        if slaves:
            (path / "slaves").mkdir()
            for slave in slaves:
                (path / "slaves" / slave).symlink_to(block / slave)
        (block / name).symlink_to(path)
        for part in parts:
            (path / part).mkdir()
            (path / part / "partition").write_text("1\n")
            (block / part).symlink_to(path / part)
        return path

    disk("sda", 0, parts=("sda1",))
    disk("sdb", 1, parts=("sdb1",))
    (disk("dm-0", 0, slaves=("sdb1",)) / "dm").mkdir()
    (devices / "dm-0" / "dm" / "name").write_text("vg-home\n")
    disk("dm-1", 0, slaves=("sda1", "sdb1"))
    disk("nvme0n1")
    disk("loop0", 0)
    return str(block)


@pytest.mark.parametrize("device, expected", [
    ("/dev/sda", "local ssd"), ("/dev/sda1", "local ssd"), ("/dev/sdb", "local hdd"),
    ("/dev/sdb1", "local hdd"), ("/dev/dm-0", "local hdd"), ("/dev/mapper/vg-home", "local hdd"),
    ("/dev/dm-1", "local hdd"), ("/dev/nvme0n1", "unknown"), ("/dev/loop0", "unknown"),
    ("/dev/nonexistent9", "unknown"), ("tank/home", "unknown"), ("overlay", "unknown"),
])
def test_local_classification(sys_block, device, expected):
    assert disks.classify_mount("ext4", device, sys_block) == expected


@pytest.mark.parametrize("fstype, mount, shown", [
    ("ext4", "/", True), ("proc", "/proc", False), ("sysfs", "/sys", False),
    ("tmpfs", "/dev/shm", False), ("tmpfs", "/tmp", True), ("overlay", "/", True),
    ("overlay", "/var/lib/docker/overlay2/x/merged", False), ("squashfs", "/snap/x", False),
    ("nfs4", "/home", True), ("cgroup2", "/sys/fs/cgroup", False),
])
def test_which_mounts_are_shown(fstype, mount, shown):
    assert disks.is_shown(fstype, mount) is shown


def test_later_mount_hides_earlier(monkeypatch):
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: [
        Part("/dev/a", "/data", "ext4", ""), Part("nas:/d", "/data", "nfs4", "")])
    assert [p.fstype for p in disks.list_mounts()] == ["nfs4"]


# -- vanished and hung mounts -------------------------------------------------------
def real_root():
    return next(p for p in psutil.disk_partitions(all=True) if p.mountpoint == "/")


def test_vanished_mounts_are_skipped(monkeypatch, tmp_path):
    root = real_root()
    denied = tmp_path / "denied"
    denied.mkdir()
    parts = [root, Part("nas:/gone", str(tmp_path / "gone"), "nfs4", ""),
             Part("/dev/sdz1", str(denied), "ext4", "")]
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: parts)
    real_usage = psutil.disk_usage

    def usage(path):
        if path == str(denied):
            raise PermissionError(13, "Permission denied", path)
        return real_usage(path)

    monkeypatch.setattr(psutil, "disk_usage", usage)
    mounts = [disk["mount"] for disk in disks.DiskProbe().snapshot()]
    assert mounts == ["/"]


def test_hung_mount_is_skipped_within_timeout(monkeypatch, tmp_path):
    hung = tmp_path / "hung"
    hung.mkdir()
    release = threading.Event()
    real_usage = psutil.disk_usage

    def usage(path):
        if path == str(hung):
            release.wait(30)
        return real_usage(path)

    parts = [real_root(), Part("nas:/hung", str(hung), "nfs4", "")]
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: parts)
    monkeypatch.setattr(psutil, "disk_usage", usage)
    plugin = make_plugin()
    plugin.disks.timeout = SHORT_TIMEOUT
    sid = new_sid(plugin)
    try:
        for _ in range(2):
            started = time.monotonic()
            metrics = plugin.metrics(Request("GET", "metrics/" + sid), plugin.get_session(sid))
            assert time.monotonic() - started < PROMPT
            assert [disk["mount"] for disk in metrics["disks"]] == ["/"]
        assert plugin.disks.pending() == [str(hung)], "one stuck worker, not one per request"
    finally:
        release.set()
    workers = [t for t in threading.enumerate() if t.name == "sysinfo-statvfs"]
    for worker in workers:
        worker.join(PROMPT)
    assert plugin.disks.pending() == []


# -- GPUs ---------------------------------------------------------------------------
def test_parse_nvidia_smi():
    found = gpus.parse_nvidia_smi(NVIDIA_CSV + "\nNVIDIA-SMI has failed\n")
    assert found == [
        {"vendor": "nvidia", "index": 0, "name": "NVIDIA A100-SXM4-40GB",
         "memory_total": 40960 * 2**20, "memory_used": 1024 * 2**20, "utilization": 37.0},
        {"vendor": "nvidia", "index": 1, "name": "NVIDIA A100-SXM4-40GB",
         "memory_total": 40960 * 2**20, "memory_used": None, "utilization": None},
    ]
    assert gpus.parse_nvidia_smi("0, Quadro, Max, 8192, 10, 5")[0]["name"] == "Quadro, Max"
    assert gpus.parse_nvidia_smi("") == []


def test_parse_rocm_smi():
    found = gpus.parse_rocm_smi(ROCM_JSON)
    assert found == [
        {"vendor": "amd", "index": 0, "name": "AMD Instinct MI210", "memory_total": 68702699520,
         "memory_used": 10960896, "utilization": 12.0},
        {"vendor": "amd", "index": 1, "name": "0x740f", "memory_total": 68702699520,
         "memory_used": 0, "utilization": 0.0},
    ]
    assert gpus.parse_rocm_smi("rocm-smi: no GPUs found") == []
    assert gpus.parse_rocm_smi("{not json}") == []


def test_intel_gpus_from_sysfs(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    drm, drivers = tmp_path / "drm", tmp_path / "drivers"
    for driver in ("i915", "nvidia"):
        (drivers / driver).mkdir(parents=True)

    def card(name, vendor, driver, device="0x56c0"):
        pci = tmp_path / "pci" / name
        pci.mkdir(parents=True)
        (pci / "vendor").write_text(vendor + "\n")
        (pci / "device").write_text(device + "\n")
        (pci / "driver").symlink_to(drivers / driver)
        (drm / name).mkdir(parents=True)
        (drm / name / "device").symlink_to(pci)
        return drm / name

    intel = card("card1", "0x8086", "i915")
    (intel / "lmem_total_bytes").write_text("17179869184\n")
    (intel / "lmem_avail_bytes").write_text("17179869000\n")
    card("card0", "0x10de", "nvidia")
    (drm / "card1-DP-1").mkdir()
    found = gpus.probe_intel(str(drm), timeout=SHORT_TIMEOUT)
    assert found == [{"vendor": "intel", "index": 0, "name": "Intel GPU [8086:56c0]",
                      "memory_total": 17179869184, "memory_used": 184, "utilization": None}]
    assert gpus.probe_intel(str(tmp_path / "nowhere")) == []


def test_fake_nvidia_smi_is_found(tmp_path, monkeypatch):
    fake_tool(tmp_path, monkeypatch, "nvidia-smi", "cat <<'EOF'\n%sEOF" % NVIDIA_CSV)
    assert [gpu["index"] for gpu in gpus.probe_nvidia(timeout=PROMPT)] == [0, 1]
    plugin = make_plugin(first_probe_wait=PROMPT)
    plugin.start()
    try:
        metrics = plugin.metrics(Request("GET", "metrics"), None)
    finally:
        plugin.stop()
    nvidia = [gpu for gpu in metrics["gpus"] if gpu["vendor"] == "nvidia"]
    assert [gpu["name"] for gpu in nvidia] == ["NVIDIA A100-SXM4-40GB"] * 2


def test_failing_nvidia_smi_means_no_gpus(tmp_path, monkeypatch):
    fake_tool(tmp_path, monkeypatch, "nvidia-smi", "echo 'NVIDIA-SMI has failed'; exit 9")
    assert gpus.probe_nvidia(timeout=PROMPT) == []


def test_hanging_nvidia_smi_is_killed(tmp_path, monkeypatch):
    """The tool's child (sleep) holds the output pipe: the whole group must be killed."""
    fake_tool(tmp_path, monkeypatch, "nvidia-smi", "sleep 30\necho '0, Late, 1, 1, 1'")
    started = time.monotonic()
    assert gpus.probe_nvidia(timeout=SHORT_TIMEOUT) == []
    assert time.monotonic() - started < PROMPT
    plugin = make_plugin(probe_timeout=SHORT_TIMEOUT, first_probe_wait=SHORT_TIMEOUT)
    plugin.start()
    try:
        started = time.monotonic()
        metrics = plugin.metrics(Request("GET", "metrics"), None)
        assert time.monotonic() - started < PROMPT
        assert not [gpu for gpu in metrics["gpus"] if gpu["vendor"] == "nvidia"]
    finally:
        plugin.stop()


def test_missing_tool_is_none(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert run_command(["nvidia-smi"]) is None
    assert gpus.probe_gpus(timeout=SHORT_TIMEOUT) == gpus.probe_intel()


# -- static facts -------------------------------------------------------------------
@pytest.mark.parametrize("cpuinfo, model", [
    ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6148\n",
     "Intel(R) Xeon(R) Gold 6148"),
    ("processor\t: 0\ncpu\t\t: POWER9 (raw), altivec supported\n", "POWER9 (raw), altivec supported"),
    ("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n", ""),
])
def test_cpu_model_from_cpuinfo(cpuinfo, model):
    assert system.cpu_model_from_cpuinfo(cpuinfo) == model


def test_cpu_model_from_lscpu_and_os_release():
    lscpu = "Architecture: aarch64\nModel name:   Neoverse-V2\n"
    assert system.cpu_model_from_lscpu(lscpu) == "Neoverse-V2"
    rocky = 'NAME="Rocky Linux"\nPRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\n'
    assert system.os_release_name(rocky) == "Rocky Linux 9.3 (Blue Onyx)"
    assert system.os_release_name('NAME="SLES"\nVERSION="15-SP5"\n') == "SLES 15-SP5"


# -- client -------------------------------------------------------------------------
def test_client_paths():
    client_module = pytest.importorskip("radical_orbit.plugins.sysinfo_client")

    class Recorder(client_module.SysinfoClient):
        sid = "sysinfo.0001.abcdef12"

        def __init__(self):
            self.paths = []

        def get(self, path, params=None):
            self.paths.append(path)
            return {"homedir": "/home/u", "role": "login"}

    client = Recorder()
    assert client.homedir() == "/home/u"
    assert client.host_role()["role"] == "login"
    client.get_metrics()
    assert client.paths == ["homedir", "host_role", "metrics/sysinfo.0001.abcdef12"]
    descriptor = registry.available()["sysinfo"]
    assert descriptor.client_class == "%s.SysinfoClient" % client_module.__name__
    assert import_dotted(descriptor.client_class) is client_module.SysinfoClient
    assert import_dotted(descriptor.target) is SysinfoPlugin
