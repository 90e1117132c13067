"""The SLURM backend: which command, in which form, for each kind of record.

Each kind is decided per command, not per cluster: the ``--json`` form first where SLURM has
one that is useful, the parsable text form where the installed version lacks it (22.05's
``scontrol`` and ``sacctmgr`` have no ``--json``; its ``sinfo --json`` lists nodes). What
worked is remembered (``Commands.first``).
"""
import re
from typing import List, Mapping, Optional

from ...errors import BadRequest, Conflict, Forbidden, NotFound
from . import slurm_parse as parse
from .backend import Backend, Record, env_int, environment
from .commands import SchedulerError, checked
from .values import TERMINAL_JOB_STATES, expand_hostlist, gres_gpus, text

#: A SLURM job id: ``123``, an array task ``123_4`` or a heterogeneous component ``123+1``.
JOB_ID = re.compile(r"\A[0-9]{1,12}([_+][0-9]{1,9})?\Z")


class SlurmBackend(Backend):
    name = "slurm"

    def partitions(self) -> List[Record]:
        _, parts = self.commands.first("partitions", [
            (["scontrol", "show", "partition", "--json"], parse.partitions_json),
            (["scontrol", "show", "partition", "-o"], parse.partitions_text),
        ])
        if parts and not any(p["default"] for p in parts):
            # 23.x's JSON does not say which partition is the default; sinfo marks it with *
            default = parse.default_partition(self.commands.output(["sinfo", "-h", "-o", "%P"]))
            for p in parts:
                p["default"] = p["name"] == default
        return parts

    def nodes(self) -> List[Record]:
        _, nodes = self.commands.first("nodes", [
            (["scontrol", "show", "node", "--json"], parse.nodes_json),
            (["sinfo", "--json"], parse.nodes_json),
            (["scontrol", "show", "node", "-o"], parse.nodes_text),
        ])
        return nodes

    def jobs(self) -> List[Record]:
        _, jobs = self.commands.first("jobs", [
            (["squeue", "--json"], parse.jobs_json),
            (["squeue", "-h", "-a", "-o", parse.SQUEUE_FORMAT], parse.jobs_text),
        ])
        # 22.05's squeue --json lists finished jobs too (and ignores -t): keep the live ones
        return [j for j in jobs if j["state"].split("+")[0] not in TERMINAL_JOB_STATES]

    def associations(self) -> List[Record]:
        _, assocs = self.commands.first("associations", [
            (["sacctmgr", "show", "assoc", "--json"], parse.assocs_json),
            (["sacctmgr", "-n", "-P", "show", "assoc", "format=" + parse.ASSOC_FORMAT], parse.assocs_text),
        ])
        try:
            shares = parse.fairshare_text(self.commands.output(
                ["sshare", "-n", "-P", "-a", "-o", parse.SSHARE_FORMAT]))
        except SchedulerError:
            shares = {}
        for a in assocs:
            a["fairshare"] = shares.get((a["account"], a["user"]))
        return assocs

    def valid_job_id(self, job_id: str) -> bool:
        return bool(JOB_ID.match(job_id))

    def cancel(self, job_id: str) -> Record:
        """scancel says nothing (and exits 0) for an unknown job id: ask squeue first, so
        that an unknown job is a 404 and a finished one a 409."""
        if not self.valid_job_id(job_id):
            raise BadRequest("not a SLURM job id: %r" % job_id[:40])
        argv = ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"]
        result = self.commands.runner(argv, self.commands.timeout)
        if result.returncode != 0 and "invalid job id" in (result.stderr + result.stdout).lower():
            raise NotFound("no job %s: %s" % (job_id, (result.stderr or result.stdout).strip()))
        lines = checked(result, argv).split()
        state = lines[0].strip() if lines else ""
        if not state:
            raise NotFound("no job %s" % job_id)
        if state in TERMINAL_JOB_STATES:
            raise Conflict("job %s has already ended: %s" % (job_id, state))
        argv = ["scancel", job_id]
        result = self.commands.runner(argv, self.commands.timeout)
        said = (result.stderr + result.stdout).strip()
        if "permission denied" in said.lower():
            raise Forbidden("scancel refused job %s: %s" % (job_id, said))
        checked(result, argv)
        if "error" in said.lower():          # some versions exit 0 after a refusal
            raise SchedulerError("scancel failed: %s" % said)
        return {"job_id": job_id, "cancelled": True, "previous_state": state}

    def job_allocation(self, environ: Optional[Mapping[str, str]] = None) -> Optional[Record]:
        env = environment(environ)
        job_id = text(env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID"))
        if not job_id:
            return None
        nodelist = text(env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST"))
        return {
            "scheduler": "slurm", "job_id": job_id,
            "job_name": text(env.get("SLURM_JOB_NAME")),
            "partition": text(env.get("SLURM_JOB_PARTITION")),
            "account": text(env.get("SLURM_JOB_ACCOUNT")),
            "qos": text(env.get("SLURM_JOB_QOS")),
            "node_list": nodelist, "nodes": expand_hostlist(nodelist),
            "node_count": env_int(env, "SLURM_JOB_NUM_NODES", "SLURM_NNODES"),
            "cpus_per_node": env_int(env, "SLURM_CPUS_ON_NODE", "SLURM_JOB_CPUS_PER_NODE"),
            "gpus_per_node": env_int(env, "SLURM_GPUS_ON_NODE") or
            gres_gpus(env.get("SLURM_JOB_GPUS_PER_NODE", ""))["count"] or 0,
            "end_time": env_int(env, "SLURM_JOB_END_TIME"),
        }
