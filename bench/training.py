"""Training: :func:`fit` trains any detector model the way its kind learns (a network by the one training loop,
an estimator by one fit), chosen by the model's declared ``differentiable``.

The whole training set lives on the device as a uint8 tensor (as in airbench); batches are gathered by
index and augmented as whole batches. A validation split is carved from the training data, stratified and
seeded; the epoch kept and the decision threshold are both chosen on it, never on test data. What validation
says is summarised by the metric registry's headline metrics (:data:`bench.metrics.DEFAULT_HEADLINE`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bench.augment import augment
from bench.estimator import EstimatorDetector
from bench.metrics import DEFAULT_HEADLINE, choose_threshold, point_metrics
from bench.model import SCORE_BATCH, Detector, DetectorModel, autocast, detection_scores
from bench.recipe import Recipe


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def no_bars(progress: bool | None) -> bool | None:
    """tqdm's ``disable`` for a progress setting: None shows bars only on a terminal."""
    return None if progress is None else not progress


def seed_everything(seed: int) -> None:
    """Seed torch's CPU and CUDA generators."""
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


EpochHook = Callable[[int, float, float], None]
"""Called after each epoch with (epoch, validation threshold, seconds of training so far); its own time is
not counted as training (benchmarks use it to measure accuracy over time)."""


@dataclass
class TrainingResult:
    """What one training run produced: the selected weights and what validation said about them."""

    state: dict[str, torch.Tensor]
    threshold: float
    val: dict[str, float]
    selected_epoch: int
    history: list[dict[str, float]]
    seconds: float
    n_train: int
    n_val: int


def _to_device(images: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.tensor(np.asarray(images), device=device)
    return tensor.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else tensor


def predict_logits(detector: DetectorModel, images: np.ndarray | torch.Tensor, device: torch.device,
                   batch_size: int = SCORE_BATCH, per_class: bool = False) -> np.ndarray:
    """Fake logits (N,) of uint8 (N, 3, H, W) images, in batches, in eval mode; with ``per_class``, the
    (N, classes) logits of a source-attribution model (:meth:`bench.model.DetectorModel.outputs`)."""
    return detector.outputs(images, device, batch_size) if per_class else detector.logits(images, device, batch_size)


def validation_summary(scores: dict[str, float]) -> dict[str, float]:
    """The headline metrics of validation ``scores``, as a training history names them (``val_roc_auc``, ...)."""
    return {f"val_{name}": scores[name] for name in DEFAULT_HEADLINE}


class DivergedError(RuntimeError):
    """Training diverged: validation scores that are not finite, or a validation loss that exploded."""


DIVERGED_LOSS = 1e3  # mean validation cross-entropy in nats per image; a constant guess scores ln 2 = 0.69


def check_converging(logits: np.ndarray, labels: np.ndarray, epoch: int) -> None:
    """Raise :class:`DivergedError` if the validation ``logits`` after ``epoch`` are not all finite or their
    cross-entropy exceeds :data:`DIVERGED_LOSS`: nothing trained from there is a result to publish."""
    bad = int((~np.isfinite(logits)).sum())
    if bad:
        raise DivergedError(f"training diverged: {bad} of {len(logits)} validation scores are not finite after epoch "
                            f"{epoch}; lower the learning rate (or check the detector's forward pass)")
    loss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(np.asarray(logits, np.float32)),
                                                    torch.from_numpy(np.asarray(labels, np.float32))))
    if loss > DIVERGED_LOSS:
        raise DivergedError(f"training diverged: validation loss {loss:.3g} after epoch {epoch} (a constant guess "
                            f"scores 0.69); lower the learning rate")


def validation_split(labels: np.ndarray, recipe: Recipe, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and the validation part: a stratified, seeded split of the training data."""
    from sklearn.model_selection import train_test_split  # imported here: scikit-learn takes seconds to import

    return train_test_split(np.arange(len(labels)), test_size=recipe.val_fraction, stratify=labels, random_state=seed)


def fit(detector: DetectorModel, images: np.ndarray, labels: np.ndarray, recipe: Recipe, seed: int,
        device: torch.device, progress: bool | None = None, description: str = "train") -> TrainingResult:
    """Train ``detector`` on uint8 images the way its kind learns: a network by gradient descent
    (:func:`train_detector`), an estimator by one fit (:func:`fit_estimator`)."""
    if detector.differentiable:
        return train_detector(detector, images, labels, recipe, seed, device, progress, description)
    return fit_estimator(detector, images, labels, recipe, seed)


def fit_estimator(detector: EstimatorDetector, images: np.ndarray, labels: np.ndarray, recipe: Recipe,
                  seed: int) -> TrainingResult:
    """Fit a non-differentiable detector on the training part and choose its threshold on the validation part,
    by the same split and rule as :func:`train_detector` (one "epoch"; the estimator's own settings say the rest)."""
    start = time.perf_counter()
    train_idx, val_idx = (np.sort(i) for i in validation_split(labels, recipe, seed))
    if hasattr(detector.estimator, "random_state"):
        detector.estimator.set_params(random_state=seed)
    detector.fit(images[train_idx], labels[train_idx])
    summary = {}
    for part, idx in (("train", train_idx), ("val", val_idx)):
        logits = detector.logits(images[idx])
        threshold = choose_threshold(labels[idx], logits) if part == "val" else None
        summary[part] = (logits, threshold)
    val_logits, threshold = summary["val"]
    scores = point_metrics(labels[val_idx], val_logits, threshold)
    train_scores = point_metrics(labels[train_idx], summary["train"][0], threshold)
    val_loss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(val_logits),
                                                         torch.from_numpy(labels[val_idx]).float()))
    history = [{"epoch": 1, "train_accuracy": train_scores["accuracy"], "val_loss": val_loss,
                **validation_summary(scores)}]
    return TrainingResult(detector.state(), threshold, {"loss": val_loss, **scores}, 1, history,
                          time.perf_counter() - start, len(train_idx), len(val_idx))


