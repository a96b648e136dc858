"""Feature networks for sample-quality metrics: :class:`Classifier` (``classifier-fashion-mnist``)."""
from .classifier import Classifier, ClassifierConfig

__all__ = ["Classifier", "ClassifierConfig"]
