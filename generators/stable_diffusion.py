"""Stable Diffusion with the CIFAKE recipe (Bird & Lotfi 2023): one prompt per CIFAR-10 class, downscaled to 32x32."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from bench.generator import GeneratorError, register_generator
from bench.generators._diffusers import folder_fingerprint, pipeline_folder, sampler_class

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class StableDiffusion:
    """A pretrained text-to-image pipeline; image ``i`` shows class ``i % 10`` and has its own seed."""

    def __init__(self, model: str, prompt: str, size: int, steps: int, guidance_scale: float,
                 sampler: str | None, batch_size: int) -> None:
        if size % 8:
            raise GeneratorError(f"size must be a multiple of 8 for Stable Diffusion, got {size}")
        if "{class}" not in prompt:
            raise GeneratorError(f"prompt must contain {{class}} (replaced by each CIFAR-10 class), got {prompt!r}")
        if sampler is not None:
            sampler_class(sampler)
        self.model, self.prompt, self.size, self.steps = model, prompt, size, steps
        self.guidance_scale, self.sampler, self.batch_size = guidance_scale, sampler, batch_size
        self.folder: Path | None = None

    def pretrained(self) -> dict:
        """sha256 of the pipeline's files (a hub id is downloaded into the Hugging Face cache first)."""
        self.folder = pipeline_folder(self.model, "model")
        return folder_fingerprint(self.folder)

    def _pipeline(self, device: torch.device) -> StableDiffusionPipeline:
        import torch
        from diffusers import StableDiffusionPipeline

        try:
            pipe = StableDiffusionPipeline.from_pretrained(self.folder)
        except (OSError, ValueError) as exc:
            raise GeneratorError(f"model={self.folder}: not a loadable Stable Diffusion pipeline ({exc})") from exc
        if self.sampler is not None:
            pipe.scheduler = sampler_class(self.sampler).from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device=device, dtype=torch.float16 if device.type == "cuda" else torch.float32)

    def sample(self, count: int, seed: int, device: torch.device, progress: bool | None) -> np.ndarray:
        """Generate at ``size`` x ``size`` and downscale to 32x32 with Lanczos filtering."""
        import torch
        from tqdm.auto import tqdm

        from bench.training import no_bars

        pipe = self._pipeline(device)
        seeds = torch.randint(2**62, (count,), generator=torch.Generator().manual_seed(seed)).tolist()
        out = []
        for start in tqdm(range(0, count, self.batch_size), desc="stable-diffusion: sampling", unit="batch",
                          disable=no_bars(progress)):
            batch = range(start, min(start + self.batch_size, count))
            with torch.no_grad():
                images = pipe(
                    prompt=[self.prompt.format_map({"class": CIFAR10_CLASSES[i % 10]}) for i in batch],
                    height=self.size,
                    width=self.size,
                    num_inference_steps=self.steps,
                    guidance_scale=self.guidance_scale,
                    generator=[torch.Generator().manual_seed(seeds[i]) for i in batch],
                    output_type="pil",
                ).images
            out += [np.asarray(im.convert("RGB").resize((32, 32), Image.LANCZOS)).transpose(2, 0, 1) for im in images]
        return np.stack(out)


@register_generator("stable-diffusion", sampling=("prompt", "size", "steps", "guidance_scale", "sampler"))
def stable_diffusion(
    model: str = "CompVis/stable-diffusion-v1-4",
    prompt: str = "a photograph of a {class}",
    size: int = 512,
    steps: int = 50,
    guidance_scale: float = 7.5,
    sampler: str | None = None,
    batch_size: int = 8,
) -> StableDiffusion:
    """Stable Diffusion (local folder or hub id), CIFAKE recipe: CIFAR-10 class prompts, downscaled to 32x32."""
    return StableDiffusion(model, prompt, size, steps, guidance_scale, sampler, batch_size)
