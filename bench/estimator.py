"""Detectors that are not neural networks: a scikit-learn style estimator on features of the pixels.

The estimator is fitted on features of images in [0, 1] (by default the pixels flattened to (N, 3*H*W); a
factory that returns :class:`WithFeatures` brings its own) and scored with ``predict_proba``; its "fake" logit is
the log-odds of the fake class. A fitted estimator is stored in the checkpoint as plain arrays (safetensors, never
a pickle) by the first :data:`CODECS` entry that can store it, and scored from those arrays exactly as scikit-learn
scores it: tree ensembles (random forest, extra trees, a decision tree) and logistic regression, alone or after
a standard scaler in a pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from bench.detector_spec import DetectorSpec
from bench.model import fit_size

TREE_ARRAYS = ("children_left", "children_right", "feature", "threshold")
LINEAR_ARRAYS = ("mean", "scale", "coef", "intercept")
EPSILON = 1e-6  # probabilities are clipped to [EPSILON, 1 - EPSILON] before the log-odds
FEATURE_BATCH = 4096  # images turned into features at a time


class EstimatorError(ValueError):
    """An estimator cannot be stored safely or used as a detector; the message says what to do."""


class Scorer(Protocol):
    """A fitted estimator rebuilt from arrays: (N, 2) class probabilities (real, fake) of (N, F) features."""

    def predict_proba(self, features: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class WithFeatures:
    """What an estimator detector's factory returns when its estimator takes features rather than pixels:
    ``features`` maps float (N, 3, S, S) images in [0, 1] (S the detector's input size) to (N, F) arrays."""

    estimator: Any
    features: Callable[[torch.Tensor], np.ndarray]


def flat_pixels(images: torch.Tensor) -> np.ndarray:
    """The default features: the 3*S*S pixel values of each image, in [0, 1]."""
    return images.reshape(len(images), -1).numpy()


@dataclass(frozen=True)
class Codec:
    """How one kind of fitted estimator becomes named arrays, and is scored from them again.

    ``stores`` says whether it can store a fitted estimator; ``prefix`` starts every array name it writes, which
    is how stored arrays find their codec.
    """

    prefix: str
    kinds: str  # what it stores, for error messages
    stores: Callable[[Any], bool]
    to_arrays: Callable[[Any], dict[str, np.ndarray]]
    from_arrays: Callable[[dict[str, np.ndarray]], Scorer]

    def reads(self, names: Collection[str]) -> bool:
        """Whether arrays with these names are this codec's."""
        return bool(names) and all(name.startswith(self.prefix) for name in names)


CODECS: list[Codec] = []


def register_codec(codec: Codec) -> Codec:
    """Add a codec; estimators are stored by the first registered codec that can store them."""
    CODECS.append(codec)
    return codec


def estimator_arrays(estimator: Any) -> dict[str, np.ndarray]:
    """A fitted estimator as named arrays, by the first codec that stores it; EstimatorError if none does."""
    for codec in CODECS:
        if codec.stores(estimator):
            return codec.to_arrays(estimator)
    raise EstimatorError(f"{type(estimator).__name__} cannot be stored without pickle: bench stores "
                         f"{'; '.join(codec.kinds for codec in CODECS)}. Make the detector's factory return one")


def scorer_from_arrays(arrays: dict[str, np.ndarray]) -> Scorer:
    """The scorer of arrays written by :func:`estimator_arrays`."""
    for codec in CODECS:
        if codec.reads(arrays):
            return codec.from_arrays(arrays)
    raise EstimatorError(f"the stored arrays ({', '.join(sorted(arrays)[:4])}, ...) belong to no known estimator "
                         "kind: the checkpoint was written by another version of bench or a codec not registered here")


@dataclass(frozen=True)
class ArrayForest:
    """A fitted tree ensemble as arrays: each tree's node table and leaf class shares, averaged as scikit-learn does."""

    trees: list[dict[str, np.ndarray]]

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32)  # scikit-learn compares float32 pixels with the thresholds
        total = np.zeros((len(features), self.trees[0]["value"].shape[1]))
        rows = np.arange(len(features))
        for tree in self.trees:
            node = np.zeros(len(features), dtype=np.int64)
            while True:
                inner = tree["children_left"][node] >= 0
                if not inner.any():
                    break
                at = node[inner]
                left = features[rows[inner], tree["feature"][at]] <= tree["threshold"][at]
                node[inner] = np.where(left, tree["children_left"][at], tree["children_right"][at])
            value = tree["value"][node]
            total += value / value.sum(axis=1, keepdims=True)
        return total / len(self.trees)


