"""The driver of a run: prepare → plan → execute → publish.

Only this process writes records (workers return them); a cell whose record exists is skipped and a job
whose cells are all recorded is not run, so an interrupted run resumes. A job that fails (its reason kept in
``failures/``) does not stop the others; the run then reports it and the leaderboard shows its cells as failed.
Before anything is imported or trained, a run refuses a results folder that holds another suite's records and
a detector whose parameters would not fit (counted on the meta device, without allocating them), removes the
temporary files of killed runs from the results folder, and accepts a read-only cache that holds every source
and checkpoint it needs. :meth:`Runner.dry_run` says what a run would do, with an estimated time, without
training or writing anything (it may swap a source's kept previous copy back into place, a rename that makes
and loses nothing); a detector that fails its timing is named there, not raised.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.checkpoints import CheckpointStore
from bench.detector import DETECTORS
from bench.estimate import (
    JobCost,
    Throughput,
    duration,
    generation_seconds,
    job_cost,
    makespan,
    score_passes,
    throughput,
)
from bench.execute import Settings
from bench.executors import Executor, JobFailure, SerialExecutor, disk_full, failure_reason
from bench.files import NotWritableError, check_writable
from bench.plan import JobPlan, Plan, PlanError, grid, plan
from bench.prepare import Prepared, Preparer, SourceStatus, survey
from bench.provenance import git_commit
from bench.publish import Publisher
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
    records: list[dict]
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
class Estimate:
    """Estimated seconds per stage, and how they were estimated."""

    costs: dict[str, JobCost] = field(default_factory=dict)  # by job key, for the jobs to run
    rates: dict[str, Throughput] = field(default_factory=dict)  # images/s by detector
    device: str = "cpu"
    unknown: int = 0  # jobs whose data size is not known before importing (not estimated)
    generate: dict[str, float] = field(default_factory=dict)  # seconds by generated source (training counted once)
    workers: int | None = 1  # jobs at once (None: not known before the run, as on a Ray cluster)
    broken: dict[str, str] = field(default_factory=dict)  # detectors whose timing failed, and why

    @property
    def train(self) -> float:
        return sum(c.train for c in self.costs.values())

    @property
    def score(self) -> float:
        return sum(c.score for c in self.costs.values())

    @property
    def total(self) -> float:
        """Seconds one job at a time: generating, then every job's training and scoring."""
        return self.train + self.score + sum(self.generate.values())

    @property
    def wall(self) -> float:
        """Seconds with ``workers`` jobs at once (sources are generated first, one at a time)."""
        jobs = [c.total for c in self.costs.values()]
        return sum(self.generate.values()) + makespan(jobs, self.workers or 1)

    def line(self) -> str:
        broken = "".join(f"; not estimated: {name}, which failed a trial step ({why}), so its jobs will likely fail"
                         for name, why in self.broken.items())
        return self._line() + broken

    def _line(self) -> str:
        generated = ""
        if self.generate:
            parts = ", ".join(f"{name} {duration(seconds)}" for name, seconds in self.generate.items())
            generated = f"generating sources {duration(sum(self.generate.values()))} ({parts}), "
        if not self.rates:
            return f"{self.unknown} jobs, not estimated before their data is imported" if self.unknown else (
                "nothing to train or score")
        rates = ", ".join(f"{d} {r.train:.0f}/{r.score:.0f}" for d, r in self.rates.items())
        unknown = f"; {self.unknown} more jobs not estimated before their data is imported" if self.unknown else ""
        at_once = (f", about {duration(self.wall)} with {self.workers} at once if they do not slow each other"
                   if (self.workers or 1) > 1 and self.costs else "")
        one = " one job at a time" if at_once else ""
        return (f"{len(self.costs) + self.unknown} jobs to run, estimated {duration(self.total)} on {self.device}{one}"
                f"{at_once} ({generated}training {duration(self.train)}, scoring {duration(self.score)}; from images/s "
                f"training/scoring {rates}, measured with a few steps here; importing sources not included{unknown})")


