"""LightningModules: losses, metrics and optimisation around the plain models."""

from .emotion import EmotionRecognition
from .recognition import MicroActionRecognition

__all__ = ["EmotionRecognition", "MicroActionRecognition"]
