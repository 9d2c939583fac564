"""Export: a checkpoint the harness trained, as a safetensors file with a model card and the suite that reproduces it.

A checkpoint is chosen by a results record (the one its cells were scored with) or by detector, training set and
seed of a suite (its grid candidate kept on validation, as the run keeps it). ``NAME.safetensors`` holds the
detector's tensors exactly as trained, with what :mod:`bench.predict` needs in its metadata (detector, kwargs,
threshold, input policy); ``NAME.json`` and ``NAME.md`` are the model card (detector and kwargs, recipe, training
sources with their hashes, seed, threshold, validation metrics, the command that reproduces it); and
``NAME.suite.yaml`` is the suite restricted to that detector, training set and seed, whose run retrains the same
checkpoint (the same key; bit for bit on the same CPU). An export of one checkpoint is the same file every time.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.checkpoints import Checkpoint, CheckpointStore
from bench.detector import DETECTORS
from bench.files import file_sha256, temp_suffix, write_atomic
from bench.model import fit_size
from bench.plan import SELECTION_RULE, plan
from bench.provenance import stamp
from bench.records import Record, read_record
from bench.suite import Suite
from bench.weights import logit_to_probability

CARD_FORMAT = "bench model card 1"


class ExportError(ValueError):
    """A checkpoint cannot be exported (not trained here, not in the cache, unknown job); the message says what to
    do."""


@dataclass(frozen=True)
class Exported:
    """The files an export wrote, and the sha256 of the weights file."""

    weights: Path
    card: Path
    markdown: Path
    suite: Path
    sha256: str


def input_policy(size: int, adapt: str) -> str:
    """How images of any size reach a detector's input, in words (what ``bench predict`` does)."""
    how = ("resized (bilinear, antialiased)" if adapt == "resize"
           else "centre-cropped (resized, bilinear and antialiased, when smaller)")
    return (f"a non-square image is first centre-cropped to its largest square; a square of another side than "
            f"{size} is then {how} to {size}x{size}, as `bench run` brings sources of another size to the detector "
            f"(bench.model.{fit_size.__name__}); pixels are scaled to [0, 1] and normalised inside the detector")


def reproducing_suite(suite: Suite, detector: str, kwargs: dict, train_set: str, seed: int) -> Suite:
    """``suite`` restricted to one detector entry, one training set and one seed: its run retrains the checkpoint."""
    data = suite.model_dump(mode="json")
    data["detectors"] = [d for d in data["detectors"] if d["name"] == detector and d["kwargs"] == kwargs]
    data["train"] = [t for t in data["train"] if t["name"] == train_set]
    data["seeds"] = [seed]
    if not data["detectors"] or not data["train"]:
        raise ExportError(f"suite {suite.name!r} has no detector {detector!r} with kwargs {kwargs} or no training "
                          f"set {train_set!r}")
    return Suite.model_validate(data)


def _command(suite_file: Path, detector: str, train_set: str, seed: int) -> str:
    return (f"bench run --suite {suite_file} --data-root DATA && bench export --suite {suite_file} --detector "
            f"{detector} --train-set {train_set} --seed {seed}")


def export_record(record_path: Path, data_dir: Path, out: Path | None = None) -> Exported:
    """Export the checkpoint that the record ``record_path`` was scored with, from the cache under ``data_dir``."""
    record = read_record(Path(record_path))
    if record.evaluate_only is not None:
        raise ExportError(f"{record_path} scored {record.evaluate_only}: nothing trained here to export; use that file")
    if record.suite_config is None:
        raise ExportError(f"{record_path} predates suite_config: re-run its suite to republish it, then export")
    suite = reproducing_suite(Suite.model_validate(record.suite_config), record.detector, record.detector_kwargs,
                              record.train.name, record.seed)
    out = _default_out(out, record.detector, record.train.name, record.seed)
    checkpoint = record_checkpoint(record, record_path, data_dir)
    classes = tuple(record.source_attribution.classes) if record.source_attribution else ()
    return write_export(checkpoint, suite, record.train.model_dump(mode="json", by_alias=True), classes, out)


