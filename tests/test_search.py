"""Hyperparameter search with Hydra's Optuna sweeper (``hparams_search=ma52_optuna``, docs/search.md), run as
typed from a fresh copy of the repository: two trials of the quickstart at test size, each a real train.py job.
The value Optuna keeps for a trial must be the one the job wrote to its metrics.json."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from helpers import TINY, run_as_typed
from wandb_offline import offline_runs

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the search extra: pip install -e '.[search]'")

SEARCH = "python train.py -m hparams_search=ma52_optuna experiment=quickstart"
PARAMS = {"optimizer.lr": (1e-4, 1e-1), "optimizer.weight_decay": (1e-6, 1e-2), "loss.alpha": (0.0, 10.0),
          "model.dropout": (0.0, 0.8)}


def _select(cfg: dict, dotted: str):
    for key in dotted.split("."):
        cfg = cfg[key]
    return cfg


def test_optuna_search_as_typed_returns_each_jobs_metric(checkout, tiny_root):
    multiruns = checkout / "logs" / "train" / "multiruns"
    before = set(multiruns.iterdir()) if multiruns.is_dir() else set()
    run_as_typed(SEARCH, checkout, [
        "hydra.sweeper.n_trials=2", *TINY, f"data.root={tiny_root}", "data.generate=null", "data.num_workers=0",
        # the whole val split in one batch, so that trials differ; a W&B run per trial (offline: no key here)
        "trainer.limit_val_batches=1.0", "data.eval_batch_size=52", "logger=[csv,wandb]",
    ])
    (sweep,) = [p for p in multiruns.iterdir() if p not in before]
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: int(p.name.split("_")[0]))
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1"]

    values = {}
    for job in jobs:
        cfg = yaml.safe_load((job / "config_resolved.yaml").read_text())
        tried = {key: _select(cfg, key) for key in PARAMS}
        for key, (low, high) in PARAMS.items():
            assert low <= tried[key] <= high, (job.name, key, tried[key])
        # the job's folder is named after the values it tried (the sweeper's keys), not after every override
        named = dict(part.split("=", 1) for part in job.name.split("_", 1)[1].split(","))
        assert list(named) == list(PARAMS), job.name
        for key, value in named.items():
            assert math.isclose(float(value), tried[key], rel_tol=1e-12), (job.name, key)
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["val"]["num_clips"] == 52
        values[job] = (metrics["val"]["F1_mean"], tried)
        # one W&B run per trial, grouped by the sweep and named after the trial's folder
        (run,) = offline_runs(job)
        assert (run.group, run.name) == (sweep.name, job.name)

    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["name"] == "optuna" and set(result["best_params"]) == set(PARAMS)
    best_value = max(v for v, _ in values.values())
    assert result["best_value"] == pytest.approx(best_value, abs=1e-9)
    # the best trial's parameters are those of a job whose metrics.json holds the best value
    best_jobs = [job for job, (v, tried) in values.items()
                 if all(math.isclose(tried[k], result["best_params"][k], rel_tol=1e-12) for k in PARAMS)]
    assert len(best_jobs) == 1 and values[best_jobs[0]][0] == pytest.approx(result["best_value"], abs=1e-9)
