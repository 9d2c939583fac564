"""Detectors: registered factories of models that map images in [0, 1] to one "fake" logit each.

Registering and listing detectors imports no torch; the model wrapper is :class:`bench.model.Detector`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.detector_spec import CIFAKE_MEAN, CIFAKE_STD, GPU_BATCH_SIZE, DetectorSpec
from bench.recipe import Recipe
from bench.registry import Registry, summary

if TYPE_CHECKING:
    import torch
    from torch import nn

    from bench.model import DetectorModel

TIMM_PREFIX = "timm:"  # pretrained weights named by timm model, e.g. timm:resnet50.a1_in1k

log = logging.getLogger(__name__)


DETECTORS: Registry[DetectorSpec] = Registry(
    "detector", "bench.detectors", "bench.detectors", spec_type=DetectorSpec
)


def register_detector(
    name: str,
    *,
    input_size: int = 32,
    mean: tuple[float, float, float] = CIFAKE_MEAN,
    std: tuple[float, float, float] = CIFAKE_STD,
    recipe: Recipe | None = None,
    cam_layer: str | None = None,
    differentiable: bool = True,
    gpu_batch_size: int = GPU_BATCH_SIZE,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a model factory as a detector (like timm's ``@register_model``).

    With ``differentiable=False`` the factory returns a scikit-learn style estimator (``fit`` /
    ``predict_proba`` on flattened pixels in [0, 1]); gradient attacks and attributions do not apply to it.
    ``gpu_batch_size`` is the batch of the detector's GPU recipe (a suite's ``recipe_profile: gpu``).
    """

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        spec = DetectorSpec(
            name=name,
            factory=factory,
            input_size=input_size,
            mean=mean,
            std=std,
            recipe=recipe or Recipe(),
            description=summary(factory),
            cam_layer=cam_layer,
            differentiable=differentiable,
            gpu_batch_size=gpu_batch_size,
        )
        DETECTORS.register(name, spec, origin=factory.__module__)
        return factory

    return decorate


def build_detector(
    name: str, pretrained: str | Path | None = None, classes: tuple[str, ...] = (), adapt: str = "resize", **kwargs
) -> DetectorModel:
    """Build a registered detector by name, with optional ``pretrained`` weights (see :func:`load_pretrained`): a
    network (:class:`bench.model.Detector`), or an estimator (:class:`bench.estimator.EstimatorDetector`) for a
    detector registered with ``differentiable=False``; both follow :class:`bench.model.DetectorModel`.

    ``classes`` (real first, then the fake sources) builds a source-attribution model with one output
    per class, for factories that accept ``num_classes``.
    """
    from bench.estimator import EstimatorDetector  # torch and scikit-learn: imported once a model is built,
    from bench.model import Detector  # so that registering and listing detectors stays fast

    spec = DETECTORS.get(name)
    if not spec.differentiable:
        if classes or pretrained is not None:
            raise ValueError(f"detector {name!r} is an estimator: it takes no source attribution or pretrained weights")
        return EstimatorDetector(spec, spec.factory(**kwargs), adapt)
    if classes:
        if not spec.attributes_sources:
            raise ValueError(f"detector {name!r} cannot attribute sources: its factory takes no 'num_classes' "
                             "argument; train it without source attribution")
        kwargs = {**kwargs, "num_classes": len(classes)}
    model = spec.factory(**kwargs)
    if pretrained is not None:
        left_out = load_pretrained(model, pretrained)
        log.info("%s: weights from %s, except %d tensors kept as initialised: %s", name, pretrained, len(left_out),
                 ", ".join(left_out) or "none")
    return Detector(spec, model, tuple(classes), adapt)


def load_pretrained(model: nn.Module, source: str | Path) -> list[str]:
    """Load the weights whose names and shapes match; return the keys of ``model`` left out.

    ``source`` is a local safetensors file or ``timm:NAME``, a timm model whose pretrained weights timm
    fetches from its hub (e.g. ``timm:resnet50.a1_in1k``). Layers adapted to 32x32 input (stems, heads)
    keep their fresh initialisation. Raises if the weights match none of the model's, which means they
    belong to another architecture.
    """
    source = str(source)
    if source.startswith(TIMM_PREFIX):
        weights = timm_weights(source.removeprefix(TIMM_PREFIX))
    else:
        from safetensors.torch import load_file

        if not Path(source).is_file():
            raise FileNotFoundError(f"pretrained weights {source} not found: give the path of a .safetensors file "
                                    f"or {TIMM_PREFIX}NAME")
        weights = load_file(source)
    own = model.state_dict()
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(
            f"{source} shares no weight names and shapes with {type(model).__name__}: "
            "it was saved from a different architecture"
        )
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def timm_weights(name: str) -> dict[str, torch.Tensor]:
    """The pretrained weights of timm model ``name``, downloaded (or taken from the cache) by timm.

    Offline (``HF_HUB_OFFLINE``) or when the download fails, raises at once with how to bring the
    weights here as a local file.
    """
    import timm

    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r} in {TIMM_PREFIX}{name}: see timm.list_models(pretrained=True)")
    remedy = (f"On a machine with internet access run `model = timm.create_model({name!r}, pretrained=True)` and "
              f"`safetensors.torch.save_file(model.state_dict(), '{name}.safetensors')`, copy the file here and "
              f"pass `pretrained: /path/{name}.safetensors`")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        raise FileNotFoundError(f"cannot download the timm weights {name!r}: HF_HUB_OFFLINE is set. {remedy}")
    try:
        model = timm.create_model(name, pretrained=True)
    except OSError as exc:  # every download error: network, hub HTTP errors, missing cache entries
        reason = (str(exc).splitlines() or [""])[0]
        raise FileNotFoundError(f"cannot download the timm weights {name!r} ({type(exc).__name__}: {reason}). "
                                f"{remedy}") from exc
    return model.state_dict()


def freeze_all_but(model: nn.Module, *trainable: nn.Module | nn.Parameter) -> None:
    """Freeze ``model`` for transfer learning: only the parameters of ``trainable`` (head, adapted layers) learn.

    Batch-norm statistics still follow the training data in training mode.
    """
    model.requires_grad_(False)
    for part in trainable:
        part.requires_grad_(True)
