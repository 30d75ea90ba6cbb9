"""Export a checkpoint train.py wrote to ONNX or TorchScript, checked against the PyTorch model.

    python scripts/export.py ckpt_path=PATH format=onnx|torchscript [out=FILE]

The exported model takes uint8 RGB clips [N, T, H, W, 3] (normalisation inside) and returns the logits and
embeddings by name; see docs/export.md and conf/export.yaml. Exits with status 1 and a one-line reason when
the checkpoint, the format or the model cannot be exported, or the written file disagrees with the model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from microaction.utils.config import register_resolvers

register_resolvers()

FORMATS = ("onnx", "torchscript")  # microaction.export.FORMATS, without importing torch first


def _cli_value(cfg: DictConfig, key: str):
    value = cfg.get(key)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    # the command line's own mistakes, named before the package (torch, Lightning) is imported
    if cfg.ckpt_path in (None, ""):
        sys.exit("error: ckpt_path: missing; give the checkpoint to export, "
                 "e.g. ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt")
    if not Path(str(cfg.ckpt_path)).expanduser().is_file():
        sys.exit(f"error: ckpt_path={cfg.ckpt_path}: no such checkpoint file")
    if cfg.format not in FORMATS:
        sys.exit(f"error: format={cfg.format!r}: expected one of {', '.join(FORMATS)}")

    from microaction.export import ExportError, export_checkpoint
    from microaction.utils.untrusted import UnsafeFileError

    try:
        result = export_checkpoint(
            str(cfg.ckpt_path), str(cfg.format), cfg.out,
            input_size=_cli_value(cfg, "input_size"), face_size=_cli_value(cfg, "face_size"), opset=cfg.opset,
            tolerance=cfg.tolerance, parity_batch=cfg.parity_batch, seed=cfg.seed,
        )
    # each names the key or file and what was expected; OSError: out= cannot be written
    except (ExportError, UnsafeFileError, OSError, ValueError) as err:
        sys.exit(f"error: {err}")
    inputs = ", ".join(f"{k} uint8 [N, {', '.join(map(str, v))}]" for k, v in result.inputs.items())
    print(f"wrote {result.path} ({result.format}, model={result.model}): {inputs} -> {', '.join(result.outputs)}")
    diffs = ", ".join(f"{k} {v:.2e}" for k, v in result.max_abs_diff.items())
    print(f"parity on {result.parity_batch} random uint8 clips, max abs difference exported vs PyTorch: {diffs} "
          f"(tolerance {cfg.tolerance:g})")


if __name__ == "__main__":
    main()
