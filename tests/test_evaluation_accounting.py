"""Every listed val/test clip is accounted for: scored, skipped (by name, only when asked for, capped) or
partly decoded (by name); the submission has a row for every listed test clip. Real MP4s, a real
checkpoint, the real configs; counts checked against the list files and plain PyAV."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import FAST, compose_job, compose_train, run_cli, decodable_frames

from microaction.data.annotations import AnnotationError
from microaction.data.video import write_clip
from microaction.tasks.recognition import SkippedClipsError

# list lines (1-based) of the damaged clips; 3 and 40 lie in different halves, i.e. on different
# ranks of a 2-process evaluation (each rank evaluates a contiguous block of the list)
TEST_BROKEN = {5: "test0004.mp4", 40: "test0039.mp4"}
TEST_PARTIAL = {11: "test0010.mp4"}
VAL_BROKEN_LINE = 3
# relabelled training lines: a class prior that is not the class order (5 x 51, 4 x 40, 3 x 7, 2 x 30)
PRIOR = [51] * 5 + [40] * 4 + [7] * 3 + [30] * 2


def _list(root: Path, split: str) -> list[tuple[str, int]]:
    return [(line.split()[0], int(line.split()[1])) for line in (root / f"{split}_list_videos.txt").read_text().splitlines()]


def _write_partial_clip(path: Path, frames: int = 30, keep: int = 16) -> tuple[int, int]:
    """A clip whose packets after the first ``keep`` carry zeros: its index lists all packets but the
    decoder delivers fewer frames. Returns (packets, decodable frames)."""
    rng = np.random.default_rng(0)
    write_clip(path, rng.integers(0, 255, (frames, 64, 80, 3), dtype=np.uint8), crf=30)
    with av.open(str(path)) as c:
        spans = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    data = bytearray(path.read_bytes())
    for pos, size in spans[keep:]:
        data[pos : pos + size] = b"\x00" * size
    path.write_bytes(bytes(data))
    return len(spans), decodable_frames(path)


@pytest.fixture
def checkpoint(tiny_trained_run) -> Path:
    """conftest's tiny real training run (2 frames per clip): evaluation takes its data settings."""
    (best,) = (tiny_trained_run / "checkpoints").glob("best_epoch*.ckpt")
    return best


@pytest.fixture(scope="module")
def damaged(tiny_root, tmp_path_factory):
    """tiny_root with two undecodable test clips, one partly decodable test clip, one undecodable val
    clip and a training list whose class frequencies differ."""
    root = tmp_path_factory.mktemp("damaged") / "data"
    shutil.copytree(tiny_root, root)
    for line, name in TEST_BROKEN.items():
        assert _list(root, "test")[line - 1][0] == name
        (root / "videos_test" / name).write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all")
    (line, name), = TEST_PARTIAL.items()
    packets, real = _write_partial_clip(root / "videos_test" / name)
    val_name = _list(root, "val")[VAL_BROKEN_LINE - 1][0]
    (root / "videos_val" / val_name).write_bytes(b"junk")
    train_list = _list(root, "train")
    relabelled = [(n, PRIOR[i] if i < len(PRIOR) else lab) for i, (n, lab) in enumerate(train_list)]
    (root / "train_list_videos.txt").write_text("".join(f"{n} {lab}\n" for n, lab in relabelled))
    return {"root": root, "packets": packets, "real": real, "val_broken": val_name}


def _eval(checkpoint, root, out, *overrides):
    from microaction.pipeline import evaluate

    cfg = compose_job("eval", [f"ckpt_path={checkpoint}", f"data.root={root}", "trainer=cpu", "data.num_workers=0",
                               "extras.print_config=false", *overrides], out)
    return evaluate(cfg)


def _rows(path: Path) -> list[list[str]]:
    with path.open() as f:
        return list(csv.reader(f))


def test_partly_decodable_fixture_is_partial(damaged, checkpoint):
    # the clip's last sampled frame (evaluation samples segment centres: with the checkpoint's 2 segments, index
    # int(1.5 * packets / 2)) lies past what decodes
    import torch

    segments = torch.load(checkpoint, map_location="cpu", weights_only=True)["datamodule_hyper_parameters"]["num_segments"]
    assert segments == 2
    assert 0 < damaged["real"] <= int((segments - 0.5) * damaged["packets"] / segments)


def test_undecodable_test_clip_stops_eval_naming_file_and_line(checkpoint, damaged, tmp_path):
    from microaction.data.dataset import UndecodableClipError

    root = damaged["root"]
    with pytest.raises(UndecodableClipError) as exc:  # data.on_decode_error=auto: evaluation raises
        _eval(checkpoint, root, tmp_path, "split=test", "data.test_has_labels=false")
    first = min(TEST_BROKEN)
    assert f"{root / 'test_list_videos.txt'}:{first}: {root / 'videos_test' / TEST_BROKEN[first]}" in str(exc.value)
    assert "data.on_decode_error=skip" in str(exc.value)
    assert not (tmp_path / "submission_test.csv").exists()


