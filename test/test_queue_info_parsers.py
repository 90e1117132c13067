"""queue_info against captured scheduler output: SLURM 22.05 (captured on the test cluster,
where scontrol and sacctmgr have no --json), 23.11 and 24.05 JSON shapes, and PBS Pro's
qstat -Qf / -Bf, qstat -f -F json and pbsnodes -a text. The backends run against a runner
that replays the fixtures, so each command form and its fallback is exercised."""
import os
import threading
import time

import pytest

from orbit_procs import wait_for
from radical_orbit.errors import BadRequest, Conflict, Forbidden, NotFound
from radical_orbit.plugin import PluginContext, Request
from radical_orbit.plugins.queue_info import values, views
from radical_orbit.plugins.queue_info.cache import Cache
from radical_orbit.plugins.queue_info.commands import (Commands, NotInstalled, Result, SchedulerError,
                                                      SchedulerTimeout, run_command)
from radical_orbit.plugins.queue_info.pbs import PbsBackend
from radical_orbit.plugins.queue_info.plugin import QueueInfoPlugin
from radical_orbit.plugins.queue_info.slurm import SlurmBackend
from radical_orbit.plugins.queue_info.slurm_parse import ASSOC_FORMAT, SQUEUE_FORMAT, SSHARE_FORMAT

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "queue_info")
UNRECOGNIZED = "%s: unrecognized option '--json'\nTry \"%s --help\" for more information\n"


def fixture(version, name):
    with open(os.path.join(FIXTURES, version, name)) as handle:
        return handle.read()


class Replay:
    """A command runner that answers from a table: ``" ".join(argv) -> Result``; anything
    else fails the test. Records what was run."""

    def __init__(self, table):
        self.table = table
        self.ran = []

    def __call__(self, argv, timeout):
        key = " ".join(argv)
        self.ran.append(key)
        assert key in self.table, "unexpected command: %s" % key
        answer = self.table[key]
        return answer() if callable(answer) else answer


def ok(text):
    return Result(0, text, "")


def fail(stderr, rc=1):
    return Result(rc, "", stderr)


SQUEUE_O = "squeue -h -a -o " + SQUEUE_FORMAT
SACCTMGR_P = "sacctmgr -n -P show assoc format=" + ASSOC_FORMAT
SSHARE = "sshare -n -P -a -o " + SSHARE_FORMAT


def slurm_22_05():
    v = "slurm-22.05"
    return {
        "scontrol show partition --json": fail(UNRECOGNIZED % ("scontrol", "scontrol")),
        "scontrol show partition -o": ok(fixture(v, "scontrol_partition.txt")),
        "scontrol show node --json": fail(UNRECOGNIZED % ("scontrol", "scontrol")),
        "sinfo --json": ok(fixture(v, "sinfo.json")),
        "scontrol show node -o": ok(fixture(v, "scontrol_node.txt")),
        "squeue --json": ok(fixture(v, "squeue.json")),
        SQUEUE_O: ok(fixture(v, "squeue_o.txt")),
        "sacctmgr show assoc --json": fail(UNRECOGNIZED % ("sacctmgr", "sacctmgr")),
        SACCTMGR_P: ok(fixture(v, "sacctmgr_P.txt")),
        SSHARE: ok(fixture(v, "sshare_P.txt")),
        "sinfo -h -o %P": ok(fixture(v, "sinfo_P.txt")),
    }


def slurm_json(version):
    return {
        "scontrol show partition --json": ok(fixture(version, "scontrol_partition.json")),
        "scontrol show node --json": ok(fixture(version, "scontrol_node.json")),
        "squeue --json": ok(fixture(version, "squeue.json")),
        "sacctmgr show assoc --json": ok(fixture(version, "sacctmgr_assoc.json")),
        SSHARE: ok(fixture(version, "sshare_P.txt")),
        "sinfo -h -o %P": ok(fixture(version, "sinfo_P.txt")),
    }


def pbs_table():
    v = "pbspro-2022.1"
    return {
        "qstat -Qf": ok(fixture(v, "qstat_Qf.txt")),
        "qstat -Bf": ok(fixture(v, "qstat_Bf.txt")),
        "pbsnodes -a": ok(fixture(v, "pbsnodes_a.txt")),
        "qstat -f -F json": ok(fixture(v, "qstat_f_json.json")),
    }


def by_name(records, key="name"):
    return {r[key]: r for r in records}


