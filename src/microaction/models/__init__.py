"""Models: plain ``nn.Module`` backbones and heads behind a name registry."""

from .registry import available_models, create_model, register_model
from . import temporal_resnet  # noqa: F401  (registers manet/tsm/tsn)

__all__ = ["available_models", "create_model", "register_model"]
