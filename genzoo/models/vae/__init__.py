"""The VAE family: Gaussian VAE (arXiv:1312.6114) and categorical Gumbel-softmax VAE (arXiv:1611.01144)."""
from .categorical import CategoricalVAE, CategoricalVAEConfig, gumbel_softmax
from .likelihoods import bernoulli_log_prob, discretized_gaussian_log_prob, discretized_logistic_log_prob
from .vae import VAE, VAEConfig

__all__ = ["VAE", "VAEConfig", "CategoricalVAE", "CategoricalVAEConfig", "gumbel_softmax",
           "bernoulli_log_prob", "discretized_logistic_log_prob", "discretized_gaussian_log_prob"]
