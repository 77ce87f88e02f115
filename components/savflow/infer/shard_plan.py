"""Shard planning for the inference fan-out: balanced lists of videos, one per ``ParallelFor`` pod.

A video's cost is about its frame count times its object count (every frame runs the memory attention, mask
decoder and memory encoder once per object), so that product is its weight; the longest-processing-time-first
planner of :mod:`savflow.common.lpt_shards` turns weights into shards. Counts come from listings or staged markers
(:mod:`savflow.infer.inputs`), never from reading the frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from savflow.common.lpt_shards import plan_shards
from savflow.infer.inputs import Sources, VideoCounts


@dataclass(frozen=True)
class ShardPlan:
    shards: list[list[str]]
    counts: dict[str, VideoCounts]

    @property
    def loads(self) -> list[float]:
        return [sum(self.counts[v].weight for v in shard) for shard in self.shards]

    @property
    def balance(self) -> float:
        """Largest shard over the mean shard (total / N); 1.0 is perfect balance."""
        return balance_ratio(self.shards, {v: c.weight for v, c in self.counts.items()})

    def to_json(self) -> str:
        return json.dumps({
            "num_shards": len(self.shards),
            "balance": self.balance,
            "shards": self.shards,
            "loads": self.loads,
            "videos": {v: {"frames": c.frames, "objects": c.objects} for v, c in sorted(self.counts.items())},
        }, indent=2)


def balance_ratio(shards: list[list[str]], weights: dict[str, float]) -> float:
    """max shard weight / (total weight / number of shards)."""
    total = sum(weights[v] for shard in shards for v in shard)
    if not shards or total == 0:
        return 1.0
    return max(sum(weights[v] for v in shard) for shard in shards) / (total / len(shards))


def plan(frames: str, masks: str, num_shards: int, videos: list[str] | None = None, *,
         workers: int = 16) -> ShardPlan:
    """Shards of ``videos`` (default: every video under the roots), balanced on frames x objects."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    sources = Sources.resolve(frames, masks)
    videos = sources.videos() if videos is None else videos
    counts = sources.counts(videos, workers=workers)
    shards = plan_shards({v: c.weight for v, c in counts.items()}, num_shards)
    return ShardPlan(shards=shards, counts=counts)


def shard_videos(frames: str, masks: str, videos: list[str] | None, shard: int, num_shards: int) -> list[str]:
    """The videos of shard ``shard`` of ``num_shards``: every pod computes the same deterministic plan."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} is not in 0..{num_shards - 1}")
    if num_shards == 1:
        return Sources.resolve(frames, masks).videos() if videos is None else list(videos)
    return plan(frames, masks, num_shards, videos).shards[shard]
