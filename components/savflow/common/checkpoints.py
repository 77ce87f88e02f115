"""Training checkpoints in object storage: atomic publication, rotation, and the resume decision.

Layout under an experiment directory (any storage URI)::

    {exp}/checkpoints/{step:09d}/checkpoint.pt   the sam2 trainer's state: model, optimizer, epoch, steps, loss,
                                                 scaler (with AMP); what a resumed run loads
    {exp}/checkpoints/{step:09d}/model.pt        {"model": state_dict}; loads in build_sam2_video_predictor
    {exp}/checkpoints/{step:09d}/train_metrics.json  the metrics up to this step, so a resume from this
                                                 checkpoint continues its loss curve whatever was killed when
    {exp}/checkpoints/_done/{step:09d}.json      completion marker (epoch, sizes, sha256, the run's key), written
                                                 after the files
    {exp}/checkpoints/latest.json                pointer to the newest complete checkpoint, written last
    {exp}/train_metrics.json                     loss curve and final numbers (see savflow.train.trainer)

A checkpoint counts only once its marker exists, so a job killed while uploading leaves nothing that looks
complete; ``latest.json`` is a convenience for readers (inference, the evaluation pipeline) and always names a
marked checkpoint, because it is written after the marker and rotation never removes the newest one. The marker
records the key of the run that made the checkpoint (:mod:`savflow.train.run_key`); ``--resume auto`` continues
only a run with the same key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from savflow.common import markers, provenance, storage

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
TRAINER_STATE = "checkpoint.pt"
MODEL_ONLY = "model.pt"
LATEST = "latest.json"
METRICS = "train_metrics.json"
RESUME_AUTO = "auto"  # --resume: continue from the newest complete checkpoint made by this run, if any
RESUME_NEVER = "never"  # --resume: start fresh, refusing an experiment that has checkpoints


class ExperimentExistsError(RuntimeError):
    """A run that must start over found complete checkpoints in its experiment directory, or a run found
    checkpoints another run made there."""


def step_name(step: int) -> str:
    """Zero-padded so that names sort in step order."""
    if step < 0:
        raise ValueError(f"checkpoint step must be >= 0, got {step}")
    return f"{step:09d}"


def checkpoints_root(experiment_dir: str) -> str:
    return storage.join(experiment_dir, CHECKPOINTS_DIR)


def step_dir(experiment_dir: str, step: int) -> str:
    return storage.join(checkpoints_root(experiment_dir), step_name(step))


@dataclass(frozen=True)
class CheckpointInfo:
    """One published checkpoint."""

    step: int
    epoch: int
    checkpoint: str  # URI of the trainer state
    model: str  # URI of the model-only file


def checkpoint_info(experiment_dir: str, step: int, epoch: int) -> CheckpointInfo:
    return CheckpointInfo(step=step, epoch=epoch, checkpoint=storage.join(step_dir(experiment_dir, step), TRAINER_STATE),
                          model=storage.join(step_dir(experiment_dir, step), MODEL_ONLY))


def complete_checkpoints(experiment_dir: str) -> list[CheckpointInfo]:
    """Every marked checkpoint, oldest first."""
    root = checkpoints_root(experiment_dir)
    out = []
    for unit in markers.done_units(root):
        if not unit.isdigit():
            continue
        payload = markers.read_marker(root, unit)
        if payload is not None:
            out.append(checkpoint_info(experiment_dir, int(unit), int(payload["epoch"])))
    return sorted(out, key=lambda c: c.step)


def latest_checkpoint(experiment_dir: str) -> CheckpointInfo | None:
    """The newest complete checkpoint, found from the markers (not the pointer, which a kill may have missed)."""
    done = complete_checkpoints(experiment_dir)
    return done[-1] if done else None


def newest_model(experiment_dir: str) -> str:
    """The model-only file of the newest complete checkpoint (from the markers); an error naming the
    experiment when it has none."""
    latest = latest_checkpoint(experiment_dir)
    if latest is None:
        raise FileNotFoundError(f"{experiment_dir}: no complete checkpoint to evaluate")
    log.info("newest checkpoint: step %d: %s", latest.step, latest.model)
    return latest.model


def read_latest_pointer(experiment_dir: str) -> CheckpointInfo | None:
    try:
        data = json.loads(storage.read_text(storage.join(checkpoints_root(experiment_dir), LATEST)))
    except storage.NotFoundError:
        return None
    return CheckpointInfo(**data)


def resolve_model_checkpoint(uri: str) -> str:
    """A model-only checkpoint URI for ``uri``: a ``.pt`` URI as given, or for an experiment directory the
    model file its ``latest.json`` names."""
    if uri.endswith(".pt"):
        return uri
    latest = read_latest_pointer(uri)
    if latest is None:
        raise FileNotFoundError(f"{uri}: no {CHECKPOINTS_DIR}/{LATEST}: not an experiment directory with a "
                                "finished checkpoint")
    return latest.model


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def publish_checkpoint(experiment_dir: str, *, trainer_state: Path, model_only: Path, step: int, epoch: int,
                       keep_last: int, metrics: Path | None = None,
                       run_key: dict[str, Any] | None = None) -> CheckpointInfo:
    """Upload one checkpoint, mark it complete, point ``latest.json`` at it, then rotate old ones away.

    A step being published again (a run restarted from an earlier checkpoint) is unmarked before its files are
    replaced, so it is never marked while it holds a mix of two runs' files."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    root = checkpoints_root(experiment_dir)
    info = checkpoint_info(experiment_dir, step, epoch)
    markers.clear_marker(root, step_name(step))
    files = {}
    pairs = [(trainer_state, info.checkpoint), (model_only, info.model)]
    if metrics is not None:
        pairs.append((metrics, storage.join(step_dir(experiment_dir, step), METRICS)))
    for local, uri in pairs:
        storage.upload_file(local, uri)
        files[Path(uri).name] = {"bytes": local.stat().st_size, "sha256": sha256_file(local)}
    markers.write_marker(root, step_name(step), {"step": step, "epoch": epoch, "files": files,
                                                  provenance.KEY_FIELD: run_key, "published_at": time.time()})
    storage.write_text(storage.join(root, LATEST), json.dumps(asdict(info), indent=2))
    log.info("checkpoint step %d (epoch %d) published to %s", step, epoch, step_dir(experiment_dir, step))
    rotate_checkpoints(experiment_dir, keep_last=keep_last, newest=step)
    return info


