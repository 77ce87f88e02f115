"""Checkpoint publication, rotation and the resume decision, on local paths and the GCS emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from savflow.common import checkpoints, markers, storage
from savflow.train.trainer import downsample_curve, state_dict_digest


def _files(tmp_path: Path, step: int) -> dict[str, Path]:
    state, model = tmp_path / f"state{step}.pt", tmp_path / f"model{step}.pt"
    state.write_bytes(f"trainer state {step}".encode())
    model.write_bytes(f"model {step}".encode())
    return {"trainer_state": state, "model_only": model}


RUN = {"config": "tiny", "overrides": ["scratch.base_lr=1e-4"]}


def _publish(exp: str, tmp_path: Path, step: int, epoch: int, keep_last: int = 3,
             run_key: dict | None = RUN) -> checkpoints.CheckpointInfo:
    return checkpoints.publish_checkpoint(exp, **_files(tmp_path, step), step=step, epoch=epoch, keep_last=keep_last,
                                          run_key=run_key)


def test_publish_writes_files_marker_and_pointer(store_root, tmp_path):
    info = _publish(store_root, tmp_path, step=40, epoch=2)
    assert info.checkpoint == storage.join(store_root, "checkpoints/000000040/checkpoint.pt")
    assert storage.read_bytes(info.checkpoint) == b"trainer state 40"
    assert storage.read_bytes(info.model) == b"model 40"
    marker = markers.read_marker(checkpoints.checkpoints_root(store_root), "000000040")
    assert marker["epoch"] == 2 and marker["files"]["model.pt"]["bytes"] == len(b"model 40")
    assert checkpoints.read_latest_pointer(store_root) == info
    assert checkpoints.resolve_model_checkpoint(store_root) == info.model
    assert checkpoints.latest_checkpoint(store_root) == info


def test_rotation_keeps_the_last_k_and_drops_killed_uploads(store_root, tmp_path):
    for n, step in enumerate((10, 20, 30)):
        _publish(store_root, tmp_path, step=step, epoch=n + 1, keep_last=2)
    # A job killed mid-upload leaves files without a marker; they are not a checkpoint.
    storage.write_bytes(storage.join(store_root, "checkpoints/000000035/checkpoint.pt"), b"partial")
    assert [c.step for c in checkpoints.complete_checkpoints(store_root)] == [20, 30]
    assert checkpoints.latest_checkpoint(store_root).step == 30
    _publish(store_root, tmp_path, step=40, epoch=4, keep_last=2)
    assert [c.step for c in checkpoints.complete_checkpoints(store_root)] == [30, 40]
    names = storage.list_prefix(checkpoints.checkpoints_root(store_root))
    assert not any(n.startswith(("000000010", "000000020", "000000035")) for n in names)


def test_unmarked_newest_checkpoint_is_ignored(store_root, tmp_path):
    _publish(store_root, tmp_path, step=10, epoch=1)
    storage.write_bytes(storage.join(store_root, "checkpoints/000000020/checkpoint.pt"), b"partial")
    plan = checkpoints.plan_resume(store_root, "auto", run_key=RUN)
    assert (plan.kind, plan.step, plan.epoch) == ("resume", 10, 1)
    assert plan.checkpoint == storage.join(store_root, "checkpoints/000000010/checkpoint.pt")
    assert "step 10" in plan.describe(store_root)


def test_republishing_a_step_replaces_it(store_root, tmp_path):
    _publish(store_root, tmp_path, step=10, epoch=1)
    (tmp_path / "again").mkdir()
    files = _files(tmp_path / "again", 10)
    files["model_only"].write_bytes(b"second run")
    checkpoints.publish_checkpoint(store_root, **files, step=10, epoch=1, keep_last=3)
    assert storage.read_bytes(checkpoints.latest_checkpoint(store_root).model) == b"second run"
    marker = markers.read_marker(checkpoints.checkpoints_root(store_root), "000000010")
    assert marker["files"]["model.pt"]["bytes"] == len(b"second run")


def test_plan_fresh_on_empty_experiment(store_root):
    for mode in ("auto", "never"):
        plan = checkpoints.plan_resume(store_root, mode)
        assert plan.kind == "fresh" and not plan.clears_experiment
        assert "starting fresh" in plan.describe(store_root)


def test_auto_continues_only_the_run_that_made_the_checkpoints(store_root, tmp_path):
    """The newest checkpoint's marker records its run's key; another run is refused with the differences
    named (a marker without a key too), and ``overwrite`` turns the refusal into a fresh start."""
    _publish(store_root, tmp_path, step=10, epoch=1)
    other = {"config": "tiny", "overrides": ["scratch.base_lr=0.0"]}
    with pytest.raises(checkpoints.ExperimentExistsError,
                       match=r"step 10 made by another run: overrides: \["):
        checkpoints.plan_resume(store_root, "auto", run_key=other)
    plan = checkpoints.plan_resume(store_root, "auto", run_key=other, overwrite=True)
    assert (plan.kind, plan.existing_step, plan.clears_experiment) == ("overwrite", 10, True)
    assert checkpoints.plan_resume(store_root, "auto", run_key=RUN, overwrite=True).kind == "resume"
    _publish(store_root, tmp_path, step=20, epoch=2, run_key=None)  # as savflow wrote them before keys
    with pytest.raises(checkpoints.ExperimentExistsError, match="key: .not recorded."):
        checkpoints.plan_resume(store_root, "auto", run_key=RUN)


def test_never_refuses_an_existing_experiment_unless_overwrite(store_root, tmp_path):
    _publish(store_root, tmp_path, step=10, epoch=1)
    with pytest.raises(checkpoints.ExperimentExistsError, match="step 10.*--overwrite"):
        checkpoints.plan_resume(store_root, "never")
    plan = checkpoints.plan_resume(store_root, "never", overwrite=True)
    assert plan.kind == "overwrite" and plan.clears_experiment and "overwriting" in plan.describe(store_root)
    checkpoints.clear_experiment(store_root)
    assert checkpoints.latest_checkpoint(store_root) is None
    assert storage.list_prefix(checkpoints.checkpoints_root(store_root)) == []


def test_explicit_checkpoint(store_root, tmp_path):
    other = storage.join(store_root, "other")
    info = _publish(other, tmp_path, step=10, epoch=1)
    exp = storage.join(store_root, "exp")
    for given in (info.checkpoint, storage.join(other, "checkpoints/000000010")):
        plan = checkpoints.plan_resume(exp, given)
        assert (plan.kind, plan.checkpoint, plan.explicit) == ("resume", info.checkpoint, True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoints.plan_resume(exp, storage.join(other, "checkpoints/000000099"))
    _publish(exp, tmp_path, step=5, epoch=1)
    with pytest.raises(checkpoints.ExperimentExistsError):
        checkpoints.plan_resume(exp, info.checkpoint)
    plan = checkpoints.plan_resume(exp, info.checkpoint, overwrite=True)
    assert plan.clears_experiment and plan.existing_step == 5


def test_resolve_model_checkpoint_without_experiment(tmp_path):
    assert checkpoints.resolve_model_checkpoint("gs://b/x/model.pt") == "gs://b/x/model.pt"
    with pytest.raises(FileNotFoundError):
        checkpoints.resolve_model_checkpoint(str(tmp_path))


def test_step_names_sort_by_step():
    names = [checkpoints.step_name(s) for s in (9, 10, 100, 1_000_000)]
    assert names == sorted(names)
    with pytest.raises(ValueError):
        checkpoints.step_name(-1)


def test_keep_last_must_be_positive(tmp_path):
    with pytest.raises(ValueError):
        _publish(str(tmp_path / "exp"), tmp_path, step=1, epoch=1, keep_last=0)


def test_state_dict_digest_sees_every_bit():
    a = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(2, dtype=torch.bfloat16)}
    b = {k: v.clone() for k, v in a.items()}
    assert state_dict_digest(a) == state_dict_digest(b)
    b["w"][1, 2] = torch.nextafter(b["w"][1, 2], torch.tensor(100.0))
    assert state_dict_digest(a) != state_dict_digest(b)
    assert state_dict_digest({"v": a["w"]}) != state_dict_digest({"w": a["w"]})


def test_downsample_curve():
    short = [[i, float(i)] for i in range(1, 11)]
    assert downsample_curve(short, max_points=10) == short
    assert downsample_curve(short, max_points=5) == [[2, 1.5], [4, 3.5], [6, 5.5], [8, 7.5], [10, 9.5]]
    long = [[i, 1.0] for i in range(1, 10_001)]
    out = downsample_curve(long, max_points=2000)
    assert len(out) == 2000 and out[-1] == [10_000, 1.0] and json.dumps(out)
