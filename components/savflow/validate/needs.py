"""What a training config asks of the data: read from the composed Hydra config, not from our own YAML, so that
sam2's configs, user configs and ``--override`` values are seen as the trainer will see them.

Each ``VOSDataset`` under ``trainer.data.train`` whose raw dataset is a ``JSONRawDataset`` (the SA-V format) gives
one :class:`TrainNeeds`: its sampler's clip length and the raw dataset's stride, frame rate and sample rate, with
sam2's defaults where the config leaves them out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from savflow.validate.manual import VIDEO_DATASET_PATH

JSON_DATASET = "JSONRawDataset"
_INTERPOLATION = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


@dataclass(frozen=True)
class TrainNeeds:
    """``num_frames``: annotated frames per training clip (``RandomUniformSampler``); ``ann_every``: masklet
    entry i is frame ``i * ann_every``; ``frames_fps``: what an ``fps`` key in a JSON is divided into;
    ``sample_rate``: the dataset keeps every S-th frame file. ``dataset_path`` and ``num_frames_key`` are where
    the config sets them, for the overrides a finding suggests."""

    num_frames: int
    ann_every: int = 4
    frames_fps: int = 24
    sample_rate: int = 1
    config: str = "?"
    dataset_path: str = VIDEO_DATASET_PATH
    num_frames_key: str = "scratch.num_frames"


def _walk(node: Any, path: str) -> Iterator[tuple[str, dict]]:
    """Every mapping below ``node`` with its dotted path (list items by index, as Hydra overrides take them)."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}.{i}")


def _key_of(raw: Any, fallback: str) -> str:
    """The key a value interpolates (``${scratch.num_frames}`` -> ``scratch.num_frames``), else ``fallback``."""
    match = _INTERPOLATION.match(raw) if isinstance(raw, str) else None
    return match.group(1) if match else fallback


def needs_from_config(cfg: Any, name: str = "?") -> list[TrainNeeds]:
    """The needs of every SA-V-format dataset a composed config trains on (empty when it has none)."""
    from omegaconf import OmegaConf

    if isinstance(cfg, dict):
        cfg = OmegaConf.create(cfg)
    base = "trainer.data.train"
    raw = OmegaConf.to_container(OmegaConf.select(cfg, base), resolve=False) if OmegaConf.select(cfg, base) else {}
    out = []
    for path, node in _walk(raw, base):
        dataset, sampler = node.get("video_dataset"), node.get("sampler")
        if not isinstance(dataset, dict) or not isinstance(sampler, dict) or \
                not str(dataset.get("_target_", "")).endswith(JSON_DATASET):
            continue

        def value(key: str, default: Any, where: str = f"{path}.video_dataset") -> Any:
            found = OmegaConf.select(cfg, f"{where}.{key}", default=None)
            return default if found is None else found

        out.append(TrainNeeds(num_frames=int(value("num_frames", 1, f"{path}.sampler")),
                              ann_every=int(value("ann_every", 1)), frames_fps=int(value("frames_fps", 24)),
                              sample_rate=int(value("sample_rate", 1)), config=name,
                              dataset_path=f"{path}.video_dataset",
                              num_frames_key=_key_of(sampler.get("num_frames"), f"{path}.sampler.num_frames")))
    return out


def read_needs(config: str, overrides: Sequence[str] = ()) -> list[TrainNeeds]:
    """Compose the named training config with ``overrides`` (as ``savflow train`` does) and read its needs;
    a config without an SA-V-format dataset is a ``ValueError``."""
    from savflow.train.worker import compose_training_config

    needs = needs_from_config(compose_training_config(config, list(overrides)), config)
    if not needs:
        raise ValueError(f"config {config}: no {JSON_DATASET} under trainer.data.train; validate checks SA-V-format "
                         f"training data (*_manual.json + JPEG frames)")
    return needs