def rotate_checkpoints(experiment_dir: str, *, keep_last: int, newest: int) -> list[int]:
    """Delete all but the ``keep_last`` newest complete checkpoints, and unmarked leftovers of killed uploads
    older than ``newest``. A checkpoint is unmarked before its files go. Returns the deleted steps."""
    root = checkpoints_root(experiment_dir)
    complete = [c.step for c in complete_checkpoints(experiment_dir)]
    doomed = set(complete[:-keep_last]) if len(complete) > keep_last else set()
    for entry in storage.list_prefix(root, recursive=False):
        name = entry.rstrip("/")
        if entry.endswith("/") and name.isdigit() and int(name) < newest and int(name) not in complete:
            doomed.add(int(name))
    for step in sorted(doomed):
        markers.clear_marker(root, step_name(step))
        storage.delete_prefix(step_dir(experiment_dir, step))
    if doomed:
        log.info("rotated away checkpoints at steps %s (keeping the last %d)", sorted(doomed), keep_last)
    return sorted(doomed)


def clear_experiment(experiment_dir: str) -> int:
    """Remove an experiment's checkpoints and metrics (``--overwrite``); markers go first."""
    root = checkpoints_root(experiment_dir)
    for unit in markers.done_units(root):
        markers.clear_marker(root, unit)
    removed = storage.delete_prefix(root)
    storage.delete(storage.join(experiment_dir, METRICS))
    return removed


