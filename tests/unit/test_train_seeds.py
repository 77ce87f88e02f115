"""Per-epoch seeds (issue 12, point 3): a run resumed at an epoch boundary must draw what the uninterrupted run
drew, the model's own prompt generator included (``training.model.sam2.SAM2Train.rng``, seeded once with 42 in
its ``__init__`` and not saved in sam2's checkpoint)."""

from __future__ import annotations

import random

import numpy as np
import torch

from savflow.train.trainer import seed_epoch


class _Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rng = np.random.default_rng(seed=42)


def _draws(model: _Model) -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(())), float(model.rng.random())


def test_same_epoch_same_draws_whatever_ran_before() -> None:
    fresh, used = _Model(), _Model()
    used.rng.random(size=17)
    random.random(), np.random.rand(5), torch.rand(3)
    seed_epoch(123, 0, 2, used)
    after_use = _draws(used)
    seed_epoch(123, 0, 2, fresh)
    assert _draws(fresh) == after_use


def test_model_generator_is_the_same_on_every_rank_and_new_each_epoch() -> None:
    rank0, rank1, later = _Model(), _Model(), _Model()
    seed_epoch(123, 0, 1, rank0)
    seed_epoch(123, 1, 1, rank1)
    seed_epoch(123, 0, 2, later)
    first = rank0.rng.random()
    assert first == rank1.rng.random()  # every replica picks the same prompts, as sam2 intends
    assert first != later.rng.random()


def test_process_streams_differ_by_rank() -> None:
    seed_epoch(123, 0, 1)
    a = torch.rand(())
    seed_epoch(123, 1, 1)
    assert torch.rand(()) != a
