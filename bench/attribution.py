"""Attributions: Captum maps of what a detector looks at, drawn as pictures and scored.

Every method maps images in [0, 1] to one (N, H, W) map per image whose large values are evidence for
the class the detector predicts for that image ("fake" at or above its threshold, else "real").
Three scores are computed per method, each the mean over images with a bootstrap interval:

- faithfulness, by deletion and insertion (Petsiuk et al. 2018): pixels are replaced by a blurred copy of
  the image (deletion), or put into the blurred copy (insertion), most attributed first; the area under
  the curve of the predicted class's probability. ``faithfulness`` = insertion AUC - deletion AUC, higher
  is better; the same score for the same architecture with random weights is recorded beside it
  (``faithfulness_random_weights``), and so is the trained model's score for its own map with the pixels
  randomly permuted (``faithfulness_shuffled``, seeded, one permutation per image): the score of an
  ordering that knows nothing, which a map must beat to say where the evidence is;
- randomisation (Adebayo et al. 2018): Spearman rank correlation between the maps of the trained model
  and of the same architecture with its initial random weights; a method that explains the model (not
  the image) changes a lot, so lower is better;
- centre share: the share of absolute attribution mass inside a central square (side ``centre`` x the
  image side), for reals and fakes (``centre_share_real``, ``centre_share_fake``); compare it with the
  square's share of the area. Above the area share, the detector looks at the middle of the image, where
  CIFAR-10 objects sit; below, at the border. ``centre_share_random_weights`` is the share of the
  random-weight model's maps on the same images (reals and fakes together): how central the method and
  architecture are before anything is learned, the reference a trained share should be read against.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.registry import Registry

if TYPE_CHECKING:  # torch, Captum and matplotlib are imported where used, so that suites validate without them
    import torch

    from bench.model import Detector


class AttributionSettings(BaseModel):
    """The ``attribution`` section of a suite."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    methods: list[str] = Field(["saliency", "integrated_gradients", "grad_cam"], min_length=1)
    images: int = Field(64, ge=2, description="test images per class that are explained and scored")
    centre: float = Field(0.5, gt=0, lt=1, description="side of the central square, as a share of the image side")
    steps: int = Field(16, ge=2, description="deletion/insertion steps")
    ig_steps: int = Field(32, ge=2, description="integration steps of Integrated Gradients")
    figure_images: int = Field(4, ge=1, description="images per class drawn in the picture")


class AttributionMethod(Protocol):
    def __call__(
        self, detector: Detector, images: torch.Tensor, signs: torch.Tensor, settings: AttributionSettings
    ) -> torch.Tensor: ...


ATTRIBUTIONS: Registry[AttributionMethod] = Registry("attribution method", "bench.attributions", "bench.attribution")


def register_attribution(name: str) -> Callable[[AttributionMethod], AttributionMethod]:
    """Decorator that registers an attribution method under ``name``.

    A method takes (detector, images (N, 3, H, W) in [0, 1], signs (N,) = +1 where the detector predicts
    fake and -1 where it predicts real, settings) and returns (N, H, W) maps.
    """

    def decorate(function: AttributionMethod) -> AttributionMethod:
        ATTRIBUTIONS.register(name, function, origin=function.__module__)
        return function

    return decorate


@register_attribution("saliency")
def saliency(detector: Detector, images: torch.Tensor, signs: torch.Tensor,
             settings: AttributionSettings) -> torch.Tensor:
    """Saliency (Simonyan et al. 2014): the absolute gradient of the logit, summed over colour channels."""
    from captum.attr import Saliency

    return Saliency(detector).attribute(images.detach().requires_grad_(), abs=True).sum(1)


@register_attribution("integrated_gradients")
def integrated_gradients(detector: Detector, images: torch.Tensor, signs: torch.Tensor,
                         settings: AttributionSettings) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) from a black image, summed over colour channels."""
    from captum.attr import IntegratedGradients

    method = IntegratedGradients(detector)
    maps = method.attribute(images, baselines=0.0, n_steps=settings.ig_steps, internal_batch_size=512)
    return maps.sum(1) * signs.view(-1, 1, 1)


@register_attribution("grad_cam")
def grad_cam(detector: Detector, images: torch.Tensor, signs: torch.Tensor,
             settings: AttributionSettings) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) at :func:`cam_layer`, upsampled bilinearly to the image size."""
    from captum.attr import LayerAttribution, LayerGradCam

    name = cam_layer(detector)
    maps = LayerGradCam(detector, detector.model.get_submodule(name)).attribute(images, relu_attributions=False)
    maps = (maps * signs.view(-1, 1, 1, 1)).clamp(min=0)
    return LayerAttribution.interpolate(maps, tuple(images.shape[-2:]), "bilinear")[:, 0]


