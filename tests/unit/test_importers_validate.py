"""``savflow validate``: each way training data fails sam2, reported by check, video and field, all in one pass.

The pure checks get hand-made facts (a generated SA-V annotation, frame names, sizes); the split-level tests run
on data written by ``savflow import`` and the CLI composes the real training configs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from savflow.common import savformat, storage
from savflow.common.demo_data import SyntheticSpec, generate_video, manual_json
from savflow.importers import samples
from savflow.importers.run import import_dataset
from savflow.validate.checks import CHECKS, check_config, check_video
from savflow.validate.needs import TrainNeeds, needs_from_config, read_needs
from savflow.validate.run import validate_split
from savflow.validate.scan import VideoFacts

NEEDS = TrainNeeds(num_frames=8, ann_every=4, config="test")
VIDEO = "sav_000001"


@pytest.fixture(scope="module")
def doc() -> dict:
    """A generated SA-V annotation: 48 frames, 12 annotated (every 4th), 2 objects visible throughout."""
    return manual_json(generate_video(VIDEO, num_frames=48, height=32, width=40, num_objects=2, seed=1))


def facts(doc: dict | None, *, names: list[str] | None = None, size: tuple[int, int] = (32, 40),
          kind: str = "frames", frame_count: int | None = None, formats: dict | None = None) -> VideoFacts:
    names = [f"{i:05d}.jpg" for i in range(48)] if names is None else names
    f = VideoFacts(VIDEO, kind, f"annotations/{VIDEO}_manual.json",
                   None if doc is None else json.dumps(doc).encode(), f"frames/{VIDEO}",
                   names if kind == "frames" else None, frame_count=frame_count)
    f.frame_sizes[names[0] if names and kind == "frames" else "(video)"] = size
    f.frame_formats.update(formats or {})
    return f


def checks_of(found) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in found:
        out.setdefault(f.check, []).append(f)
    return out


def errors(found) -> set[str]:
    return {f.check for f in found if f.severity == "error"}


def test_a_valid_video_has_no_findings(doc: dict) -> None:
    assert check_video(facts(doc), NEEDS) == []


def test_the_real_sav_sample_passes_the_b_plus_needs(sample_manual_json: Path) -> None:
    data = json.loads(sample_manual_json.read_text())
    found = check_video(facts(data, names=[f"{i:05d}.jpg" for i in range(483)], size=(848, 480)), NEEDS)
    assert errors(found) == set(), found


def test_fewer_annotated_frames_than_num_frames(doc: dict) -> None:
    short = {**doc, "video_frame_count": 20, "masklet": doc["masklet"][:5]}
    (finding,) = check_video(facts(short, names=[f"{i:05d}.jpg" for i in range(20)]), NEEDS)
    assert (finding.check, finding.field, finding.severity) == ("annotated-frames", "masklet", "error")
    assert "5 annotated frames" in finding.message and "UnboundLocalError" in finding.message


def test_num_frames_below_3_trains_nothing() -> None:
    (finding,) = check_config(TrainNeeds(num_frames=2, config="b+"))
    assert (finding.video, finding.check, finding.field) == ("(config)", "num-frames", "scratch.num_frames")
    assert "does not require grad" in finding.message
    assert check_config(TrainNeeds(num_frames=3)) == []


def test_png_frames_are_not_read(doc: dict) -> None:
    found = checks_of(check_video(facts(doc, names=[f"{i:05d}.png" for i in range(48)]), NEEDS))
    assert found["jpeg"][0].field == "frames" and "not .jpg" in found["jpeg"][0].message
    assert found["annotated-frames"][-1].severity == "error"  # none of them counts


def test_a_png_named_jpg_is_a_warning(doc: dict) -> None:
    (finding,) = check_video(facts(doc, formats={"00000.jpg": "PNG"}), NEEDS)
    assert (finding.check, finding.severity) == ("jpeg", "warning")


@pytest.mark.parametrize("bad", ["0.jpg", "frame_0001.jpg", "000001.jpg"])
def test_frames_named_otherwise(doc: dict, bad: str) -> None:
    names = [f"{i:05d}.jpg" for i in range(48)]
    names[1] = bad
    found = checks_of(check_video(facts(doc, names=names), NEEDS))
    assert bad in found["frame-names"][0].message


def test_masks_at_another_size_than_the_frames(doc: dict) -> None:
    (finding,) = check_video(facts(doc, size=(64, 80)), NEEDS)
    assert (finding.check, finding.field) == ("mask-size", "video_height/video_width")
    assert "40x32" in finding.message and "80x64" in finding.message
    bad_rle = copy.deepcopy(doc)
    bad_rle["masklet"][3][1] = savformat.encode_rle(np.zeros((16, 16), bool))
    (finding,) = check_video(facts(bad_rle), NEEDS)
    assert (finding.check, finding.field) == ("mask-size", "masklet[3][1].size")


def test_objects_missing_from_the_first_frame(doc: dict) -> None:
    later = copy.deepcopy(doc)
    empty = savformat.encode_rle(np.zeros((32, 40), bool))
    later["masklet"][0][1] = empty
    (finding,) = check_video(facts(later), NEEDS)
    assert (finding.check, finding.field, finding.severity) == ("first-frame", "masklet[0]", "warning")
    nothing = copy.deepcopy(doc)
    for entry in nothing["masklet"][:5]:
        entry[:] = [empty, empty]
    found = checks_of(check_video(facts(nothing), NEEDS))
    assert [f.severity for f in found["first-frame"]] == ["warning", "error"]
    assert "No visible objects" in found["first-frame"][1].message


def test_an_empty_masklet(doc: dict) -> None:
    empty = copy.deepcopy(doc)
    for entry in empty["masklet"]:
        entry[0] = savformat.encode_rle(np.zeros((32, 40), bool))
    found = checks_of(check_video(facts(empty), NEEDS))
    assert found["empty-masklet"][0].field == "masklet_id[0]" and found["empty-masklet"][0].severity == "error"


def test_null_objects_drop_frames(doc: dict) -> None:
    """sam2 drops every frame where any object is null: enough of them leave too few frames."""
    nulls = copy.deepcopy(doc)
    for entry in nulls["masklet"][:6]:
        entry[1] = None
    found = checks_of(check_video(facts(nulls), NEEDS))
    assert found["null-entries"][0].field == "masklet[0]" and found["null-entries"][0].severity == "warning"
    assert "6 annotated frames sam2 can sample" in found["annotated-frames"][0].message


def test_a_stride_the_config_does_not_read(doc: dict) -> None:
    every = {**doc, "ann_every": 1, "masklet": doc["masklet"] * 4}
    (finding,) = check_video(facts(every), NEEDS)
    assert (finding.check, finding.field) == ("ann-every", "ann_every")
    assert f"--override ++{NEEDS.dataset_path}.ann_every=1" in finding.message
    assert check_video(facts(every), TrainNeeds(num_frames=8, ann_every=1)) == []
    unrecorded = {**doc, "masklet": doc["masklet"] * 4}  # DAVIS-style JSON written by hand: too long for stride 4
    (finding,) = check_video(facts(unrecorded), NEEDS)
    assert (finding.check, finding.field) == ("ann-every", "masklet")
    (finding,) = check_video(facts({**doc, "fps": 5}), NEEDS)
    assert (finding.check, finding.field) == ("ann-every", "fps")


def test_missing_and_malformed_annotations(doc: dict) -> None:
    (finding,) = check_video(facts(None), NEEDS)
    assert (finding.check, finding.field) == ("annotation", "(file)")
    f = facts(doc)
    f.annotation = b"{not json"
    assert [(x.check, x.field) for x in check_video(f, NEEDS)] == [("annotation", "(document)")]
    (finding,) = check_video(facts({**doc, "video_id": "other"}), NEEDS)
    assert (finding.check, finding.field) == ("annotation", "video_id")


def test_mp4_frame_count_and_missing_frames(doc: dict) -> None:
    found = checks_of(check_video(facts(doc, kind="mp4", frame_count=40), NEEDS))
    assert found["frame-count"][0].field == "video_frame_count" and found["frame-count"][0].severity == "error"
    assert found["annotated-frames"][0].severity == "warning"  # frames 40 and 44 are annotated, not in the mp4
    assert check_video(facts(doc, kind="mp4", frame_count=48), NEEDS) == []
    f = facts(doc, names=[])
    assert [x.check for x in check_video(f, NEEDS)] == ["frames-missing"]


def test_every_check_has_a_description() -> None:
    assert set(CHECKS) >= {"num-frames", "annotation", "jpeg", "frame-names", "mask-size", "annotated-frames",
                           "first-frame", "empty-masklet", "ann-every", "null-entries", "frame-count",
                           "frames-missing"}


SPLIT_SPEC = SyntheticSpec(num_videos=4, num_frames=10, height=24, width=32, num_objects=2, seed=2)


@pytest.fixture()
def imported(tmp_path: Path) -> str:
    samples.write_davis(str(tmp_path / "src"), SPLIT_SPEC, appears_at=0)
    dest = str(tmp_path / "out")
    assert import_dataset("davis", str(tmp_path / "src"), dest, workers=2).exit_code == 0
    return dest


def test_a_split_is_checked_in_one_pass(imported: str) -> None:
    a, b, c, d = SPLIT_SPEC.video_ids()
    root = Path(imported)
    (root / savformat.FRAMES_DIR / b / "00003.jpg").rename(root / savformat.FRAMES_DIR / b / "3.jpg")
    (root / savformat.annotation_path(c)).unlink()
    doc = json.loads((root / savformat.annotation_path(d)).read_text())
    doc["video_height"], doc["video_width"] = 12, 16
    for entry in doc["masklet"]:
        entry[:] = [savformat.encode_rle(np.ones((12, 16), bool))] * 2
    (root / savformat.annotation_path(d)).write_text(json.dumps(doc))
    needs = [TrainNeeds(num_frames=8, ann_every=1, config="x")]
    report = validate_split(imported, needs, videos=SPLIT_SPEC.video_ids(), workers=2)
    by_video = {v: sorted({f.check for f in report.findings if f.video == v}) for v in SPLIT_SPEC.video_ids()}
    assert by_video == {a: [], b: ["annotated-frames", "frame-names"], c: ["annotation"], d: ["mask-size"]}
    assert report.valid == [a] and report.invalid == [b, c, d]
    assert (report.exit_code(), report.exit_code(drop_invalid=True)) == (1, 0)
    assert validate_split(imported, needs, workers=2).videos == [a, b, d]  # like train: the *_manual.json files


def test_needs_from_the_composed_configs() -> None:
    (b_plus,) = read_needs("sam2.1_hiera_b+_sav_finetune")
    assert (b_plus.num_frames, b_plus.ann_every, b_plus.frames_fps, b_plus.num_frames_key) == \
        (8, 4, 24, "scratch.num_frames")
    (tiny,) = read_needs("sam2.1_tiny128_sav_finetune",
                         ["scratch.num_frames=3", f"++{b_plus.dataset_path}.ann_every=1"])
    assert (tiny.num_frames, tiny.ann_every, tiny.dataset_path) == (3, 1, b_plus.dataset_path)
    assert needs_from_config({"trainer": {"data": {"train": {}}}}) == []


def _cli(*argv: str) -> int:
    from savflow.pipelines.cli import main

    return main(list(argv))


def test_cli_exit_status(imported: str, tmp_path: Path, capsys) -> None:
    stride = f"++{TrainNeeds(1).dataset_path}.ann_every=1"
    assert _cli("validate", "--train", imported, "--config", "sam2.1_tiny128_sav_finetune",
                "--override", stride, "scratch.num_frames=3") == 0
    assert _cli("validate", "--train", imported, "--config", "sam2.1_tiny128_sav_finetune") == 1
    out = capsys.readouterr().out
    assert out.count("ann-every") == SPLIT_SPEC.num_videos and "0 valid" in out
    assert _cli("validate", "--train", imported, "--override", stride, "scratch.num_frames=2") == 1
    assert "num-frames" in capsys.readouterr().out
    (Path(imported) / savformat.annotation_path(SPLIT_SPEC.video_ids()[0])).write_text("[]")
    valid = tmp_path / "valid.txt"
    assert _cli("validate", "--train", imported, "--override", stride, "--drop-invalid", "--valid-list",
                str(valid), "--report", str(tmp_path / "report.json")) == 0
    assert valid.read_text().split() == SPLIT_SPEC.video_ids()[1:]
    assert json.loads((tmp_path / "report.json").read_text())["invalid"] == SPLIT_SPEC.video_ids()[:1]
    assert _cli("validate", "--train", str(tmp_path / "nothing")) == 2
    assert _cli("validate", "--train", imported, "--config", "no_such_config") == 2


def test_import_cli_exit_status(tmp_path: Path, capsys) -> None:
    samples.write_davis(str(tmp_path / "src"), SPLIT_SPEC)
    assert _cli("import", "--format", "davis", "--source", str(tmp_path / "src"), "--dest", str(tmp_path / "out"),
                "--workers", "2") == 0
    assert "ann_every=1" in capsys.readouterr().out
    masks = tmp_path / "src" / "Annotations" / "480p" / SPLIT_SPEC.video_ids()[0]
    (masks / "00001.png").write_bytes(savformat.encode_palette_png(np.ones((5, 5), np.uint8)))
    assert _cli("import", "--format", "davis", "--source", str(tmp_path / "src"), "--dest", str(tmp_path / "out"),
                "--workers", "2") == 1
    assert f"failed: {SPLIT_SPEC.video_ids()[0]}: size:" in capsys.readouterr().err
    assert _cli("import", "--format", "ytvos", "--source", str(tmp_path / "src"), "--dest", str(tmp_path / "o")) == 2
    assert _cli("import", "--format", "davis", "--source", str(tmp_path / "src"), "--dest", str(tmp_path / "o"),
                "--jpeg-quality", "0") == 2
    assert storage.exists(str(tmp_path / "out" / "savflow_import.json"))


def test_pipeline_step_returns_the_list_to_go_on_with(imported: str) -> None:
    from savflow.validate.run import validate_step

    stride = [f"++{TrainNeeds(1).dataset_path}.ann_every=1", "scratch.num_frames=3"]
    assert validate_step(imported, "sam2.1_tiny128_sav_finetune", stride) == ""
    with pytest.raises(RuntimeError, match="4 of 4 training videos are invalid"):
        validate_step(imported, "sam2.1_tiny128_sav_finetune")
    (Path(imported) / savformat.annotation_path(SPLIT_SPEC.video_ids()[0])).unlink()
    listed = storage.join(imported, "file_list.txt")  # still names the video whose annotation is gone
    valid = validate_step(imported, "sam2.1_tiny128_sav_finetune", stride, video_list=listed, drop_invalid=True)
    assert storage.read_text(valid).split() == SPLIT_SPEC.video_ids()[1:]


def test_an_mp4_split_is_probed_through_the_storage_api(store_root: str) -> None:
    """The raw SA-V train shape (what stage reads), locally and in a bucket (mp4s downloaded to probe them)."""
    spec = SyntheticSpec(num_videos=2, num_frames=36, height=16, width=24, num_objects=2)
    samples.write_sav_val(storage.join(store_root, "src"), spec, appears_at=0)
    dest = storage.join(store_root, "out")
    assert import_dataset("sav-val", storage.join(store_root, "src"), dest, mp4=True, workers=2).exit_code == 0
    mp4s = storage.join(dest, "mp4")
    report = validate_split(mp4s, [NEEDS], workers=2)
    assert (report.kind, report.findings, report.valid) == ("mp4", [], spec.video_ids())
    storage.delete(storage.join(mp4s, f"{spec.video_ids()[0]}.mp4"))
    storage.write_bytes(storage.join(mp4s, f"{spec.video_ids()[1]}.mp4"), b"not a video")
    report = validate_split(mp4s, [NEEDS], workers=2)
    assert [(f.video, f.check) for f in report.findings] == [(v, "frames-missing") for v in spec.video_ids()]
    assert "missing" in report.findings[0].message and "cannot read the video" in report.findings[1].message
    assert validate_split(mp4s, [NEEDS], probe_videos=False).findings[1:] == []


def test_the_kfp_component_body(imported: str) -> None:
    from savflow.validate.component import validate_train

    stride = [f"++{TrainNeeds(1).dataset_path}.ann_every=1", "scratch.num_frames=3"]
    out = validate_train.python_func(train=imported, config="sam2.1_tiny128_sav_finetune", overrides=stride,
                                     drop_invalid=True)
    assert storage.read_text(out).split() == SPLIT_SPEC.video_ids()