def train_detector(
    detector: Detector,
    images: np.ndarray,
    labels: np.ndarray,
    recipe: Recipe,
    seed: int,
    device: torch.device,
    progress: bool | None = None,
    description: str = "train",
    on_epoch: EpochHook | None = None,
) -> TrainingResult:
    """Train ``detector`` on uint8 images with 0/1 labels (1 = fake) following ``recipe``.

    For a source-attribution detector (``detector.classes``) the labels are class indices (0 = real) and
    the loss is cross-entropy over classes; epoch and threshold are still chosen by detection (real vs
    any fake) on validation, whose class accuracy is recorded as ``source_accuracy``.
    """
    start, hooked = time.perf_counter(), 0.0
    seed_everything(seed)
    attributing = bool(detector.classes)
    train_idx, val_idx = validation_split(labels, recipe, seed)
    x_train, x_val = _to_device(images[np.sort(train_idx)], device), _to_device(images[np.sort(val_idx)], device)
    y_train = torch.from_numpy(labels[np.sort(train_idx)].astype(np.int64 if attributing else np.float32)).to(device)
    classes_val = labels[np.sort(val_idx)].astype(int)
    y_val = (classes_val > 0).astype(int)

    detector.to(device)
    if device.type == "cuda":
        detector.to(memory_format=torch.channels_last)
    steps_per_epoch = math.ceil(len(y_train) / recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            detector.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(detector.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total_steps)
    generator = torch.Generator(device=device).manual_seed(seed)

    best: tuple[float, float] | None = None
    state, threshold, val_summary, selected, history = {}, 0.0, {}, 0, []
    bar = tqdm(total=total_steps, desc=description, unit="step", disable=no_bars(progress), leave=False)
    for epoch in range(1, recipe.epochs + 1):
        detector.train()
        order = torch.randperm(len(y_train), generator=generator, device=device)
        running = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            idx = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            batch = augment(x_train[idx].float().div_(255), recipe.augment, generator, recipe.max_shift,
                            **recipe.augment_settings)
            with autocast(device):
                if attributing:
                    loss = F.cross_entropy(detector.class_logits(batch).float(), y_train[idx])
                else:
                    loss = F.binary_cross_entropy_with_logits(detector(batch).float(), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.detach()
            bar.update()
        outputs = detector.outputs(x_val, device)
        logits = detection_scores(outputs)
        check_converging(logits, y_val, epoch)
        val_threshold = choose_threshold(y_val, logits)
        scores = point_metrics(y_val, logits, val_threshold)
        if attributing:
            scores["source_accuracy"] = float((outputs.argmax(1) == classes_val).mean())
        val_loss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(y_val).float()))
        balanced = scores["balanced_accuracy"]  # the selection rule's first criterion
        history.append({"epoch": epoch, "train_loss": float(running) / steps_per_epoch, "val_loss": val_loss,
                        **validation_summary(scores)})
        bar.set_postfix(val_acc=f"{balanced:.3f}")
        if best is None or (balanced, -val_loss) > best:
            best = (balanced, -val_loss)
            state = detector.state()
            threshold, selected = val_threshold, epoch
            val_summary = {"loss": val_loss, **scores}
        if on_epoch is not None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            paused = time.perf_counter()
            on_epoch(epoch, val_threshold, paused - start - hooked)
            hooked += time.perf_counter() - paused
    bar.close()
    detector.load_state(state)
    return TrainingResult(
        state=state,
        threshold=threshold,
        val=val_summary,
        selected_epoch=selected,
        history=history,
        seconds=time.perf_counter() - start - hooked,
        n_train=len(train_idx),
        n_val=len(val_idx),
    )
