"""prepare_ma52 (verify + transcode to a cache) and the manifest, on real MP4 files written here.

Frame i of every marked clip is flat grey at 20 + step * i (see conftest), so a
test can tell which source frame a cached frame came from.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from microaction.data import prepare as prep
from microaction.data.annotations import ClipRecord, list_path, video_dir
from microaction.data.dataset import MA52Dataset
from microaction.data.layout import write_label_names, write_lists
from microaction.data.manifest import (MANIFEST_NAME, ClipInfo, ManifestError, probe_clip, read_manifest,
                                       resolve_manifest, write_manifest)
from microaction.data.video import read_frames, write_clip

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare_ma52.py"
# the command line (main) is the script's; the library it drives is ``prep``
_spec = importlib.util.spec_from_file_location("prepare_ma52", SCRIPT)
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)
W, H = 48, 64  # portrait, like MA-52
SHORT = 32
CACHE = (32, 42)  # 64 * 32 / 48 = 42.7 -> the even 42
VFR_TIMES = [0.0, 0.01, 0.05, 0.06, 0.2, 0.21, 0.5, 0.9, 0.91, 1.0, 1.3, 1.31]
SETTINGS = prep.EncodeSettings(short_side=SHORT, gop=4, crf=12, preset="ultrafast")


def _centres(n, t=8):
    return [int((i + 0.5) * n / t) for i in range(t)]


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for k in range(6):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _make_release(root: Path, markers, bad: dict[str, str] | None = None) -> dict[str, list]:
    """A small release: every split has ordinary clips, an audio-first clip, a variable-frame-rate clip
    and a clip shorter than T. ``bad`` maps extra val file names to a fault kind."""
    spec = {}
    for split, base in (("train", 0), ("val", 20), ("test", 40)):
        entries = []
        for i, n in enumerate((12, 20, 16)):
            entries.append((f"{split}{i}.mp4", base + i, dict(num_frames=n, audio=True)))
        entries.append((f"{split}_afirst.mp4", base + 3, dict(num_frames=14, audio=True, audio_first=True)))
        entries.append((f"{split}_vfr.mp4", base + 4, dict(num_frames=12, frame_times=VFR_TIMES)))
        entries.append((f"{split}_short.mp4", base + 5, dict(num_frames=5)))
        spec[split] = entries
    for split, entries in spec.items():
        folder = video_dir(root, split)
        folder.mkdir(parents=True, exist_ok=True)
        for name, _, kw in entries:
            kw = dict(kw)
            n = kw.pop("num_frames")
            write_clip(folder / name, markers.frames(n, H, W), crf=12, **kw)
    names = {s: [(n, lab) for n, lab, _ in e] for s, e in spec.items()}
    for name, kind in (bad or {}).items():
        path = video_dir(root, "val") / name
        if kind == "zero":
            path.write_bytes(b"")
        elif kind == "truncated":
            write_clip(path, markers.frames(20, H, W), crf=12)
            data = path.read_bytes()
            path.write_bytes(data[: len(data) * 6 // 10])
        elif kind == "text":
            path.write_text("this is a text file, not a video\n" * 10)
        elif kind == "audio_only":
            _audio_only(path)
        elif kind == "missing":
            pass
        names["val"].append((name, 30))
    for split, entries in names.items():
        write_lists(root, split, entries)
    write_label_names(root)
    return names


@pytest.fixture
def release(tmp_path, markers):
    root = tmp_path / "release"
    _make_release(root, markers)
    return root


def _frames_and_keys(path: Path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        keys = [p.is_keyframe for p in c.demux(s) if p.size]
    with av.open(str(path)) as c:
        times = [f.time for f in c.decode(c.streams.video[0])]
    return keys, times


# --- a good release ---------------------------------------------------------------------------


def test_prepare_writes_official_layout_cache_and_manifest(release, tmp_path, markers):
    dest = tmp_path / "cache"
    summary = prep.prepare(release, dest, SETTINGS, workers=1, show_progress=False)
    assert summary.ok, summary.problems
    assert summary.done == 18 and summary.skipped == 0
    for split in ("train", "val", "test"):
        assert list_path(dest, split).read_text() == list_path(release, split).read_text()
    assert (dest / "label_name.txt").read_text() == (release / "label_name.txt").read_text()
    assert "train: 6 clips listed, the full release has 11250" in "\n".join(summary.notes)

    manifest = read_manifest(dest / MANIFEST_NAME)
    assert len(manifest) == 18
    for (split, name), info in manifest.items():
        src, out = video_dir(release, split) / name, video_dir(dest, split) / name
        with av.open(str(out)) as c:
            assert [s.type for s in c.streams] == ["video"]  # audio dropped
            assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == CACHE
        n = probe_clip(src).frames
        assert info == probe_clip(out, split, name)
        assert info.frames == n and (info.width, info.height) == CACHE and info.bytes == out.stat().st_size
        keys, times = _frames_and_keys(out)
        assert [i for i, k in enumerate(keys) if k] == list(range(0, n, SETTINGS.gop))  # short keyframe interval
        # Every source frame, in order, survives the transcode.
        assert markers.read(read_frames(out, lambda k: np.arange(k)), n) == list(range(n))
        if name.endswith("_vfr.mp4"):
            assert np.allclose(times, VFR_TIMES, atol=2e-3)  # still variable frame rate
            assert info.duration > 1.3 and info.fps < 30
        else:
            assert info.fps == pytest.approx(30) and info.duration == pytest.approx(n / 30, abs=1e-3)
    assert not [p for p in dest.rglob("*") if prep.PART_TAG in p.name]
    assert "CLIPS PER CLASS" in (dest / prep.REPORT_NAME).read_text()


def test_datamodule_dataset_reads_the_cache_through_its_manifest(release, tmp_path, markers):
    dest = tmp_path / "cache"
    assert prep.prepare(release, dest, SETTINGS, workers=1, show_progress=False).ok
    ds = MA52Dataset(dest, "val", num_segments=8, short_side=SHORT, manifest="auto")
    assert ds.manifest_path == dest / MANIFEST_NAME
    assert set(ds._known) == {r.name for r in ds.records}
    by_name = {r.name: i for i, r in enumerate(ds.records)}
    short = ds[by_name["val_short.mp4"]]["video"]  # 5 frames, T = 8: frames repeat
    assert short.shape == (8, 3, 42, 32)
    assert markers.read(short, 5) == _centres(5) == [0, 0, 1, 2, 2, 3, 4, 4]
    assert markers.read(ds[by_name["val_afirst.mp4"]]["video"], 14) == _centres(14)
    assert markers.read(ds[by_name["val_vfr.mp4"]]["video"], 12) == _centres(12)


def test_cli_with_worker_processes(release, tmp_path):
    dest = tmp_path / "cache"
    out = subprocess.run([sys.executable, str(SCRIPT), str(release), str(dest), "--short-side", str(SHORT),
                          "--gop", "4", "--workers", "2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "18 clips processed, 0 already done, 0 problems" in out.stdout
    assert f"data.root={dest.resolve()}" in out.stdout
    assert len(read_manifest(dest / MANIFEST_NAME)) == 18


def test_verify_only_writes_only_the_report(release, tmp_path, capsys):
    before = sorted(p.relative_to(release) for p in release.rglob("*"))
    report = tmp_path / "verify.txt"
    assert tool.main([str(release), "--report", str(report), "--workers", "1", "--no-progress"]) == 0
    assert sorted(p.relative_to(release) for p in release.rglob("*")) == before
    text = report.read_text()
    assert "PROBLEMS: none" in text and "destination: (verify only)" in text
    assert "18 clips processed" in capsys.readouterr().out


# --- bad input ----------------------------------------------------------------------------------

BAD = {"zero.mp4": "zero", "truncated.mp4": "truncated", "notes.mp4": "text", "audio_only.mp4": "audio_only",
       "gone.mp4": "missing"}


def test_bad_clips_are_reported_and_block_the_lists(tmp_path, markers, capsys):
    src, dest = tmp_path / "release", tmp_path / "cache"
    _make_release(src, markers, bad=BAD)
    rc = tool.main([str(src), str(dest), "--short-side", str(SHORT), "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "18 clips processed, 0 already done, 5 problems" in err
    assert "lists were NOT written" in err
    report = (dest / prep.REPORT_NAME).read_text()
    val_list = list_path(src, "val")
    expected = {"zero.mp4": "empty file (0 bytes)", "truncated.mp4": "no video stream",
                "notes.mp4": "cannot decode", "audio_only.mp4": "no video stream (streams: audio)",
                "gone.mp4": "missing file"}
    for line, (name, reason) in enumerate(expected.items(), start=7):
        hit = [r for r in report.splitlines() if name in r]
        assert len(hit) == 1, (name, report)
        assert hit[0].strip().startswith(f"{val_list}:{line}:") and reason in hit[0]
        assert name in err
        assert not (video_dir(dest, "val") / name).exists()
    # Nothing that would let the loader read a dataset with holes in it ...
    assert not any(list_path(dest, s).exists() for s in ("train", "val", "test"))
    assert not (dest / MANIFEST_NAME).exists()
    # ... but the good clips are done and kept for the rerun.
    assert len(list(video_dir(dest, "train").glob("*.mp4"))) == 6

    rc = tool.main([str(src), str(dest), "--short-side", str(SHORT), "--workers", "1", "--no-progress",
                    "--drop-unreadable"])
    err = capsys.readouterr().err
    assert rc == 1  # still something wrong with the release: say so
    assert "0 clips processed, 18 already done, 5 problems" in err
    assert "5 unreadable or missing clips left out" in err
    listed = [ln.split()[0] for ln in list_path(dest, "val").read_text().splitlines()]
    assert listed == [ln.split()[0] for ln in list_path(src, "val").read_text().splitlines()][:6]
    assert len(MA52Dataset(dest, "val", short_side=SHORT, manifest="auto")) == 6


def test_truncated_faststart_clip_with_missing_frames_is_a_problem(tmp_path, markers):
    src = tmp_path / "release"
    _make_release(src, markers)
    clip = video_dir(src, "val") / "val1.mp4"
    noisy = write_clip(tmp_path / "noisy.mp4", markers.frames(40, H, W, noise=6), crf=18)
    with av.open(str(noisy)) as inp, av.open(str(clip), "w", format="mp4", options={"movflags": "faststart"}) as out:
        ostream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = ostream
                out.mux(packet)
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) * 7 // 10])  # the index is at the front, so it still opens
    summary = prep.prepare(src, tmp_path / "cache", SETTINGS, workers=1, show_progress=False)
    (problem,) = summary.problems
    assert f"{list_path(src, 'val')}:2: {clip}: only" in problem and "frames decode" in problem
    assert not (video_dir(tmp_path / "cache", "val") / "val1.mp4").exists()


def test_label_out_of_range_named_with_file_and_line(release, tmp_path):
    path = list_path(release, "train")
    lines = path.read_text().splitlines()
    lines[2] = lines[2].split()[0] + " 52"
    path.write_text("\n".join(lines))
    summary = prep.prepare(release, None, SETTINGS, workers=1, show_progress=False, report=tmp_path / "r.txt")
    assert summary.problems == [f"{path}:3: label 52 outside 0..51"]
    assert "train" not in summary.counts


def test_bad_arguments_stop_before_any_work(release, tmp_path, capsys):
    assert tool.main([str(tmp_path / "nowhere"), str(tmp_path / "c")]) == 2
    assert "source root does not exist" in capsys.readouterr().err
    assert tool.main([str(release), str(release / "cache")]) == 2
    assert "must not be the source" in capsys.readouterr().err
    assert tool.main([str(release), str(tmp_path / "c"), "--short-side", "255"]) == 2
    assert "--short-side must be an even number" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_destination_made_with_other_settings_is_refused(release, tmp_path):
    dest = tmp_path / "cache"
    assert prep.prepare(release, dest, SETTINGS, workers=1, show_progress=False, splits=["test"]).ok
    other = prep.EncodeSettings(short_side=64, gop=4, crf=12, preset="ultrafast")
    with pytest.raises(prep.PrepareError, match="short_side: 32 there, 64 asked"):
        prep.prepare(release, dest, other, workers=1, show_progress=False)


def test_second_run_on_the_same_destination_is_refused(release, tmp_path):
    dest = tmp_path / "cache"
    dest.mkdir()
    with prep._Lock(dest):
        with pytest.raises(prep.PrepareError, match="another prepare_ma52 run"):
            prep.prepare(release, dest, SETTINGS, workers=1, show_progress=False)


# --- what is refused: list names and links that lead out of SOURCE ------------------------------


def _small_release(root: Path, markers, names=("a.mp4", "b.mp4"), split="val") -> Path:
    folder = video_dir(root, split)
    folder.mkdir(parents=True)
    for name in names:
        write_clip(folder / name, markers.frames(6, 32, 48), crf=12)
    write_lists(root, split, [(n, i) for i, n in enumerate(names)])
    return root


def _one_stop_line(capsys) -> str:
    """stderr of a stopped main(): one line, no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("prepare_ma52: stopped: "), err
    return lines[0]


