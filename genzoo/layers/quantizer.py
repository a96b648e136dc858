"""Vector quantisation: plain VQ (arXiv 1711.00937) and SimVQ (arXiv 2411.02038), one class.

``VectorQuantizer`` maps each D-dimensional vector of a channels-first tensor ``(B, D, ...)`` to its
nearest code and returns ``(quantized, indices, losses)``.

* ``codebook="simvq"`` (default): codes are ``C Wᵀ + b`` with ``C`` a frozen random ``(K, D)`` matrix
  (unit-norm rows; a saved buffer, never updated) and ``W`` a learned ``D×D`` linear map. Every code
  moves whenever ``W`` moves, which is why SimVQ keeps the whole codebook in use where plain VQ
  collapses. genzoo adds a learned bias ``b`` and a data-dependent init (:meth:`data_init`: ``W, b`` fit
  the first batch's mean and covariance) because encoder outputs are rarely centred at the origin,
  and a purely linear codebook centred there leaves most codes far from every input.
* ``codebook="plain"``: a learned ``(K, D)`` codebook trained by the codebook loss, or by exponential
  moving averages (``ema_decay > 0``, VQ-VAE appendix / arXiv 1711.00937 §A), with optional
  dead-code restarts (codes whose EMA assignment count falls below ``dead_code_threshold`` are reset
  to random encoder outputs of the current batch).
* Gradient estimator: ``"straight_through"`` (``z + sg[q − z]``) or ``"rotation"`` — the rotation
  trick of arXiv 2410.06424: ``q`` is produced as ``sg[λR] z`` with ``R`` the rotation taking ``z`` to
  the direction of ``q`` and ``λ = ‖q‖/‖z‖``, so gradients reach the encoder rotated and rescaled.
  The estimator is applied only when autograd is recording; otherwise ``quantized`` is the code itself,
  bit-identical to :meth:`VectorQuantizer.lookup`.

The nearest-code search never materialises the ``N×K`` distance matrix (``nearest_code``: a fused
Triton kernel on CUDA, a chunked PyTorch path elsewhere, same indices and ties), and SimVQ gathers
``C`` rows before applying ``W``, so memory does not grow with ``N·K``.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nearest_code import nearest_code

Codebook = Literal["simvq", "plain"]
Estimator = Literal["straight_through", "rotation"]


def rotation_trick(z: Tensor, q: Tensor, eps: float = 1e-6) -> Tensor:
    """``q`` in value, ``sg[λR] z`` in gradient (arXiv 2410.06424); ``z``, ``q`` are ``(N, D)``.

    ``R = I − 2 r rᵀ + 2 q̂ ẑᵀ`` with ``ẑ = z/‖z‖``, ``q̂ = q/‖q‖``, ``r = (ẑ + q̂)/‖ẑ + q̂‖`` rotates
    ``ẑ`` onto ``q̂``; ``λ = ‖q‖/‖z‖``. Everything but the final ``z`` is detached.
    """
    with torch.no_grad():
        z_norm = z.norm(dim=1, keepdim=True).clamp_min(eps)
        q_norm = q.norm(dim=1, keepdim=True)
        e, qn = z / z_norm, q / q_norm.clamp_min(eps)
        r = e + qn
        r = r / r.norm(dim=1, keepdim=True).clamp_min(eps)
        scale = q_norm / z_norm
    rz = z - 2 * r * (r * z).sum(1, keepdim=True) + 2 * qn * (e * z).sum(1, keepdim=True)
    out = scale * rz
    # exact value where the construction is degenerate (z = 0 or z anti-parallel to q)
    return out + (q - out).detach()


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation of channels-first tensors ``(B, D, *spatial)`` (or ``(N, D)``)."""

    def __init__(self, num_codes: int, dim: int, *, codebook: Codebook = "simvq",
                 estimator: Estimator = "straight_through", commitment_weight: float = 0.25,
                 ema_decay: float = 0.0, dead_code_threshold: float = 0.0, usage_decay: float = 0.99,
                 laplace_eps: float = 1e-5, backend: str = "auto", chunk_size: int = 512) -> None:
        super().__init__()
        if num_codes < 1 or dim < 1:
            raise ValueError(f"num_codes and dim must be >= 1, got {num_codes}, {dim}")
        if codebook not in ("simvq", "plain"):
            raise ValueError(f"codebook must be 'simvq' or 'plain', got {codebook!r}")
        if estimator not in ("straight_through", "rotation"):
            raise ValueError(f"estimator must be 'straight_through' or 'rotation', got {estimator!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if codebook == "simvq" and (ema_decay > 0 or dead_code_threshold > 0):
            raise ValueError("EMA updates and dead-code restarts apply to codebook='plain'; SimVQ's codebook "
                             "C is frozen and only the linear map W is learned")
        self.num_codes, self.dim = int(num_codes), int(dim)
        self.kind, self.estimator = codebook, estimator
        self.commitment_weight, self.ema_decay = float(commitment_weight), float(ema_decay)
        self.dead_code_threshold, self.usage_decay = float(dead_code_threshold), float(usage_decay)
        self.laplace_eps, self.backend, self.chunk_size = float(laplace_eps), backend, int(chunk_size)
        # unit-norm random directions: at init the nearest code depends on the direction of z only, so
        # small encoder outputs spread over the codebook instead of all picking the shortest code
        init = F.normalize(torch.randn(num_codes, dim), dim=1)
        if codebook == "simvq":
            self.register_buffer("frozen_codebook", init)  # C: saved, never updated
            self.transform = nn.Linear(dim, dim)  # W (identity at init, so codes start as C) and a bias b
            nn.init.eye_(self.transform.weight)
            nn.init.zeros_(self.transform.bias)
        elif ema_decay > 0:
            self.register_buffer("codebook", init)
            # every code starts as if it had been assigned once, at its initial value
            self.register_buffer("ema_count", torch.ones(num_codes))
            self.register_buffer("ema_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        # EMA of assignments per training batch, for dead-code restarts and monitoring
        self.register_buffer("code_usage", torch.ones(num_codes))
        # data-dependent init done (saved, so loaded codebooks are never re-initialised)
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def data_init(self, z: Tensor) -> None:
        """Fit the codebook to a first batch of encoder outputs ``(B, D, ...)``, once.

        SimVQ: ``W, b`` are set so that the codes ``C Wᵀ + b`` have the batch's mean and covariance
        (``C`` stays as drawn); plain: codes are random vectors of the batch (with replacement when the
        batch has fewer than K vectors). Later calls do nothing (guarded by the ``initialized`` buffer).
        """
        if bool(self.initialized):
            return
        flat = z.detach().movedim(1, -1).reshape(-1, self.dim).float()
        if flat.shape[0] < 2:
            raise ValueError("data_init needs at least two vectors")
        if self.kind == "simvq":
            cov = torch.cov(flat.T).reshape(self.dim, self.dim)
            cov = cov + (1e-4 * cov.diagonal().mean().clamp_min(1e-8)) * torch.eye(self.dim, device=cov.device)
            chol = torch.linalg.cholesky(cov)
            # unit-norm random rows of C have covariance I/D, so sqrt(D) C cholᵀ has covariance cov
            self.transform.weight.copy_(chol * self.dim ** 0.5)
            self.transform.bias.copy_(flat.mean(0))
        else:
            n = flat.shape[0]
            pick = torch.randperm(n, device=flat.device)[: self.num_codes] if n >= self.num_codes else \
                torch.randint(0, n, (self.num_codes,), device=flat.device)
            self.codebook.data.copy_(flat[pick])
            if self.ema_decay > 0:
                self.ema_sum.copy_(flat[pick])
        self.initialized.fill_(True)

    # ------------------------------------------------------------------ codes
    def codes(self) -> Tensor:
        """All code vectors ``(K, D)`` (SimVQ: ``C Wᵀ + b``)."""
        if self.kind == "simvq":
            return self.transform(self.frozen_codebook)
        return self.codebook

    def lookup(self, indices: Tensor) -> Tensor:
        """Code vectors for integer ``indices`` of any shape ``S``: returns ``(S[0], D, *S[1:])``
        channels-first (``(N, D)`` for 1-D indices), matching ``quantized`` of :meth:`forward`."""
        if indices.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"indices must be int64/int32, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_codes):
            raise ValueError(f"indices must be in [0, {self.num_codes}), got [{int(indices.min())}, "
                             f"{int(indices.max())}]")
        flat = self._gather(indices.reshape(-1).long())
        return flat.reshape(*indices.shape, self.dim).movedim(-1, 1) if indices.dim() > 1 else flat

    def _gather(self, flat: Tensor) -> Tensor:
        """Code vectors ``(N, D)`` of valid indices ``(N,)`` (no checks: the search's own output)."""
        if self.kind == "simvq":  # gather rows of C first: memory O(N·D), not O(K·D) in autograd
            return self.transform(self.frozen_codebook[flat])
        return F.embedding(flat, self.codebook)

    def search(self, flat: Tensor) -> Tensor:
        """Nearest-code indices ``(N,)`` of vectors ``(N, D)`` (no gradient)."""
        with torch.no_grad():
            return nearest_code(flat.detach().float(), self.codes().detach().float(), backend=self.backend,
                                chunk_size=self.chunk_size)

    # ------------------------------------------------------------------ forward
    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Quantise ``z`` ``(B, D, *spatial)``.

        Returns ``quantized`` (same shape as ``z``), ``indices`` ``(B, *spatial)`` int64 and
        ``losses``: ``"commitment"`` ``‖z − sg[q]‖²``, ``"codebook"`` ``‖sg[z] − q‖²`` (zero tensor under
        EMA updates) and ``"loss" = codebook + commitment_weight · commitment`` (means over elements).
        """
        if z.dim() < 2 or z.shape[1] != self.dim:
            raise ValueError(f"expected z of shape (B, {self.dim}, ...), got {tuple(z.shape)}")
        flat = z.movedim(1, -1).reshape(-1, self.dim)
        indices = self.search(flat)
        if self.training:  # usage EMA, EMA codebook step, restarts; q uses the updated codes
            self._update(flat.detach(), indices)
        q = self._gather(indices).to(flat.dtype)
        commitment = F.mse_loss(flat.float(), q.detach().float())
        if self.kind == "plain" and self.ema_decay > 0:
            codebook_loss = torch.zeros((), device=z.device)
        else:
            codebook_loss = F.mse_loss(q.float(), flat.detach().float())
        if torch.is_grad_enabled() and flat.requires_grad:
            # the codes learn from the codebook loss only; the estimator carries gradients to z
            if self.estimator == "straight_through":
                out = flat + (q - flat).detach()
            else:
                out = rotation_trick(flat, q.detach())
        else:
            out = q
        quantized = out.reshape(*z.shape[:1], *z.shape[2:], self.dim).movedim(-1, 1)
        losses = {"loss": codebook_loss + self.commitment_weight * commitment,
                  "commitment": commitment, "codebook": codebook_loss}
        return quantized, indices.reshape(z.shape[:1] + z.shape[2:]), losses

    @torch.no_grad()
    def _update(self, flat: Tensor, indices: Tensor) -> None:
        """Training-mode bookkeeping: usage EMA, EMA codebook step, dead-code restarts."""
        counts = torch.bincount(indices, minlength=self.num_codes).to(self.code_usage.dtype)
        self.code_usage.mul_(self.usage_decay).add_(counts, alpha=1 - self.usage_decay)
        if self.kind != "plain":
            return
        if self.ema_decay > 0:
            g = self.ema_decay
            sums = torch.zeros_like(self.ema_sum).index_add_(0, indices, flat.to(self.ema_sum.dtype))
            self.ema_count.mul_(g).add_(counts, alpha=1 - g)
            self.ema_sum.mul_(g).add_(sums, alpha=1 - g)
            n = self.ema_count.sum()
            eps = self.laplace_eps
            smoothed = (self.ema_count + eps) / (n + self.num_codes * eps) * n  # Laplace smoothing
            self.codebook.copy_(self.ema_sum / smoothed[:, None])
        if self.dead_code_threshold > 0:
            dead = torch.nonzero(self.code_usage < self.dead_code_threshold).flatten()
            if dead.numel() and flat.shape[0]:
                pick = torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)
                new = flat[pick].to(self.codebook.dtype)
                self.codebook.data[dead] = new
                if self.ema_decay > 0:
                    self.ema_sum[dead] = new
                    self.ema_count[dead] = 1.0
                self.code_usage[dead] = self.code_usage.mean()

    def dead_codes(self) -> int:
        """Codes whose training-usage EMA is below ``dead_code_threshold`` (or 1e-3 when restarts are off)."""
        threshold = self.dead_code_threshold if self.dead_code_threshold > 0 else 1e-3
        return int((self.code_usage < threshold).sum())

    def extra_repr(self) -> str:
        return (f"num_codes={self.num_codes}, dim={self.dim}, codebook={self.kind}, estimator={self.estimator}, "
                f"ema_decay={self.ema_decay}, dead_code_threshold={self.dead_code_threshold}")