def record_checkpoint(record: Record, record_path: Path, data_dir: Path) -> Checkpoint:
    """The cached checkpoint a (trained) record was scored with, checked against the sha256 the record holds."""
    training = record.training
    store = CheckpointStore(Path(data_dir))
    checkpoint = store.get(training.checkpoint)
    if checkpoint is None:
        raise ExportError(f"the checkpoint {training.checkpoint[:12]} that {record_path} was scored with is not in "
                          f"{store.root}: give the --data-dir of the run that trained it, or retrain it there with "
                          f"`bench run --suite {record.suite} --detectors {record.detector} --seeds "
                          f"{record.seed}` (deterministic on a CPU)")
    if checkpoint.info["sha256"] != training.checkpoint_sha256:
        raise ExportError(f"the cached checkpoint {checkpoint.key[:12]} is not the one {record_path} was scored with "
                          "(its sha256 differs): retrain it into an empty --data-dir and export again")
    return checkpoint


def export_job(suite: Suite, detector: str, train_set: str, seed: int, data_dir: Path, data_root: Path | None = None,
               out: Path | None = None) -> Exported:
    """Export the checkpoint a run of ``suite`` keeps for ``detector`` on ``train_set`` with ``seed`` (its sources are
    imported first if they are not cached; nothing is trained)."""
    from bench.execute import best_candidate
    from bench.prepare import Preparer

    data = Preparer(Path(data_dir), data_root, "cpu", False).prepare(suite)
    jobs = [j for j in plan(suite, data).jobs if not j.entry.evaluate_only]
    job = next((j for j in jobs if (j.entry.name, j.train_name, j.seed) == (detector, train_set, seed)), None)
    if job is None:
        known = "; ".join(sorted({f"--detector {j.entry.name} --train-set {j.train_name} --seed {j.seed}"
                                  for j in jobs})) or "none"
        raise ExportError(f"suite {suite.name!r} trains no {detector!r} on {train_set!r} with seed {seed}; it trains: "
                          f"{known}")
    out = _default_out(out, detector, train_set, seed)
    store = CheckpointStore(Path(data_dir))
    found = [(c.recipe, store.get(c.key)) for c in job.candidates]
    if any(checkpoint is None for _, checkpoint in found):
        raise ExportError(f"{job.label} is not trained in {store.root} yet: run the suite with this --data-dir "
                          f"first (`bench run --suite {suite.name} --detectors {detector} --seeds {seed}`, with the "
                          "same overrides)")
    _, checkpoint = best_candidate(found)
    real, fake = data.train[train_set]
    train = {"name": train_set, "real": real.describe(), "fake": fake.describe()}
    return write_export(checkpoint, reproducing_suite(suite, detector, job.entry.kwargs, train_set, seed), train,
                        job.classes, out)


def _default_out(out: Path | None, detector: str, train_set: str, seed: int) -> Path:
    out = Path(out) if out is not None else Path("exports") / f"{detector}-{train_set}-seed{seed}.safetensors"
    return out if out.suffix == ".safetensors" else out.with_name(out.name + ".safetensors")


def _suite_file(out: Path) -> Path:
    return out.with_suffix(".suite.yaml")


