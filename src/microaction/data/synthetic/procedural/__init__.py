"""A procedural stand-in for MA-52: a seated figure performing the 52 micro-actions.

``write_procedural(root, scale=..., seed=...)`` writes real MP4 clips in the
official layout (list files, ``label_name.txt``, ``videos_*``) plus
``procedural.json`` (arguments, subjects, the order-only class pairs).
See docs/procedural_dataset.md.
"""

from .motions import ORDER_PAIRS, REVERSED_OF, ClipParams, render_clip
from .writer import META_FILE, class_counts, clip_params, plan, render_spec, subject_of, write_procedural

__all__ = [
    "META_FILE", "ORDER_PAIRS", "REVERSED_OF", "ClipParams", "class_counts", "clip_params", "plan",
    "render_clip", "render_spec", "subject_of", "write_procedural",
]
