"""DCGAN (Radford, Metz & Chintala 2016) for 32x32 RGB images, trained by the harness on a real source."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from bench.generator import register_generator, to_uint8, training_subset

if TYPE_CHECKING:
    import torch
    from torch import nn


def _init_weights(module: nn.Module) -> None:
    """The paper's initialisation: conv weights N(0, 0.02), batch-norm scales N(1, 0.02)."""
    from torch import nn

    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def generator_net(latent: int, width: int) -> nn.Sequential:
    """Transposed convolutions from a (latent, 1, 1) code to a 3x32x32 image in [-1, 1]."""
    from torch import nn

    return nn.Sequential(
        nn.ConvTranspose2d(latent, width * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(width * 4), nn.ReLU(True),
        nn.ConvTranspose2d(width * 4, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.ReLU(True),
        nn.ConvTranspose2d(width * 2, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True),
        nn.ConvTranspose2d(width, 3, 4, 2, 1, bias=False), nn.Tanh(),
    )


def discriminator_net(width: int) -> nn.Sequential:
    """Strided convolutions from a 3x32x32 image to one real/fake logit."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
        nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2, True),
        nn.Conv2d(width * 2, width * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 4), nn.LeakyReLU(0.2, True),
        nn.Conv2d(width * 4, 1, 4, 1, 0, bias=False), nn.Flatten(),
    )


class DCGAN:
    """A DCGAN whose generator is cached after training; the discriminator is only used to train it."""

    def __init__(self, latent: int, width: int, epochs: int, batch_size: int, limit: int | None, lr: float,
                 beta1: float) -> None:
        self.latent, self.epochs, self.batch_size, self.limit = latent, epochs, batch_size, limit
        self.lr, self.beta1 = lr, beta1
        self.net_g = generator_net(latent, width)
        self.net_d = discriminator_net(width)
        self.net_g.apply(_init_weights)
        self.net_d.apply(_init_weights)

    def pretrained(self) -> None:
        return None

    def fit(self, real: np.ndarray, seed: int, device: torch.device, progress: bool | None) -> dict:
        """Adam(lr, betas (beta1, 0.999)), BCE on logits, non-saturating generator loss."""
        import torch
        import torch.nn.functional as F
        from tqdm.auto import tqdm

        from bench.training import no_bars

        start = time.perf_counter()
        data = torch.tensor(training_subset(real, self.limit, seed), device=device).float().div_(127.5).sub_(1)
        net_g, net_d = self.net_g.to(device).train(), self.net_d.to(device).train()
        opt_g = torch.optim.Adam(net_g.parameters(), lr=self.lr, betas=(self.beta1, 0.999))
        opt_d = torch.optim.Adam(net_d.parameters(), lr=self.lr, betas=(self.beta1, 0.999))
        rng = torch.Generator(device).manual_seed(seed)
        steps = -(-len(data) // self.batch_size)
        history = []
        with tqdm(total=self.epochs * steps, desc="dcgan: training", unit="batch", disable=no_bars(progress)) as bar:
            for epoch in range(self.epochs):
                order = torch.randperm(len(data), generator=rng, device=device)
                sums = torch.zeros(2, device=device)
                for batch in order.split(self.batch_size):
                    images = data[batch]
                    ones = torch.ones(len(batch), 1, device=device)
                    zeros = torch.zeros(len(batch), 1, device=device)
                    fake = net_g(torch.randn(len(batch), self.latent, 1, 1, generator=rng, device=device))
                    loss_d = (F.binary_cross_entropy_with_logits(net_d(images), ones)
                              + F.binary_cross_entropy_with_logits(net_d(fake.detach()), zeros))
                    opt_d.zero_grad(set_to_none=True)
                    loss_d.backward()
                    opt_d.step()
                    loss_g = F.binary_cross_entropy_with_logits(net_d(fake), ones)
                    opt_g.zero_grad(set_to_none=True)
                    loss_g.backward()
                    opt_g.step()
                    sums += torch.stack([loss_d.detach(), loss_g.detach()])
                    bar.update()
                loss_d_mean, loss_g_mean = (sums / steps).tolist()
                history.append({"epoch": epoch + 1, "loss_d": loss_d_mean, "loss_g": loss_g_mean})
                bar.set_postfix(loss_d=f"{loss_d_mean:.3f}", loss_g=f"{loss_g_mean:.3f}")
        return {"history": history, "n_train": len(data), "seconds": time.perf_counter() - start}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.net_g.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.net_g.load_state_dict(state)

    def sample(self, count: int, seed: int, device: torch.device, progress: bool | None) -> np.ndarray:
        """Codes drawn from N(0, I) on the CPU (the same on any device), decoded in eval mode."""
        import torch
        from tqdm.auto import tqdm

        from bench.training import no_bars

        net_g = self.net_g.to(device).eval()
        codes = torch.randn(count, self.latent, 1, 1, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            out = [to_uint8(net_g(chunk.to(device))) for chunk in tqdm(
                codes.split(self.batch_size), desc="dcgan: sampling", unit="batch", disable=no_bars(progress)
            )]
        return np.concatenate(out)


@register_generator("dcgan")
def dcgan(
    latent: int = 100,
    width: int = 64,
    epochs: int = 25,
    batch_size: int = 128,
    limit: int | None = None,
    lr: float = 2e-4,
    beta1: float = 0.5,
) -> DCGAN:
    """DCGAN (Radford et al. 2016): transposed-conv generator, strided-conv discriminator, batch norm, Adam."""
    return DCGAN(latent, width, epochs, batch_size, limit, lr, beta1)