@dataclass(frozen=True)
class ResumePlan:
    """What a starting run does with its experiment directory; ``describe()`` is the line the log shows."""

    kind: str  # "fresh" | "resume" | "overwrite"
    checkpoint: str | None = None  # trainer state to start from (resume), else None
    step: int | None = None
    epoch: int | None = None
    existing_step: int | None = None  # newest complete checkpoint already in the experiment (overwrite)
    explicit: bool = False  # the checkpoint was named with --resume URI

    @property
    def clears_experiment(self) -> bool:
        """The experiment's existing checkpoints are deleted once all processes have made this decision."""
        return self.existing_step is not None

    def describe(self, experiment_dir: str) -> str:
        if self.kind == "resume" and self.explicit:
            return (f"resume: starting {experiment_dir} from the given checkpoint {self.checkpoint}"
                    + (f", deleting its checkpoints up to step {self.existing_step} (--overwrite)"
                       if self.clears_experiment else ""))
        if self.kind == "resume":
            return (f"resume: continuing {experiment_dir} from its newest complete checkpoint, step {self.step} "
                    f"(epoch {self.epoch}): {self.checkpoint}")
        if self.kind == "overwrite":
            return (f"resume: overwriting {experiment_dir}, whose checkpoints up to step {self.existing_step} "
                    "will be deleted (--overwrite)")
        return f"resume: starting fresh, no complete checkpoint in {experiment_dir}"


def recorded_run_key(experiment_dir: str, step: int) -> dict[str, Any] | None:
    """The key of the run that published the checkpoint at ``step`` (None when its marker records none)."""
    key = provenance.key_of(markers.read_marker(checkpoints_root(experiment_dir), step_name(step)))
    return dict(key) if key is not None else None


def plan_resume(experiment_dir: str, resume: str, *, overwrite: bool = False,
                run_key: dict[str, Any] | None = None) -> ResumePlan:
    """Decide how a run starts.

    ``auto``: continue from the newest complete checkpoint when it was made by a run with this ``run_key``
    (the same run restarted, or given more epochs), start fresh if there is none; checkpoints of another run
    are refused with the differences named, unless ``overwrite`` (delete them and start fresh). ``never``:
    start fresh, refusing an experiment that already has checkpoints unless ``overwrite``. Any other value is
    the URI of a trainer checkpoint (a ``.pt`` file or a step directory) to start from, under the same rule as
    ``never`` for what is already in the experiment directory.
    """
    existing = latest_checkpoint(experiment_dir)
    if resume == RESUME_AUTO:
        if existing is None:
            return ResumePlan("fresh")
        diffs = provenance.differences(recorded_run_key(experiment_dir, existing.step), run_key or {})
        if not diffs:
            return ResumePlan("resume", checkpoint=existing.checkpoint, step=existing.step, epoch=existing.epoch)
        if overwrite:
            return ResumePlan("overwrite", existing_step=existing.step)
        raise ExperimentExistsError(
            f"{experiment_dir} has checkpoints up to step {existing.step} made by another run: "
            f"{'; '.join(diffs)}. Use another --experiment-dir, or --overwrite to delete them and start over")
    explicit = None
    if resume != RESUME_NEVER:
        explicit = resume if resume.endswith(".pt") else storage.join(resume, TRAINER_STATE)
        if not storage.exists(explicit):
            raise FileNotFoundError(f"--resume {resume}: no checkpoint at {explicit}")
    if existing is not None and not overwrite:
        raise ExperimentExistsError(
            f"{experiment_dir} already has checkpoints up to step {existing.step}; use --resume auto to continue "
            "the run that made them or --overwrite to delete them and start over")
    if explicit is not None:
        return ResumePlan("resume", checkpoint=explicit, explicit=True,
                          existing_step=existing.step if existing else None)
    if existing is not None:
        return ResumePlan("overwrite", existing_step=existing.step)
    return ResumePlan("fresh")