@dataclass
class DryRun:
    """What a run would do: sources, jobs (with cached checkpoints) and cells (with records), and the estimate."""

    sources: list[SourceStatus]
    plan: Plan | None
    pending: list[JobPlan]
    cached_checkpoints: set[str]
    recorded: set[str]
    estimate: Estimate

    def summary(self) -> str:
        """One line: jobs, cells and the estimate."""
        if self.plan is None:
            prepare = [s.name for s in self.sources if s.action != "cached"]
            return (f"{len(prepare)} sources to prepare first ({', '.join(prepare)}), then cell keys follow from "
                    f"their images: {self.estimate.line()}")
        cells = len(self.plan.cells)
        return (f"{len(self.plan.jobs)} jobs ({len(self.plan.jobs) - len(self.pending)} done), {cells} cells "
                f"({len(self.recorded)} recorded): {self.estimate.line()}")

    def text(self) -> str:
        """The full report that ``bench run --dry-run`` prints."""
        lines = ["Sources:"]
        lines += [f"  {s.name:<28} {s.importer:<10} {s.count if s.count is not None else '?':>7} images  "
                  f"{s.action}{f' ({s.reason})' if s.reason else ''}" for s in self.sources]
        if self.plan is not None:
            lines.append("Jobs (detector on training set, seed: grid candidates; estimated time):")
            for job in self.plan.jobs:
                cached = sum(c.key in self.cached_checkpoints for c in job.candidates)
                done = sum(c.key in self.recorded for c in job.cells)
                cost = self.estimate.costs.get(job.key)
                when = f"~{duration(cost.total)}" if cost else "nothing to do"
                lines.append(f"  {job.label}: {len(job.candidates)} candidates ({cached} cached), "
                             f"{len(job.cells)} cells ({done} recorded); {when}")
        lines.append(self.summary())
        return "\n".join(lines)


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
    ) -> None:
        self.data_dir = Path(data_dir)
        self.results_dir = Path(results_dir)
        self.device = str(pick_device(device))
        self.progress = progress
        self.threads = threads  # torch CPU threads per job (None: all cores, split among parallel workers)
        self.executor = executor or SerialExecutor()
        self.report = report or (lambda line: log.info("%s", line))  # one line per job when not on a terminal
        self.preparer = Preparer(self.data_dir, data_root, self.device, progress)
        self.data_root = data_root
        self.publisher = Publisher(self.results_dir)
        git_commit()  # read now: records name the code this process started with, not a later checkout

    def plan(self, suite: Suite) -> tuple[Plan, Prepared]:
        """Prepare the suite's data (importing or generating what is missing) and plan it."""
        data = self.preparer.prepare(suite)
        return plan(suite, data), data

    def estimate(self, jobs: list[JobPlan], the_plan: Plan, data: Prepared, cached: set[str]) -> Estimate:
        """Estimated time of ``jobs`` on this device (checkpoints in ``cached`` cost no training)."""
        suite = the_plan.suite
        result = Estimate(device=self.device, workers=self.executor.slots)
        for job in jobs:
            real, fake = data.train[job.train_name]
            name = self._measure(result, suite, job.entry, real.size)
            if name is None:
                continue
            recipes = [c.recipe for c in job.candidates if c.key not in cached]
            passes = score_passes(data.test[suite.test.real].count,
                                  [(c.test_fake, data.test[c.test_fake].count, c.perturbation) for c in job.cells])
            result.costs[job.key] = job_cost(recipes, real.count + fake.count, passes, result.rates[name])
        return result

    def _measure(self, estimate: Estimate, suite: Suite, entry: DetectorEntry, size: int) -> str | None:
        """The detector's name, its throughputs measured into ``estimate`` once; None (and the reason kept in
        ``estimate.broken``) for a detector that fails its trial steps."""
        if entry.name in estimate.broken:
            return None
        if entry.name not in estimate.rates:
            try:
                estimate.rates[entry.name] = throughput(entry.name, size, grid(suite, entry)[0].batch_size,
                                                        self.device, entry.kwargs)
            except Exception as exc:  # a broken plugin: named in the estimate, and isolated when its jobs run
                estimate.broken[entry.name] = failure_reason(exc)
                return None
        return entry.name

    def rough_estimate(self, suite: Suite, sources: list[SourceStatus]) -> Estimate:
        """Estimated time of every job of ``suite`` from the sources' image counts, before anything is imported."""
        counts = {s.name: s.count for s in sources}

        def drawn(names: list[str], limit: int | None) -> int | None:
            known = [counts.get(n) for n in names]
            return None if None in known else min(sum(known), limit or sum(known))

        result = Estimate(device=self.device, workers=self.executor.slots)
        reals = drawn([suite.test.real], suite.test.limit)
        fakes = [drawn([n], suite.test.limit) for n in suite.test_fakes()]
        for train, entry, seed in itertools.product(suite.train, suite.detectors, suite.seeds):
            real, fake = drawn(train.real, train.limit), drawn(train.fake, train.limit)
            if None in (real, fake, reals, *fakes):
                result.unknown += 1
                continue
            name = self._measure(result, suite, entry, DETECTORS.get(entry.name).input_size)
            if name is None:
                continue
            passes = score_passes(reals, [(f, n, p) for f, n in zip(suite.test_fakes(), fakes, strict=True)
                                          for p in suite.perturbations])
            result.costs[f"{name}/{train.name}/{seed}"] = job_cost(grid(suite, entry), real + fake, passes,
                                                                   result.rates[name])
        result.generate = self._generation(suite, [s for s in sources if s.action == "generate"], counts)
        return result

    def _generation(self, suite: Suite, sources: list[SourceStatus], counts: dict[str, int | None]) -> dict[str, float]:
        """Estimated seconds per generated source; a model that serves several sources is trained (and counted) once."""
        served: dict[str, list[str]] = {}
        for status in sources:
            spec = suite.sources[status.name]
            if spec.generator and spec.count and counts.get(spec.train_source or ""):
                model = json.dumps([spec.generator, spec.train_source, spec.seed, spec.config], sort_keys=True)
                served.setdefault(model, []).append(status.name)
        seconds: dict[str, float] = {}
        for names in served.values():
            specs = [suite.sources[n] for n in names]
            timed = generation_seconds(specs[0].generator, specs[0].config, counts[specs[0].train_source],
                                       [s.count for s in specs], self.device)
            if timed is not None:
                train, sample = timed
                for n, spec in zip(names, specs, strict=True):  # training charged to the first, sampling by count
                    share = spec.count / sum(s.count for s in specs)
                    seconds[n] = (train if n == names[0] else 0.0) + sample * share
        return seconds

    def dry_run(self, suite: Suite) -> DryRun:
        """What :meth:`run` would do, without importing, training or writing anything."""
        check_sizes(suite)
        if self.threads:
            torch.set_num_threads(self.threads)  # the estimate measures what the run will use
        statuses = survey(suite, self.preparer.store, self.data_root)
        if any(s.action != "cached" for s in statuses):
            return DryRun(statuses, None, [], set(), set(), self.rough_estimate(suite, statuses))
        the_plan, data = self.plan(suite)
        recorded = {c.key for c in the_plan.cells if self.publisher.record_path(c.key).is_file()}
        checkpoints = CheckpointStore(self.data_dir)
        cached = {c.key for j in the_plan.jobs for c in j.candidates if checkpoints.has(c.key)}
        pending = [j for j in the_plan.jobs if any(c.key not in recorded for c in j.cells)]
        jobs = [j.with_cells({c.key for c in j.cells} - recorded) for j in pending]
        return DryRun(statuses, the_plan, pending, cached, recorded, self.estimate(jobs, the_plan, data, cached))

    def run(self, suite: Suite, before: Callable[[Estimate], None] | None = None) -> RunSummary:
        """Run every cell of ``suite`` that has no record yet, then render its leaderboard.

        ``before`` is called with the estimate of the remaining work before any training starts. A job that fails
        is kept in ``failures/`` and reported in the summary; the other jobs run and are published.
        """
        check_writable(self.results_dir)  # before anything is imported or trained
        read_only = self._read_only_cache()
        self.publisher.remove_abandoned()
        self.publisher.check_suite(suite.name)
        check_sizes(suite)
        if self.threads:
            torch.set_num_threads(self.threads)  # for the estimate; each job sets its own
        sources = survey(suite, self.preparer.store, self.data_root)
        unprepared = any(s.action != "cached" for s in sources)
        if read_only and unprepared:
            raise read_only
        if before is not None and unprepared:  # warn before the long road: importing and generating come first
            before(self.rough_estimate(suite, sources))
        the_plan, data = self.plan(suite)
        recorded = self.publisher.recorded(the_plan)
        jobs = [j.with_cells({c.key for c in j.cells} - recorded) for j in the_plan.jobs]
        jobs = [j for j in jobs if j.cells]
        checkpoints = CheckpointStore(self.data_dir)
        cached = {c.key for j in jobs for c in j.candidates if checkpoints.has(c.key)}
        if read_only and any(c.key not in cached for j in jobs for c in j.candidates):
            raise NotWritableError(f"{read_only} and it lacks checkpoints this run would train")
        if before is not None and jobs and not unprepared:
            before(self.estimate(jobs, the_plan, data, cached))
        settings = Settings(self.data_dir, self.device, self.progress, self.threads, git_commit())
        computed: list[Path] = []
        failed: list[JobFailure] = []
        by_key = {j.key: j for j in jobs}
        bar = tqdm(total=len(jobs), desc=suite.name, unit="job", disable=no_bars(self.progress))

        def started(job: JobPlan) -> None:
            self.report(f"start {job.label}: {len(job.candidates)} candidates, {len(job.cells)} cells")

        with _stop_when_unwritable(self.results_dir, computed):
            for outcome in self.executor.run(suite, jobs, data, settings, started):
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
