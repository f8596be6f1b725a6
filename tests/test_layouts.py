"""Dataset layouts (data/layouts.py) on small folder trees that copy each dataset's real naming."""

from pathlib import Path

import pytest

from data.layouts import HOLLYWOOD2_ACTIONS, ClipInfo, LayoutError, default_fps, default_size, list_clips


def touch(root: Path, *relative: str) -> None:
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_ucf11_labels_groups_and_ids(tmp_path):
    touch(
        tmp_path,
        "basketball/v_shooting_01/v_shooting_01_01.mpg",
        "basketball/v_shooting_01/v_shooting_01_02.mpg",
        "basketball/v_shooting_02/v_shooting_02_01.mpg",
        "walking/v_walk_dog_25/v_walk_dog_25_04.mpg",
        "walking/Annotation/v_walk_dog_25_04.xgtf",  # annotations beside the clips are not clips
    )
    clips = list_clips("ucf11", tmp_path)
    assert [c.clip_id for c in clips] == [
        "v_shooting_01_01",
        "v_shooting_01_02",
        "v_shooting_02_01",
        "v_walk_dog_25_04",
    ]
    assert clips[0] == ClipInfo(
        "v_shooting_01_01", tmp_path / "basketball/v_shooting_01/v_shooting_01_01.mpg", ("basketball",),
        "basketball_01", None,
    )  # fmt: skip
    assert [c.group for c in clips] == ["basketball_01", "basketball_01", "basketball_02", "walking_25"]
    assert clips[3].labels == ("walking",)


def write_clipsets(root: Path, lines: dict[tuple[str, str], str]) -> None:
    """ClipSets/<Action>_{train,test}.txt for all 12 actions; `lines[(action, split)]` holds the text."""
    (root / "ClipSets").mkdir(parents=True)
    for action in HOLLYWOOD2_ACTIONS:
        for split in ("train", "test"):
            (root / "ClipSets" / f"{action}_{split}.txt").write_text(lines.get((action, split), ""))


def test_hollywood2_multi_label_with_split_from_file_names(tmp_path):
    train = "actioncliptrain00001  1\nactioncliptrain00002  -1\n"
    write_clipsets(
        tmp_path,
        {
            ("Kiss", "train"): train,
            ("HugPerson", "train"): "actioncliptrain00001  1\nactioncliptrain00002  1\n",
            ("Run", "test"): "actioncliptest00001  1\n",
            ("Eat", "test"): "actioncliptest00001  -1\nactioncliptest00002  -1\n",
        },
    )
    clips = {c.clip_id: c for c in list_clips("hollywood2", tmp_path)}
    assert sorted(clips) == [
        "actioncliptest00001",
        "actioncliptest00002",
        "actioncliptrain00001",
        "actioncliptrain00002",
    ]
    assert clips["actioncliptrain00001"].labels == ("HugPerson", "Kiss")
    assert clips["actioncliptrain00002"].labels == ("HugPerson",)
    assert clips["actioncliptest00002"].labels == ()  # negative for every action it is listed for
    assert clips["actioncliptest00001"].split == "test" and clips["actioncliptrain00001"].split == "train"
    assert clips["actioncliptest00001"].path == tmp_path / "AVIClips" / "actioncliptest00001.avi"


def test_hollywood2_missing_or_malformed_clipsets(tmp_path):
    with pytest.raises(LayoutError, match="ClipSets"):
        list_clips("hollywood2", tmp_path)
    write_clipsets(tmp_path, {("Kiss", "train"): "actioncliptrain00001 yes\n"})
    with pytest.raises(LayoutError, match=r"Kiss_train.txt:1"):
        list_clips("hollywood2", tmp_path)


def test_celebrities_name_from_file_name(tmp_path):
    touch(
        tmp_path, "0001_01_002_adam_sandler.avi", "0002_03_001_Al_Pacino.avi", "0047_01_001_bill_clinton.avi"
    )
    touch(tmp_path, "notes.txt")
    clips = list_clips("celebrities", tmp_path)
    assert [(c.clip_id, c.labels) for c in clips] == [
        ("0001_01_002_adam_sandler", ("adam_sandler",)),
        ("0002_03_001_Al_Pacino", ("al_pacino",)),
        ("0047_01_001_bill_clinton", ("bill_clinton",)),
    ]
    touch(tmp_path, "0001_02.avi")
    with pytest.raises(LayoutError, match="no person's name"):
        list_clips("celebrities", tmp_path)


