"""Face tracks: the strict reader, gap filling, the atomic writer, and the face crops.

Crops are checked on frames with known marks drawn in (a rectangle, coloured eye marks): where a mark
must land in the crop follows from the box, the margin and the output size, worked out by hand below.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest


from microaction.utils import atomic
from microaction.data.faces import (
    HEADER,
    HEADER_WITH_LANDMARKS,
    FaceTrackError,
    FaceTrackMissingError,
    crop_faces,
    read_track,
    track_path,
    write_track,
)
from microaction.data.video import read_frames, write_clip

LM = ",0.4,0.4,0.6,0.4,0.5,0.5,0.45,0.6,0.55,0.6"  # ten landmark values inside the usual test box


def _write(tmp_path, text: str, name: str = "t.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


# --- the reader's refusals ---------------------------------------------------------------------------

BAD = [
    ("", None, 1, "the file is empty; expected the header line 'frame,x0,y0,x1,y1,score'"),
    ("frame,x,y,w,h,score\n", None, 1, "expected the header line"),
    ("frame,x0,y0,x1,y1\n0,0.1,0.1,0.5,0.5\n", None, 1, "expected the header line"),
    (HEADER + "\n0,0.1,0.1,0.5\n", None, 2, "4 comma-separated values; expected 6"),
    (HEADER + "\n0,0.1,0.1,0.5,0.5,0.9,0.3\n", None, 2, "7 comma-separated values; expected 6"),
    (HEADER + "\n0,abc,0.1,0.5,0.5,0.9\n", None, 2, "x0 'abc' is not a number"),
    (HEADER + "\n0,0.1,nan,0.5,0.5,0.9\n", None, 2, "y0 'nan' is not a number"),
    (HEADER + "\n1.5,0.1,0.1,0.5,0.5,0.9\n", None, 2, "frame '1.5' is not a whole number"),
    (HEADER + "\n-1,0.1,0.1,0.5,0.5,0.9\n", None, 2, "frame -1 is negative"),
    (HEADER + "\n0,0.1,0.1,1.2,0.5,0.9\n", None, 2, "x1 = 1.2 is outside [0, 1]; expected a fraction of the frame's width"),
    (HEADER + "\n0,0.1,-0.1,0.5,0.5,0.9\n", None, 2, "y0 = -0.1 is outside [0, 1]; expected a fraction of the frame's height"),
    (HEADER + "\n0,0.1,0.1,0.5,0.5,1.5\n", None, 2, "score = 1.5 is outside [0, 1]; expected the detector's score"),
    (HEADER + "\n0,0.3,0.1,0.2,0.5,0.9\n", None, 2, "x1 = 0.2 is not right of x0 = 0.3; expected x0 < x1"),
    (HEADER + "\n0,0.3,0.1,0.3,0.5,0.9\n", None, 2, "x1 = 0.3 is not right of x0 = 0.3"),
    (HEADER + "\n0,0.1,0.5,0.5,0.4,0.9\n", None, 2, "y1 = 0.4 is not below y0 = 0.5"),
    # the blank line counts: the repeated frame is on line 4
    (HEADER + "\n3,0.1,0.1,0.5,0.5,0.9\n\n3,0.1,0.1,0.5,0.5,0.9\n", None, 4,
     "frame 3 does not come after frame 3 (line 2); expected frame indices strictly increasing"),
    (HEADER + "\n5,0.1,0.1,0.5,0.5,0.9\n2,0.1,0.1,0.5,0.5,0.9\n", None, 3, "frame 2 does not come after frame 5"),
    (HEADER + "\n4,0.1,0.1,0.5,0.5,0.9\n5,0.1,0.1,0.5,0.5,0.9\n", 5, 3,
     "frame 5 is beyond the video's 5 frames; expected a frame index in 0..4"),
    (HEADER_WITH_LANDMARKS + "\n0,0.1,0.1,0.5,0.5,0.9,1.5,0.4,0.6,0.4,0.5,0.5,0.45,0.6,0.55,0.6\n", None, 2,
     "le_x = 1.5 is outside [0, 1]"),
    (HEADER_WITH_LANDMARKS + "\n0,0.1,0.1,0.5,0.5,0.9\n", None, 2, "6 comma-separated values; expected 16"),
    (HEADER.encode() + b"\n0,0.1,0.1,0.5,0.5,0.9\xff\n", None, 2, "not UTF-8 text"),
]


@pytest.mark.parametrize("text,num_frames,line,expected", BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_track_names_file_line_and_what_was_expected(tmp_path, text, num_frames, line, expected):
    path = _write(tmp_path, text)
    with pytest.raises(FaceTrackError) as info:
        read_track(path, num_frames)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert expected in message, message


def test_missing_track_names_the_path_and_how_to_make_tracks(tmp_path):
    path = tmp_path / "faces_train" / "s012_c003.csv"
    with pytest.raises(FileNotFoundError) as info:
        read_track(path)
    assert isinstance(info.value, FaceTrackMissingError)
    assert str(path) in str(info.value)
    assert "scripts/detect_faces.py" in str(info.value)


def test_track_path_replaces_the_suffix_and_refuses_names_leading_elsewhere(tmp_path):
    assert track_path(tmp_path, "train", "s012_c003.mp4") == tmp_path / "faces_train" / "s012_c003.csv"
    assert track_path(tmp_path, "val", "sub/a.b.mp4") == tmp_path / "faces_val" / "sub" / "a.b.csv"
    with pytest.raises(ValueError, match="'..' component"):
        track_path(tmp_path, "train", "../x.mp4")


# --- filling the gaps ----------------------------------------------------------------------------------


def test_header_only_track_has_no_face(tmp_path):
    path = _write(tmp_path, HEADER + "\n")
    assert read_track(path).num_frames == 0 and not read_track(path).found
    track = read_track(path, num_frames=7)
    assert not track.found and track.num_frames == 7 and not track.detected.any()
    np.testing.assert_array_equal(track.boxes, np.tile([0.0, 0.0, 1.0, 1.0], (7, 1)))
    assert track.landmarks is None


def test_gaps_are_interpolated_and_ends_held(tmp_path):
    # detections at frames 2 and 6 (and a lone one at 8); 10 frames in all
    path = _write(tmp_path, HEADER + "\n"
                  "2,0.10,0.20,0.30,0.40,0.9\n"
                  "6,0.30,0.40,0.50,0.80,0.5\n"
                  "8,0.20,0.40,0.50,0.60,0.7\n")
    track = read_track(path, num_frames=10)
    expected_x0 = [0.10, 0.10, 0.10, 0.15, 0.20, 0.25, 0.30, 0.25, 0.20, 0.20]  # held, linear, held
    expected_y1 = [0.40, 0.40, 0.40, 0.50, 0.60, 0.70, 0.80, 0.70, 0.60, 0.60]
    np.testing.assert_allclose(track.boxes[:, 0], expected_x0, atol=1e-12)
    np.testing.assert_allclose(track.boxes[:, 3], expected_y1, atol=1e-12)
    np.testing.assert_allclose(track.boxes[4], [0.20, 0.30, 0.40, 0.60], atol=1e-12)
    assert track.detected.tolist() == [False, False, True, False, False, False, True, False, True, False]
    np.testing.assert_allclose(track.scores, [0, 0, 0.9, 0, 0, 0, 0.5, 0, 0.7, 0])
    assert track.found and track.landmarks is None
    # without the frame count the track ends at its last row
    assert read_track(path).num_frames == 9
    with pytest.raises(ValueError):
        track.boxes[0, 0] = 1.0  # read-only


def test_landmarks_are_filled_like_the_boxes(tmp_path):
    first = [0.40, 0.40, 0.60, 0.40, 0.50, 0.50, 0.45, 0.60, 0.55, 0.60]
    second = [0.44, 0.30, 0.64, 0.50, 0.54, 0.60, 0.49, 0.70, 0.59, 0.70]
    path = _write(tmp_path, HEADER_WITH_LANDMARKS + "\n"
                  f"1,0.3,0.3,0.7,0.7,0.9,{','.join(map(str, first))}\n"
                  f"5,0.3,0.3,0.7,0.7,0.9,{','.join(map(str, second))}\n")
    track = read_track(path, num_frames=7)
    assert track.landmarks.shape == (7, 5, 2)
    # frame 2 is a quarter of the way from frame 1 to frame 5
    np.testing.assert_allclose(track.landmarks[2, 0], [0.41, 0.375], atol=1e-12)  # left eye
    np.testing.assert_allclose(track.landmarks[2, 1], [0.61, 0.425], atol=1e-12)  # right eye
    np.testing.assert_allclose(track.landmarks[0].reshape(-1), first, atol=1e-12)
    np.testing.assert_allclose(track.landmarks[6].reshape(-1), second, atol=1e-12)


# --- the writer ------------------------------------------------------------------------------------------


def test_write_track_round_trips_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "faces_train" / "sub" / "a.csv"
    rows = [(0, 0.1, 0.2, 0.3, 0.4, 0.95), (3, 0.125, 0.25, 0.375, 0.5, 1.0)]
    write_track(path, rows)
    assert path.read_text() == (HEADER + "\n0,0.100000,0.200000,0.300000,0.400000,0.950000\n"
                                "3,0.125000,0.250000,0.375000,0.500000,1.000000\n")
    track = read_track(path, 4)
    np.testing.assert_allclose(track.boxes[[0, 3]], [r[1:5] for r in rows])
    assert os.listdir(path.parent) == ["a.csv"]
    write_track(tmp_path / "none.csv", [])
    assert (tmp_path / "none.csv").read_text() == HEADER + "\n"
    write_track(tmp_path / "none_lm.csv", [], landmarks=True)
    assert (tmp_path / "none_lm.csv").read_text() == HEADER_WITH_LANDMARKS + "\n"
    lm_row = (2, 0.3, 0.3, 0.7, 0.7, 0.8, *map(float, LM[1:].split(",")))
    write_track(tmp_path / "lm.csv", [lm_row])
    assert read_track(tmp_path / "lm.csv").landmarks.shape == (3, 5, 2)


def test_write_track_checks_rows_before_touching_the_file(tmp_path, monkeypatch):
    path = tmp_path / "a.csv"
    write_track(path, [(0, 0.1, 0.2, 0.3, 0.4, 0.9)])
    before = path.read_text()
    for bad, expected in [([(0, 0.3, 0.2, 0.1, 0.4, 0.9)], "x1 = 0.1 is not right of x0 = 0.3"),
                          ([(2, 0.1, 0.2, 0.3, 0.4, 0.9), (2, 0.1, 0.2, 0.3, 0.4, 0.9)], "strictly increasing"),
                          ([(0, 0.1, 0.2, 0.3, 1.4, 0.9)], "y1 = 1.4 is outside [0, 1]"),
                          ([(0, 0.1, 0.2, 0.3)], "expected 6")]:
        with pytest.raises(FaceTrackError, match=expected.replace("[", r"\[")):
            write_track(path, bad)
        assert path.read_text() == before
    # a failure while renaming (a full disk, say) leaves the old file and no temporary one

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError):
        write_track(path, [(1, 0.1, 0.2, 0.3, 0.4, 0.9)])
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["a.csv"]


# --- crops --------------------------------------------------------------------------------------------


def _track(tmp_path, rows, num_frames, name="c.csv"):
    return read_track(write_track(tmp_path / name, rows), num_frames)


H, W = 60, 100
RECT = (40, 20, 70, 40)  # x0, y0, x1, y1 in pixels: 30 wide, 20 high


@pytest.fixture
def rect_frames():
    frames = np.zeros((2, H, W, 3), np.uint8)
    x0, y0, x1, y1 = RECT
    frames[:, y0:y1, x0:x1] = 255
    return frames


def _rect_track(tmp_path):
    x0, y0, x1, y1 = RECT
    return _track(tmp_path, [(0, x0 / W, y0 / H, x1 / W, y1 / H, 0.9)], 2)


def test_crop_without_margin_is_the_box_squared(tmp_path, rect_frames):
    # Square of side 30 (the box's longer side) centred at (55, 30): x 40..70, y 15..45. At size 60 a
    # frame pixel is 2 crop pixels, so the rectangle (y 20..40) fills crop rows 10..49 and every column.
    crop = crop_faces(rect_frames, _rect_track(tmp_path), [0, 1], 60, margin=0.0)
    assert crop.shape == (2, 60, 60, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop[0], crop[1])
    gray = crop[0, :, :, 0]
    assert (gray[11:49, 1:59] == 255).all()
    assert (gray[:9] == 0).all() and (gray[51:] == 0).all()
    # The outer samples lie a quarter pixel from the rectangle's edge, so bilinear weights give 0.75 * 255
    # there: crop row 10 samples y = 15 + 10.5 / 2 = 20.25, between frame rows 19 (black) and 20 (white).
    assert (gray[11:49, [0, 59]] == 191).all() and (gray[[10, 49], 1:59] == 191).all()


def test_crop_margin_enlarges_the_square(tmp_path, rect_frames):
    # margin 0.5: side 30 * 2 = 60 centred at (55, 30): x 25..85, y 0..60; size 60 is one crop pixel per
    # frame pixel, so the rectangle sits at columns 15..44, rows 20..39 exactly.
    crop = crop_faces(rect_frames, _rect_track(tmp_path), [0, 1], 60, margin=0.5)[0, :, :, 0]
    expected = np.zeros((60, 60), np.uint8)
    expected[20:40, 15:45] = 255
    np.testing.assert_array_equal(crop, expected)


def test_crop_is_the_same_at_any_frame_size(tmp_path, rect_frames):
    big = rect_frames.repeat(3, axis=1).repeat(3, axis=2)  # 180 x 300, the same picture
    track = _rect_track(tmp_path)
    small_crop = crop_faces(rect_frames, track, [0, 0], 60, margin=0.5)
    big_crop = crop_faces(big, track, [0, 0], 60, margin=0.5)  # 3 frame pixels per crop pixel: averaged
    np.testing.assert_array_equal(big_crop, small_crop)


def test_crop_reaching_outside_the_frame_is_padded_black(tmp_path):
    frames = np.full((1, H, W, 3), 200, np.uint8)
    # a 20 x 20 box in the top-left corner, margin 0.5: side 40 centred at (10, 10), x and y -10..30
    track = _track(tmp_path, [(0, 0.0, 0.0, 20 / W, 20 / H, 0.9)], 1)
    crop = crop_faces(frames, track, [0], 40, margin=0.5)[0, :, :, 0]
    assert (crop[:10, :] == 0).all() and (crop[:, :10] == 0).all()
    assert (crop[10:, 10:] == 200).all()


def _eye_frame(left, right, nose, size=(120, 160)):
    frame = np.full((*size, 3), 90, np.uint8)
    for (x, y), colour in ((left, (255, 0, 0)), (right, (0, 0, 255)), (nose, (0, 255, 0))):
        frame[y - 2:y + 3, x - 2:x + 3] = colour
    return frame


def _centroid(crop, channel):
    others = [c for c in range(3) if c != channel]
    mask = (crop[..., channel] > 150) & (crop[..., others[0]] < 100) & (crop[..., others[1]] < 100)
    ys, xs = np.nonzero(mask)
    assert len(xs), f"mark of channel {channel} not in the crop"
    return xs.mean(), ys.mean()


def test_alignment_levels_the_eyes_without_mirroring(tmp_path):
    h, w = 120, 160
    left, right, nose = (60, 70), (100, 46), (86, 80)  # eyes tilted by atan2(-24, 40) = -31 degrees
    frame = _eye_frame(left, right, nose)
    box = (40 / w, 30 / h, 120 / w, 100 / h)
    lm = [left[0] / w, left[1] / h, right[0] / w, right[1] / h, nose[0] / w, nose[1] / h,
          70 / w, 90 / h, 95 / w, 90 / h]
    track = _track(tmp_path, [(0, *box, 0.9, *lm)], 1)
    size, margin = 96, 0.25
    aligned = crop_faces(frame[None], track, [0], size, align=True, margin=margin)[0]
    (lx, ly), (rx, ry), (_, ny) = _centroid(aligned, 0), _centroid(aligned, 2), _centroid(aligned, 1)
    assert abs(ly - ry) < 0.75, (ly, ry)  # level
    assert lx < rx  # the left eye stays on the left: a rotation, not a mirror
    scale = size / (80 * (1 + 2 * margin))  # crop pixels per frame pixel (box 80 x 70)
    assert rx - lx == pytest.approx(math.hypot(40, 24) * scale, abs=1.0)  # no scaling beyond the crop's
    assert ny > ly  # the nose is below the eyes
    plain = crop_faces(frame[None], track, [0], size, align=False, margin=margin)[0]
    (lx, ly), (rx, ry) = _centroid(plain, 0), _centroid(plain, 2)
    assert ly - ry == pytest.approx(24 * scale, abs=1.0)  # as tilted as in the frame
    assert rx - lx == pytest.approx(40 * scale, abs=1.0)


def test_track_without_landmarks_is_not_turned(tmp_path):
    frame = _eye_frame((60, 70), (100, 46), (86, 80))
    track = _track(tmp_path, [(0, 40 / 160, 30 / 120, 120 / 160, 100 / 120, 0.9)], 1)
    a = crop_faces(frame[None], track, [0], 64, align=True)
    b = crop_faces(frame[None], track, [0], 64, align=False)
    np.testing.assert_array_equal(a, b)


def test_no_face_gives_the_whole_frame_resized(tmp_path):
    frames = np.zeros((3, 40, 80, 3), np.uint8)
    frames[:, :20, :40] = (255, 0, 0)
    frames[:, :20, 40:] = (0, 255, 0)
    frames[:, 20:, :40] = (0, 0, 255)
    frames[:, 20:, 40:] = (255, 255, 255)
    track = read_track(write_track(tmp_path / "none.csv", []), 10)
    crop = crop_faces(frames, track, [0, 4, 9], 32)
    assert crop.shape == (3, 32, 32, 3)
    # away from the middle lines each quadrant keeps its colour
    np.testing.assert_array_equal(crop[:, 2:14, 2:14], np.broadcast_to([255, 0, 0], (3, 12, 12, 3)))
    np.testing.assert_array_equal(crop[:, 2:14, 18:30], np.broadcast_to([0, 255, 0], (3, 12, 12, 3)))
    np.testing.assert_array_equal(crop[:, 18:30, 2:14], np.broadcast_to([0, 0, 255], (3, 12, 12, 3)))
    np.testing.assert_array_equal(crop[:, 18:30, 18:30], np.broadcast_to([255, 255, 255], (3, 12, 12, 3)))


def test_crops_follow_an_interpolated_track_through_a_real_clip(tmp_path):
    # A white 16 x 16 square moves 4 pixels right per frame over 12 frames of a 64 x 96 clip; the track has
    # the square's box on frames 0 and 11 only, so the frames between rely on interpolation.
    t, h, w = 12, 64, 96
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i, 24:40, 8 + 4 * i:24 + 4 * i] = 255
    clip = write_clip(tmp_path / "moving.mp4", frames, crf=0, preset="ultrafast")
    rows = [(i, (8 + 4 * i) / w, 24 / h, (24 + 4 * i) / w, 40 / h, 0.9) for i in (0, 11)]
    track = _track(tmp_path, rows, t)
    indices = np.array([0, 3, 6, 9, 11])
    decoded = read_frames(clip, lambda n: indices)
    crops = crop_faces(decoded, track, indices, 32, margin=0.5)  # the square fills the middle 16 x 16
    for crop in crops:
        bright = crop[..., 0] > 128
        ys, xs = np.nonzero(bright)
        assert (xs.min(), xs.max(), ys.min(), ys.max()) == (8, 23, 8, 23)


def test_crop_arguments_are_checked(tmp_path, rect_frames):
    track = _rect_track(tmp_path)
    with pytest.raises(ValueError, match="one index per frame"):
        crop_faces(rect_frames, track, [0], 32)
    with pytest.raises(ValueError, match="uint8"):
        crop_faces(rect_frames.astype(np.float32), track, [0, 1], 32)
    with pytest.raises(ValueError, match=">= 0"):
        crop_faces(rect_frames, track, [0, -1], 32)
    # past the track's end its last row is held
    np.testing.assert_array_equal(crop_faces(rect_frames, track, [1, 50], 32)[1],
                                  crop_faces(rect_frames, track, [1, 1], 32)[1])
