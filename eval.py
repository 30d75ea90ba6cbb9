"""Evaluate a checkpoint: `python eval.py ckpt_path=PATH [split=test] [data.root=...]`."""

import hydra
from omegaconf import DictConfig

from microaction.utils.config import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from microaction.pipeline import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    main()