# -- SLURM 22.05, captured on the test cluster -------------------------------------------
def test_slurm_22_05_falls_back_per_command():
    runner = Replay(slurm_22_05())
    backend = SlurmBackend(Commands(runner))
    parts = by_name(backend.partitions())
    assert parts["debug"]["default"] is True and parts["batch"]["default"] is False
    assert parts["debug"]["time_limit_s"] is None                     # MaxTime=UNLIMITED
    assert parts["batch"]["time_limit_s"] == 3600 and parts["batch"]["default_time_s"] == 600
    nodes = backend.nodes()
    assert [n["name"] for n in nodes] == ["vm"]
    assert nodes[0]["partitions"] == ["debug", "batch"] and nodes[0]["available"]
    assert nodes[0]["cpus"] == 2 and nodes[0]["memory_mb"] > 0
    jobs = by_name(backend.jobs(), "job_id")
    # squeue --json of 22.05 lists the finished jobs too (and ignores -t): only live ones remain
    assert sorted(jobs) == ["10", "11", "12"]
    assert jobs["10"]["name"] == "sim|run-1" and jobs["10"]["state"] == "RUNNING"
    assert jobs["10"]["time_limit_s"] == 1200 and jobs["10"]["partition"] == "batch"
    assert jobs["10"]["account"] == "testacct" and jobs["10"]["node_list"] == "vm"
    assert jobs["11"]["state"] == "PENDING" and jobs["11"]["reason"] == "Resources"
    assert jobs["11"]["time_limit_s"] is None and jobs["11"]["start_time"] is None
    assocs = backend.associations()
    assert {(a["account"], a["user"]) for a in assocs if a["user"]} == {("root", "root"), ("testacct", "root")}
    assert all(a["qos"] == ["normal"] for a in assocs)
    # each kind settled on its own form: text for scontrol and sacctmgr, sinfo's JSON for
    # nodes, squeue's JSON for jobs; the second round asks only for those
    assert backend.commands._form == {"partitions": 1, "nodes": 1, "jobs": 0, "associations": 1}
    runner.ran.clear()
    backend.partitions(), backend.nodes(), backend.jobs()
    assert runner.ran == ["scontrol show partition -o", "sinfo --json", "squeue --json"]


def test_slurm_22_05_text_forms():
    from radical_orbit.plugins.queue_info import slurm_parse as parse
    jobs = by_name(parse.jobs_text(fixture("slurm-22.05", "squeue_o.txt")), "job_id")
    assert jobs["10"]["name"] == "sim|run-1"             # the name may hold the separator
    assert jobs["10"]["time_limit_s"] == 1200 and jobs["10"]["time_used_s"] == 1
    assert jobs["10"]["start_time"] == int(time.mktime(time.strptime("2026-12-01T01:58:19", "%Y-%m-%dT%H:%M:%S")))
    assert jobs["11"]["start_time"] is None and jobs["11"]["time_limit_s"] is None
    assert jobs["12"]["reason"] == "Priority" and jobs["12"]["cpus"] == 2
    node = parse.nodes_text(fixture("slurm-22.05", "scontrol_node.txt"))[0]
    assert node["name"] == "vm" and node["partitions"] == ["debug", "batch"] and node["gpus"] == 0
    assert parse.nodes_json(fixture("slurm-22.05", "sinfo.json"))[0]["cpus"] == node["cpus"]


