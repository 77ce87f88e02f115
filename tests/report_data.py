"""What the report pages are built from, made by the code that makes it in a real run, on small inputs.

* :func:`trainer_metrics`: ``train_metrics.json`` as :class:`savflow.train.trainer.SavflowTrainer` writes it,
  from its own ``_step`` / ``_metrics`` / resume code, with the sam2 parts it wraps replaced by stand-ins (the
  forward pass returns made-up loss terms in sam2's format, a fake clock ticks, two param groups follow a
  schedule): no model runs, so it takes milliseconds.
* :func:`evaluation_page`: the evaluation's HTML page, from ``evaluate_to`` on a generated SA-V-style val split
  with perturbed predictions.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import numpy as np
import torch

from savflow.common import checkpoints, demo_data, storage
from savflow.common.savformat import FRAMES_DIR, MASKS_DIR, decode_object_png, encode_object_png

TERMS = ("loss_mask", "loss_dice", "loss_iou", "loss_class", "core_loss")  # as sam2's loss returns them


class _Clock:
    """Stands in for the ``time`` module of the trainer: each step takes ``step_s`` seconds."""

    def __init__(self, step_s: float) -> None:
        self.now = 1000.0
        self.step_s = step_s

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


def _model() -> torch.nn.Module:
    model = torch.nn.Module()
    model.image_encoder = torch.nn.Linear(4, 4)
    model.sam_mask_decoder = torch.nn.Linear(4, 2)
    return model


def _fake_trainer_init(self, **kwargs: Any) -> None:  # noqa: ANN001 - stands in for Trainer.__init__
    from training.utils.train_utils import Phase

    self.steps = {Phase.TRAIN: kwargs["start_step"], Phase.VAL: 0}
    self.epoch = kwargs["start_epoch"]
    self.max_epochs = kwargs["max_epochs"]
    self.distributed_rank = 0
    self.device = torch.device("cpu")
    self.model = _model()
    self.loss = {"all": None}
    groups = [{"params": list(self.model.image_encoder.parameters()), "lr": 0.0, "weight_decay": 0.1},
              {"params": list(self.model.sam_mask_decoder.parameters()), "lr": 0.0, "weight_decay": 0.0}]
    self.optim = SimpleNamespace(optimizer=torch.optim.SGD(groups, lr=0.0))


def _fake_step(self, batch, model, phase):  # noqa: ANN001 - Trainer._step's signature and return value
    """sam2's ``_step`` contract: count the step, return ({loss key: total}, frames per clip, the terms; the
    terms in sam2's order, the total last)."""
    self.steps[phase] += 1
    s = self.steps[phase]
    rng = np.random.default_rng(s)
    decay = math.exp(-s / 40)
    terms = {"loss_mask": 0.05 * decay + 0.01 + 0.004 * rng.random(),
             "loss_dice": 0.6 * decay + 0.2 + 0.05 * rng.random(),
             "loss_iou": 0.3 * decay + 0.05 + 0.03 * rng.random(),
             "loss_class": 0.2 * decay + 0.02 + 0.02 * rng.random()}
    terms["core_loss"] = 20 * terms["loss_mask"] + terms["loss_dice"] + terms["loss_iou"] + terms["loss_class"]
    terms = {k: torch.tensor(v) for k, v in terms.items()}
    return ({f"Losses/{phase}_{batch.dict_key}_loss": terms["core_loss"]}, 3,  # sam2 returns the frame count
            {f"Losses/{phase}_{batch.dict_key}_{k}": terms[k] for k in TERMS})


def trainer_metrics(experiment_dir: str, *, steps: int = 120, start_step: int = 0, steps_per_epoch: int = 40,
                    max_epochs: int = 3, world_size: int = 2, resume: dict | None = None,
                    step_s: float = 0.75) -> dict[str, Any]:
    """Run ``steps`` train steps of a stand-in :class:`SavflowTrainer` from ``start_step`` and return the
    metrics it writes at the end (``status`` complete; ``_prepare_experiment`` runs first, so a ``resume`` plan
    of kind "resume" carries over the history published in ``experiment_dir``)."""
    from training.trainer import Trainer
    from training.utils.train_utils import Phase

    from savflow.train import trainer as trainer_module

    clock = _Clock(step_s)
    settings = {"experiment_dir": experiment_dir, "config_name": "sam2.1_tiny128_sav_finetune",
                "run_key": {"overrides": ["scratch.num_frames=3", "dataset.multiplier=2"]},
                "resume": resume or {"kind": "fresh"}}
    with mock.patch.object(Trainer, "__init__", _fake_trainer_init), \
            mock.patch.object(Trainer, "_step", _fake_step), \
            mock.patch.object(trainer_module, "time", clock), \
            mock.patch.object(trainer_module.dist, "get_world_size", lambda *a: world_size):
        trainer = trainer_module.SavflowTrainer(savflow=settings, start_step=start_step,
                                                start_epoch=start_step // steps_per_epoch, max_epochs=max_epochs)
        trainer._prepare_experiment()
        batch = SimpleNamespace(dict_key="all", num_videos=2)  # clips of 3 frames
        total = max_epochs * steps_per_epoch
        for _ in range(steps):
            s = trainer.steps[Phase.TRAIN]
            cosine = 0.5 * (1 + math.cos(math.pi * s / total))
            for group, base in zip(trainer.optim.optimizer.param_groups, (3e-6, 5e-5)):
                group["lr"] = base * cosine
            trainer._step(batch, trainer.model, Phase.TRAIN)
            clock.now += clock.step_s * (4 if (s + 1) % steps_per_epoch == 0 else 1)  # a checkpoint save
            if (s + 1) % steps_per_epoch == 0:
                trainer._epoch_stats.append({"Losses/train_all_loss": 1.0 / (s + 1), "Trainer/epoch": s // steps_per_epoch})
                trainer._epochs_done = (s + 1) // steps_per_epoch
        step = trainer.steps[Phase.TRAIN]
        latest = checkpoints.checkpoint_info(experiment_dir, step, trainer._epochs_done)
        return trainer._metrics(status="complete", latest=latest, replica_digests=["ab" * 32] * world_size)


def checkpoint_list(experiment_dir: str, steps: list[int], steps_per_epoch: int = 40) -> list:
    return [checkpoints.checkpoint_info(experiment_dir, s, s // steps_per_epoch) for s in steps]


def evaluation_page(root: Path) -> tuple[str, Any]:
    """Evaluate perturbed predictions of a generated 3-video val split with ``evaluate_to``; returns the
    HTML page's text and the :class:`EvalResult`."""
    from savflow.evaluate.run import evaluate_to

    spec = demo_data.SyntheticSpec(num_videos=3, num_frames=20, height=64, width=96, num_objects=2, seed=7)
    split = str(root / "val")
    demo_data.write_val_split(split, spec)
    gt_root, pred_root = storage.join(split, MASKS_DIR), str(root / "pred")
    for i, name in enumerate(storage.list_prefix(gt_root)):
        mask = decode_object_png(storage.read_bytes(storage.join(gt_root, name)))
        shift = (i % 3 - 1, 2 * (i % 5) - 4) if not name.startswith(spec.video_ids()[0]) else (0, 0)
        storage.write_bytes(storage.join(pred_root, name), encode_object_png(np.roll(mask, shift, (0, 1))))
    evaluation = evaluate_to(gt_root, pred_root, str(root / "eval"), frames_root=storage.join(split, FRAMES_DIR))
    assert evaluation.html is not None
    return evaluation.html, evaluation.result
