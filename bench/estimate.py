"""Estimate: how long a run's jobs will take on this device, from throughputs measured on the spot, in one pass.

:func:`estimate` takes what is left of each job (the recipes to train: none for a cached checkpoint; the cells to
score: none for a recorded one) and the image counts the sources report before anything is imported, so a dry
run estimates a suite from the suite alone. For each detector a few training steps and forward passes are timed
on random images of its input size (after a warm-up; the fastest of several counts, because a loaded machine's
stalls are not the model's speed); training time is then epochs x training images / training throughput for every
candidate to train, plus a validation pass per epoch at the forward throughput, and scoring is the test images'
forward passes plus, under an attack, a forward and backward pass per gradient step its perturbation declares
(about a training step). A generator to train is timed the same way (training steps and sampling at two small
batch sizes, extrapolated to its batch size and epochs); sources to import are not estimated. With several
workers the jobs' wall time is their makespan when each is handed to the first free worker, assuming workers do
not slow each other. The figures are rough (within a factor of about two) and say so.
"""

from __future__ import annotations

import heapq
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from bench.detector import DETECTORS, build_detector
from bench.executors import failure_reason
from bench.generator import GENERATORS, resolve_config
from bench.model import autocast
from bench.perturbations import gradient_steps
from bench.plan import JobOutline, grid
from bench.prepare import SourceStatus
from bench.recipe import Recipe
from bench.suite import DetectorEntry, PerturbationEntry, Suite
from bench.training import pick_device

TIMED_STEPS = 3  # timed calls at least, after a warm-up
MOST_STEPS = 10  # timed calls at most: more are made while the timed ones took under TIMING_BUDGET in all
TIMING_BUDGET = 1.0  # seconds
TIMED_BATCH = 128  # images per timed forward pass (scoring runs larger batches; per-image cost dominates)


@dataclass(frozen=True)
class Throughput:
    """Images per second of a detector: training steps, and forward passes without gradients (scoring)."""

    train: float
    score: float


@dataclass(frozen=True)
class JobCost:
    """Estimated seconds of one job: training (its candidates to train) and scoring (its cells to score)."""

    train: float
    score: float

    @property
    def total(self) -> float:
        return self.train + self.score


@dataclass
class Estimate:
    """Estimated seconds per stage, and how they were estimated."""

    costs: dict[int, JobCost] = field(default_factory=dict)  # by the job's position, for the jobs with work left
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
        """One line: jobs to run, estimated time by stage, and how it was measured."""
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
                f"training/scoring {rates}, the fastest of several steps timed here; importing sources not "
                f"included{unknown})")


def estimate(suite: Suite, jobs: Sequence[JobOutline], sources: Sequence[SourceStatus], device: str = "auto",
             workers: int | None = 1) -> Estimate:
    """Estimated time of what is left of ``jobs`` (their recipes to train and cells to score) and of generating the
    ``sources`` to generate, from the image counts the sources report; each detector is timed once."""
    counts = {s.name: s.count for s in sources}
    result = Estimate(device=str(pick_device(device)), workers=workers)
    trains = {t.name: t for t in suite.train}
    reals = drawn(counts, [suite.test.real], suite.test.limit)
    for position, job in enumerate(jobs):
        if not job.recipes and not job.cells:
            continue
        train = trains[job.train_name]
        sizes = [drawn(counts, names, train.limit) for names in (train.real, train.fake)]
        fakes = {c.test_fake: drawn(counts, [c.test_fake], suite.test.limit) for c in job.cells}
        if None in (*sizes, reals, *fakes.values()):
            result.unknown += 1
            continue
        rate = _rate(result, suite, job.entry)
        if rate is not None:
            passes = score_passes(reals, [(c.test_fake, fakes[c.test_fake], c.perturbation) for c in job.cells])
            result.costs[position] = job_cost(list(job.recipes), sum(sizes), passes, rate)
    result.generate = generation(suite, [s for s in sources if s.action == "generate"], counts, result.device)
    return result


def drawn(counts: Mapping[str, int | None], names: Iterable[str], limit: int | None) -> int | None:
    """Images a subset of ``names`` draws (at most ``limit``); None when a source's count is not known yet."""
    known = [counts.get(n) for n in names]
    return None if None in known else min(sum(known), limit or sum(known))