@pytest.mark.parametrize("bad,reason", [
    ("ABSOLUTE", "is an absolute path"),
    ("../../outside.mp4", "has a '..' component"),
    ("a/../../../outside.mp4", "has a '..' component"),
])
def test_list_name_outside_its_folder_is_refused_before_any_work(tmp_path, markers, capsys, bad, reason):
    src, dest = _small_release(tmp_path / "release", markers), tmp_path / "cache"
    outside = write_clip(tmp_path / "outside.mp4", markers.frames(6, 32, 48), crf=12)
    name = str(outside) if bad == "ABSOLUTE" else bad
    listed = list_path(src, "val")
    listed.write_text(listed.read_text() + f"\n\n{name} 5")
    for dest_args in ([str(dest)], ["--report", str(tmp_path / "verify.txt")]):
        rc = tool.main([str(src), *dest_args, "--splits", "val", "--workers", "1", "--no-progress"])
        line = _one_stop_line(capsys)
        assert rc == 2
        assert f"{listed}:4: video name {name!r} {reason}" in line
        assert "expected a relative path inside videos_val/" in line
    assert not dest.exists() and not (tmp_path / "verify.txt").exists()  # refused before anything was written


@pytest.mark.parametrize("how", ["file", "folder", "through_subfolder", "loop"])
def test_clip_linked_outside_the_source_is_refused_before_any_work(tmp_path, markers, capsys, how):
    src, dest = _small_release(tmp_path / "release", markers), tmp_path / "cache"
    elsewhere = tmp_path / "elsewhere"
    target = write_clip(elsewhere / "videos_val" / "b.mp4", markers.frames(6, 32, 48), crf=12)
    folder, listed = video_dir(src, "val"), list_path(src, "val")
    line_no, shown = 2, folder / "b.mp4"
    if how == "file":
        (folder / "b.mp4").unlink()
        (folder / "b.mp4").symlink_to(target)
    elif how == "folder":  # the whole videos folder is a link to another disk
        (folder / "a.mp4").rename(elsewhere / "videos_val" / "a.mp4")
        (folder / "b.mp4").unlink()  # the target is its copy over there
        folder.rmdir()
        folder.symlink_to(elsewhere / "videos_val")
        line_no, shown = 1, folder / "a.mp4"
    elif how == "through_subfolder":  # the name passes through a linked folder
        (folder / "sub").symlink_to(elsewhere / "videos_val")
        write_lists(src, "val", [("a.mp4", 0), ("sub/b.mp4", 1)])
        shown = folder / "sub" / "b.mp4"
    else:
        (folder / "b.mp4").unlink()
        (folder / "b.mp4").symlink_to(folder / "b.mp4")
    before = sorted((p, p.stat().st_mtime_ns) for p in elsewhere.rglob("*"))
    rc = tool.main([str(src), str(dest), "--splits", "val", "--workers", "1", "--no-progress"])
    line = _one_stop_line(capsys)
    assert rc == 2
    assert f"stopped: {listed}:{line_no}: {shown} leads to " in line
    assert "outside the source root" in line and "expected every listed clip inside the source root" in line
    if how == "loop":
        assert "a symbolic link loop" in line
    else:
        assert str(target.parent) in line
    if how == "folder":
        assert f"(its folder is a link to {elsewhere / 'videos_val'})" in line and "(and 1 more such lines)" in line
    assert not dest.exists()
    assert sorted((p, p.stat().st_mtime_ns) for p in elsewhere.rglob("*")) == before


