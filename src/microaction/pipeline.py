"""The two jobs behind train.py and eval.py, as functions of a composed config."""

from __future__ import annotations

import contextlib
import inspect
import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from . import reports
from .callbacks import ConfusionMatrixPlots, PredictionWriter
from .labels import LabelSpace
from .logging_extras import EpochLines, RunLogs, log_to_files, plain_metric_table, quiet_lightning_console, \
    quiet_lightning_hparams, resume_wandb_id
from .models.pretrained import pretrained_mode
from .registry import DATAMODULES, LEGACY_TASK, TASKS
from .utils import distributed
from .utils.checks import ConfigError, check_config
from .utils.config import instantiate_dict, instantiate_loggers, print_config, save_resolved_config
from .utils.untrusted import find_targets, load_torch_file

log = logging.getLogger(__name__)

# Checkpoints given to Lightning are unpickled with weights_only=True (tensors and plain values only).
# Lightning < 2.6 has no such argument: there a resumed checkpoint has been read so by
# `_resolve_ckpt(..., check=True)`, and validate/test only load the best checkpoint this run wrote.
SAFE_LOAD = {"weights_only": True} if "weights_only" in inspect.signature(L.Trainer.fit).parameters else {}


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


def _resolve_ckpt(ckpt_path: str | None, out_dir: Path, check: bool = False) -> str | None:
    """The checkpoint file ``ckpt_path`` names (a path, ``last``, ``auto``), or None.

    ``check=True`` also reads it as it will be read (weights_only=True, storages memory-mapped),
    so a file that would run code when unpickled, or a corrupt one, is named before any work.
    """
    path = _find_ckpt(ckpt_path, out_dir)
    if path is not None and check:
        load_torch_file(path, "ckpt_path", mmap=True)
    return path


def _find_ckpt(ckpt_path: str | None, out_dir: Path) -> str | None:
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


def _early_data_check(dm: L.LightningDataModule, splits: tuple[str, ...]) -> None:
    """Name a missing root or list file before the model is built (generated data is made in prepare_data)."""
    if not dm.hparams.get("generate"):
        dm.check_layout(splits)


def _early_batch_check(dm: L.LightningDataModule, trainer_cfg: DictConfig, splits: tuple[str, ...], world: int,
                       evaluated: tuple[str, ...] = (), off_hint: str = "") -> None:
    """A fractional trainer.limit_*_batches that leaves a split without a batch, refused before the model is
    built. Generated data has no lists yet: the datamodule's setup() checks these splits once it has.
    ``evaluated``: the splits the job evaluates (metrics and prediction files), whose limit 0 (Lightning's
    "stage off") would leave nothing to report; ``off_hint`` says how to leave the evaluation out instead."""
    off = [f"trainer.limit_{s}_batches=0 turns the {s} split off, but this job evaluates it" for s in evaluated
           if trainer_cfg.get(f"limit_{s}_batches") == 0]
    if off:
        raise ConfigError([*off, off_hint] if off_hint else off)
    dm.limit_check_splits = splits
    if dm.root is not None and dm.root.is_dir():
        dm.check_batch_limits(trainer_cfg, splits, world)


def _build_task(cfg: DictConfig, label_space: LabelSpace) -> L.LightningModule:
    """The task of ``cfg.task`` (a registered class, so that eval.py can rebuild it from the checkpoint),
    given the datamodule's label space and the optimizer and scheduler of their groups."""
    target = cfg.task.get("_target_")
    if TASKS.by_target(target) is None:
        raise ValueError(
            f"task._target_={target!r} is not a registered task ({', '.join(TASKS.targets())}): eval.py could not "
            "rebuild it from a checkpoint. Register it in microaction/registry.py (TASKS.register(name, cls))"
        )
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    try:
        return instantiate(cfg.task, label_space=label_space.to_dict(), optimizer=optimizer, scheduler=scheduler)
    except InstantiationException as err:
        # the task's own error (a refused weight file, a matrix of the wrong shape), as its own type and message
        if err.__cause__ is not None and str(err).startswith("Error in call to target"):
            raise err.__cause__ from None
        raise