def _rate(result: Estimate, suite: Suite, entry: DetectorEntry) -> Throughput | None:
    """The detector's throughputs, measured into ``result`` once; None (the reason kept in ``result.broken``) for a
    detector that fails its trial steps."""
    if entry.name not in result.rates and entry.name not in result.broken:
        try:
            result.rates[entry.name] = throughput(entry.name, DETECTORS.get(entry.name).input_size,
                                                  grid(suite, entry)[0].batch_size, result.device, entry.kwargs)
        except Exception as exc:  # a broken plugin: named in the estimate, and isolated when its jobs run
            result.broken[entry.name] = failure_reason(exc)
    return result.rates.get(entry.name)


def generation(suite: Suite, sources: Sequence[SourceStatus], counts: Mapping[str, int | None],
               device: str = "auto") -> dict[str, float]:
    """Estimated seconds per source to generate; a model that serves several sources is trained (and counted) once,
    charged to the first, and sampling is shared by count."""
    served: dict[str, list[str]] = {}
    for status in sources:  # each a generated source's config: generator, config, train_source, count, seed
        spec = suite.sources[status.name]
        if counts.get(spec.train_source or ""):  # pretrained, or trained on a source of unknown size: not timed
            model = json.dumps([spec.generator, spec.train_source, spec.seed, spec.config], sort_keys=True)
            served.setdefault(model, []).append(status.name)
    seconds: dict[str, float] = {}
    for names in served.values():
        specs = [suite.sources[n] for n in names]
        timed = generation_seconds(specs[0].generator, specs[0].config, counts[specs[0].train_source],
                                   [s.count for s in specs], device)
        if timed is not None:
            train, sample = timed
            for name, spec in zip(names, specs, strict=True):
                share = spec.count / sum(s.count for s in specs)
                seconds[name] = (train if name == names[0] else 0.0) + sample * share
    return seconds


