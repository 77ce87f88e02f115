"""Balanced shards of a video list: longest processing time first (LPT), deterministic.

Staging and inference fan out over N pods with a KFP ``ParallelFor``; every pod computes its own share from the
same inputs, so the plan must be a pure function of (weights, N): same answer in every pod, every video in
exactly one shard. LPT (sort by weight, largest first; give each video to the currently lightest shard) keeps the
largest shard within ``total / N + max weight`` and within ``4/3 - 1/(3N)`` of the optimum (Graham, 1969).
"""

from __future__ import annotations

import heapq
import math
from typing import Mapping


def plan_shards(weights: Mapping[str, float], num_shards: int) -> list[list[str]]:
    """Split the videos of ``weights`` (video -> cost, e.g. frame count) into ``num_shards`` lists.

    Videos are placed largest first, equal weights in name order, each onto the shard with the least load so
    far (the lowest shard index among equals). Each returned shard is sorted by name. Shards may be empty when
    there are fewer videos than shards.
    """
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards must be a whole number >= 1, got {num_shards!r}")
    for name, weight in weights.items():
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight) \
                or weight < 0:
            raise ValueError(f"weight of {name!r} must be a finite number >= 0, got {weight!r}")
    order = sorted(weights, key=lambda name: (-float(weights[name]), name))
    heap = [(0.0, k) for k in range(num_shards)]
    shards: list[list[str]] = [[] for _ in range(num_shards)]
    for name in order:
        load, k = heapq.heappop(heap)
        shards[k].append(name)
        heapq.heappush(heap, (load + float(weights[name]), k))
    return [sorted(shard) for shard in shards]


def shard_of(weights: Mapping[str, float], k: int, n: int) -> list[str]:
    """Shard ``k`` (0-based) of ``n`` from :func:`plan_shards`."""
    shards = plan_shards(weights, n)
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n:
        raise ValueError(f"shard index must be in 0..{n - 1}, got {k!r}")
    return shards[k]
