"""The two jobs behind train.py and eval.py, as functions of a composed config."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from . import reports
from .classes import class_table
from .data.datamodule import MA52DataModule
from .metrics import coarse_confusion
from .tasks import MicroActionRecognition
from .utils import distributed
from .utils.config import instantiate_dict, instantiate_loggers, print_config, save_resolved_config

log = logging.getLogger(__name__)


def _seed(cfg: DictConfig) -> None:
    # `is not None`, not truthiness: seed 0 is a seed.
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)


def _finish_wandb() -> None:
    """Close the W&B run so the next job of a sweep starts its own."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()


def _resolve_ckpt(ckpt_path: str | None, out_dir: Path) -> str | None:
    if ckpt_path in (None, ""):
        return None
    if ckpt_path == "auto":
        # a reused run folder (explicit hydra.run.dir, a requeued cluster job) continues where it stopped
        last = out_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            log.info("resuming from %s (ckpt_path=auto; ckpt_path=null starts anew)", last)
            return str(last)
        return None
    if ckpt_path == "last":
        last = out_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise FileNotFoundError(f"ckpt_path=last but {last} does not exist (reuse the run folder with hydra.run.dir=...)")
        return str(last)
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return str(path)


def _early_data_check(dm: MA52DataModule, splits: tuple[str, ...]) -> None:
    """Name a missing root or list file before the model is built (generated data is made in prepare_data)."""
    if not dm.hparams.generate:
        dm.check_layout(splits)


