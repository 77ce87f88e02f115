"""Prompt planning and input indexing of the inference loop (no model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from savflow.common.savformat import SavFormatError, encode_object_png
from savflow.infer.vos import MaskIndex, PromptError, PromptGroup, frame_numbers, plan_prompts


def _never_empty(obj: int, frame: int) -> bool:
    return False


def test_default_prompts_every_object_on_the_first_annotated_frame():
    available = {0: [0, 4, 8], 1: [0, 4, 8], 3: [0, 8]}
    assert plan_prompts(available, _never_empty) == [PromptGroup(0, {0: [0], 1: [0], 3: [0]})]


def test_default_with_all_masks_uses_every_mask_file():
    available = {0: [8, 0, 4], 1: [0, 8]}
    assert plan_prompts(available, _never_empty, use_all_masks=True) == [PromptGroup(0, {0: [0, 4, 8], 1: [0, 8]})]


def test_default_starts_at_the_first_annotated_frame_even_if_not_frame_zero():
    assert plan_prompts({2: [12, 16]}, _never_empty) == [PromptGroup(12, {2: [12]})]


def test_default_ignores_emptiness_like_the_reference_script():
    # vos_inference.py without --track_object_appearing_later_in_video prompts empty masks as they are.
    assert plan_prompts({0: [0, 4], 1: [0, 4]}, lambda o, f: True) == [PromptGroup(0, {0: [0], 1: [0]})]


def test_default_rejects_an_object_without_a_mask_on_the_first_frame():
    with pytest.raises(PromptError, match=r"objects 001 have no mask on the first annotated frame 00000"):
        plan_prompts({0: [0, 4], 1: [4, 8]}, _never_empty)


def test_no_masks_at_all_is_an_error():
    with pytest.raises(PromptError):
        plan_prompts({0: []}, _never_empty)


def test_track_later_groups_objects_by_first_visible_frame():
    visible = {0: {0, 4, 8}, 1: {8}, 2: {4, 8}, 3: {8}, 4: set()}
    available = {obj: [0, 4, 8] for obj in visible}
    groups = plan_prompts(available, lambda o, f: f not in visible[o], track_later=True)
    assert groups == [PromptGroup(0, {0: [0]}), PromptGroup(4, {2: [4]}), PromptGroup(8, {1: [8], 3: [8]})]


def test_track_later_with_all_masks_skips_empty_masks():
    visible = {0: {4, 12}, 1: {0, 4, 8}}
    available = {0: [0, 4, 8, 12], 1: [0, 4, 8, 12]}
    groups = plan_prompts(available, lambda o, f: f not in visible[o], track_later=True, use_all_masks=True)
    assert groups == [PromptGroup(0, {1: [0, 4, 8]}), PromptGroup(4, {0: [4, 12]})]


def test_track_later_reads_masks_only_up_to_the_first_visible_one():
    asked: list[tuple[int, int]] = []

    def is_empty(obj: int, frame: int) -> bool:
        asked.append((obj, frame))
        return frame < 8

    plan_prompts({0: [0, 4, 8, 12, 16]}, is_empty, track_later=True)
    assert asked == [(0, 0), (0, 4), (0, 8)]


def _write_png(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_object_png(mask))


def test_mask_index_scans_and_loads(tmp_path: Path):
    mask = np.zeros((6, 5), dtype=bool)
    mask[1:3, 2:4] = True
    _write_png(tmp_path / "000" / "00000.png", mask)
    _write_png(tmp_path / "000" / "00004.png", ~mask)
    _write_png(tmp_path / "002" / "00004.png", mask)
    index = MaskIndex.scan("v", tmp_path)
    assert index.objects == [0, 2]
    assert index.annotated_frames == [0, 4]
    assert sorted(index.files[0]) == [0, 4]
    np.testing.assert_array_equal(index.load(0, 4), ~mask)


def test_mask_index_names_the_bad_file(tmp_path: Path):
    _write_png(tmp_path / "obj" / "00000.png", np.ones((2, 2), bool))
    with pytest.raises(SavFormatError, match=r"obj.*object folder"):
        MaskIndex.scan("v", tmp_path)


def test_mask_index_of_a_missing_folder_is_an_error(tmp_path: Path):
    with pytest.raises(SavFormatError, match="video v: field masks"):
        MaskIndex.scan("v", tmp_path / "nothing")


def test_frame_numbers_sorted_numerically(tmp_path: Path):
    for name in ("00010.jpg", "00002.jpg", "00100.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert frame_numbers(tmp_path) == [2, 10, 100]


def test_frame_numbers_of_an_empty_folder_is_an_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no JPEG frames"):
        frame_numbers(tmp_path)