def cam_layer(detector: Detector) -> str:
    """The detector's Grad-CAM layer: its spec's ``cam_layer``, else the last layer (in execution order)
    whose output is a feature map of at least 4x4 pixels and at most the input's size.

    The built-in detectors name theirs, e.g. ResNet-50's second stage (4x4 at 32x32 input; its last
    stage is 1x1) and ViT's patch embedding (8x8 tokens). The search is one forward pass with hooks.
    """
    import torch

    if detector.spec.cam_layer:
        return detector.spec.cam_layer
    size, training = detector.spec.input_size, detector.training
    found: list[str] = []

    def is_map(out: object) -> bool:
        return isinstance(out, torch.Tensor) and out.ndim == 4 and (
            4 <= min(out.shape[-2:]) <= max(out.shape[-2:]) <= size
        )

    hooks = [
        module.register_forward_hook(lambda _m, _i, out, name=name: found.append(name) if is_map(out) else None)
        for name, module in detector.model.named_modules() if name
    ]
    try:
        with torch.no_grad():
            detector.eval()(torch.zeros(1, 3, size, size, device=detector.mean.device))
    finally:
        detector.train(training)
        for hook in hooks:
            hook.remove()
    if not found:
        raise ValueError(f"detector {detector.spec.name!r} has no layer with a feature map of at least 4x4 "
                         "for Grad-CAM: leave grad_cam out of the suite's attribution methods")
    return found[-1]


def _predicted_probability(detector: Detector, images: torch.Tensor, signs: torch.Tensor,
                           threshold: float) -> torch.Tensor:
    import torch

    with torch.no_grad():
        return torch.sigmoid(signs * (detector(images).float() - threshold))


def deletion_insertion(detector: Detector, images: torch.Tensor, maps: torch.Tensor, signs: torch.Tensor,
                       threshold: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image areas under the deletion and insertion curves of the predicted class's probability."""
    import torch
    import torchvision.transforms.v2.functional as TF

    n, _, height, width = images.shape
    pixels = height * width
    baseline = TF.gaussian_blur(images, kernel_size=[11, 11], sigma=[5.0, 5.0])
    order = maps.reshape(n, pixels).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(pixels, device=order.device).expand(n, -1))
    deletion, insertion = [], []
    for step in range(steps + 1):
        top = (rank < round(step * pixels / steps)).view(n, 1, height, width)
        deletion.append(_predicted_probability(detector, torch.where(top, baseline, images), signs, threshold))
        insertion.append(_predicted_probability(detector, torch.where(top, images, baseline), signs, threshold))
    area = [torch.trapezoid(torch.stack(curve), dx=1 / steps, dim=0).cpu().numpy() for curve in (deletion, insertion)]
    return area[0], area[1]


