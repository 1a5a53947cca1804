"""Autograding a class: which submissions need grading, where their jobs run, and recording
the results as they come back, through one writer (:class:`grader.autograde.record.Recorder`).

Jobs run (see :func:`run_jobs`)

- in this process, one after another (``workers=1``);
- in N worker processes on this machine (``workers=N``), each grading one job at a time, so
  :func:`grader.autograde.pipeline.grade_submission` may swap ``os.environ``. A worker that dies (a
  crash, a kill) fails only the job it held and is replaced, where a
  ``concurrent.futures`` pool would break and fail every pending job;
- on a Dask cluster (``scheduler=ADDRESS``): ``client.submit`` per job, gathered with
  ``as_completed``. A Dask worker runs one job at a time per process (they swap
  ``os.environ``): start workers with ``--nthreads 1`` and ``--nworkers`` = cores. Workers
  need the same course checkout at the same path (a shared or identical file system).

Results are identical whichever way they ran: the parent records them in completion order, and
each recorded submission commits on its own, so an interrupted run keeps every recorded grade
and the next run grades only what is left.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from grader.autograde.pipeline import Job, Result, checks_version, grade_submission, make_job, make_template
from grader.autograde.record import FAILED, Inputs, Recorder
from grader.config import Course, UsageError, nbgrader_config
from grader.sandbox.box import drain
from grader.sandbox.template import close_templates

__all__ = ["autograde", "run_jobs", "failed_result"]

_SUMMARY_EVERY = 10.0  # seconds between summary exports during a run (and once at its end)
_GRACE = 5.0           # seconds an interrupted job gets to clean up before it is killed


def failed_result(job: Job, message: str, seconds: float = 0.0) -> Result:
    """The result of a job that produced no grade; the next run grades it again."""
    return Result(assignment=job.assignment, student=job.student, outcome=FAILED, seconds=seconds,
                  sha256=job.sha256, checks_version=job.checks_version, settings=job.settings,
                  timestamp=job.timestamp, message=message)


def _grade(job: Job) -> Result:
    """grade_submission, after making sure the checks on disk are the ones the run started
    with (they may have been edited meanwhile, or differ on a remote worker)."""
    start = time.perf_counter()
    try:
        here = checks_version(Course(Path(job.course_root), Path(job.course_root)), job.assignment)
        if here != job.checks_version:
            return failed_result(job, f"the checks under {job.course_root}/grader/checks are version {here}, "
                                      f"the run started with {job.checks_version}: grade again")
        return grade_submission(job)
    except Exception as exc:  # one broken job must not stop the batch
        return failed_result(job, f"grading crashed: {type(exc).__name__}: {exc}", time.perf_counter() - start)


# -- worker processes on this machine ------------------------------------------------------

def _worker(conn: Connection, env: dict[str, str]) -> None:
    """A worker process: its own process group (so the parent can stop it with everything it
    started), the parent's environment; grades the jobs it receives until it gets None."""
    os.setpgid(0, 0)
    os.environ.clear()
    os.environ.update(env)
    try:
        while (job := conn.recv()) is not None:
            conn.send(_grade(job))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):  # the run stopped or its parent died
        pass
    finally:
        drain()  # kernels stopped in the background; multiprocessing skips atexit
        close_templates()


