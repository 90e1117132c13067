"""The ``job_spec`` a client sends, checked field by field and turned into a psij JobSpec.

Every field is honoured or refused with a 400 that names it: psij itself ignores what an
executor does not understand (a ``pbs.*`` custom attribute on SLURM, a queue on the local
executor), and a job that silently loses its account or constraint spends the wrong
allocation. ``check`` returns the normalised spec (plain JSON, stored with the job), and
``build`` makes the psij objects from it, the same way at submit and after a restart.
"""
import math
import re
from datetime import timedelta
from typing import Any, Dict, List, Optional

from ...errors import BadRequest
from .lookup import FINDERS, scheduler_name

#: executors that render attributes into a batch script, and the prefix of their custom attributes
BATCH_PREFIX = {"slurm": "slurm", "pbs": "pbs", "pbs_classic": "pbs", "lsf": "lsf", "cobalt": "cobalt"}
#: the directive that names a job, per batch executor (psij 0.9's templates read ``job.name``,
#: which its Job does not have, so ``spec.name`` would never reach the script)
NAME_DIRECTIVE = {"slurm": "slurm.job-name", "pbs": "pbs.N", "pbs_classic": "pbs.N", "lsf": "lsf.J",
                  "cobalt": "cobalt.jobname"}
#: attributes (besides the counts) each non-batch executor honours
OTHER_ATTRIBUTES = {"local": (), "flux": ("duration",), "rp": ()}
#: ORBIT's attribute names; anything with a dot is a ``scheduler.key`` custom attribute
NAMED_ATTRIBUTES = ("queue_name", "account", "duration", "reservation_id", "node_count",
                    "process_count", "custom_attributes")
#: ResourceSpecV1 fields and their JSON type
RESOURCE_FIELDS = {"node_count": int, "process_count": int, "processes_per_node": int,
                   "cpu_cores_per_process": int, "gpu_cores_per_process": int,
                   "exclusive_node_use": bool, "memory": int}
STRING_FIELDS = ("directory", "name", "stdin_path", "stdout_path", "stderr_path",
                 "pre_launch", "post_launch", "launcher")
#: paths the job reads or writes, which status reads too: absolute only
OUTPUT_FIELDS = ("stdin_path", "stdout_path", "stderr_path")
TOP_FIELDS = ("executable", "arguments", "environment", "inherit_environment", "attributes",
              "resources") + STRING_FIELDS
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: what psij 0.9 writes into a batch directive unchanged: it shell-quotes every value
#: (``--constraint="'a&b'"``), which changes any value with another character
DIRECTIVE_SAFE = re.compile(r"^[\w@%+=:,./-]+$", re.ASCII)
#: limits on what one spec may carry (a spec is stored and echoed in every listing)
MAX_ARGUMENTS = 4096
MAX_STRING = 8192
#: processes one local job may start (each is a process on the endpoint's own host)
MAX_LOCAL_PROCESSES = 256
#: the longest walltime accepted (a typo such as 1000000 minutes is refused, not queued)
MAX_DURATION_S = 366 * 86400
_CLOCK = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_UNIT = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")


def check(job_spec: Any, executor: str) -> Dict[str, Any]:
    """The normalised spec; BadRequest naming the first field that is wrong or that
    ``executor`` would not honour."""
    if not isinstance(job_spec, dict):
        raise BadRequest("job_spec must be a JSON object")
    unknown = sorted(set(job_spec) - set(TOP_FIELDS))
    if unknown:
        raise BadRequest("job_spec.%s is not a job_spec field (known: %s)" % (unknown[0], ", ".join(TOP_FIELDS)))
    out: Dict[str, Any] = {"executable": _string(job_spec.get("executable"), "executable", required=True)}
    arguments = job_spec.get("arguments", [])
    if not isinstance(arguments, list) or len(arguments) > MAX_ARGUMENTS:
        raise BadRequest("job_spec.arguments must be a list of at most %d strings" % MAX_ARGUMENTS)
    out["arguments"] = [_argument(a, i) for i, a in enumerate(arguments)]
    for name in STRING_FIELDS:
        if job_spec.get(name) is not None:
            out[name] = _string(job_spec[name], name)
    # a relative path would be read from the endpoint's directory but written in the job's
    for name in ("directory",) + OUTPUT_FIELDS:
        if name in out and not out[name].startswith("/"):
            raise BadRequest("job_spec.%s must be an absolute path, not %r" % (name, out[name][:80]))
    if "name" in out and executor in NAME_DIRECTIVE:
        _directive_value(out["name"], "name", executor)
    out["environment"] = _environment(job_spec.get("environment"))
    inherit = job_spec.get("inherit_environment", True)
    if not isinstance(inherit, bool):
        raise BadRequest("job_spec.inherit_environment must be true or false")
    out["inherit_environment"] = inherit
    out["attributes"] = _attributes(job_spec.get("attributes"), executor)
    out["resources"] = _resources(job_spec.get("resources"), out["attributes"], executor)
    return out