# -- SLURM 23.11 and 24.05 JSON ----------------------------------------------------------
@pytest.mark.parametrize("version,gpu_type,gpus", [("slurm-23.11", "a100", (4, 4)), ("slurm-24.05", "mi250", (8, 8))])
def test_slurm_json_shapes(version, gpu_type, gpus):
    backend = SlurmBackend(Commands(Replay(slurm_json(version))))
    parts = by_name(backend.partitions())
    # the JSON does not mark the default partition; sinfo's * does
    assert [p for p in parts if parts[p]["default"]] == ["regular"]
    assert parts["regular"]["time_limit_s"] == 2880 * 60 and parts["regular"]["default_time_s"] == 1800
    assert parts["gpu"]["max_nodes"] == 2 and parts["admin"]["time_limit_s"] is None
    assert parts["admin"]["allow_accounts"] == ["staff"]
    nodes = by_name(backend.nodes())
    assert nodes["cpu001"]["idle"] and nodes["cpu001"]["available"]
    assert nodes["cpu002"]["available"] and not nodes["cpu002"]["idle"]
    assert not nodes["cpu003"]["available"] and nodes["cpu003"]["reason"] == "bad DIMM"      # DRAIN
    assert not nodes["cpu004"]["available"]                                                   # POWERED_DOWN
    assert not nodes["gpu02"]["available"] and "NOT_RESPONDING" in nodes["gpu02"]["states"]   # DOWN
    assert (nodes["gpu01"]["gpus"], nodes["gpu02"]["gpus"]) == gpus
    assert nodes["gpu01"]["gpu_types"] == [gpu_type] and nodes["gpu02"]["gpu_types"] == []
    assert nodes["gpu01"]["features"] == ["gpu", gpu_type] and nodes["gpu01"]["memory_free_mb"] == 100000
    jobs = by_name(backend.jobs(), "job_id")
    assert sorted(jobs) == ["4101", "4102", "4103", "4104", "4107"]                           # not COMPLETED 4105
    assert jobs["4102"]["name"] == "train|v2" and jobs["4102"]["time_limit_s"] == 36000
    assert jobs["4102"]["cpus"] == 32 and jobs["4102"]["nodes"] == 1 and jobs["4102"]["priority"] == 20500
    assert jobs["4102"]["start_time"] == 1796086005 and jobs["4102"]["qos"] == "gpu_regular"
    assert jobs["4103"]["start_time"] is None and jobs["4103"]["reason"] == "Resources"
    assocs = {(a["account"], a["user"]): a for a in backend.associations()}
    alice = assocs[("m1234", "alice")]
    assert alice["qos"] == ["regular", "debug"] and alice["default_qos"] == "regular"
    assert alice["max_jobs"] == 50 and alice["max_submit"] == 200 and alice["max_wall_s"] == 2880 * 60
    assert alice["max_tres_per_job"] == "cpu=1024" and alice["fairshare"] == 0.8125
    assert assocs[("m1234_g", "alice")]["grp_tres"] == "gres/gpu=64"
    assert assocs[("m1234_g", "alice")]["partition"] == "gpu"
    assert backend.commands._form == {"partitions": 0, "nodes": 0, "jobs": 0, "associations": 0}

    queues = views.queues(backend.partitions(), backend.nodes(), "alice", set(), {"m1234", "m1234_g"}, False)
    assert sorted(queues) == ["debug", "gpu", "regular"]           # admin allows account staff only
    assert queues["regular"]["nodes"] == {"total": 4, "available": 2, "idle": 1}
    assert queues["gpu"]["nodes"] == {"total": 2, "available": 1, "idle": 0}
    assert queues["gpu"]["gpus_per_node"] == gpus[0] and queues["gpu"]["gpu_types"] == [gpu_type]
    assert queues["regular"]["cpus_per_node"] == 128 and queues["regular"]["memory_per_node_mb"] == 257000
    everything = views.queues(backend.partitions(), backend.nodes(), "alice", set(), {"m1234"}, True)
    assert everything["admin"]["usable"] is False and everything["regular"]["usable"] is True
    staff = views.queues(backend.partitions(), backend.nodes(), "carol", set(), {"staff"}, False)
    assert "admin" in staff


