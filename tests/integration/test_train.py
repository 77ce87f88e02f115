"""The training worker end to end on CPU: the tiny config on a generated SA-V-style set in the GCS emulator.

Each run is a real worker process (``python -m savflow.train.worker``, or ``torchrun`` through ``savflow train``)
running the sam2 trainer; the tests read what it published to the bucket. To stay fast the runs sample clips of 3
frames from 2 videos, 4 steps per epoch. (Not 2 frames: the tiny config makes up to 2 of a clip's frames
conditioning frames, and a clip whose every frame is a mask-prompted conditioning frame has no loss gradient.)
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from savflow.common import storage
from savflow.common.demo_data import SyntheticSpec, generate_video, write_staged_train_split
from savflow.common import checkpoints
from savflow.train.trainer import state_dict_digest

SPEC = SyntheticSpec(num_videos=2, num_frames=16, height=128, width=128, num_objects=2, seed=5)
STEPS_PER_EPOCH = 4  # 2 videos x dataset.multiplier 2, batch 1, one process
FAST = ["--override", "scratch.num_frames=3", "dataset.multiplier=2"]
ZERO_LR = ["--override", "scratch.base_lr=0.0", "scratch.vision_lr=0.0"]
RUN_TIMEOUT = 300


@pytest.fixture(scope="module")
def staged(gcs_emulator: str) -> str:
    """A staged train set in its own bucket, shared by the tests of this module (they only read it)."""
    from savflow.common.storage import gcs_client

    bucket = f"train-{uuid.uuid4().hex[:10]}"
    gcs_client().create_bucket(bucket)
    root = f"gs://{bucket}/staged"
    write_staged_train_split(root, SPEC)
    return root


def _data_args(staged: str) -> list[str]:
    return ["--config", "sam2.1_tiny128_sav_finetune", "--train-frames", storage.join(staged, "JPEGImages_24fps"),
            "--train-annotations", storage.join(staged, "annotations"),
            "--file-list", storage.join(staged, "file_list.txt")]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, SAVFLOW_SCRATCH=str(tmp_path / "scratch"), PYTHONUNBUFFERED="1")
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _worker(args: list[str], tmp_path: Path, log_name: str) -> tuple[int, str]:
    log = tmp_path / log_name
    with open(log, "w") as fh:
        rc = subprocess.call([sys.executable, "-m", "savflow.train.worker", *args], stdout=fh,
                             stderr=subprocess.STDOUT, env=_env(tmp_path), timeout=RUN_TIMEOUT)
    return rc, log.read_text()


def _load(uri: str, tmp_path: Path) -> dict:
    local = storage.download_file(uri, tmp_path / "downloads" / uuid.uuid4().hex)
    return torch.load(local, map_location="cpu", weights_only=True)


def _metrics(exp: str) -> dict:
    return json.loads(storage.read_text(storage.join(exp, checkpoints.METRICS)))


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(staged: str, tmp_path_factory) -> tuple[str, str]:
    """One fresh three-epoch run that uploads every second epoch (and the last); returns its URI and log."""
    tmp_path = tmp_path_factory.mktemp("trained")
    exp = storage.join(staged.rsplit("/", 1)[0], "exp-trained")
    rc, log = _worker([*_data_args(staged), "--experiment-dir", exp, "--epochs", "3", "--save-every", "2", *FAST],
                      tmp_path, "run.log")
    assert rc == 0, log[-3000:]
    return exp, log


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_on_a_machine_without_it_is_exit_2_naming_it(tmp_path):
    rc, log = _worker(["--config", "sam2.1_tiny128_sav_finetune", "--train-frames", str(tmp_path / "frames"),
                       "--train-annotations", str(tmp_path / "ann"), "--experiment-dir", str(tmp_path / "exp"),
                       "--device", "cuda"], tmp_path, "cuda.log")
    assert rc == 2, log[-3000:]
    assert "--device: device 'cuda' requested but CUDA is not available" in log and "Traceback" not in log, log


def test_tiny_config_trains_on_cpu_from_the_bucket(trained, tmp_path):
    exp, log = trained
    assert "resume: starting fresh" in log

    metrics = _metrics(exp)
    assert metrics["status"] == "complete" and metrics["steps"] == 3 * STEPS_PER_EPOCH
    assert [p[0] for p in metrics["loss_curve"]] == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    assert all(math.isfinite(p[1]) and p[1] > 0 for p in metrics["loss_curve"])
    assert math.isfinite(metrics["final_loss"]) and metrics["seconds_per_step"] > 0

    done = checkpoints.complete_checkpoints(exp)
    assert [(c.step, c.epoch) for c in done] == [(2 * STEPS_PER_EPOCH, 2), (3 * STEPS_PER_EPOCH, 3)]
    latest = checkpoints.read_latest_pointer(exp)
    assert latest == done[-1] and latest.checkpoint.startswith("gs://")
    assert storage.exists(storage.join(exp, "config.yaml"))

    state = _load(latest.checkpoint, tmp_path)
    assert state["steps"]["train"] == 3 * STEPS_PER_EPOCH and state["epoch"] == 3 and "optimizer" in state
    model_only = _load(latest.model, tmp_path)
    assert set(model_only) == {"model"} and _same_weights(model_only["model"], state["model"])
    assert metrics["replica_digests"] == [state_dict_digest(model_only["model"])]


def test_model_only_checkpoint_loads_in_the_video_predictor(trained, tmp_path):
    """What inference does with a training checkpoint: build_sam2_video_predictor on CPU, then track."""
    from PIL import Image
    from sam2.build_sam import build_sam2_video_predictor

    from savflow.common.hydra_config import ensure_search_path

    exp, _log = trained
    local = storage.download_file(checkpoints.resolve_model_checkpoint(exp), tmp_path / "model.pt")
    ensure_search_path()
    predictor = build_sam2_video_predictor("sam2.1_hiera_tiny128.yaml", str(local), device="cpu")
    trained_weights = torch.load(local, map_location="cpu", weights_only=True)["model"]
    assert _same_weights(predictor.state_dict(), trained_weights)

    video = generate_video("v", num_frames=4, height=128, width=128, num_objects=1, seed=1)
    frames = tmp_path / "frames"
    frames.mkdir()
    for t, frame in enumerate(video.frames):
        Image.fromarray(frame).save(frames / f"{t:05d}.jpg")
    with torch.inference_mode():
        state = predictor.init_state(str(frames))
        predictor.add_new_mask(state, frame_idx=0, obj_id=0, mask=video.masks[0, 0])
        outputs = {t: logits for t, _ids, logits in predictor.propagate_in_video(state)}
    assert sorted(outputs) == [0, 1, 2, 3] and outputs[3].shape == (1, 1, 128, 128)


def _wait_for_checkpoint(exp: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not checkpoints.complete_checkpoints(exp):
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode} before its first checkpoint")
        if time.monotonic() > deadline:
            raise AssertionError(f"no checkpoint within {timeout}s")
        time.sleep(0.2)


def test_killed_run_resumes_from_its_last_checkpoint(staged, tmp_path):
    exp = storage.join(staged.rsplit("/", 1)[0], f"exp-{uuid.uuid4().hex[:8]}")
    with open(tmp_path / "killed.log", "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "savflow.train.worker", *_data_args(staged),
                                 "--experiment-dir", exp, "--epochs", "100", *FAST],
                                stdout=fh, stderr=subprocess.STDOUT, env=_env(tmp_path))
        try:
            _wait_for_checkpoint(exp, proc, timeout=RUN_TIMEOUT)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    saved = checkpoints.latest_checkpoint(exp)
    assert saved.step == saved.epoch * STEPS_PER_EPOCH
    saved_state = _load(saved.checkpoint, tmp_path)

    # Continue the same run (same config, overrides, data and weights) for one more epoch.
    rc, log = _worker([*_data_args(staged), "--experiment-dir", exp, "--resume", "auto",
                       "--epochs", str(saved.epoch + 1), *FAST], tmp_path, "resumed.log")
    assert rc == 0, log[-3000:]
    assert f"continuing {exp} from its newest complete checkpoint, step {saved.step}" in log
    assert f"resumed at step {saved.step}, epoch {saved.epoch}" in log

    after = checkpoints.latest_checkpoint(exp)
    assert (after.step, after.epoch) == (saved.step + STEPS_PER_EPOCH, saved.epoch + 1)
    after_state = _load(after.checkpoint, tmp_path)
    assert after_state["steps"]["train"] == saved.step + STEPS_PER_EPOCH
    assert not _same_weights(after_state["model"], saved_state["model"])
    # AdamW counts steps per parameter (a parameter without a gradient in a step is skipped): a carried-over
    # optimizer state only grows, and the parameters used in every step count all the steps since step 0,
    # which a fresh start (STEPS_PER_EPOCH steps) could not have.
    before_adam = {k: float(v["step"]) for k, v in saved_state["optimizer"]["state"].items()}
    after_adam = {k: float(v["step"]) for k, v in after_state["optimizer"]["state"].items()}
    assert all(after_adam[k] >= before_adam[k] for k in before_adam)
    assert max(after_adam.values()) == saved.step + STEPS_PER_EPOCH

    metrics = _metrics(exp)
    assert metrics["resume"]["kind"] == "resume" and metrics["resume"]["step"] == saved.step
    assert [p[0] for p in metrics["loss_curve"]] == list(range(1, after.step + 1))

    # The trainer itself would exit 0 having done nothing once the epochs are done; the log says so.
    rc, log = _worker([*_data_args(staged), "--experiment-dir", exp, "--epochs", str(saved.epoch + 1), *FAST],
                      tmp_path, "again.log")
    assert rc == 0 and f"nothing to train: the checkpoint is at epoch {after.epoch} of {after.epoch}" in log
    assert checkpoints.latest_checkpoint(exp) == after and _metrics(exp)["status"] == "complete"

    rc, log = _worker([*_data_args(staged), "--experiment-dir", exp, "--resume", "never"], tmp_path, "never.log")
    assert rc == 2 and "--overwrite" in log
    assert checkpoints.latest_checkpoint(exp) == after

    # Another run into the same experiment (other hyperparameters, or other starting weights) is refused with
    # the differences named (issue 12), and nothing is touched; --overwrite starts it over.
    rc, log = _worker([*_data_args(staged), "--experiment-dir", exp, *FAST, *ZERO_LR], tmp_path, "other.log")
    assert rc == 2, log[-3000:]
    assert f"{exp} has checkpoints up to step {after.step} made by another run: config_digest: " in log
    assert "overrides: " in log and "scratch.base_lr=0.0" in log and "--overwrite" in log
    weights = after.model
    rc, log = _worker([*_data_args(staged), "--experiment-dir", exp, *FAST, "--checkpoint", weights], tmp_path,
                      "weights.log")
    assert rc == 2 and "init_weights: null -> " in log and weights in log
    assert checkpoints.latest_checkpoint(exp) == after
    rc, log = _worker([*_data_args(staged), "--experiment-dir", exp, "--epochs", "1", "--overwrite", *FAST,
                       *ZERO_LR], tmp_path, "overwrite.log")
    assert rc == 0, log[-3000:]
    assert f"overwriting {exp}, whose checkpoints up to step {after.step} will be deleted" in log
    assert [c.step for c in checkpoints.complete_checkpoints(exp)] == [STEPS_PER_EPOCH]


def test_initial_weights_from_a_storage_uri(staged, tmp_path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from savflow.train.worker import compose_training_config

    torch.manual_seed(1234)
    cfg = compose_training_config("sam2.1_hiera_tiny128", [])
    OmegaConf.resolve(cfg)
    init = {"model": instantiate(cfg.model, _recursive_=True).state_dict()}
    init_uri = storage.join(staged.rsplit("/", 1)[0], f"weights-{uuid.uuid4().hex[:8]}/release.pt")
    torch.save(init, tmp_path / "release.pt")
    storage.upload_file(tmp_path / "release.pt", init_uri)

    exp = storage.join(staged.rsplit("/", 1)[0], f"exp-{uuid.uuid4().hex[:8]}")
    rc, log = _worker([*_data_args(staged), "--experiment-dir", exp, "--epochs", "1", "--checkpoint", init_uri,
                       *FAST, *ZERO_LR], tmp_path, "run.log")
    assert rc == 0, log[-3000:]
    assert f"initial weights: {init_uri}" in log
    trained = _load(checkpoints.latest_checkpoint(exp).model, tmp_path)["model"]
    assert _same_weights(trained, init["model"])


def test_two_processes_with_gloo_agree_on_the_weights(staged, tmp_path):
    exp = str(tmp_path / "exp")
    command = [sys.executable, "-m", "savflow.pipelines.cli", "train", "--nproc-per-node", "2",
               *_data_args(staged), "--experiment-dir", exp, "--epochs", "2", *FAST]
    with open(tmp_path / "torchrun.log", "w") as fh:
        rc = subprocess.call(command, stdout=fh, stderr=subprocess.STDOUT, env=_env(tmp_path), timeout=RUN_TIMEOUT)
    log = (tmp_path / "torchrun.log").read_text()
    assert rc == 0, log[-3000:]
    assert "process 0 of 2" in log

    metrics = _metrics(exp)
    assert metrics["world_size"] == 2
    assert metrics["steps"] == 2 * STEPS_PER_EPOCH // 2  # the distributed sampler splits each epoch in two
    final = _load(checkpoints.latest_checkpoint(exp).model, tmp_path)["model"]
    assert metrics["replica_digests"] == [state_dict_digest(final)] * 2
    initial_loss, last_loss = metrics["loss_curve"][0][1], metrics["loss_curve"][-1][1]
    assert math.isfinite(initial_loss) and math.isfinite(last_loss)
