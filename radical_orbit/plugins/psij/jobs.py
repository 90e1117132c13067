"""The jobs of one psij plugin instance: submit, cancel, status, list, and re-attach after a
restart. Routes (``plugin.py``, and the launch routes) call this; nothing here knows HTTP.

A submit records the job before it reaches the executor and its native id before it
returns. A submit key is unique in the store: a second submit with the same key (a retry
whose first answer was lost, or a concurrent duplicate) waits for the first one and returns
its job, so the scheduler sees one job.
"""
import logging
import os
import re
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

from ...errors import BadRequest, Conflict, NotFound, OrbitError, Timeout
from . import lookup, output, quicklaunch, spec as specs
from .executors import COMMAND_TIMEOUT, POLL_INTERVAL, CommandTimedOut, Executors
from .store import TERMINAL, JobStore, KeyTaken
from .wakeup import ChildWakeup
from .watcher import Watcher, describe, process_started

log = logging.getLogger("radical_orbit.plugins.psij")

#: the longest submit key accepted
MAX_KEY = 200
#: the most jobs one ``list_jobs`` returns (newest first)
MAX_LIST = 1000
#: days a job in a final state is kept (its record and output files); 0 keeps every job
KEEP_DAYS = 30.0
#: seconds between two prunes at most (shorter when ``keep_days`` is under a few hours)
PRUNE_INTERVAL = 3600.0
#: seconds a local job's cancel waits for psij to kill its process
CANCEL_WAIT = 2.0
#: what psij's batch executors leave behind per job in ``work/<executor>/<native id>``
BATCH_AUX_FILES = (".out", ".ec", ".nodefile")
#: the suffix of the submit script a batch executor writes, named by psij's job id
BATCH_SCRIPT = ".job"
#: recorded notifications read at a time when resending them after a restart
NOTES_BATCH = 256
#: a scheduler's own words for "it may or may not have taken the job" (a refusal otherwise)
_AMBIGUOUS = re.compile(r"timed out|time-out|timeout", re.I)
#: psij exceptions that mean "the executor or scheduler refused this job" (400, its message kept)
_REFUSALS = ("SubmitException", "InvalidJobException")


