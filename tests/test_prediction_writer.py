"""callbacks.PredictionWriter on a task of its own kind: any per-clip rows (a "name" each), written by the
task's writer or as plain columns, with skipped clips accounted for, through a real `trainer.predict`."""

from __future__ import annotations

import csv
import json

import lightning as L
import torch
from torch.utils.data import DataLoader

from microaction.callbacks import PredictionWriter

NAMES = [f"clip{i}.mp4" for i in range(7)]
SKIPPED = {"clip2.mp4": "no video stream"}


class Clips(L.LightningDataModule):
    """Seven listed clips, one of which does not decode, in batches of three."""

    predict_split = "demo"

    def clip_list(self, split):
        assert split == "demo"
        return [(n, i + 1) for i, n in enumerate(NAMES)]

    def predict_dataloader(self):
        def collate(items):
            good = [i for i in items if NAMES[i] not in SKIPPED]
            return {"x": torch.tensor([float(i) for i in good]), "name": [NAMES[i] for i in good],
                    "skipped": [NAMES[i] for i in items if NAMES[i] in SKIPPED]}

        return DataLoader(list(range(len(NAMES))), batch_size=3, collate_fn=collate)


class Regression(L.LightningModule):
    """Rows that are nothing like recognition's: a value and a list per clip."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(2.0))

    def predict_step(self, batch, batch_idx):
        rows = [{"name": n, "status": "skipped", "detail": SKIPPED[n]} for n in batch["skipped"]]
        y = batch["x"] * self.w
        rows += [{"name": n, "y": float(v), "pair": [int(v), -int(v)]} for n, v in zip(batch["name"], y)]
        return rows


def _predict(tmp_path, limit=1.0):
    writer = PredictionWriter(tmp_path, submission_splits=("demo",))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[writer], limit_predict_batches=limit)
    trainer.predict(Regression(), datamodule=Clips(), return_predictions=False)
    return writer.result


def test_any_rows_are_written_with_their_accounting(tmp_path):
    result = _predict(tmp_path)
    with (tmp_path / "predictions_demo.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["name", "y", "pair"]
    kept = [i for i, n in enumerate(NAMES) if n not in SKIPPED]
    assert rows[1:] == [[NAMES[i], str(2.0 * i), f"{2 * i} {-2 * i}"] for i in kept]
    clips = result["clips"]
    assert (clips["listed"], clips["scored"], clips["skipped"], clips["not_run"]) == (7, 6, 1, 0)
    assert clips["skipped_clips"] == [{"video": "clip2.mp4", "line": 3, "reason": "no video stream"}]
    with (tmp_path / "decode_report_demo.csv").open() as f:
        assert list(csv.reader(f))[1:] == [["clip2.mp4", "3", "skipped", "no video stream"]]
    # a task without write_submission gets none, even for a submission split
    assert set(result["files"]) == {"predictions", "decode_report"}
    assert not list(tmp_path.glob("submission_*"))
    json.dumps(result)  # plain data, for metrics.json


def test_a_limited_run_counts_the_clips_not_run(tmp_path):
    clips = _predict(tmp_path, limit=1)["clips"]
    assert (clips["listed"], clips["scored"], clips["skipped"], clips["not_run"]) == (7, 2, 1, 4)