def _check_frames(module: L.LightningModule, dm: L.LightningDataModule, source: str | None = None) -> None:
    """The frames per clip the data delivers (``data.num_segments``) must be those the network takes;
    ``source``: the checkpoint the network comes from (None: this config)."""
    frames, data_frames = getattr(module, "num_segments", None), dm.hparams.get("num_segments")
    if frames is None or data_frames is None or frames == data_frames:
        return
    if source is None:
        raise ValueError(f"data.num_segments={data_frames} but model.num_segments={frames}: the network must take the "
                         f"frames the data delivers; leave model.num_segments to follow data.num_segments")
    raise ValueError(
        f"data.num_segments={data_frames} but the network of {source} takes {frames} frames per clip (it was trained "
        f"with data.num_segments={frames}): evaluate with data.num_segments={frames}, or leave data.num_segments "
        "unset (eval.py then takes the checkpoint's)"
    )


def _check_label_space(module: L.LightningModule, dm: L.LightningDataModule, source: str) -> None:
    """The data's label space must match the task's in everything the network depends on."""
    mine, data = getattr(module, "label_space", None), getattr(dm, "label_space", None)
    if mine is None or data is None:
        return
    problems = mine.mismatch(data)
    if problems:
        raise ValueError(
            f"the data's label space ({data.name}: {data.num_classes} classes) does not fit {source}'s "
            f"({mine.name}: {mine.num_classes} classes): {'; '.join(problems)}"
        )
    if data.classes != mine.classes:
        log.warning("the data's class names differ from those stored in %s; reports use the stored ones", source)


def _stage_metrics(module: L.LightningModule, logged: list[dict], split: str) -> dict[str, float]:
    """The metrics ``trainer.validate``/``trainer.test`` logged for ``split``, as ``{name: value}`` (the task's
    ``metric_keys`` when it lists them); empty when nothing was scored."""
    keys = getattr(module, "metric_keys", None)
    values = logged[0] if logged else {}
    prefix = f"{split}/"
    return {k[len(prefix):]: float(v) for k, v in values.items()
            if k.startswith(prefix) and (keys is None or k[len(prefix):] in keys)}


def _table_style(module: L.LightningModule) -> dict[str, Any]:
    """The metric table's title and rows for ``module``'s task (its ``metric_title`` and ``metric_keys``)."""
    keys = [k for k in getattr(module, "metric_keys", ()) if k != "num_clips"]
    return {"title": getattr(module, "metric_title", "metrics (%)"), "keys": keys or None}


def _metric_table(tables: dict[str, Any], clips: dict[str, Any], module: L.LightningModule) -> None:
    """The final metric table on the console (rich) and, as plain text, in the job's log file."""
    style = _table_style(module)
    reports.print_metric_table(tables, clips=clips, **style)
    text = plain_metric_table(reports.metric_table(tables, style["title"], clips, style["keys"]))
    log_to_files("\n".join([f"final metrics\n{text}", *reports.clip_notes(clips)]))


