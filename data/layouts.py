"""Where each dataset keeps its clips on disk, and what their labels, groups and splits are.

`list_clips(dataset, root)` turns a dataset folder into a sorted list of `ClipInfo`; nothing is decoded
here. Layouts (docs/DESIGN.md, "Dataset facts"):

- `ucf11`: `<class>/v_<prefix>_GG/v_<prefix>_GG_CC.mpg` (class `basketball` uses prefix `shooting`);
  label = class folder, group = class + GG (the clips of a group come from one source video).
- `hollywood2`: `AVIClips/<clip>.avi` with `ClipSets/<Action>_{train,test}.txt` lines `<clip> 1|-1`;
  multi-label (every action whose line says 1), split from the ClipSets file name.
- `celebrities` (YouTube Celebrities): a flat folder of `.avi` files named like
  `0001_01_002_adam_sandler.avi`; the label is the name after the leading number fields.
Clip ids, labels and groups are printable names (preprocessing/names.py): any file name works.

- `folder`: any tree of videos; label = the parent folder's name; when the first folder under the root
  is `train`, `val` or `test`, that is the split (the demo set is `train/<class>/*.mp4`, `test/...`).
  Without split folders, the files of a class named `<source>_<group>_<clip>` (UCF style, e.g.
  `v_jump_03_01.avi`) get source groups (`_name_groups`), so group-aware splits keep a source together.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from preprocessing.names import printable_name

DATASETS = ("folder", "ucf11", "hollywood2", "celebrities")

# Frame sizes (width, height) of the TT-RNN paper; the demo folder uses UCF11's.
_DEFAULT_SIZES = {
    "folder": (160, 120),
    "ucf11": (160, 120),
    "hollywood2": (234, 100),
    "celebrities": (160, 120),
}

# The project's fps (the mission's); reproduction configs pass the paper's (12 for Hollywood2 and
# YouTube Celebrities) explicitly.
DEFAULT_FPS = 24.0

VIDEO_EXTENSIONS = frozenset(
    {".avi", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv", ".ts"}
)

HOLLYWOOD2_ACTIONS = (
    "AnswerPhone", "DriveCar", "Eat", "FightPerson", "GetOutCar", "HandShake",
    "HugPerson", "Kiss", "Run", "SitDown", "SitUp", "StandUp",
)  # fmt: skip

SPLIT_FOLDERS = ("train", "val", "test")


class LayoutError(Exception):
    """The folder does not look like the dataset it was said to be (message names what is missing)."""


@dataclass(frozen=True)
class ClipInfo:
    """One clip of a dataset, before decoding."""

    clip_id: str  # unique within the dataset and stable across runs: sorting, sharding, cache names
    path: Path  # the video file (root joined with its relative path)
    labels: tuple[str, ...]  # class names; several for multi-label datasets, () when unlabeled
    group: str | None  # clips sharing a group come from one source video (group-aware folds)
    split: str | None  # "train" / "val" / "test" when the dataset defines one


def default_size(dataset: str) -> tuple[int, int]:
    """(width, height) the dataset is cached at unless told otherwise."""
    _check_dataset(dataset)
    return _DEFAULT_SIZES[dataset]


def default_fps(dataset: str) -> float:
    _check_dataset(dataset)
    return DEFAULT_FPS


def list_clips(dataset: str, root: str | os.PathLike) -> list[ClipInfo]:
    """All clips of `dataset` under `root`, sorted by clip id. Raises LayoutError when none are found."""
    _check_dataset(dataset)
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"dataset root {root} is not a folder")
    clips = {"folder": _folder, "ucf11": _ucf11, "hollywood2": _hollywood2, "celebrities": _celebrities}[
        dataset
    ](root)
    clips = [_printable(c) for c in clips]
    if not clips:
        raise LayoutError(f"no {dataset} clips found under {root} (expected: {_EXPECTED[dataset]})")
    dupes = sorted(i for i, n in Counter(c.clip_id for c in clips).items() if n > 1)
    if dupes:
        raise LayoutError(f"clip ids occur twice under {root}: {', '.join(dupes[:5])}")
    return sorted(clips, key=lambda c: c.clip_id)


def _printable(clip: ClipInfo) -> ClipInfo:
    """Ids, labels and groups come from file names: keep them as text that can be written anywhere
    (preprocessing/names.py: unchanged for valid UTF-8 names, reversible for any other)."""
    return ClipInfo(
        printable_name(clip.clip_id), clip.path, tuple(printable_name(label) for label in clip.labels),
        None if clip.group is None else printable_name(clip.group), clip.split,
    )


_EXPECTED = {
    "folder": "video files in class folders, optionally under train/ val/ test/",
    "ucf11": "<class>/v_<prefix>_GG/v_<prefix>_GG_CC.mpg",
    "hollywood2": "AVIClips/*.avi and ClipSets/<Action>_{train,test}.txt",
    "celebrities": "a flat folder of .avi files named <numbers>_<first>_<last>.avi",
}


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise LayoutError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


def _is_video(p: Path) -> bool:
    return p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".") and p.is_file()


def _folder(root: Path) -> list[ClipInfo]:
    clips = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not _is_video(path):
                continue
            rel = path.relative_to(root)
            parts = rel.parts
            split = parts[0].lower() if len(parts) > 1 and parts[0].lower() in SPLIT_FOLDERS else None
            # Label = parent folder, unless the file sits right in the root or right in a split folder.
            label_depth = 2 if split else 1
            labels = (parts[-2],) if len(parts) > label_depth else ()
            clips.append(ClipInfo(rel.as_posix(), path, labels, None, split))
    if not any(c.split for c in clips):
        clips = _name_groups(clips)
    return clips


# `<source>_<group>_<clip>` as UCF11 (`v_jump_03_01`) and UCF101 (`v_Jump_g03_c01`) name their clips
_GROUP_CLIP = re.compile(r"^(?P<group>.+[_-][a-z]?\d+)[_-][a-z]?\d+$", re.IGNORECASE)


def _name_groups(clips: list[ClipInfo]) -> list[ClipInfo]:
    """Source groups from file names, for a tree without train/ and test/: in a class whose files ALL
    end in two number fields (`v_jump_03_01.avi`, `v_jump_03_02.avi`; `_g03_c01` too), the name
    without the last field is the source group, if that gives two or more groups and some group holds
    two files. Any other class keeps one clip per group (group None): plain numbered files
    (`cat_01.mp4`, `IMG_0001.mp4`) say nothing about sources."""
    by_class: dict[tuple[str, ...], list[ClipInfo]] = {}
    for c in clips:
        by_class.setdefault(c.labels, []).append(c)
    out = []
    for labels, members in by_class.items():
        matches = [_GROUP_CLIP.match(c.path.stem) for c in members]
        keys = [m["group"] if m else "" for m in matches]
        counts = Counter(keys)
        usable = bool(labels) and all(matches) and len(counts) >= 2 and max(counts.values()) >= 2
        for c, key in zip(members, keys):
            group = f"{labels[0]}/{key}" if usable else None
            out.append(ClipInfo(c.clip_id, c.path, c.labels, group, c.split))
    return out


_UCF11_NAME = re.compile(r"^v_(?P<prefix>.+)_(?P<group>\d+)_(?P<clip>\d+)$")


def _ucf11(root: Path) -> list[ClipInfo]:
    clips = []
    for path in sorted(root.glob("*/v_*/*")):
        if not _is_video(path):
            continue
        label = path.parent.parent.name
        m = _UCF11_NAME.match(path.stem)
        group_number = m["group"] if m else path.parent.name.rsplit("_", 1)[-1]
        clips.append(ClipInfo(path.stem, path, (label,), f"{label}_{group_number}", None))
    return clips


_PLAIN_CLIP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # no '/', '\\', ':' or leading '.'


def _hollywood2(root: Path) -> list[ClipInfo]:
    clip_dir, sets_dir = root / "AVIClips", root / "ClipSets"
    if not sets_dir.is_dir():
        raise LayoutError(f"{sets_dir} is missing (expected {_EXPECTED['hollywood2']})")
    labels: dict[str, list[str]] = {}
    splits: dict[str, str] = {}
    for action in HOLLYWOOD2_ACTIONS:
        for split in ("train", "test"):
            list_file = sets_dir / f"{action}_{split}.txt"
            if not list_file.is_file():
                raise LayoutError(f"{list_file} is missing (expected {_EXPECTED['hollywood2']})")
            for line_no, line in enumerate(list_file.read_text().splitlines(), start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2 or fields[1] not in ("1", "-1", "0"):
                    raise LayoutError(f"{list_file}:{line_no}: expected '<clip> 1|-1', got {line!r}")
                clip, flag = fields
                if not _PLAIN_CLIP_NAME.match(clip):  # the name becomes AVIClips/<clip>.avi: stay inside
                    raise LayoutError(f"{list_file}:{line_no}: clip name {clip!r} is not a plain file name")
                if splits.setdefault(clip, split) != split:
                    raise LayoutError(f"clip {clip} is in both the train and the test lists")
                labels.setdefault(clip, [])
                if flag == "1":
                    labels[clip].append(action)
    return [
        ClipInfo(clip, clip_dir / f"{clip}.avi", tuple(sorted(labels[clip])), None, splits[clip])
        for clip in sorted(labels)
    ]


def _celebrities(root: Path) -> list[ClipInfo]:
    clips = []
    for path in sorted(root.iterdir()):
        if not _is_video(path):
            continue
        tokens = [t for t in re.split(r"[_\s]+", path.stem) if t]
        while tokens and tokens[0].isdigit():  # leading number fields: subject / video / clip numbers
            tokens.pop(0)
        while tokens and tokens[-1].isdigit():  # a trailing clip number, in case of another naming
            tokens.pop()
        if not tokens:
            raise LayoutError(f"{path.name}: no person's name in the file name")
        clips.append(ClipInfo(path.stem, path, ("_".join(tokens).lower(),), None, None))
    return clips