def throughput(detector: str, size: int, batch_size: int, device: str = "auto", kwargs: dict | None = None
               ) -> Throughput:
    """Training and scoring images per second of ``detector`` on ``device``, timed on random images.

    Training steps are timed at 16 images first; a model fast enough that a step of ``batch_size`` images
    takes under half a second is timed again at that batch size, and a slower one at 32 images, its step time
    at ``batch_size`` extrapolated linearly (small batches understate a model's throughput). Scoring is timed
    as forward passes of ``TIMED_BATCH`` images in eval mode.
    """
    target = pick_device(device)
    built = build_detector(detector, **(kwargs or {}))
    if not built.differentiable:  # an estimator has no steps: time whole fits on random images (trees: ~n log n)
        images = np.random.default_rng(0).integers(0, 256, (512, 3, size, size), dtype=np.uint8)
        fit = _fastest(lambda: built.fit(images, np.arange(512) % 2), warm_up=False)
        return Throughput(512 / fit, 512 / max(_fastest(lambda: built.predict_proba(images), warm_up=False), 1e-9))
    model = built.to(target).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def timed(batch: int) -> float:
        images = torch.rand(batch, 3, size, size, device=target)
        labels = torch.randint(0, 2, (batch,), device=target).float()

        def step() -> None:
            with autocast(target):
                loss = F.binary_cross_entropy_with_logits(model(images).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return batch / _fastest(step, target)

    small = min(batch_size, 16)
    rate = timed(small)
    if small < batch_size:
        # a fast model: time a whole batch; a slow one: extrapolate a step's time from 16 and 32 images
        rate = timed(batch_size) if batch_size / rate < 0.5 else batch_size / _extrapolate(
            small / rate, 2 * small / timed(2 * small), small, batch_size)
    return Throughput(rate, _forward_rate(model.eval(), size, target))


def _fastest(step: Callable[[], None], target: torch.device | None = None, least: int = TIMED_STEPS,
             warm_up: bool = True) -> float:
    """Seconds of the fastest timed call of ``step`` after a warm-up call (allocation, cuDNN autotuning): at least
    ``least`` calls, and more (up to :data:`MOST_STEPS`) while they took under :data:`TIMING_BUDGET` in all; the
    fastest, because a loaded machine's stalls are not the model's speed (``target``: the device to wait for)."""
    if warm_up:
        step()
    timings: list[float] = []
    while len(timings) < least or (len(timings) < MOST_STEPS and sum(timings) < TIMING_BUDGET):
        start = time.perf_counter()
        step()
        if target is not None and target.type == "cuda":
            torch.cuda.synchronize(target)
        timings.append(time.perf_counter() - start)
    return min(timings)


def _forward_rate(model: torch.nn.Module, size: int, target: torch.device) -> float:
    """Images per second of ``model``'s forward pass without gradients, on ``TIMED_BATCH`` random images."""
    images = torch.rand(TIMED_BATCH, 3, size, size, device=target)

    @torch.no_grad()
    def forward() -> None:
        with autocast(target):
            model(images)

    return TIMED_BATCH / _fastest(forward, target)


def _extrapolate(seconds_small: float, seconds_double: float, small: int, batch_size: int) -> float:
    """Seconds at ``batch_size`` from timings at ``small`` and ``2 * small`` images: a fixed cost per call plus
    a cost per image (never less than the time at ``small``)."""
    per_image = max((seconds_double - seconds_small) / small, 0.0)
    return max(seconds_small, seconds_small + per_image * (batch_size - small))


def makespan(seconds: Iterable[float], workers: int) -> float:
    """Wall time of jobs that take ``seconds`` each, handed out in order to whichever of ``workers`` frees first."""
    free = [0.0] * workers  # a heap of the times at which each worker is free
    for job in seconds:
        heapq.heapreplace(free, free[0] + job)
    return max(free)


def score_passes(reals: int, cells: Iterable[tuple[str, int, PerturbationEntry]]) -> list[tuple[int, int]]:
    """(images, attack steps) of each forward pass a job's cells need, given as (fake source, its image count,
    perturbation): a job computes the logits of a test source under a perturbation once (the reals once per
    perturbation), and a perturbed cell also needs its fakes' clean logits (for the evasion rate)."""
    passes: dict[tuple[str | None, str], tuple[int, int]] = {}
    for fake, count, perturbation in cells:
        steps = gradient_steps(perturbation)
        passes[None, perturbation.label] = (reals, steps)
        passes[fake, perturbation.label] = (count, steps)
        if perturbation.name != "clean":
            passes.setdefault((fake, "clean"), (count, 0))
    return list(passes.values())


def job_cost(recipes: list[Recipe], n_train: int, passes: list[tuple[int, int]], rate: Throughput) -> JobCost:
    """Estimated seconds of a job: ``recipes`` trained on ``n_train`` images (validated each epoch), then the
    forward ``passes`` of :func:`score_passes` (images, attack steps), at the detector's ``rate``."""
    val = sum(r.epochs * r.val_fraction * n_train for r in recipes) / rate.score
    train = sum(r.epochs * (1 - r.val_fraction) * n_train for r in recipes) / rate.train + val
    score = sum(n * (1 / rate.score + steps / rate.train) for n, steps in passes)
    return JobCost(train, score)


def _at_batch(run: Callable[[int], None], batch_size: int, small: int = 4) -> float:
    """Seconds of ``run(batch_size)``, extrapolated from the fastest timed runs at ``small`` and ``2 * small`` images
    (after a warm-up run): a fixed cost per call plus a cost per image."""
    first, double = (_fastest(lambda batch=batch: run(batch), least=1) for batch in (small, 2 * small))
    return _extrapolate(first, double, small, batch_size)


def generation_seconds(generator: str, config: dict, n_train: int, counts: list[int], device: str = "auto"
                       ) -> tuple[float, float] | None:
    """Estimated seconds to train ``generator`` (its epochs over ``n_train`` images) and to sample ``counts``
    images (one count per source it serves), timed on random pixels; None for a generator with pretrained
    weights or without ``epochs`` and ``batch_size`` settings."""
    spec = GENERATORS.get(generator)
    config = resolve_config(spec, config)
    if config.get("pretrained") or not {"epochs", "batch_size"} <= set(config):
        return None
    target = pick_device(device)
    rng = np.random.default_rng(0)
    batch_size, limit = int(config["batch_size"]), config.get("limit")

    def fit(batch: int) -> None:  # two training steps at this batch size
        model = spec.factory(**{**config, "epochs": 1, "batch_size": batch, "limit": None})
        model.fit(rng.integers(0, 256, (2 * batch, 3, 32, 32), dtype=np.uint8), 0, target, False)
        if target.type == "cuda":
            torch.cuda.synchronize(target)

    steps = int(config.get("steps", 0))  # a sampler's denoising steps: timed with two, scaled to its steps
    sampler = spec.factory(**{**config, "batch_size": batch_size, **({"steps": 2} if steps > 2 else {})})

    def sample(batch: int) -> None:
        sampler.sample(batch, 0, target, False)
        if target.type == "cuda":
            torch.cuda.synchronize(target)

    images = min(n_train, limit) if limit else n_train
    train = config["epochs"] * math.ceil(images / batch_size) * _at_batch(fit, batch_size) / 2
    per_batch = _at_batch(sample, batch_size) * (steps / 2 if steps > 2 else 1)
    return train, sum(math.ceil(count / batch_size) for count in counts) * per_batch


def duration(seconds: float) -> str:
    """``42 s``, ``7 min``, ``3.5 h`` or ``2.1 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
