"""Synthetic results folders: valid records (:class:`bench.records.Record`, schema 4) and their score files, made
from made-up per-image scores, so that reporting, statistics, diff and verification are tested without training.

Each made-up detector's per-image scores are binormal logits built from noise shared by every detector (how hard an
image is), noise of the detector on the test source and noise of the training seed. A record is measured from its
scores as a run measures it (:func:`bench.metrics.evaluate`, the evasion rate beside the clean scores) and written
as a run writes it (:meth:`bench.publish.Publisher.write_cell`), so what the statistics must find is known and
nothing is trained.

    write_results(folder)                      # detectors a and b, seeds 0-2, clean and JPEG, one test source
    write_results(folder, detectors={"a": 2.0, "b": 1.0}, trains=("sd14", "ddpm"), tests=("sd14-test", "ddpm-test"))
    write_record(folder, "a", 0, logits("a", 0))   # one record of given scores
    inline_suite(path)                         # a record file's JSON with its suite in it, as tests edit records
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bench.metrics import evaluate, evasion_rate, point_metrics
from bench.publish import Publisher
from bench.records import SCHEMA_VERSION, Hardware, Perturbation, Record, Training, Weights, canonical_kwargs
from bench.sources import content_hash


def inline_suite(path: Path) -> dict:
    """The JSON of the record file ``path`` with its suite config in it (``suite_config``) instead of named
    (``suite_config_file``): the form records took before version 4, which bench still reads; tests edit this."""
    record = json.loads(path.read_text())
    name = record.pop("suite_config_file", None)
    if name is not None:
        record["suite_config"] = json.loads((path.parents[1] / name).read_text())
    return record


N = 300  # test images per class
LABELS = np.r_[np.zeros(N, int), np.ones(N, int)]
SHARED = np.random.default_rng(0).standard_normal(2 * N)  # how hard each test image is, for every detector
TRAIN, TEST = "sd14", "sd14-test"
CLEAN = Perturbation(name="clean", params={}, label="clean")
JPEG = Perturbation(name="jpeg", params={"quality": 50}, label="jpeg(quality=50)")
EVASION = 0.8  # how far a perturbation lowers the logits of the fakes
HARDWARE = Hardware(device="cpu", cpu="Synthetic CPU", cpu_cores=2, torch_threads=2, platform="synthetic")
PROVENANCE = {"command": "synthetic", "versions": {"torch": "x", "timm": "x", "scikit-learn": "x"},
              "git": {"commit": "0" * 40, "dirty": False}, "hardware": HARDWARE, "created": "2026-01-01T00:00:00+00:00"}


def _noise(*key: object) -> np.ndarray:
    digest = hashlib.sha256(" ".join(map(str, key)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(2 * N)


def logits(detector: str, seed: int, separation: float = 1.5, seed_noise: float = 0.3,
           seed_shift: float = 0.0) -> np.ndarray:
    """A made-up detector's float32 logits (reals then fakes) for one training seed: fakes shifted by ``separation``
    (plus ``seed_shift`` times a standard normal draw of the seed: seeds that differ in AUC), per-image noise of the
    detector and of the seed (``seed_noise``); ``detector`` names the noise (e.g. ``"a on sd14, ddpm-test"`` for
    other noise per training set and test source)."""
    shift = separation + seed_shift * _noise(detector, seed, "shift")[0]
    return (shift * LABELS + 0.6 * SHARED + 0.6 * _noise(detector) + seed_noise * _noise(detector, seed)).astype(
        np.float32)


def _subset(source: str, count: int) -> dict:
    """One class's images as a run describes them: drawn in full from one source of the same name."""
    sha256 = hashlib.sha256(f"{source} {count}".encode()).hexdigest()
    return {"sources": [{"name": source, "sha256": sha256, "count": count, "drawn": count, "encoding": {"files":
            {"PNG": count}}, "encoded": "as stored (PNG)"}], "count": count, "sha256": sha256, "removed_duplicates": 0}


def _training(threshold: float, scores: np.ndarray, checkpoint: str) -> Training:
    return Training(threshold=threshold, val=point_metrics(LABELS, scores, threshold) | {"loss": 0.5}, n_train=1800,
                    n_val=200, val_fraction=0.1, train_seconds=1.0, trained_on=HARDWARE, checkpoint=checkpoint,
                    checkpoint_sha256=checkpoint, recipe={"epochs": 1, "lr": 0.001, "batch_size": 128},
                    selected_epoch=1, selection="highest validation balanced accuracy, then lowest validation loss")


def _evaluated_only(threshold: float, detector: str) -> tuple[Training, Weights]:
    sha256 = hashlib.sha256(detector.encode()).hexdigest()
    weights = Weights(file=f"{detector}.safetensors", sha256=sha256, format="safetensors",
                      remap={"strip_prefix": None, "add_prefix": None},
                      note=f"weights from {detector}.safetensors (sha256 {sha256[:12]}), not trained here")
    return Training(threshold=threshold, threshold_rule="fixed: probability 0.5", trained_on=None), weights


