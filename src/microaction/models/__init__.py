"""Models: plain ``nn.Module`` backbones and heads behind a name registry."""

from .registry import available_models, create_model, register_model
# importing a module registers its models
from . import temporal_resnet  # noqa: F401  (manet, tsm, tsn, tin)
from . import c3d, resnet3d, slowfast, timesformer, uniformer, video_swin  # noqa: F401,E401

__all__ = ["available_models", "create_model", "register_model"]