def _set_example_input(cfg: DictConfig, module: L.LightningModule, dm: L.LightningDataModule) -> None:
    """One zero clip of the configured frames and size as the task's ``example_input_array``, so the model
    summary reports each layer's input and output sizes and the FLOPs of one clip. Lightning sends it through
    the datamodule's batch hooks (it is a batch: ``{"video": uint8 [1, T, 3, H, W]}``, normalised on the
    device like every batch) and the network once (eval mode, no gradients) when fit starts: a fraction of
    one training step. Left unset when the network is compiled (``accel.compile``: it would be compiled once
    more for this shape) or when the task's ``forward`` takes inputs other than the datamodule's clips
    (``video``; ``face``: a square ``data.face_size`` crop)."""
    import torch

    if getattr(module, "example_input_array", None) is not None:
        return
    if (cfg.get("accel") or {}).get("compile"):
        log.info("model summary without input sizes and FLOPs: the compiled network is not run on an example clip")
        return
    frames = getattr(module, "num_segments", None) or dm.hparams.get("num_segments")
    size = dm.hparams.get("input_size")
    if not frames or not size:
        return
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    shapes = {"video": (1, int(frames), 3, int(h), int(w))}
    if dm.hparams.get("face_size"):
        shapes["face"] = (1, int(frames), 3, int(dm.hparams.face_size), int(dm.hparams.face_size))
    names = [n for n, p in inspect.signature(module.forward).parameters.items()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    clips = set(getattr(dm, "video_keys", ("video",)))
    if not names or any(n not in shapes or n not in clips for n in names):
        return
    module.example_input_array = {n: torch.zeros(shapes[n], dtype=torch.uint8) for n in names}


def _evaluate_split(trainer: L.Trainer, module: L.LightningModule, dm: L.LightningDataModule, split: str,
                    ckpt: str | None, writer: PredictionWriter, plots: ConfusionMatrixPlots,
                    logs: RunLogs | None = None) -> dict[str, Any]:
    """Metrics of ``split`` from ``trainer.validate``/``trainer.test`` (when its labels are known), then its
    files from ``trainer.predict`` through ``writer`` (predictions, submission, decode report) and ``plots``
    (confusion matrices). Returns the metrics, files and clip accounting (listed, scored, skipped and partly
    decoded clips, by name); every rank calls it under DDP.

    Both passes run without loggers (Lightning would log the evaluation as one more epoch after the last,
    and close the loggers' files after each pass); ``logs`` then logs the metrics as ``eval/<split>/...``
    (``RunLogs.evaluation``).
    ``trainer.limit_predict_batches`` follows ``trainer.limit_<split>_batches``, so both passes cover the
    same clips.
    """
    metrics: dict[str, float] = {}
    files: dict[str, str] = {}
    logged: list[dict] = []
    with logs.detached(trainer) if logs is not None else contextlib.nullcontext():
        if dm.labelled(split):
            run = trainer.validate if split == "val" else trainer.test
            logged = run(module, datamodule=dm, ckpt_path=ckpt, verbose=False, **SAFE_LOAD)
            metrics = _stage_metrics(module, logged, split)
            files.update(plots.files.get(split, {}))
        dm.predict_split = split
        trainer.limit_predict_batches = getattr(trainer, f"limit_{split}_batches")
        trainer.predict(module, datamodule=dm, ckpt_path=ckpt, return_predictions=False, **SAFE_LOAD)
    if logs is not None and logged:
        logs.evaluation(trainer, split, logged[0])
    result = writer.result
    files.update(result["files"])
    return {"metrics": metrics, "files": files, "clips": result["clips"]}


def _train_clips(module: L.LightningModule, dm: L.LightningDataModule) -> dict[str, Any]:
    """The training split's listed clips and the distinct clips skipped or partly decoded during the fit
    (all ranks; a collective call)."""
    issues = distributed.gather_predictions(module.decode_issues.get("train", []))
    clips = reports.clip_accounting(dm.clip_list("train"), 0, issues)
    clips.pop("scored")
    clips.pop("not_run")
    return clips


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, then evaluate the best checkpoint on val and test; returns the metrics."""
    quiet_lightning_console()
    check_config(cfg)
    out_dir = Path(cfg.paths.output_dir)
    resume = _resolve_ckpt(cfg.get("ckpt_path"), out_dir, check=True) if cfg.get("train", True) else None
    layout = distributed.preflight(cfg)
    if rank_zero_only.rank == 0:
        if cfg.extras.get("print_config"):
            print_config(cfg)
        save_resolved_config(cfg, out_dir)
    _seed(cfg)

    dm: L.LightningDataModule = instantiate(cfg.data)
    _early_data_check(dm, ("train", "val") + (("test",) if cfg.get("test") else ()))
    run_splits = (("train", "val") if cfg.get("train", True) else ()) + (("val", "test") if cfg.get("test", True) else ())
    _early_batch_check(dm, cfg.trainer, tuple(dict.fromkeys(run_splits)), layout.world_size,
                       ("val", "test") if cfg.get("test", True) else (),
                       "test=false leaves out the evaluation of val and test after training")
    module = _build_task(cfg, dm.label_space)
    module.built_from = {"task": TASKS.name_of(type(module)), "datamodule": DATAMODULES.name_of(type(dm))}
    _check_frames(module, dm)
    init = _record_init(cfg, module, out_dir)
    _set_example_input(cfg, module, dm)
    distributed.apply_accel(module, cfg, layout)
    # the run's config is logged once, by RunLogs.start (Lightning would add the task's and data's at the top level)
    quiet_lightning_hparams(module, dm)
    callbacks = instantiate_dict(cfg.get("callbacks"), "callback")
    # a job resumed in its folder continues its W&B run
    loggers = instantiate_loggers(cfg.get("logger"), wandb_id=resume_wandb_id(out_dir) if resume else None)
    if not loggers:
        # it has nowhere to write and Lightning refuses it without a logger
        callbacks = [c for c in callbacks if not isinstance(c, L.pytorch.callbacks.LearningRateMonitor)]
    # the final evaluation's files: predictions (trainer.predict) and confusion matrices (validate/test)
    writer, plots = PredictionWriter(out_dir), ConfusionMatrixPlots(out_dir)
    callbacks += [writer, plots, EpochLines()]
    plugins = {} if cfg.trainer.get("plugins") else {"plugins": distributed.cluster_plugins(layout) or None}
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **plugins)
    logs = RunLogs(loggers, cfg, out_dir, keep_wandb_id=True)
    logs.start()

    results: dict[str, Any] = {"output_dir": str(out_dir)}
    results["init"] = init  # what the weights started from: random, imagenet, kinetics400 or a file
    try:
        if cfg.get("train", True):
            trainer.fit(module, datamodule=dm, ckpt_path=resume, **SAFE_LOAD)
            if "train" in dm.datasets:
                results.setdefault("clips", {})["train"] = _train_clips(module, dm)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results["best_checkpoint"] = best or None
        if cfg.get("train", True):
            logs.log_checkpoints(trainer)
        if cfg.get("test", True):
            ckpt = best or None
            if cfg.get("train", True) and "val" in getattr(dm, "train_splits", ()):
                # data.train_splits holds val: its metrics cannot choose among checkpoints (docs/recipes.md)
                log.warning("data.train_splits=%s: evaluating the weights at the end of training, not %s; the val "
                            "metrics are of clips the model trained on", dm.train_splits, best or "a best checkpoint")
                ckpt = None
            val = _evaluate_split(trainer, module, dm, "val", ckpt, writer, plots, logs)
            results["val"] = val["metrics"]
            test = _evaluate_split(trainer, module, dm, "test", ckpt, writer, plots, logs)
            results["test"] = test["metrics"] or "labels hidden: see submission_test.csv"
            results.setdefault("clips", {}).update(val=val["clips"], test=test["clips"])
            results["files"] = {f"{stage}_{k}": v for stage, r in (("val", val), ("test", test))
                                for k, v in r["files"].items()}
            logs.reports(trainer, module, dm, {"val": val, "test": test}, plots.matrices)
            logs.finish()
        if trainer.is_global_zero:
            reports.write_json(out_dir / "metrics.json", results)
            clips = results.get("clips") or {}
            tables = {k: results[k] for k in ("val", "test") if isinstance(results.get(k), dict) and results[k]}
            if tables or any(c["skipped"] or c["partial"] for c in clips.values()):
                _metric_table(tables, clips, module)
            log.info("metrics, predictions and checkpoints in %s", out_dir)
    finally:
        _finish_wandb()
    _warn_init(cfg, init)
    return results


def _record_init(cfg: DictConfig, module: L.LightningModule, out_dir: Path) -> str:
    """What the network's weights start from (``random``, ``imagenet``, ``kinetics400`` or a file's path),
    added to the config saved with the run as its top-level ``init``."""
    init = str(getattr(module, "initialised_from", None)
               or getattr(getattr(module, "net", None), "initialised_from", "random"))
    with open_dict(cfg):
        cfg.init = init
    if rank_zero_only.rank == 0:
        save_resolved_config(cfg, out_dir)
    return init


def _warn_init(cfg: DictConfig, init: str) -> None:
    """At the end of a run, repeat that library weights it asked for were not had (the start's warning scrolls away)."""
    asked = cfg.model.get("pretrained")
    if rank_zero_only.rank == 0 and init == "random" and pretrained_mode(asked)[0] == "library":
        log.warning(
            "model.pretrained=%s asked for pretrained weights, which could not be obtained: this run trained from "
            "RANDOM initialisation (init: random in metrics.json and config_resolved.yaml). "
            "model.pretrained=required makes this an error.", asked,
        )


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


def _allowed_class(registry, stored: dict, section: str, ckpt_path: str) -> type | None:
    """The registered class a top-level ``_target_`` of ``stored`` names (removed from it), or None without one.

    A ``_target_`` outside the registry, or nested at any depth, is refused before anything is built.
    """
    for key, value in find_targets(stored):
        if key != "_target_" or registry.by_target(value) is None:
            raise ValueError(
                f"{ckpt_path}: refused: {section}.{key} = {str(value)[:200]!r}. A checkpoint's stored "
                f"hyperparameters may not choose what is built: eval.py builds only the package's registered "
                f"{registry.kind}s ({', '.join(registry.targets())}), and never a `_target_` below the top level"
            )
    return registry.by_target(stored.pop("_target_")) if "_target_" in stored else None


def _allowed_name(registry, name: Any, section: str, ckpt_path: str) -> type | None:
    """The registered class ``name`` (a registered name or import path) stands for; None for None."""
    if name is None:
        return None
    cls = registry.by_target(name)
    if cls is None:
        raise ValueError(
            f"{ckpt_path}: refused: {section} = {str(name)[:200]!r}: eval.py builds only the package's registered "
            f"{registry.kind}s ({', '.join(registry.names())})"
        )
    return cls


def _checkpoint_classes(checkpoint: Any, ckpt_path: str) -> tuple[type, dict, type | None, dict]:
    """(task class, its stored arguments, datamodule class named by the checkpoint or None, stored data settings),
    all checked against the allow-list of ``microaction.registry``.

    The classes are those the checkpoint's ``built_from`` names (registered names, written by the task), or a
    registered top-level ``_target_`` of the stored hyperparameters; a checkpoint naming neither (written
    before ``built_from``) is ``registry.LEGACY_TASK``'s. Its hyperparameters go to the task unchanged: the task
    converts those of earlier versions (``num_classes`` without a label space) or refuses them.
    """
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("hyper_parameters"), dict) \
            or "state_dict" not in checkpoint:
        raise ValueError(f"{ckpt_path}: not a checkpoint written by train.py (no hyper_parameters/state_dict)")
    task_hparams = dict(checkpoint["hyper_parameters"])
    stored = checkpoint.get("datamodule_hyper_parameters") or {}
    if not isinstance(stored, dict):
        raise ValueError(f"{ckpt_path}: datamodule_hyper_parameters is a {type(stored).__name__}, expected a mapping")
    stored = dict(stored)
    built = checkpoint.get("built_from") or {}
    if not isinstance(built, dict):
        raise ValueError(f"{ckpt_path}: built_from is a {type(built).__name__}, expected a mapping")
    task_cls = (_allowed_class(TASKS, task_hparams, "hyper_parameters", ckpt_path)
                or _allowed_name(TASKS, built.get("task"), "built_from.task", ckpt_path)
                or TASKS.get(LEGACY_TASK))
    dm_cls = (_allowed_class(DATAMODULES, stored, "datamodule_hyper_parameters", ckpt_path)
              or _allowed_name(DATAMODULES, built.get("datamodule"), "built_from.datamodule", ckpt_path))
    if isinstance(task_hparams.get("model"), dict):
        # the checkpoint's state dict replaces every weight: loading pretrained ones first would only cost time
        task_hparams["model"] = {**task_hparams["model"], "pretrained": False}
    return task_cls, task_hparams, dm_cls, stored


