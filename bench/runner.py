"""The driver of a run: prepare → plan → execute → publish.

Only this process writes records (workers return them); a cell whose record exists is skipped and a job
whose cells are all recorded is not run, so an interrupted run resumes. A job that fails (its reason kept in
``failures/``) does not stop the others; the run then reports it and the leaderboard shows its cells as failed.
Before anything is imported or trained, a run refuses a results folder that holds another suite's records and
a detector whose parameters would not fit (counted on the meta device, without allocating them), removes the
temporary files of killed runs from the results folder, and accepts a read-only cache that holds every source
and checkpoint it needs. With ``retrain`` a run trains every job again, replacing its cached checkpoints, and
rescores every cell. Each job uses the run's CPU thread count, else the suite's ``threads``. :meth:`Runner.dry_run`
says what a run would do, with an estimated time (:mod:`bench.estimate`), without training or writing anything (it
may swap a source's kept previous copy back into place, a rename that makes and loses nothing); it lists the jobs
and cells from the suite alone while sources are still to be imported or generated, and a detector that fails its
timing is named there, not raised.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.checkpoints import CheckpointStore
from bench.detector import DETECTORS
from bench.estimate import Estimate, duration, estimate
from bench.execute import Settings, WorkerSuite, run_job
from bench.executors import Executor, JobFailure, SerialExecutor, disk_full
from bench.files import NotWritableError, check_writable
from bench.plan import CellOutline, CellPlan, JobOutline, JobPlan, Plan, PlanError, outline, plan
from bench.prepare import Prepared, Preparer, SourceStatus, survey
from bench.provenance import git_commit
from bench.publish import Publisher
from bench.records import Record
from bench.suite import DetectorEntry, Suite
from bench.training import no_bars, pick_device

log = logging.getLogger(__name__)

MAX_PARAMETERS = 2_000_000_000  # a detector with more would not fit a GPU's memory with its optimizer state


@dataclass
class RunSummary:
    """What a run did (``failed``: the jobs that failed, each with its reason)."""

    computed: list[Path]
    skipped: list[Path]
    leaderboard: dict[str, Path]
    records: list[Record]
    failed: list[JobFailure] = field(default_factory=list)


def parameter_count(entry: DetectorEntry) -> int | None:
    """How many parameters ``entry``'s model would have, counted on the meta device (nothing allocated); None for
    an estimator, or a factory that cannot build on the meta device (it is then not counted)."""
    spec = DETECTORS.get(entry.name)
    if not spec.differentiable:
        return None
    try:
        with torch.device("meta"):
            model = spec.factory(**entry.kwargs)
    except Exception as exc:  # any plugin error: the job itself reports it, isolated, when it runs
        log.debug("%s cannot be built on the meta device (%s): its size is not checked", entry.name, exc)
        return None
    return sum(p.numel() for p in model.parameters())


def check_sizes(suite: Suite, limit: int = MAX_PARAMETERS) -> None:
    """Raise :class:`PlanError` for a detector of ``suite`` whose arguments make a model of more than ``limit``
    parameters, before any of it is allocated."""
    for entry in suite.detectors:
        count = parameter_count(entry)
        if count is not None and count > limit:
            raise PlanError(f"detector {entry.name!r} with kwargs {entry.kwargs} would have {count:.3g} parameters, "
                            f"more than the {limit:.3g} a run allows: give it smaller arguments")


UNWRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


@contextmanager
def _stop_when_unwritable(folder: Path, computed: list[Path]) -> Iterator[None]:
    """A full disk (or quota), or a file that may not be written, becomes one line saying that what was written is
    kept and rerunning resumes."""
    try:
        yield
    except OSError as exc:
        kept = f"{len(computed)} cells of this run were written and are kept"
        if disk_full(exc):
            raise NotWritableError(f"no space left on the device writing {exc.filename or folder} ({kept}): free some "
                                   "space and rerun the same command, which resumes") from None
        if exc.errno in UNWRITABLE:
            raise NotWritableError(f"cannot write {exc.filename or folder} ({exc.strerror}; {kept}): fix its "
                                   "permissions, or give a writable --data-dir or --results, and rerun") from None
        raise


@dataclass
class DryRun:
    """What a run would do: sources, jobs and cells (from the suite alone until its sources are prepared; then with
    their keys, cached checkpoints and records), and the estimate of what is left."""

    sources: list[SourceStatus]
    jobs: list[JobOutline]  # every job of the suite, in order: as the suite names it, or what is left of it
    plan: Plan | None  # None: sources are still to be imported or generated, so nothing is keyed yet
    pending: list[JobPlan]
    cached_checkpoints: set[str]
    recorded: set[str]
    estimate: Estimate

    def summary(self) -> str:
        """One line: jobs, cells and the estimate."""
        if self.plan is None:
            cells = sum(len(j.cells) for j in self.jobs)
            prepare = [s.name for s in self.sources if s.action != "cached"]
            return (f"{len(self.jobs)} jobs, {cells} cells; {len(prepare)} sources to prepare first "
                    f"({', '.join(prepare)}), then cell keys follow from their images: {self.estimate.line()}")
        return (f"{len(self.plan.jobs)} jobs ({len(self.plan.jobs) - len(self.pending)} done), "
                f"{len(self.plan.cells)} cells ({len(self.recorded)} recorded): {self.estimate.line()}")

    def text(self) -> str:
        """The full report that ``bench run --dry-run`` prints."""
        lines = ["Sources:"]
        lines += [f"  {s.name:<28} {s.importer:<10} {s.count if s.count is not None else '?':>7} images  "
                  f"{s.action}{f' ({s.reason})' if s.reason else ''}" for s in self.sources]
        keyed = "" if self.plan else "; what is cached is known once the sources are prepared"
        lines.append(f"Jobs (detector on training set, seed: grid candidates, cells; estimated time{keyed}):")
        for position, job in enumerate(self.jobs):
            cost = self.estimate.costs.get(position)
            when = ("nothing to do" if not (job.recipes or job.cells) else f"~{duration(cost.total)}" if cost
                    else "not estimated")
            counts = f"{len(job.recipes)} candidates, {len(job.cells)} cells"
            if self.plan is not None:
                planned = self.plan.jobs[position]
                cached = sum(c.key in self.cached_checkpoints for c in planned.candidates)
                done = sum(c.key in self.recorded for c in planned.cells)
                counts = (f"{len(planned.candidates)} candidates ({cached} cached), {len(planned.cells)} cells "
                          f"({done} recorded)")
            lines.append(f"  {job.label}: {counts}; {when}")
        first = self.plan.jobs if self.plan else self.jobs
        lines += _cells(first[0].cells) if first else []
        lines.append(self.summary())
        return "\n".join(lines)


def _cells(cells: Sequence[CellOutline | CellPlan]) -> list[str]:
    """The cells of a job, listed once (every job of a suite scores the same test sources and perturbations)."""
    fakes = list(dict.fromkeys(c.test_fake for c in cells))
    perturbations = list(dict.fromkeys(c.perturbation.label for c in cells))
    return [f"Cells of each job ({len(fakes)} test sources x {len(perturbations)} perturbations):",
            f"  test sources: {', '.join(fakes)}", f"  perturbations: {', '.join(perturbations)}"]


class Runner:
    """Runs suites against a data directory (cache); records and leaderboard go to ``results_dir``."""

    def __init__(
        self,
        data_dir: Path,
        results_dir: Path,
        data_root: Path | None = None,
        device: str = "auto",
        progress: bool | None = None,
        executor: Executor | None = None,
        report: Callable[[str], None] | None = None,
        threads: int | None = None,
        retrain: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.results_dir = Path(results_dir)
        self.device = str(pick_device(device))
        self.progress = progress
        self.threads = threads  # torch CPU threads per job (None: the suite's, else all cores split among workers)
        self.retrain = retrain  # train every job again (replacing its cached checkpoints) and rescore every cell
        self.executor = executor or SerialExecutor()
        self.report = report or (lambda line: log.info("%s", line))  # one line per job when not on a terminal
        self.preparer = Preparer(self.data_dir, data_root, self.device, progress, report=self.report)
        self.data_root = data_root
        self.publisher = Publisher(self.results_dir)
        git_commit()  # read now: records name the code this process started with, not a later checkout

    def plan(self, suite: Suite) -> tuple[Plan, Prepared]:
        """Prepare the suite's data (importing or generating what is missing) and plan it."""
        data = self.preparer.prepare(suite)
        return plan(suite, data), data

    def dry_run(self, suite: Suite) -> DryRun:
        """What :meth:`run` would do, without importing, training or writing anything: the jobs and cells from the
        suite alone while sources are still to be prepared, else the plan with what is cached and recorded."""
        check_sizes(suite)
        self._use_threads(suite)  # the estimate measures what the run will use
        statuses = survey(suite, self.preparer.store, self.data_root)
        jobs = outline(suite)
        if any(s.action != "cached" for s in statuses):
            return DryRun(statuses, jobs, None, [], set(), set(), self._estimate(suite, jobs, statuses))
        the_plan, _ = self.plan(suite)
        recorded, cached = self._done(the_plan)
        pending = [j for j in the_plan.jobs if any(c.key not in recorded for c in j.cells)]
        left = [j.remaining(cached, recorded) for j in the_plan.jobs]
        return DryRun(statuses, left, the_plan, pending, cached, recorded, self._estimate(suite, left, statuses))

    def _estimate(self, suite: Suite, jobs: list[JobOutline], sources: list[SourceStatus]) -> Estimate:
        return estimate(suite, jobs, sources, self.device, self.executor.slots)

    def _use_threads(self, suite: Suite) -> int | None:
        """Torch CPU threads per job: the run's, else the suite's (None: torch's default), set here for the
        estimate; each job sets its own."""
        threads = self.threads or suite.threads
        if threads:
            torch.set_num_threads(threads)
        return threads

    def _done(self, the_plan: Plan) -> tuple[set[str], set[str]]:
        """Keys of the plan's recorded cells and cached checkpoints (none when retraining)."""
        if self.retrain:
            return set(), set()
        checkpoints = CheckpointStore(self.data_dir)
        return (self.publisher.recorded(the_plan),
                {c.key for j in the_plan.jobs for c in j.candidates if checkpoints.has(c.key)})

    def run(self, suite: Suite, before: Callable[[Estimate], None] | None = None, render: bool = True) -> RunSummary:
        """Run every cell of ``suite`` that has no record yet (every cell, retraining every job, with ``retrain``),
        then render its leaderboard and source cards (unless ``render`` is false, as for a check that reads only the
        records).

        ``before`` is called with the estimate of the remaining work before any training starts (before importing,
        too, when sources are still to be prepared). A job that fails is kept in ``failures/`` and reported in the
        summary; the other jobs run and are published.
        """
        check_writable(self.results_dir)  # before anything is imported or trained
        read_only = self._read_only_cache()
        self.publisher.remove_abandoned()
        self.publisher.check_suite(suite.name)
        check_sizes(suite)
        threads = self._use_threads(suite)
        sources = survey(suite, self.preparer.store, self.data_root)
        unprepared = any(s.action != "cached" for s in sources)
        if read_only and unprepared:
            raise read_only
        if before is not None and unprepared:  # warn before the long road: importing and generating come first
            before(self._estimate(suite, outline(suite), sources))
        the_plan, data = self.plan(suite)
        recorded, cached = self._done(the_plan)
        jobs = [j.with_cells({c.key for c in j.cells} - recorded) for j in the_plan.jobs]
        jobs = [j for j in jobs if j.cells]
        if read_only and any(c.key not in cached for j in jobs for c in j.candidates):
            raise NotWritableError(f"{read_only} and it lacks checkpoints this run would train")
        if self.retrain:
            store = CheckpointStore(self.data_dir)
            for candidate in (c for j in jobs for c in j.candidates):
                store.discard(candidate.key)
        if before is not None and jobs and not unprepared:
            before(self._estimate(suite, [j.remaining(cached, recorded) for j in jobs], sources))
        settings = Settings(self.data_dir, self.device, self.progress, threads, git_commit())
        computed: list[Path] = []
        failed: list[JobFailure] = []
        by_key = {j.key: j for j in jobs}
        bar = tqdm(total=len(jobs), desc=suite.name, unit="job", disable=no_bars(self.progress))

        def started(job: JobPlan) -> None:
            self.report(f"start {job.label}: {len(job.candidates)} candidates, {len(job.cells)} cells")

        with _stop_when_unwritable(self.results_dir, computed):
            for outcome in self.executor.run(run_job, WorkerSuite.of(suite), jobs, data, settings, started):
                bar.update()
                if isinstance(outcome, JobFailure):
                    self.publisher.write_failure(by_key[outcome.job], outcome.reason, suite, data, settings)
                    failed.append(outcome)
                    self.report(f"FAILED {outcome.label}: {outcome.reason}")
                    continue
                computed += self.publisher.write(outcome)
                self.report(f"done {outcome.label}: {outcome.seconds:.0f} s, {outcome.trained} trained, "
                            f"{outcome.headline()}")
            bar.close()
            records = self.publisher.records(the_plan, checked=recorded)
            leaderboard = {}
            if render:
                self.publisher.write_source_cards(the_plan, data)
                leaderboard = self.publisher.render(the_plan, records)
        skipped = [self.publisher.record_path(k) for k in sorted(recorded)]
        return RunSummary(computed, skipped, leaderboard, records, failed)

    def _read_only_cache(self) -> NotWritableError | None:
        """None if the cache can be written; else the error, which the run raises once it needs to write there."""
        try:
            check_writable(self.data_dir)
        except NotWritableError as exc:
            return exc
        return None
