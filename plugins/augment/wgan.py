"""Model ``wgan-gp``: a class-conditional DCGAN trained as a Wasserstein GAN with gradient penalty and a
feature-matching term (seed 001), to synthesize more images of rare defect classes.

Losses per step (Gulrajani et al. 2017, Salimans et al. 2016), with ``y`` the classes of a real batch ``x``:

- critic, ``n_critic`` times per generator step:
  ``L_D = E[D(G(z, y), y)] - E[D(x, y)] + lambda * E[(||grad D(x_hat, y)||_2 - 1)^2]``
- generator: ``L_G = -E[D(G(z, y), y)] + fm_weight * ||mean phi(x) - mean phi(G(z, y))||^2 / d``

``-L_D`` without the penalty (``wasserstein`` in epochs.csv) estimates the Wasserstein-1 distance between the
real and generated images: it should fall and level off as training goes on.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import reflow
from pydantic import Field, field_validator

from .common import (
    LABEL,
    check_request,
    check_targets,
    class_order,
    generated_dataset,
    label_values,
    resize_images,
    unit_images,
)

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext

GENERATOR_WEIGHTS = "generator.safetensors"
CRITIC_WEIGHTS = "critic.safetensors"
STATE = "state.json"
LOSS_COLUMNS = ("critic_loss", "wasserstein", "gradient_penalty", "generator_loss", "feature_matching")


def check_image_size(value: int | None) -> int | None:
    """``value`` if it is a power of two from 16 to 1024 (or None), else ValueError saying what is allowed."""
    if value is None:
        return None
    if value < 16 or value > 1024 or value & (value - 1):
        raise ValueError(f"image_size must be a power of two from 16 to 1024 (16, 32, 64, 128, 256, ...), "
                         f"got {value}")
    return value


class WGANGP(reflow.Generator):
    """Conditional DCGAN generator trained with the WGAN-GP loss plus feature matching (seed 001).

    ``fit`` trains on the images of the data with their classes (``label``); ``generate({class: n}, seed)``
    returns new images in the same dataset format (``synthetic`` = True). Per-epoch losses go to ``epochs.csv``;
    ``plot`` draws a sample grid per class (``wgan_samples.png``) and the loss curves (``wgan_losses.png``).
    """

    class Params(reflow.Params):
        image_size: int | None = Field(None, description="side of the generated images, a power of two >= 16 "
                                                         "(16, 32, 64, 128, 256); null: the training images' side "
                                                         "(square, a power of two); other images are resized")
        latent_dim: int = Field(64, ge=1, le=1024, description="length of the noise vector z")
        embed_dim: int = Field(32, ge=1, le=1024, description="length of the generator's class embedding")
        width: int = Field(64, ge=4, le=512, description="channels of the full-size layers (doubling per halving "
                                                         "of the side, at most 8x)")
        critic_norm: Literal["layer", "none"] = Field("layer", description="normalization in the critic: layer "
                                                                           "norm or none (never batch norm)")
        n_critic: int = Field(5, ge=1, le=100, description="critic steps per generator step")
        gp_weight: float = Field(10.0, ge=0, description="lambda of the gradient penalty")
        fm_weight: float = Field(1.0, ge=0, description="weight of the feature-matching term in the generator loss")
        lr: float = Field(2e-4, gt=0, le=0.01, description="Adam learning rate of both networks (1e-4 or 2e-4)")
        betas: tuple[float, float] = Field((0.5, 0.9), description="Adam betas, (0.0, 0.9) or (0.5, 0.9)")
        batch_size: int = Field(64, ge=2, le=4096, description="images per critic and generator batch")
        epochs: int = Field(200, ge=1, description="passes over the training images; one epoch is "
                                                   "ceil(n / batch_size) generator steps")
        steps: int | None = Field(None, ge=1, description="generator steps in all (overrides epochs)")
        balanced: bool = Field(True, description="draw batches with every class equally likely, so rare classes "
                                                 "train as often as common ones (false: every image equally likely)")
        precision: Literal["auto", "bf16", "fp32"] = Field(
            "auto", description="auto: bf16 autocast on CUDA, fp32 on CPU; the gradient penalty is always fp32")
        label: str = Field(LABEL, description="the class variable of the training images")

        @field_validator("image_size")
        @classmethod
        def _power_of_two(cls, value: int | None) -> int | None:
            return check_image_size(value)

        @field_validator("betas")
        @classmethod
        def _betas(cls, value: tuple[float, float]) -> tuple[float, float]:
            if not all(0.0 <= b < 1.0 for b in value):
                raise ValueError(f"betas must both lie in [0, 1), e.g. (0.0, 0.9) or (0.5, 0.9); got {value}")
            return value

    # --- training ----------------------------------------------------------------------------------------------

    def _build(self, n_classes: int, channels: int, size: int) -> tuple[Any, Any]:
        from .networks import ConditionalCritic, ConditionalGenerator

        p = self.params
        generator = ConditionalGenerator(p.latent_dim, n_classes, channels, size, p.width, p.embed_dim)
        critic = ConditionalCritic(n_classes, channels, size, p.width, p.critic_norm)
        return generator, critic

    def _image_size(self, height: int, width: int) -> int:
        if self.params.image_size is not None:
            return self.params.image_size
        try:
            return check_image_size(height if height == width else -1)
        except ValueError:
            side = 2 ** max(4, min(10, round(math.log2(max(min(height, width), 1)))))
            raise reflow.UserInputError(
                f"wgan-gp: the training images are {height}x{width}, not a square with a power-of-two side >= 16; "
                f"set image_size (a power of two >= 16, e.g. {side}) and they are resized to it") from None

    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> WGANGP:
        """Train the critic and generator on ``data`` (a GAN has no held-out score: ``validation`` is unused)."""
        import torch
        from reflow.training import autocast, write_epochs

        from .networks import feature_matching, gradient_penalty

        check_targets(self.targets, "wgan-gp")
        p = self.params
        labels = label_values(data, p.label)
        self.classes_ = class_order(data, p.label)
        images = unit_images(data)
        if images.shape[0] < 2:
            raise reflow.DataError(f"wgan-gp: needs at least 2 training images, got {images.shape[0]}")
        _, channels, height, width = images.shape
        size = self._image_size(height, width)
        self.channels_, self.image_size_, self.source_size_ = int(channels), int(size), [int(height), int(width)]
        images = resize_images(images, size, size)
        index = {c: i for i, c in enumerate(self.classes_)}
        self.class_counts_ = {c: int((labels == c).sum()) for c in self.classes_}

        dev = torch.device(ctx.device)
        x = torch.from_numpy(images * 2.0 - 1.0)
        y = torch.tensor([index[c] for c in labels], dtype=torch.long)
        if dev.type == "cuda" and x.numel() * 4 < 2**31:
            x, y = x.to(dev), y.to(dev)
        torch.manual_seed(ctx.seed)
        generator, critic = self._build(len(self.classes_), channels, size)
        generator.to(dev).train()
        critic.to(dev).train()
        opt_g = torch.optim.Adam(generator.parameters(), lr=p.lr, betas=p.betas)
        opt_d = torch.optim.Adam(critic.parameters(), lr=p.lr, betas=p.betas)
        rng = torch.Generator().manual_seed(ctx.seed)
        n = x.shape[0]
        batch = min(p.batch_size, n)
        per_epoch = math.ceil(n / batch)
        total = p.steps if p.steps is not None else p.epochs * per_epoch
        weights = None
        if p.balanced:
            per_image = np.array([1.0 / self.class_counts_[c] for c in labels])
            weights = torch.from_numpy(per_image / per_image.sum())
        batches = _batches(n, batch, rng, weights)

        def draw() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            idx = next(batches).to(x.device)
            z = torch.randn(idx.numel(), p.latent_dim, generator=rng).to(dev)
            return x[idx].to(dev, non_blocking=True), y[idx].to(dev, non_blocking=True), z

        self.history_: list[dict[str, float]] = []
        start = time.perf_counter()
        step = 0
        with ctx.progress(total=math.ceil(total / per_epoch), description="wgan-gp training") as bar:
            while step < total:
                tick = time.perf_counter()
                sums = torch.zeros(len(LOSS_COLUMNS), device=dev)
                steps_here = min(per_epoch, total - step)
                for _ in range(steps_here):
                    critic.requires_grad_(True)
                    for _ in range(p.n_critic):
                        real, yb, z = draw()
                        with autocast(ctx.device, p.precision):
                            with torch.no_grad():
                                fake = generator(z, yb)
                            d_real = critic(real, yb).float().mean()
                            d_fake = critic(fake, yb).float().mean()
                        eps = torch.rand(real.shape[0], generator=rng).to(dev)
                        gp = gradient_penalty(critic, real, fake, yb, p.gp_weight, eps)
                        loss_d = d_fake - d_real + gp
                        opt_d.zero_grad(set_to_none=True)
                        loss_d.backward()
                        opt_d.step()
                        sums[:3] += torch.stack([loss_d, d_real - d_fake, gp]).detach() / p.n_critic
                    critic.requires_grad_(False)
                    real, yb, z = draw()
                    with autocast(ctx.device, p.precision):
                        fake = generator(z, yb)
                        score, phi_fake = critic(fake, yb, return_features=True)
                        with torch.no_grad():
                            phi_real = critic.features(real)
                    fm = feature_matching(phi_real, phi_fake)
                    loss_g = -score.float().mean() + p.fm_weight * fm
                    opt_g.zero_grad(set_to_none=True)
                    loss_g.backward()
                    opt_g.step()
                    sums[3:] += torch.stack([loss_g, fm]).detach()
                step += steps_here
                means = (sums / steps_here).tolist()
                if not all(math.isfinite(v) for v in means):
                    raise FloatingPointError(f"wgan-gp: a loss became non-finite in epoch {len(self.history_) + 1} "
                                             f"({dict(zip(LOSS_COLUMNS, means, strict=True))}); lower lr or use "
                                             "precision: fp32")
                row = {"epoch": len(self.history_) + 1, "step": step, **dict(zip(LOSS_COLUMNS, means, strict=True)),
                       "seconds": time.perf_counter() - tick}
                self.history_.append(row)
                write_epochs(ctx.folder / "epochs.csv", self.history_)
                bar.advance()
        self.steps_ = int(step)
        self.train_seconds_ = float(time.perf_counter() - start)
        critic.requires_grad_(True)
        self.generator_ = generator.eval()
        self.critic_ = critic.eval()
        return self

    # --- generation --------------------------------------------------------------------------------------------

    def sample(self, cls: str, n: int, seed: int, device: str = "cpu") -> np.ndarray:
        """``n`` images (n, C, S, S) in [0, 1] of class ``cls``; the noise depends only on (seed, class), so
        asking for more classes at once does not change the images of one class."""
        import torch
        from reflow.training import autocast

        self.require_fitted("generator_")
        k = self.classes_.index(cls)
        if n == 0:
            return np.zeros((0, self.channels_, self.image_size_, self.image_size_), dtype=np.float32)
        state = np.random.SeedSequence([int(seed), k]).generate_state(2, dtype=np.uint32)
        rng = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        z = torch.randn(n, self.params.latent_dim, generator=rng)
        labels = torch.full((n,), k, dtype=torch.long)
        generator = self.generator_.to(device).eval()
        out = []
        with torch.inference_mode():
            for lo in range(0, n, 256):
                with autocast(device, self.params.precision):
                    images = generator(z[lo:lo + 256].to(device), labels[lo:lo + 256].to(device))
                out.append(((images.float() + 1.0) / 2.0).clamp(0.0, 1.0).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def generate(self, n_per_class: dict[str, int], seed: int = 0, source: xr.Dataset | None = None,
                 device: str = "cpu") -> xr.Dataset:
        """``n_per_class[c]`` new images of each class ``c`` (dataset format of :mod:`.common`).

        ``source`` is accepted for the augmenters' common signature and ignored: the generator needs no images.
        """
        self.require_fitted("generator_")
        request = check_request(n_per_class, self.classes_, "wgan-gp")
        never = [c for c, n in request.items() if n and not self.class_counts_.get(c)]
        if never:
            raise reflow.UserInputError(f"wgan-gp: class(es) {', '.join(never)} had no training images, so the "
                                        f"generator never learned them (trained on: "
                                        f"{', '.join(c for c in self.classes_ if self.class_counts_.get(c))})")
        images = [self.sample(c, n, seed, device) for c, n in request.items()]
        labels = [c for c, n in request.items() for _ in range(n)]
        stacked = (np.concatenate(images) if images
                   else np.zeros((0, self.channels_, self.image_size_, self.image_size_), np.float32))
        return generated_dataset(stacked, labels, self.classes_, attrs={"generator": "wgan-gp", "seed": int(seed)})

    # --- reporting ---------------------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The last epoch's losses, the steps and time spent, and the networks' sizes ({} before fit)."""
        from reflow.training import count_parameters

        if not self.is_fitted("generator_"):
            return {}
        last = self.history_[-1] if self.history_ else {}
        out: dict[str, Any] = {f"final_{k}": float(last.get(k, math.nan)) for k in LOSS_COLUMNS}
        out.update({"steps": self.steps_, "epochs_run": len(self.history_),
                    "train_seconds": round(self.train_seconds_, 3), "image_size": self.image_size_,
                    "generator_params": count_parameters(self.generator_),
                    "critic_params": count_parameters(self.critic_)})
        return out

    def plot(self, folder: str | Path) -> list[Path]:
        """``wgan_samples.png`` (one row of generated images per trained class) and ``wgan_losses.png``."""
        from .plots import image_rows, loss_curves

        self.require_fitted("generator_")
        folder = Path(folder)
        trained = [c for c in self.classes_ if self.class_counts_.get(c)]
        rows = [(c, self.sample(c, 8, seed=0)) for c in trained]
        paths = [image_rows(rows, folder / "wgan_samples.png",
                            f"wgan-gp samples per class ({self.steps_} generator steps)")]
        if self.history_:
            paths.append(loss_curves(self.history_, folder / "wgan_losses.png"))
        return paths

    # --- persistence -------------------------------------------------------------------------------------------

    def save_state(self, directory: Path) -> None:
        from safetensors.torch import save_model

        self.require_fitted("generator_")
        for module, name in ((self.generator_, GENERATOR_WEIGHTS), (self.critic_, CRITIC_WEIGHTS)):
            device = next(module.parameters()).device
            save_model(module.cpu(), str(directory / name))
            module.to(device)
        state = {"classes": self.classes_, "class_counts": self.class_counts_, "channels": self.channels_,
                 "image_size": self.image_size_, "source_size": self.source_size_, "history": self.history_,
                 "steps": self.steps_, "train_seconds": self.train_seconds_}
        (directory / STATE).write_text(json.dumps(state, indent=2))

    def load_state(self, directory: Path) -> None:
        from safetensors.torch import load_model

        state = json.loads((directory / STATE).read_text())
        self.classes_ = list(state["classes"])
        self.class_counts_ = {str(k): int(v) for k, v in state["class_counts"].items()}
        self.channels_, self.image_size_ = int(state["channels"]), int(state["image_size"])
        self.source_size_ = list(state["source_size"])
        self.history_ = list(state["history"])
        self.steps_, self.train_seconds_ = int(state["steps"]), float(state["train_seconds"])
        generator, critic = self._build(len(self.classes_), self.channels_, self.image_size_)
        load_model(generator, str(directory / GENERATOR_WEIGHTS), strict=True, device="cpu")
        load_model(critic, str(directory / CRITIC_WEIGHTS), strict=True, device="cpu")
        self.generator_, self.critic_ = generator.eval(), critic.eval()


def _batches(n: int, batch: int, rng: Any, weights: Any = None):
    """Endless batches of sample indices: drawn with replacement with probabilities ``weights``, or (None) cut from
    a stream of random permutations, so every image is drawn equally often (a batch across two permutations may
    hold an image twice)."""
    import torch

    if weights is not None:
        while True:
            yield torch.multinomial(weights, batch, replacement=True, generator=rng)
    buffer = torch.randperm(n, generator=rng)
    while True:
        while buffer.numel() < batch:
            buffer = torch.cat([buffer, torch.randperm(n, generator=rng)])
        yield buffer[:batch]
        buffer = buffer[batch:]
