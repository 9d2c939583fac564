"""Detectors that are not neural networks: a scikit-learn style estimator on flattened pixels.

The estimator is fitted on images in [0, 1] flattened to (N, 3*H*W) and scored with ``predict_proba``; its
"fake" logit is the log-odds of the fake class. Trained tree ensembles (random forest, extra trees, a
decision tree) are stored in the checkpoint as plain arrays (safetensors, never a pickle) and scored from
those arrays, exactly as scikit-learn scores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.model import fit_size

if TYPE_CHECKING:
    import torch

    from bench.detector import DetectorSpec

TREE_ARRAYS = ("children_left", "children_right", "feature", "threshold")
EPSILON = 1e-6  # probabilities are clipped to [EPSILON, 1 - EPSILON] before the log-odds


class EstimatorError(ValueError):
    """An estimator cannot be stored safely or used as a detector; the message says what to do."""


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


def forest_arrays(estimator: Any) -> dict[str, np.ndarray]:
    """A fitted scikit-learn tree or tree ensemble as named arrays; EstimatorError for anything else."""
    trees = getattr(estimator, "estimators_", None)
    trees = [estimator] if trees is None and hasattr(estimator, "tree_") else trees
    if not trees or not all(hasattr(t, "tree_") for t in trees):
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


class EstimatorDetector:
    """An estimator as a detector: uint8 images in, "fake" logits out; no gradients, so attacks do not apply."""

    classes: tuple[str, ...] = ()

    def __init__(self, spec: DetectorSpec, estimator: Any, adapt: str = "resize") -> None:
        if not (hasattr(estimator, "fit") and hasattr(estimator, "predict_proba")):
            raise EstimatorError(f"detector {spec.name!r}: its factory must return an estimator with fit and "
                                 f"predict_proba, got {type(estimator).__name__}")
        self.spec, self.estimator, self.adapt = spec, estimator, adapt

    def features(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, 3*S*S) float32 pixels in [0, 1] at the detector's input size S."""
        import torch

        pixels = torch.as_tensor(np.asarray(images)).float() / 255
        return fit_size(pixels, self.spec.input_size, self.adapt).reshape(len(pixels), -1).numpy()

    def fit(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.estimator.fit(self.features(images), labels)
        self.estimator = forest_from_arrays(forest_arrays(self.estimator))  # scored as it will be when loaded

    def logits(self, images: np.ndarray | torch.Tensor, batch_size: int = 2048) -> np.ndarray:
        """(N,) log-odds of "fake"."""
        out = [self.estimator.predict_proba(self.features(images[i : i + batch_size]))[:, 1]
               for i in range(0, len(images), batch_size)]
        probability = np.clip(np.concatenate(out) if out else np.empty(0), EPSILON, 1 - EPSILON)
        return np.log(probability / (1 - probability)).astype(np.float32)

    def state_dict(self) -> dict[str, torch.Tensor]:
        import torch

        if not isinstance(self.estimator, ArrayForest):
            raise EstimatorError(f"detector {self.spec.name!r} is not fitted")
        trees = {f"tree{i}.{name}": tree[name] for i, tree in enumerate(self.estimator.trees) for name in tree}
        return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in trees.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.estimator = forest_from_arrays({key: value.numpy() for key, value in state.items()})
