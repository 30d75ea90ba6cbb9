"""Pretrained weights: what ``model.pretrained`` asks for, where library weights come from, and loading.

``create_model`` (registry.py) calls ``load_pretrained`` once the network and its head are built,
with the backbone's own adaptation (``ClipClassifier.adapt_weights``: key names, inflation to 3D,
...) and returns what the weights start from, recorded as the run's ``init``. Every file is read
with ``weights_only=True``; ``MICROACTION_OFFLINE=1`` forbids downloads.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
import torch.nn as nn

log = logging.getLogger(__name__)


OFFLINE_ENV = "MICROACTION_OFFLINE"
_RANDOM_VALUES = ("", "false", "none", "null", "random")
_LIBRARY_VALUES = ("true", "imagenet", "kinetics", "kinetics400")
REQUIRED = "required"


class WeightsUnavailable(RuntimeError):
    """Library weights that are neither in the cache nor downloadable now."""


def offline() -> bool:
    """``MICROACTION_OFFLINE=1``: library weights come from the cache only, never from a download."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def pretrained_mode(pretrained: object) -> tuple[str, str | None]:
    """``model.pretrained`` as ``(mode, path)``; mode is random, library, required or path.

    false/null/"random": random initialisation; true (or "imagenet"/"kinetics"): the library's
    weights if they can be had, else random initialisation, recorded; "required": the library's
    weights or an error; any other string: a file that must load.
    """
    if pretrained is None or pretrained is False:
        return "random", None
    if pretrained is True:
        return "library", None
    if isinstance(pretrained, (str, Path)):
        text = str(pretrained).strip()
        low = text.lower()
        if low in _RANDOM_VALUES:
            return "random", None
        if low in _LIBRARY_VALUES:
            return "library", None
        if low == REQUIRED:
            return "required", None
        return "path", text
    raise TypeError(
        f"model.pretrained={pretrained!r}: expected false, true, required or a path to a state-dict file"
    )


def library_cache_file(weights) -> Path:
    """Where torchvision keeps ``weights`` (a weight-enum member) once downloaded: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def library_state_dict(weights) -> dict:
    """The state dict of a torchvision weight-enum member, from its cache, else downloaded (unless offline).

    Raises WeightsUnavailable when it is not cached and cannot be downloaded (no network, or
    ``MICROACTION_OFFLINE=1``); a cached file that does not load is an error naming the file.
    Always read with ``weights_only=True``.
    """
    from ..utils.untrusted import load_torch_file

    cached = library_cache_file(weights)
    if cached.is_file():
        return load_torch_file(cached, f"cached torchvision {weights}")
    if offline():
        raise WeightsUnavailable(f"not in the cache ({cached}) and {OFFLINE_ENV}=1 forbids downloading")
    try:
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as err:  # no network, refused, hash mismatch
        if cached.is_file():  # downloaded, but not loadable: name the file
            return load_torch_file(cached, f"downloaded torchvision {weights}")
        raise WeightsUnavailable(
            f"not in the cache ({cached}) and the download from {weights.url} failed: {err}"
        ) from err


def load_pretrained(
    model: nn.Module,
    pretrained: bool | str | None,
    name: str,
    *,
    library: tuple[str, object] | None = None,
    adapt: Callable[[dict], dict] | None = None,
    allow_missing: tuple[str, ...] = ("head.",),
    strict: bool = False,
    named: Callable[[str, bool], dict | None] | None = None,
) -> str:
    """Load weights into ``model`` from a state-dict file or a library's weights; return what it starts from.

    ``pretrained`` (see ``pretrained_mode``): false, true, ``required`` or a path. ``library`` is
    ``(label, weight-enum member)``, e.g. ``("imagenet", ResNet50_Weights.IMAGENET1K_V1)``. The
    return value is ``"random"``, the library's label, or the file's absolute path, for the run's
    records (``init`` in metrics.json). A path that is missing, corrupt or unsafe is an error, and
    so is ``required`` when the library's weights cannot be had; only ``true`` falls back to random
    initialisation, with a warning. Weights that do not fit the architecture are an error. Keys
    containing one of ``allow_missing`` may stay at their initialisation; ``strict=True`` also refuses
    weights of keys the model lacks (other than those), e.g. a deeper network's. ``named(source,
    local_files_only)``: the backbone's reader of a path that is no file (a model folder or hub id, read
    from the local cache only under ``MICROACTION_OFFLINE=1``), returning a state dict or None (not its
    kind); what it read is recorded as the folder's absolute path or the id as given.
    """
    from ..utils.untrusted import load_torch_file

    mode, path = pretrained_mode(pretrained)
    if mode == "random":
        log.info("%s: random initialisation (model.pretrained=false)", name)
        return "random"
    named_state = None
    if mode == "path" and named is not None and not Path(path).expanduser().is_file():
        named_state = named(path, offline())
    if named_state is not None:
        folder = Path(path).expanduser()
        state = named_state
        init = str(folder.resolve()) if folder.is_dir() else path
        source = f"model.pretrained={init}"
    elif mode == "path":
        file = Path(path).expanduser().resolve()
        state = load_torch_file(file, "model.pretrained")
        init, source = str(file), f"model.pretrained={file}"
    elif library is None:
        if mode == "required":
            raise ValueError(
                f"model.pretrained=required: no library ships {name} weights; "
                "pass model.pretrained=/path/to/state_dict.pth"
            )
        log.warning(
            "%s: no library ships weights for it; pass model.pretrained=/path/to/state_dict.pth. Random initialisation",
            name,
        )
        return "random"
    else:
        init, weights = library
        try:
            state = library_state_dict(weights)
        except WeightsUnavailable as err:
            if mode == "required":
                raise WeightsUnavailable(
                    f"model.pretrained=required: {name}: torchvision {weights} not obtainable: {err}. "
                    f"Fill the cache where there is network (python -c \"from {type(weights).__module__} import "
                    f"{type(weights).__name__} as W; W.{weights.name}.get_state_dict()\", then copy "
                    f"{library_cache_file(weights).name} into {library_cache_file(weights).parent}) or pass "
                    "model.pretrained=/path/to/state_dict.pth"
                ) from None
            log.warning(
                "%s: pretrained weights not obtainable (torchvision %s: %s); random initialisation, recorded as "
                "init: random (model.pretrained=required makes this an error)", name, weights, err,
            )
            return "random"
        source = f"torchvision {weights}"
    for key in ("state_dict", "model", "module"):  # common checkpoint wrappers
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if isinstance(state, dict) and state and all(isinstance(k, str) and k.startswith(("net.", "criterion."))
                                                 for k in state):
        # a checkpoint of this package's single-label task (train.py): its network's weights
        state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    if not isinstance(state, dict):
        raise ValueError(f"{source}: not a {name} state dict (a {type(state).__name__}, expected names -> tensors)")
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if adapt is not None:
        state = adapt(state)
    own = model.state_dict()
    shape_mismatch = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    unexpected = [k for k in state if k not in own and not any(a in k for a in allow_missing)] if strict else []
    state = {k: v for k, v in state.items() if k in own and k not in shape_mismatch}
    missing = [k for k in own if k not in state and not any(a in k for a in allow_missing)]
    if missing or unexpected or not state:
        raise ValueError(
            f"{source}: not a {name} state dict ({len(state)} tensors fit; missing {missing[:5]}, "
            f"wrong shape {shape_mismatch[:5]}, unexpected {unexpected[:5]})"
        )
    model.load_state_dict(state, strict=False)
    log.info("%s: pretrained weights loaded from %s (%d tensors)", name, source, len(state))
    return init
