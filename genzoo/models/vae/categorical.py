"""Categorical-latent VAE trained with the Gumbel-softmax / Concrete relaxation.

Jang, Gu & Poole, arXiv:1611.01144 (Gumbel-softmax, straight-through estimator, temperature
annealing); Maddison, Mnih & Teh, arXiv:1611.00712 (the Concrete distribution). The encoder, decoder
and discrete likelihoods are shared with the Gaussian VAE (arXiv:1312.6114; :mod:`.blocks`,
:mod:`.likelihoods`).

z is ``num_latents`` independent categorical variables with ``num_categories`` classes each, prior
uniform. Training (``loss``) decodes a relaxed sample ``softmax((log q + g) / tau)`` (or its
straight-through hard one-hot with soft gradients) and uses the analytic KL(q || uniform). ``tau``
follows ``max(tau_min, tau_init * exp(-anneal_rate * step))`` (a function of the step only), set
by :meth:`CategoricalVAE.on_train_step` and stored in the ``tau`` buffer, so it is saved with the
weights. Evaluation (``elbo``, ``importance_log_weights``) decodes *exact* one-hot samples of q, so
both are valid bounds for the discrete-latent model (IWAE, arXiv:1509.00519).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ...modeling import GenerativeModel
from ...registry import register
from .common import ConvLatentVariableMixin


def sample_gumbel(shape: tuple[int, ...], generator: torch.Generator | None = None,
                  device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Standard Gumbel noise ``-log(-log U)`` of ``shape``."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    return -torch.log(-torch.log(u.clamp(min=torch.finfo(u.dtype).tiny)))


def gumbel_softmax(logits: Tensor, tau: float | Tensor, hard: bool = False,
                   generator: torch.Generator | None = None) -> Tensor:
    """A relaxed one-hot sample over the last dim of ``logits`` ``(..., K)``; same shape.

    ``softmax((logits + g) / tau)`` with Gumbel noise g (a Concrete sample). ``hard=True``: the
    forward value is the one-hot argmax (an exact sample of softmax(logits)) while gradients are
    those of the soft sample (straight-through).
    """
    g = sample_gumbel(tuple(logits.shape), generator, logits.device, logits.dtype)
    soft = torch.softmax((logits + g) / tau, dim=-1)
    if not hard:
        return soft
    index = soft.argmax(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(-1, index, 1.0)
    return one_hot + soft - soft.detach()


@dataclass(frozen=True)
class CategoricalVAEConfig:
    in_channels: int = 1                                # image channels C
    image_size: int = 28                                # H = W; divisible by 2^(len(hidden_channels) - 1)
    num_latents: int = 30                               # N independent categorical latent variables
    num_categories: int = 10                            # K classes per latent variable
    hidden_channels: tuple[int, ...] = (32, 64, 128)    # channels per resolution level (len - 1 downsamplings)
    num_res_blocks: int = 1                             # residual blocks per level, encoder and decoder
    upsample: Literal["nearest", "transposed"] = "nearest"  # decoder upsampling: nearest+conv3x3 or convT 4x4
    activation: Literal["silu", "relu", "elu", "leaky_relu"] = "silu"  # nonlinearity everywhere
    likelihood: Literal["bernoulli", "logistic", "gaussian"] = "logistic"  # p(x|z), see likelihoods.py
    beta: float = 1.0                                   # KL weight in the training loss (1 = true ELBO)
    num_bits: int = 8                                   # bits per subpixel of the discrete data (2^bits bins)
    binarize: Literal["none", "dynamic", "threshold"] = "none"  # Bernoulli only: how grey data is binarised
    tau_init: float = 1.0                               # Gumbel-softmax temperature at step 0
    tau_min: float = 0.5                                # temperature floor of the annealing schedule
    anneal_rate: float = 1e-4                           # tau = max(tau_min, tau_init * exp(-anneal_rate * step))
    straight_through: bool = False                      # hard one-hot forward, soft gradients


class CategoricalVAE(ConvLatentVariableMixin, GenerativeModel):
    """VAE with ``num_latents`` x ``num_categories`` categorical latents. ``CategoricalVAE(CategoricalVAEConfig())``.

    Codes are either indices ``(B, N)`` int64 or one-hot / probability vectors ``(B, N, K)`` float.
    """

    config_class = CategoricalVAEConfig

    def __init__(self, config: CategoricalVAEConfig) -> None:
        super().__init__(config)
        n, k = config.num_latents, config.num_categories
        if n < 1 or k < 2:
            raise ValueError(f"need num_latents >= 1 and num_categories >= 2, got {n} and {k}")
        if not 0 < config.tau_min <= config.tau_init or config.anneal_rate < 0:
            raise ValueError("need 0 < tau_min <= tau_init and anneal_rate >= 0, got "
                             f"tau_min={config.tau_min}, tau_init={config.tau_init}, anneal_rate={config.anneal_rate}")
        self._build(config, encoder_features=n * k, latent_features=n * k)
        self.register_buffer("tau", torch.tensor(float(config.tau_init)))  # current relaxation temperature

    # ---- temperature -------------------------------------------------------------------------
    def temperature_at(self, step: int) -> float:
        """The annealed Gumbel-softmax temperature at training step ``step``."""
        c = self.config
        return max(c.tau_min, c.tau_init * math.exp(-c.anneal_rate * step))

    def on_train_step(self, step: int, total_steps: int | None = None) -> None:
        """Set ``tau`` for ``step`` (called by the trainer before each step; ``total_steps`` unused)."""
        self.tau.fill_(self.temperature_at(step))

    # ---- inference network ---------------------------------------------------------------
    def _posterior(self, target: Tensor) -> Tensor:
        logits = self.encoder(target).view(-1, self.config.num_latents, self.config.num_categories)
        return torch.log_softmax(logits, dim=-1)

    def posterior(self, x: Tensor) -> Tensor:
        """log q(z|x): log-probabilities ``(B, num_latents, num_categories)`` for images ``(B, C, H, W)``."""
        return self._posterior(self._targets(x))

    def encode(self, x: Tensor) -> Tensor:
        """Most probable code per latent, ``(B, num_latents)`` int64, for images ``(B, C, H, W)``."""
        return self.posterior(x).argmax(dim=-1)

    def _codes(self, codes: Tensor) -> Tensor:
        """Indices ``(B, N)`` int64 or vectors ``(B, N, K)`` float -> float vectors ``(B, N, K)``."""
        n, k = self.config.num_latents, self.config.num_categories
        if not isinstance(codes, Tensor):
            raise TypeError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
        if codes.dtype == torch.int64 and codes.dim() == 2 and codes.shape[1] == n:
            if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= k):
                raise ValueError(f"code indices must be in [0, {k}), got [{int(codes.min())}, {int(codes.max())}]")
            return F.one_hot(codes, k).to(self.dtype)
        if codes.is_floating_point() and codes.dim() == 3 and tuple(codes.shape[1:]) == (n, k):
            return codes
        raise ValueError(f"codes have shape {tuple(codes.shape)} and dtype {codes.dtype}; expected indices "
                         f"(B, {n}) int64 or one-hot/probabilities (B, {n}, {k}) float")

    def decode(self, codes: Tensor) -> Tensor:
        """Mean image ``(B, C, H, W)`` in [0, 1] for codes ``(B, N)`` int64 or ``(B, N, K)`` float."""
        return self._decode_mean(self._codes(codes).flatten(1))

    def kl_divergence(self, log_q: Tensor) -> Tensor:
        """Analytic KL(q || uniform) in nats per image, ``(B,)``, from ``log_q`` ``(B, N, K)``."""
        return (log_q.exp() * (log_q + math.log(self.config.num_categories))).sum((-2, -1))

    def _exact_sample(self, log_q: Tensor, num_samples: int, generator: torch.Generator | None) -> Tensor:
        """Indices ``(num_samples, B, N)`` drawn exactly from q (Gumbel-max)."""
        g = sample_gumbel((num_samples, *log_q.shape), generator, log_q.device, log_q.dtype)
        return (log_q + g).argmax(dim=-1)

    # ---- likelihoods -----------------------------------------------------------------------
    def log_px_given_z(self, x: Tensor, codes: Tensor) -> Tensor:
        """log p(x|z) in nats, ``(B,)``, for images ``(B, C, H, W)`` and codes ``(B, N)`` / ``(B, N, K)``."""
        target = self._targets(x)
        z = self._codes(codes)
        if z.shape[0] != target.shape[0]:
            raise ValueError(f"x has batch size {target.shape[0]} but codes have {z.shape[0]}")
        return self._log_px(target, z.flatten(1))

    def elbo(self, x: Tensor) -> Tensor:
        """ELBO in nats per image, ``(B,)``: one exact sample of q (torch's global RNG), analytic KL."""
        target = self._targets(x)
        log_q = self._posterior(target)
        index = self._exact_sample(log_q, 1, None)[0]
        z = F.one_hot(index, self.config.num_categories).to(log_q.dtype)
        return self._log_px(target, z.flatten(1)) - self.kl_divergence(log_q)

    def importance_log_weights(self, x: Tensor, num_samples: int,
                               generator: torch.Generator | None = None) -> Tensor:
        """``log p(x|z_i) + log p(z_i) - log q(z_i|x)``, exact discrete ``z_i ~ q``; ``(num_samples, B)`` nats."""
        self._check_num_samples(num_samples)
        target = self._targets(x)
        log_q = self._posterior(target)
        index = self._exact_sample(log_q, num_samples, generator)                  # (k, B, N)
        log_qz = log_q.expand(num_samples, *log_q.shape).gather(-1, index.unsqueeze(-1)).squeeze(-1).sum(-1)
        log_pz = -self.config.num_latents * math.log(self.config.num_categories)
        z = F.one_hot(index, self.config.num_categories).to(log_q.dtype).flatten(2)  # (k, B, N*K)
        return self._log_px(target, z) + log_pz - log_qz

    # ---- training / sampling -------------------------------------------------------------------
    def loss(self, batch: Tensor) -> dict[str, Tensor]:
        """Losses for images ``batch`` ``(B, C, H, W)`` in [0, 1], decoded at a Gumbel-softmax sample.

        ``"loss"``: ``(recon + beta * KL) / D`` batch mean at the current ``tau``; ``"nll_elbo_bpd"``:
        the corresponding -ELBO in bits/dim (exact for ``straight_through``, whose forward pass is a
        true sample of q; a relaxed surrogate otherwise); ``"recon"``, ``"kl"``: nats per image.
        """
        target = self._targets(batch, "batch")
        log_q = self._posterior(target)
        z = gumbel_softmax(log_q, self.tau, hard=self.config.straight_through)
        kl = self.kl_divergence(log_q)
        return self._loss_dict(self._log_px(target, z.flatten(1)), kl, kl.mean())

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """``n`` images ``(n, C, H, W)`` in [0, 1]: decoder means at exact one-hot codes from the uniform prior.

        ``temperature`` (> 0) is accepted for the common API and ignored: a uniform categorical prior
        has no logits to sharpen or flatten, and the relaxation temperature only matters in training.
        """
        self._check_sample_args(n, temperature)
        codes = torch.randint(self.config.num_categories, (n, self.config.num_latents),
                              generator=generator, device=self.device)
        return self.decode(codes)


# ---- registry: architectures -------------------------------------------------------------------
register("categorical-vae", CategoricalVAE, CategoricalVAEConfig(),
         description="VAE with 30x10 categorical latents, Gumbel-softmax relaxation (arXiv:1611.01144)")

# ---- registry: pretrained checkpoints (added by the lead) ---------------------------------------
