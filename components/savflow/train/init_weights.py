"""A seeded random-initialisation checkpoint of a SAM 2 model config.

Production runs start from a SAM 2.1 release checkpoint; without one (tests, the local demo, where no weights can
be downloaded) this writes a model-only checkpoint, ``{"model": state_dict}``, that both the training step
(``--checkpoint``) and the predictor load, so "before fine-tuning" is a real, reproducible model.
"""

from __future__ import annotations

import io

from savflow.common import storage
from savflow.common.hydra_config import ensure_search_path


def write_random_init_checkpoint(model_config: str, uri: str, *, seed: int = 0) -> str:
    """Build ``model_config`` (by Hydra name) with weights drawn under ``seed`` and save it to ``uri``."""
    import torch
    from sam2.build_sam import build_sam2

    ensure_search_path()
    torch.manual_seed(seed)
    model = build_sam2(model_config, None, device="cpu", mode="eval")
    buf = io.BytesIO()
    torch.save({"model": model.state_dict()}, buf)
    storage.write_bytes(uri, buf.getvalue())
    return uri
