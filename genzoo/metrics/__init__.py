"""Metrics: pure functions over models and data."""
from .likelihood import bits_per_dim, dequantized_bpd, elbo_bpd, importance_sampled_nll

__all__ = ["bits_per_dim", "dequantized_bpd", "elbo_bpd", "importance_sampled_nll"]
