"""Unconditional diffusion (Ho et al. 2020) with diffusers: a small UNet trained by the harness, or a pretrained one."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.generator import GeneratorError, register_generator, to_uint8, training_subset
from bench.generators._diffusers import folder_fingerprint, pipeline_folder, sampler_class

if TYPE_CHECKING:
    import torch
    from diffusers import UNet2DModel


def build_unet(block_out_channels: Sequence[int], layers_per_block: int, attention: bool) -> UNet2DModel:
    """A UNet for 3x32x32 images with one level per entry of ``block_out_channels``.

    With ``attention``, every level below full resolution (16x16 and smaller, as in DDPM) and the middle
    block use self-attention.
    """
    from diffusers import UNet2DModel

    channels = tuple(int(c) for c in block_out_channels)
    levels = range(len(channels))
    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=channels,
        layers_per_block=layers_per_block,
        down_block_types=tuple("AttnDownBlock2D" if attention and i else "DownBlock2D" for i in levels),
        up_block_types=tuple("AttnUpBlock2D" if attention and i else "UpBlock2D" for i in reversed(levels)),
        add_attention=attention,
        norm_num_groups=min(32, math.gcd(*channels)),
    )


class DDPM:
    """A diffusion model: trained here (epsilon prediction, MSE) unless ``pretrained`` names a pipeline."""

    def __init__(self, settings: dict) -> None:
        self.settings = settings
        self.folder: Path | None = None
        self.unet: UNet2DModel | None = None
        self.scheduler_config: dict = {}
        sampler_class(settings["sampler"])  # fail early on an unknown sampler
        if settings["pretrained"] is None:
            from diffusers import DDPMScheduler

            self.unet = build_unet(settings["block_out_channels"], settings["layers_per_block"], settings["attention"])
            self.scheduler_config = dict(DDPMScheduler(
                num_train_timesteps=settings["train_timesteps"], beta_schedule=settings["beta_schedule"]
            ).config)

    def pretrained(self) -> dict | None:
        """sha256 of the pretrained pipeline's files, or None when the UNet is trained here."""
        if self.settings["pretrained"] is None:
            return None
        self.folder = pipeline_folder(self.settings["pretrained"], "pretrained")
        return folder_fingerprint(self.folder)

    def fit(self, real: np.ndarray, seed: int, device: torch.device, progress: bool | None) -> dict:
        """Adam on the MSE between drawn and predicted noise at uniformly drawn timesteps."""
        import torch
        import torch.nn.functional as F
        from diffusers import DDPMScheduler
        from tqdm.auto import tqdm

        from bench.training import autocast, no_bars

        start = time.perf_counter()
        s = self.settings
        data = torch.tensor(training_subset(real, s["limit"], seed), device=device).float().div_(127.5).sub_(1)
        scheduler = DDPMScheduler.from_config(self.scheduler_config)
        unet = self.unet.to(device).train()
        optimizer = torch.optim.Adam(unet.parameters(), lr=s["lr"])
        rng = torch.Generator(device).manual_seed(seed)
        steps = -(-len(data) // s["batch_size"])
        history = []
        with tqdm(total=s["epochs"] * steps, desc="ddpm: training", unit="batch", disable=no_bars(progress)) as bar:
            for epoch in range(s["epochs"]):
                total = torch.zeros((), device=device)
                for batch in torch.randperm(len(data), generator=rng, device=device).split(s["batch_size"]):
                    clean = data[batch]
                    noise = torch.randn(clean.shape, generator=rng, device=device)
                    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(batch),), generator=rng,
                                      device=device)
                    with autocast(device):
                        predicted = unet(scheduler.add_noise(clean, noise, t), t).sample
                    loss = F.mse_loss(predicted.float(), noise)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += loss.detach()
                    bar.update()
                history.append({"epoch": epoch + 1, "loss": total.item() / steps})
                bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
        return {"history": history, "n_train": len(data), "seconds": time.perf_counter() - start,
                "unet_config": dict(unet.config), "scheduler_config": self.scheduler_config}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.unet.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.unet.load_state_dict(state)

    def _load_pretrained(self) -> None:
        from diffusers import DiffusionPipeline, UNet2DModel

        try:
            pipe = DiffusionPipeline.from_pretrained(self.folder)
        except (OSError, ValueError) as exc:
            raise GeneratorError(f"pretrained={self.folder}: not a loadable diffusers pipeline ({exc})") from exc
        unet = getattr(pipe, "unet", None)
        size = getattr(getattr(unet, "config", None), "sample_size", None)
        if not isinstance(unet, UNet2DModel) or unet.config.in_channels != 3 or size not in (32, [32, 32], (32, 32)):
            raise GeneratorError(
                f"pretrained={self.folder}: expected an unconditional pipeline with a UNet2DModel for 3x32x32 images"
            )
        self.unet, self.scheduler_config = unet, dict(pipe.scheduler.config)

    def sample(self, count: int, seed: int, device: torch.device, progress: bool | None) -> np.ndarray:
        """Denoise noise drawn on the CPU (the same on any device) with ``steps`` steps of ``sampler``."""
        import torch
        from tqdm.auto import tqdm

        from bench.training import autocast, no_bars

        if self.unet is None:
            self._load_pretrained()
        s = self.settings
        unet = self.unet.to(device).eval()
        rng = torch.Generator().manual_seed(seed)
        noise = torch.randn(count, 3, 32, 32, generator=rng)
        chunks = noise.split(s["batch_size"])
        out = []
        with torch.no_grad(), tqdm(total=len(chunks) * s["steps"], desc=f"ddpm: sampling ({s['sampler']})",
                                   unit="step", disable=no_bars(progress)) as bar:
            for chunk in chunks:
                scheduler = sampler_class(s["sampler"]).from_config(self.scheduler_config)
                scheduler.set_timesteps(s["steps"])
                x = chunk.to(device)
                for t in scheduler.timesteps:
                    with autocast(device):
                        eps = unet(scheduler.scale_model_input(x, t), t).sample
                    x = scheduler.step(eps.float(), t, x, generator=rng).prev_sample
                    bar.update()
                out.append(to_uint8(x.clamp(-1, 1)))
        return np.concatenate(out)


@register_generator("ddpm", sampling=("sampler", "steps"))
def ddpm(
    block_out_channels: Sequence[int] = (64, 128, 256),
    layers_per_block: int = 2,
    attention: bool = True,
    epochs: int = 50,
    batch_size: int = 128,
    lr: float = 2e-4,
    limit: int | None = None,
    train_timesteps: int = 1000,
    beta_schedule: str = "linear",
    sampler: str = "ddim",
    steps: int = 50,
    pretrained: str | None = None,
) -> DDPM:
    """Unconditional DDPM (Ho et al. 2020): a diffusers UNet2DModel trained here, or `pretrained` (folder or hub id)."""
    return DDPM(dict(locals()))
