"""LightningModules: losses, metrics and optimisation around the plain models."""

from .recognition import MicroActionRecognition

__all__ = ["MicroActionRecognition"]