# -- PBS Pro -----------------------------------------------------------------------------
def test_pbs_queues_nodes_and_jobs():
    backend = PbsBackend(Commands(Replay(pbs_table())))
    queues = by_name(backend.partitions())
    assert [q for q in queues if queues[q]["default"]] == ["workq"]
    assert queues["workq"]["time_limit_s"] == 86400 and queues["workq"]["default_time_s"] == 3600
    assert queues["gpu"]["allow_groups"] == ["gpuusers", "staff"] and queues["gpu"]["max_nodes"] == 2
    # a long ACL continues on a tab-indented line
    assert queues["special"]["allow_users"][-1] == "heidi"
    assert queues["maint"]["state"] == "DOWN" and queues["workq"]["state"] == "UP"
    nodes = by_name(backend.nodes())
    assert nodes["node01"]["states"] == ["ALLOCATED"] and nodes["node01"]["available"]
    assert nodes["node02"]["idle"] and not nodes["node03"]["available"]
    assert nodes["node03"]["reason"] == "node down: communication closed"
    assert nodes["gpu01"]["states"] == ["MIXED"] and nodes["gpu01"]["gpus"] == 4
    assert nodes["gpu01"]["gpu_types"] == ["a100"] and nodes["gpu01"]["memory_mb"] == 515584
    # gpu nodes are dedicated to queue gpu; the others serve the queues without dedicated nodes
    assert nodes["gpu01"]["partitions"] == ["gpu"]
    assert nodes["node01"]["partitions"] == ["workq", "special", "maint"]
    jobs = by_name(backend.jobs(), "job_id")
    assert sorted(jobs) == ["1001.pbs01", "1002.pbs01", "1003.pbs01", "1004.pbs01"]        # not F
    run = jobs["1001.pbs01"]
    assert (run["state"], run["user"], run["account"], run["partition"]) == ("RUNNING", "alice", "proj-wrf", "workq")
    assert run["node_list"] == "node01" and run["time_limit_s"] == 14400 and run["time_used_s"] == 390
    assert run["cpus"] == 8 and run["nodes"] == 1
    assert jobs["1003.pbs01"]["state"] == "PENDING" and "Insufficient" in jobs["1003.pbs01"]["reason"]
    assert jobs["1004.pbs01"]["reason"] == "held"
    assert backend.associations() == []
    found = views.queues(backend.partitions(), backend.nodes(), "alice", {"alice"}, None, False)
    assert sorted(found) == ["maint", "workq"]                  # gpu needs a group, special a user
    assert found["workq"]["nodes"] == {"total": 3, "available": 2, "idle": 1}


def test_pbs_cancel_errors_carry_qdel_message():
    table = {"qdel 9999.pbs01": fail(fixture("pbspro-2022.1", "qdel_unknown.err"), 153),
             "qdel 1002.pbs01": fail(fixture("pbspro-2022.1", "qdel_unauthorized.err"), 159),
             "qdel 1001.pbs01": ok("")}
    backend = PbsBackend(Commands(Replay(table)))
    with pytest.raises(NotFound, match="Unknown Job Id 9999.pbs01"):
        backend.cancel("9999.pbs01")
    with pytest.raises(Forbidden, match="Unauthorized Request"):
        backend.cancel("1002.pbs01")
    assert backend.cancel("1001.pbs01")["cancelled"] is True
    with pytest.raises(BadRequest):
        backend.cancel("1001; rm -rf /")


def test_pbs_jobs_fall_back_to_text_without_json():
    text = ("Job Id: 77.pbs01\n    Job_Name = old-pbs\n    Job_Owner = carol@login1\n    job_state = R\n"
            "    queue = workq\n    Resource_List.ncpus = 4\n    Resource_List.nodect = 1\n"
            "    Resource_List.walltime = 02:00:00\n    resources_used.walltime = 00:01:00\n"
            "    exec_host = node02/0*4\n    stime = Mon Nov 30 21:10:44 2026\n\n")
    backend = PbsBackend(Commands(Replay({"qstat -f -F json": fail("qstat: invalid option -- 'F'", 2),
                                          "qstat -f": ok(text)})))
    job = backend.jobs()[0]
    assert (job["job_id"], job["name"], job["user"], job["state"]) == ("77.pbs01", "old-pbs", "carol", "RUNNING")
    assert job["node_list"] == "node02" and job["time_limit_s"] == 7200


# -- cancel, errors, allocation ------------------------------------------------------------
def test_slurm_cancel_checks_the_job_first():
    states = {"1": "RUNNING\n", "2": "COMPLETED\n"}

    def squeue(job_id):
        if job_id in states:
            return ok(states[job_id])
        return fail("slurm_load_jobs error: Invalid job id specified\n")
    table = {"squeue -h -t all -j %s -o %%T" % j: squeue(j) for j in ("1", "2", "3", "4")}
    table["scancel 1"] = ok("")
    states["4"] = "PENDING\n"
    table["squeue -h -t all -j 4 -o %T"] = ok("PENDING\n")
    table["scancel 4"] = fail("scancel: error: Kill job error on job id 4: Access/permission denied\n")
    backend = SlurmBackend(Commands(Replay(table)))
    assert backend.cancel("1") == {"job_id": "1", "cancelled": True, "previous_state": "RUNNING"}
    with pytest.raises(Conflict, match="COMPLETED"):
        backend.cancel("2")
    with pytest.raises(NotFound, match="Invalid job id specified"):
        backend.cancel("3")
    with pytest.raises(Forbidden, match="Access/permission denied"):
        backend.cancel("4")
    for bad in ("", "12a", "1 2", "-1", "1;id", "123\n", "\u0661\u0662", "1_\u0661", "--help"):
        with pytest.raises(BadRequest):
            backend.cancel(bad)