def _context() -> mp.context.BaseContext:
    """forkserver (workers forked from a clean, single-threaded server that has imported
    nbgrader once per run of this program) where the platform has it, else spawn."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["grader.autograde.pipeline"])
        return ctx
    return mp.get_context("spawn")


def _killpg(pid: int | None, sig: signal.Signals) -> None:
    try:
        if pid is not None:
            os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _Workers:
    """Up to N worker processes, each grading one job at a time. A worker that dies fails only
    the job it held, and a new one takes its place."""

    def __init__(self, size: int) -> None:
        self.ctx, self.size = _context(), size
        self.idle: list[tuple[Any, Connection]] = []
        self.busy: dict[Connection, tuple[Any, Job, float]] = {}

    def _start(self) -> tuple[Any, Connection]:
        ours, theirs = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(theirs, dict(os.environ)), name="grader-worker", daemon=True)
        proc.start()
        theirs.close()  # the worker holds the only other end: EOF when it dies
        return proc, ours

    def submit(self, job: Job) -> None:
        proc, conn = self.idle.pop() if self.idle else self._start()
        conn.send(job)
        self.busy[conn] = (proc, job, time.perf_counter())

    def has_room(self) -> bool:
        return len(self.busy) < self.size

    def results(self) -> Iterator[Result]:
        """Wait for at least one busy worker; yield what the finished ones return."""
        for conn in wait(list(self.busy)):
            proc, job, start = self.busy.pop(conn)
            try:
                result = conn.recv()
                self.idle.append((proc, conn))
            except (EOFError, OSError):  # the worker is gone (EOF, or a reset mid-message)
                proc.join()
                conn.close()
                code = proc.exitcode
                cause = f"killed by signal {-code}" if code and code < 0 else f"exit status {code}"
                result = failed_result(job, f"the grading process died ({cause}) before it returned "
                                            "a result", time.perf_counter() - start)
                _killpg(proc.pid, signal.SIGKILL)  # what the job had started
            yield result

    def close(self) -> None:
        """Stop idle workers; interrupt busy ones (SIGINT: kernels shut down, scratch folders
        go), then kill their process groups."""
        for proc, conn in self.idle:
            try:
                conn.send(None)
            except OSError:  # already gone
                pass
        for proc, _, _ in self.busy.values():
            _killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + _GRACE
        for proc in [p for p, _ in self.idle] + [p for p, _, _ in self.busy.values()]:
            proc.join(max(0.0, deadline - time.monotonic()))
            _killpg(proc.pid, signal.SIGKILL)
            proc.join()


def _pool(jobs: Iterable[Job], workers: int) -> Iterator[Result]:
    """Jobs are taken from ``jobs`` only as workers free up: a class of thousands is never
    all in memory, and no worker starts when there is nothing to grade."""
    pool, queue, more = _Workers(workers), iter(jobs), True
    try:
        while True:
            while more and pool.has_room():
                job = next(queue, None)
                if job is None:
                    more = False
                else:
                    pool.submit(job)
            if not pool.busy:
                return
            yield from pool.results()
    finally:
        pool.close()


# -- Dask -------------------------------------------------------------------------------------

_ONE_JOB = threading.Lock()


def _dask_task(job: Job, shared: dict[str, Any]) -> Result:
    """A job on a Dask worker, with the parts every job shares (scattered once) put back.
    One at a time per worker process: grading swaps os.environ, which threads share."""
    with _ONE_JOB:
        return _grade(replace(job, **shared))


def _dask(jobs: list[Job], address: str) -> Iterator[Result]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise UsageError("--scheduler needs Dask distributed: pip install 'deeptrain-course[cluster]'") from None
    try:
        client = Client(address, timeout="30s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    futures: dict[Any, Job] = {}
    try:
        if jobs:
            # template and assignment files are the same in every job: ship them once
            [shared] = client.scatter([{"template_db": jobs[0].template_db, "extra_files": jobs[0].extra_files}],
                                      broadcast=True, hash=False)
            run = uuid.uuid4().hex[:8]
            for job in jobs:
                light = replace(job, template_db=b"", extra_files={})
                futures[client.submit(_dask_task, light, shared, pure=False, retries=0,
                                      key=f"grade-{job.assignment}-{job.student}-{run}")] = job
        for future in as_completed(futures, loop=client.loop):
            job = futures.pop(future)
            try:
                yield future.result()
            except Exception as exc:  # lost worker, unpicklable result...
                yield failed_result(job, f"the Dask task failed: {type(exc).__name__}: {exc}")
    finally:
        if futures:
            client.cancel(list(futures))
        client.close()


def run_jobs(jobs: Iterable[Job], *, workers: int = 1, scheduler: str | None = None) -> Iterator[Result]:
    """Grade ``jobs`` here (``workers=1``), in ``workers`` processes, or on the Dask cluster at
    ``scheduler``; yield each result as it completes. Closing the iterator stops the jobs."""
    if scheduler is not None:
        yield from _dask(list(jobs), scheduler)
    elif workers == 1:
        for job in jobs:
            yield _grade(job)
    else:
        yield from _pool(jobs, workers)


def _up_to_date(last: Inputs | None, job: Job, course: Course) -> bool:
    return (last is not None and last.outcome != FAILED
            and (last.sha256, last.checks_version, last.settings) == (job.sha256, job.checks_version, job.settings)
            and (last.outcome != "graded" or (course.autograded / job.student / job.assignment).is_dir()))


def autograde(course: Course, assignment: str, students: Iterable[str] | None = None, *,
              regrade: bool = False, exercise: str | None = None, workers: int = 1,
              scheduler: str | None = None, timeout: int = 60, late_penalty: str = "none",
              due: str | None = None, on_result: Callable[[Result | None, str], None] | None = None
              ) -> list[Result]:
    """Grade every submission in work/submitted/*/<assignment> (or only ``students``) and record
    the results; returns them in the order they were recorded.

    A submission recorded from the same file, checks version and settings is up to date and
    skipped, unless ``regrade``: re-running is idempotent, and an interrupted run resumes.
    ``exercise`` (a graded cell's grade_id) regrades every submission but records only that
    exercise (after one check was fixed). ``workers`` / ``scheduler``: see :func:`run_jobs`.
    ``due`` (ISO 8601, e.g. 2026-11-01T23:59:00+01:00) sets the deadline for late penalties.
    ``on_result(result, student)`` reports progress (result None: skipped, up to date).
    Worker processes start the multiprocessing way (forkserver or spawn): a script that calls
    this with ``workers > 1`` needs the ``if __name__ == "__main__":`` guard.
    """
    if workers < 1:
        raise UsageError(f"--workers {workers}: give a number of processes >= 1")
    if scheduler is not None and workers != 1:
        raise UsageError("give either --workers (processes on this machine) or --scheduler (a Dask "
                         "cluster, whose workers set the parallelism), not both")
    from nbgrader.utils import parse_utc

    nbgrader_config(course, late_penalty=late_penalty)  # a bad --late-penalty stops here, not in every job
    try:
        deadline = parse_utc(due) if due is not None else None
    except (ValueError, OverflowError):
        raise UsageError(f"--due {due!r} is not a time; write it as ISO 8601, e.g. "
                         "2026-11-01T23:59:00+01:00") from None
    results: list[Result] = []
    with Recorder(course) as rec:
        exercises = rec.exercises(assignment)
        if exercise is not None and exercise not in exercises:
            raise UsageError(f"{assignment} has no graded cell {exercise!r}; its exercises: {', '.join(exercises)}")
        if deadline is not None:
            rec.gradebook.update_or_create_assignment(assignment, duedate=deadline)
        duedate = rec.gradebook.find_assignment(assignment).duedate
        template = make_template(course.db_url, assignment, course.notebooks / assignment)
        version = checks_version(course, assignment)
        settings = f"late_penalty={late_penalty} timeout={timeout} due={duedate}"
        folders = {p.parent.name: p for p in sorted(course.submitted.glob(f"*/{assignment}")) if p.is_dir()}
        wanted = list(students) if students is not None else sorted(folders)
        missing = [s for s in wanted if s not in folders]
        if missing:
            raise UsageError(f"no submission of {assignment} for {missing} under {course.submitted}")
        recorded = rec.inputs(assignment)

        def jobs() -> Iterator[Job]:  # made as they are needed, up-to-date ones reported
            for student in wanted:
                job = make_job(course, assignment, student, folders[student], template, due=duedate, timeout=timeout,
                               late_penalty=late_penalty, checks_version=version, settings=settings)
                if regrade or exercise or not _up_to_date(recorded.get(student), job, course):
                    yield job
                elif on_result:
                    on_result(None, student)

        exported = time.monotonic()
        stream = run_jobs(jobs(), workers=workers, scheduler=scheduler)
        try:
            for result in stream:
                rec.record(result, exercise)
                results.append(result)
                if on_result:
                    on_result(result, result.student)
                if time.monotonic() - exported > _SUMMARY_EVERY:
                    rec.write_summary(assignment)
                    exported = time.monotonic()
        finally:
            stream.close()  # stops unfinished jobs when recording was interrupted
            rec.write_summary(assignment)
    return results
