"""Estimate: how long a plan's jobs will take on this device, from throughputs measured on the spot.

For each detector a few training steps and forward passes are timed on random images of the planned size (after
a warm-up; the fastest counts); training time is then epochs x training images / training throughput for every
grid candidate, plus a validation pass per epoch at the forward throughput, and scoring is the test images'
forward passes plus, under an attack, a forward and backward pass per step (about a training step). A generator
to train is timed the same way (training steps and sampling at two small batch sizes, extrapolated to its batch
size and epochs); sources to import are not estimated. With several workers the jobs' wall time is their
makespan when each is handed to the first free worker, assuming workers do not slow each other. The figures are
rough (within a factor of about two) and say so.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bench.detector import build_detector
from bench.estimator import EstimatorDetector
from bench.recipe import Recipe
from bench.suite import PerturbationEntry
from bench.training import autocast, pick_device

TIMED_STEPS = 3
SCORE_BATCH = 128  # images per timed forward pass (scoring runs larger batches; per-image cost dominates)


@dataclass(frozen=True)
class Throughput:
    """Images per second of a detector: training steps, and forward passes without gradients (scoring)."""

    train: float
    score: float


@dataclass(frozen=True)
class JobCost:
    """Estimated seconds of one job: training (all candidates) and scoring (all its cells)."""

    train: float
    score: float

    @property
    def total(self) -> float:
        return self.train + self.score


def throughput(detector: str, size: int, batch_size: int, device: str = "auto", kwargs: dict | None = None
               ) -> Throughput:
    """Training and scoring images per second of ``detector`` on ``device``, timed on random images.

    Training steps are timed at 16 images first; a model fast enough that a step of ``batch_size`` images
    takes under half a second is timed again at that batch size, and a slower one at 32 images, its step time
    at ``batch_size`` extrapolated linearly (small batches understate a model's throughput). Scoring is timed
    as forward passes of ``SCORE_BATCH`` images in eval mode.
    """
    target = pick_device(device)
    built = build_detector(detector, **(kwargs or {}))
    if isinstance(built, EstimatorDetector):  # no steps: time one fit on random images (trees grow ~n log n)
        images = np.random.default_rng(0).integers(0, 256, (512, 3, size, size), dtype=np.uint8)
        start = time.perf_counter()
        built.fit(images, np.arange(512) % 2)
        fitted = time.perf_counter()
        built.predict_proba(images)
        return Throughput(512 / (fitted - start), 512 / max(time.perf_counter() - fitted, 1e-9))
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


def _fastest(step: Callable[[], None], target: torch.device) -> float:
    """Seconds of the fastest of ``TIMED_STEPS`` calls of ``step`` after a warm-up call (allocation, cuDNN
    autotuning); the fastest, because a busy machine's stalls are not the model's speed."""
    step()
    fastest = float("inf")
    for _ in range(TIMED_STEPS):
        start = time.perf_counter()
        step()
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def _forward_rate(model: torch.nn.Module, size: int, target: torch.device) -> float:
    """Images per second of ``model``'s forward pass without gradients, on ``SCORE_BATCH`` random images."""
    images = torch.rand(SCORE_BATCH, 3, size, size, device=target)

    @torch.no_grad()
    def forward() -> None:
        with autocast(target):
            model(images)

    return SCORE_BATCH / _fastest(forward, target)


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


def attack_steps(name: str, params: dict) -> int:
    """Forward and backward passes per image that a perturbation adds to scoring (0 for a corruption)."""
    return {"fgsm": 1, "pgd": int(params.get("steps", 10))}.get(name, 0)


def score_passes(reals: int, cells: Iterable[tuple[str, int, PerturbationEntry]]) -> list[tuple[int, int]]:
    """(images, attack steps) of each forward pass a job's cells need, given as (fake source, its image count,
    perturbation): a job computes the logits of a test source under a perturbation once (the reals once per
    perturbation), and a perturbed cell also needs its fakes' clean logits (for the evasion rate)."""
    passes: dict[tuple[str | None, str], tuple[int, int]] = {}
    for fake, count, perturbation in cells:
        steps = attack_steps(perturbation.name, perturbation.params)
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
    """Seconds of ``run(batch_size)``, extrapolated from timed runs at ``small`` and ``2 * small`` (after one
    warm-up run): a fixed cost per call plus a cost per image."""
    timings = []
    for batch in (small, small, 2 * small):
        start = time.perf_counter()
        run(batch)
        timings.append(time.perf_counter() - start)
    _, first, double = timings
    return _extrapolate(first, double, small, batch_size)


def generation_seconds(generator: str, config: dict, n_train: int, counts: list[int], device: str = "auto"
                       ) -> tuple[float, float] | None:
    """Estimated seconds to train ``generator`` (its epochs over ``n_train`` images) and to sample ``counts``
    images (one count per source it serves), timed on random pixels; None for a generator with pretrained
    weights or without ``epochs`` and ``batch_size`` settings."""
    from bench.generator import GENERATORS, resolve_config

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
