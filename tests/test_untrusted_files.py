"""Files from elsewhere run no code: checkpoints, weight files and label matrices are read with
weights_only=True, and eval.py builds only registered classes, whatever a checkpoint's stored
hyperparameters name. Every hostile file here would create a marker file if it were obeyed.

eval.py refusing a hostile checkpoint runs as a command; the other refusals call train.py's and eval.py's
job (``pipeline.train`` / ``pipeline.evaluate``) in this process on the real configs, as Hydra composes them."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import BASE_TINY, compose_job, compose_train, run_cli

from microaction.utils.untrusted import UnsafeFileError

BASE = BASE_TINY


class Payload:
    """Unpickled, it opens ``path`` for writing (creating it): stands for any code a pickle can run."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def hostile_torch_file(path: Path, marker: Path, legacy: bool = False) -> Path:
    """A file shaped like a checkpoint whose unpickling would create ``marker``."""
    obj = {"state_dict": {}, "hyper_parameters": {"model": Payload(marker)}, "epoch": 0}
    if legacy:  # a bare pickle, as old torch.save files and many hand-made weight files are
        with path.open("wb") as fh:
            pickle.dump(obj, fh, protocol=2)
    else:
        torch.save(obj, path)
    return path


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No download and no shared cache, in this process and in the runs it starts."""
    monkeypatch.setenv("MICROACTION_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.fixture
def trained(tiny_trained_run):
    """One tiny real training run (AdamW, step schedule, the default callbacks incl. the RNG state): conftest's."""
    return tiny_trained_run


def _refused(proc, *texts: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    for text in texts:
        assert text in out, f"{text!r} not in:\n{out[-3000:]}"
    return out


def _train(tiny_root, run_dir: Path, *overrides: str) -> dict:
    """train.py's job on its real config (``BASE`` on the tiny data), in this process."""
    from microaction.pipeline import train

    return train(compose_train([*BASE, f"data.root={tiny_root}", *overrides], run_dir))


def _evaluate(ckpt: Path, out: Path, *overrides: str) -> dict:
    """eval.py's job on its real config, in this process."""
    from microaction.pipeline import evaluate

    return evaluate(compose_job("eval", [f"ckpt_path={ckpt}", "extras.print_config=false", *overrides], out))


def _raises(error: type[Exception], call, *texts: str) -> str:
    """``call()`` raises ``error`` whose message holds every one of ``texts``; returns the message."""
    with pytest.raises(error) as info:
        call()
    msg = str(info.value)
    for text in texts:
        assert text in msg, f"{text!r} not in:\n{msg[-3000:]}"
    return msg


def test_the_payload_runs_code_when_loaded_unsafely(tmp_path):
    """The hostile files are live: loaded without weights_only they do create the marker."""
    for legacy in (False, True):
        marker = tmp_path / f"ran_{legacy}"
        path = hostile_torch_file(tmp_path / f"x_{legacy}.pt", marker, legacy=legacy)
        try:
            torch.load(path, map_location="cpu", weights_only=False)
        except RuntimeError:  # a bare pickle is no valid torch file, but the code ran while reading it
            assert legacy
        assert marker.exists()


def test_train_checkpoints_load_with_weights_only(trained):
    """Everything train.py writes into a checkpoint is tensors and plain values."""
    ckpts = sorted((trained / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in ckpts} >= {"last.ckpt"} and len(ckpts) >= 2
    for path in ckpts:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert "RNGStateCheckpoint" in ckpt["callbacks"], path
        assert ckpt["optimizer_states"] and ckpt["lr_schedulers"], path
        assert ckpt["hyper_parameters"]["model"]["name"] == "manet"
        assert ckpt["datamodule_hyper_parameters"]["num_segments"] == 2


def test_resume_from_own_checkpoint_with_weights_only(trained, tiny_root, tmp_path):
    from microaction.pipeline import SAFE_LOAD

    assert SAFE_LOAD == {"weights_only": True}  # Lightning >= 2.6 is told, not left to its default
    run_dir = tmp_path / "resumed"
    _train(tiny_root, run_dir, f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}", "test=false",
           "trainer.max_epochs=2")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, 2)  # one more epoch of one batch after the resumed one