def _string(value: Any, field: str, required: bool = False) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_STRING or "\x00" in value:
        raise BadRequest("job_spec.%s must be a non-empty string%s" % (field, "" if required else " when given"))
    return value


def _argument(value: Any, index: int) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > MAX_STRING or "\x00" in value:
        raise BadRequest("job_spec.arguments[%d] must be a string" % index)
    return value


def _environment(env: Any) -> Dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise BadRequest("job_spec.environment must be an object of NAME: value")
    if len(env) > MAX_ARGUMENTS:
        raise BadRequest("job_spec.environment has more than %d variables" % MAX_ARGUMENTS)
    out = {}
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise BadRequest("job_spec.environment.%s is not a valid variable name" % name[:80])
        if isinstance(value, float) and not math.isfinite(value):
            value = None            # JSON's Infinity / NaN: no number a variable could hold
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise BadRequest("job_spec.environment.%s must be a string or a number" % name)
        value = str(value)
        if len(value) > MAX_STRING or "\x00" in value:
            raise BadRequest("job_spec.environment.%s must be at most %d characters, without NUL"
                             % (name, MAX_STRING))
        out[name] = value
    return out


def _attributes(attrs: Any, executor: str) -> Dict[str, Any]:
    if attrs is None:
        attrs = {}
    if not isinstance(attrs, dict):
        raise BadRequest("job_spec.attributes must be an object")
    custom = attrs.get("custom_attributes") or {}
    if not isinstance(custom, dict):
        raise BadRequest("job_spec.attributes.custom_attributes must be an object")
    out: Dict[str, Any] = {}
    merged_custom: Dict[str, str] = {}
    for key, value in list(attrs.items()) + [(k, v) for k, v in custom.items()]:
        if key == "custom_attributes" or value is None:
            continue
        if "." in key:
            merged_custom[key] = _custom(key, value, executor)
        elif key not in NAMED_ATTRIBUTES:
            raise BadRequest("job_spec.attributes.%s is not an attribute (known: %s, or scheduler.key "
                             "custom attributes such as slurm.constraint)"
                             % (key[:80], ", ".join(NAMED_ATTRIBUTES[:-1])))
        elif key in ("node_count", "process_count"):
            out[key] = _count(value, "attributes." + key)
        elif key == "duration":
            out["duration"] = _honoured(executor, key, parse_duration(value))
        else:
            out[key] = _directive_value(_honoured(executor, key, _string(value, "attributes." + key)),
                                        "attributes." + key, executor)
    if merged_custom:
        out["custom_attributes"] = merged_custom
    return out


def _honoured(executor: str, key: str, value: Any) -> Any:
    if executor in BATCH_PREFIX or key in OTHER_ATTRIBUTES.get(executor, ()):
        return value
    raise BadRequest("job_spec.attributes.%s is not honoured by the %s executor (a batch scheduler "
                     "executor such as slurm, pbs or lsf honours it)" % (key, executor))


def _custom(key: str, value: Any, executor: str) -> str:
    prefix, _, name = key.partition(".")
    if not prefix or not name or not re.match(r"^[A-Za-z0-9_-]+$", name):
        raise BadRequest("job_spec.attributes.%s: a custom attribute is scheduler.key, e.g. slurm.constraint"
                         % key[:80])
    wanted = BATCH_PREFIX.get(executor)
    if wanted is None:
        raise BadRequest("job_spec.attributes.%s: the %s executor takes no custom attributes"
                         % (key[:80], executor))
    if prefix.lower() != wanted:
        raise BadRequest("job_spec.attributes.%s: the %s executor only reads %s.* custom attributes"
                         % (key[:80], executor, wanted))
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRequest("job_spec.attributes.%s must be a string or a number" % key[:80])
    return _directive_value(str(value), "attributes." + key[:80], executor)


def _directive_value(text: str, field: str, executor: str) -> str:
    """A value psij writes into the batch script's directives as it is, or a 400."""
    if not DIRECTIVE_SAFE.match(text) or len(text) > MAX_STRING:
        raise BadRequest("job_spec.%s %r: the %s executor (psij) would change a value with characters "
                         "other than letters, digits and @%%+=:,./- when writing it into the batch script"
                         % (field, text[:80], executor))
    return text


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10 ** 7:
        raise BadRequest("job_spec.%s must be a positive integer" % field)
    return value


