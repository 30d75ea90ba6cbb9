"""LightningDataModule for data in the official MA-52 layout."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..labels import LabelSpace
from ..utils.checks import ConfigError, batch_limit_problems, check_data_settings
from ..utils.cpus import usable_cpus
from .annotations import LAYOUT_HELP, AnnotationError, list_path, read_label_names, read_list
from .dataset import MA52Dataset, collate_skipping
from .person_boxes import boxes_path, person_centres
from .recipes import ConcatClips, make_rare_aug, rare_of, recipe_problems, views_of
from .samplers import ClassBalancedSampler, UnpaddedDistributedSampler
from .synthetic import get_generator
from .transforms import MultiScaleCrop, eval_crop, normalize

log = logging.getLogger(__name__)


def default_num_workers() -> int:
    cpus = usable_cpus()
    return max(0, min(8, cpus - 1))


class ClipDataModule(L.LightningDataModule):
    """What the pipeline needs of a datamodule, for a dataset of video clips named by per-split list files.

    A subclass sets ``layout_help`` and implements ``__init__`` (saving its hyperparameters, then calling
    ``init_clips``), ``label_space``, ``list_file``, ``read_records`` and ``make_dataset``; the lifecycle
    (generation, layout and batch-limit checks before any decoding), the loaders (DDP samplers without
    padding duplicates) and the clip accounting the run reports are shared. Hyperparameters read here:
    ``generate``, ``generate_kwargs``, ``batch_size``, ``eval_batch_size``, ``on_decode_error``,
    ``pin_memory``, ``persistent_workers``, ``prefetch_factor``, ``test_has_labels``, (by the pipeline)
    ``num_segments``, ``max_skipped_fraction``, and, when the subclass has them, the recipes' ``sampler``,
    ``balance_power`` and ``train_splits`` (docs/recipes.md; absent: one random pass over the train split).

    ``predict_split`` is the split ``trainer.predict`` runs on (the jobs set it; default test).
    """

    layout_help: str = ""
    # batch keys holding uint8 clips, normalised on the device
    video_keys: tuple[str, ...] = ("video",)

    def init_clips(self, root: str | None, num_workers: int | None, generate: str | None) -> None:
        self.root = Path(root).expanduser() if root else None
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.datasets: dict[str, Any] = {}
        self._label_space: LabelSpace | None = None
        self.predict_split = "test"
        # splits whose batch limits setup() checks besides its stage's own (the jobs name all they will run)
        self.limit_check_splits: tuple[str, ...] = ()
        if generate is not None:
            get_generator(generate)  # an unknown name fails here, before any work

    # --- what a dataset defines ------------------------------------------------------
    @property
    def label_space(self) -> LabelSpace:
        raise NotImplementedError

    def list_file(self, split: str) -> Path:
        """The list file of ``split``."""
        raise NotImplementedError

    def read_records(self, split: str) -> list:
        """The records of ``split``'s list (each with ``name`` and ``line``), checked."""
        raise NotImplementedError

    def make_dataset(self, split: str):
        raise NotImplementedError

    @property
    def train_splits(self) -> list[str]:
        """The splits whose lists make the training set (``data.train_splits``; default: train alone)."""
        return list(self.hparams.get("train_splits") or ["train"])

    def train_records(self) -> list:
        """The records of every split of ``train_splits``, in that order."""
        return [r for s in self.train_splits for r in self.read_records(s)]

    def train_labels(self) -> list[int]:
        """The class of each training clip whose frequency orders the prior prediction of a skipped clip."""
        if "train" in self.datasets:
            return self.datasets["train"].labels()
        return [r.label for r in self.train_records()]

    def labelled(self, split: str) -> bool:
        """Whether ``split``'s list carries real labels (the official test list's are dummies)."""
        return split != "test" or bool(self.hparams.test_has_labels)

    def clip_list(self, split: str) -> list[tuple[str, int]]:
        """(video name, list line) of every clip listed for ``split``, in list order."""
        if split in self.datasets:
            records = self.datasets[split].records
        else:
            records = self.train_records() if split == "train" else self.read_records(split)
        return [(r.name, r.line) for r in records]

    # --- lifecycle -------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.hparams.generate:
            if self.root is None:
                raise ValueError(f"data.root is not set: where should data.generate={self.hparams.generate!r} write?")
            get_generator(self.hparams.generate)(self.root, **(self.hparams.generate_kwargs or {}))

    def check_layout(self, splits: Sequence[str]) -> None:
        """Fail fast, naming the path, if ``root`` or a list file is absent."""
        if self.root is None:
            raise ValueError(f"data.root is not set: point it at the dataset root.\n{self.layout_help}")
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.root does not exist: {self.root}\n{self.layout_help}")
        wanted = [s for split in splits for s in (self.train_splits if split == "train" else [split])]
        for split in dict.fromkeys(wanted):
            if not self.list_file(split).exists():
                raise FileNotFoundError(f"list file not found: {self.list_file(split)}\n{self.layout_help}")
        if "test" in splits and self.hparams.get("test_has_labels"):
            self.check_test_labels()

    def check_test_labels(self) -> None:
        """Called by ``check_layout`` when the test split is to be scored (MA-52 refuses dummy labels)."""

    def decode_mode(self, split: str) -> str:
        """What an undecodable clip of ``split`` does: "skip" or "raise" (``on_decode_error`` resolved)."""
        mode = self.hparams.on_decode_error
        if mode == "auto":
            return "skip" if split == "train" else "raise"
        return mode

    def listed_clips(self, split: str) -> int:
        """The number of clips the list file of ``split`` names."""
        if split in self.datasets:
            return len(self.datasets[split])
        return len(self.train_records() if split == "train" else self.read_records(split))

    def batch_size_of(self, split: str) -> int:
        return self.hparams.batch_size if split == "train" else self._eval_batch()

    def check_batch_limits(self, trainer: Any, splits: Sequence[str], world: int = 1, prefix: str = "trainer.") -> None:
        """Refuse a fractional ``trainer.limit_<split>_batches`` that leaves a split of this data without a
        batch (e.g. ``debug=limit`` on a small dataset); ``trainer`` is a config or a Trainer."""
        splits = [s for s in splits if self.list_file(s).exists()]
        keys = ("fast_dev_run", "overfit_batches", "limit_train_batches", "limit_val_batches", "limit_test_batches")
        limits = {k: trainer.get(k) if hasattr(trainer, "get") else getattr(trainer, k, None) for k in keys}
        problems = batch_limit_problems(
            {k: v for k, v in limits.items() if v is not None},
            {s: self.listed_clips(s) for s in splits},
            {s: self.batch_size_of(s) for s in splits},
            world,
            {s: str(self.list_file(s)) for s in splits},
            prefix,
        )
        if problems:
            raise ConfigError(problems)

    def class_prior_order(self) -> tuple[list[int], str]:
        """Classes from most to least frequent in the training list (``train_labels``; ties: lower id first),
        and where that order came from. Without a training list: the class ids in order, said so."""
        path = self.list_file("train") if self.root is not None else None
        num_classes = self.label_space.num_classes
        if "train" not in self.datasets and (path is None or not path.exists()):
            return list(range(num_classes)), f"class ids in order (no training list at {path})"
        labels = self.train_labels()
        counts = Counter(labels)
        order = sorted(range(num_classes), key=lambda c: (-counts.get(c, 0), c))
        return order, f"most frequent first in {path}, ties by class id"

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                  "predict": (self.predict_split,)}.get(stage, ("train", "val", "test"))
        self.check_layout(splits)
        self.label_space  # noqa: B018  (label_name.txt read, and checked, before any clip)
        for split in splits:
            if split not in self.datasets:
                self.datasets[split] = self.make_dataset(split)
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            # Generated data has its lists only now: the pipeline's early check could not count them.
            wanted = tuple(dict.fromkeys((*splits, *self.limit_check_splits)))
            self.check_batch_limits(trainer, wanted, getattr(trainer, "world_size", 1))

    # --- loaders ---------------------------------------------------------------------
    def _eval_sampler(self, split: str) -> UnpaddedDistributedSampler | None:
        """Under DDP, val/test clips split over ranks without the padding duplicates of Lightning's
        default sampler, so every clip is scored exactly once; None (Lightning's choice) otherwise."""
        trainer = getattr(self, "trainer", None)
        kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
        if split == "train" or not kwargs or kwargs.get("num_replicas", 1) <= 1:
            return None
        return UnpaddedDistributedSampler(self.datasets[split], kwargs["num_replicas"], kwargs["rank"])

    def _loader(self, split: str, shuffle: bool, batch_size: int, drop_last: bool = False,
                sampler: Any = None) -> DataLoader:
        workers = self.num_workers
        sampler = sampler if sampler is not None else self._eval_sampler(split)
        pin = torch.cuda.is_available() if self.hparams.pin_memory is None else self.hparams.pin_memory
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=workers,
            pin_memory=pin,
            drop_last=drop_last,
            collate_fn=collate_skipping,
            persistent_workers=self.hparams.persistent_workers and workers > 0,
            prefetch_factor=self.hparams.prefetch_factor if workers > 0 else None,
        )

    def _train_sampler(self) -> ClassBalancedSampler | None:
        """``data.sampler=class_balanced``: the class-balanced sampler, sharing one seeded draw per epoch over the
        DDP processes (the trainer's ``distributed_sampler_kwargs``); None (a shuffled pass, which Lightning
        splits over the processes itself) otherwise."""
        if self.hparams.get("sampler", "random") != "class_balanced":
            return None
        trainer = getattr(self, "trainer", None)
        kwargs = (getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None) or {}
        # the run's seed (seed_everything exports it): the same on every process, so every process draws alike
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return ClassBalancedSampler(self.datasets["train"].labels(), float(self.hparams.get("balance_power", 0.5)),
                                    num_replicas=kwargs.get("num_replicas", 1), rank=kwargs.get("rank", 0), seed=seed)

    def train_dataloader(self) -> DataLoader:
        sampler = self._train_sampler()
        return self._loader("train", shuffle=sampler is None, batch_size=self.hparams.batch_size, sampler=sampler)

    def _eval_batch(self) -> int:
        return self.hparams.eval_batch_size or self.hparams.batch_size

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False, batch_size=self._eval_batch())

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False, batch_size=self._eval_batch())

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_split, shuffle=False, batch_size=self._eval_batch())

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        # Batches travel as uint8 (4x less to copy); normalise on the device.
        for key in self.video_keys:
            if key in batch:
                batch[key] = normalize(batch[key])
        return batch

