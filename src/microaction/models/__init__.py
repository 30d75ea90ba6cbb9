"""Models: backbones behind a name registry, each with the shared head.

``create_model(name, **settings)`` checks the settings against the registered backbone, builds
it, attaches the head (``heads.py``: ``base.ClipHead`` or the hierarchical head) and loads the pretrained weights ``pretrained`` asks
for. Each backbone file registers its class with its catalogue facts (``register_model``);
importing it is what registers it.
"""

from .base import ClipClassifier, ClipHead
from .registry import (
    ModelInfo, available_models, catalogue, check_model_settings, create_model, model_info, register_model,
)

# importing a backbone file registers its models; this order is the order of docs/model_zoo.md
from . import manet  # noqa: F401,E402  (tsn, tsm, tin, manet as switches of one ResNet)
from . import c3d, i3d, slowfast, video_swin, timesformer, uniformer  # noqa: F401,E401,E402
from . import videomae  # noqa: F401,E402  (pretrained video transformers through transformers, imported lazily)


def _import_other_backbones() -> None:
    """Import every other module of this package, so a backbone file added here registers itself
    (docs/extending.md: a new backbone is one file and one YAML)."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_other_backbones()

__all__ = [
    "ClipClassifier", "ClipHead", "ModelInfo", "available_models", "catalogue", "check_model_settings",
    "create_model", "model_info", "register_model",
]