def parse_duration(value: Any) -> int:
    """Seconds of a walltime given as seconds, ``[D-]HH:MM[:SS]``, ``MM`` or ``90m``/``2h``."""
    seconds: Optional[float] = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        clock, unit = _CLOCK.match(text), _UNIT.match(text)
        if unit:
            seconds = float(unit.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit.group(2)]
        elif clock:
            days, a, b, c = clock.groups()
            parts = [int(p) for p in (a, b, c) if p is not None]
            if len(parts) == 1:
                seconds = parts[0] * 60.0          # a bare number is minutes, as sbatch -t reads it
            elif len(parts) == 2:
                seconds = parts[0] * 3600.0 + parts[1] * 60
            else:
                seconds = parts[0] * 3600.0 + parts[1] * 60 + parts[2]
            seconds += int(days or 0) * 86400
    if seconds is None or not 1 <= seconds <= MAX_DURATION_S:
        raise BadRequest("job_spec.attributes.duration must be seconds (a number), HH:MM:SS, or 90m / 2h, "
                         "between 1 s and %d days; got %r" % (MAX_DURATION_S // 86400, str(value)[:40]))
    return int(round(seconds))


def _resources(res: Any, attrs: Dict[str, Any], executor: str) -> Dict[str, Any]:
    if res is None:
        res = {}
    if not isinstance(res, dict):
        raise BadRequest("job_spec.resources must be an object")
    out: Dict[str, Any] = {}
    for key, value in res.items():
        kind = RESOURCE_FIELDS.get(key)
        if kind is None:
            raise BadRequest("job_spec.resources.%s is not a resource field (known: %s)"
                             % (key[:80], ", ".join(RESOURCE_FIELDS)))
        if value is None:
            continue
        if kind is bool:
            if not isinstance(value, bool):
                raise BadRequest("job_spec.resources.%s must be true or false" % key)
            out[key] = value
        else:
            out[key] = _count(value, "resources." + key)
    for key in ("node_count", "process_count"):
        if key in attrs:
            if key in out and out[key] != attrs[key]:
                raise BadRequest("job_spec.attributes.%s (%d) and job_spec.resources.%s (%d) disagree"
                                 % (key, attrs[key], key, out[key]))
            out[key] = attrs.pop(key)
    if executor == "local":
        for key in ("process_count", "processes_per_node"):
            if out.get(key, 1) > MAX_LOCAL_PROCESSES:
                raise BadRequest("job_spec.resources.%s: the local executor starts at most %d "
                                 "processes on this host" % (key, MAX_LOCAL_PROCESSES))
        for key in ("node_count",):
            if out.get(key, 1) != 1:
                raise BadRequest("job_spec.resources.%s: the local executor runs on one node" % key)
        for key in ("gpu_cores_per_process", "memory", "exclusive_node_use", "cpu_cores_per_process"):
            if key in out:
                raise BadRequest("job_spec.resources.%s is not honoured by the local executor" % key)
    if executor == "flux":
        for key in ("processes_per_node", "exclusive_node_use", "memory"):
            if key in out:
                raise BadRequest("job_spec.resources.%s is not honoured by the flux executor" % key)
    return out


def build(spec: Dict[str, Any], executor: str, stdout_path: str, stderr_path: str, job_id: str) -> Any:
    """The psij JobSpec of a spec ``check`` returned; output goes to the given files unless
    the spec names its own. An executor whose jobs ORBIT can look up by name
    (``lookup.FINDERS``) names the job after ``job_id`` too (``lookup.scheduler_name``)."""
    import psij

    attrs = spec.get("attributes", {})
    custom = dict(attrs.get("custom_attributes") or {})
    directive = NAME_DIRECTIVE.get(executor)
    if directive is not None and executor in FINDERS:
        custom[directive] = scheduler_name(job_id, custom.get(directive) or spec.get("name"))
    elif spec.get("name") and directive is not None:
        custom.setdefault(directive, spec["name"])
    attributes = psij.JobAttributes(
        duration=timedelta(seconds=attrs["duration"]) if "duration" in attrs else timedelta(minutes=10),
        queue_name=attrs.get("queue_name"), account=attrs.get("account"),
        reservation_id=attrs.get("reservation_id"),
        custom_attributes=custom or None)
    resources = spec.get("resources") or {}
    launcher = spec.get("launcher")
    if launcher is None and executor == "local" and resources.get("process_count", 1) > 1:
        launcher = "multiple"       # 'single' would start one process of the N asked for
    return psij.JobSpec(
        executable=spec["executable"], arguments=list(spec.get("arguments", [])),
        directory=spec.get("directory"), name=spec.get("name"),
        inherit_environment=spec.get("inherit_environment", True),
        environment=dict(spec.get("environment") or {}) or None,
        stdin_path=spec.get("stdin_path"),
        stdout_path=spec.get("stdout_path") or stdout_path,
        stderr_path=spec.get("stderr_path") or stderr_path,
        resources=psij.ResourceSpecV1(**resources) if resources else None,
        attributes=attributes, pre_launch=spec.get("pre_launch"), post_launch=spec.get("post_launch"),
        launcher=launcher)


def output_paths(spec: Dict[str, Any], stdout_path: str, stderr_path: str) -> List[str]:
    """Where the job's stdout and stderr land (the spec's own paths win)."""
    return [spec.get("stdout_path") or stdout_path, spec.get("stderr_path") or stderr_path]
