"""Fixed class-label vectors for MANet's embedding loss: loading a matrix for training.

MANet trains with ``CE + alpha * L_emb``, where ``L_emb`` pulls a learned video
embedding towards a constant vector describing the true class.
``load_label_embeddings`` reads such a matrix (one row per fine class of a label
space, checked): the one shipped in ``microaction/assets`` for MA-52 by default,
or a file named by ``loss.embeddings``. The matrices are built offline by ``embeddings_build``
(``scripts/build_label_embeddings.py``); nothing here imports a word-vector
model.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from .labels import LabelSpace

# the packaged matrix: one row per MA-52 class, in MA-52's class order
DEFAULT_ASSET = "label_embeddings_minilm.npy"
DEFAULT_ASSET_SPACE = "ma52"


def _read_any(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            if "allow_pickle" not in str(exc):
                raise
            raise ValueError(
                f"loss.embeddings={path}: refused: an array of Python objects, which only unpickling (code the "
                "file could run) would read; save the matrix as numbers (np.save of a float array)"
            ) from None
    if suffix in (".pt", ".pth"):
        import torch

        from .utils.untrusted import load_torch_file

        # tensors and plain values only (weights_only=True): a pickle of other objects is refused unrun
        obj = load_torch_file(path, "loss.embeddings")
        if isinstance(obj, torch.Tensor):
            return obj.detach().to(torch.float64).numpy()
        return np.asarray(obj)
    if suffix == ".txt":
        return np.loadtxt(path, dtype=np.float64, ndmin=2)
    raise ValueError(f"{path}: unsupported label-embedding format {suffix!r} (use .npy, .pt or .txt)")


def has_packaged_embeddings(label_space: "LabelSpace") -> bool:
    """Whether the package ships a label-embedding matrix for ``label_space`` (MA-52's only)."""
    return label_space.name == DEFAULT_ASSET_SPACE and label_space.num_classes == 52


def load_label_embeddings(path: str | os.PathLike | None = None, label_space: "LabelSpace | None" = None, *,
                          num_classes: int | None = None) -> "torch.Tensor":
    """Load a [classes, D] float32 label-vector matrix as a tensor, one row per class of ``label_space``
    (None: MA-52's).

    ``None`` loads the shipped all-MiniLM-L6-v2 matrix, which exists for the MA-52 label space only. A
    file of the wrong shape or with non-finite values raises ValueError naming the file, so a stale
    matrix cannot silently misalign with the class ids. ``num_classes`` checks the row count alone, for
    callers without a label space (it must agree with ``label_space`` when both are given).
    """
    import torch

    from .labels import LabelSpace

    if label_space is None and num_classes is None:
        label_space = LabelSpace.ma52()
    rows = label_space.num_classes if label_space is not None else int(num_classes)
    if num_classes is not None and int(num_classes) != rows:
        raise ValueError(f"num_classes={num_classes} but label space {label_space.name!r} has {rows} classes")
    what = f"label space {label_space.name!r}" if label_space is not None else f"{rows} classes"

    if path is None:
        if label_space is not None and not has_packaged_embeddings(label_space):
            raise ValueError(
                f"no packaged label-embedding matrix for {what} ({rows} classes): the packaged one is MA-52's. "
                f"Set loss.embeddings=/path/to/matrix.npy (one row per class; scripts/build_label_embeddings.py), "
                f"or train with cross-entropy alone (loss=ce)"
            )
        ref = resources.files("microaction.assets").joinpath(DEFAULT_ASSET)
        with resources.as_file(ref) as real:
            return load_label_embeddings(real, label_space, num_classes=num_classes)

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label embeddings file not found: {path}")
    try:
        arr = _read_any(path)
    except (OSError, ValueError, RuntimeError) as exc:
        if isinstance(exc, ValueError) and str(path) in str(exc):
            raise
        raise ValueError(f"{path}: cannot read label embeddings: {exc}") from exc
    if arr.ndim != 2 or arr.shape[0] != rows or arr.shape[1] < 1:
        raise ValueError(
            f"{path}: label embeddings have shape {tuple(arr.shape)}, expected ({rows}, D): one row per class "
            f"of {what}"
        )
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise ValueError(f"{path}: label embeddings must be finite numbers")
    return torch.from_numpy(np.array(arr, dtype=np.float32, order="C"))