def test_job_ids_are_ascii_digits_without_a_trailing_newline():
    """``$`` matched before a final newline and ``\\d`` took any script's digits: such ids
    reached squeue/qdel's argv instead of getting a 400."""
    for backend in (SlurmBackend(), PbsBackend()):
        for bad in ("123\n", "\u0661\u0662", "12\n.server", "1[\u0663]", "\uff11"):
            assert not backend.valid_job_id(bad), (backend.name, bad)
        assert backend.valid_job_id("123")
    assert PbsBackend().valid_job_id("1234[7].pbs01") and SlurmBackend().valid_job_id("123_4")


def test_scheduler_failure_keeps_its_own_message():
    message = "slurm_load_partitions: Unable to contact slurm controller (connect failure)"
    backend = SlurmBackend(Commands(Replay({"scontrol show partition --json": fail(message)})))
    with pytest.raises(SchedulerError) as info:
        backend.partitions()
    assert info.value.status_code == 502 and message in info.value.detail


def test_job_allocation_from_the_environment(tmp_path):
    env = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "nid[001-003,010]", "SLURM_JOB_NUM_NODES": "4",
           "SLURM_CPUS_ON_NODE": "128", "SLURM_GPUS_ON_NODE": "4", "SLURM_JOB_PARTITION": "gpu",
           "SLURM_JOB_ACCOUNT": "m1234", "SLURM_JOB_NAME": "orbit"}
    alloc = SlurmBackend().job_allocation(env)
    assert alloc["nodes"] == ["nid001", "nid002", "nid003", "nid010"] and alloc["node_count"] == 4
    assert (alloc["cpus_per_node"], alloc["gpus_per_node"], alloc["partition"]) == (128, 4, "gpu")
    assert SlurmBackend().job_allocation({}) is None
    nodefile = tmp_path / "nodes"
    nodefile.write_text("n1\nn1\nn2\nn2\n")
    alloc = PbsBackend().job_allocation({"PBS_JOBID": "9.pbs01", "PBS_NODEFILE": str(nodefile), "NCPUS": "2",
                                         "PBS_QUEUE": "workq"})
    assert alloc["nodes"] == ["n1", "n2"] and alloc["node_count"] == 2 and alloc["partition"] == "workq"


# -- the plugin over a replayed scheduler ------------------------------------------------
class ReplayedPlugin(QueueInfoPlugin):
    runner = staticmethod(Replay(slurm_json("slurm-23.11")))


def call(plugin, route, *args, **query):
    req = Request("GET", route, {k: [v] for k, v in query.items()})
    return getattr(plugin, route)(req, *args)


def test_plugin_routes_over_replayed_slurm():
    plugin = ReplayedPlugin("queue_info", PluginContext("ep", "login", lambda *a: None,
                                                        config={"backend": "slurm", "prefetch": False}))
    plugin.me = "alice"
    sid = plugin.register_session(Request("POST", "register_session"))["sid"]
    session = plugin.get_session(sid)
    info = call(plugin, "get_info", session)
    assert info["backend"] == "slurm" and info["user"] == "alice"
    assert sorted(info["queues"]) == ["debug", "gpu", "regular"]
    assert sorted(call(plugin, "get_info", session, user="*")["queues"]) == ["admin", "debug", "gpu", "regular"]
    mine = call(plugin, "list_jobs", session, "regular")["jobs"]
    assert [j["job_id"] for j in mine] == ["4101", "4103"]
    everyone = call(plugin, "list_jobs", session, "regular", user="*")["jobs"]
    assert [j["job_id"] for j in everyone] == ["4101", "4103", "4104"]
    assert len(call(plugin, "list_all_jobs", session)["jobs"]) == 4
    assert [j["user"] for j in call(plugin, "list_all_jobs", session, user="bob")["jobs"]] == ["bob"]
    allocations = call(plugin, "list_allocations", session)["allocations"]
    assert sorted(a["account"] for a in allocations) == ["m1234", "m1234_g"]
    assert len(call(plugin, "list_allocations", session, user="*")["allocations"]) == 3
    with pytest.raises(NotFound, match="no queue 'nosuch'"):
        call(plugin, "list_jobs", session, "nosuch")
    with pytest.raises(BadRequest):
        call(plugin, "get_info", session, user="a b")
    with pytest.raises(BadRequest):
        call(plugin, "get_info", session, force="maybe")
    # served from the cache: no command runs again until forced
    runner = ReplayedPlugin.runner
    runner.ran.clear()
    call(plugin, "get_info", session)
    call(plugin, "list_all_jobs", session)
    assert runner.ran == []
    call(plugin, "list_all_jobs", session, force="true")
    assert runner.ran == ["squeue --json"]
    nodes = call(plugin, "nodelist")["nodes"]
    assert len(nodes) == 6
    plugin.stop()


