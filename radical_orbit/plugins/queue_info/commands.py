"""Running scheduler commands: a timeout on each, and the scheduler's own words when one fails.

Every command runs in its own process group in the C locale; on timeout the group is killed,
so a wrapper whose children hold the pipe open cannot hang a request. A failure becomes a
``SchedulerError`` whose detail is the command's own message (its stderr), which the route
returns in the error envelope. An option the installed version does not know (``--json`` on
SLURM 22.05's scontrol) is told apart as ``Unsupported``, so that the caller falls back to
another form of the same command.
"""
import re
import subprocess
from typing import Callable, List, Optional

from ...command import NotOnPath, Result, run_bounded
from ...errors import OrbitError

#: Seconds a scheduler command may run before it is killed (``command_timeout`` in the config).
COMMAND_TIMEOUT = 30.0
#: How much of a failing command's stderr goes into the error envelope.
MAX_MESSAGE = 2000
#: What an option the installed version lacks looks like, in the words of SLURM, PBS and getopt.
_UNSUPPORTED = re.compile(r"unrecognized option|invalid option|unknown option|illegal option|"
                          r"not supported|unable to find plugin|invalid output format", re.I)


#: ``run(argv, timeout) -> Result``; tests give the backends a runner that replays fixtures.
Runner = Callable[[List[str], float], Result]


class SchedulerError(OrbitError):
    """502: the scheduler answered with an error; the detail is its own message."""

    status_code = 502


class SchedulerTimeout(OrbitError, TimeoutError):
    status_code = 504


class NotInstalled(OrbitError):
    """501: the command is not installed on this host."""

    status_code = 501


class Unsupported(Exception):
    """This form of the command is not supported by the installed version: try the next one."""


def run_command(argv: List[str], timeout: float = COMMAND_TIMEOUT) -> Result:
    """Run ``argv``; NotInstalled or SchedulerTimeout when it cannot answer at all."""
    try:
        return run_bounded(argv, timeout)
    except NotOnPath as exc:
        raise NotInstalled(str(exc))
    except OSError as exc:
        raise NotInstalled("cannot run %s: %s" % (argv[0], exc))
    except subprocess.TimeoutExpired:
        raise SchedulerTimeout("%s did not answer within %.0f s" % (" ".join(argv[:3]), timeout))


def checked(result: Result, argv: List[str]) -> str:
    """The output of a command that succeeded; Unsupported or SchedulerError otherwise."""
    if result.returncode == 0:
        return result.stdout
    message = (result.stderr.strip() or result.stdout.strip() or "exit code %d" % result.returncode)
    if _UNSUPPORTED.search(message):
        raise Unsupported(message)
    raise SchedulerError("%s failed: %s" % (" ".join(argv[:3]), message[:MAX_MESSAGE]))


class Commands:
    """A backend's way to run its commands: the runner, the timeout and, per command, which
    of its forms the installed version understands (learned on first use, then kept)."""

    def __init__(self, runner: Optional[Runner] = None, timeout: float = COMMAND_TIMEOUT):
        self.runner = runner or run_command
        self.timeout = timeout
        self._form = {}  # type: dict

    def output(self, argv: List[str]) -> str:
        return checked(self.runner(list(argv), self.timeout), argv)

    def first(self, kind: str, forms: List[tuple]) -> tuple:
        """``forms`` is ``[(argv, parse), ...]`` in order of preference; the first that the
        installed command supports is used now and remembered for ``kind``. Returns
        ``(form index, parsed)``. A form whose output cannot be parsed counts as unsupported."""
        start = self._form.get(kind, 0)
        last = None  # type: Optional[Exception]
        for index in range(start, len(forms)):
            argv, parse = forms[index]
            try:
                parsed = parse(self.output(argv))
            except (Unsupported, ValueError) as exc:
                last = exc
                continue
            self._form[kind] = index
            return index, parsed
        raise SchedulerError("no form of %s works here: %s" % (kind, last))
