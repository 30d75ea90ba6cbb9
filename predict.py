"""Run a trained checkpoint on your own videos: `python predict.py ckpt_path=PATH input=PATH` (docs/predict.md).

`input` is a video file, a folder of videos (searched recursively) or a list file (one path per line). Results go
to the run folder, logs/predict/runs/<time>/; rerunning with the same folder (hydra.run.dir=...) skips the videos
it finished. Exits with status 1 and a one-line reason when the settings, the checkpoint or the input cannot be
used, or when no video could be read; videos that cannot be read are named in the log and in failed.csv.
"""

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from microaction.utils.config import register_resolvers

register_resolvers()
log = logging.getLogger("predict")


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    # the command line's own mistakes, named before the package (torch, Lightning) is imported
    if cfg.ckpt_path in (None, ""):
        sys.exit("error: ckpt_path: missing; give the checkpoint to run, "
                 "e.g. ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt")
    if cfg.input in (None, ""):
        sys.exit("error: input: missing; give a video file, a folder of videos or a list file, e.g. input=clip.mp4")
    if not Path(str(cfg.input)).expanduser().exists():
        sys.exit(f"error: input={cfg.input}: no such file or folder")

    from microaction.data.video import DecodeError
    from microaction.predict import exit_message, predict

    try:
        summary = predict(cfg)
    # each names the key, file or line and what was expected (ConfigError, PredictError and UnsafeFileError are
    # ValueErrors; OSError: a file that cannot be read or written)
    except (ValueError, OSError, DecodeError) as err:
        log.error("%s", err)
        sys.exit(f"error: {err}")
    message = exit_message(summary)
    if message:
        sys.exit(f"error: {message}")


if __name__ == "__main__":
    main()
