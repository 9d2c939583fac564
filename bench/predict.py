"""Predict: a detector's fake probability and verdict for image files and folders, without a suite.

Weights come from a file (``--weights``: safetensors, or a PyTorch state dict loaded with ``weights_only``; an
export of ``bench export`` also names its detector, kwargs, threshold and input policy) or from a results record
(``--record``: the checkpoint its cells were scored with, or the weights file an evaluate-only record names).
Files are decoded with the importers' checks (:func:`bench.importers.decode_image`); one that cannot be used is
listed and skipped, never fatal. Images are scored in batches, the images of one folder argument (or of
consecutive file arguments) together, in file-name order, as ``bench run`` scores a source; batches hold
``batch_size`` images, so images scored as a run scored them (same batches) get the run's scores bit for bit.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.decoding import IMAGE_SUFFIXES, ImageFileError, decode_image, printable_name
from bench.detector import DETECTORS, build_detector
from bench.export import input_policy, record_checkpoint
from bench.files import temp_suffix
from bench.model import Detector, autocast, fit_size
from bench.records import read_record
from bench.weights import WeightsError, check_fit, load_weights, logit_to_probability, probability_to_logit

MAX_FILE_BYTES = 256 * 2**20  # a larger file is skipped unread
PLAIN_UPDATES = 10  # progress lines when not on a terminal


class PredictError(ValueError):
    """Predicting cannot start (no detector named, nothing to score); the message says what to do."""


@dataclass(frozen=True)
class Predictor:
    """A detector with its weights and decision threshold (a logit), and where they came from."""

    detector: Detector
    kwargs: dict
    weights: str  # e.g. "x.safetensors (sha256 ...)" or "checkpoint KEY of records/Y.json"
    threshold: float
    threshold_rule: str

    @property
    def name(self) -> str:
        return self.detector.spec.name

    @property
    def policy(self) -> str:
        return input_policy(self.detector.spec.input_size, self.detector.adapt)

    def describe(self) -> dict:
        """What the JSON output says about the detector, its weights, threshold and input policy."""
        return {"detector": self.name, "kwargs": self.kwargs, "weights": self.weights,
                "threshold": {"logit": self.threshold, "probability": logit_to_probability(self.threshold),
                              "rule": self.threshold_rule},
                "input": {"size": self.detector.spec.input_size, "policy": self.policy}}


def _exported(path: Path) -> dict:
    """What a ``bench export`` wrote into a safetensors file's metadata: detector, kwargs, threshold_logit,
    input_size, classes ({} for other files)."""
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            described = json.loads((handle.metadata() or {}).get("bench", "{}"))
    except (SafetensorError, OSError, ValueError):
        return {}  # read_weights reports what is wrong with the file
    return described if isinstance(described, dict) and "detector" in described else {}


def _threshold(fixed: float | None, fixed_logit: float | None, default: float | None,
               default_rule: str) -> tuple[float, str]:
    if fixed is not None and fixed_logit is not None:
        raise PredictError("give --threshold (a probability) or --logit-threshold, not both")
    if fixed is not None:
        return probability_to_logit(fixed), f"given: probability {fixed:g}"
    if fixed_logit is not None:
        return fixed_logit, f"given: logit {fixed_logit:g}"
    if default is not None:
        return default, default_rule
    return 0.0, "default: probability 0.5 (logit 0)"


def from_weights(weights: Path, detector: str | None = None, kwargs: dict | None = None,
                 strip_prefix: str | None = None, add_prefix: str | None = None, threshold: float | None = None,
                 logit_threshold: float | None = None, adapt: str | None = None) -> Predictor:
    """A predictor from a weights file; an export's metadata fills in what is not given."""
    weights = Path(weights)
    exported = _exported(weights)
    name = detector or exported.get("detector")
    if name is None:
        raise PredictError(f"{weights} does not say which detector it belongs to: name it with --detector "
                           "(`bench list detectors`)")
    if not DETECTORS.get(name).differentiable:
        raise PredictError(f"detector {name!r} is an estimator: bench predict scores neural detectors from weights "
                           "files")
    same = name == exported.get("detector")
    kwargs = kwargs if kwargs is not None else exported.get("kwargs", {}) if same else {}
    classes = tuple(exported.get("classes", ())) if same else ()
    model = build_detector(name, classes=classes, adapt=adapt or exported.get("input_size", "resize"), **kwargs)
    read = load_weights(model.model, weights, strip_prefix, add_prefix, name)
    stored = float(exported["threshold_logit"]) if same and "threshold_logit" in exported else None
    logit, rule = _threshold(threshold, logit_threshold, stored, "from the export: chosen on its training set's "
                             "validation split (see its model card)")
    return Predictor(model, kwargs, f"{weights} (sha256 {read.sha256[:12]})", logit, rule)