def test_plugin_refuses_a_bad_config():
    for config in ({"backend": "lsf"}, {"cache_ttl": 0}, {"command_timeout": "1"}, {"nosuch": 1},
                   {"command_timeout": float("nan")}, {"cache_ttl": float("inf")}):
        with pytest.raises(ValueError):
            QueueInfoPlugin("queue_info", PluginContext("ep", "login", lambda *a: None, config=config))


def test_none_backend_answers_empty():
    plugin = QueueInfoPlugin("queue_info", PluginContext("ep", "standalone", lambda *a: None,
                                                         config={"backend": "none"}))
    plugin.start()
    sid = plugin.register_session(Request("POST", "register_session"))["sid"]
    session = plugin.get_session(sid)
    assert call(plugin, "get_info", session)["queues"] == {}
    assert call(plugin, "list_all_jobs", session)["jobs"] == []
    assert call(plugin, "list_allocations", session)["allocations"] == []
    assert call(plugin, "job_allocation")["allocation"] is None
    with pytest.raises(NotFound):
        plugin.cancel(Request("POST", "cancel"), session, "1")
    plugin.stop()


# -- commands and cache --------------------------------------------------------------------
def test_commands_time_out_and_name_missing_tools():
    start = time.monotonic()
    with pytest.raises(SchedulerTimeout, match="did not answer within"):
        run_command(["sleep", "20"], timeout=0.3)
    assert time.monotonic() - start < 5
    with pytest.raises(NotInstalled, match="not installed"):
        run_command(["no-such-scheduler-command"])


def test_cache_serves_within_ttl_refetches_when_forced_and_fetches_once_for_many():
    now = [100.0]
    cache = Cache(ttl=60, clock=lambda: now[0])
    calls = []
    assert cache.get("k", lambda: calls.append(1) or len(calls))[0] == 1
    assert cache.get("k", lambda: calls.append(1) or len(calls))[0] == 1
    now[0] += 61
    assert cache.get("k", lambda: calls.append(1) or len(calls))[0] == 2
    now[0] += 1
    assert cache.get("k", lambda: calls.append(1) or len(calls), force=True)[0] == 3
    # a fetch that fails is not cached
    with pytest.raises(SchedulerError):
        cache.get("bad", lambda: (_ for _ in ()).throw(SchedulerError("down")))
    assert cache.get("bad", lambda: "up")[0] == "up"



def test_requests_during_a_fetch_wait_for_it_and_the_command_runs_once(tmp_path):
    """Single flight, asserted without a head start: a fake scheduler command counts its runs
    and blocks on a fifo; the fifo is released only once the four other requests are seen
    waiting on the fetch's lock (a cache that let them through would run the command again,
    one that did not hold them would never get there: both fail)."""
    waiting = [0]
    counter = threading.Lock()

    class SeenLock:
        """The cache's lock for one kind, counting the requests that had to wait on it."""

        def __init__(self):
            self._lock = threading.Lock()

        def __enter__(self):
            if not self._lock.acquire(blocking=False):
                with counter:
                    waiting[0] += 1
                self._lock.acquire()
            return self

        def __exit__(self, *exc):
            self._lock.release()

    runs, fifo = tmp_path / "runs", tmp_path / "gate"
    os.mkfifo(str(fifo))
    fake = tmp_path / "sinfo"
    fake.write_text("#!/bin/sh\necho run >> %s\nread line < %s\necho \"$line\"\n" % (runs, fifo))
    fake.chmod(0o755)
    slow = Cache(ttl=60)
    slow._locks["s"] = SeenLock()
    answers = []

    def ask():
        answers.append(slow.get("s", lambda: run_command([str(fake)], timeout=10).stdout)[0])
    threads = [threading.Thread(target=ask) for _ in range(5)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: runs.exists() and waiting[0] == 4, 20, "four requests waiting on the one fetch")
    finally:
        wait_for(lambda: _open_writer(str(fifo)), 20, "the fake command to read its fifo")
    for t in threads:
        t.join(10)
    assert runs.read_text().count("run") == 1
    assert answers == ["answer\n"] * 5


