"""scripts/bench_loader.py runs end to end at a tiny size and prints its table and JSON line.
Times are never asserted: only that every figure is there and is a positive number."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import av
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_loader.py"
KEYS = {"decode_clips_per_s_per_core", "floor_clips_per_s_per_core", "decode_over_floor", "cache_speedup",
        "loader_clips_per_s"}


def _run(*args, timeout=180):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def test_bench_prints_table_and_json_last(tmp_path):
    work = tmp_path / "work"
    out = _run("--release-size", "96x112", "--short-side", "32", "--clips", "3", "--frames", "12", "16",
               "--repeat", "1", "--loader-clips", "6", "--workers", "1", "--batch-size", "2",
               "--work-dir", str(work))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert KEYS <= set(result)
    for key in KEYS:
        assert isinstance(result[key], (int, float)) and result[key] > 0, (key, result[key])
    assert result["loader_workers"] == 1
    assert result["decode_over_floor"] == round(result["floor_clips_per_s_per_core"]
                                                / result["decode_clips_per_s_per_core"], 3)
    table = [ln for ln in lines if ln.startswith("|")]
    assert table[0].startswith("| clips | size | MB/clip | floor | read_frames | decode path")
    assert table[2].startswith("| release | 96x112 |") and table[3].startswith("| cache | 32x38 |")
    assert any(ln.startswith("DataLoader, 1 workers") for ln in lines)
    # The clips it made are MA-52-shaped: portrait, 30 fps, 12-16 frames, one keyframe, audio beside video.
    clips = sorted((work / "release" / "videos_val").glob("*.mp4"))
    assert len(clips) == 3
    for clip in clips:
        with av.open(str(clip)) as c:
            assert sorted(s.type for s in c.streams) == ["audio", "video"]
            v = c.streams.video[0]
            assert v.average_rate == 30
            packets = [p for p in c.demux(v) if p.size]
        assert 12 <= len(packets) <= 16
        assert sum(p.is_keyframe for p in packets) == 1


def test_bench_rejects_bad_arguments_before_any_work(capsys):
    spec = importlib.util.spec_from_file_location("bench_loader", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for args, message in ((["--release-size", "1080by1296"], "expected WIDTHxHEIGHT"),
                          (["--release-size", "1081x1296"], "sizes must be even"),
                          (["--frames", "75", "45"], "--frames MIN <= MAX")):
        with pytest.raises(SystemExit) as exc:
            bench.main(args)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