def _finish_eval(module: MicroActionRecognition, stage: str, out_dir: Path, dm: MA52DataModule) -> dict[str, Any]:
    """Write predictions (and for a scored split, confusion matrices); return the split's metrics.

    Under DDP every rank calls this: predictions and confusion counts are gathered from all
    ranks (collective calls), and only rank 0 writes files.
    """
    preds = distributed.gather_predictions(module.predictions.get(stage, []))
    writer = module.trainer.is_global_zero if module._trainer is not None else rank_zero_only.rank == 0
    names = dm.label_names or list(class_table().fine_names)
    files: dict[str, str] = {}
    scored = stage != "test" or module.score_test
    metrics: dict[str, float] = {}
    if scored:
        metric = module.stage_metrics(stage)
        values = metric.compute()  # synchronised across ranks
        metrics = {k: float(v) for k, v in values.items()}
        confmat = distributed.synced_tensor(metric, "confmat")
    if not writer:
        return {"metrics": metrics, "files": files}
    if preds:
        files["predictions"] = str(reports.write_predictions_csv(out_dir / f"predictions_{stage}.csv", preds, names))
    if stage == "test" and preds:
        files["submission"] = str(reports.write_submission_csv(out_dir / "submission_test.csv", preds))
    if scored:
        files["confusion_fine"] = str(reports.plot_confusion(
            confmat.cpu().numpy(), [f"{i} {n}" for i, n in enumerate(names)],
            out_dir / f"confusion_fine_{stage}.png", f"{stage}: fine micro-actions (row-normalised)"))
        files["confusion_body"] = str(reports.plot_confusion(
            coarse_confusion(confmat, metric.fine_to_coarse).cpu().numpy(), list(class_table().coarse_names),
            out_dir / f"confusion_body_{stage}.png", f"{stage}: body parts (row-normalised)"))
    return {"metrics": metrics, "files": files}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, then evaluate the best checkpoint on val and test; returns the metrics."""
    out_dir = Path(cfg.paths.output_dir)
    layout = distributed.preflight(cfg)
    if rank_zero_only.rank == 0:
        if cfg.extras.get("print_config"):
            print_config(cfg)
        save_resolved_config(cfg, out_dir)
    _seed(cfg)

    dm: MA52DataModule = instantiate(cfg.data)
    _early_data_check(dm, ("train", "val") + (("test",) if cfg.get("test") else ()))
    module = MicroActionRecognition(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        loss=OmegaConf.to_container(cfg.loss, resolve=True),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    module.score_test = dm.hparams.test_has_labels
    distributed.apply_accel(module, cfg, layout)
    callbacks = instantiate_dict(cfg.get("callbacks"), "callback")
    loggers = instantiate_loggers(cfg.get("logger"))
    if not loggers:
        # it has nowhere to write and Lightning refuses it without a logger
        callbacks = [c for c in callbacks if not isinstance(c, L.pytorch.callbacks.LearningRateMonitor)]
    plugins = {} if cfg.trainer.get("plugins") else {"plugins": distributed.cluster_plugins(layout) or None}
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **plugins)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    results: dict[str, Any] = {"output_dir": str(out_dir)}
    try:
        if cfg.get("train", True):
            trainer.fit(module, datamodule=dm, ckpt_path=_resolve_ckpt(cfg.get("ckpt_path"), out_dir))
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results["best_checkpoint"] = best or None
        if cfg.get("test", True):
            ckpt = best or None
            module.predictions = {"val": [], "test": []}
            trainer.validate(module, datamodule=dm, ckpt_path=ckpt, verbose=False)
            results["val"] = _finish_eval(module, "val", out_dir, dm)["metrics"]
            trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False)
            test = _finish_eval(module, "test", out_dir, dm)
            results["test"] = test["metrics"] or "labels hidden: see submission_test.csv"
            module.predictions = {}
        if trainer.is_global_zero:
            reports.write_json(out_dir / "metrics.json", results)
            tables = {k: results[k] for k in ("val", "test") if isinstance(results.get(k), dict) and results[k]}
            if tables:
                reports.print_metric_table(tables)
            log.info("metrics, predictions and checkpoints in %s", out_dir)
    finally:
        _finish_wandb()
    return results


def _data_overrides() -> tuple[bool, list[str]]:
    """(data group switched?, dotted data.* keys overridden) from the Hydra command line."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:
        return False, []
    switched = any(o.split("=")[0].lstrip("+~") == "data" for o in overrides)
    keys = [o.split("=")[0].lstrip("+~")[len("data."):] for o in overrides if o.lstrip("+~").startswith("data.")]
    return switched, keys


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate a checkpoint on val or test: metrics.json, predictions CSV, confusion PNGs."""
    out_dir = Path(cfg.paths.output_dir)
    if cfg.split not in ("val", "test"):
        raise ValueError(f"split={cfg.split!r}: expected 'val' or 'test'")
    if cfg.ckpt_path in ("auto", None, ""):
        raise ValueError(f"ckpt_path={cfg.ckpt_path!r}: eval.py needs a checkpoint file (or `last` with hydra.run.dir=<run>)")
    ckpt_path = _resolve_ckpt(cfg.ckpt_path, out_dir)
    layout = distributed.preflight(cfg)
    if rank_zero_only.rank == 0:
        if cfg.extras.get("print_config"):
            print_config(cfg)
        save_resolved_config(cfg, out_dir)
    _seed(cfg)

    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if "hyper_parameters" not in checkpoint or "state_dict" not in checkpoint:
        raise ValueError(f"{ckpt_path}: not a checkpoint written by train.py (no hyper_parameters/state_dict)")
    module = MicroActionRecognition(**checkpoint["hyper_parameters"])
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    distributed.apply_accel(module, cfg, layout)

    # Data: the run's settings from the checkpoint, with what this command line overrides.
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    switched, keys = _data_overrides()
    stored = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    if stored and not switched:
        for key in keys:
            stored[key.split(".")[0]] = data_cfg[key.split(".")[0]]
        data_cfg = {"_target_": data_cfg["_target_"], **stored}
    dm: MA52DataModule = instantiate(data_cfg)
    stage = "validate" if cfg.split == "val" else "test"
    _early_data_check(dm, (cfg.split,))
    module.score_test = dm.hparams.test_has_labels
    module.predictions = {cfg.split: []}

    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[])
    try:
        if stage == "validate":
            trainer.validate(module, datamodule=dm, verbose=False)
        else:
            trainer.test(module, datamodule=dm, verbose=False)
        result = _finish_eval(module, cfg.split, out_dir, dm)
        results = {"checkpoint": ckpt_path, "split": cfg.split, cfg.split: result["metrics"], "files": result["files"]}
        if trainer.is_global_zero:
            reports.write_json(out_dir / "metrics.json", results)
            if result["metrics"]:
                reports.print_metric_table({cfg.split: result["metrics"]})
            for name, path in result["files"].items():
                log.info("%s: %s", name, path)
    finally:
        _finish_wandb()
    return results
