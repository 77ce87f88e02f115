"""Which videos one staging shard does: its balanced share of the split, less what is complete, plus what must
be redone (complete, but without the masks this run writes)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from savflow.common import markers, savformat
from savflow.common import staged as lay
from savflow.common.lpt_shards import shard_of
from savflow.stage.raw_split import TrainSource, ValSource


@dataclass(frozen=True)
class ShardPlan:
    """``mine``: the shard's videos; ``skipped``: complete ones; ``todo``: the rest, in order; ``restage``:
    complete ones to redo with masks."""

    mine: list[str]
    skipped: list[str]
    todo: list[str]
    restage: set[str]


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
               masks: bool, workers: int) -> ShardPlan:
    """The shard's share (balanced, deterministic: every shard computes the same plan) and what of it to do."""
    wanted = list(dict.fromkeys(videos)) if videos is not None else src.videos()
    weights = src.weights()
    mine = shard_of({v: weights.get(v, 0.0) for v in wanted}, shard, num_shards)
    done = markers.done_units(dest)
    restage = _marked_without_masks(dest, [v for v in mine if v in done], max(8, 4 * workers)) if masks else set()
    skipped = [v for v in mine if v in done and v not in restage]
    todo = [v for v in mine if v not in done or v in restage]
    return ShardPlan(mine, skipped, todo, restage)


def _marked_without_masks(dest: str, videos: list[str], workers: int) -> set[str]:
    """The complete videos whose marker does not say masks were written (staged without them, or before the
    option existed); a marker gone since the listing counts too, so the video is staged again."""
    if not videos:
        return set()
    with ThreadPoolExecutor(workers, thread_name_prefix="stage-markers") as pool:
        found = list(pool.map(partial(markers.read_marker, dest), videos))
    return {v for v, marker in zip(videos, found) if not (marker or {}).get("masks")}