def test_clip_linked_inside_the_source_and_subfolder_names_are_read(tmp_path, markers):
    src, dest = _small_release(tmp_path / "release", markers), tmp_path / "cache"
    shared = write_clip(video_dir(src, "train") / "t.mp4", markers.frames(9, 32, 48), crf=12)
    (video_dir(src, "val") / "b.mp4").unlink()
    (video_dir(src, "val") / "b.mp4").symlink_to(Path("..") / "videos_train" / shared.name)
    write_clip(video_dir(src, "val") / "sub" / "c.mp4", markers.frames(7, 32, 48), crf=12)
    write_lists(src, "val", [("a.mp4", 0), ("b.mp4", 1), ("sub/c.mp4", 2)])
    summary = prep.prepare(src, dest, SETTINGS, splits=["val"], workers=1, show_progress=False)
    assert summary.ok, summary.problems
    cached = video_dir(dest, "val") / "b.mp4"
    assert not cached.is_symlink() and probe_clip(cached).frames == 9
    assert probe_clip(video_dir(dest, "val") / "sub" / "c.mp4").frames == 7
    assert list_path(dest, "val").read_text() == list_path(src, "val").read_text()


def test_link_roots_let_a_caller_read_a_release_made_of_links(tmp_path, markers):
    """The programmatic opening scripts/bench_loader.py uses for its --source release of links."""
    real = _small_release(tmp_path / "real", markers)
    linked = tmp_path / "linked"
    video_dir(linked, "val").mkdir(parents=True)
    for name in ("a.mp4", "b.mp4"):
        (video_dir(linked, "val") / name).symlink_to(video_dir(real, "val") / name)
    write_lists(linked, "val", [("a.mp4", 0), ("b.mp4", 1)])
    kw = dict(splits=["val"], workers=1, show_progress=False, report=tmp_path / "r.txt")
    with pytest.raises(prep.PrepareError, match=r"val_list_videos\.txt:1: .*outside the source root"):
        prep.prepare(linked, None, SETTINGS, **kw)
    summary = prep.prepare(linked, None, SETTINGS, link_roots=[real], **kw)
    assert summary.ok and summary.done == 2


