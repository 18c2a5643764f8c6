"""The networks and losses of the conditional WGAN-GP (imported only when a ``wgan-gp`` model is built).

- :class:`ConditionalGenerator`: DCGAN generator (Radford et al. 2016): noise and a class embedding, concatenated,
  projected to a 4x4 map, then stride-2 transposed convolutions with batch norm and ReLU doubling the side up to
  the image size; a 3x3 convolution and tanh give images in [-1, 1].
- :class:`ConditionalCritic`: the mirror image with stride-2 convolutions and LeakyReLU(0.2), *without* batch
  norm (the gradient penalty is per sample, batch norm would couple the samples; Gulrajani et al. 2017 sec. 4):
  layer norm (GroupNorm with one group) or no normalization. Class conditioning by projection (Miyato & Koyama
  2018): ``D(x, y) = w . phi(x) + embed(y) . phi(x)``, where ``phi(x)`` are the penultimate features that the
  feature-matching term compares.
- :func:`gradient_penalty`: ``lambda * E[(||grad_x D(x_hat, y)||_2 - 1)^2]`` at random interpolates of real and
  generated images, computed in float32 outside any autocast.
- :func:`feature_matching`: squared distance between the mean critic features of a real and a generated batch
  (Salimans et al. 2016), divided by the number of features.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def levels(image_size: int) -> int:
    """Number of 2x up- (or down-) samplings between 4x4 and ``image_size``."""
    return int(round(math.log2(image_size))) - 2


def level_channels(image_size: int, width: int) -> list[int]:
    """Channels at 4x4, 8x8, ..., image_size: ``width`` at full size, doubling per halving, at most 8 * width."""
    n = levels(image_size)
    return [width * min(8, 2 ** (n - i)) for i in range(n + 1)]


class ConditionalGenerator(nn.Module):
    """``G(z, y) -> images`` in [-1, 1], shape (n, channels, image_size, image_size)."""

    def __init__(self, latent_dim: int, n_classes: int, channels: int, image_size: int, width: int = 64,
                 embed_dim: int = 32):
        super().__init__()
        self.latent_dim = latent_dim
        chans = level_channels(image_size, width)
        self.embed = nn.Embedding(n_classes, embed_dim)
        self.project = nn.Linear(latent_dim + embed_dim, chans[0] * 16)
        self.start = nn.Sequential(nn.BatchNorm2d(chans[0]), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            blocks += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Sequential(nn.Conv2d(chans[-1], channels, 3, padding=1), nn.Tanh())
        self._c0 = chans[0]

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([z, self.embed(labels)], dim=1)).view(z.shape[0], self._c0, 4, 4)
        return self.to_image(self.blocks(self.start(h)))


class ConditionalCritic(nn.Module):
    """``D(x, y) -> score`` (n,), unbounded (a Wasserstein critic, no sigmoid); ``features(x)`` is ``phi(x)``."""

    def __init__(self, n_classes: int, channels: int, image_size: int, width: int = 64, norm: str = "layer"):
        super().__init__()
        chans = list(reversed(level_channels(image_size, width)))  # image_size ... 4x4
        layers: list[nn.Module] = [nn.Conv2d(channels, chans[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))
            if norm == "layer":
                layers.append(nn.GroupNorm(1, c_out))  # layer norm over (C, H, W) of each sample
            layers.append(nn.LeakyReLU(0.2))
        self.convs = nn.Sequential(*layers)
        self.feature_dim = chans[-1]
        self.to_features = nn.Sequential(nn.Flatten(), nn.Linear(chans[-1] * 16, self.feature_dim), nn.LeakyReLU(0.2))
        self.score = nn.Linear(self.feature_dim, 1)
        self.embed = nn.Embedding(n_classes, self.feature_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_features(self.convs(x))

    def forward(self, x: torch.Tensor, labels: torch.Tensor, return_features: bool = False):
        phi = self.features(x)
        out = self.score(phi).squeeze(1) + (self.embed(labels) * phi).sum(dim=1)
        return (out, phi) if return_features else out


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor,
                     weight: float = 10.0, eps: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP's penalty ``weight * mean((||grad D(x_hat, y)||_2 - 1)^2)``, ``x_hat = eps real + (1 - eps) fake``.

    Args:
        critic: called as ``critic(x, labels)`` -> (n,) scores.
        real, fake: (n, C, H, W) batches (``fake`` is detached here).
        labels: (n,) class indices handed to the critic.
        weight: lambda (10 in Gulrajani et al.).
        eps: (n,) or (n, 1, 1, 1) mixing weights; default uniform in [0, 1) per sample.

    Always float32 (autocast off): the squared gradient norm underflows and loses digits in bf16.
    """
    n = real.shape[0]
    real, fake = real.float(), fake.detach().float()
    if eps is None:
        eps = torch.rand(n, 1, 1, 1, device=real.device)
    eps = eps.to(real.device, torch.float32).view(n, 1, 1, 1)
    mixed = (eps * real + (1.0 - eps) * fake).detach().requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        scores = critic(mixed, labels)
        (grads,) = torch.autograd.grad(scores.float().sum(), mixed, create_graph=True)
        norms = torch.sqrt(grads.flatten(1).pow(2).sum(dim=1) + 1e-12)
        return weight * ((norms - 1.0) ** 2).mean()


def feature_matching(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """``||mean(phi(real)) - mean(phi(fake))||^2 / d``: the generated batch's mean critic features should match
    the real batch's (the real side is a fixed target, no gradient)."""
    diff = real_features.detach().float().mean(dim=0) - fake_features.float().mean(dim=0)
    return diff.pow(2).mean()