def from_record(record_path: Path, data_dir: Path, threshold: float | None = None,
                logit_threshold: float | None = None) -> Predictor:
    """A predictor with the weights a results record was scored with, and the record's threshold."""
    record = read_record(Path(record_path))
    adapt = (record.suite_config or {}).get("input_size", "resize")
    name, kwargs = record.detector, record.detector_kwargs
    if not DETECTORS.get(name).differentiable:
        raise PredictError(f"{record_path} is of {name!r}, an estimator: bench predict scores neural detectors")
    classes = tuple(record.source_attribution.classes) if record.source_attribution else ()
    model = build_detector(name, classes=classes, adapt=adapt, **kwargs)
    if record.weights is not None:
        weights = record.weights
        read = load_weights(model.model, weights.file, weights.remap["strip_prefix"], weights.remap["add_prefix"],
                            name)
        if read.sha256 != weights.sha256:
            raise WeightsError(f"{weights.file} is not the file {record_path} was scored with (sha256 "
                               f"{read.sha256[:12]}, recorded {weights.sha256[:12]})")
        source = f"{weights.file} (sha256 {read.sha256[:12]})"
    else:
        checkpoint = record_checkpoint(record, record_path, data_dir)
        state = checkpoint.state_dict()
        check_fit(model.model, state, f"checkpoint {checkpoint.key[:12]}", name)
        model.load_state(state)
        source = f"checkpoint {checkpoint.key[:12]} (sha256 {checkpoint.info['sha256'][:12]}) of {record_path}"
    rule = record.training.threshold_rule or "chosen on the validation split of its training set"
    logit, rule = _threshold(threshold, logit_threshold, record.threshold, f"from the record: {rule}")
    return Predictor(model, kwargs, source, logit, rule)


