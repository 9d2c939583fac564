"""Training recipes: every setting of the one training loop, validated and hashable."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Augmentation = Literal["flip", "rot90", "shift"]


class Recipe(BaseModel):
    """How a detector is trained. Part of the checkpoint key, so every field changes the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(10, ge=1, description="passes over the training split")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0, description="peak learning rate of the one-cycle schedule")
    weight_decay: float = Field(5e-4, ge=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    augment: tuple[Augmentation, ...] = Field(
        ("flip",), description="batch augmentations: horizontal flips, 90-degree rotations, shifts"
    )
    max_shift: int = Field(2, ge=0, le=8, description="largest shift in pixels for the 'shift' augmentation")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="share of the training data held out")

    def updated(self, **changes: object) -> Recipe:
        """A copy with ``changes`` applied and validated."""
        return Recipe.model_validate({**self.model_dump(), **changes})
