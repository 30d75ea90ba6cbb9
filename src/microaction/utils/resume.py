"""Random-number state in checkpoints, so a resumed run continues the draws of the run it replaces.

Lightning's checkpoints hold weights, optimizer, schedulers, loop progress and callback states,
but not the RNG streams that pick the next epoch's clip order, crops and dropout masks; without
them a run resumed at an epoch boundary takes a different path from one never interrupted.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


def _numpy_state_to_plain(state: tuple) -> tuple:
    kind, key, pos, has_gauss, gauss = state
    return (str(kind), [int(k) for k in key], int(pos), int(has_gauss), float(gauss))


class RNGStateCheckpoint(L.Callback):
    """Saves the Python, NumPy, torch (and CUDA) generators with each checkpoint; restores them on resume.

    The state saved is rank 0's (Lightning writes checkpoints from rank 0); other ranks get it too,
    which is harmless since DistributedSampler derives each rank's order from a shared seed and epoch.
    """

    @property
    def state_key(self) -> str:
        return "RNGStateCheckpoint"

    def state_dict(self) -> dict[str, Any]:
        state = {
            "python": random.getstate(),
            # plain Python values: checkpoints are loaded with torch.load(weights_only=True)
            "numpy": _numpy_state_to_plain(np.random.get_state()),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        kind, key, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))
        torch.set_rng_state(state_dict["torch"])
        cuda = state_dict.get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
