"""Which videos one staging shard does: its balanced share of the split, less what is complete and was made
the way this run would make it; a complete video made differently (other source objects, sample rate, quality,
layout, masks, output format: its key, :func:`video_key`) is redone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from savflow.common import markers, provenance, savformat
from savflow.common import staged as lay
from savflow.common.lpt_shards import shard_of
from savflow.stage.raw_split import TrainSource, ValSource


@dataclass(frozen=True)
class ShardPlan:
    """``mine``: the shard's videos; ``skipped``: complete ones made as this run would; ``todo``: the rest, in
    order; ``restage``: complete ones made differently, with their old markers; ``differences``: what differs
    for each of those."""

    mine: list[str]
    skipped: list[str]
    todo: list[str]
    restage: dict[str, dict[str, Any]]
    differences: dict[str, list[str]]


def video_key(src: TrainSource | ValSource, video: str, *, layout: str, sample_rate: int, jpeg_quality: int,
              masks: bool) -> dict[str, Any]:
    """What determines a staged video's files: its source objects and the settings that shape the output
    (val/test files are copied, so the JPEG quality does not apply to them)."""
    return {"format": provenance.STAGE_FORMAT, "source": src.identity(video), "layout": layout,
            "sample_rate": sample_rate, "jpeg_quality": jpeg_quality if src.kind == "train" else None,
            "masks": masks}


def check_args(shard: int, num_shards: int, sample_rate: int, jpeg_quality: int, layout: str | None,
                max_failures: int) -> None:
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in 0..num_shards-1, got shard {shard} of {num_shards}")
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if layout is not None and layout not in lay.LAYOUTS:
        raise ValueError(f"layout must be one of {lay.LAYOUTS}, got {layout!r}")
    if max_failures < 0:
        raise ValueError(f"max_failures must be >= 0, got {max_failures}")



def check_sample_rate(kind: str, sample_rate: int, masks: bool) -> None:
    """Masks sit on every ``ANN_EVERY``-th frame; a rate that drops some of them is refused."""
    if (kind == "val" or masks) and savformat.ANN_EVERY % sample_rate:
        what = "of a val/test split" if kind == "val" else "that masks are written for"
        raise ValueError(f"sample_rate {sample_rate} would drop annotated frames {what} (masks are on every "
                         f"{savformat.ANN_EVERY}th frame); use a divisor of {savformat.ANN_EVERY}")


def plan_shard(src: TrainSource | ValSource, dest: str, videos: list[str] | None, shard: int, num_shards: int, *,
               key_of: Callable[[str], dict[str, Any]], workers: int) -> ShardPlan:
    """The shard's share (balanced, deterministic: every shard computes the same plan) and what of it to do:
    every complete video's marker is read and its key compared with ``key_of(video)``."""
    wanted = list(dict.fromkeys(videos)) if videos is not None else src.videos()
    weights = src.weights()
    mine = shard_of({v: weights.get(v, 0.0) for v in wanted}, shard, num_shards)
    done = markers.done_units(dest)
    found = markers.read_markers(dest, [v for v in mine if v in done], max(8, 4 * workers))
    diffs = {v: _differences(payload, key_of(v)) for v, payload in found.items()}
    diffs = {v: d for v, d in diffs.items() if d}
    skipped = [v for v in found if v not in diffs]
    todo = [v for v in mine if v not in skipped]
    return ShardPlan(mine, skipped, todo, {v: found[v] or {} for v in diffs}, diffs)


def _differences(payload: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    """How a staged video's marker differs from this run's key; a marker gone since the listing differs. Masks
    staged earlier are no reason to redo a run without them: they are a superset of what it writes."""
    if payload is None:
        return ["marker: gone since the listing"]
    recorded = provenance.key_of(payload)
    if recorded is not None and recorded.get("masks") and not wanted.get("masks"):
        wanted = {**wanted, "masks": True}
    return provenance.differences(recorded, wanted)
