"""A random forest on raw pixels (scikit-learn): the overfitting baseline of the seed study."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.detector import register_detector
from bench.recipe import Recipe

if TYPE_CHECKING:
    from sklearn.ensemble import RandomForestClassifier


@register_detector("random-forest", recipe=Recipe(epochs=1, augment=()), differentiable=False)
def random_forest(n_estimators: int = 100, max_depth: int | None = None, min_samples_leaf: int = 1,
                  max_features: str | float = "sqrt", n_jobs: int = -1) -> RandomForestClassifier:
    """Random forest on the 3,072 raw pixel values (no gradients: attacks and attributions do not apply)."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, min_samples_leaf=min_samples_leaf,
                                  max_features=max_features, n_jobs=n_jobs)