def _open_writer(fifo: str) -> bool:
    """Write the answer to a reader of ``fifo``; False while none has it open."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    os.write(fd, b"answer\n")
    os.close(fd)
    return True


def test_values():
    assert values.gres_gpus("gpu:8(S:0-7)") == {"count": 8, "types": []}
    assert values.gres_gpus("gpu:mi250:4") == {"count": 4, "types": ["mi250"]}
    assert values.gres_gpus("gpu:a100:2(S:0,1),gpu:v100:1,nvme:1") == {"count": 3, "types": ["a100", "v100"]}
    assert values.gres_gpus("(null)")["count"] == 0
    assert values.node_states("down*") == {"DOWN", "NOT_RESPONDING"}
    assert values.node_states("idle~") == {"IDLE", "POWERED_DOWN"}
    assert values.node_states("MIXED+DRAIN") >= {"DRAINING"}
    for state in ("DOWN", "IDLE+DRAIN", "MIXED+MAINT", "FAIL", "IDLE+POWERED_DOWN", "IDLE*"):
        assert not values.available(values.node_states(state)), state
    assert values.available(values.node_states("MIXED")) and values.idle(values.node_states("IDLE"))
    assert values.duration_s("1-00:00:00") == 86400 and values.duration_s("30") == 1800
    assert values.duration_s("UNLIMITED") is None and values.duration_s("N/A") is None
    assert values.number({"set": True, "infinite": False, "number": 5}) == 5
    assert values.number({"set": False, "infinite": False, "number": 0}) is None
    assert values.number({"set": True, "infinite": True, "number": 0}) is None
    assert values.expand_hostlist("a[01-02]b[1-2],c") == ["a01b1", "a01b2", "a02b1", "a02b2", "c"]


def test_without_accounting_get_info_still_answers_and_allocations_say_why():
    table = slurm_22_05()
    disabled = "sacctmgr: error: Slurm accounting storage is disabled\n"
    table["sacctmgr -n -P show assoc format=" + ASSOC_FORMAT] = fail(disabled)

    class NoAccounting(QueueInfoPlugin):
        runner = staticmethod(Replay(table))
    plugin = NoAccounting("queue_info", PluginContext("ep", "login", lambda *a: None,
                                                      config={"backend": "slurm", "prefetch": False}))
    sid = plugin.register_session(Request("POST", "register_session"))["sid"]
    session = plugin.get_session(sid)
    assert sorted(call(plugin, "get_info", session)["queues"]) == ["batch", "debug"]
    NoAccounting.runner.ran.clear()
    call(plugin, "get_info", session)
    assert NoAccounting.runner.ran == []          # the failure is remembered for a TTL too
    with pytest.raises(SchedulerError, match="accounting storage is disabled"):
        call(plugin, "list_allocations", session)
    plugin.stop()


def test_loading_prefetches_everything_in_the_background():
    class Prefetching(QueueInfoPlugin):
        runner = staticmethod(Replay(slurm_json("slurm-24.05")))
    plugin = Prefetching("queue_info", PluginContext("ep", "login", lambda *a: None, config={"backend": "slurm"}))
    plugin.start()
    try:
        from orbit_procs import wait_for
        wait_for(lambda: all(plugin.cache.peek(kind) is not None
                             for kind in ("partitions", "nodes", "jobs", "associations")), 10, "the prefetch")
        Prefetching.runner.ran.clear()
        sid = plugin.register_session(Request("POST", "register_session"))["sid"]
        assert "gpu" in call(plugin, "get_info", plugin.get_session(sid), user="*")["queues"]
        assert Prefetching.runner.ran == []            # the first page came from memory
    finally:
        plugin.stop()


def test_user_query_with_a_newline_inside_is_refused():
    """``$`` matched before a final newline; the value is stripped first, but the pattern
    itself must not rely on that."""
    from radical_orbit.plugins.queue_info.plugin import USER_RE
    assert USER_RE.match("bob") and USER_RE.match("*")
    for bad in ("bob\n", "*\n", "-u", "--help", "\u00e9"):
        assert not USER_RE.match(bad), bad
