"""Every step through a flaky object store (issue 12, point 2): the GCS emulator behind
:class:`fault_proxy.FaultProxy` at a 15% fault rate (429/500/503, connections reset before and after the
request reached the server, stalls, truncated bodies). Each step runs once with faults and once without, on
inputs in the bucket, and must leave byte-identical output; the retries are google-cloud-storage's, with the
policy of :func:`savflow.common.storage_gcs.retry_policy` (google/cloud/storage/retry.py ``DEFAULT_RETRY``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from savflow.common import checkpoints, savformat, storage
from savflow.common.demo_data import SyntheticSpec, write_raw_train_split, write_val_split
from savflow.common.materialize import materialize

import reliability
from kill_harness import differing, snapshot

TINY = "sam2.1_hiera_tiny128"
RATE = 0.15
EVAL_VOLATILE = {"metrics.json": ("seconds",)}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _twice(proxy, step) -> tuple:
    """``step(tag)`` without faults, then with them: both results, and the faults the second run met with the
    requests it sent beyond the first run's (its retries)."""
    proxy.rate = 0.0
    start = proxy.summary()
    clean = step("clean")
    middle = proxy.summary()
    proxy.rate = RATE
    faulty = step("faulty")
    proxy.rate = 0.0
    end = proxy.summary()
    retried = (end["requests"] - middle["requests"]) - (middle["requests"] - start["requests"])
    return clean, faulty, {"injected": end["injected"] - middle["injected"], "retried": max(retried, 0)}


def _record(step: str, stats: dict, *, identical: bool, failed_units: int = 0) -> None:
    reliability.faults(step, injected=stats["injected"], retried=stats["retried"], failed_units=failed_units,
                       identical=identical)
    assert stats["injected"] > 0 and identical


def test_stage_and_materialize(faulty_gcs, tmp_path: Path) -> None:
    proxy, bucket = faulty_gcs
    from savflow.stage.stage import stage

    proxy.rate = 0.0
    write_raw_train_split(f"{bucket}/raw", SyntheticSpec(num_videos=3, num_frames=16, height=64, width=64,
                                                         num_objects=2, seed=31))
    for layout in ("tar", "dir"):
        def run(tag: str):
            result = stage(f"{bucket}/raw", f"{bucket}/{tag}-{layout}", layout=layout, masks=True, workers=2,
                           progress=False)
            return result, snapshot(f"{bucket}/{tag}-{layout}", volatile={"_done/": ("staged_at",)})

        (clean, want), (faulty, got), stats = _twice(proxy, run)
        _record("stage", stats, identical=not differing(got, want), failed_units=len(faulty.failures))
        assert faulty.failures == [] and len(faulty.staged) == 3

        def copy(tag: str):
            local = tmp_path / f"{tag}-{layout}"
            assert materialize(f"{bucket}/clean-{layout}", local, workers=2) == sorted(clean.staged)
            return snapshot(str(local))

        want_local, got_local, stats = _twice(proxy, copy)
        _record("materialize", stats, identical=not differing(got_local, want_local))


def test_training_data_and_checkpoints(faulty_gcs, tmp_path: Path) -> None:
    """The storage side of training: the data's identity and local copy, checkpoint publication, rotation,
    the resume decision and the metrics file."""
    proxy, bucket = faulty_gcs
    from savflow.common.demo_data import write_staged_train_split
    from savflow.train import data

    proxy.rate = 0.0
    write_staged_train_split(f"{bucket}/staged", SyntheticSpec(num_videos=3, num_frames=16, height=64, width=64,
                                                               seed=32))
    paths = savformat.split_paths(f"{bucket}/staged")
    files = {"trainer_state": tmp_path / "state.pt", "model_only": tmp_path / "model.pt"}
    torch.save({"model": {"w": torch.arange(1000.0)}}, files["trainer_state"])
    torch.save({"model": {"w": torch.ones(1000)}}, files["model_only"])

    def train_side(tag: str):
        source = data.describe_source(paths.frames, paths.annotations, None)
        local = data.prepare_node_data(source, scratch=tmp_path / tag, node_leader=True, timeout_s=30)
        exp = f"{bucket}/exp-{tag}"
        for step in (4, 8, 12):
            checkpoints.publish_checkpoint(exp, **files, step=step, epoch=step // 4, keep_last=2,
                                           run_key={"run": 1})
        plan = checkpoints.plan_resume(exp, "auto", run_key={"run": 1})
        published = snapshot(exp, volatile={"_done/": ("published_at",), "latest.json": ("checkpoint", "model")})
        return source.identity(), snapshot(str(local.root)), plan.step, published

    clean, faulty, stats = _twice(proxy, train_side)
    _record("train", stats, identical=clean[0] == faulty[0] and clean[2] == faulty[2] == 12
            and not differing(clean[1], faulty[1]) and not differing(clean[3], faulty[3]))


def test_infer_evaluate_and_history(faulty_gcs, tmp_path: Path) -> None:
    proxy, bucket = faulty_gcs
    from sam2.build_sam import build_sam2

    from savflow.common.hydra_config import ensure_search_path
    from savflow.evaluate.regression import load_history
    from savflow.evaluate.run import check_and_record, evaluate_to
    from savflow.infer.infer import infer

    proxy.rate = 0.0
    local = tmp_path / "val"
    videos = write_val_split(str(local), SyntheticSpec(num_videos=2, num_frames=12, num_objects=2, seed=33))
    storage.upload_tree(local, f"{bucket}/val")
    ensure_search_path()
    torch.manual_seed(0)
    torch.save({"model": build_sam2(TINY, None, device="cpu").state_dict()}, tmp_path / "tiny.pt")
    storage.upload_file(tmp_path / "tiny.pt", f"{bucket}/tiny.pt")
    frames, masks = f"{bucket}/val/{savformat.FRAMES_DIR}", f"{bucket}/val/{savformat.MASKS_DIR}"

    def predict(tag: str):
        result = infer(f"{bucket}/tiny.pt", TINY, frames, masks, f"{bucket}/pred-{tag}", device="cpu", workers=4)
        assert result.report.failures == [] and result.report.done == len(videos)
        return snapshot(f"{bucket}/pred-{tag}", volatile={"_done/": ("seconds",)})

    want, got, stats = _twice(proxy, predict)
    _record("infer", stats, identical=not differing(got, want))

    def score(tag: str):
        evaluate_to(masks, f"{bucket}/pred-clean", f"{bucket}/eval-{tag}", num_workers=1, progress=False)
        verdicts = [check_and_record(f"{bucket}/exp-{tag}", f"{bucket}/eval-{tag}", run_id=f"run{k}",
                                     checkpoint="ckpt", max_drop=1.0, baseline=None) for k in range(3)]
        history = [dataclasses.replace(e, finished_at="") for e in load_history(f"{bucket}/exp-{tag}")]
        return snapshot(f"{bucket}/eval-{tag}", volatile=EVAL_VOLATILE), [v.ok for v in verdicts], history

    clean, faulty, stats = _twice(proxy, score)
    _record("evaluate", stats, identical=not differing(clean[0], faulty[0]) and clean[1:] == faulty[1:]
            and len(faulty[2]) == 3)
