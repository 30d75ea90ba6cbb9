"""MA-52-Pro: long videos, one emotion and several micro-actions each, and a face track per video.

The layout (docs/ma52pro.md)::

    <root>/train_list_videos.txt  val_list_videos.txt  test_list_videos.txt
        `<video> <emotion id> <fine id>[,<fine id>...]` per line
    <root>/emotion_name.txt      "<emotion id>\\t<name>" per line (joy, sadness, surprise, fear, anger)
    <root>/label_name.txt        optional: the 52 micro-action names, as MA-52's
    <root>/videos_<split>/       the videos
    <root>/faces_<split>/        one face track per video (data/faces.py; scripts/detect_faces.py)

A sample holds the body clip (``video``, as MA-52's: T frames over the whole video, cropped and
resized), the face clip (``face``: the same T frames cropped around the tracked face, aligned by the
eyes when the track has landmarks; with ``face_short_side`` larger than ``short_side`` the frames are
decoded at that size for the face crops and scaled down to ``short_side`` for the body clip), the ``emotion`` id, the ``actions`` as a multi-hot vector over the
52 classes and ``face_found`` (False: the video's track holds no face and ``face`` is the whole frame).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torchvision.transforms.v2.functional import resize

from ..labels import EMOTIONS, LabelSpace
from ..utils.checks import ConfigError, check_data_settings
from .annotations import AnnotationError, list_path, read_label_names, read_pro_list
from .datamodule import ClipDataModule
from .dataset import MA52Dataset
from .faces import DEFAULT_MARGIN, FaceTrack, FaceTrackMissingError, crop_faces, read_track, track_path
from .transforms import CenterCrop, MultiScaleCrop
from .video import scaled_size

log = logging.getLogger(__name__)

LAYOUT_HELP = """expected the MA-52-Pro layout (docs/ma52pro.md):
  <root>/train_list_videos.txt  val_list_videos.txt  test_list_videos.txt
        ("<video> <emotion id> <fine id>[,<fine id>...]" per line)
  <root>/emotion_name.txt       ("<emotion id>\\t<name>" per line)
  <root>/label_name.txt         (optional: "<fine id>\\t<name>" per line)
  <root>/videos_train/  videos_val/  videos_test/     (the videos the lists name)
  <root>/faces_train/   faces_val/   faces_test/      (a face track per video: scripts/detect_faces.py)"""


def read_emotion_names(root: Path) -> list[str]:
    """``<root>/emotion_name.txt``: five names, ids 0..4 once each."""
    path = Path(root) / "emotion_name.txt"
    if not path.is_file():
        raise FileNotFoundError(f"emotion names not found: {path}\n{LAYOUT_HELP}")
    return read_label_names(path, len(EMOTIONS))


def decode_short_side(short_side: int | None, face_short_side: int | None) -> int | None:
    """The short side the frames are decoded at: the larger of the body clip's (``short_side``) and the face
    crops' (``face_short_side``; None: the body's); None (as stored) when either asks for that."""
    if face_short_side is None or short_side is None:
        return short_side
    return max(short_side, face_short_side)


def body_frames(clip: torch.Tensor, short_side: int | None) -> torch.Tensor:
    """uint8 [T, 3, H, W] frames scaled (antialiased) so their short side is ``short_side``: the body clip's
    frames when they were decoded larger for the face crops. Unchanged when ``short_side`` is None or the
    short side is already at most ``short_side``."""
    _, _, h, w = clip.shape
    if short_side is None or min(h, w) <= short_side:
        return clip
    width, height = scaled_size(w, h, short_side)
    return resize(clip, [height, width], antialias=True)


class MA52ProDataset(MA52Dataset):
    """One sample per list line of an MA-52-Pro split (module docstring); decoding, skipping and
    reporting undecodable clips as ``MA52Dataset``. ``face_transform`` is applied to the face clip
    ([T, 3, S, S] uint8) in training (a horizontal flip), nothing at evaluation."""

    def __init__(self, *args, face_size: int = 112, face_margin: float = DEFAULT_MARGIN, align_faces: bool = True,
                 flip_faces_p: float = 0.0, face_short_side: int | None = None, **kwargs):
        self.face_size = face_size
        self.face_margin = face_margin
        self.align_faces = align_faces
        self.flip_faces_p = flip_faces_p
        # each video's face track, read once per process (a few kB each; workers fill their own copy)
        self._tracks: dict[str, FaceTrack] = {}
        super().__init__(*args, **kwargs)
        # frames are decoded at the larger side; the body clip is scaled down to its own
        self.body_short_side = self.short_side
        self.short_side = decode_short_side(self.short_side, face_short_side)

    def track(self, name: str) -> FaceTrack:
        """The face track of video ``name`` of this split (read on first use, then kept)."""
        track = self._tracks.get(name)
        if track is None:
            track = self._tracks[name] = read_track(track_path(self.root, self.split, name))
        return track

    def read_records(self) -> list:
        emotions = self.label_space.label_set("emotion")
        return read_pro_list(list_path(self.root, self.split), len(emotions.classes), self.label_space.num_classes)

    def _check_files(self) -> None:
        super()._check_files()
        missing = [r for r in self.records if not track_path(self.root, self.split, r.name).is_file()]
        if missing:
            shown = "\n".join(f"  {list_path(self.root, self.split)}:{r.line}: "
                              f"{track_path(self.root, self.split, r.name)}" for r in missing[:10])
            more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise FaceTrackMissingError(
                f"{len(missing)} of {len(self.records)} videos of split '{self.split}' have no face track:\n{shown}{more}\n"
                f"Write them with: python scripts/detect_faces.py {self.root}"
            )

    def labels(self) -> list[int]:
        return [r.emotion for r in self.records]

    def no_face(self) -> list[str]:
        """The videos of this split whose track holds no face (their face clip is the whole frame)."""
        return [r.name for r in self.records if not self.track(r.name).found]

    def make_sample(self, rec, frames: np.ndarray, indices: np.ndarray) -> dict:
        track = self.track(rec.name)
        faces = crop_faces(frames, track, indices, self.face_size, align=self.align_faces, margin=self.face_margin)
        face = torch.from_numpy(faces).permute(0, 3, 1, 2)
        if self.train and self.flip_faces_p and torch.rand(()) < self.flip_faces_p:
            face = face.flip(-1)
        video = self.transform_clip(body_frames(torch.from_numpy(frames).permute(0, 3, 1, 2), self.body_short_side))
        sample = {"video": video, "face": face.contiguous(), "face_found": track.found}
        if self.labelled:
            actions = torch.zeros(self.label_space.num_classes)
            actions[list(rec.actions)] = 1.0
            sample.update(emotion=rec.emotion, actions=actions)
        return sample


class MA52ProDataModule(ClipDataModule):
    """MA-52-Pro train/val/test loaders: body and face clips of ``num_segments`` frames spread over the whole
    video (5 s to over 100 s; frames are reached by seeking, not by decoding everything before them), the
    emotion and the multi-hot micro-actions. ``face_size`` is the face clip's side, ``face_margin`` the part of
    the face box added on each side, ``align_faces`` turns each crop so the eyes are level (tracks with
    landmarks). A video whose track holds no face gets the whole frame as its face clip: such videos are
    counted per split when the data is set up (``no_face``), logged, and flagged per sample (``face_found``).

    The other settings are MA-52's (``MA52DataModule``); the test list carries real labels
    (``test_has_labels`` true). ``generate="procedural_pro"`` writes the stand-in dataset first.
    """

    layout_help = LAYOUT_HELP
    video_keys = ("video", "face")

    def __init__(
        self,
        root: str,
        num_segments: int = 16,
        input_size: int | Sequence[int] = 224,
        short_side: int | None = 256,
        scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
        flip_p: float = 0.5,
        face_size: int = 112,
        face_margin: float = DEFAULT_MARGIN,
        align_faces: bool = True,
        face_short_side: int | None = None,
        batch_size: int = 3,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int | None = 2,
        on_decode_error: str = "auto",
        max_skipped_fraction: float = 0.01,
        decode_threads: int = 1,
        manifest: str | bool | None = "auto",
        test_has_labels: bool = True,
        generate: str | None = None,
        generate_kwargs: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        check_data_settings(self.hparams)
        problems = []
        if not isinstance(face_size, int) or isinstance(face_size, bool) or face_size < 8:
            problems.append(f"data.face_size={face_size!r}: expected an integer >= 8 (pixels)")
        if not isinstance(face_margin, (int, float)) or isinstance(face_margin, bool) or not 0 <= face_margin <= 2:
            problems.append(f"data.face_margin={face_margin!r}: expected a number in [0, 2] (of the face box's side)")
        if not isinstance(align_faces, bool):
            problems.append(f"data.align_faces={align_faces!r}: expected true or false")
        if face_short_side is not None and (not isinstance(face_short_side, int) or isinstance(face_short_side, bool)
                                            or face_short_side < 8):
            problems.append(f"data.face_short_side={face_short_side!r}: expected an integer >= 8 (pixels) or null "
                            "(the body clip's data.short_side)")
        if problems:
            raise ConfigError(problems)
        self.init_clips(root, num_workers, generate)
        self.no_face: dict[str, list[str]] = {}

    @property
    def label_space(self) -> LabelSpace:
        """MA-52-Pro's: the 52 micro-actions (multi-label) and the five emotions, named by the root's
        ``label_name.txt`` (optional) and ``emotion_name.txt``."""
        if self._label_space is None:
            if self.root is None:
                raise ValueError(f"data.root is not set: point it at the dataset root.\n{LAYOUT_HELP}")
            names_file = self.root / "label_name.txt"
            names = read_label_names(names_file) if names_file.is_file() else None
            self._label_space = LabelSpace.ma52pro(names, read_emotion_names(self.root))
        return self._label_space

    def list_file(self, split: str) -> Path:
        return list_path(self.root, split)

    def read_records(self, split: str) -> list:
        return read_pro_list(self.list_file(split), len(self.label_space.label_set("emotion").classes),
                             self.label_space.num_classes)

    def check_test_labels(self) -> None:
        records = self.read_records("test")
        if len(records) > 1 and len({(r.emotion, r.actions) for r in records}) == 1:
            raise AnnotationError(f"{self.list_file('test')}: data.test_has_labels=true, but all {len(records)} lines "
                                  "carry the same labels: placeholders, not ground truth; use data.test_has_labels=false")

    def make_dataset(self, split: str) -> MA52ProDataset:
        hp = self.hparams
        train = split == "train"
        transform = (
            MultiScaleCrop(hp.input_size, scales=hp.scales, flip_p=hp.flip_p) if train else CenterCrop(hp.input_size)
        )
        dataset = MA52ProDataset(
            self.root,
            split,
            num_segments=hp.num_segments,
            train=train,
            transform=transform,
            short_side=hp.short_side,
            on_decode_error=self.decode_mode(split),
            decode_threads=hp.decode_threads,
            label_space=self.label_space,
            labelled=self.labelled(split),
            manifest=hp.manifest,
            face_size=hp.face_size,
            face_margin=hp.face_margin,
            align_faces=hp.align_faces,
            face_short_side=hp.get("face_short_side"),
            flip_faces_p=hp.flip_p if train else 0.0,
        )
        # every track read once here: a malformed one stops the run now, naming its file and line
        self.no_face[split] = dataset.no_face()
        if self.no_face[split]:
            shown = ", ".join(self.no_face[split][:10])
            log.warning("split %s: %d of %d videos have no face in their track; their face clip is the whole frame: "
                        "%s%s", split, len(self.no_face[split]), len(dataset), shown,
                        " ..." if len(self.no_face[split]) > 10 else "")
        return dataset