def _stored_datamodule(dm_cls: type | None, data_cfg: dict, stored: dict, ckpt_path: str) -> L.LightningDataModule:
    """The datamodule of a checkpoint's stored settings: the class it names, else this config's data class,
    which must be registered too (the stored values reach it unchecked)."""
    if dm_cls is None:
        dm_cls = DATAMODULES.by_target(data_cfg.get("_target_"))
        if dm_cls is None:
            raise ValueError(
                f"data._target_={data_cfg.get('_target_')!r} is not a registered datamodule "
                f"({', '.join(DATAMODULES.targets())}): the settings stored in {ckpt_path} are passed only to "
                "those; pick the data group on the command line (data=...) to build it from this config alone"
            )
    return dm_cls(**stored)


def load_task(ckpt_path: str) -> tuple[L.LightningModule, type | None, dict]:
    """The task of a checkpoint train.py wrote, rebuilt with its weights; the datamodule class the checkpoint
    names (None: none) and its stored data settings (a mapping, empty when it holds none).

    The file is read with weights_only=True (tensors and plain values only), and only the registered classes
    of ``microaction.registry`` are built, from the stored values as plain arguments (``_checkpoint_classes``):
    a ``_target_`` the file names is never imported or called.
    """
    checkpoint = load_torch_file(ckpt_path, "ckpt_path")
    task_cls, task_hparams, dm_cls, stored = _checkpoint_classes(checkpoint, ckpt_path)
    module = task_cls(**task_hparams)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    return module, dm_cls, stored


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate a checkpoint on val or test: metrics.json, predictions CSV, confusion PNGs."""
    quiet_lightning_console()
    check_config(cfg)
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

    module, dm_cls, stored = load_task(ckpt_path)
    distributed.apply_accel(module, cfg, layout)

    # Data: the run's settings from the checkpoint, with what this command line overrides.
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    switched, keys = _data_overrides()
    if stored and not switched:
        for key in keys:
            stored[key.split(".")[0]] = data_cfg[key.split(".")[0]]
        # what an undecodable clip does is this command's choice, not the trained run's
        for key in ("on_decode_error", "max_skipped_fraction"):
            if key in data_cfg:
                stored[key] = data_cfg[key]
    # stored settings go as plain arguments to an allow-listed class; Hydra instantiates only this command's config
    dm: L.LightningDataModule = (
        _stored_datamodule(dm_cls, data_cfg, stored, ckpt_path) if stored and not switched else instantiate(data_cfg)
    )
    _early_data_check(dm, (cfg.split,))
    _check_label_space(module, dm, ckpt_path)
    _check_frames(module, dm, ckpt_path)
    _early_batch_check(dm, cfg.trainer, (cfg.split,), layout.world_size, (cfg.split,),
                       "expected a whole number of batches >= 1 or a fraction in (0, 1]")

    loggers = instantiate_loggers(cfg.get("logger"))
    writer, plots = PredictionWriter(out_dir), ConfusionMatrixPlots(out_dir)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[writer, plots])
    logs = RunLogs(loggers, cfg, out_dir)
    logs.start()
    try:
        result = _evaluate_split(trainer, module, dm, cfg.split, None, writer, plots, logs)
        logs.reports(trainer, module, dm, {cfg.split: result}, plots.matrices)
        logs.finish()
        results = {"checkpoint": ckpt_path, "split": cfg.split, cfg.split: result["metrics"], "files": result["files"],
                   "clips": {cfg.split: result["clips"]}}
        if trainer.is_global_zero:
            reports.write_json(out_dir / "metrics.json", results)
            _metric_table({cfg.split: result["metrics"]}, results["clips"], module)
            for name, path in result["files"].items():
                log.info("%s: %s", name, path)
    finally:
        _finish_wandb()
    return results
