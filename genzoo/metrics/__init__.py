"""Metrics: pure functions over models and data."""
from .codebook import code_counts, codebook_usage
from .inception import FIDInceptionV3
from .likelihood import bits_per_dim, dequantized_bpd, elbo_bpd, importance_sampled_nll
from .reconstruction import reconstruction_metrics
from .sample_quality import frechet_distance, kernel_inception_distance, precision_recall

__all__ = ["code_counts", "codebook_usage", "bits_per_dim", "dequantized_bpd", "elbo_bpd", "importance_sampled_nll",
           "reconstruction_metrics", "FIDInceptionV3", "frechet_distance", "kernel_inception_distance", "precision_recall"]
