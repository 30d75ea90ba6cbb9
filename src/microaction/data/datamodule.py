"""LightningDataModule for data in the official MA-52 layout."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..classes import NUM_FINE
from .annotations import LAYOUT_HELP, list_path, read_label_names
from .dataset import MA52Dataset, collate_skipping
from .samplers import UnpaddedDistributedSampler
from .generators import get_generator
from .transforms import CenterCrop, MultiScaleCrop, normalize

log = logging.getLogger(__name__)


def default_num_workers() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cpus - 1))


class MA52DataModule(L.LightningDataModule):
    """MA-52 train/val/test loaders.

    ``root`` holds the official layout. With ``generate`` set (e.g. ``"quickstart"``)
    a synthetic dataset in that layout is written to ``root`` first if none is there.
    The test split's labels are dummies in the official release: with
    ``test_has_labels=False`` the test stage predicts without scoring.
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
        on_decode_error: str = "skip",
        decode_threads: int = 1,
        manifest: str | bool | None = "auto",
        test_has_labels: bool = False,
        num_classes: int = NUM_FINE,
        generate: str | None = None,
        generate_kwargs: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root).expanduser() if root else None
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.datasets: dict[str, MA52Dataset] = {}
        self.label_names: list[str] | None = None
        if generate is not None:
            get_generator(generate)  # an unknown name fails here, before any work

    # --- lifecycle -------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.hparams.generate:
            if self.root is None:
                raise ValueError(f"data.root is not set: where should data.generate={self.hparams.generate!r} write?")
            get_generator(self.hparams.generate)(self.root, **(self.hparams.generate_kwargs or {}))

    def check_layout(self, splits: Sequence[str]) -> None:
        """Fail fast, naming the path, if ``root`` or a list file is absent."""
        if self.root is None:
            raise ValueError(f"data.root is not set: point it at the dataset root.\n{LAYOUT_HELP}")
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.root does not exist: {self.root}\n{LAYOUT_HELP}")
        for split in splits:
            if not list_path(self.root, split).is_file():
                raise FileNotFoundError(f"list file not found: {list_path(self.root, split)}\n{LAYOUT_HELP}")

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}.get(
            stage, ("train", "val", "test")
        )
        self.check_layout(splits)
        names_file = self.root / "label_name.txt"
        if names_file.is_file():
            self.label_names = read_label_names(names_file, self.hparams.num_classes)
        for split in splits:
            if split not in self.datasets:
                self.datasets[split] = self.make_dataset(split)

    def make_dataset(self, split: str) -> MA52Dataset:
        hp = self.hparams
        train = split == "train"
        transform = (
            MultiScaleCrop(hp.input_size, scales=hp.scales, flip_p=hp.flip_p) if train else CenterCrop(hp.input_size)
        )
        return MA52Dataset(
            self.root,
            split,
            num_segments=hp.num_segments,
            train=train,
            transform=transform,
            short_side=hp.short_side,
            on_decode_error=hp.on_decode_error,
            decode_threads=hp.decode_threads,
            num_classes=hp.num_classes,
            manifest=hp.manifest,
        )

    # --- loaders ---------------------------------------------------------------------
    def _eval_sampler(self, split: str) -> UnpaddedDistributedSampler | None:
        """Under DDP, val/test clips split over ranks without the padding duplicates of Lightning's
        default sampler, so every clip is scored exactly once; None (Lightning's choice) otherwise."""
        trainer = getattr(self, "trainer", None)
        kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
        if split == "train" or not kwargs or kwargs.get("num_replicas", 1) <= 1:
            return None
        return UnpaddedDistributedSampler(self.datasets[split], kwargs["num_replicas"], kwargs["rank"])

    def _loader(self, split: str, shuffle: bool, batch_size: int, drop_last: bool = False) -> DataLoader:
        workers = self.num_workers
        sampler = self._eval_sampler(split)
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

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, batch_size=self.hparams.batch_size)

    def _eval_batch(self) -> int:
        return self.hparams.eval_batch_size or self.hparams.batch_size

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False, batch_size=self._eval_batch())

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False, batch_size=self._eval_batch())

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        # Batches travel as uint8 (4x less to copy); normalise on the device.
        if "video" in batch:
            batch["video"] = normalize(batch["video"])
        return batch