class JobManager:
    def __init__(self, state_dir: str, open_notes: Any, poll_interval: float = POLL_INTERVAL,
                 command_timeout: float = COMMAND_TIMEOUT, allowed: Optional[List[str]] = None,
                 default_executor: str = "local", tail_bytes: int = output.TAIL_BYTES,
                 keep_days: float = KEEP_DAYS, submit_lookup: float = lookup.SUBMIT_LOOKUP):
        # absolute: a job with its own directory writes its output and exit code there
        self.state_dir = state_dir = os.path.abspath(state_dir)
        self.output_dir = os.path.join(state_dir, "output")
        os.makedirs(self.output_dir, mode=0o700, exist_ok=True)
        self.store = JobStore(os.path.join(state_dir, "jobs.sqlite"))
        # open_notes is Plugin.durable_notes; what an earlier run recorded but the bridge
        # never acknowledged goes first (the bridge drops any it has), read a batch at a time
        self.notes = open_notes(self.store.stream, self.store.acked, self.store.notes_acked,
                                read=self.store.pending_notes)
        after = self.store.acked
        while True:
            pending = self.store.pending_notes(after, NOTES_BATCH)
            for seq, topic, data in pending:
                self.notes.send(seq, topic, data)
            if len(pending) < NOTES_BATCH:
                break
            after = pending[-1][0]
        self.watcher = Watcher(self.store, self.notes, tail_bytes, self.exit_path)
        self.executors = Executors(os.path.join(state_dir, "work"), self.watcher.on_status,
                                   poll_interval, command_timeout, allowed)
        self.command_timeout = command_timeout
        self.default_executor = default_executor
        self.wakeup = ChildWakeup()
        self._live: Dict[str, Any] = {}             # job id -> psij Job (for cancel)
        self._submitting = threading.Condition()    # a keyed submit finished
        self._resumed = threading.Event()           # the jobs of an earlier run are attached again
        self._resolving = threading.Lock()          # one look-up of an unknown submit at a time
        self.watcher.add_listener(self._forget_ended)
        self.keep_days = keep_days
        self._closed = threading.Event()
        #: jobs whose submit outcome is not known, looked up by name until found or this late
        self.submit_lookup = submit_lookup
        self._unknown = lookup.Pending(self._resolve, max(0.5, min(lookup.LOOKUP_INTERVAL, submit_lookup / 5.0)))
        self._pruner: Optional[threading.Thread] = None
        if keep_days > 0:
            self.prune()
            self._pruner = threading.Thread(target=self._prune_every, name="psij-prune", daemon=True)
            self._pruner.start()

    # -- pruning ---------------------------------------------------------------------
    def prune(self) -> int:
        """Forget the jobs that ended more than ``keep_days`` ago and remove their output
        files (those in the output dir: a path the spec named is the user's); a job not yet
        ended is never touched. Returns how many."""
        if self.keep_days <= 0:
            return 0
        pruned = self.store.prune(time.time() - self.keep_days * 86400.0)
        if pruned:
            # a batch scheduler may hand out a native id again (a reinstalled cluster): the
            # files of a job still watched under that id stay
            live = {(r["executor"], r["native_id"]) for r in self.store.all(10 ** 9, unfinished_only=True)}
        for record in pruned:
            paths = [p for p in (record["stdout_path"], record["stderr_path"], self.exit_path(record["job_id"]))
                     if os.path.dirname(os.path.abspath(p)) == os.path.abspath(self.output_dir)]
            native, psij_id = record["native_id"], record["psij_id"]
            work = os.path.join(self.executors.work_dir, record["executor"])
            if record["executor"] != "local" and native and (record["executor"], native) not in live \
                    and re.match(r"\A[\w.\[\]-]+\Z", native):
                # psij's batch executors leave the launcher's output and the node file of
                # every job in their work dir, named by the native id
                paths += [os.path.join(work, native + suffix) for suffix in BATCH_AUX_FILES]
            if record["executor"] != "local" and psij_id and re.match(r"\A[\w-]+\Z", psij_id):
                # and the submit script, named by psij's own id (unique to this job), of a
                # job re-attached after a restart: only the psij.Job that submitted it removes it
                paths.append(os.path.join(work, psij_id + BATCH_SCRIPT))
            for path in paths:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("cannot remove %s of pruned job %s: %s", path, record["job_id"], exc)
        if pruned:
            log.info("forgot %d job(s) that ended more than %g day(s) ago", len(pruned), self.keep_days)
        return len(pruned)

    def _prune_every(self) -> None:
        interval = min(PRUNE_INTERVAL, max(1.0, self.keep_days * 86400.0 / 2))
        while not self._closed.wait(interval):
            try:
                self.prune()
            except Exception:
                log.exception("pruning old jobs failed")

    def exit_path(self, job_id: str) -> str:
        """Where a local job's launcher records its exit code (quicklaunch.py)."""
        return os.path.join(self.output_dir, job_id + ".exit")

    def _forget_ended(self, record: Dict[str, Any]) -> None:
        """An ended job needs no psij object any more (cancel leaves it as it is)."""
        if record["state"] in TERMINAL:
            self._live.pop(record["job_id"], None)

    def close(self) -> None:
        self._closed.set()
        self._unknown.close()
        if self._pruner is not None:
            self._pruner.join(5.0)
        self.wakeup.stop()
        self.executors.stop()
        self.notes.close()
        self.store.close()

    # -- submit ----------------------------------------------------------------------
    def submit(self, job_spec: Any, executor: Optional[str] = None, key: Optional[str] = None,
               sid: str = "") -> Dict[str, Any]:
        """The job (described); 400 naming the field for a bad spec, 400 with the scheduler's
        own message when it refuses the job."""
        executor = self.executors.check_name(executor or self.default_executor)
        if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_KEY):
            raise BadRequest("key must be a non-empty string of at most %d characters" % MAX_KEY)
        spec = specs.check(job_spec, executor)
        runner = self.executors.get(executor)
        for _ in range(3):
            job_id = uuid.uuid4().hex[:16]
            # where the job's output lands (a path the spec names wins): status and the
            # terminal notification read it there
            stdout, stderr = specs.output_paths(spec, os.path.join(self.output_dir, job_id + ".out"),
                                                os.path.join(self.output_dir, job_id + ".err"))
            try:
                self.store.insert(job_id, key, executor, spec, stdout, stderr, sid)
            except KeyTaken:
                first = self._wait_keyed(key)
                if first is None:
                    continue                # the first submit was refused: this one tries itself
                if first["executor"] != executor or first["spec"] != spec:
                    raise Conflict("key %r was used for job %s with a different job_spec or executor"
                                   % (key, first["job_id"]))
                return describe(first)
            try:
                return describe(self._start(job_id, spec, executor, runner, stdout, stderr))
            finally:
                with self._submitting:
                    self._submitting.notify_all()
        raise Conflict("key %r: the submits holding it kept failing; try again" % key)

    def _wait_keyed(self, key: str) -> Optional[Dict[str, Any]]:
        """The job of ``key`` once its submit finished (None: it was refused)."""
        deadline = time.monotonic() + self.command_timeout + 5.0
        with self._submitting:
            while True:
                first = self.store.by_key(key)
                if first is None or first["native_id"] is not None or first["state"] != "NEW":
                    return first
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Conflict("key %r: its first submit (job %s) is still in progress"
                                   % (key, first["job_id"]))
                self._submitting.wait(min(left, 0.5))

    def _start(self, job_id: str, spec: Dict[str, Any], executor: str, runner: Any,
               stdout: str, stderr: str) -> Dict[str, Any]:
        import psij
        psij_job = psij.Job(specs.build(spec, executor, stdout, stderr, job_id))
        if executor != "local":
            self.store.set_psij_id(job_id, psij_job.id)
        self.watcher.track(psij_job, job_id)
        self._live[job_id] = psij_job
        if executor == "local":
            quicklaunch.expect_exit(psij_job.id, self.exit_path(job_id))
        try:
            runner.submit(psij_job)
        except Exception as exc:
            self._live.pop(job_id, None)
            _drop_script(runner, psij_job)      # a scheduler that took the job has its own copy
            detail = _psij_message(exc)
            # sbatch's "Socket timed out on send/recv operation": the controller may have the job
            timed_out = isinstance(exc.__context__, CommandTimedOut) or isinstance(exc, CommandTimedOut) \
                or bool(_AMBIGUOUS.search(detail))
            refused = not timed_out and (type(exc).__name__ in _REFUSALS or isinstance(exc, (TypeError, ValueError)))
            if executor in lookup.FINDERS:
                # whatever sbatch said, the job may be in the queue: its name tells
                try:
                    native = self._find(job_id)
                except lookup.NotAnswered:
                    native = None       # a refusal stands; an unknown outcome is looked up later
                if native is not None:
                    log.warning("job %s: the %s submit failed (%s) but the scheduler has it as %s: followed",
                                job_id, executor, detail, native)
                    return self._adopt(job_id, native)
                if not refused:
                    return self._submit_unknown(job_id, executor, detail)
            if refused:
                self.store.delete(job_id)
                raise BadRequest("the %s executor refused the job: %s" % (executor, detail))
            # the scheduler may have queued it (sbatch timed out after the controller took
            # the job): the record stays, FAILED with what is not known, so a retry with the
            # same key answers this job instead of submitting a second one
            self.watcher.advance(job_id, "FAILED", None, "the %s executor's submit did not complete (%s): "
                                 "whether the scheduler queued the job is not known; look in its "
                                 "queue before submitting again" % (executor, detail), time.time())
            if timed_out:
                raise Timeout("the %s executor: %s" % (executor, detail))
            log.exception("submit of job %s to %s failed", job_id, executor)
            raise OrbitError("submitting to the %s executor failed: %s" % (executor, detail), 502)
        finally:
            quicklaunch.forget(psij_job.id)
        native = str(psij_job.native_id)
        record = self.store.get(job_id)
        assert record is not None
        if record["native_id"] is None or (executor == "local" and record["process_started"] is None):
            # psij's QUEUED callback recorded both with the transition; this is for one it did not
            self.store.set_native(job_id, native, process_started(executor, native))
            record = self.store.get(job_id) or record
        if executor == "local" and record["state"] not in TERMINAL:
            self.wakeup.watch(int(native))
        if record["cancel_requested"] and record["state"] not in TERMINAL:
            self._cancel_live(job_id, runner)
            record = self.store.get(job_id) or record
        return record

    # -- a submit whose outcome is not known -----------------------------------------
    def _submit_unknown(self, job_id: str, executor: str, detail: str) -> Dict[str, Any]:
        """Keep the job QUEUED without a native id, saying so, and look it up by its name
        until it is found or ``submit_lookup`` s after its submit have passed."""
        record = self.store.get(job_id)
        assert record is not None
        name = lookup.scheduler_name(job_id, _spec_name(record, executor))
        self.watcher.advance(job_id, "QUEUED", None, "submit outcome unknown: the %s executor's submit did not "
                             "complete (%s); the job is looked for in the scheduler under the name %s for "
                             "%.0f s after its submit; do not submit it again"
                             % (executor, detail, name, self.submit_lookup), time.time())
        self._unknown.add(job_id)
        return self.store.get(job_id) or record

    def _find(self, job_id: str) -> Optional[str]:
        """The native id the scheduler has for the job (None: not found); NotAnswered."""
        record = self.store.get(job_id)
        assert record is not None
        name = lookup.scheduler_name(job_id, _spec_name(record, record["executor"]))
        return lookup.FINDERS[record["executor"]](name, record["created"], self.command_timeout)

    def _adopt(self, job_id: str, native: str) -> Dict[str, Any]:
        """Follow a job found by its name as any job: one still NEW is QUEUED with its id
        (one notification), one QUEUED already gets its id with its next transition."""
        if self.watcher.advance(job_id, "QUEUED", None, None, time.time(), native) is None:
            self.store.set_native(job_id, native, message="found in the scheduler as %s after its submit's "
                                  "outcome was not known" % native)
        record = self.store.get(job_id)
        assert record is not None
        self._attach(record, native)
        return self.store.get(job_id) or record

    def _resolve(self, job_id: str) -> bool:
        """One look-up of a job whose submit outcome is not known; True once settled. Resume
        and the look-up thread may both ask for a job: one at a time, so it is attached once."""
        with self._resolving:
            return self._resolve_one(job_id)

    def _resolve_one(self, job_id: str) -> bool:
        record = self.store.get(job_id)
        if record is None or record["state"] in TERMINAL or record["native_id"] is not None:
            return True
        try:
            native = self._find(job_id)
        except lookup.NotAnswered as exc:
            # only the scheduler's own "not there" gives a job up: one that cannot be asked
            # may be running it, and a FAILED would invite a second submit
            log.info("job %s: its submit's outcome is still not known: %s", job_id, exc)
            return False
        if native is not None:
            log.info("job %s: its submit's outcome was not known; the scheduler has it as %s", job_id, native)
            self._adopt(job_id, native)
            return True
        if time.time() < record["created"] + self.submit_lookup:
            return False
        name = lookup.scheduler_name(job_id, _spec_name(record, record["executor"]))
        self.watcher.advance(job_id, "FAILED", None, "submit outcome unknown, and the job was not found in "
                             "squeue/sacct under the name %s within %.0f s after its submit: it was not queued"
                             % (name, self.submit_lookup), time.time())
        return True

    # -- cancel, status, list --------------------------------------------------------
    def cancel(self, job_id: str) -> Dict[str, Any]:
        """Ask the executor to cancel; the CANCELED notification follows (a job already
        ended is left as it is)."""
        record = self._record(job_id)
        if record["state"] in TERMINAL:
            return describe(record)
        self.store.request_cancel(job_id)
        # read again: the look-up thread may have found the job (and read no cancel) meanwhile
        record = self._record(job_id)
        if record["native_id"] is not None and record["state"] not in TERMINAL:
            self._cancel_live(job_id, self.executors.get(record["executor"]))
        return describe(self._record(job_id))

    def _cancel_live(self, job_id: str, runner: Any) -> None:
        psij_job = self._live.get(job_id)
        if psij_job is None:
            current = self.store.get(job_id)
            if not self._resumed.is_set() or job_id in self._unknown or current is None \
                    or current["state"] in TERMINAL:
                # being attached (by resume or the look-up, which carry the recorded cancel
                # out), or it ended meanwhile
                return
            raise OrbitError("job %s is not watched by this endpoint (re-attaching it after a restart "
                             "failed: see the endpoint's log); cancel it with the scheduler (queue_info's "
                             "cancel, native id %s)" % (job_id, current["native_id"]), 502)
        try:
            runner.cancel(psij_job)
        except Exception as exc:
            if isinstance(exc.__context__, CommandTimedOut):
                raise Timeout("the %s executor could not cancel job %s: %s"
                              % (runner.name, job_id, _psij_message(exc)))
            raise OrbitError("the %s executor could not cancel job %s: %s"
                             % (runner.name, job_id, _psij_message(exc)), 502)
        if runner.name == "local" and psij_job.native_id is not None:
            # psij reports CANCELED at once and kills at its reaper's next pass: the answer
            # waits for the kill, so an endpoint stopped right after cannot leave it running
            self.wakeup.poke()
            if not _process_gone(int(psij_job.native_id), CANCEL_WAIT):
                log.warning("job %s (pid %s) still runs %.0f s after its cancel", job_id,
                            psij_job.native_id, CANCEL_WAIT)

    def status(self, job_id: str, stdout_offset: int = 0, stderr_offset: int = 0) -> Dict[str, Any]:
        record = self._record(job_id)
        out = describe(record)
        out["spec"] = record["spec"]
        out["stdout"] = output.read_from(record["stdout_path"], stdout_offset)
        out["stderr"] = output.read_from(record["stderr_path"], stderr_offset)
        out.update(self.watcher.tails(record))
        return out

    def list(self, limit: int = MAX_LIST) -> List[Dict[str, Any]]:
        return [describe(r) for r in self.store.all(limit)]

    def get(self, job_id: str) -> Dict[str, Any]:
        return describe(self._record(job_id))

    def _record(self, job_id: str) -> Dict[str, Any]:
        record = self.store.get(job_id)
        if record is None:
            raise NotFound("no job %s" % job_id)
        return record

    # -- after a restart -------------------------------------------------------------
    def resume(self) -> int:
        """Watch again every job the store has not seen end; returns how many. A cancel
        asked for before (or while) a job is attached again is carried out once it is."""
        count = 0
        try:
            for record in self.store.all(10 ** 9, unfinished_only=True):
                try:
                    if self._resume_one(record):
                        count += 1
                except Exception as exc:
                    log.error("job %s (%s %s) could not be watched again: %s: %s", record["job_id"],
                              record["executor"], record["native_id"], type(exc).__name__, exc)
        finally:
            self._resumed.set()
        if count:
            log.info("watching %d job(s) again after a restart", count)
        return count

    def _resume_one(self, record: Dict[str, Any]) -> bool:
        job_id, native, executor = record["job_id"], record["native_id"], record["executor"]
        if native is None and executor in lookup.FINDERS:
            # killed between sbatch and recording the native id, or still being looked for
            if record["state"] == "NEW":
                self._submit_unknown(job_id, executor, "the endpoint stopped while submitting it")
            if not self._resolve(job_id):
                self._unknown.add(job_id)
            return True
        if native is None:
            self.watcher.advance(job_id, "FAILED", None, "the endpoint stopped while submitting this job: "
                                 "whether the executor received it is not known", time.time())
            return False
        if executor == "local" and not _same_process(native, record["process_started"]):
            code = quicklaunch.read_exit(self.exit_path(job_id))
            if code is None:
                self.watcher.advance(job_id, "FAILED", None, "the process ended while the endpoint was down: "
                                     "its exit code is not known", time.time())
            else:
                self.watcher.advance(job_id, "COMPLETED" if code == 0 else "FAILED", code,
                                     "ended while the endpoint was down", time.time())
            return False
        self._attach(record, native)
        return True

    def _attach(self, record: Dict[str, Any], native: str) -> None:
        """Watch the job ``native`` through its executor (a cancel asked for meanwhile is
        carried out)."""
        import psij
        job_id, executor = record["job_id"], record["executor"]
        runner = self.executors.get(executor)
        psij_job = psij.Job(specs.build(record["spec"], executor, record["stdout_path"], record["stderr_path"],
                                        job_id))
        if executor == "local":
            self.watcher.exit_unknown.add(job_id)
        self.watcher.track(psij_job, job_id)
        runner.attach(psij_job, native)
        self._live[job_id] = psij_job
        if executor == "local":
            self.wakeup.watch(int(native))
        current = self.store.get(job_id)
        if current is not None and current["cancel_requested"] and current["state"] not in TERMINAL:
            log.info("job %s: carrying out the cancel asked for while it was not watched", job_id)
            self._cancel_live(job_id, runner)


