"""scripts/detect_faces.py on an MA-52-Pro style root: a real photograph (scikit-image's astronaut)
moving across a clip, a clip of noise, and the run's refusals and resumption."""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, run_cli

from microaction.data import face_detection as fd
from microaction.data.faces import HEADER, HEADER_WITH_LANDMARKS, read_track, track_path
from microaction.data.video import probe, write_clip

pytest.importorskip("cv2", reason="the faces extra (opencv-python-headless) is not installed")
skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (the dev extra) is not installed")

SCRIPT = REPO / "scripts" / "detect_faces.py"
_spec = importlib.util.spec_from_file_location("detect_faces", SCRIPT)
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)

# The astronaut's face in skimage.data.astronaut() (512 x 512), read off the picture: from the hairline
# (y 75) to the chin (y 185), cheek to cheek (x 180 to 270); the eyes are near (202, 101) and (247, 102).
FACE_512 = np.array([180.0, 75.0, 270.0, 185.0])
SIDE = 192  # the photograph is scaled to 192 x 192 (the face about 34 x 41 pixels)
H, W = 192, 256  # on a grey canvas this size,
FRAMES = 20
STEP = 3  # moving this many pixels right per frame,
START = 4  # from this column


def _astronaut_clip() -> np.ndarray:
    import cv2

    photo = cv2.resize(skimage_data.astronaut(), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    frames = np.full((FRAMES, H, W, 3), 128, np.uint8)
    for t in range(FRAMES):
        x = START + STEP * t
        frames[t, :, x:x + SIDE] = photo[:, : W - x]
    return frames


def _true_face(t: int) -> np.ndarray:
    """The face box in frame t, in pixels (x0, y0, x1, y1)."""
    scale = SIDE / 512
    return FACE_512 * scale + np.array([START + STEP * t, 0, START + STEP * t, 0])


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _make_root(root: Path) -> Path:
    astro = _astronaut_clip()
    noise = np.random.default_rng(0).integers(0, 256, (12, 96, 128, 3), dtype=np.uint8)
    write_clip(root / "videos_train" / "s001_c001.mp4", astro, fps=10, crf=18)
    write_clip(root / "videos_train" / "s001_c002.mp4", noise, fps=10)
    write_clip(root / "videos_val" / "sub" / "s002_c001.mp4", astro[::4], fps=10, crf=18)
    write_clip(root / "videos_test" / "s003_c001.mp4", noise[:6], fps=10)
    (root / "train_list_videos.txt").write_text("s001_c001.mp4 0 1,5\ns001_c002.mp4 3 7")
    (root / "val_list_videos.txt").write_text("sub/s002_c001.mp4 2 3\n")
    (root / "test_list_videos.txt").write_text("s003_c001.mp4 4 9,10,11")
    return root


@pytest.fixture(scope="module")
def detected(tmp_path_factory):
    """A root after one run of the command as a user types it; the run's output."""
    root = _make_root(tmp_path_factory.mktemp("pro") / "MA-52-Pro")
    proc = run_cli("scripts/detect_faces.py", [str(root)], cwd=root.parent)
    return root, proc


def test_tracks_follow_the_astronauts_face(detected):
    root, proc = detected
    assert "4 tracks written, 0 already done, 0 problems" in proc.stdout
    path = track_path(root, "train", "s001_c001.mp4")
    assert path.read_text().splitlines()[0] == HEADER  # the Haar cascade gives boxes only
    track = read_track(path, probe(root / "videos_train" / "s001_c001.mp4").frames)
    assert track.num_frames == FRAMES
    rows = np.flatnonzero(track.detected)
    assert len(rows) >= FRAMES - 2, f"a face in only {len(rows)} of {FRAMES} frames"
    boxes = track.boxes * np.array([W, H, W, H])
    for t in rows:
        assert _iou(boxes[t], _true_face(t)) > 0.5, (t, boxes[t], _true_face(t))
    # the box moves with the picture: STEP pixels per frame to the right, none up or down
    centre_x = (boxes[rows, 0] + boxes[rows, 2]) / 2
    centre_y = (boxes[rows, 1] + boxes[rows, 3]) / 2
    slope = np.polyfit(rows, centre_x, 1)[0]
    assert slope == pytest.approx(STEP, abs=0.4)
    assert np.ptp(centre_y) <= 4
    assert ((track.scores[rows] > 0) & (track.scores[rows] <= 1)).all()
    # the val clip (every fourth frame, in a subfolder of videos_val) is found as well
    val = read_track(track_path(root, "val", "sub/s002_c001.mp4"), 5)
    assert val.detected.sum() >= 4


def test_noise_gives_a_header_only_track(detected):
    root, proc = detected
    for split, name in (("train", "s001_c002.mp4"), ("test", "s003_c001.mp4")):
        path = track_path(root, split, name)
        assert path.read_text() == HEADER + "\n"
        assert not read_track(path, 12).found
    assert "2 videos with no face found" in proc.stdout


def test_rerun_is_a_no_op(detected, capsys):
    root, _ = detected
    tracks = sorted(p for p in root.rglob("faces_*/**/*") if p.is_file())
    assert len(tracks) == 4  # and no temporary file beside them
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tracks}
    assert tool.main([str(root), "--no-progress"]) == 0
    assert "0 tracks written, 4 already done, 0 problems" in capsys.readouterr().out
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tracks} == before


