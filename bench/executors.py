"""Executors: where jobs run. Each runs the driver's ``work`` (:func:`bench.execute.run_job`) on every job and yields,
as jobs finish, its :class:`bench.execute.JobResult` or a :class:`JobFailure`; the driver writes records as they
arrive, so a crash loses only unfinished jobs. Executors are registered plugins (:data:`EXECUTORS`, made from the
command line's :class:`ExecutorOptions`); this module imports neither torch nor the job code, so that the command
line lists them at once.

- ``local``: one job after another in this process (``--parallel 1``), or N jobs at once in worker
  processes (``--parallel N``) that share the GPU or split the CPU cores; a worker that dies loses only its
  job, which is run again. Workers die with the driver (a parent-death signal on Linux and a watchdog on the
  driver's pid), ignore Ctrl-C (the driver stops them) and are killed when the driver stops early.
- ``ray``: each job is a Ray task with declared resources (``num_cpus``, fractional ``num_gpus``); the
  data travels through Ray's object store, or is read from the cache when it is shared; a task whose worker
  died is run again, and the log says so.

A job that raises (a broken plugin, a diverged training, scores that are not finite) does not stop the run:
it becomes a :class:`JobFailure` naming the reason, and every other job runs. Only a full disk stops the run,
since every later job would fail the same way.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bench.registry import Registry, summary

if TYPE_CHECKING:  # the job code imports torch; executors only hand it out
    from bench.execute import JobResult, Settings, WorkerSuite
    from bench.plan import JobPlan
    from bench.prepare import Prepared

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): the signal a process gets when its parent dies
WATCHDOG_SECONDS = 1.0
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class ExecutorError(RuntimeError):
    """An executor cannot start; the message says what to do."""


@dataclass(frozen=True)
class JobFailure:
    """A job that failed: its key and label, and why (one line). The run goes on without it."""

    job: str
    label: str
    reason: str


if TYPE_CHECKING:
    Outcome = JobResult | JobFailure
    Work = Callable[[WorkerSuite, JobPlan, Prepared, Settings], JobResult]  # what runs a job: bench.execute.run_job


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a disk (or quota) is full."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def failure_reason(exc: BaseException) -> str:
    """``ExceptionType: first line of its message``."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def attempt(work: Work, suite: WorkerSuite, job: JobPlan, data: Prepared, settings: Settings) -> Outcome:
    """Run ``work`` on ``job``; a job that raises becomes a :class:`JobFailure` (a full disk, or Ctrl-C, still stops
    the run)."""
    try:
        return work(suite, job, data, settings)
    except Exception as exc:
        if disk_full(exc):
            raise
        return JobFailure(job.key, job.label, failure_reason(exc))


def _quiet(job: JobPlan) -> None:
    """The default ``started`` callback: say nothing."""


class Executor(Protocol):
    """Runs jobs somewhere and yields their outcomes as they finish."""

    @property
    def slots(self) -> int | None:
        """How many jobs run at once (None: as many as a cluster offers, not known here)."""

    def run(self, work: Work, suite: WorkerSuite, jobs: list[JobPlan], data: Prepared, settings: Settings,
            started: Callable[[JobPlan], None] = _quiet) -> Iterator[Outcome]:
        """Run ``work`` on each of ``jobs`` (a module-level function, which worker processes import), calling
        ``started`` as each starts (or is handed to a worker), yielding outcomes."""


def subset_folder(settings: Settings) -> Path:
    """Where prepared subsets are stored for workers that read them from the cache."""
    return Path(settings.data_dir) / "subsets"


@dataclass(frozen=True)
class SerialExecutor:
    """One job after another in this process."""

    @property
    def slots(self) -> int:
        return 1

    def run(self, work: Work, suite: WorkerSuite, jobs: list[JobPlan], data: Prepared, settings: Settings,
            started: Callable[[JobPlan], None] = _quiet) -> Iterator[Outcome]:
        for job in jobs:
            started(job)
            yield attempt(work, suite, job, data, settings)


