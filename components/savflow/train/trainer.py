"""The sam2 ``Trainer``, unchanged in how it trains, plus what a preemptible cloud job needs around it.

:class:`SavflowTrainer` adds, on top of ``training.trainer.Trainer``:

* publication: after the trainer writes its local ``checkpoint.pt`` at the end of a trainer epoch, rank 0
  uploads it with a model-only copy to the experiment directory (:mod:`savflow.common.checkpoints`), every
  ``save_every`` epochs and always at the last one;
* ``train_metrics.json`` next to the checkpoints: the loss of every step seen by rank 0 (the total and each
  term the sam2 loss logs), the learning rate of every param group, per-epoch averages, time per step,
  samples per second, peak GPU memory, the resume decision, and at the end the weight digests of all
  replicas, which must agree;
* the experiment reset that ``--overwrite`` asks for, done by rank 0 only after every process has decided how to
  start (the trainer's constructor ends with a barrier), so no process reads a half-deleted experiment;
* random state per trainer epoch: the sam2 trainer seeds Python, NumPy and torch once per process
  (``training.utils.train_utils.set_seeds``), so a run resumed at epoch ``e`` would draw other augmentations
  than an uninterrupted one; here every epoch starts from a seed of (seed, rank, epoch), so a run killed and
  resumed from its last checkpoint ends with the same weights as one never interrupted (on a deterministic
  device).

The worker composes the config, sets ``trainer._target_`` to this class and adds a ``trainer.savflow`` block
(:class:`SavflowSettings`); everything else is the sam2 trainer's own configuration.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from training.trainer import Trainer, unwrap_ddp_if_wrapped
from training.utils.train_utils import Phase

from savflow.common import checkpoints, secrets, storage
from savflow.common.progress import Progress

log = logging.getLogger(__name__)

# Loss curves longer than this are averaged into this many buckets when written, to keep the JSON small.
MAX_CURVE_POINTS = 2000


@dataclass
class SavflowSettings:
    """The ``trainer.savflow`` config block the worker adds."""

    experiment_dir: str
    keep_last: int = 3
    save_every: int = 1
    config_name: str = ""
    run_key: dict[str, Any] = field(default_factory=dict)  # savflow.train.run_key, recorded with each checkpoint
    resume: dict[str, Any] = field(default_factory=dict)  # a checkpoints.ResumePlan as a dict


def state_dict_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names and raw bytes of every tensor, in order: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def seed_epoch(seed: int, rank: int, epoch: int, model: torch.nn.Module | None = None) -> None:
    """Seed Python, NumPy and torch (CUDA too) for one trainer epoch of one process, and the model's own
    generator: the same triple always gives the same random streams, whatever ran before in the process, so a
    run resumed at an epoch boundary goes on exactly as the uninterrupted one would have."""
    import random

    import numpy as np

    value = int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)  # seeds every CUDA device as well
    # training.model.sam2.SAM2Train draws its prompts (how many conditioning frames, which ones, points or
    # masks) from ``self.rng``, seeded once with 42 in __init__ and absent from the checkpoint: without this a
    # resumed run starts that stream over. The same seed on every rank, as sam2 has it, so that all replicas
    # pick the same prompts and run the same graph.
    if model is not None and isinstance(getattr(model, "rng", None), np.random.Generator):
        model.rng = np.random.default_rng([seed, epoch])


def downsample_curve(points: list[list[float]], max_points: int = MAX_CURVE_POINTS) -> list[list[float]]:
    """``[step, loss]`` points, averaged over equal runs of consecutive points when there are too many (the
    step of a bucket is its last step)."""
    if len(points) <= max_points:
        return [list(p) for p in points]
    out = []
    for i in range(max_points):
        bucket = points[i * len(points) // max_points:(i + 1) * len(points) // max_points]
        out.append([bucket[-1][0], sum(p[1] for p in bucket) / len(bucket)])
    return out


class SavflowTrainer(Trainer):
    """``training.trainer.Trainer`` that publishes its checkpoints and metrics to object storage."""

    def __init__(self, *, savflow: Mapping[str, Any], **kwargs: Any) -> None:
        # not resolved again: hydra's instantiate has resolved the config, and what looks like an interpolation now
        # was escaped by the worker to stay as it is (the run key's overrides)
        settings = OmegaConf.to_container(savflow, resolve=False) if OmegaConf.is_config(savflow) else dict(savflow)
        self.savflow = SavflowSettings(**settings)
        self._loss_curve: list[list[float]] = []
        self._term_curves: dict[str, list[list[float]]] = {}  # per loss term the sam2 loss logs
        self._lr_curves: dict[str, list[list[float]]] = {}  # per optimizer param group (its index)
        self._step_times: list[float] = []
        self._samples = 0  # rank 0's samples (video clips) in the steps of this run
        self._epoch_stats: list[dict[str, Any]] = []
        self._prior_curve: list[list[float]] = []  # from the run being resumed
        self._prior_curves: dict[str, Any] = {}  # its other curves, by metrics key
        self._prior_epochs: list[dict[str, Any]] = []
        self._run_started = time.time()
        self._progress: Progress | None = None  # rank 0's progress lines (savflow.common.progress)
        self._seed_value = int(kwargs.get("seed_value", 123))  # training.trainer.Trainer's default
        # Trainer.__init__ logs every environment variable (train_utils.log_env_variables): mask the secret ones
        secrets.install_log_masking()
        super().__init__(**kwargs)
        self._start_step = self.steps[Phase.TRAIN]
        self._epochs_done = self.epoch  # trainer epochs completed (the trainer's own counter is 0-based)

    # ---- hooks into the sam2 trainer -------------------------------------------------------------------------

    def _step(self, batch, model, phase):  # noqa: ANN001 - signature of training.trainer.Trainer._step
        result = super()._step(batch, model, phase)
        if phase == Phase.TRAIN and self.distributed_rank == 0:
            step = self.steps[phase]
            loss = next(iter(result[0].values()))
            self._loss_curve.append([step, float(loss.detach())])
            if self._progress is not None:
                self._progress.update(note=f"epoch {int(self.epoch) + 1} of {self.max_epochs}, loss {float(loss.detach()):.4g}")
            self._step_times.append(time.monotonic())
            # sam2's batch size is len(img_batch), the frames of a clip (img_batch is T x B x ...): count clips
            self._samples += int(getattr(batch, "num_videos", result[1]))
            # the terms come as "Losses/train_{dataset}_{term}" (core_loss is the total); named by term alone
            # unless the config trains on more than one dataset
            prefix = f"Losses/{phase}_{batch.dict_key}_"
            for key, value in result[2].items():
                term = key[len(prefix):] if key.startswith(prefix) else key
                if len(self.loss) > 1:
                    term = f"{batch.dict_key}/{term}"
                value = float(value.detach()) if torch.is_tensor(value) else float(value)
                self._term_curves.setdefault(term, []).append([step, value])
            # each group's rate as the step's forward pass finds it: the one the scheduler set for the previous
            # step (sam2 sets this step's after the backward pass, where no hook reaches)
            for j, group in enumerate(self.optim.optimizer.param_groups):
                self._lr_curves.setdefault(str(j), []).append([step, float(group["lr"])])
        return result

    def train_epoch(self, train_loader):  # noqa: ANN001
        seed_epoch(self._seed_value, self.distributed_rank, int(self.epoch), unwrap_ddp_if_wrapped(self.model))
        if self._progress is None and self.distributed_rank == 0:  # the steps this run has left, for the ETA
            self._progress = Progress((self.max_epochs - int(self.epoch)) * len(train_loader), "train", "step")
        outs = super().train_epoch(train_loader)
        if self.distributed_rank == 0:
            self._epoch_stats.append({k: v for k, v in outs.items() if isinstance(v, (int, float))})
        return outs

    def save_checkpoint(self, epoch, checkpoint_names=None):  # noqa: ANN001
        super().save_checkpoint(epoch, checkpoint_names)
        if checkpoint_names is not None or self.distributed_rank != 0:
            return
        self._epochs_done = int(epoch)
        if int(epoch) % self.savflow.save_every and int(epoch) != self.max_epochs:
            return
        save_dir = Path(self.checkpoint_conf.save_dir)
        model_only = save_dir / checkpoints.MODEL_ONLY
        tmp = model_only.with_name(f".{model_only.name}.tmp")
        state = {k: v.detach().cpu() for k, v in unwrap_ddp_if_wrapped(self.model).state_dict().items()}
        torch.save({"model": state}, tmp)
        os.replace(tmp, model_only)
        step = self.steps[Phase.TRAIN]
        info = checkpoints.checkpoint_info(self.savflow.experiment_dir, step, int(epoch))
        metrics = save_dir / checkpoints.METRICS
        metrics.write_text(json.dumps(self._metrics(status="running", latest=info), indent=1))
        checkpoints.publish_checkpoint(
            self.savflow.experiment_dir, trainer_state=save_dir / f"{checkpoints.TRAINER_STATE}",
            model_only=model_only, step=step, epoch=int(epoch), keep_last=self.savflow.keep_last, metrics=metrics,
            run_key=self.savflow.run_key)
        self._write_metrics(status="running", latest=info)

    def run(self) -> None:
        if self.distributed_rank == 0:
            self._prepare_experiment()
        if self.epoch >= self.max_epochs:
            log.info("nothing to train: the checkpoint is at epoch %d of %d (raise --epochs to train longer)",
                     self.epoch, self.max_epochs)
        else:
            log.info("training epochs %d..%d from step %d on %d process(es)", self.epoch + 1, self.max_epochs,
                     self.steps[Phase.TRAIN], dist.get_world_size())
        super().run()
        if self._progress is not None:
            self._progress.close()
        digests = self._replica_digests()
        if self.distributed_rank == 0:
            self._write_metrics(status="complete", latest=checkpoints.read_latest_pointer(self.savflow.experiment_dir),
                                replica_digests=digests)
        if len(set(digests)) != 1:
            raise RuntimeError(f"replicas ended with different weights: {digests}")

    # ---- helpers ------------------------------------------------------------------------------------------------

    def _prepare_experiment(self) -> None:
        """Rank 0, after every process has made its resume decision: apply --overwrite, or carry over the loss
        history of the run being resumed."""
        exp = self.savflow.experiment_dir
        plan = self.savflow.resume
        if plan.get("existing_step") is not None:
            removed = checkpoints.clear_experiment(exp)
            log.info("--overwrite: deleted %d objects of the previous run in %s", removed, exp)
        elif plan.get("kind") == "resume" and not plan.get("explicit"):
            self._load_history()
        if plan.get("kind") == "resume":
            log.info("resumed at step %d, epoch %d", self.steps[Phase.TRAIN], self.epoch)

    def _load_history(self) -> None:
        """The loss history up to the checkpoint being resumed: the metrics published with that checkpoint
        (a kill after its marker but before the experiment's metrics file was rewritten loses nothing), else
        the experiment's metrics file (checkpoints published before the metrics travelled with them)."""
        resumed = self.savflow.resume.get("checkpoint") or ""
        candidates = [storage.join(resumed.rsplit("/", 1)[0], checkpoints.METRICS)] if resumed else []
        candidates.append(storage.join(self.savflow.experiment_dir, checkpoints.METRICS))
        previous = None
        for uri in candidates:
            try:
                previous = json.loads(storage.read_text(uri))
                break
            except storage.NotFoundError:
                continue
        if previous is None:
            return
        step = self.steps[Phase.TRAIN]
        self._prior_curve = [p for p in previous.get("loss_curve", []) if p[0] <= step]
        for key in ("loss_terms", "lr_curves"):
            self._prior_curves[key] = {name: [p for p in curve if p[0] <= step]
                                       for name, curve in (previous.get(key) or {}).items()}
        self._prior_curves["step_seconds_curve"] = [p for p in previous.get("step_seconds_curve") or []
                                                    if p[0] <= step]
        self._prior_epochs = [e for e in previous.get("epochs", [])
                              if e.get("Trainer/epoch", self.epoch) < self.epoch]

    def _replica_digests(self) -> list[str]:
        digest = state_dict_digest(unwrap_ddp_if_wrapped(self.model).state_dict())
        gathered: list[str | None] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, digest)
        return [str(d) for d in gathered]

    def _seconds_per_step(self) -> float | None:
        gaps = [b - a for a, b in zip(self._step_times, self._step_times[1:])]
        return statistics.median(gaps) if gaps else None

    def _step_seconds_curve(self) -> list[list[float]]:
        """``[step, seconds since the previous step]`` for the steps of this run (data loading, the optimizer
        and any checkpoint save in between included)."""
        return [[p[0], b - a] for p, a, b in zip(self._loss_curve[1:], self._step_times, self._step_times[1:])]

    def _samples_per_second(self, seconds_per_step: float | None) -> float | None:
        """Samples (video clips) per second over all processes: the mean batch of rank 0 times the world size,
        per median step time."""
        if not seconds_per_step or not self._loss_curve:
            return None
        return self._samples / len(self._loss_curve) * dist.get_world_size() / seconds_per_step

    def _gpu_memory(self) -> dict[str, Any]:
        """Peak memory allocated by tensors on rank 0's GPU (none on CPU)."""
        if self.device.type != "cuda" or not torch.cuda.is_available():
            return {"gpu_name": None, "gpu_max_memory_bytes": None}
        return {"gpu_name": torch.cuda.get_device_name(self.device),
                "gpu_max_memory_bytes": int(torch.cuda.max_memory_allocated(self.device))}

    def _param_groups(self) -> list[dict[str, Any]]:
        """What each optimizer param group holds: its tensors, elements, weight decay and top-level modules."""
        optim = getattr(self, "optim", None)
        if optim is None:
            return []
        names = {id(p): n for n, p in unwrap_ddp_if_wrapped(self.model).named_parameters()}
        out = []
        for group in optim.optimizer.param_groups:
            params = group["params"]
            modules = sorted({names.get(id(p), "?").split(".")[0] for p in params})
            out.append({"tensors": len(params), "elements": int(sum(p.numel() for p in params)),
                        "weight_decay": group.get("weight_decay"), "modules": modules})
        return out

    def _write_metrics(self, *, status: str, latest: checkpoints.CheckpointInfo | None,
                       replica_digests: list[str] | None = None) -> None:
        storage.write_text(storage.join(self.savflow.experiment_dir, checkpoints.METRICS),
                           json.dumps(self._metrics(status=status, latest=latest, replica_digests=replica_digests),
                                      indent=1))

    def _metrics(self, *, status: str, latest: checkpoints.CheckpointInfo | None,
                 replica_digests: list[str] | None = None) -> dict[str, Any]:
        curve = self._prior_curve + self._loss_curve
        epochs = self._prior_epochs + self._epoch_stats
        last = epochs[-1] if epochs else {}
        prior_terms = self._prior_curves.get("loss_terms", {})
        prior_lr = self._prior_curves.get("lr_curves", {})
        seconds_per_step = self._seconds_per_step()
        metrics = {
            "status": status,
            "config": self.savflow.config_name,
            "device": str(self.device),
            "world_size": dist.get_world_size(),
            "steps": self.steps[Phase.TRAIN],
            "epochs_done": self._epochs_done,
            "max_epochs": self.max_epochs,
            "resume": self.savflow.resume,
            "steps_this_run": self.steps[Phase.TRAIN] - self._start_step,
            "seconds_per_step": seconds_per_step,
            "wall_seconds_this_run": time.time() - self._run_started,
            "final_loss": next((v for k, v in last.items() if k.startswith("Losses/train_")
                                and k.endswith("_loss")), None),
            "latest_checkpoint": asdict(latest) if latest else None,
            "loss_curve": downsample_curve(curve),
            "epochs": epochs,
            "experiment_dir": self.savflow.experiment_dir,
            "overrides": list(self.savflow.run_key.get("overrides") or []),
            "samples_per_second": self._samples_per_second(seconds_per_step),
            "batch_size_per_rank": self._samples / len(self._loss_curve) if self._loss_curve else None,
            **self._gpu_memory(),
            "loss_terms": {term: downsample_curve(prior_terms.get(term, []) + self._term_curves.get(term, []))
                           for term in {**prior_terms, **self._term_curves}},
            "lr_curves": {group: downsample_curve(prior_lr.get(group, []) + self._lr_curves.get(group, []))
                          for group in {**prior_lr, **self._lr_curves}},
            "param_groups": self._param_groups(),
            "step_seconds_curve": downsample_curve(self._prior_curves.get("step_seconds_curve", [])
                                                   + self._step_seconds_curve()),
        }
        if replica_digests is not None:
            metrics["replica_digests"] = replica_digests
        return metrics
