"""The PBS Pro backend: ``qstat -Qf`` / ``-Bf`` for queues, ``pbsnodes -a`` for nodes,
``qstat -f -F json`` (else ``qstat -f``) for jobs, ``qdel`` to cancel. PBS keeps no
accounts of its own, so there are no allocations to list."""
import os
import re
from typing import List, Mapping, Optional

from ...errors import BadRequest, Conflict, Forbidden, NotFound
from . import pbs_parse as parse
from .backend import Backend, Record, env_int, environment
from .commands import SchedulerError, checked
from .values import TERMINAL_JOB_STATES, text

#: ``1234``, ``1234.server``, an array ``1234[]`` or subjob ``1234[7].server``.
JOB_ID = re.compile(r"\A[0-9]{1,12}(\[[0-9]{0,9}\])?(\.[A-Za-z0-9][A-Za-z0-9_.-]{0,200})?\Z")
#: How many lines of ``$PBS_NODEFILE`` are read at most.
MAX_NODEFILE_LINES = 200000


class PbsBackend(Backend):
    name = "pbs"

    def partitions(self) -> List[Record]:
        try:
            default = parse.default_queue(self.commands.output(["qstat", "-Bf"]))
        except SchedulerError:
            default = None
        return parse.queues_text(self.commands.output(["qstat", "-Qf"]), default)

    def nodes(self) -> List[Record]:
        nodes = parse.nodes_text(self.commands.output(["pbsnodes", "-a"]))
        # A node naming a queue (``queue =``, or a site's ``Qlist``) serves that queue; the
        # others serve every execution queue that no node is dedicated to.
        dedicated = {q for n in nodes for q in n["partitions"]}
        shared = [q["name"] for q in self.partitions()
                  if q.get("queue_type", "").lower().startswith("e") and q["name"] not in dedicated]
        for n in nodes:
            if not n["partitions"]:
                n["partitions"] = list(shared)
        return nodes

    def jobs(self) -> List[Record]:
        _, jobs = self.commands.first("jobs", [
            (["qstat", "-f", "-F", "json"], parse.jobs_json),
            (["qstat", "-f"], parse.jobs_text),
        ])
        return [j for j in jobs if j["state"] not in TERMINAL_JOB_STATES]

    def valid_job_id(self, job_id: str) -> bool:
        return bool(JOB_ID.match(job_id))

    def cancel(self, job_id: str) -> Record:
        if not self.valid_job_id(job_id):
            raise BadRequest("not a PBS job id: %r" % job_id[:40])
        argv = ["qdel", job_id]
        result = self.commands.runner(argv, self.commands.timeout)
        said = (result.stderr + result.stdout).strip()
        lower = said.lower()
        if result.returncode != 0:
            if "unknown job" in lower:
                raise NotFound("no job %s: %s" % (job_id, said))
            if "unauthorized" in lower or "permission" in lower:
                raise Forbidden("qdel refused job %s: %s" % (job_id, said))
            if "invalid for state" in lower or "finished" in lower:
                raise Conflict("job %s cannot be cancelled now: %s" % (job_id, said))
        checked(result, argv)
        return {"job_id": job_id, "cancelled": True}

    def job_allocation(self, environ: Optional[Mapping[str, str]] = None) -> Optional[Record]:
        env = environment(environ)
        job_id = text(env.get("PBS_JOBID"))
        if not job_id:
            return None
        nodes = _nodefile_hosts(env.get("PBS_NODEFILE", ""))
        return {
            "scheduler": "pbs", "job_id": job_id, "job_name": text(env.get("PBS_JOBNAME")),
            "partition": text(env.get("PBS_QUEUE")), "account": text(env.get("PBS_ACCOUNT")),
            "qos": "", "node_list": ",".join(nodes), "nodes": nodes, "node_count": len(nodes) or None,
            "cpus_per_node": env_int(env, "NCPUS", "OMP_NUM_THREADS"),
            "gpus_per_node": env_int(env, "NGPUS") or 0, "end_time": None,
        }


def _nodefile_hosts(path: str) -> List[str]:
    """The hosts of ``$PBS_NODEFILE`` (one line per slot), each once, in order."""
    hosts, seen = [], set()  # type: List[str], set
    if not path or not os.path.isfile(path):
        return hosts
    try:
        with open(path) as handle:
            for count, line in enumerate(handle):
                if count >= MAX_NODEFILE_LINES:
                    break
                host = line.strip()
                if host and host not in seen:
                    seen.add(host)
                    hosts.append(host)
    except OSError:
        pass
    return hosts