def _threads(settings: Settings, workers: int) -> int:
    return settings.threads or max(1, (os.cpu_count() or 1) // workers)


def _watch(parent: int) -> None:
    """Exit as soon as this process's parent is no longer ``parent`` (it died and this process was re-parented)."""
    while os.getppid() == parent:
        time.sleep(WATCHDOG_SECONDS)
    os._exit(1)


def die_with_parent(parent: int) -> None:
    """Worker initializer: this process ends when the driver ``parent`` dies, however it dies (SIGKILL at once on
    Linux through prctl's parent-death signal; elsewhere, or if that fails, within a second through a watchdog
    thread), and ignores Ctrl-C, which the driver handles by stopping its workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the driver died before the signal was asked for
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="watch-driver", daemon=True).start()


@contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back until the block ends (where the platform can), so that it cannot cut a worker's
    start in half; processes started inside inherit it blocked, so a Ctrl-C at the terminal reaches only the
    driver, which stops them."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` spawned worker processes that die with this process (see :func:`die_with_parent`)."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with_parent, initargs=(os.getpid(),))


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and kill the pool's worker processes now, without waiting for their jobs."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # the stdlib keeps no public handle
        process.kill()
        process.join(timeout=10)


@dataclass(frozen=True)
class ProcessExecutor:
    """``workers`` jobs at once in spawned worker processes, reading the prepared data from the cache."""

    workers: int
    retries: int = 2

    @property
    def slots(self) -> int:
        return self.workers

    def run(self, work: Work, suite: WorkerSuite, jobs: list[JobPlan], data: Prepared, settings: Settings,
            started: Callable[[JobPlan], None] = _quiet) -> Iterator[Outcome]:
        stored = data.stored(subset_folder(settings))
        settings = replace(settings, threads=_threads(settings, self.workers), progress=False)
        queue, attempts = deque(jobs), dict.fromkeys((j.key for j in jobs), 0)
        while queue:
            pool = worker_pool(self.workers)
            try:
                broken = yield from self._round(pool, queue, attempts, work, suite, stored, settings, started)
            except BaseException:  # Ctrl-C, or the driver stopped reading (an error while publishing)
                stop_workers(pool)
                raise
            pool.shutdown()
            queue.extendleft(reversed(broken))  # a new pool runs them first

    def _round(self, pool: ProcessPoolExecutor, queue: deque[JobPlan], attempts: dict[str, int], work: Work,
               suite: WorkerSuite, data: Prepared, settings: Settings, started: Callable[[JobPlan], None]
               ) -> Iterator[Outcome]:
        """Run jobs from ``queue`` on ``pool`` until it is empty or the pool breaks; returns the jobs to run again
        (those whose worker died)."""
        futures: dict[Future, JobPlan] = {}
        broken: list[JobPlan] = []
        while queue or futures:
            while queue and not broken and len(futures) < self.workers:  # "started" means started
                job = queue.popleft()
                started(job)
                with ctrl_c_deferred():  # submitting may start a worker
                    futures[pool.submit(attempt, work, suite, job, data, settings)] = job
            if not futures:
                break
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                job = futures.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    attempts[job.key] += 1
                    if attempts[job.key] > self.retries:
                        yield JobFailure(job.key, job.label, f"its worker process died {attempts[job.key]} times "
                                         "(out of memory?)")
                        continue
                    log.warning("job %s: its worker process died; running it again", job.label)
                    broken.append(job)
                    continue
                yield outcome
        return broken


@dataclass(frozen=True)
class RayExecutor:
    """Jobs as Ray tasks on a running cluster (``address``) or on a local instance started here."""

    address: str | None = None
    parallel: int | None = None  # jobs at once on a local instance (its CPU count)
    cpus_per_job: float = 1
    gpus_per_job: float = 0
    shared_cache: bool = False  # workers read prepared data from the cache instead of the object store
    retries: int = 3

    @property
    def slots(self) -> int | None:
        return self.parallel

    def run(self, work: Work, suite: WorkerSuite, jobs: list[JobPlan], data: Prepared, settings: Settings,
            started: Callable[[JobPlan], None] = _quiet) -> Iterator[Outcome]:
        try:
            import ray
        except ImportError:
            raise ExecutorError("the ray executor needs Ray: pip install -e '.[ray]'") from None
        own_instance = not ray.is_initialized()
        if own_instance:
            options = {"address": self.address} if self.address else {
                "num_cpus": int(self.parallel * self.cpus_per_job) if self.parallel else None}
            ray.init(**options, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        died = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)
        try:
            task = ray.remote(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job, max_retries=0)(attempt)
            payload = data.stored(subset_folder(settings)) if self.shared_cache else ray.put(data)
            settings = replace(settings, threads=settings.threads or max(1, int(self.cpus_per_job)), progress=False)
            refs, attempts = {}, dict.fromkeys((j.key for j in jobs), 0)
            for job in jobs:
                started(job)
                refs[task.remote(work, suite, job, payload, settings)] = job
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    job = refs.pop(ref)
                    try:
                        yield ray.get(ref)
                    except died as exc:
                        attempts[job.key] += 1
                        if attempts[job.key] > self.retries:
                            yield JobFailure(job.key, job.label, f"its Ray worker died {attempts[job.key]} times "
                                             f"({failure_reason(exc)})")
                            continue
                        log.warning("job %s: its Ray worker died; running it again", job.label)
                        refs[task.remote(work, suite, job, payload, settings)] = job
                    except ray.exceptions.RayError as exc:
                        yield JobFailure(job.key, job.label, f"failed on Ray: {failure_reason(exc)}")
        finally:
            if own_instance:
                ray.shutdown()


@dataclass(frozen=True)
class ExecutorOptions:
    """The command line's executor settings; each executor takes those it uses."""

    parallel: int = 1  # jobs at once (ray: a local instance's job slots)
    address: str | None = None  # ray: the cluster to join
    gpus_per_job: float | None = None  # ray: GPUs per job (None: none)
    cpus_per_job: float = 1  # ray: CPUs per job
    shared_cache: bool = False  # ray: workers read prepared data from the cache


ExecutorFactory = Callable[[ExecutorOptions], "Executor"]


@dataclass(frozen=True)
class ExecutorSpec:
    """A registered executor: a factory of executors from :class:`ExecutorOptions`, and what it is."""

    name: str
    factory: ExecutorFactory
    description: str = ""


EXECUTORS: Registry[ExecutorSpec] = Registry("executor", "bench.executors", "bench.executors", spec_type=ExecutorSpec)


def register_executor(name: str) -> Callable[[ExecutorFactory], ExecutorFactory]:
    """Decorator that registers a factory of executors (taking :class:`ExecutorOptions`) as ``bench run --executor
    NAME``; its docstring's first line describes it in `bench list executors`."""

    def decorate(factory: ExecutorFactory) -> ExecutorFactory:
        EXECUTORS.register(name, ExecutorSpec(name, factory, summary(factory)), origin=factory.__module__)
        return factory

    return decorate


@register_executor("local")
def local(options: ExecutorOptions) -> Executor:
    """This machine: one job after another, or --parallel N jobs at once in worker processes."""
    return ProcessExecutor(options.parallel) if options.parallel > 1 else SerialExecutor()


@register_executor("ray")
def ray_tasks(options: ExecutorOptions) -> Executor:
    """Ray tasks on a cluster (--address), or on a Ray instance started here (needs pip install -e '.[ray]')."""
    return RayExecutor(options.address, options.parallel if options.parallel > 1 else None, options.cpus_per_job,
                       options.gpus_per_job or 0.0, options.shared_cache)


def make_executor(name: str, options: ExecutorOptions = ExecutorOptions()) -> Executor:
    """The registered executor ``name`` with ``options``."""
    return EXECUTORS.get(name).factory(options)