def _trees(estimator: Any) -> list | None:
    trees = getattr(estimator, "estimators_", None)
    trees = [estimator] if trees is None and hasattr(estimator, "tree_") else trees
    return trees if trees and all(hasattr(t, "tree_") for t in trees) else None


def forest_arrays(estimator: Any) -> dict[str, np.ndarray]:
    """A fitted scikit-learn tree or tree ensemble as named arrays; EstimatorError for anything else."""
    trees = _trees(estimator)
    if trees is None:
        raise EstimatorError(f"{type(estimator).__name__} cannot be stored without pickle: bench stores fitted "
                             "scikit-learn trees and tree ensembles (e.g. RandomForestClassifier)")
    arrays = {}
    for i, tree in enumerate(trees):
        for name in TREE_ARRAYS:
            arrays[f"tree{i}.{name}"] = np.asarray(getattr(tree.tree_, name))
        arrays[f"tree{i}.value"] = np.asarray(tree.tree_.value)[:, 0, :].astype(np.float64)
    return arrays


def forest_from_arrays(arrays: dict[str, np.ndarray]) -> ArrayForest:
    """The :class:`ArrayForest` that :func:`forest_arrays` stored."""
    count = len({key.split(".")[0] for key in arrays})
    return ArrayForest([{name: arrays[f"tree{i}.{name}"] for name in (*TREE_ARRAYS, "value")} for i in range(count)])


@dataclass(frozen=True)
class ArrayLinear:
    """A fitted binary logistic regression, after an optional standard scaler, as arrays; scored with scikit-learn's
    operations in its order and dtypes, so the probabilities are the same to the bit."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        x = np.array(features, dtype=np.result_type(features, np.float32))  # StandardScaler keeps float32 features
        x -= self.mean.astype(x.dtype)  # and casts its statistics to their dtype (scikit-learn 1.9 does)
        x /= self.scale.astype(x.dtype)
        fake = expit((x @ self.coef.T + self.intercept).reshape(-1))
        return np.stack([1 - fake, fake], axis=1)


def _linear_parts(estimator: Any) -> tuple[Any, Any] | None:
    """(scaler or None, logistic regression) of a fitted binary logistic regression, alone or as the last step of a
    pipeline whose only other step is a standard scaler; None for anything else."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [step for _, step in estimator.steps] if isinstance(estimator, Pipeline) else [estimator]
    *before, model = steps
    if not isinstance(model, LogisticRegression) or len(getattr(model, "classes_", ())) != 2:
        return None
    if before and not (len(before) == 1 and isinstance(before[0], StandardScaler)):
        return None
    return (before[0] if before else None), model


def linear_arrays(estimator: Any) -> dict[str, np.ndarray]:
    """A fitted binary logistic regression (optionally after a standard scaler in a pipeline) as named arrays."""
    scaler, model = _linear_parts(estimator)
    features = model.coef_.shape[1]
    mean = scaler.mean_ if scaler is not None and scaler.with_mean else np.zeros(features)
    scale = scaler.scale_ if scaler is not None and scaler.with_std else np.ones(features)
    parts = {"mean": mean, "scale": scale, "coef": model.coef_, "intercept": model.intercept_}
    return {f"linear.{name}": np.asarray(parts[name]) for name in LINEAR_ARRAYS}