def measured(detector: str, seed: int, scores: np.ndarray, threshold: float | None = None,
             perturbation: Perturbation = CLEAN, clean: np.ndarray | None = None, n_boot: int = 200,
             train: str = TRAIN, test: str = TEST, kwargs: Mapping[str, object] | None = None,
             evaluate_only: bool = False, suite: str = "synthetic", description: str = "Synthetic records") -> Record:
    """The record of ``scores`` (reals then fakes, :data:`N` each) measured as a run measures it; ``clean``: the clean
    cell's scores, for the evasion rate of a perturbation; ``evaluate_only``: a detector trained elsewhere."""
    scores = np.asarray(scores, np.float32)
    threshold = float(np.median(scores)) if threshold is None else threshold
    kwargs = dict(kwargs or {})
    key = hashlib.sha256(f"{detector} {canonical_kwargs(kwargs)} {train} {test} {perturbation.label} {seed}".encode())
    key = key.hexdigest()
    result = evaluate(LABELS, scores, threshold, n_boot, 0.95, 0)
    if clean is not None:
        fakes = LABELS == 1
        result["metrics"]["evasion_rate"] = evasion_rate(np.asarray(clean)[fakes], scores[fakes], threshold)
    if evaluate_only:
        training, weights = _evaluated_only(threshold, detector)
    else:
        training, weights = _training(threshold, scores, hashlib.sha256(f"{key} checkpoint".encode()).hexdigest()), None
    return Record(
        schema_version=SCHEMA_VERSION, key=key, suite=suite, suite_config={"name": suite, "description": description},
        detector=detector, detector_kwargs=kwargs,
        train={"name": train, "real": _subset("real-train", 1000), "fake": _subset(f"{train}-train", 1000)},
        test={"name": test, "real": _subset("real-test", N), "fake": _subset(test, N)},
        perturbation=perturbation, seed=seed, encoding="as stored",
        input={"size": 32, "adapted": {"real": None, "fake": None}},
        test_images_in_training=None if evaluate_only else {"real": 0, "fake": 0},
        training=training, weights=weights, **result,
        scores={"file": f"scores/{key}.npy", "order": "real then fake test images, as drawn",
                "sha256": content_hash(scores)},
        provenance=PROVENANCE | {"seed": seed},
    )


def write_record(folder: Path, detector: str, seed: int, scores: np.ndarray, threshold: float | None = None,
                 perturbation: Perturbation = CLEAN, clean: np.ndarray | None = None, n_boot: int = 200,
                 **fields: object) -> Record:
    """:func:`measured` (``fields``: its keyword arguments), written with its score file into the results folder
    ``folder``."""
    record = measured(detector, seed, scores, threshold, perturbation, clean, n_boot, **fields)
    Publisher(folder).write_cell(record, np.asarray(scores, np.float32))
    return record


def write_detector(folder: Path, detector: str, seeds: Sequence[int] = (0, 1, 2), jpeg: bool = False,
                   train: str = TRAIN, test: str = TEST, **kwargs: float) -> list[Record]:
    """A made-up detector's clean records (and JPEG ones: its fakes' logits lowered by :data:`EVASION`, as a
    perturbation does); ``kwargs``: those of :func:`logits`."""
    written = []
    for seed in seeds:
        scores = logits(detector if (train, test) == (TRAIN, TEST) else f"{detector} on {train}, {test}", seed,
                        **kwargs)
        record = write_record(folder, detector, seed, scores, train=train, test=test)
        written.append(record)
        if jpeg:
            written.append(write_record(folder, detector, seed, scores - EVASION * LABELS, record.threshold, JPEG,
                                        clean=scores, train=train, test=test))
    return written


def write_results(folder: Path, detectors: Mapping[str, float] | Sequence[str] = ("a", "b"),
                  trains: Sequence[str] = (TRAIN,), tests: Sequence[str] = (TEST,), seeds: Sequence[int] = (0, 1, 2),
                  perturbations: Sequence[Perturbation] = (CLEAN, JPEG), n_boot: int = 200) -> dict[Path, Record]:
    """A results folder of every (detector, training set, test source, seed, perturbation); ``detectors`` by name,
    or with their separation (default 1.5). A perturbation lowers the fakes' logits by :data:`EVASION` times its
    position in ``perturbations`` after the first (clean) one. Returns the records by path, as
    :func:`bench.records.load_records` reads them back."""
    separations = detectors if isinstance(detectors, Mapping) else dict.fromkeys(detectors, 1.5)
    publisher, written = Publisher(folder), {}
    for (detector, separation), train, test, seed in itertools.product(separations.items(), trains, tests, seeds):
        clean = logits(f"{detector} on {train}, {test}", seed, separation)
        threshold = float(np.median(clean))
        for level, perturbation in enumerate(perturbations):
            scores = (clean - level * EVASION * LABELS).astype(np.float32)
            record = measured(detector, seed, scores, threshold, perturbation, clean if level else None, n_boot,
                              train=train, test=test)
            written[publisher.write_cell(record, scores)] = record
    return written
