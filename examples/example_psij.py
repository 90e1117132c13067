#!/usr/bin/env python3
"""Run a job through ORBIT's psij plugin, watch it, and read its output.

With no arguments it runs a short job with the ``local`` executor of the bridge's own
psij (the embedded default: start ``radical-orbit-bridge`` first). Against a cluster,
name the endpoint and the executor:

    python examples/example_psij.py --endpoint hpc1 --executor slurm --queue debug --account myacct

URL, cert and token come from the environment or from ``~/.radical/orbit/``.
"""
import argparse
import sys
import time

from radical_orbit import BridgeClient, OrbitError


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", default="bridge", help="endpoint hosting psij (default: the bridge)")
    p.add_argument("--executor", default="local", help="local, slurm, pbs, lsf or flux (default: local)")
    p.add_argument("--queue", help="queue (partition) for a batch executor")
    p.add_argument("--account", help="account to charge, for a batch executor")
    p.add_argument("--duration", default=None, help="walltime for a batch executor, e.g. 00:05:00")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the job (default 300)")
    args = p.parse_args()

    job_spec = {"executable": "/bin/sh",
                "arguments": ["-c", 'echo "hello from $(hostname) as $USER, greeting $GREETING"; sleep 1'],
                "environment": {"GREETING": "ORBIT"}}
    attributes = {k: v for k, v in (("queue_name", args.queue), ("account", args.account),
                                    ("duration", args.duration)) if v}
    if attributes:
        job_spec["attributes"] = attributes
    with BridgeClient() as bc:
        with bc.get_endpoint_client(args.endpoint).get_plugin("psij") as pi:
            started = time.monotonic()
            job = pi.submit_job(job_spec, executor=args.executor)
            print("submitted job %s (%s native id %s): %s" % (job["job_id"], args.executor,
                                                              job["native_id"], job["state"]))
            final = pi.wait_job(job["job_id"], timeout=args.timeout)
            print("job %s %s, exit code %s, after %.2f s" % (job["job_id"], final["state"],
                                                            final["exit_code"], time.monotonic() - started))
            status = pi.get_job_status(job["job_id"])
            print("stdout: %s" % status["stdout"]["data"].strip())
            if status["stderr"]["data"].strip():
                print("stderr: %s" % status["stderr"]["data"].strip())
            print("jobs recorded on %s: %d" % (args.endpoint, len(pi.list_jobs())))
    return 0 if final["state"] == "COMPLETED" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OrbitError, ValueError, OSError) as exc:   # no bridge, refused job, ...
        sys.exit("error: %s" % exc)