def write_export(checkpoint: Checkpoint, suite: Suite, train: dict, classes: tuple[str, ...], out: Path) -> Exported:
    """Write ``checkpoint`` to ``out`` (.safetensors) with its model card (.json, .md) and reproducing suite
    (.suite.yaml) beside it."""
    from safetensors.torch import save_file

    info, entry = checkpoint.info, suite.detectors[0]
    spec = DETECTORS.get(entry.name)
    suite_file = _suite_file(out)
    threshold = float(info["threshold"])
    described = {"format": CARD_FORMAT, "detector": entry.name, "kwargs": entry.kwargs, "threshold_logit": threshold,
                 "input_size": suite.input_size, "checkpoint": checkpoint.key, "classes": list(classes)}
    metadata = {"bench": json.dumps(described, sort_keys=True)}  # one entry: safetensors keeps no order of several
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=temp_suffix(), dir=out.parent)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in checkpoint.state_dict().items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sha256 = file_sha256(out)
    card = {
        "format": CARD_FORMAT,
        "detector": entry.name,
        "kwargs": entry.kwargs,
        "classes": list(classes),
        "weights": {"file": out.name, "sha256": sha256, "format": "safetensors", "checkpoint": checkpoint.key,
                    "checkpoint_sha256": info["sha256"]},
        "input": {"size": spec.input_size, "mean": list(spec.mean), "std": list(spec.std), "adapt": suite.input_size,
                  "policy": input_policy(spec.input_size, suite.input_size)},
        "recipe": info["recipe"],
        "selection": SELECTION_RULE,
        "training_set": train,
        "seed": info["seed"],
        "data_seed": suite.data_seed,
        "encoding": suite.encoding.describe(),
        "threshold": {"logit": threshold, "probability": logit_to_probability(threshold),
                      "rule": f"chosen on the validation split of the training set ({info['n_val']} images, "
                              "never test data): the highest balanced accuracy (Youden's J); predict fake at or "
                              "above it"},
        "validation": info["val"],
        "selected_epoch": info["selected_epoch"],
        "n_train": info["n_train"],
        "n_val": info["n_val"],
        "train_seconds": info["seconds"],
        "trained_on": info["hardware"],
        "reproduce": {"suite": suite_file.name, "command": _command(suite_file, entry.name, train["name"],
                                                                    info["seed"])},
        "exported": stamp(info["seed"], "cpu"),
    }
    reproduce = suite.model_dump(mode="json", exclude_defaults=True)
    write_atomic(suite_file, yaml.safe_dump(reproduce, sort_keys=False).encode())
    write_atomic(out.with_suffix(".json"), json.dumps(card, indent=2).encode())
    write_atomic(out.with_suffix(".md"), card_markdown(card).encode())
    return Exported(out, out.with_suffix(".json"), out.with_suffix(".md"), suite_file, sha256)


def card_markdown(card: dict) -> str:
    """The short Markdown model card of an export."""
    train, val, threshold = card["training_set"], card["validation"], card["threshold"]
    kwargs = f" {json.dumps(card['kwargs'])}" if card["kwargs"] else ""

    def sources(side: str) -> str:
        return ", ".join(f"`{s['name']}` ({s['drawn']} of {s['count']}, sha256 `{s['sha256'][:12]}`)"
                         for s in train[side]["sources"])

    metrics = ", ".join(f"{name} {val[name]:.4f}" for name in ("balanced_accuracy", "roc_auc", "accuracy", "loss")
                        if name in val)
    return "\n".join([
        f"# {card['detector']}{kwargs} trained on {train['name']}, seed {card['seed']}",
        "",
        f"- Weights: `{card['weights']['file']}` (safetensors, sha256 `{card['weights']['sha256']}`), checkpoint "
        f"`{card['weights']['checkpoint']}` of the bench cache",
        f"- Training set `{train['name']}`: real {sources('real')}; fake {sources('fake')} (subset sha256 "
        f"`{train['real']['sha256'][:12]}` / `{train['fake']['sha256'][:12]}`); data seed {card['data_seed']}, "
        f"encoding {card['encoding']}",
        f"- Recipe: {json.dumps(card['recipe'], sort_keys=True)}; epoch {card['selected_epoch']} kept "
        f"({card['selection']})",
        f"- Threshold: logit {threshold['logit']:.6g} (probability {threshold['probability']:.4f}), "
        f"{threshold['rule']}",
        f"- Validation ({card['n_val']} images): {metrics}",
        f"- Input: {card['input']['size']}x{card['input']['size']} RGB; {card['input']['policy']}",
        f"- Reproduce: `{card['reproduce']['command']}`",
        f"- Score images: `bench predict PATH... --weights {card['weights']['file']}`",
        "",
    ])
