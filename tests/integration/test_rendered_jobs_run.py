"""Run what we render: the training jobs' containers started as the operators start them, to a checkpoint.

Each test takes a rendered job (the committed PyTorchJob template of k8s/base/training, and the objects the
launcher creates for PyTorchJob and TrainJob), turns it into its pods with the environment the operator
injects (tests/operator_env.py, from the operators' source), and starts every pod's command at once on this
machine with the bucket URIs served by the GCS emulator: two "nodes" that find each other through the
operator's rendezvous variables, read the staged data from the bucket, and publish checkpoints there.
The only changes to the objects are ones a CPU machine forces and each test names.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from pathlib import Path

import pytest
import yaml
from operator_env import localize, pytorchjob_pods, run_pods, trainjob_pods

from savflow.common import savformat, storage
from savflow.common.demo_data import SyntheticSpec, write_raw_train_split
from savflow.common import checkpoints
from savflow.launch import jobspec, pytorchjob, train_step as step, trainjob

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TINY_TRAIN, TINY_MODEL = "sam2.1_tiny128_sav_finetune", "sam2.1_hiera_tiny128"
# 40 frames = 10 annotated frames: the tiny config samples clips of 8 annotated frames
DATA = SyntheticSpec(num_videos=2, num_frames=40, height=128, width=128, num_objects=2, seed=11)
TIMEOUT = 600


def _emulator_env() -> dict[str, str]:
    return {"STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"],
            "GOOGLE_CLOUD_PROJECT": os.environ.get("GOOGLE_CLOUD_PROJECT", "savflow-test")}


def _stage(bucket: str) -> savformat.SplitPaths:
    """Raw SA-V-style videos staged by `savflow stage` (tar layout, as the pipeline stages train) into the
    bucket, under the template's paths."""
    from savflow.stage.stage import stage

    raw, staged = f"{bucket}/sav/raw/train", f"{bucket}/sav/staged/train"
    write_raw_train_split(raw, DATA)
    result = stage(raw, staged, sample_rate=savformat.ANN_EVERY, progress=False)
    assert result.exit_code == 0 and len(result.staged) == DATA.num_videos
    return savformat.split_paths(staged)


def _ensure_bucket(name: str) -> str:
    from google.api_core.exceptions import Conflict

    try:
        storage.gcs_client().create_bucket(name)
    except Conflict:
        pass
    return f"gs://{name}"


def _run(pods, tmp_path: Path) -> None:
    results = run_pods(localize(pods, tmp_path / "volumes", _emulator_env()), tmp_path / "logs", TIMEOUT)
    assert len(results) == 2
    for name, (code, log) in results.items():
        assert code == 0, f"{name} exited {code}:\n{log[-4000:]}"


def _published(exp: str) -> checkpoints.CheckpointInfo:
    latest = checkpoints.read_latest_pointer(exp)
    assert latest is not None, f"{exp}: nothing published"
    assert storage.exists(latest.model) and storage.exists(latest.checkpoint)
    metrics = json.loads(storage.read_text(storage.join(exp, checkpoints.METRICS)))
    assert metrics["status"] == "complete" and metrics["world_size"] == 2
    assert len(set(metrics["replica_digests"])) == 1
    return latest


def test_the_committed_pytorchjob_template_trains_a_checkpoint(gcs_emulator: str, tmp_path: Path) -> None:
    """k8s/base/training/pytorchjob.yaml as committed (Master + 1 Worker), with its own data, checkpoint and
    experiment URIs in the emulator's ``my-savflow-bucket``. Changed, because this machine has no GPU: the
    config (b+ at 1024 px -> the tiny config of the same family) and nprocPerNode (8 GPUs -> 1 process); and,
    appended to the command, one epoch of 3-frame clips instead of the tiny config's 10 of 8 (a checkpoint is
    published all the same, in a fifth of the time)."""
    from savflow.train.init_weights import write_random_init_checkpoint

    committed = next(d for d in yaml.safe_load_all((ROOT / "k8s/base/training/pytorchjob.yaml").read_text()) if d)
    job = copy.deepcopy(committed)
    job["spec"]["nprocPerNode"] = "1"
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        (container,) = replica["template"]["spec"]["containers"]
        command = container["command"]
        command[command.index("--config") + 1] = TINY_TRAIN
        args = dict(zip(command[3::2], command[4::2]))
        command += ["--epochs", "1", "--override", "scratch.num_frames=3"]
    bucket = _ensure_bucket(pytorchjob.TEMPLATE_BUCKET[len("gs://"):])
    assert args["--train-frames"].startswith(bucket)
    for prefix in ("sav", "exp", "checkpoints"):
        storage.delete_prefix(f"{bucket}/{prefix}")
    staged = _stage(bucket)
    assert (args["--train-frames"], args["--train-annotations"]) == (staged.frames, staged.annotations)
    write_random_init_checkpoint(TINY_MODEL, args["--checkpoint"], seed=3)

    _run(pytorchjob_pods(job), tmp_path)
    latest = _published(args["--experiment-dir"])
    assert latest.checkpoint.startswith(args["--experiment-dir"])


def _launcher_spec(bucket: str, staged: savformat.SplitPaths, exp: str) -> jobspec.TrainJobSpec:
    """What the pipeline's train step builds for a 2-node CPU run of the tiny config, one epoch."""
    return step.build_spec(
        image=jobspec.DEFAULT_IMAGE, config=TINY_TRAIN, train_frames=staged.frames,
        train_annotations=staged.annotations, experiment_dir=exp, epochs=1, nodes=2, gpus_per_node=0, cpu="1",
        memory="4Gi", scratch_size="10Gi", tolerations=[], overrides=["scratch.num_frames=3"])


@pytest.mark.parametrize("backend", ["pytorchjob", "trainjob"])
def test_the_launchers_jobs_train_a_checkpoint(backend: str, gcs_emulator: str, tmp_path: Path) -> None:
    bucket = _ensure_bucket(f"jobs-{uuid.uuid4().hex[:10]}")
    staged = _stage(bucket)
    exp = f"{bucket}/exp/run"
    spec = _launcher_spec(bucket, staged, exp)
    render = pytorchjob.render_pytorchjob if backend == "pytorchjob" else trainjob.render_trainjob
    job = render(spec, step.job_name("run-1"), "ml")
    pods = pytorchjob_pods(job) if backend == "pytorchjob" else trainjob_pods(job)
    _run(pods, tmp_path)
    _published(exp)