def test_clip_that_becomes_a_link_outside_during_the_run_is_not_read(tmp_path, markers):
    """The check is repeated where the worker opens the file, not only when the run is planned."""
    src = _small_release(tmp_path / "release", markers).resolve()
    outside = write_clip(tmp_path / "outside.mp4", markers.frames(6, 32, 48), crf=12)
    clip = video_dir(src, "val") / "b.mp4"
    task = prep.Task("val", ClipRecord("b.mp4", 1, 2), clip, None, list_path(src, "val"), (src,))
    assert prep.process_clip(task, SETTINGS).info.frames == 6
    clip.unlink()
    clip.symlink_to(outside)
    outcome = prep.process_clip(task, SETTINGS)
    assert outcome.info is None
    assert f"now leads to {outside}, outside the source root {src}" in outcome.problem


# --- what is already in DEST -------------------------------------------------------------------------


def test_unreadable_file_already_in_dest_is_named_and_left_alone(release, tmp_path, capsys):
    dest = tmp_path / "cache"
    folder = video_dir(dest, "val")
    folder.mkdir(parents=True)
    foreign = folder / "val1.mp4"
    foreign.write_bytes(b"someone's notes, not a video\n" * 20)
    precious = tmp_path / "precious.mp4"
    precious.write_bytes(b"not this tool's")
    (folder / "val2.mp4").symlink_to(precious)
    rc = tool.main([str(release), str(dest), "--short-side", str(SHORT), "--workers", "1", "--no-progress"])
    line = _one_stop_line(capsys)
    assert rc == 2
    assert f"stopped: {foreign} (cannot be read as a video: " in line and "; 1 more such files" in line
    assert "left as it is: check it and move it out of" in line and "or choose another destination" in line
    assert not any(word in line.lower() for word in ("remove", "delete", "rm "))
    # Untouched, and stopped before any clip was transcoded.
    assert foreign.read_bytes() == b"someone's notes, not a video\n" * 20
    assert (folder / "val2.mp4").is_symlink() and precious.read_bytes() == b"not this tool's"
    assert sorted(p.name for p in dest.rglob("*.mp4")) == ["val1.mp4", "val2.mp4"]


