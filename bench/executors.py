"""Executors: where jobs run. Each yields :class:`bench.execute.JobResult` as jobs finish; the driver
writes records as they arrive, so a crash loses only unfinished jobs.

- ``local``: one job after another in this process (``--parallel 1``), or N jobs at once in worker
  processes (``--parallel N``) that share the GPU or split the CPU cores; a worker that dies loses only its
  job, which is run again.
- ``ray``: each job is a Ray task with declared resources (``num_cpus``, fractional ``num_gpus``); the
  data travels through Ray's object store, or is read from the cache when it is shared; Ray re-runs a
  task whose worker died.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from bench.execute import JobResult, Settings, run_job
from bench.plan import JobPlan
from bench.prepare import Prepared
from bench.suite import Suite

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


class ExecutorError(RuntimeError):
    """An executor cannot start or a job failed beyond its retries; the message says what to do."""


def _quiet(job: JobPlan) -> None:
    """The default ``started`` callback: say nothing."""


class Executor(Protocol):
    """Runs jobs somewhere and yields their results as they finish."""

    @property
    def slots(self) -> int | None:
        """How many jobs run at once (None: as many as a cluster offers, not known here)."""

    def run(self, suite: Suite, jobs: list[JobPlan], data: Prepared, settings: Settings,
            started: Callable[[JobPlan], None] = _quiet) -> Iterator[JobResult]:
        """Run ``jobs``, calling ``started`` as each starts (or is handed to a worker), yielding results."""


def subset_folder(settings: Settings) -> Path:
    """Where prepared subsets are stored for workers that read them from the cache."""
    return Path(settings.data_dir) / "subsets"


@dataclass(frozen=True)
class SerialExecutor:
    """One job after another in this process."""

    @property
    def slots(self) -> int:
        return 1

    def run(self, suite: Suite, jobs: list[JobPlan], data: Prepared, settings: Settings,
            started: Callable[[JobPlan], None] = _quiet) -> Iterator[JobResult]:
        for job in jobs:
            started(job)
            yield run_job(suite, job, data, settings)


def _threads(settings: Settings, workers: int) -> int:
    return settings.threads or max(1, (os.cpu_count() or 1) // workers)


@dataclass(frozen=True)
class ProcessExecutor:
    """``workers`` jobs at once in spawned worker processes, reading the prepared data from the cache."""

    workers: int
    retries: int = 2

    @property
    def slots(self) -> int:
        return self.workers

    def run(self, suite: Suite, jobs: list[JobPlan], data: Prepared, settings: Settings,
            started: Callable[[JobPlan], None] = _quiet) -> Iterator[JobResult]:
        stored = data.stored(subset_folder(settings))
        settings = replace(settings, threads=_threads(settings, self.workers), progress=False)
        queue, attempts = deque(jobs), dict.fromkeys((j.key for j in jobs), 0)
        while queue:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(self.workers, mp_context=context) as pool:
                futures: dict[Future, JobPlan] = {}
                broken: list[JobPlan] = []
                while queue or futures:
                    while queue and not broken and len(futures) < self.workers:  # "started" means started
                        job = queue.popleft()
                        started(job)
                        futures[pool.submit(run_job, suite, job, stored, settings)] = job
                    if not futures:
                        break
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        job = futures.pop(future)
                        try:
                            yield future.result()
                        except BrokenProcessPool:
                            attempts[job.key] += 1
                            if attempts[job.key] > self.retries:
                                raise ExecutorError(f"job {job.label}: its worker process died "
                                                    f"{attempts[job.key]} times") from None
                            log.warning("job %s: its worker process died; running it again", job.label)
                            broken.append(job)
                queue.extendleft(reversed(broken))  # a new pool runs them first


def _ray_job(suite: Suite, job: JobPlan, data: Prepared, settings: Settings) -> JobResult:
    return run_job(suite, job, data, settings)


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

    def run(self, suite: Suite, jobs: list[JobPlan], data: Prepared, settings: Settings,
            started: Callable[[JobPlan], None] = _quiet) -> Iterator[JobResult]:
        try:
            import ray
        except ImportError:
            raise ExecutorError("the ray executor needs Ray: pip install -e '.[ray]'") from None
        own_instance = not ray.is_initialized()
        if own_instance:
            options = {"address": self.address} if self.address else {
                "num_cpus": int(self.parallel * self.cpus_per_job) if self.parallel else None}
            ray.init(**options, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        try:
            task = ray.remote(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job,
                              max_retries=self.retries)(_ray_job)
            payload = data.stored(subset_folder(settings)) if self.shared_cache else ray.put(data)
            settings = replace(settings, threads=settings.threads or max(1, int(self.cpus_per_job)), progress=False)
            refs = {}
            for job in jobs:
                started(job)
                refs[task.remote(suite, job, payload, settings)] = job
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    job = refs.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        raise ExecutorError(f"job {job.label} failed on Ray: {exc}") from exc
        finally:
            if own_instance:
                ray.shutdown()


def make_executor(name: str, parallel: int = 1, address: str | None = None, gpus_per_job: float | None = None,
                  cpus_per_job: float = 1, shared_cache: bool = False) -> Executor:
    """The executor ``name`` (``local`` or ``ray``) with its settings."""
    if name == "ray":
        gpus = gpus_per_job if gpus_per_job is not None else 0.0
        return RayExecutor(address, parallel if parallel > 1 else None, cpus_per_job, gpus, shared_cache)
    if name != "local":
        raise ExecutorError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    return ProcessExecutor(parallel) if parallel > 1 else SerialExecutor()
