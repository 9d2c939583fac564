"""Shared by the diffusers-based generators: samplers, local or hub pipelines, and weight fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

from bench.files import file_sha256
from bench.generator import GeneratorError

# scheduler classes by name: diffusers is imported only when a sampler is used
SAMPLERS = {"ddim": "DDIMScheduler", "dpm": "DPMSolverMultistepScheduler", "ddpm": "DDPMScheduler"}


def sampler_class(name: str) -> type:
    """The diffusers scheduler class of a sampler name (``ddim``, ``dpm`` or ``ddpm``)."""
    if name not in SAMPLERS:
        raise GeneratorError(f"unknown sampler {name!r}: use one of {', '.join(SAMPLERS)}")
    import diffusers

    return getattr(diffusers, SAMPLERS[name])


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks not to contact the Hugging Face Hub."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def pipeline_folder(model: str, setting: str) -> Path:
    """The local folder of a diffusers pipeline: ``model`` itself, or a hub id's snapshot (downloaded by diffusers).

    ``setting`` is the config key that named the model, for the error message.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or model.startswith((".", "~")) or path.exists():
        raise GeneratorError(f"{setting}={model}: no such folder (a diffusers pipeline saved with save_pretrained)")
    from diffusers import DiffusionPipeline

    try:
        return Path(DiffusionPipeline.download(model, local_files_only=hub_offline()))
    except (OSError, ValueError) as exc:
        raise GeneratorError(
            f"cannot load the diffusers model {model!r}: it is not in the local Hugging Face cache and could "
            f"not be downloaded ({type(exc).__name__}: {str(exc).splitlines()[0]}). On a machine with internet "
            f"access run `DiffusionPipeline.from_pretrained({model!r}).save_pretrained(DIR)` (or "
            f"`hf download {model} --local-dir DIR`), copy DIR here and pass it: --set {setting}=DIR"
        ) from exc


def folder_fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every file (weights and configs) in a pipeline folder, by relative path; hidden files skipped."""
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise GeneratorError(f"{folder} holds no files: expected a diffusers pipeline saved with save_pretrained")
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in files}