def test_skipping_asked_gives_a_row_for_every_listed_test_clip(checkpoint, damaged, tmp_path, capsys):
    root = damaged["root"]
    _eval(checkpoint, root, tmp_path, "split=test", "data.test_has_labels=false", "data.on_decode_error=skip",
          "data.max_skipped_fraction=0.05")
    listed = _list(root, "test")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    clips = saved["clips"]["test"]
    assert (clips["listed"], clips["scored"], clips["skipped"], clips["partial"], clips["not_run"]) == (
        len(listed), len(listed) - len(TEST_BROKEN), len(TEST_BROKEN), 1, 0)
    assert [(c["video"], c["line"]) for c in clips["skipped_clips"]] == [(n, line) for line, n in TEST_BROKEN.items()]
    (pline, pname), = TEST_PARTIAL.items()
    assert [(c["video"], c["line"]) for c in clips["partial_clips"]] == [(pname, pline)]
    assert clips["partial_clips"][0]["detail"] == f"decoded {damaged['real']} of {damaged['packets']} frames; sampled within those"

    # the submission: every listed clip once; a skipped clip gets the training list's 5 most frequent classes
    header, *rows = _rows(tmp_path / "submission_test.csv")
    assert sorted(r[0] for r in rows) == sorted(n for n, _ in listed)
    counts = Counter(lab for _, lab in _list(root, "train"))
    prior = sorted(range(52), key=lambda c: (-counts[c], c))[:5]
    assert prior[:4] == [51, 40, 7, 30]
    by_name = {r[0]: r for r in rows}
    for name in TEST_BROKEN.values():
        assert [int(x) for x in by_name[name][1:6]] == prior
    assert str(prior) in clips["skipped_fill"]
    # predictions exist only for clips the model saw
    _, *pred_rows = _rows(tmp_path / "predictions_test.csv")
    assert sorted(r[0] for r in pred_rows) == sorted(n for n, _ in listed if n not in TEST_BROKEN.values())

    # the file naming them
    _, *report = _rows(tmp_path / "decode_report_test.csv")
    assert [r[:3] for r in report] == [[n, str(line), "skipped"] for line, n in TEST_BROKEN.items()] + [
        [pname, str(pline), "partial"]]
    assert saved["files"]["decode_report"] == str(tmp_path / "decode_report_test.csv")

    # the printed table and the names under it
    out = capsys.readouterr().out
    for label, value in (("clips listed", 52), ("clips scored", 50), ("clips skipped", 2), ("clips partly decoded", 1)):
        assert any(label in line and line.rstrip(" │|").split()[-1] == str(value) for line in out.splitlines()), label
    for line, name in TEST_BROKEN.items():
        assert f"test: skipped {name} (list line {line})" in out
    assert f"test: partly decoded {pname} (list line {pline})" in out


def test_skip_cap_exceeded_names_split_count_and_key(checkpoint, damaged, tmp_path):
    with pytest.raises(SkippedClipsError) as exc:
        _eval(checkpoint, damaged["root"], tmp_path, "split=test", "data.test_has_labels=false",
              "data.on_decode_error=skip")
    msg = str(exc.value)
    assert "split test: 2 of 52 clips were skipped" in msg
    assert "data.max_skipped_fraction=0.01" in msg
    assert all(name in msg for name in TEST_BROKEN.values())
    assert not (tmp_path / "submission_test.csv").exists()


def test_val_scores_count_only_the_clips_scored(checkpoint, damaged, tmp_path):
    root = damaged["root"]
    _eval(checkpoint, root, tmp_path, "split=val", "data.on_decode_error=skip", "data.max_skipped_fraction=0.05")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    clips = saved["clips"]["val"]
    listed = _list(root, "val")
    assert (clips["listed"], clips["scored"], clips["skipped"]) == (len(listed), len(listed) - 1, 1)
    assert clips["skipped_clips"][0]["video"] == damaged["val_broken"]
    assert clips["skipped_clips"][0]["line"] == VAL_BROKEN_LINE
    assert saved["val"]["num_clips"] == clips["scored"]
    _, *pred_rows = _rows(tmp_path / "predictions_val.csv")
    assert len(pred_rows) == clips["scored"]
    assert sum(int(r[-1]) for r in pred_rows) / len(pred_rows) == pytest.approx(saved["val"]["action_top1"], abs=1e-6)


def test_ddp_gathers_skipped_and_partial_names_from_every_rank(checkpoint, damaged, tmp_path):
    root = damaged["root"]
    run_cli("eval.py", [f"ckpt_path={checkpoint}", "split=test", "data.test_has_labels=false", f"data.root={root}",
                        "trainer=ddp_sim", "data.num_workers=0", "data.on_decode_error=skip",
                        "data.max_skipped_fraction=0.05", f"hydra.run.dir={tmp_path}", "extras.print_config=false"],
            tmp_path)
    clips = json.loads((tmp_path / "metrics.json").read_text())["clips"]["test"]
    # line 5 is in rank 0's block (lines 1-26), line 40 in rank 1's
    assert [c["video"] for c in clips["skipped_clips"]] == list(TEST_BROKEN.values())
    assert [c["video"] for c in clips["partial_clips"]] == list(TEST_PARTIAL.values())
    assert (clips["listed"], clips["scored"], clips["skipped"]) == (52, 50, 2)
    _, *rows = _rows(tmp_path / "submission_test.csv")
    assert sorted(r[0] for r in rows) == sorted(n for n, _ in _list(root, "test"))


def test_dummy_test_labels_refused_before_the_model(tiny_root, tmp_path, monkeypatch):
    import microaction.pipeline as pipeline
    from microaction.tasks.recognition import MicroActionRecognition

    monkeypatch.setattr(MicroActionRecognition, "__init__", lambda *a, **k: pytest.fail("model built"))
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    test_list = root / "test_list_videos.txt"
    test_list.write_text("".join(f"{n} 0\n" for n, _ in _list(root, "test")))  # the release's dummy labels
    cfg = compose_train([*FAST, f"data.root={root}", "data.test_has_labels=true"], tmp_path / "run")
    with pytest.raises(AnnotationError) as exc:
        pipeline.train(cfg)
    assert str(test_list) in str(exc.value) and "data.test_has_labels=false" in str(exc.value)
