"""The one CUDA assumption of the sam2 trainer that breaks CPU training, worked around narrowly.

``training.trainer.Trainer.train_epoch`` updates a ``MemMeter`` after every step, and ``MemMeter.update`` calls
``torch.cuda.reset_peak_memory_stats()`` unconditionally, which raises on a machine without CUDA, so CPU
training dies after its first backward pass. (``val_epoch`` guards the same call with
``torch.cuda.is_available()``; ``train_epoch`` does not.) The other CUDA paths of the trainer are selected by
configuration: ``trainer.accelerator: cpu`` gives a CPU device, DDP without ``device_ids`` and the gloo backend,
and the worker turns off AMP and ``pin_memory``.

The workaround swaps the ``MemMeter`` name that ``training.trainer`` looks up for a subclass that reports the
process's peak resident memory instead, only while a CPU run is in progress. The test
``tests/unit/test_train_cpu_support.py`` fails as soon as the unpatched meter works on CPU (the workaround can
go) or the patched one does not.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from typing import Iterator

from training.utils.train_utils import MemMeter


def peak_rss_gb() -> float:
    """Peak resident set size of this process in GB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1e9 if sys.platform == "darwin" else rss * 1024 / 1e9


class CpuMemMeter(MemMeter):
    """``MemMeter`` for CPU runs: the same running statistics over peak host memory, no CUDA calls."""

    def update(self, n: int = 1, reset_peak_usage: bool = True) -> None:
        self.val = peak_rss_gb()
        self.sum += self.val * n
        self.count += n
        self.avg = self.sum / self.count
        self.peak = max(self.peak, self.val)


@contextlib.contextmanager
def cpu_mem_meter() -> Iterator[None]:
    """Within this block the trainer's per-step memory meter works without CUDA."""
    import training.trainer as trainer_module

    original = trainer_module.MemMeter
    trainer_module.MemMeter = CpuMemMeter
    try:
        yield
    finally:
        trainer_module.MemMeter = original