# --- malicious pickles: eval, resume, pretrained weights, label embeddings -----------------------------------


def test_eval_refuses_a_malicious_checkpoint(tmp_path):
    """As typed: `python eval.py ckpt_path=...` stops with the refusal and runs nothing of the file."""
    marker = tmp_path / "ran"
    evil = hostile_torch_file(tmp_path / "evil.ckpt", marker)
    proc = run_cli("eval.py", [f"ckpt_path={evil}", f"hydra.run.dir={tmp_path / 'ev'}", "extras.print_config=false"],
                   tmp_path, check=False)
    _refused(proc, f"ckpt_path={evil}: refused", "io.open")
    assert not marker.exists()


def test_resume_refuses_a_malicious_checkpoint_before_training(tiny_root, tmp_path):
    marker = tmp_path / "ran"
    evil = hostile_torch_file(tmp_path / "evil.ckpt", marker)
    run_dir = tmp_path / "run"
    _raises(UnsafeFileError, lambda: _train(tiny_root, run_dir, f"ckpt_path={evil}"), f"ckpt_path={evil}: refused")
    assert not marker.exists()
    assert not (run_dir / "checkpoints").exists()  # named before the model, data or trainer were built


def test_pretrained_refuses_a_malicious_weight_file(tiny_root, tmp_path):
    marker = tmp_path / "ran"
    evil = hostile_torch_file(tmp_path / "weights.pth", marker, legacy=True)
    run_dir = tmp_path / "run"
    _raises(UnsafeFileError, lambda: _train(tiny_root, run_dir, f"model.pretrained={evil}"),
            f"model.pretrained={evil}: refused")
    assert not marker.exists()
    assert not (run_dir / "checkpoints").exists()


