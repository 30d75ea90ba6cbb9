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
    # A sweeper optimising `optimized_metric` (hparams_search=..., docs/search.md) reads the return value:
    # the final evaluation's value of the best checkpoint, as metrics.json holds it.
    key = str(cfg.get("optimized_metric", "")).split("/")
    value = results.get(key[0], {}).get(key[1]) if len(key) == 2 and isinstance(results.get(key[0]), dict) else None
    if value is None and _optimising():
        raise ValueError(
            f"optimized_metric={cfg.get('optimized_metric')}: this job has no such value for the sweeper to optimise "
            f"(its results hold {sorted(k for k, v in results.items() if isinstance(v, dict))}); the search needs "
            "the final evaluation (test=true) and a metric the task logs, e.g. val/F1_mean"
        )
    return value


def _optimising() -> bool:
    """Whether a sweeper that optimises the job's return value (Optuna's) runs this job."""
    from hydra.core.hydra_config import HydraConfig

    try:
        target = str(HydraConfig.get().sweeper.get("_target_", ""))
    except ValueError:
        return False
    return "optuna" in target.lower()


if __name__ == "__main__":
    main()
