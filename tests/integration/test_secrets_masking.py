"""No secret of the environment reaches a log line or a file: the training worker end to end, and the launcher.

Where a secret would leak without :mod:`savflow.common.secrets`:

* the sam2 trainer logs every environment variable when it starts: ``training/utils/train_utils.py``
  ``log_env_variables()`` (``logging.info("Logging ENV_VARIABLES")`` then one ``NAME=value`` line per
  variable), called from ``training/trainer.py`` ``Trainer.__init__`` right after ``setup_logging``
  (``training/utils/logger.py``) has replaced the root logger and its handlers; the lines go to stdout (the pod
  log) and to ``{experiment_log_dir}/logs/log.txt`` in the worker's scratch directory;
* the worker's ``config.yaml`` in the experiment directory is the resolved config, so an override such as
  ``+scratch.note=${oc.env:KF_PIPELINES_TOKEN}`` would write the token there, and the run key recorded in
  every checkpoint marker holds the overrides, which hydra's ``instantiate`` resolved in the trainer's config;
* the launcher streams the training pod's log, events and failure messages into the pipeline step's log, and
  the job's ``env`` may hold secrets of its own.

The worker test runs the tiny config for one epoch of 4 steps on CPU (as tests/integration/test_train.py does,
from a local staged set) with secret-looking variables set, then reads every byte of its output, of the
experiment directory and of the scratch directory; then once more, resuming for a second epoch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kube_fake import FakeCluster
import test_launch_jobs
from test_launch_jobs import NS, SPEC, FakeOperator

from savflow.common import storage
from savflow.common.demo_data import SyntheticSpec, write_staged_train_split
from savflow.launch import jobs as launcher
from savflow.launch.jobs import PYTORCHJOB

TOKEN = "sekret-xyz-123"
AWS_KEY = "aws-Secret/Key+0099"
INNOCENT = "value-from-a-secret-77"  # under a name that does not look secret, listed in $SAVFLOW_MASK_ENV
SECRETS = (TOKEN, AWS_KEY, INNOCENT)
cluster = test_launch_jobs.cluster  # its fixture: the Kubernetes API fake with the operators' CRDs
DATA = SyntheticSpec(num_videos=2, num_frames=16, height=128, width=128, num_objects=2, seed=5)


def _leaks(root: Path) -> dict[str, list[str]]:
    """Files under ``root`` holding any of the secrets, with which."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits = [s for s in SECRETS if s.encode() in data]
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def test_worker_logs_and_files_hold_no_secret(tmp_path: Path) -> None:
    staged = str(tmp_path / "staged")
    write_staged_train_split(staged, DATA)
    exp, scratch = tmp_path / "exp", tmp_path / "scratch"
    env = dict(os.environ, SAVFLOW_SCRATCH=str(scratch), PYTHONUNBUFFERED="1", KF_PIPELINES_TOKEN=TOKEN,
               AWS_SECRET_ACCESS_KEY=AWS_KEY, MOUNTED_FROM_SECRET=INNOCENT, SAVFLOW_MASK_ENV="MOUNTED_FROM_SECRET")
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    args = ["--config", "sam2.1_tiny128_sav_finetune", "--train-frames", storage.join(staged, "JPEGImages_24fps"),
            "--train-annotations", storage.join(staged, "annotations"),
            "--file-list", storage.join(staged, "file_list.txt"), "--experiment-dir", str(exp), "--override", "scratch.num_frames=3", "dataset.multiplier=2", "+scratch.note=${oc.env:KF_PIPELINES_TOKEN}"]
    def train(*extra: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "savflow.train.worker", *args, *extra], capture_output=True,
                              text=True, env=env, timeout=600)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-3000:]
        return out

    out = train("--epochs", "1")

    # the environment was logged (so the check below means something), with the values masked
    assert "Logging ENV_VARIABLES" in out and "KF_PIPELINES_TOKEN=***" in out, out[-3000:]
    assert "AWS_SECRET_ACCESS_KEY=***" in out and "MOUNTED_FROM_SECRET=***" in out
    assert [s for s in SECRETS if s in out] == []

    (trainer_log,) = scratch.rglob("logs/log.txt")
    assert "KF_PIPELINES_TOKEN=***" in trainer_log.read_text(), "the env dump lands in the trainer's log file"
    assert "note: '***'" in (exp / "config.yaml").read_text()
    assert {p.name for p in exp.iterdir()} >= {"config.yaml", "train_metrics.json"}
    assert _leaks(exp) == {} and _leaks(scratch) == {}

    # The run key in each checkpoint marker keeps the override as given (not resolved: that would be the token),
    # so a second run with the same override is the same run and continues.
    (marker,) = (exp / "checkpoints" / "_done").glob("*.json")
    assert "+scratch.note=${oc.env:KF_PIPELINES_TOKEN}" in json.loads(marker.read_text())["key"]["overrides"]
    out = train("--epochs", "2")
    assert "resume: continuing" in out and "Logging ENV_VARIABLES" in out, out[-3000:]
    assert [s for s in SECRETS if s in out] == [] and _leaks(exp) == {} and _leaks(scratch) == {}


class _SecretOperator(FakeOperator):
    """The fake operator of test_launch_jobs, whose pod prints secrets in its log and failure message."""

    def say(self, text: str) -> None:
        super().say(f"{text} token={TOKEN} key={AWS_KEY}")


def test_launcher_masks_streamed_pod_logs_and_failure_messages(cluster: FakeCluster, monkeypatch) -> None:
    import dataclasses

    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)  # the launcher's own environment
    spec = dataclasses.replace(SPEC, env={"AWS_SECRET_ACCESS_KEY": AWS_KEY})  # the job's
    operator = _SecretOperator(cluster, PYTORCHJOB, "sav-leak", ("Failed", "JobFailed", f"crashed: {AWS_KEY}"))
    emitted: list[str] = []
    operator.start()
    try:
        with pytest.raises(launcher.JobFailed) as info:
            launcher.launch(spec, operator.name, namespace=NS, kind=PYTORCHJOB, api_client=cluster.client(),
                            poll_s=0.03, timeout_s=30, emit=emitted.append)
    finally:
        operator.join(10)
    assert operator.error is None, operator.error
    pod_lines = [line for line in emitted if line.startswith(f"[{operator.pod}] ")]
    assert pod_lines and all(line.endswith("token=*** key=***") for line in pod_lines), pod_lines
    text = "\n".join(emitted) + str(info.value)
    assert TOKEN not in text and AWS_KEY not in text and "crashed: ***" in str(info.value)
