"""Train (and evaluate) a micro-action model: `python train.py experiment=quickstart`.

Sweeps: `python train.py -m loss.alpha=0,0.1,1,2,5,10`. See conf/train.yaml.
"""

import hydra
from omegaconf import DictConfig

from microaction.utils.config import export_swept_keys, register_resolvers

register_resolvers()
export_swept_keys()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from microaction.pipeline import train

    results = train(cfg)
    # A sweeper optimising `optimized_metric` reads the return value.
    key = str(cfg.get("optimized_metric", "")).split("/")
    value = results.get(key[0], {}).get(key[1]) if len(key) == 2 and isinstance(results.get(key[0]), dict) else None
    return value


if __name__ == "__main__":
    main()