class MA52DataModule(ClipDataModule):
    """MA-52 train/val/test loaders.

    ``root`` holds the official layout. With ``generate`` set (e.g. ``"quickstart"``)
    a synthetic dataset in that layout is written to ``root`` first if none is there.
    The test split's labels are dummies in the official release: with
    ``test_has_labels=False`` the test stage predicts without scoring, and
    ``test_has_labels=True`` on a test list whose labels are all the same is refused.

    Undecodable clips (``on_decode_error``): ``"auto"`` skips them in training and stops
    val/test at the first one (naming its list file and line); ``"skip"`` skips them in
    every split; ``"raise"`` stops every split. A skipped clip is counted and named; more
    than ``max_skipped_fraction`` of the clips a split ran skipped stops the run.
    All settings are checked here (``utils.checks``), before anything is decoded.

    ``label_space`` is MA-52's, with the names of ``<root>/label_name.txt`` when the data has
    one. The number of classes follows from it: ``num_classes`` is accepted only as a checked,
    read-only alias (the settings stored by checkpoints of earlier versions carry it).
    ``predict_split`` is the split ``trainer.predict`` runs on (the jobs set it; default test).

    The recipes of docs/recipes.md, off by default (``microaction.data.recipes``): ``sampler`` ("random" or
    "class_balanced", with ``balance_power``), ``rare_aug`` (stronger augmentation of the rarest training
    classes), ``train_splits`` (the lists the training set concatenates), ``test_views`` (temporal clips x
    spatial crops per evaluation clip) and ``person_crop`` (a folder of per-split person boxes, the crops'
    centre).
    """

    def __init__(
        self,
        root: str,
        num_segments: int = 8,
        input_size: int | Sequence[int] = 224,
        short_side: int | None = 256,
        scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
        flip_p: float = 0.5,
        batch_size: int = 10,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int | None = 2,
        on_decode_error: str = "auto",
        max_skipped_fraction: float = 0.01,
        decode_threads: int = 1,
        manifest: str | bool | None = "auto",
        test_has_labels: bool = False,
        generate: str | None = None,
        generate_kwargs: dict | None = None,
        num_classes: int | None = None,
        sampler: str = "random",
        balance_power: float = 0.5,
        train_splits: Sequence[str] = ("train",),
        rare_aug: dict | bool | None = None,
        test_views: dict | None = None,
        person_crop: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["num_classes"])
        # num_classes: a read-only alias, checked against the label space
        check_data_settings({**self.hparams, "num_classes": num_classes})
        problems = recipe_problems(self.hparams)
        if problems:
            raise ConfigError(problems)
        self.init_clips(root, num_workers, generate)
        # per split, the clips without a person box (data.person_crop): cropped around the frame's centre
        self.no_person: dict[str, list[str]] = {}

    layout_help = LAYOUT_HELP

    def list_file(self, split: str) -> Path:
        return list_path(self.root, split)

    def read_records(self, split: str) -> list:
        return read_list(list_path(self.root, split), self.label_space.num_classes)

    # --- labels ----------------------------------------------------------------------
    @property
    def label_space(self) -> LabelSpace:
        """MA-52's label space, named by ``<root>/label_name.txt`` when it exists (read once, at the first
        access; a generated dataset writes MA-52's names)."""
        if self._label_space is None:
            names_file = self.root / "label_name.txt" if self.root is not None else None
            names = read_label_names(names_file) if names_file is not None and names_file.is_file() else None
            self._label_space = LabelSpace.ma52(names)
        return self._label_space

    def check_test_labels(self) -> None:
        """Refuse ``test_has_labels=True`` on a test list whose labels are all one class: the official
        release's dummy labels, which would be scored as if they were the truth."""
        path = list_path(self.root, "test")
        records = read_list(path, self.label_space.num_classes)
        labels = {r.label for r in records}
        count = len(records)
        if count > 1 and len(labels) == 1:
            raise AnnotationError(
                f"{path}: data.test_has_labels=true, but all {count} lines carry label {labels.pop()}: these are "
                "the official release's dummy labels, not ground truth. Use data.test_has_labels=false "
                "(the test stage then writes submission_test.csv for the benchmark server and scores nothing)."
            )

    # the dataset class make_dataset builds (a subclass reading another layout sets its own)
    dataset_class = MA52Dataset

    def check_layout(self, splits: Sequence[str]) -> None:
        """As ``ClipDataModule.check_layout``; with ``person_crop``, also each split's box file."""
        super().check_layout(splits)
        folder = self.hparams.get("person_crop")
        if folder:
            wanted = [s for split in splits for s in (self.train_splits if split == "train" else [split])]
            for split in dict.fromkeys(wanted):
                if not boxes_path(folder, split).is_file():
                    raise FileNotFoundError(
                        f"data.person_crop={folder}: no person boxes for split {split} ({boxes_path(folder, split)}); "
                        f"write them with `python scripts/detect_people.py {self.root} {folder}`")

    def make_dataset(self, split: str) -> MA52Dataset | ConcatClips:
        """The dataset of ``split``; for "train" the training set: the lists of ``train_splits`` (several:
        their concatenation), with the training transforms and the rare-class augmentation."""
        if split != "train":
            return self._split_dataset(split, train=False)
        parts = [self._split_dataset(s, train=True) for s in self.train_splits]
        dataset = parts[0] if len(parts) == 1 else ConcatClips(parts)
        if len(parts) > 1:
            log.info("training set: %s", ", ".join(f"{len(p)} clips of {p.split}" for p in parts))
        if "val" in self.train_splits:
            log.warning("data.train_splits=%s trains on the val split: the val metrics are optimistic (the model has "
                        "seen those clips) and no basis for choosing a checkpoint; the final evaluation uses the "
                        "weights at the end of training (docs/recipes.md, 'Train on train+val')", self.train_splits)
        rare = rare_of(self.hparams.get("rare_aug"))
        if rare is not None:
            aug = make_rare_aug(rare, dataset.labels(), self.label_space.classes, self.hparams.input_size,
                                self.hparams.flip_p)
            for part in parts:
                part.rare = aug
        return dataset

    def _split_dataset(self, split: str, train: bool) -> MA52Dataset:
        """One split's list as a dataset: training or evaluation transforms, views and person centres."""
        hp = self.hparams
        views = views_of(hp.get("test_views"))
        if train:
            transform = MultiScaleCrop(hp.input_size, scales=hp.scales, flip_p=hp.flip_p)
        else:
            transform = eval_crop(hp.input_size, views["crops"])
        dataset = self.dataset_class(
            self.root,
            split,
            num_segments=hp.num_segments,
            train=train,
            transform=transform,
            short_side=hp.short_side,
            on_decode_error=self.decode_mode("train" if train else split),
            decode_threads=hp.decode_threads,
            label_space=self.label_space,
            labelled=self.labelled(split),
            manifest=hp.manifest,
        )
        if not train:
            dataset.views = (int(views["clips"]), int(views["crops"]))
        if hp.get("person_crop"):
            dataset.centres, missing = person_centres(hp.person_crop, split, [r.name for r in dataset.records])
            self.no_person[split] = missing
            if missing:
                log.warning("split %s: %d of %d clips have no person box in %s; they are cropped around the frame's "
                            "centre: %s%s", split, len(missing), len(dataset), hp.person_crop,
                            ", ".join(missing[:10]), " ..." if len(missing) > 10 else "")
        return dataset

    @property
    def view_average(self) -> str:
        """How the task combines the views of an evaluation clip: "logits" (their mean) or "softmax"."""
        return str(views_of(self.hparams.get("test_views"))["average"])
