"""Official list files (``<video> <fine id>``) and ``label_name.txt``."""

from __future__ import annotations

import pytest

from microaction.classes import class_table
from microaction.data.annotations import (
    LAYOUT_HELP,
    AnnotationError,
    ClipRecord,
    UnsafeNameError,
    list_path,
    name_problem,
    read_label_names,
    read_list,
    video_dir,
)


def _write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return path


def test_official_lines_parse_with_line_numbers(tmp_path):
    p = _write(tmp_path / "train_list_videos.txt", "0003_01_0001.mp4 9\n0001_06_0002.mp4 51\ntest0007.mp4 0\n")
    recs = read_list(p)
    assert recs == [
        ClipRecord("0003_01_0001.mp4", 9, 1),
        ClipRecord("0001_06_0002.mp4", 51, 2),
        ClipRecord("test0007.mp4", 0, 3),
    ]
    assert all(type(r.label) is int for r in recs)


def test_blank_lines_ignored_and_line_numbers_stay_physical(tmp_path):
    text = "\n0003_01_0001.mp4 9\n\n   \n0004_02_0002.mp4 12\r\n\t\n0005_03_0003.mp4   24\n\n\n"
    recs = read_list(_write(tmp_path / "l.txt", text))
    assert [(r.name, r.label, r.line) for r in recs] == [
        ("0003_01_0001.mp4", 9, 2),
        ("0004_02_0002.mp4", 12, 5),
        ("0005_03_0003.mp4", 24, 7),
    ]


def test_last_line_without_newline(tmp_path):
    recs = read_list(_write(tmp_path / "l.txt", "a.mp4 1\nb.mp4 2"))
    assert [(r.name, r.label) for r in recs] == [("a.mp4", 1), ("b.mp4", 2)]
    # A single line with no newline at all.
    assert read_list(_write(tmp_path / "one.txt", "c.mp4 51")) == [ClipRecord("c.mp4", 51, 1)]


@pytest.mark.parametrize("label", ["52", "-1", "100"])
def test_label_out_of_range_names_file_and_line(tmp_path, label):
    p = _write(tmp_path / "val_list_videos.txt", f"a.mp4 0\n\nb.mp4 {label}\nc.mp4 3\n")
    with pytest.raises(AnnotationError) as exc:
        read_list(p)
    msg = str(exc.value)
    assert f"{p}:3" in msg
    assert label in msg


def test_label_bounds_are_inclusive_0_to_51(tmp_path):
    recs = read_list(_write(tmp_path / "l.txt", "a.mp4 0\nb.mp4 51\n"))
    assert [r.label for r in recs] == [0, 51]


def test_num_classes_limits_labels(tmp_path):
    p = _write(tmp_path / "l.txt", "a.mp4 6\nb.mp4 7\n")
    assert len(read_list(p, num_classes=8)) == 2
    with pytest.raises(AnnotationError, match=r"l\.txt:2"):
        read_list(p, num_classes=7)


@pytest.mark.parametrize(
    "bad",
    ["0003_01_0001.mp4", "0003_01_0001.mp4 9 1", "0003_01_0001.mp4 nine", "0003_01_0001.mp4 9.0", "9 0003_01_0001.mp4"],
)
def test_malformed_line_names_file_and_line(tmp_path, bad):
    p = _write(tmp_path / "train_list_videos.txt", f"x.mp4 1\ny.mp4 2\n\n{bad}\nz.mp4 3")
    with pytest.raises(AnnotationError) as exc:
        read_list(p)
    assert f"{p}:4" in str(exc.value)


def test_annotation_error_is_value_error():
    assert issubclass(AnnotationError, ValueError)


def test_duplicate_name_names_both_lines(tmp_path):
    p = _write(tmp_path / "l.txt", "a.mp4 1\nb.mp4 2\n\na.mp4 1\n")
    with pytest.raises(AnnotationError) as exc:
        read_list(p)
    msg = str(exc.value)
    assert f"{p}:4" in msg
    assert "a.mp4" in msg
    assert "line 1" in msg


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_list_is_an_error(tmp_path, text):
    p = _write(tmp_path / "test_list_videos.txt", text)
    with pytest.raises(AnnotationError) as exc:
        read_list(p)
    assert str(p) in str(exc.value)


def test_missing_list_names_path_and_layout(tmp_path):
    p = list_path(tmp_path / "nowhere", "val")
    with pytest.raises(FileNotFoundError) as exc:
        read_list(p)
    msg = str(exc.value)
    assert str(p) in msg
    assert LAYOUT_HELP in msg
    for part in ("train_list_videos.txt", "val_list_videos.txt", "test_list_videos.txt", "videos_train"):
        assert part in msg