def test_rerun_removes_only_the_tools_own_temporary_files(release, tmp_path):
    dest = tmp_path / "cache"
    assert prep.prepare(release, dest, SETTINGS, splits=["test"], workers=1, show_progress=False).ok
    folder, tag = video_dir(dest, "test"), prep.PART_TAG
    ours = [folder / f".test0.mp4{tag}4242", dest / f".label_name.txt{tag}77", dest / ".manifest.csv.77.part",
            dest / f".{prep.SETTINGS_NAME}{tag}77"]
    theirs = [folder / ".notes.part-x", folder / f"notes.mp4{tag}1", folder / f".mine{tag}12.bak",
              dest / "keep.txt", dest / f".other{tag}5"]
    for p in ours + theirs:
        p.write_bytes(b"x")
    lists_tmp = dest / f".lists{tag}77"  # a run killed while writing the lists
    lists_tmp.mkdir()
    (lists_tmp / "test_list_videos.txt").write_text("test0.mp4 40")
    not_only_lists = dest / f".lists{tag}78"
    not_only_lists.mkdir()
    (not_only_lists / "mine.txt").write_text("keep")
    (tmp_path / "target").write_bytes(b"t")
    link = folder / f".test1.mp4{tag}9"  # named like ours, but a link: not something this tool writes
    link.symlink_to(tmp_path / "target")

    summary = prep.prepare(release, dest, SETTINGS, splits=["test"], workers=1, show_progress=False)
    assert summary.ok and summary.skipped == 6
    assert "removed 5 temporary files left by an interrupted run" in summary.notes
    assert not any(p.exists() for p in ours) and not lists_tmp.exists()
    assert all(p.read_bytes() == b"x" for p in theirs)
    assert (not_only_lists / "mine.txt").read_text() == "keep"
    assert link.is_symlink() and (tmp_path / "target").read_bytes() == b"t"


def test_link_in_dest_leading_outside_is_refused(release, tmp_path, capsys):
    dest, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    video_dir(dest, "test").symlink_to(elsewhere)
    rc = tool.main([str(release), str(dest), "--splits", "test", "--short-side", str(SHORT), "--workers", "1",
                    "--no-progress"])
    line = _one_stop_line(capsys)
    assert rc == 2
    assert f"{video_dir(dest, 'test')} leads to {elsewhere}, outside the destination {dest}" in line
    assert list(elsewhere.iterdir()) == []


def test_workers_forked_under_the_lock_do_not_hold_it(tmp_path):
    """What a SIGKILL of the main process leaves: its descriptor closed without unlocking, a forked child
    still alive. The child must not keep DEST locked."""
    dest = tmp_path / "cache"
    dest.mkdir()
    lock = prep._Lock(dest).__enter__()
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child says it runs, then waits to be killed
        os.write(ready_w, b"1")
        time.sleep(30)
        os._exit(0)
    try:
        os.close(ready_w)
        assert os.read(ready_r, 1) == b"1"  # the child is past fork()
        os.close(ready_r)
        prep._HELD_LOCK_FDS.discard(lock.fd)
        os.close(lock.fd)  # as the kernel does when the process dies
        with prep._Lock(dest):
            pass
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


# --- faults while writing -------------------------------------------------------------------------


def _failing_encoder(monkeypatch, fail_on: int, exc: BaseException):
    real = prep.encode_clip
    calls = []

    def encode(tmp, *args, **kw):
        calls.append(tmp)
        if len(calls) == fail_on:
            tmp.write_bytes(b"\x00" * 1000)  # a partly written file, as a real failure leaves it
            raise exc
        return real(tmp, *args, **kw)

    monkeypatch.setattr(prep, "encode_clip", encode)
    return calls


def _check_nothing_half_written(dest: Path) -> list[Path]:
    assert not [p for p in dest.rglob("*") if prep.PART_TAG in p.name]
    done = sorted(dest.rglob("*.mp4"))
    for path in done:  # everything under a final name is a whole clip
        n = probe_clip(path).frames
        assert len(read_frames(path, lambda k: np.arange(k))) == n
    return done