def test_folder_labels_from_parent_and_split_from_first_folder(tmp_path):
    touch(
        tmp_path,
        "train/pan_left/a.mp4",
        "train/pan_left/b.MP4",
        "test/zoom_in/c.mkv",
        "val/zoom_in/deep/d.avi",
        "other/e.mov",
        "loose.mp4",
        "test/unlabelled.mp4",
        "train/readme.txt",
        ".hidden/x.mp4",
    )
    clips = {c.clip_id: c for c in list_clips("folder", tmp_path)}
    assert sorted(clips) == [
        "loose.mp4",
        "other/e.mov",
        "test/unlabelled.mp4",
        "test/zoom_in/c.mkv",
        "train/pan_left/a.mp4",
        "train/pan_left/b.MP4",
        "val/zoom_in/deep/d.avi",
    ]
    assert (
        clips["train/pan_left/a.mp4"].labels == ("pan_left",)
        and clips["train/pan_left/a.mp4"].split == "train"
    )
    assert clips["test/zoom_in/c.mkv"].split == "test"
    assert (
        clips["val/zoom_in/deep/d.avi"].labels == ("deep",) and clips["val/zoom_in/deep/d.avi"].split == "val"
    )
    assert clips["other/e.mov"].labels == ("other",) and clips["other/e.mov"].split is None
    assert clips["loose.mp4"].labels == () and clips["loose.mp4"].group is None
    # right in a split folder: the split is known, the label is not (the split folder is no class)
    assert clips["test/unlabelled.mp4"].labels == () and clips["test/unlabelled.mp4"].split == "test"


def test_folder_of_bundled_samples_lists_every_clip():
    samples = Path(__file__).resolve().parents[1] / "data" / "samples"
    clips = list_clips("folder", samples)
    assert len(clips) == 6 and all(c.labels == () for c in clips)  # files right in the root: unlabeled


def test_errors_and_defaults(tmp_path):
    with pytest.raises(LayoutError, match="unknown dataset"):
        list_clips("kinetics", tmp_path)
    with pytest.raises(LayoutError, match="not a folder"):
        list_clips("folder", tmp_path / "absent")
    with pytest.raises(LayoutError, match="no ucf11 clips"):
        list_clips("ucf11", tmp_path)
    assert default_size("hollywood2") == (234, 100)
    assert default_size("ucf11") == default_size("celebrities") == default_size("folder") == (160, 120)
    assert default_fps("ucf11") == 24.0


def test_folder_groups_come_only_from_ucf_style_names(tmp_path):
    """`v_x_GG_CC` names give groups (oracle: the GG by hand); plain numbered names never do, even
    when one other file in the class would make them look like one big group; nor does a class where
    only some names follow the pattern."""
    touch(tmp_path, *[f"jump/v_jump_{g:02d}_{c:02d}.avi" for g in (1, 2) for c in (1, 2)],
          *[f"run/v_run_g{g:02d}_c{c:02d}.avi" for g in (1, 2, 3) for c in (1, 2)],
          *[f"cat/cat_{i:02d}.mp4" for i in range(1, 10)], "cat/kitten.mp4",
          *[f"dog/IMG_{i:04d}.mp4" for i in range(1, 5)],
          "bird/v_bird_01_01.avi", "bird/v_bird_01_02.avi", "bird/v_bird_02_01.avi", "bird/other.avi")
    clips = {c.clip_id: c for c in list_clips("folder", tmp_path)}
    assert clips["jump/v_jump_02_01.avi"].group == "jump/v_jump_02"
    assert clips["run/v_run_g03_c02.avi"].group == "run/v_run_g03"
    assert {c.group for c in clips.values() if c.labels == ("jump",)} == {"jump/v_jump_01", "jump/v_jump_02"}
    assert all(c.group is None for c in clips.values() if c.labels in (("cat",), ("dog",), ("bird",)))