def linear_from_arrays(arrays: dict[str, np.ndarray]) -> ArrayLinear:
    """The :class:`ArrayLinear` that :func:`linear_arrays` stored."""
    return ArrayLinear(*(arrays[f"linear.{name}"] for name in LINEAR_ARRAYS))


register_codec(Codec("tree", "fitted scikit-learn trees and tree ensembles (e.g. RandomForestClassifier)",
                     lambda estimator: _trees(estimator) is not None, forest_arrays, forest_from_arrays))
register_codec(Codec("linear.", "binary LogisticRegression, alone or after a StandardScaler in a Pipeline",
                     lambda estimator: _linear_parts(estimator) is not None, linear_arrays, linear_from_arrays))


class EstimatorDetector:
    """An estimator as a detector (a :class:`bench.model.DetectorModel`): uint8 images in, "fake" logits out; no
    gradients, so gradient attacks and attributions do not apply. It scores on the CPU, whatever the device."""

    classes: tuple[str, ...] = ()
    differentiable: ClassVar[bool] = False

    def __init__(self, spec: DetectorSpec, estimator: Any, adapt: str = "resize") -> None:
        featured = estimator if isinstance(estimator, WithFeatures) else WithFeatures(estimator, flat_pixels)
        if not (hasattr(featured.estimator, "fit") and hasattr(featured.estimator, "predict_proba")):
            raise EstimatorError(f"detector {spec.name!r}: its factory must return an estimator with fit and "
                                 f"predict_proba, got {type(featured.estimator).__name__}")
        self.spec, self.estimator, self.adapt = spec, featured.estimator, adapt
        self.featurize = featured.features
        self.arrays: dict[str, np.ndarray] | None = None  # the fitted estimator, as stored
        self.scorer: Scorer | None = None  # scores from those arrays

    def features(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, F) features of uint8 (N, 3, H, W) images, computed on pixels in [0, 1] at the detector's input size:
        the estimator's own (:class:`WithFeatures`), by default the 3*S*S pixel values."""
        chunks = []
        for start in range(0, len(images), FEATURE_BATCH):
            batch = images[start : start + FEATURE_BATCH]
            batch = batch.cpu() if isinstance(batch, torch.Tensor) else torch.as_tensor(np.asarray(batch))
            pixels = batch.float() / 255
            chunks.append(self.featurize(fit_size(pixels, self.spec.input_size, self.adapt)))
        return np.concatenate(chunks)

    def fit(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Fit the estimator on the images' features, then score from its stored arrays (as it will be when loaded)."""
        self.estimator.fit(self.features(images), labels)
        self.arrays = estimator_arrays(self.estimator)
        self.scorer = scorer_from_arrays(self.arrays)

    def predict_proba(self, images: np.ndarray | torch.Tensor, batch_size: int = 2048) -> np.ndarray:
        """(N, 2) probabilities of real and fake for uint8 images."""
        if self.scorer is None:
            raise EstimatorError(f"detector {self.spec.name!r} is not fitted")
        out = [self.scorer.predict_proba(self.features(images[i : i + batch_size]))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.empty((0, 2))

    def logits(self, images: np.ndarray | torch.Tensor, device: torch.device | None = None,
               batch_size: int = 2048) -> np.ndarray:
        """(N,) log-odds of "fake" (computed on the CPU; ``device`` is where the images may be)."""
        probability = np.clip(self.predict_proba(images, batch_size)[:, 1], EPSILON, 1 - EPSILON)
        return np.log(probability / (1 - probability)).astype(np.float32)

    def outputs(self, images: np.ndarray | torch.Tensor, device: torch.device | None = None,
                batch_size: int = 2048) -> np.ndarray:
        """The (N,) "fake" logits: an estimator attributes no sources."""
        return self.logits(images, device, batch_size)

    def state(self) -> dict[str, torch.Tensor]:
        if self.arrays is None:
            raise EstimatorError(f"detector {self.spec.name!r} is not fitted")
        return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in self.arrays.items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        arrays = {key: value.numpy() for key, value in state.items()}
        self.scorer, self.arrays = scorer_from_arrays(arrays), arrays
