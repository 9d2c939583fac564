"""Perturbations: functions of (images, labels, detector) -> images, applied identically to both classes.

Images are float (B, 3, H, W) tensors in [0, 1]; labels are 0/1 (1 = fake), which adversarial methods
need. Every perturbation takes a seeded ``torch.Generator`` so that random ones are repeatable.

Corruptions (jpeg, blur, noise, resize) ignore the detector. Attacks (fgsm, pgd) come from torchattacks
and are untargeted: each image is pushed away from its true label, reals towards "fake" and fakes
towards "real", within an L-infinity budget ``eps`` on pixel values in [0, 1]. ``eps`` may be written as
a fraction of 8-bit levels, e.g. ``"8/255"``.

A perturbation's parameters are checked against its signature (type hints, with bounds written as
``Annotated[..., Field(...)]``, see :func:`parameters_model`) when a suite is loaded and on every call. Every
registration declares its cost, the forward and backward passes through the detector per image
(:func:`gradient_steps`: 0 for a corruption), so that estimates count a new attack's steps and a detector
without gradients gets "not applicable" for it; a suite names a perturbation with a :class:`PerturbationEntry`.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from bench.config import Strict, explain
from bench.encoding import jpeg_roundtrip
from bench.registry import Registry, summary

if TYPE_CHECKING:  # torch and the attack library are imported where used, so that listing needs neither
    import torch
    import torchattacks

    from bench.model import Detector


class Perturbation(Protocol):
    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator, **params
    ) -> torch.Tensor: ...


GradientSteps = int | Callable[[dict[str, Any]], int]
"""Forward and backward passes through the detector per image: a number, or a function of the perturbation's
parameters (defaults filled in), e.g. ``lambda params: params["steps"]``."""


@dataclass(frozen=True)
class PerturbationSpec:
    """A registered perturbation: its function, what it is, and what it costs per image.

    Calling the spec checks the parameters against the function's signature (:func:`parameters_model`, a pydantic
    ValidationError, a ValueError, if they do not fit) and applies the function.
    """

    name: str
    function: Perturbation
    description: str
    gradient_steps: GradientSteps  # 0: a corruption, which ignores the detector

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator,
                 **params: Any) -> torch.Tensor:
        parameters_model(self.function).model_validate(params)
        return self.function(images, labels, detector, generator, **params)

    @property
    def needs_gradients(self) -> bool:
        """Whether it follows the detector's gradients (an attack), so that it does not apply to a detector that is
        not differentiable."""
        return callable(self.gradient_steps) or self.gradient_steps > 0

    @property
    def kind(self) -> str:
        """``attack`` or ``corruption``."""
        return "attack" if self.needs_gradients else "corruption"

    @property
    def parameters(self) -> list[str]:
        """The names of its parameters (those after images, labels, detector and generator)."""
        return list(inspect.signature(self.function).parameters)[4:]


PERTURBATIONS: Registry[PerturbationSpec] = Registry(
    "perturbation", "bench.perturbations", "bench.perturbations", spec_type=PerturbationSpec, factories=False,
    register_with="@bench.perturbations.register_perturbation(name, gradient_steps=...)")


def register_perturbation(name: str, *, gradient_steps: GradientSteps) -> Callable[[Perturbation], Perturbation]:
    """Decorator that registers a perturbation function under ``name`` with its cost: ``gradient_steps``, the forward
    and backward passes through the detector it makes per image (0 for a corruption; an attack says how many, so
    that estimates count them). An attack does not apply to a detector that is not differentiable."""

    def decorate(function: Perturbation) -> Perturbation:
        spec = PerturbationSpec(name, function, summary(function), gradient_steps)
        PERTURBATIONS.register(name, spec, origin=function.__module__)
        return function

    return decorate


def needs_gradients(name: str) -> bool:
    """Whether the registered perturbation ``name`` follows a detector's gradients."""
    return PERTURBATIONS.get(name).needs_gradients


@functools.cache
def parameters_model(function: Callable) -> type[BaseModel]:
    """A strict pydantic model of a perturbation's parameters (those after images, labels, detector and generator),
    read from its signature: each hint (bounds as ``Annotated[..., Field(...)]``) and default. A parameter without
    a usable hint takes any value; a ``**params`` catch-all allows any name."""
    function = inspect.unwrap(function)
    fields: dict[str, Any] = {}
    extra = "forbid"
    for parameter in list(inspect.signature(function).parameters.values())[4:]:
        if parameter.kind is parameter.VAR_KEYWORD:
            extra = "allow"
        elif parameter.kind is not parameter.VAR_POSITIONAL:
            hint = Any if parameter.annotation is parameter.empty else parameter.annotation
            if isinstance(hint, str):  # postponed annotations, resolved as typing.get_type_hints would
                try:
                    hint = eval(hint, function.__globals__)
                except NameError:  # a name imported only for type checkers
                    hint = Any
            fields[parameter.name] = (hint, ... if parameter.default is parameter.empty else parameter.default)
    return create_model(f"{function.__name__}_parameters", __config__=ConfigDict(strict=True, extra=extra),
                        **fields)


@register_perturbation("clean", gradient_steps=0)
def clean(images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator) -> torch.Tensor:
    """No perturbation: the images as stored."""
    return images


@register_perturbation("jpeg", gradient_steps=0)
def jpeg(
    images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator,
    quality: Annotated[int, Field(ge=1, le=95)] = 75,
) -> torch.Tensor:
    """Re-encode each image as a Pillow JPEG at ``quality`` (1-95) and decode it again."""
    import torch

    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return torch.from_numpy(jpeg_roundtrip(pixels, quality)).to(images.device, images.dtype) / 255


