"""Reading an offline W&B run as it lies on disk: ``<run>/wandb/offline-run-<time>-<id>/run-<id>.wandb``.

The ``.wandb`` file is W&B's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
LevelDB-log records in 32 KiB blocks (each record: CRC-32 of its type byte and data, length, type FULL/FIRST/
MIDDLE/LAST, data), whose payloads are ``wandb.proto.wandb_internal_pb2.Record`` messages. This reader is
written here from that format (the W&B client no longer ships a Python reader), so the tests read what W&B
would upload, not what our code meant to send.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

BLOCK = 32768
RECORD_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    """Every record of a ``.wandb`` file, in order; a bad header or checksum fails the reading."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    pos, pending = 7, b""
    while pos + RECORD_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < RECORD_HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + RECORD_HEADER])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk = data[pos + RECORD_HEADER:pos + RECORD_HEADER + length]
        assert zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF == crc, f"{path}: bad checksum at byte {pos}"
        pos += RECORD_HEADER + length
        if kind == FULL:
            yield pb.Record.FromString(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pb.Record.FromString(pending + chunk)
            pending = b""


def _path(item) -> list[str]:
    return list(item.nested_key) if item.nested_key else [item.key]


def _set(target: dict, path: list[str], value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


@dataclass
class OfflineRun:
    """What one offline run holds: its id, name and group, config, summary (final), history rows, metric
    definitions and artifacts."""

    folder: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    metrics: list[Any] = field(default_factory=list)
    # the logged artifacts (W&B's ArtifactRecord: name, type, aliases, metadata JSON, manifest entries)
    artifacts: list[Any] = field(default_factory=list)

    @property
    def files(self) -> Path:
        return self.folder / "files"

    def media(self, key: str) -> Path:
        """The file a media summary value (image, table) of ``key`` points to."""
        return self.files / self.summary[key]["path"]

    def table(self, key: str) -> dict:
        """A logged ``wandb.Table``: ``{"columns": [...], "data": [[...], ...]}``."""
        return json.loads(self.media(key).read_text())


def read_run(folder: Path) -> OfflineRun:
    (log,) = Path(folder).glob("run-*.wandb")
    run = OfflineRun(Path(folder))
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.name, run.group = record.run.run_id, record.run.display_name, record.run.run_group
            for item in record.run.config.update:
                _set(run.config, _path(item), json.loads(item.value_json))
        elif kind == "config":
            for item in record.config.update:
                _set(run.config, _path(item), json.loads(item.value_json))
        elif kind == "summary":
            for item in record.summary.update:
                _set(run.summary, _path(item), json.loads(item.value_json))
        elif kind == "history":
            run.history.append({"/".join(_path(i)): json.loads(i.value_json) for i in record.history.item})
        elif kind == "metric":
            run.metrics.append(record.metric)
        elif kind == "artifact":
            run.artifacts.append(record.artifact)
    return run


def offline_runs(run_dir: Path) -> list[OfflineRun]:
    """The offline W&B runs of a run folder, oldest first."""
    return [read_run(p) for p in sorted((Path(run_dir) / "wandb").glob("offline-run-*"))]