def test_every_kth_frame(detected):
    root, _ = detected
    found = fd.detect_video(root / "videos_train" / "s001_c001.mp4", fd.make_detector("haar"), every=3)
    assert (found.frames, found.sampled) == (FRAMES, 7)
    frames = [r[0] for r in found.rows]
    assert set(frames) <= set(range(0, FRAMES, 3)) and len(frames) >= 6


def test_boxes_are_fractions_of_the_displayed_frame(tmp_path):
    # Stored as a phone stores portrait video: the pictures turned a quarter counter-clockwise, with a
    # display matrix saying to turn them back (-90). The track describes the frame as displayed, and is
    # the same at any detection size.
    display = _astronaut_clip()[::4]
    clip = write_clip(tmp_path / "turned.mp4", np.ascontiguousarray(np.rot90(display, 1, axes=(1, 2))), fps=10,
                      crf=18, rotation=-90)
    detector = fd.make_detector("haar")
    for short_side in (None, 160):
        found = fd.detect_video(clip, detector, short_side=short_side)
        assert len(found.rows) >= 4, (short_side, found.rows)  # at 160 the face is near the cascade's smallest
        for row in found.rows:
            j = row[0]
            box = np.array(row[1:5]) * np.array([W, H, W, H])
            assert _iou(box, _true_face(4 * j)) > 0.5, (short_side, j, box)


# --- the run's refusals, problems and leftovers (in-process, one worker) --------------------------------


@pytest.fixture
def small_root(detected, tmp_path):
    """A copy of the root without its tracks."""
    src, _ = detected
    root = tmp_path / "root"
    shutil.copytree(src, root, ignore=shutil.ignore_patterns("faces_*"))
    return root