def test_full_disk_stops_with_a_clear_message_and_nothing_half_written(release, tmp_path, monkeypatch, capsys):
    dest = tmp_path / "cache"
    calls = _failing_encoder(monkeypatch, 3, OSError(errno.ENOSPC, "No space left on device"))
    rc = tool.main([str(release), str(dest), "--short-side", str(SHORT), "--gop", "4", "--workers", "1",
                    "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1  # one line, the documented status
    assert "stopped: the destination is full" in err and "No space left on device" in err
    assert str(calls[2].parent / calls[2].name.split(prep.PART_TAG)[0][1:]) in err  # names the file
    assert len(calls) == 3  # stopped at once, not after trying every other clip
    assert len(_check_nothing_half_written(dest)) == 2
    assert not list(dest.glob("*_list_videos.txt")) and not (dest / MANIFEST_NAME).exists()

    monkeypatch.undo()
    summary = prep.prepare(release, dest, prep.EncodeSettings(short_side=SHORT, gop=4), workers=1,
                           show_progress=False)
    assert summary.ok and summary.skipped == 2 and summary.done == 16
    assert len(read_manifest(dest / MANIFEST_NAME)) == 18


def test_interrupted_run_is_resumed_and_skips_finished_clips(release, tmp_path, monkeypatch):
    dest = tmp_path / "cache"
    _failing_encoder(monkeypatch, 4, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(release, dest, SETTINGS, workers=1, show_progress=False)
    assert len(_check_nothing_half_written(dest)) == 3
    # What a kill -9 mid-write leaves behind: a temporary file, and a finished clip not yet journalled.
    stale = video_dir(dest, "val") / f".val0.mp4{prep.PART_TAG}99999"
    stale.write_bytes(b"\x00" * 500)
    journal = (dest / prep.JOURNAL_NAME).read_text().splitlines()
    (dest / prep.JOURNAL_NAME).write_text("\n".join(journal[:-1]) + "\n{\"split\": \"tr")

    monkeypatch.undo()
    summary = prep.prepare(release, dest, SETTINGS, workers=1, show_progress=False)
    assert summary.ok, summary.problems
    assert (summary.skipped, summary.done) == (3, 15)
    assert not stale.exists()
    assert "removed 1 temporary files left by an interrupted run" in summary.notes
    manifest = read_manifest(dest / MANIFEST_NAME)
    assert len(manifest) == 18
    assert all(info == probe_clip(video_dir(dest, s) / n, s, n) for (s, n), info in manifest.items())


def test_killed_process_rerun_completes(tmp_path, markers):
    src, dest = tmp_path / "release", tmp_path / "cache"
    folder = video_dir(src, "train")
    folder.mkdir(parents=True)
    entries = []
    for i in range(24):  # enough work that the kill lands mid-run
        write_clip(folder / f"c{i:02d}.mp4", markers.frames(30, 240, 192, noise=8, seed=i), crf=18)
        entries.append((f"c{i:02d}.mp4", i))
    write_lists(src, "train", entries)
    cmd = [sys.executable, str(SCRIPT), str(src), str(dest), "--splits", "train", "--short-side", "128",
           "--workers", "1", "--preset", "medium", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (video_dir(dest, "train").is_dir() and list(video_dir(dest, "train").glob("c*.mp4"))):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        assert proc.poll() is None, "finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not list_path(dest, "train").exists()
    finished = len(_check_nothing_half_written_except_parts(dest))
    assert 1 <= finished < 24
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"{24 - finished} clips processed, {finished} already done, 0 problems" in out.stdout
    assert len(read_manifest(dest / MANIFEST_NAME)) == 24
    assert not [p for p in dest.rglob("*") if prep.PART_TAG in p.name]


def _check_nothing_half_written_except_parts(dest: Path) -> list[Path]:
    # After a real kill a temporary file may remain (the rerun removes it); final names are whole.
    done = sorted(dest.rglob("c*.mp4"))
    for path in done:
        assert len(read_frames(path, lambda k: np.arange(k))) == probe_clip(path).frames == 30
    return done


# --- a destination that cannot be written: read-only, full -----------------------------------------

STAGES = ["mkdir", "lock", "settings", "journal_open", "clip", "journal_write", "layout"]
CLIPS_WRITTEN_BEFORE = {"lock": 0, "settings": 0, "journal_open": 0, "clip": 1, "journal_write": 1, "layout": 6}
EXPECTED_START = {errno.EROFS: "the destination is on a read-only file system (writing ",
                  errno.ENOSPC: "the destination is full (writing "}


def _fail_at(monkeypatch, stage: str, code: int, dest: Path) -> None:
    """Make the write of ``stage`` fail with ``code``, as a read-only or full file system would."""
    def error(path):
        return OSError(code, os.strerror(code), str(path))

    if stage == "mkdir":
        real_mkdir = Path.mkdir

        def mkdir(self, *a, **kw):
            if self == dest:
                raise error(self)
            return real_mkdir(self, *a, **kw)
        monkeypatch.setattr(Path, "mkdir", mkdir)
    elif stage == "lock":
        real_open = os.open

        def os_open(path, *a, **kw):
            if Path(path).name == prep.LOCK_NAME:
                raise error(path)
            return real_open(path, *a, **kw)
        monkeypatch.setattr(os, "open", os_open)
    elif stage == "settings":
        real_atomic = prep._write_atomic

        def write_atomic(path, text):
            if path.name == prep.SETTINGS_NAME:
                raise error(path)
            return real_atomic(path, text)
        monkeypatch.setattr(prep, "_write_atomic", write_atomic)
    elif stage in ("journal_open", "journal_write"):
        real_path_open = Path.open

        class FullFile:
            def __init__(self, f):
                self.f = f

            def write(self, text):
                raise error(dest / prep.JOURNAL_NAME)

            def __getattr__(self, name):
                return getattr(self.f, name)

        def path_open(self, mode="r", *a, **kw):
            if self.name == prep.JOURNAL_NAME and "a" in mode:
                if stage == "journal_open":
                    raise error(self)
                return FullFile(real_path_open(self, mode, *a, **kw))
            return real_path_open(self, mode, *a, **kw)
        monkeypatch.setattr(Path, "open", path_open)
    elif stage == "clip":
        _failing_encoder(monkeypatch, 2, error(dest / "clip"))
    elif stage == "layout":
        def write_manifest(path, infos):
            raise error(path)
        monkeypatch.setattr(prep, "write_manifest", write_manifest)


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC], ids=["read_only", "full"])
@pytest.mark.parametrize("stage", STAGES)
def test_unwritable_destination_stops_with_one_line_and_status_2(release, tmp_path, monkeypatch, capsys, stage,
                                                                 code):
    dest = tmp_path / "cache"
    _fail_at(monkeypatch, stage, code, dest)
    rc = tool.main([str(release), str(dest), "--splits", "test", "--short-side", str(SHORT), "--gop", "4",
                    "--workers", "1", "--no-progress"])
    line = _one_stop_line(capsys)
    assert rc == 2
    assert line.startswith("prepare_ma52: stopped: " + EXPECTED_START[code]), line
    assert os.strerror(code) in line
    if code == errno.ENOSPC:
        assert "rerun the same command" in line
    monkeypatch.undo()
    if stage == "mkdir":
        assert not dest.exists()
        return
    # Nothing half-written, never a dataset with holes in it; what was finished is kept.
    assert len(_check_nothing_half_written(dest)) == CLIPS_WRITTEN_BEFORE[stage]
    assert not list(dest.glob("*_list_videos.txt")) and not (dest / MANIFEST_NAME).exists()

def _read_only_runner(tmp_path: Path) -> list[str]:
    """A command prefix that runs a program in a private mount namespace, or skips the test saying why."""
    probe = tmp_path / "probe"
    probe.mkdir()
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && ! touch "$1/x" 2>/dev/null'
    reasons = []
    for prefix in (["unshare", "--mount", "--propagation", "private"], ["unshare", "-r", "-m"]):
        try:
            out = subprocess.run([*prefix, "sh", "-c", script, "sh", str(probe)], capture_output=True, text=True,
                                 timeout=20)
        except (OSError, subprocess.TimeoutExpired) as err:
            reasons.append(f"{' '.join(prefix)}: {err}")
            continue
        if out.returncode == 0 and not (probe / "x").exists():
            return prefix
        reasons.append(f"{' '.join(prefix)}: {out.stderr.strip() or out.returncode}")
    pytest.skip("cannot make a read-only bind mount here (" + "; ".join(reasons) + "); "
                "test_unwritable_destination_stops_with_one_line_and_status_2 covers it by simulation")


@pytest.mark.parametrize("case", ["empty_dest", "dest_to_make", "finished_cache"])
def test_read_only_destination_real_mount(release, tmp_path, case):
    """DEST on a real read-only bind mount (root writes through chmod, not through this)."""
    runner = _read_only_runner(tmp_path)
    if case == "dest_to_make":  # DEST does not exist yet; its parent is read-only
        read_only = tmp_path / "read_only"
        read_only.mkdir()
        dest = read_only / "cache"
    else:
        read_only = dest = tmp_path / "cache"
        if case == "finished_cache":
            assert prep.prepare(release, dest, prep.EncodeSettings(short_side=SHORT, gop=4), splits=["test"],
                                workers=1, show_progress=False).ok
        dest.mkdir(exist_ok=True)
    args = [str(release), str(dest), "--splits", "test", "--short-side", str(SHORT), "--gop", "4", "--workers", "1",
            "--no-progress"]
    before = sorted((p, p.stat().st_size) for p in read_only.rglob("*"))
    inner = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    out = subprocess.run([*runner, "sh", "-c", inner, "sh", str(read_only), sys.executable, str(SCRIPT), *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("prepare_ma52: stopped: the destination is on a read-only file system (writing "), line
    assert "choose a destination on a writable file system" in line
    assert sorted((p, p.stat().st_size) for p in read_only.rglob("*")) == before


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the worker processes through /proc")
def test_sigkill_with_worker_processes_then_rerun_resumes(tmp_path, markers):
    """kill -9 of the main process while two workers transcode: the workers end with it, DEST is not
    left locked, and the same command run again finishes the cache."""
    src, dest = tmp_path / "release", tmp_path / "cache"
    folder = video_dir(src, "train")
    folder.mkdir(parents=True)
    n = 12
    for i in range(n):  # enough work that the kill lands mid-run
        write_clip(folder / f"c{i:02d}.mp4", markers.frames(30, 240, 192, noise=8, seed=i), crf=18)
    write_lists(src, "train", [(f"c{i:02d}.mp4", i) for i in range(n)])
    cmd = [sys.executable, str(SCRIPT), str(src), str(dest), "--splits", "train", "--short-side", "128",
           "--workers", "2", "--preset", "medium", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "finished before it could be killed"
            assert time.monotonic() < deadline, "no clip finished in time"
            workers = _children(proc.pid)
            if len(workers) >= 2 and list(video_dir(dest, "train").glob("c*.mp4")):
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_running(w) for w in workers):
            assert time.monotonic() < deadline, f"worker processes outlived the killed run: {workers}"
            time.sleep(0.02)
    finally:
        for w in workers:  # only the processes this test started, should the check above have failed
            if _running(w):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert not list_path(dest, "train").exists()
    finished = len(_check_nothing_half_written_except_parts(dest))
    assert 1 <= finished < n

    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "another prepare_ma52 run" not in out.stderr
    assert out.returncode == 0, out.stderr
    assert f"{n - finished} clips processed, {finished} already done, 0 problems" in out.stdout
    assert list_path(dest, "train").read_text() == list_path(src, "train").read_text()
    manifest = read_manifest(dest / MANIFEST_NAME)
    assert len(manifest) == n
    for (split, name), info in manifest.items():
        path = video_dir(dest, split) / name
        assert info == probe_clip(path, split, name) and info.frames == 30
        assert markers.read(read_frames(path, lambda k: np.arange(k)), 30) == list(range(30))
    assert not [p for p in dest.rglob("*") if prep.PART_TAG in p.name]


# --- the manifest in the loader ---------------------------------------------------------------------


def _one_clip_root(tmp_path, markers, n=20):
    root = tmp_path / "one"
    write_clip(video_dir(root, "val") / "a.mp4", markers.frames(n, 32, 48), crf=12)
    write_lists(root, "val", [("a.mp4", 3)])
    return root


@pytest.mark.parametrize("claimed,size_ok,expect_n", [
    (10, True, 10),  # the manifest's count is what sampling uses
    (20, True, 20),
    (40, True, 20),  # more frames than the file holds: the decoder's count wins
    (10, False, 20),  # file changed since the manifest was written: manifest ignored
])
def test_dataset_frame_count_from_manifest(tmp_path, markers, claimed, size_ok, expect_n):
    root = _one_clip_root(tmp_path, markers)
    size = (video_dir(root, "val") / "a.mp4").stat().st_size
    write_manifest(root / MANIFEST_NAME, [ClipInfo("val", "a.mp4", claimed, 30.0, claimed / 30, 48, 32,
                                                   size if size_ok else size + 1)])
    ds = MA52Dataset(root, "val", num_segments=8, short_side=None, manifest="auto")
    assert markers.read(ds[0]["video"], 20) == _centres(expect_n)
    assert markers.read(MA52Dataset(root, "val", short_side=None, manifest=None)[0]["video"], 20) == _centres(20)


def test_read_frames_with_known_count_asks_once(marker_clip, markers):
    path = marker_clip(num_frames=20)
    calls = []
    frames = read_frames(path, lambda n: calls.append(n) or [0, n - 1], num_frames=15)
    assert calls == [15] and markers.read(frames, 20) == [0, 14]


def test_manifest_errors_name_file_and_line(tmp_path, markers):
    path = tmp_path / MANIFEST_NAME
    path.write_text("split,name,frames\n")
    with pytest.raises(ManifestError, match=f"{path}:1: expected header"):
        read_manifest(path)
    path.write_text("split,name,frames,fps,duration,width,height,bytes\nval,a.mp4,12,30,0.4,48,32,100\n"
                    "val,b.mp4,twelve,30,0.4,48,32,100\n")
    with pytest.raises(ManifestError, match=f"{path}:3: malformed row"):
        read_manifest(path)
    with pytest.raises(FileNotFoundError, match="data.manifest=.*no such file"):
        resolve_manifest(tmp_path, str(tmp_path / "nope.csv"))
    assert resolve_manifest(tmp_path, "auto") == path
    assert resolve_manifest(tmp_path, None) is None
    assert resolve_manifest(tmp_path / "elsewhere", "auto") is None  # no manifest: frames are counted


def test_rotated_source_stays_upright_in_the_cache(tmp_path, markers):
    """A phone's portrait clip (stored landscape + a display matrix) is cached with its rotation, and the
    manifest records the size as displayed."""
    from microaction.data.manifest import read_manifest
    from microaction.data.video import read_frames, write_clip

    src = tmp_path / "src"
    (src / "videos_val").mkdir(parents=True)
    frames = markers.frames(6, 32, 48)
    frames[:, :8, :8] = 255  # a white corner: top-left as stored
    write_clip(src / "videos_val" / "r.mp4", frames, rotation=-90, crf=12)
    (src / "val_list_videos.txt").write_text("r.mp4 3")
    dest = tmp_path / "dest"
    assert prep.prepare(src, dest, prep.EncodeSettings(short_side=32), splits=("val",), workers=1,
                        show_progress=False).ok
    cached = read_frames(dest / "videos_val" / "r.mp4", lambda n: np.arange(n))
    original = read_frames(src / "videos_val" / "r.mp4", lambda n: np.arange(n), short_side=32)
    assert cached.shape == original.shape == (6, 48, 32, 3)  # portrait, as displayed
    # the white corner sits where the source displays it (turned a quarter clockwise: top-right)
    assert cached[0, :6, -6:].mean() > 200 and cached[0, -6:, :6].mean() < 200
    info = read_manifest(dest / "manifest.csv")[("val", "r.mp4")]
    assert (info.width, info.height) == (32, 48)
