"""docs/extending.md, followed as a reader would: its files written into a fresh copy of the repository exactly
as printed, and its commands run from that copy's root (tiny sizes appended)."""

from __future__ import annotations

import json
import re

import pytest
from helpers import REPO, TINY, copy_checkout, run_as_typed

DOC = REPO / "docs" / "extending.md"
SMALL = ["data.generate_kwargs.per_class=[1,1,1]", *(t for t in TINY if not t.startswith("model."))]


def doc_files(text: str) -> dict[str, str]:
    """`File `path`:` followed by a fenced block -> {path: block}."""
    return dict(re.findall(r"File `([^`]+)`:\s*\n+```[a-z]*\n(.*?)```", text, flags=re.S))


def doc_appends(text: str) -> list[tuple[str, str]]:
    """`Append to `path`` ...: followed by a fenced block -> [(path, block)], in the page's order."""
    return re.findall(r"Append to `([^`]+)`[^\n]*:\s*\n+```[a-z]*\n(.*?)```", text, flags=re.S)


def doc_commands(text: str) -> list[str]:
    return [line.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
            for line in block.splitlines() if line.strip().startswith("python ")]


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    """A fresh copy of the repository with every file of docs/extending.md added."""
    text = DOC.read_text()
    checkout = copy_checkout(tmp_path_factory.mktemp("extended"))
    files = doc_files(text)
    assert files, "docs/extending.md shows no files"
    for rel, body in files.items():
        assert not (checkout / rel).exists(), f"{rel}: the example would overwrite a file of the package"
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text(body)
    for rel, body in doc_appends(text):
        assert (checkout / rel).is_file(), f"{rel}: the page appends to a file the package does not have"
        with (checkout / rel).open("a") as f:
            f.write("\n" + body)
    return checkout


def test_the_doc_names_its_files_and_commands():
    text = DOC.read_text()
    assert set(doc_files(text)) >= {"src/microaction/models/framediff.py", "conf/model/framediff.yaml",
                                    "src/microaction/data/folders.py", "conf/data/folders.yaml",
                                    "src/microaction/tasks/body_part.py", "conf/task/body_part.yaml"}
    assert [rel for rel, _ in doc_appends(text)] == ["src/microaction/registry.py"] * 2
    assert doc_commands(text)


@pytest.mark.parametrize("command", doc_commands(DOC.read_text()))
def test_each_command_of_the_doc_runs(extended, command):
    """In the page's order: a script that writes data before the training that reads it."""
    # the copy's own src/ is imported (its added files included), not the installed package's
    src = str(extended / "src")
    runs = extended / "logs" / "train"
    before = set(runs.rglob("metrics.json"))
    if not command.startswith("python train.py"):
        run_as_typed(command, extended, [], pythonpath=src)
        return
    # sizes only; a data group of its own takes no quickstart generation settings
    extra = [t for t in TINY if not t.startswith("model.")] if " data=" in command else SMALL
    run_as_typed(command, extended, extra, pythonpath=src)
    written = sorted(set(runs.rglob("metrics.json")) - before)
    # a sweep runs one job per combination of its comma-separated values
    jobs = 1
    if " -m " in command:
        for arg in command.split()[3:]:
            jobs *= len(arg.split("=", 1)[1].split(",")) if "=" in arg else 1
    assert len(written) == jobs
    for path in written:
        saved = json.loads(path.read_text())
        assert saved["val"]["num_clips"] > 0
        assert all(0.0 <= v <= 1.0 for k, v in saved["val"].items() if k != "num_clips"), saved["val"]
        if " data=folders" in command:
            # five classes of the quickstart, in folders: its own label space, not MA-52's
            config = (path.parent / "config_resolved.yaml").read_text()
            assert "FolderDataModule" in config
            assert saved["clips"]["val"]["listed"] == 10 and saved["clips"]["train"]["listed"] == 20
        if "task=body_part" in command:
            assert set(saved["val"]) == {"body_accuracy", "body_F1_macro", "num_clips"}


def test_a_setting_the_new_backbone_does_not_take_is_named(extended):
    proc = run_as_typed("python train.py experiment=quickstart model=framediff", extended,
                        [*SMALL, "+model.depth=18"], check=False, pythonpath=str(extended / "src"))
    assert proc.returncode != 0
    assert "model.depth: not a setting of model=framediff" in proc.stderr
