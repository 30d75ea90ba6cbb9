"""Clip features of a trained model: the vector its classifier sees (the paper's Fig. 5 plots them with t-SNE).

``clip_features`` rebuilds the task of a checkpoint train.py wrote (``pipeline.load_task``: registered classes
only, weights read with ``weights_only=True``) and the datamodule its stored data settings describe, runs
the clips of one split through the network's ``forward_features`` and returns one vector per clip: the
output of the layer before the classifier, averaged over the frames for 2D networks (TSN, TSM, MANet),
exactly as the head averages it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


def load_checkpoint_data(ckpt_path: str | Path, split: str = "val", **data_overrides: Any):
    """(task in eval mode, datamodule set up for ``split``) of a checkpoint; ``data_overrides`` replace
    stored data settings (``root=`` for data moved elsewhere, ``batch_size=``). Loading runs in this
    process (``num_workers=0`` unless given)."""
    from .pipeline import load_task
    from .registry import DATAMODULES

    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r}: expected train, val or test")
    module, dm_cls, stored = load_task(str(ckpt_path))
    module.eval()
    if dm_cls is None:
        dm_cls = DATAMODULES.get("ma52")
    settings = {**stored, "num_workers": 0, "generate": None, **data_overrides}
    dm = dm_cls(**settings)
    dm.predict_split = split
    dm.setup("predict")
    return module, dm


@torch.no_grad()
def clip_features(ckpt_path: str | Path, split: str = "val", limit: int | None = None,
                  **data_overrides: Any) -> dict[str, Any]:
    """The features of ``split``'s clips (at most ``limit``) under the checkpoint's network, on the CPU:
    ``{"features": float32 [N, C], "labels": int [N] (-1 unknown), "names": [N], "classes": fine names,
    "coarse": coarse id per fine class, "coarse_classes": coarse names}``."""
    module, dm = load_checkpoint_data(ckpt_path, split, **data_overrides)
    net = getattr(module, "net", None)
    if net is None or not hasattr(net, "forward_features"):
        raise ValueError(f"{ckpt_path}: its task has no network with forward_features (a recognition checkpoint "
                         "has one)")
    feats, labels, names = [], [], []
    for batch in dm.predict_dataloader():
        if "video" not in batch:
            continue  # every clip of the batch skipped as undecodable
        batch = dm.on_after_batch_transfer(batch, 0)
        video = batch["video"]
        f = net.forward_features(video)
        if getattr(net, "frame_features", False):
            f = f.view(video.shape[0], -1, f.shape[-1]).mean(1)
        feats.append(f.float().reshape(video.shape[0], -1).numpy())
        label = batch.get("label")
        labels += [-1] * video.shape[0] if label is None else [int(x) for x in label]
        names += list(batch["name"])
        if limit is not None and len(names) >= limit:
            break
    if not feats:
        raise ValueError(f"{ckpt_path}: no clip of split {split} could be read")
    space = module.label_space
    n = len(names) if limit is None else min(limit, len(names))
    return {"features": np.concatenate(feats)[:n], "labels": np.asarray(labels[:n]), "names": names[:n],
            "classes": list(space.classes), "coarse": list(space.fine_to_coarse),
            "coarse_classes": list(space.coarse_classes)}


def tsne_2d(features: np.ndarray, seed: int = 0, perplexity: float | None = None) -> np.ndarray:
    """2-D t-SNE (scikit-learn) of ``features`` [N, C], as in the paper's Fig. 5; perplexity 30, or less for
    few clips (it must stay below N)."""
    from sklearn.manifold import TSNE

    n = len(features)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 clips, got {n}")
    perplexity = perplexity or float(min(30.0, max(2.0, (n - 1) / 3)))
    # exact gradients for up to a thousand clips: faster there than Barnes-Hut's tree, which pays off beyond
    method = "exact" if n <= 1000 else "barnes_hut"
    return TSNE(n_components=2, perplexity=perplexity, init="pca", method=method, random_state=seed).fit_transform(
        np.asarray(features, dtype=np.float32))
