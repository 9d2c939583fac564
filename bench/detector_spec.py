"""A detector plugin's declaration: its factory and the metadata the harness reads (input size, normalisation,
default recipe, whether gradients flow through it).

Kept apart from :mod:`bench.detector` (the registry, which builds models) so that the model wrappers
(:mod:`bench.model`, :mod:`bench.estimator`) can name it without importing the registry. Imports no torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.recipe import Recipe, RecipeProfile

GPU_BATCH_SIZE = 1024  # a batch of 32x32 images large enough that a GPU step is not bound by kernel launches

if TYPE_CHECKING:
    from torch import nn

CIFAKE_MEAN = (0.4914, 0.4822, 0.4465)  # CIFAR-10 channel statistics: CIFAKE's reals are CIFAR-10
CIFAKE_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class DetectorSpec:
    """A detector plugin: its factory and metadata.

    ``factory(**kwargs)`` returns an ``nn.Module`` taking normalised (B, 3, H, W) images and returning
    (B, 1) or (B,) logits, "fake" positive. Normalisation is applied by :class:`bench.model.Detector`, so
    attacks and attributions work on pixel values in [0, 1]. A factory that accepts ``num_classes`` (as
    timm's do) can also be trained for source attribution, returning (B, num_classes) logits.
    """

    name: str
    factory: Callable[..., nn.Module]
    input_size: int = 32
    mean: tuple[float, float, float] = CIFAKE_MEAN
    std: tuple[float, float, float] = CIFAKE_STD
    recipe: Recipe = field(default_factory=Recipe)
    description: str = ""
    cam_layer: str | None = None  # submodule for Grad-CAM; None: found by `bench.attribution.cam_layer`
    differentiable: bool = True  # False: the factory returns a scikit-learn style estimator (fit / predict_proba)
    gpu_batch_size: int = GPU_BATCH_SIZE  # the batch of its GPU recipe (networks only; estimators fit at once)

    def recipe_for(self, profile: RecipeProfile) -> Recipe:
        """The detector's recipe under a suite's ``recipe_profile``: its own, or for "gpu" (networks only) its own at
        ``gpu_batch_size`` with the learning rate scaled to that batch."""
        if profile == "gpu" and self.differentiable:
            return self.recipe.at_batch_size(self.gpu_batch_size)
        return self.recipe

    @property
    def attributes_sources(self) -> bool:
        """Whether the factory takes ``num_classes``, so the detector can be trained for source attribution."""
        return "num_classes" in inspect.signature(self.factory).parameters