def test_embeddings_refuse_a_malicious_pt_file(tiny_root, tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "emb.pt"
    torch.save({"matrix": Payload(marker)}, evil)
    run_dir = tmp_path / "run"
    _raises(UnsafeFileError, lambda: _train(tiny_root, run_dir, f"loss.embeddings={evil}"),
            f"loss.embeddings={evil}: refused")
    assert not marker.exists()
    assert not (run_dir / "checkpoints").exists()


def test_embeddings_refuse_an_object_npy(tmp_path):
    from microaction.embeddings import load_label_embeddings

    marker = tmp_path / "ran"
    evil = tmp_path / "emb.npy"
    np.save(evil, np.array([Payload(marker)] * 52, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"loss.embeddings=.*emb.npy: refused"):
        load_label_embeddings(evil)
    assert not marker.exists()


def test_corrupt_checkpoint_is_named(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a torch file" * 10)
    _raises(ValueError, lambda: _evaluate(bad, tmp_path / "ev"), f"ckpt_path={bad}: not loaded")


@pytest.mark.parametrize("kind", ["bare_pickle", "empty", "truncated", "unsafe_in_list", "text", "yaml"])
def test_load_torch_file_refuses_or_names_every_bad_file(tmp_path, kind):
    from microaction.utils.untrusted import UnsafeFileError, load_torch_file

    marker = tmp_path / "ran"
    path = tmp_path / "f.pt"
    if kind == "bare_pickle":
        hostile_torch_file(path, marker, legacy=True)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        torch.save({"w": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "text":  # the unpickler reads "h" as an opcode with no memo entry (a KeyError inside torch)
        path.write_text("hello\n")
    elif kind == "yaml":
        path.write_text("model:\n  depth: 18\n")
    else:
        torch.save({"layers": [torch.zeros(2), Payload(marker)]}, path)
    error = UnsafeFileError if kind in ("bare_pickle", "unsafe_in_list") else ValueError
    for mmap in (False, True):
        with pytest.raises(error, match=f"ckpt_path={path}: (refused|not loaded)"):
            load_torch_file(path, "ckpt_path", mmap=mmap)
    assert not marker.exists()
    torch.save({"w": torch.ones(3), "meta": {"epoch": 1, "names": ["a"]}}, path)
    assert load_torch_file(path, "ckpt_path")["meta"]["epoch"] == 1


# --- a real checkpoint whose stored hyperparameters name something to build -----------------------------------


def _open_marker(marker: Path) -> dict:
    # what Hydra's instantiate would turn into open(file=marker, mode="w")
    return {"_target_": "builtins.open", "file": str(marker), "mode": "w"}


HOSTILE = {
    # the whole stored data section replaced: before the allow-list, eval.py instantiated this as is
    "data_top": ("datamodule_hyper_parameters._target_",
                 lambda ck, m: ck.__setitem__("datamodule_hyper_parameters", _open_marker(m))),
    "data_nested": ("datamodule_hyper_parameters.generate_kwargs._target_",
                    lambda ck, m: ck["datamodule_hyper_parameters"].__setitem__("generate_kwargs", _open_marker(m))),
    "data_in_list": ("datamodule_hyper_parameters.scales[1]._target_",
                     lambda ck, m: ck["datamodule_hyper_parameters"]["scales"].__setitem__(1, _open_marker(m))),
    "task_top": ("hyper_parameters._target_",
                 lambda ck, m: ck["hyper_parameters"].update(_target_="builtins.exec")),
    "task_nested": ("hyper_parameters.model._target_",
                    lambda ck, m: ck["hyper_parameters"]["model"].update(_open_marker(m))),
}


def _edited(trained: Path, case: str, marker: Path) -> tuple[str, dict]:
    key, edit = HOSTILE[case]
    ckpt = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    edit(ckpt, marker)
    return key, ckpt


@pytest.mark.parametrize("case", list(HOSTILE))
def test_stored_targets_are_refused_before_anything_is_built(trained, tmp_path, case):
    from microaction.pipeline import _checkpoint_classes

    marker = tmp_path / "ran"
    key, ckpt = _edited(trained, case, marker)
    with pytest.raises(ValueError, match=rf"^edited.ckpt: refused: {re.escape(key)} = "):
        _checkpoint_classes(ckpt, "edited.ckpt")
    assert not marker.exists()


# through eval.py's job: the two kinds Hydra's instantiate obeyed before the allow-list, and one in the task's
@pytest.mark.parametrize("case", ["data_top", "data_nested", "task_nested"])
def test_eval_refuses_a_stored_target(trained, tmp_path, case):
    marker = tmp_path / "ran"
    key, ckpt = _edited(trained, case, marker)
    path = tmp_path / "edited.ckpt"
    torch.save(ckpt, path)
    _raises(ValueError, lambda: _evaluate(path, tmp_path / "ev"), f"{path}: refused: {key}")
    assert not marker.exists()
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_eval_accepts_a_registered_datamodule_target(trained, tmp_path):
    """The allow-list is not a ban: the package's own datamodule named at the top level is built."""
    ckpt = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["datamodule_hyper_parameters"]["_target_"] = "microaction.data.datamodule.MA52DataModule"
    path = tmp_path / "named.ckpt"
    torch.save(ckpt, path)
    _evaluate(path, tmp_path / "ev", "trainer.limit_val_batches=1")
    assert (tmp_path / "ev" / "metrics.json").is_file()


def test_registry_matches_targets_as_text_without_importing():
    from microaction.data.datamodule import MA52DataModule
    from microaction.registry import DATAMODULES, TASKS
    from microaction.tasks import MicroActionRecognition

    assert DATAMODULES.by_target("microaction.data.datamodule.MA52DataModule") is MA52DataModule
    assert DATAMODULES.by_target("ma52") is MA52DataModule
    assert TASKS.get("recognition") is MicroActionRecognition
    for hostile in ("builtins.open", "os.system", "microaction.data.datamodule.os.system", None, 3):
        assert DATAMODULES.by_target(hostile) is None and TASKS.by_target(hostile) is None
    with pytest.raises(KeyError, match="registered: ma52"):
        DATAMODULES.get("nope")