def _spec_name(record: Dict[str, Any], executor: str) -> Optional[str]:
    """The name part a job's spec gives its scheduler name (spec.build reads the same)."""
    directive = specs.NAME_DIRECTIVE.get(executor)
    custom = record["spec"].get("attributes", {}).get("custom_attributes") or {}
    return (custom.get(directive) if directive else None) or record["spec"].get("name")


def _psij_message(exc: BaseException) -> str:
    """psij's exceptions carry the scheduler's output in ``message``; their str adds noise."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    inner = getattr(exc, "exception", None)
    if inner is not None and str(inner) not in text:
        text = "%s: %s: %s" % (text, type(inner).__name__, inner)
    return str(text).strip()


def _drop_script(runner: Any, psij_job: Any) -> None:
    """A batch executor leaves the script of a job the scheduler refused in its work dir
    (it removes it only when a job ends): remove it, or every refusal leaves a file."""
    work = getattr(runner, "work_directory", None)
    if work is not None:
        try:
            os.unlink(os.path.join(str(work), psij_job.id + BATCH_SCRIPT))
        except OSError:
            pass


def _process_gone(pid: int, timeout: float) -> bool:
    """Whether ``pid`` has ended (or is a zombie) within ``timeout`` s; never reaps it
    (psij's reaper must see its exit status)."""
    import psutil
    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def _same_process(native: str, started: Optional[float]) -> bool:
    import psutil
    try:
        proc = psutil.Process(int(native))
        return started is not None and abs(proc.create_time() - started) < 0.5 and \
            proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False
