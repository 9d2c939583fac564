"""Training recipes: every setting of the one training loop, validated and hashable."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer

Augmentation = Literal["flip", "rot90", "shift", "blur", "jpeg"]
Optimizer = Literal["adamw", "sgd"]

RecipeProfile = Literal["default", "gpu"]
"""How a suite sizes training: each detector's own recipe ("default"), or its recipe at the detector's GPU batch
size with the learning rate scaled to it ("gpu", see :meth:`Recipe.at_batch_size`)."""

LR_SCALING: dict[str, float] = {"adamw": 0.5, "sgd": 1.0}
"""The learning-rate rule per optimizer: a batch k times larger trains at ``lr * k ** LR_SCALING[optimizer]``.
The square-root rule for Adam-type optimizers (Malladi et al., NeurIPS 2022), the linear rule for SGD (Goyal et
al. 2017); the one-cycle schedule's warm-up is the warm-up both rules assume."""

SETTINGS: dict[str, tuple[str, ...]] = {
    "blur": ("blur_probability", "blur_sigma"),
    "jpeg": ("jpeg_probability", "jpeg_quality"),
}
"""The recipe fields that only one augmentation reads. They are part of a recipe's dump (and so of its checkpoint
key) only when the recipe uses that augmentation: recipes written before they existed keep their keys, and two
recipes that train alike share one."""


class Recipe(BaseModel):
    """How a detector is trained. Part of the checkpoint key, so every field that changes training changes the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(10, ge=1, description="passes over the training split")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0, description="peak learning rate of the one-cycle schedule")
    weight_decay: float = Field(5e-4, ge=0)
    optimizer: Optimizer = "adamw"
    augment: tuple[Augmentation, ...] = Field(
        ("flip",), description="batch augmentations, in order: horizontal flips, 90-degree rotations, shifts, "
        "Gaussian blur and JPEG re-encoding (blur and jpeg as in CNNSpot, Wang et al. 2020)"
    )
    max_shift: int = Field(2, ge=0, le=8, description="largest shift in pixels for the 'shift' augmentation")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="share of the training data held out")
    blur_probability: float = Field(0.5, ge=0, le=1, description="share of training images 'blur' blurs")
    blur_sigma: float = Field(3.0, gt=0, description="'blur' draws each image's sigma from U[0, blur_sigma] pixels")
    jpeg_probability: float = Field(0.5, ge=0, le=1, description="share of training images 'jpeg' re-encodes")
    jpeg_quality: tuple[int, int] = Field(
        (30, 100), description="'jpeg' draws each image's quality from this range, both ends included"
    )

    @field_validator("jpeg_quality")
    @classmethod
    def _quality_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high <= 100:
            raise ValueError(f"jpeg_quality must be [low, high] with 1 <= low <= high <= 100, got {list(value)}")
        return value

    @model_serializer(mode="wrap")
    def _used_settings_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        unused = {name for used, names in SETTINGS.items() if used not in self.augment for name in names}
        return {key: value for key, value in handler(self).items() if key not in unused}

    @property
    def augment_settings(self) -> dict[str, Any]:
        """The fields read by the augmentations this recipe uses, by name (beside ``max_shift``, which all get)."""
        return {name: getattr(self, name) for augmentation in self.augment for name in SETTINGS.get(augmentation, ())}

    def updated(self, **changes: object) -> Recipe:
        """A copy with ``changes`` applied and validated."""
        return Recipe.model_validate({**dict(self), **changes})

    def at_batch_size(self, batch_size: int) -> Recipe:
        """This recipe at ``batch_size``, its peak learning rate scaled by the optimizer's rule (:data:`LR_SCALING`)."""
        factor = batch_size / self.batch_size
        return self.updated(batch_size=batch_size, lr=self.lr * factor ** LR_SCALING[self.optimizer])