def rank_similarity(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
    """Per-image Spearman correlation of two sets of absolute maps (NaN where a map is constant)."""
    from scipy.stats import rankdata

    a = rankdata(first.abs().flatten(1).cpu().numpy(), axis=1)
    b = rankdata(second.abs().flatten(1).cpu().numpy(), axis=1)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    denominator = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.divide((a * b).sum(1), denominator, out=np.full(len(a), np.nan), where=denominator > 0)


def centre_share(maps: torch.Tensor, centre: float) -> np.ndarray:
    """Per-image share of absolute attribution mass inside the central square of side ``centre``."""
    import torch

    height, width = maps.shape[-2:]
    top, left = round(height * (1 - centre) / 2), round(width * (1 - centre) / 2)
    mass = maps.abs()
    inside = mass[:, top : height - top, left : width - left].sum((1, 2))
    total = mass.sum((1, 2))
    return torch.where(total > 0, inside / total, torch.full_like(total, float("nan"))).cpu().numpy()


def shuffle_pixels(maps: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``maps`` (N, H, W) with the pixels of each map randomly permuted, one seeded permutation per map."""
    import torch

    n = len(maps)
    order = torch.rand(n, maps[0].numel(), generator=torch.Generator().manual_seed(seed)).argsort(dim=1)
    return maps.reshape(n, -1).gather(1, order.to(maps.device)).view_as(maps)


def mean_with_interval(values: np.ndarray, resamples: int, level: float, seed: int = 0) -> dict:
    """The mean of per-image values (NaNs ignored) with a percentile bootstrap interval."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return {"value": float("nan"), "ci": None, "n": 0}
    interval = None
    if resamples:
        means = np.random.default_rng(seed).choice(values, (resamples, len(values))).mean(1)
        tail = (1 - level) / 2 * 100
        interval = [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]
    return {"value": float(values.mean()), "ci": interval, "n": int(len(values))}


def _in_batches(function: Callable[..., torch.Tensor], images: torch.Tensor, *per_image: torch.Tensor,
                batch_size: int = 256) -> torch.Tensor:
    import torch

    return torch.cat([
        function(images[start : start + batch_size], *(t[start : start + batch_size] for t in per_image))
        for start in range(0, len(images), batch_size)
    ])


def explain(
    detector: Detector,
    randomised: Detector,
    real: np.ndarray,
    fake: np.ndarray,
    threshold: float,
    settings: AttributionSettings,
    device: torch.device,
    resamples: int = 1000,
    level: float = 0.95,
    progress: bool | None = False,
) -> tuple[dict, bytes]:
    """Explain ``real`` and ``fake`` uint8 images with every method of ``settings``; return scores and a PNG.

    ``randomised`` is the same architecture with random weights (the randomisation check's reference).
    """
    import torch
    from tqdm.auto import tqdm

    from bench.training import no_bars

    detector.eval().to(device)
    randomised.eval().to(device)
    images = torch.tensor(np.concatenate([real, fake]), device=device).float() / 255
    labels = np.r_[np.zeros(len(real), int), np.ones(len(fake), int)]
    with torch.no_grad():
        logits = detector(images).float()
        random_logits = randomised(images).float()
    signs = torch.where(logits >= threshold, 1.0, -1.0)
    random_threshold = float(random_logits.median())  # random weights have no validated threshold
    random_signs = torch.where(random_logits >= random_threshold, 1.0, -1.0)
    scores, drawn = {}, {}
    for name in tqdm(settings.methods, desc=f"{detector.spec.name} attributions", unit="method", leave=False,
                     disable=no_bars(progress)):
        method = ATTRIBUTIONS.get(name)
        maps = _in_batches(lambda x, s, m=method: m(detector, x, s, settings).detach(), images, signs)
        random_maps = _in_batches(lambda x, s, m=method: m(randomised, x, s, settings).detach(), images, random_signs)
        deletion, insertion = deletion_insertion(detector, images, maps, signs, threshold, settings.steps)
        random_deletion, random_insertion = deletion_insertion(
            randomised, images, random_maps, random_signs, random_threshold, settings.steps
        )
        shuffled_deletion, shuffled_insertion = deletion_insertion(
            detector, images, shuffle_pixels(maps), signs, threshold, settings.steps
        )
        share = centre_share(maps, settings.centre)
        summary = {
            "deletion_auc": deletion,
            "insertion_auc": insertion,
            "faithfulness": insertion - deletion,
            "faithfulness_shuffled": shuffled_insertion - shuffled_deletion,
            "faithfulness_random_weights": random_insertion - random_deletion,
            "randomisation_spearman": rank_similarity(maps, random_maps),
            "centre_share_real": share[labels == 0],
            "centre_share_fake": share[labels == 1],
            "centre_share_random_weights": centre_share(random_maps, settings.centre),
        }
        scores[name] = {key: mean_with_interval(values, resamples, level) for key, values in summary.items()}
        drawn[name] = maps
    section = {
        "settings": settings.model_dump(),
        "images": {"real": len(real), "fake": len(fake)},
        "centre_area_share": _area_share(images.shape[-1], settings.centre),
        "methods": scores,
    }
    if "grad_cam" in settings.methods:
        section["grad_cam_layer"] = cam_layer(detector)
    picture = draw(images, labels, torch.sigmoid(logits - threshold), drawn, settings.figure_images,
                   title=f"{detector.spec.name}: attributions for the predicted class")
    return section, picture


def _area_share(size: int, centre: float) -> float:
    margin = round(size * (1 - centre) / 2)
    return (size - 2 * margin) ** 2 / size**2


def draw(images: torch.Tensor, labels: np.ndarray, fake_probability: torch.Tensor, maps: dict[str, torch.Tensor],
         per_class: int, title: str) -> bytes:
    """A PNG grid: one row per image (reals, then fakes), the image and one overlay per method."""
    import matplotlib

    matplotlib.use("Agg")  # non-interactive, before pyplot is imported
    import matplotlib.pyplot as plt

    rows = [*np.flatnonzero(labels == 0)[:per_class], *np.flatnonzero(labels == 1)[:per_class]]
    columns = ["image", *maps]
    figure, axes = plt.subplots(len(rows), len(columns), figsize=(1.8 * len(columns), 1.8 * len(rows)),
                                squeeze=False)
    for r, index in enumerate(rows):
        picture = images[index].permute(1, 2, 0).cpu().numpy()
        for c, column in enumerate(columns):
            axis = axes[r, c]
            axis.imshow(picture, interpolation="nearest")
            if column != "image":
                heat = maps[column][index].clamp(min=0).cpu().numpy()
                axis.imshow(heat / heat.max() if heat.max() > 0 else heat, cmap="inferno", alpha=0.6,
                            interpolation="bilinear", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(column.replace("_", " "), fontsize=9)
        label = "fake" if labels[index] else "real"
        axes[r, 0].set_ylabel(f"{label}\np(fake)={fake_probability[index]:.2f}", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()