def _run(root, capsys, *extra) -> tuple[int, str, str]:
    rc = tool.main([str(root), "--no-progress", "--workers", "1", *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_stop_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("detect_faces: stopped: "), err
    return lines[0]


@pytest.mark.parametrize("code,start", [(errno.EROFS, "the dataset root is on a read-only file system (writing "),
                                        (errno.ENOSPC, "the destination is full (writing ")], ids=["read_only", "full"])
@pytest.mark.parametrize("stage", ["mkdir", "track"])
def test_unwritable_destination_stops_with_one_line_and_status_2(small_root, capsys, monkeypatch, code, start, stage):
    def error(path):
        return OSError(code, os.strerror(code), str(path))

    if stage == "mkdir":
        real_mkdir = Path.mkdir

        def mkdir(self, *a, **kw):
            if self.name.startswith("faces_"):
                raise error(self)
            return real_mkdir(self, *a, **kw)
        monkeypatch.setattr(Path, "mkdir", mkdir)
    else:
        def write_track(path, rows, landmarks=None):
            raise error(path)
        monkeypatch.setattr(fd, "write_track", write_track)
    rc, _, err = _run(small_root, capsys, "--splits", "test")
    line = _one_stop_line(err)
    assert rc == 2
    assert line.startswith("detect_faces: stopped: " + start), line
    assert os.strerror(code) in line
    monkeypatch.undo()
    assert not any(small_root.rglob("*.csv*"))


def test_bad_list_line_stops_before_any_video_is_read(small_root, capsys, monkeypatch):
    listing = small_root / "val_list_videos.txt"
    listing.write_text("sub/s002_c001.mp4 2 3\n\n../../etc/passwd 1 2\n")
    monkeypatch.setattr(fd, "detect_video", lambda *a, **k: pytest.fail("a video was read"))
    rc, _, err = _run(small_root, capsys)
    line = _one_stop_line(err)
    assert rc == 2 and f"{listing}:3: video name '../../etc/passwd' has a '..' component" in line
    listing.write_text("sub/s002_c001.mp4 2\n")
    rc, _, err = _run(small_root, capsys)
    assert rc == 2 and f"{listing}:1: expected '<video> <emotion id> <fine id>[,<fine id>...]'" in _one_stop_line(err)
    listing.unlink()
    rc, _, err = _run(small_root, capsys)
    assert rc == 2 and f"list file not found: {listing}" in _one_stop_line(err)


def test_missing_or_broken_videos_are_problems_with_their_list_line(small_root, capsys):
    videos = small_root / "videos_test"
    shutil.copy(videos / "s003_c001.mp4", videos / "s003_c002.mp4")
    (videos / "s003_c001.mp4").write_bytes(b"not a video at all" * 10)
    (small_root / "test_list_videos.txt").write_text("s003_c001.mp4 4 9\ns003_c002.mp4 1 2\ns003_c003.mp4 0 1\n")
    rc, _, err = _run(small_root, capsys, "--splits", "test")
    assert rc == 1
    listing = small_root / "test_list_videos.txt"
    assert f"{listing}:1: {videos / 's003_c001.mp4'}: cannot decode" in err
    assert f"{listing}:3: missing file {videos / 's003_c003.mp4'}" in err
    assert "1 tracks written, 0 already done, 2 problems" in err
    assert not track_path(small_root, "test", "s003_c001.mp4").exists()
    assert track_path(small_root, "test", "s003_c002.mp4").read_text() == HEADER + "\n"


def test_a_foreign_file_under_a_track_name_is_left_alone(small_root, capsys):
    foreign = track_path(small_root, "train", "s001_c001.mp4")
    foreign.parent.mkdir()
    foreign.write_text("not a track\n")
    rc, _, err = _run(small_root, capsys)
    line = _one_stop_line(err)
    assert rc == 2 and f"{foreign} (not a face track: {foreign}:1: expected the header line" in line
    assert foreign.read_text() == "not a track\n"


def test_temporary_files_of_a_killed_run_are_removed(small_root, capsys):
    folder = small_root / "faces_test"
    folder.mkdir()
    dead = folder / ".s003_c001.csv.part-999999999"  # no such process
    live = folder / f".s003_c001.csv.part-{os.getppid()}"  # a live process's: kept
    dead.write_text("frame,x0")
    live.write_text("frame,x0")
    rc, out, _ = _run(small_root, capsys, "--splits", "test")
    assert rc == 0 and "removed 1 temporary files left by an interrupted run" in out
    assert not dead.exists() and live.exists()


def test_missing_detector_package_names_the_extra(small_root, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now fails
    fd._DETECTORS.clear()
    rc, _, err = _run(small_root, capsys)
    line = _one_stop_line(err)
    assert rc == 2 and 'pip install -e ".[faces]"' in line
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    rc, _, err = _run(small_root, capsys, "--detector", "mtcnn")
    assert rc == 2 and "pip install --no-deps facenet-pytorch==2.6.0" in _one_stop_line(err)
    assert not any(small_root.rglob("*.csv"))


def test_mtcnn_tracks_have_landmarks_on_the_face(small_root, capsys):
    pytest.importorskip("facenet_pytorch", reason="facenet-pytorch is installed by hand (see docs/ma52pro_faces.md)")
    rc, _, _ = _run(small_root, capsys, "--splits", "val", "test", "--detector", "mtcnn")
    assert rc == 0
    path = track_path(small_root, "val", "sub/s002_c001.mp4")  # frames 0, 4, ..., 16 of the moving clip
    assert path.read_text().splitlines()[0] == HEADER_WITH_LANDMARKS
    track = read_track(path, 5)
    assert track.detected.all()
    px = track.landmarks * np.array([W, H])
    for j, t in enumerate(range(0, FRAMES, 4)):
        assert _iou(track.boxes[j] * np.array([W, H, W, H]), _true_face(t)) > 0.5
        x0, y0, x1, y1 = _true_face(t)
        assert ((px[j, :, 0] > x0) & (px[j, :, 0] < x1) & (px[j, :, 1] > y0) & (px[j, :, 1] < y1)).all()
        assert px[j, 0, 0] < px[j, 1, 0]  # the left eye is on the image's left
    assert track_path(small_root, "test", "s003_c001.mp4").read_text() == HEADER_WITH_LANDMARKS + "\n"