@dataclass
class Inputs:
    """The files to score, in groups scored in batches of their own, and what could not be listed."""

    groups: list[list[Path]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    ignored: int = 0  # files in folders whose names are not images'

    @property
    def count(self) -> int:
        return sum(map(len, self.groups))


def collect(paths: list[Path]) -> Inputs:
    """The image files of ``paths``: each folder's image files (recursively, hidden entries and symbolic links to
    folders left out, in name order) as one group, consecutive file arguments as one group."""
    found, loose = Inputs(), []
    for path in map(Path, paths):
        if path.is_dir():
            if loose:
                found.groups.append(loose)
                loose = []
            files = []
            for folder, subfolders, names in os.walk(path):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
                files += [Path(folder) / n for n in sorted(names) if not n.startswith(".")]
            images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
            found.ignored += len(files) - len(images)
            if images:
                found.groups.append(images)
        elif path.exists():
            loose.append(path)
        else:
            found.skipped.append((printable_name(str(path)), "not found"))
    if loose:
        found.groups.append(loose)
    return found


def load_image(path: Path, size: int, adapt: str) -> tuple[torch.Tensor, tuple[int, int]]:
    """One image file as a float (3, size, size) tensor in [0, 1] (see :func:`bench.export.input_policy`) and its
    original (width, height); raises ImageFileError or OSError."""
    name = printable_name(str(path))
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ImageFileError(name, f"larger than {MAX_FILE_BYTES >> 20} MB", "Resize it first", "too large")
    pixels, _, _ = decode_image(path.read_bytes(), name, None)
    _, height, width = pixels.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = torch.from_numpy(pixels[:, top : top + side, left : left + side].copy())
    image = square[None].float().div_(255)  # as scoring scales uint8 pixels
    return fit_size(image, size, adapt)[0], (width, height)


@dataclass
class Prediction:
    """One scored image."""

    file: str
    width: int
    height: int
    logit: float

    def row(self, threshold: float) -> dict:
        return {"file": self.file, "width": self.width, "height": self.height, "logit": self.logit,
                "probability": logit_to_probability(self.logit),
                "verdict": "fake" if self.logit >= threshold else "real"}


def predict(predictor: Predictor, inputs: Inputs, device: torch.device, batch_size: int = 1024,
            workers: int = 4, progress: Callable[[int], None] | None = None) -> Iterator[Prediction]:
    """Score every file of ``inputs`` in order; a file that cannot be used is added to ``inputs.skipped``."""
    detector = predictor.detector.eval().to(device)
    size, adapt = detector.spec.input_size, detector.adapt

    def load(path: Path) -> tuple[torch.Tensor, tuple[int, int]] | str:
        try:
            return load_image(path, size, adapt)
        except ImageFileError as exc:
            return exc.problem
        except OSError as exc:
            return f"cannot read it ({exc.strerror or exc})"

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for group in inputs.groups:
            for start in range(0, len(group), batch_size):
                files = group[start : start + batch_size]
                loaded = list(pool.map(load, files))
                good = [(f, item) for f, item in zip(files, loaded, strict=True) if not isinstance(item, str)]
                inputs.skipped += [(printable_name(str(f)), item) for f, item in zip(files, loaded, strict=True)
                                   if isinstance(item, str)]
                if good:
                    batch = torch.stack([image for _, (image, _) in good]).to(device)
                    with torch.no_grad(), autocast(device):
                        logits = detector(batch).float().cpu().numpy()
                    for (path, (_, (width, height))), logit in zip(good, logits, strict=True):
                        yield Prediction(printable_name(str(path)), width, height, float(logit))
                if progress is not None:
                    progress(len(files))


class Progress:
    """A tqdm bar on a terminal; without one, a plain line every tenth of a long list (on stderr)."""

    def __init__(self, total: int, enabled: bool | None, long: int) -> None:
        terminal = sys.stderr.isatty()
        self.total, self.done, self.shown = total, 0, 0
        self.bar = tqdm(total=total, unit="image", desc="predict") if enabled is not False and terminal else None
        self.plain = enabled is not False and not terminal and total > long

    def __call__(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif self.plain and (self.done - self.shown >= self.total / PLAIN_UPDATES or self.done == self.total):
            self.shown = self.done
            print(f"predict: {self.done:,}/{self.total:,} images", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Outputs:
    """The CSV and JSON files being written, a row at a time (each renamed into place when complete)."""

    FIELDS = ("file", "width", "height", "logit", "probability", "verdict")

    def __init__(self, csv_path: Path | None, json_path: Path | None, header: dict) -> None:
        self.targets: list[tuple[io.TextIOBase, str, Path]] = []
        self.rows = 0
        if csv_path is not None:
            handle, tmp = self._open(csv_path)
            self.csv = csv.DictWriter(handle, self.FIELDS, lineterminator="\n")
            self.csv.writeheader()
            self.targets.append((handle, tmp, csv_path))
        else:
            self.csv = None
        if json_path is not None:
            handle, tmp = self._open(json_path)
            handle.write(json.dumps(header, indent=2)[:-2] + ',\n  "images": [')
            self.json = handle
            self.targets.append((handle, tmp, json_path))
        else:
            self.json = None

    @staticmethod
    def _open(path: Path) -> tuple[io.TextIOBase, str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=temp_suffix(), dir=path.parent)
        os.fchmod(fd, 0o644)
        return os.fdopen(fd, "w", encoding="utf-8", newline=""), tmp

    def write(self, row: dict) -> None:
        if self.csv is not None:
            self.csv.writerow(row)
        if self.json is not None:
            self.json.write(("," if self.rows else "") + "\n    " + json.dumps(row))
        self.rows += 1

    def close(self, tail: dict) -> None:
        """Finish the files with ``tail`` (the JSON's last keys) and move them into place."""
        if self.json is not None:
            self.json.write("\n  ],\n" + json.dumps(tail, indent=2)[2:])
        for handle, tmp, path in self.targets:
            handle.close()
            os.replace(tmp, path)

    def abandon(self) -> None:
        for handle, tmp, _ in self.targets:
            handle.close()
            Path(tmp).unlink(missing_ok=True)


def summary(scored: int, fakes: int, inputs: Inputs) -> dict:
    """Counts: scored, fake and real verdicts, skipped by reason, and files in folders ignored by their names."""
    reasons = Counter(reason.split(" (")[0] for _, reason in inputs.skipped)
    return {"scored": scored, "fake": fakes, "real": scored - fakes, "skipped": len(inputs.skipped),
            "skipped_by_reason": dict(reasons), "ignored_not_image_names": inputs.ignored}


def run_predict(predictor: Predictor, inputs: Inputs, device: torch.device, csv_path: Path | None = None,
                json_path: Path | None = None, batch_size: int = 1024, workers: int = 4,
                progress: bool | None = None, show: int = 20, echo: Callable[[str], None] = print) -> dict:
    """Score ``inputs``, print a table of the first ``show`` images and a summary through ``echo``, write the CSV
    and JSON files; returns the counts of :func:`summary`."""
    if inputs.count == 0:
        listed = f" ({len(inputs.skipped)} not found)" if inputs.skipped else ""
        raise PredictError(f"no image files to score{listed}: give image files or folders holding "
                           f"{', '.join(sorted(IMAGE_SUFFIXES))} files")
    outputs = Outputs(csv_path, json_path, predictor.describe())
    bar = Progress(inputs.count, progress, batch_size)
    width = min(60, max(len(str(f)) for group in inputs.groups for f in group))
    echo(f"{'FILE':<{width}}  {'P(FAKE)':>8}  VERDICT")
    scored = fakes = 0
    try:
        for prediction in predict(predictor, inputs, device, batch_size, workers, bar):
            row = prediction.row(predictor.threshold)
            outputs.write(row)
            fakes += row["verdict"] == "fake"
            if scored < show:
                shown = row["file"] if len(row["file"]) <= width else "..." + row["file"][-width + 3 :]
                echo(f"{shown:<{width}}  {row['probability']:>8.4f}  {row['verdict']}")
            scored += 1
    except BaseException:
        outputs.abandon()
        raise
    finally:
        bar.close()
    if scored > show:
        echo(f"... {scored - show:,} more" + (" (all in the CSV/JSON files)" if csv_path or json_path else
                                                " (--csv/--json write them all)"))
    counts = summary(scored, fakes, inputs)
    outputs.close({"counts": counts, "skipped": [{"file": f, "reason": r} for f, r in inputs.skipped]})
    probability = logit_to_probability(predictor.threshold)
    echo(f"{scored:,} images scored by {predictor.name} ({predictor.weights}): {fakes:,} fake, {scored - fakes:,} "
         f"real at probability >= {probability:.4g} (logit {predictor.threshold:.6g}; {predictor.threshold_rule})")
    echo(f"Input: {predictor.policy}")
    if inputs.skipped:
        echo(f"Skipped {len(inputs.skipped):,} file{'s' * (len(inputs.skipped) > 1)} that could not be used:")
        for file, reason in inputs.skipped[:show]:
            echo(f"  {file}: {reason}")
        if len(inputs.skipped) > show:
            echo(f"  ... {len(inputs.skipped) - show:,} more" + (" (all in the JSON file)" if json_path else ""))
    if inputs.ignored:
        echo(f"Ignored {inputs.ignored:,} file{'s' * (inputs.ignored > 1)} in the folders whose names are not "
             f"images' ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return counts