@register_perturbation("blur", gradient_steps=0)
def blur(
    images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator,
    sigma: Annotated[float, Field(ge=0)] = 1.0,
) -> torch.Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel of 2*ceil(3*sigma)+1 pixels)."""
    import torchvision.transforms.v2.functional as TF

    if sigma == 0:
        return images
    size = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(images, kernel_size=[size, size], sigma=[sigma, sigma])


@register_perturbation("noise", gradient_steps=0)
def noise(
    images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator,
    sigma: Annotated[float, Field(ge=0)] = 0.05,
) -> torch.Tensor:
    """Additive Gaussian noise of standard deviation ``sigma`` (pixel values in [0, 1]), then clipped."""
    import torch

    draw = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return (images + sigma * draw).clamp(0, 1)


@register_perturbation("resize", gradient_steps=0)
def resize(
    images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator,
    scale: Annotated[float, Field(gt=0, le=1)] = 0.5,
) -> torch.Tensor:
    """Downscale by ``scale`` (antialiased bilinear), then upscale back to the original size."""
    import torch.nn.functional as F

    height, width = images.shape[-2:]
    small = F.interpolate(images, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)


class PerturbationEntry(Strict):
    """A registered perturbation and its parameters, e.g. ``{name: jpeg, quality: 50}``."""

    name: str
    params: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "params" not in value:
            return {"name": value.get("name"), "params": {k: v for k, v in value.items() if k != "name"}}
        return value

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return PERTURBATIONS.validate(name)

    @model_validator(mode="after")
    def _parameters(self) -> PerturbationEntry:
        accepted = self.spec.parameters
        unknown = sorted(set(self.params) - set(accepted))
        if unknown:
            raise ValueError(f"perturbation {self.name!r} has no parameter(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(accepted) or 'none'}")
        try:
            parameters_model(self.spec.function).model_validate(self.params)
        except ValidationError as exc:
            raise ValueError(f"perturbation {self.name!r}: {explain(exc)}") from None
        return self

    @property
    def spec(self) -> PerturbationSpec:
        """The registered perturbation."""
        return PERTURBATIONS.get(self.name)

    def effective_params(self) -> dict[str, Any]:
        """The parameters with the perturbation's defaults filled in."""
        defaults = {name: field.default for name, field in parameters_model(self.spec.function).model_fields.items()
                    if not field.is_required()}
        return defaults | self.params

    @property
    def label(self) -> str:
        """e.g. ``clean`` or ``jpeg(quality=50)``."""
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in sorted(self.params.items()))})"


def gradient_steps(entry: PerturbationEntry) -> int:
    """Forward and backward passes through the detector that ``entry`` makes per image, as its registration
    declares them (0 for a corruption)."""
    steps = entry.spec.gradient_steps
    return int(steps(entry.effective_params()) if callable(steps) else steps)


def pixel_budget(value: float | str) -> float:
    """A budget on pixel values in [0, 1], given as a number or a fraction such as ``"8/255"``."""
    try:
        budget = float(Fraction(value) if isinstance(value, str) else value)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"expected a number or a fraction like '8/255', got {value!r}") from None
    if not 0 <= budget <= 1:
        raise ValueError(f"a pixel budget must lie in [0, 1] (e.g. '8/255'), got {value!r}")
    return budget


def _budget(value: float | str) -> float | str:
    pixel_budget(value)  # raises if it is not one
    return value


PixelBudget = Annotated[float | str, AfterValidator(_budget)]  # a number in [0, 1] or a fraction like "8/255"


def _attack(attack: torchattacks.Attack, images: torch.Tensor, labels: torch.Tensor,
            generator: torch.Generator) -> torch.Tensor:
    """Run ``attack`` in float32 with the global RNG (used by random starts) seeded from ``generator``."""
    import torch

    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.autocast(images.device.type, enabled=False):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator, device=generator.device)))
        return attack(images.float(), labels.long()).to(images.dtype)


@register_perturbation("fgsm", gradient_steps=1)
def fgsm(
    images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator,
    eps: PixelBudget = "4/255",
) -> torch.Tensor:
    """FGSM (Goodfellow et al. 2015): one signed-gradient step of size ``eps``."""
    import torchattacks

    from bench.model import TwoClassLogits

    budget = pixel_budget(eps)
    if budget == 0:
        return images
    return _attack(torchattacks.FGSM(TwoClassLogits(detector), eps=budget), images, labels, generator)


@register_perturbation("pgd", gradient_steps=lambda params: params["steps"])
def pgd(
    images: torch.Tensor, labels: torch.Tensor, detector: Detector, generator: torch.Generator,
    eps: PixelBudget = "4/255", steps: Annotated[int, Field(ge=1)] = 10, step: PixelBudget | None = None,
    random_start: bool = True,
) -> torch.Tensor:
    """PGD (Madry et al. 2018): ``steps`` signed-gradient steps of ``step`` (default eps/4) within ``eps``."""
    import torchattacks

    from bench.model import TwoClassLogits

    budget = pixel_budget(eps)
    if budget == 0:
        return images
    alpha = budget / 4 if step is None else pixel_budget(step)
    attack = torchattacks.PGD(TwoClassLogits(detector), eps=budget, alpha=alpha, steps=steps,
                              random_start=random_start)
    return _attack(attack, images, labels, generator)