@pytest.mark.parametrize("name,reason", [
    ("/etc/passwd", "is an absolute path"),
    ("//server/share/a.mp4", "is an absolute path"),
    ("../a.mp4", "has a '..' component"),
    ("sub/../../a.mp4", "has a '..' component"),
    ("..", "has a '..' component"),
    ("./a.mp4", "has a '.' component"),
    ("sub//a.mp4", "has an empty component"),
    ("sub/", "has an empty component"),
    ("..\\..\\a.mp4", "contains a backslash"),
    ("C:a.mp4", "starts with a drive (C:)"),
    ("a\x00.mp4", "control character"),
])
def test_name_outside_the_videos_folder_names_file_and_line(tmp_path, name, reason):
    p = _write(tmp_path / "train_list_videos.txt", f"a.mp4 1\n\n{name} 2\nz.mp4 3\n")
    with pytest.raises(UnsafeNameError) as exc:
        read_list(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}:3: video name {name!r} ") and reason in msg
    assert "expected a relative path inside videos_train/" in msg
    assert isinstance(exc.value, AnnotationError)  # callers that catch list errors catch this one too
    assert name_problem(name) is not None


@pytest.mark.parametrize("name", ["0003_01_0001.mp4", "sub/a.mp4", "a..b.mp4", "...mp4", ".hidden.mp4", "ab:c.mp4"])
def test_plain_relative_names_are_accepted(tmp_path, name):
    assert name_problem(name) is None
    assert read_list(_write(tmp_path / "val_list_videos.txt", f"{name} 4\n")) == [ClipRecord(name, 4, 1)]


def test_unsafe_name_in_another_list_file_says_which_folder(tmp_path):
    p = _write(tmp_path / "subset.txt", "/abs/a.mp4 1\n")
    with pytest.raises(UnsafeNameError, match=r"subset\.txt:1: .*inside the split's videos folder"):
        read_list(p)


def test_line_that_is_not_utf8_names_file_and_line(tmp_path):
    p = tmp_path / "val_list_videos.txt"
    p.write_bytes(b"a.mp4 1\r\nb.mp4 2\n\xff\xfe.mp4 3\n")
    with pytest.raises(AnnotationError, match=rf"{p}:3: not UTF-8 text"):
        read_list(p)


def test_training_dataset_refuses_a_name_outside_its_folder(tmp_path, marker_clip):
    """MA52Dataset reads its list through read_list, so training gets the same check."""
    from microaction.data.dataset import MA52Dataset

    root = tmp_path / "root"
    video_dir(root, "val").mkdir(parents=True)
    outside = marker_clip("outside.mp4", num_frames=4)  # a real clip next to the root, not in it
    _write(list_path(root, "val"), f"../../{outside.name} 3\n")
    with pytest.raises(UnsafeNameError, match=rf"{list_path(root, 'val')}:1: .*'\.\.' component"):
        MA52Dataset(root, "val", short_side=None)


def test_layout_paths(tmp_path):
    assert list_path(tmp_path, "train") == tmp_path / "train_list_videos.txt"
    assert video_dir(tmp_path, "test") == tmp_path / "videos_test"


# --- label_name.txt ---------------------------------------------------------------


def _label_file(tmp_path, lines, sep="\t"):
    return _write(tmp_path / "label_name.txt", "".join(f"{i}{sep}{n}\n" for i, n in lines))


def test_label_names_tab_separated_multiword(tmp_path):
    names = class_table().fine_names
    p = _label_file(tmp_path, list(enumerate(names)))
    assert read_label_names(p) == list(names)
    assert "shaking body" in read_label_names(p)


def test_label_names_any_order_and_blank_lines(tmp_path):
    lines = [(i, f"name {i}") for i in reversed(range(52))]
    p = _write(tmp_path / "label_name.txt", "\n".join(f"{i}\t{n}" for i, n in lines) + "\n\n")
    assert read_label_names(p) == [f"name {i}" for i in range(52)]


def test_label_names_missing_ids_listed(tmp_path):
    p = _label_file(tmp_path, [(i, f"n{i}") for i in range(52) if i not in (3, 40)])
    with pytest.raises(AnnotationError) as exc:
        read_label_names(p)
    msg = str(exc.value)
    assert str(p) in msg
    assert "[3, 40]" in msg


def test_label_names_repeated_or_out_of_range_id(tmp_path):
    p = _write(tmp_path / "a.txt", "0\tx\n1\ty\n1\tz\n")
    with pytest.raises(AnnotationError, match=r"a\.txt:3"):
        read_label_names(p, num_classes=2)
    p = _write(tmp_path / "b.txt", "0\tx\n2\ty\n")
    with pytest.raises(AnnotationError, match=r"b\.txt:2"):
        read_label_names(p, num_classes=2)


@pytest.mark.parametrize("bad", ["x\tname", "5", "-1\tname"])
def test_label_names_malformed_line(tmp_path, bad):
    p = _write(tmp_path / "label_name.txt", f"0\ta\n{bad}\n")
    with pytest.raises(AnnotationError, match=r"label_name\.txt:2"):
        read_label_names(p, num_classes=2)


def test_label_names_small_table(tmp_path):
    p = _write(tmp_path / "label_name.txt", "1\tsecond class\n0\tfirst\n")
    assert read_label_names(p, num_classes=2) == ["first", "second class"]
