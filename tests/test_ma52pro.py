"""MA-52-Pro end to end: the list format and its refusals, the datamodule's samples (body clip, face clip,
emotion, multi-hot actions), the emotion task's branches and ablation, an MA-52 checkpoint as a branch's
start, and the documented commands run as typed with the figures they write checked against sklearn."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, decodable_frames, run_as_typed
from omegaconf import OmegaConf
from sklearn.metrics import accuracy_score, f1_score, recall_score

from microaction.data.annotations import AnnotationError, read_pro_list
from microaction.data.faces import FaceTrackMissingError, crop_faces, read_track, track_path
from microaction.data.sampling import segment_indices
from microaction.data.video import read_frames
from microaction.data.ma52pro import MA52ProDataModule
from microaction.labels import LabelSpace
from microaction.utils.checks import ConfigError

# the emotion task at test size: sizes only (the recipes' own folders and data)
PRO_TINY = [*TINY, "data.face_size=16", "task.dim=16", "task.encoder_heads=2", "data.num_workers=0"]


@pytest.fixture(scope="module")
def pro_root(tmp_path_factory):
    """A tiny MA-52-Pro stand-in (real MP4s, ground-truth face tracks), 8/4/4 clips of 2-3 s."""
    from microaction.data.synthetic.procedural_pro import write_procedural_pro

    return write_procedural_pro(tmp_path_factory.mktemp("pro") / "pro", num_train=8, num_val=4, num_test=4,
                                min_seconds=2, max_seconds=3, size=(48, 40), audio=False, workers=1, progress=False)


# --- the list format -------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    ("a.mp4 5 3", "emotion id 5 outside 0..4"),
    ("a.mp4 -1 3", "emotion id -1 outside 0..4"),
    ("a.mp4 2", "expected '<video file> <emotion id> <fine id>[,<fine id>...]'"),
    ("a.mp4 2 ,", "action list ',' has an empty entry"),
    ("a.mp4 2 3,,4", "has an empty entry"),
    ("a.mp4 2 52", "fine id 52 outside 0..51"),
    ("a.mp4 2 3,x", "fine id 'x' is not an integer"),
    ("a.mp4 2 3,3", "fine id(s) [3] listed twice"),
    ("../a.mp4 2 3", "has a '..' component"),
])
def test_a_bad_list_line_is_named_with_file_and_line(tmp_path, line, expected):
    path = tmp_path / "train_list_videos.txt"
    path.write_text(f"ok.mp4 0 1,2\n{line}\n")
    with pytest.raises(AnnotationError) as exc:
        read_pro_list(path, 5)
    assert f"{path}:2:" in str(exc.value) and expected in str(exc.value)


def test_a_good_list_reads_emotion_and_action_sets(tmp_path):
    path = tmp_path / "val_list_videos.txt"
    path.write_text("a.mp4 0 7\n\nsub/b.mp4 4 13,2,40")  # blank line, no final newline
    records = read_pro_list(path, 5)
    assert [(r.name, r.emotion, r.actions, r.line) for r in records] == [
        ("a.mp4", 0, (7,), 1), ("sub/b.mp4", 4, (13, 2, 40), 3)]


def test_a_missing_face_track_is_named_before_anything_is_decoded(pro_root, tmp_path):
    root = shutil.copytree(pro_root, tmp_path / "pro")
    first = (root / "val_list_videos.txt").read_text().split()[0]
    track_path(root, "val", first).unlink()
    dm = MA52ProDataModule(str(root), num_segments=2, input_size=32, short_side=32, num_workers=0)
    with pytest.raises(FaceTrackMissingError) as exc:
        dm.setup("validate")
    message = str(exc.value)
    assert f"{root / 'val_list_videos.txt'}:1:" in message and str(track_path(root, "val", first)) in message
    assert "scripts/detect_faces.py" in message


# --- samples -----------------------------------------------------------------------------------------------

def test_samples_carry_body_and_face_clips_emotion_and_the_listed_actions(pro_root):
    dm = MA52ProDataModule(str(pro_root), num_segments=3, input_size=32, short_side=32, face_size=16,
                           num_workers=0, batch_size=2)
    assert dm.label_space == LabelSpace.ma52pro()
    dm.setup("fit")
    records = read_pro_list(pro_root / "train_list_videos.txt", 5)
    ds = dm.datasets["train"]
    for i, rec in enumerate(records):
        s = ds[i]
        assert s["video"].shape == (3, 3, 32, 32) and s["video"].dtype == torch.uint8
        assert s["face"].shape == (3, 3, 16, 16) and s["face"].dtype == torch.uint8
        assert s["emotion"] == rec.emotion
        assert s["actions"].nonzero().flatten().tolist() == sorted(rec.actions)
        assert s["face_found"] is True
    batch = next(iter(dm.train_dataloader()))
    batch = dm.on_after_batch_transfer(batch, 0)
    assert batch["video"].dtype == torch.float32 and batch["face"].dtype == torch.float32  # both normalised
    assert batch["actions"].shape == (2, 52)
    assert dm.no_face == {"train": [], "val": []}


def test_faces_cut_at_a_larger_short_side_and_the_body_scaled_down_to_its_own(pro_root):
    """face_short_side=40 with short_side=20: the frames are decoded at 40; the face clips equal a dataset's
    that decodes at 40, the body clip is those frames scaled (antialiased) to a short side of 20, then cropped."""
    from torchvision.transforms.v2.functional import center_crop, resize

    common = dict(num_segments=3, input_size=16, face_size=16, num_workers=0)
    both = MA52ProDataModule(str(pro_root), short_side=20, face_short_side=40, **common)
    faces40 = MA52ProDataModule(str(pro_root), short_side=40, **common)
    for dm in (both, faces40):
        dm.setup("validate")
    ds, ref = both.datasets["val"], faces40.datasets["val"]
    for i, rec in enumerate(ds.records):
        s, r = ds[i], ref[i]
        assert torch.equal(s["face"], r["face"])
        # the body clip, by hand: the evaluation loader's frames at 40 (40 x 48), scaled to 20 x 24, centre crop
        frames = read_frames(pro_root / "videos_val" / rec.name, lambda n: segment_indices(n, 3, False),
                             short_side=40)
        body = torch.from_numpy(frames).permute(0, 3, 1, 2)
        assert body.shape[-2:] == (48, 40)
        expected = center_crop(resize(body, [24, 20], antialias=True), [16, 16])
        assert s["video"].shape == (3, 3, 16, 16) and torch.equal(s["video"], expected)
    with pytest.raises(ConfigError, match=r"data.face_short_side=4: expected an integer >= 8"):
        MA52ProDataModule(str(pro_root), face_short_side=4, **common)


def test_a_video_without_a_face_falls_back_to_the_whole_frame_counted(pro_root, tmp_path):
    root = shutil.copytree(pro_root, tmp_path / "pro")
    first = (root / "val_list_videos.txt").read_text().split()[0]
    path = track_path(root, "val", first)
    path.write_text(path.read_text().splitlines()[0] + "\n")  # the header alone: no face found
    dm = MA52ProDataModule(str(root), num_segments=2, input_size=32, short_side=32, face_size=16, num_workers=0,
                           align_faces=False)
    dm.setup("validate")
    assert dm.no_face["val"] == [first]
    sample = dm.datasets["val"][0]
    assert sample["face_found"] is False and dm.datasets["val"][1]["face_found"] is True
    # the face clip is each whole decoded frame resized, not a crop around the (drawn) head
    frames = read_frames(root / "videos_val" / first, lambda n: segment_indices(n, 2, False, None), short_side=32)
    indices = segment_indices(decodable_frames(root / "videos_val" / first), 2, False, None)
    whole = crop_faces(frames, read_track(path), indices, 16, align=False)
    np.testing.assert_array_equal(sample["face"].permute(0, 2, 3, 1).numpy(), whole)
    head = crop_faces(frames, read_track(pro_root / "faces_val" / path.name), indices, 16, align=False)
    assert np.abs(whole.astype(int) - head.astype(int)).mean() > 5


# --- the task --------------------------------------------------------------------------------------------

def _task(branches="full", drop=(), **model):
    from microaction.tasks import EmotionRecognition

    return EmotionRecognition(model={"name": "manet", "depth": 10, "num_segments": 2, **model},
                              loss={"beta": 0.5, "drop_body_parts": list(drop)}, branches=branches, dim=16,
                              encoder_heads=2, label_space=LabelSpace.ma52pro().to_dict())


def _batch(n=3, t=2):
    g = torch.Generator().manual_seed(0)
    actions = (torch.rand(n, 52, generator=g) < 0.1).float()
    return {"video": torch.randn(n, t, 3, 32, 32, generator=g), "face": torch.randn(n, t, 3, 16, 16, generator=g),
            "emotion": torch.tensor([0, 3, 4][:n]), "actions": actions}


def test_the_loss_is_bce_on_actions_plus_beta_times_ce_on_emotion():
    task = _task()
    batch = _batch()
    out = task(batch["video"], batch["face"])
    assert out["emotion"].shape == (3, 5) and out["actions"].shape == (3, 52)
    losses = task.losses(out, batch)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out["actions"], batch["actions"])
    ce = torch.nn.functional.cross_entropy(out["emotion"], batch["emotion"])
    torch.testing.assert_close(losses["loss"], bce + 0.5 * ce)


def test_each_branch_alone_and_the_ablation_without_lower_limb_labels():
    batch = _batch()
    face = _task("face")
    assert face.action is None and "actions" not in face(batch["video"], batch["face"])
    assert face.emotion_head.in_features == 16
    action = _task("action")
    assert action.face is None and action.emotion_head.in_features == 16
    # the face clip does not reach the action-only model: any face gives the same output
    torch.testing.assert_close(action.eval()(batch["video"], batch["face"])["emotion"],
                               action(batch["video"], torch.zeros_like(batch["face"]))["emotion"])
    assert _task().emotion_head.in_features == 32
    space = LabelSpace.ma52pro()
    wo = _task(drop=("lower limb", "leg-hand"))
    kept = [c for c in range(52) if space.coarse_classes[space.fine_to_coarse[c]] not in ("lower limb", "leg-hand")]
    assert wo.kept_actions.tolist() == kept and wo.action_head.out_features == len(kept) == 40
    out = wo(batch["video"], batch["face"])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out["actions"], batch["actions"][:, kept])
    torch.testing.assert_close(wo.losses(out, batch)["loss_actions"], bce)
    with pytest.raises(ValueError, match=r"loss.drop_body_parts: \['legs'\] are not body parts"):
        _task(drop=("legs",))
    with pytest.raises(ValueError, match="task.branches='both'"):
        _task("both")
    with pytest.raises(ValueError, match="model.head=hierarchical: the emotion task takes the branches' features"):
        _task(head="hierarchical")


def test_a_branch_starts_from_an_ma52_checkpoint(tmp_path):
    from microaction.tasks import MicroActionRecognition

    ma52 = MicroActionRecognition(model={"name": "manet", "depth": 10, "num_segments": 2},
                                  label_space=LabelSpace.ma52().to_dict())
    path = tmp_path / "ma52.ckpt"
    torch.save({"state_dict": ma52.state_dict(), "hyper_parameters": dict(ma52.hparams)}, path)
    task = _task(pretrained=str(path))
    assert task.initialised_from.endswith("ma52.ckpt")
    # every weight of the MA-52 network but its label-embedding head (the emotion task builds none)
    weights = {k: v for k, v in ma52.net.state_dict().items() if not k.startswith("head.embed")}
    for branch in (task.face.net, task.action.net):
        assert set(branch.state_dict()) == set(weights)
        for name, value in weights.items():
            torch.testing.assert_close(branch.state_dict()[name], value)


# --- the commands as a user types them ---------------------------------------------------------------------

def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_compare_emotion_trains_the_three_rows_and_their_figures_match_sklearn(checkout, pro_root, tiny_root):
    # the MA-52 stand-in MANet the rows start from: tiny, on the tiny MA-52 dataset
    proc = run_as_typed("python scripts/compare_emotion.py", checkout,
                        ["--init-args", *TINY, f"data.root={tiny_root}", "data.generate=null", "data.num_workers=0",
                         # procedural_manet validates every fourth epoch: a one-epoch run validates its only one
                         "trainer.check_val_every_n_epoch=1",
                         "--epochs", "1", "--jobs", "2", "--", *PRO_TINY, f"data.root={pro_root}", "data.generate=null",
                         "trainer.limit_val_batches=1.0", "trainer.limit_test_batches=1.0",
                         # the recipe validates every third epoch; a one-epoch run validates its only one
                         "trainer.check_val_every_n_epoch=1"], timeout=900)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(summary["results"]) == {"face", "action", "full"}
    # --jobs 2: the MANet alone with the machine's threads, then the three rows two at a time with half of them
    from microaction.utils.cpus import usable_cpus
    launched = [ln for ln in proc.stdout.splitlines() if ln.startswith("$ ")]
    assert len(launched) == 4 and "experiment=procedural_manet" in launched[0] and "OMP_NUM_THREADS" not in launched[0]
    assert all(ln.startswith(f"$ OMP_NUM_THREADS={max(1, usable_cpus() // 2)} ") for ln in launched[1:])
    assert "| Only face |" in proc.stdout and "| Full model |" in proc.stdout
    # the face branch has no action head: no mAP in its row
    assert "mAP" not in summary["results"]["face"] and "mAP" in summary["results"]["full"]
    runs = Path(summary["runs"])
    assert runs.is_relative_to(checkout / "logs" / "compare_emotion")
    # every row's branches start from the best checkpoint of the MANet trained first
    assert summary["init"] == json.loads((runs / "ma52_manet" / "metrics.json").read_text())["best_checkpoint"]
    assert Path(summary["init"]).is_file()
    for row in ("face", "action", "full"):
        assert summary["init"] in json.loads((runs / f"{row}_seed0" / "metrics.json").read_text())["init"]
    for row in ("face", "action", "full"):
        run = runs / f"{row}_seed0"
        metrics = json.loads((run / "metrics.json").read_text())
        test = metrics["test"]
        assert summary["results"][row]["Acc"]["values"] == [test["emotion_acc"]]
        rows = _rows(run / "predictions_test.csv")
        assert len(rows) == 4 == test["num_clips"]
        truth = [int(r["emotion"]) for r in rows]
        pred = [int(r["pred_emotion"]) for r in rows]
        assert test["emotion_acc"] == pytest.approx(accuracy_score(truth, pred), abs=1e-6)
        assert test["emotion_f1_weighted"] == pytest.approx(f1_score(truth, pred, average="weighted"), abs=1e-6)
        assert test["emotion_uf1"] == pytest.approx(f1_score(truth, pred, average="macro"), abs=1e-6)
        assert test["emotion_uar"] == pytest.approx(recall_score(truth, pred, average="macro", zero_division=0),
                                                    abs=1e-6)
        listed = {line.split()[0]: sorted(map(int, line.split()[2].split(",")))
                  for line in (pro_root / "test_list_videos.txt").read_text().splitlines() if line.strip()}
        assert {r["video"]: sorted(map(int, r["actions"].split())) for r in rows} == listed
        assert (run / "confusion_emotion_test.png").is_file()
        if row != "face":
            ap = _rows(run / "per_class_ap_test.csv")
            present = [float(r["ap"]) for r in ap if r["ap"]]
            assert test["action_mAP"] == pytest.approx(np.mean(present), abs=1e-5)
            assert test["actions_absent"] == 52 - len(present)

    # eval.py rebuilds the emotion task and its data from the best checkpoint and scores the test split alike
    full = json.loads((runs / "full_seed0" / "metrics.json").read_text())
    ev = run_as_typed(f"python eval.py ckpt_path={full['best_checkpoint']} split=test", checkout, ["data.num_workers=0"])
    assert "MA-52-Pro metrics" in ev.stdout
    out = Path(next(line.split("predictions: ")[-1].strip() for line in (ev.stderr + ev.stdout).splitlines()
                    if "predictions: " in line)).parent
    again = json.loads((out / "metrics.json").read_text())["test"]
    assert {k: round(v, 6) for k, v in again.items()} == {k: round(v, 6) for k, v in full["test"].items()}


@pytest.mark.parametrize("experiment, branches, dropped", [
    ("ma52pro_full", "full", []), ("ma52pro_face", "face", []), ("ma52pro_action", "action", []),
    ("ma52pro_wo_lower", "full", ["lower limb", "leg-hand"])])
def test_each_paper_recipe_composes_and_builds_its_model(tmp_path, experiment, branches, dropped):
    from helpers import compose_train

    from microaction.pipeline import _build_task

    cfg = compose_train([f"experiment={experiment}", "data.root=/nowhere", "model.pretrained=false"], tmp_path)
    assert cfg.data.num_segments == 16 and cfg.data.batch_size == 3 and cfg.loss.beta == 0.03
    assert cfg.model.depth == 50 and cfg.trainer.max_epochs == 80
    task = _build_task(cfg, LabelSpace.ma52pro())
    assert task.hparams["branches"] == branches and task.hparams["loss"]["drop_body_parts"] == dropped
    assert task.num_segments == 16


def test_the_paper_recipe_sweeps_beta_as_typed(checkout, pro_root):
    runs = checkout / "logs" / "train" / "multiruns"
    before = set(runs.rglob("metrics.json")) if runs.exists() else set()
    # the recipe asks for ImageNet weights, which ResNet-10 has not: the smallest ResNet that has them
    # (this machine is offline, as MICROACTION_OFFLINE=1 declares: the runs start from random weights, said so)
    sizes = ["model.depth=18" if t == "model.depth=10" else t for t in PRO_TINY]
    run_as_typed("python train.py -m experiment=ma52pro_full loss.beta=0.01,0.03,0.1,1", checkout,
                 [*sizes, f"data.root={pro_root}"], timeout=900)
    written = sorted(set(runs.rglob("metrics.json")) - before)
    assert len(written) == 4
    betas = sorted(OmegaConf.load(p.parent / "config_resolved.yaml").loss.beta for p in written)
    assert betas == [0.01, 0.03, 0.1, 1.0]
    for p in written:
        saved = json.loads(p.read_text())
        assert 0.0 <= saved["val"]["emotion_acc"] <= 1.0 and saved["init"] == "random"
