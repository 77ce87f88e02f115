"""The CPU MemMeter workaround: still needed, and still working.

If sam2 ever stops calling ``torch.cuda.reset_peak_memory_stats()`` unconditionally, the first test fails and
``savflow.train.cpu_memmeter`` should go.
"""

from __future__ import annotations

import pytest
import torch

from savflow.train import cpu_memmeter

needs_cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="the failure only happens without CUDA")


@needs_cpu_only
def test_unpatched_meter_still_fails_on_cpu():
    """The reason the workaround exists: the trainer's meter raises on a machine without CUDA."""
    from training.utils.train_utils import MemMeter

    with pytest.raises(RuntimeError):
        MemMeter("Mem (GB)", torch.device("cpu")).update(reset_peak_usage=True)


def test_patched_trainer_meter_works_and_measures_host_memory():
    import training.trainer as trainer_module

    original = trainer_module.MemMeter
    with cpu_memmeter.cpu_mem_meter():
        meter = trainer_module.MemMeter("Mem (GB)", torch.device("cpu"), ":.2f")
        meter.update(reset_peak_usage=True)
        meter.update(reset_peak_usage=True)
    assert trainer_module.MemMeter is original
    # The meter must report this process's peak RSS: a running Python with torch loaded holds well over 10 MB.
    assert 0.01 < meter.val < 1000 and meter.count == 2 and meter.peak == meter.val
    assert "Mem (GB)" in str(meter)


def test_patch_is_restored_on_error():
    import training.trainer as trainer_module

    original = trainer_module.MemMeter
    with pytest.raises(KeyError), cpu_memmeter.cpu_mem_meter():
        raise KeyError("boom")
    assert trainer_module.MemMeter is original
