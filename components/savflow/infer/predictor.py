"""Build a SAM 2 video predictor from a checkpoint URI and a model config name or file.

The checkpoint is a SAM 2 release ``.pt`` or one written by our training step; both hold ``{"model": state_dict}``,
which ``sam2.build_sam._load_checkpoint`` reads strictly (missing or unexpected keys fail). It can live at any
storage URI; a ``gs://`` one is downloaded to a temporary file first.

Model configs are Hydra names (sam2's released ``configs/sam2.1/sam2.1_hiera_b+.yaml``, our
``sam2.1_hiera_tiny128`` in ``savflow.configs``) or a YAML file at a local path or storage URI, which is
composed from its own folder with the same search path plugins.

Settings follow sam2's ``tools/vos_inference.py``, which produced the published SA-V numbers: per-object masks
may overlap (``non_overlap_masks=false``) and the demo post-processing is off unless asked for. Hole filling,
part of that post-processing, needs sam2's compiled ``_C`` extension on a CUDA device; elsewhere it is turned off
here with a log line rather than failing (and warning) on every frame inside sam2.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from savflow.common import storage
from savflow.common.devices import AUTO, resolve_device

log = logging.getLogger(__name__)

_YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class LoadedPredictor:
    """A built predictor and what was decided while building it."""

    model: object  # sam2.sam2_video_predictor.SAM2VideoPredictor (or its VOS-optimized subclass)
    device: "torch.device"  # noqa: F821  (torch is imported lazily)
    compiled: bool
    hole_filling: bool


def has_c_extension() -> bool:
    """Whether sam2 was built with its ``_C`` extension (connected components for hole filling)."""
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        return False
    return True


def is_config_file(model_config: str) -> bool:
    """A storage URI, an absolute path or an existing local YAML file is a file; anything else a Hydra name."""
    if storage.is_gcs(model_config) or model_config.startswith(storage.FILE_SCHEME):
        return True
    return os.path.isabs(model_config) or (
        model_config.endswith(_YAML_SUFFIXES) and os.path.isfile(model_config))


@contextlib.contextmanager
def config_name(model_config: str, scratch: Path) -> Iterator[str]:
    """Yield the name to hand to ``build_sam2*`` while Hydra can resolve it."""
    from savflow.common.hydra_config import ensure_search_path

    ensure_search_path()
    if not is_config_file(model_config):
        yield model_config
        return
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    name = model_config.rstrip("/").rsplit("/", 1)[-1]
    if not name.endswith(_YAML_SUFFIXES):
        raise ValueError(f"{model_config}: a model config file must end with .yaml or .yml")
    local = scratch / "config" / name
    storage.download_file(model_config, local)
    # Hydra holds one global instance: swap in one rooted at the file's folder, then put sam2's back.
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(local.parent.resolve()), version_base="1.2"):
            yield name
    finally:
        ensure_search_path()


def local_checkpoint(checkpoint: str, scratch: Path) -> Path:
    """The checkpoint as a local file: local URIs in place, ``gs://`` ones downloaded into ``scratch``."""
    if not storage.is_gcs(checkpoint):
        path = storage.local_path(checkpoint)
        if not path.is_file():
            raise storage.NotFoundError(f"{checkpoint}: checkpoint not found")
        return path
    return storage.download_file(checkpoint, scratch / "checkpoint.pt")


def build_predictor(checkpoint: str | None, model_config: str, *, device: str = AUTO, compile: bool = False,
                    apply_postprocessing: bool = False, local_file: Path | None = None) -> LoadedPredictor:
    """Build the video predictor on ``device`` with the checkpoint's weights (random init when None);
    ``local_file`` is the checkpoint already fetched (else it is fetched here).

    ``compile`` selects sam2's ``SAM2VideoPredictorVOS`` (``vos_optimized=True``), which compiles the image
    encoder, memory attention/encoder and SAM heads with ``torch.compile``; the first video pays for it.
    """
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    dev = resolve_device(device)
    if compile and dev.type != "cuda":
        raise ValueError("compile (sam2's vos_optimized predictor) needs a CUDA device; sam2 supports it only there")
    if dev.type == "cuda":
        # TF32 matmuls/convolutions, as sam2's own benchmark and demo set on Ampere and later.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    with tempfile.TemporaryDirectory(prefix="savflow-predictor-") as tmp:
        scratch = Path(tmp)
        ckpt = str(local_file or local_checkpoint(checkpoint, scratch)) if checkpoint else None
        with config_name(model_config, scratch) as name:
            try:
                model = build_sam2_video_predictor(
                    name, ckpt, device=dev, apply_postprocessing=apply_postprocessing, vos_optimized=compile,
                    hydra_overrides_extra=["++model.non_overlap_masks=false"],
                )
            except RuntimeError as exc:  # sam2 raises a bare RuntimeError after logging unmatched keys
                detail = str(exc) or "missing or unexpected state-dict keys (logged above)"
                raise RuntimeError(f"{checkpoint}: cannot load into {model_config}: {detail}") from exc
    hole_filling = model.fill_hole_area > 0
    if hole_filling and not (dev.type == "cuda" and has_c_extension()):
        reason = "sam2 was built without its _C extension" if not has_c_extension() else "the device is not CUDA"
        log.warning("hole filling (fill_hole_area=%s) turned off: %s; other post-processing stays on",
                    model.fill_hole_area, reason)
        model.fill_hole_area = 0
        hole_filling = False
    log.info("built %s from %s (checkpoint %s) on %s; post-processing %s, hole filling %s", type(model).__name__,
             model_config, checkpoint or "none: random init", dev, "on" if apply_postprocessing else "off",
             "on" if hole_filling else "off")
    return LoadedPredictor(model=model, device=dev, compiled=compile, hole_filling=hole_filling)
