"""Longest-processing-time-first shard planning: exact cover, Graham's bounds, determinism."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from savflow.common.lpt_shards import plan_shards, shard_of

names = st.text(alphabet="abcdefghij0123456789_", min_size=1, max_size=8)
weights_st = st.dictionaries(names, st.integers(min_value=0, max_value=10_000).map(float), max_size=60)


def loads(shards: list[list[str]], weights: dict[str, float]) -> list[float]:
    return [sum(weights[v] for v in shard) for shard in shards]


def brute_force_optimum(weights: dict[str, float], n: int) -> float:
    """The smallest possible largest shard, by trying every assignment (small inputs only)."""
    items = list(weights.values())
    best = float("inf")
    for assignment in itertools.product(range(n), repeat=len(items)):
        load = [0.0] * n
        for w, k in zip(items, assignment, strict=True):
            load[k] += w
        best = min(best, max(load))
    return best


@settings(max_examples=200, deadline=None)
@given(weights=weights_st, n=st.integers(min_value=1, max_value=12))
def test_every_video_in_exactly_one_shard(weights: dict[str, float], n: int) -> None:
    shards = plan_shards(weights, n)
    assert len(shards) == n
    flat = [v for shard in shards for v in shard]
    assert sorted(flat) == sorted(weights)
    assert all(shard == sorted(shard) for shard in shards)


@settings(max_examples=200, deadline=None)
@given(weights=weights_st, n=st.integers(min_value=1, max_value=12))
def test_largest_shard_within_mean_plus_largest_item(weights: dict[str, float], n: int) -> None:
    shards = plan_shards(weights, n)
    total = sum(weights.values())
    largest_item = max(weights.values(), default=0.0)
    assert max(loads(shards, weights)) <= total / n + largest_item + 1e-9


@settings(max_examples=150, deadline=None)
@given(weights=st.dictionaries(names, st.integers(min_value=1, max_value=100).map(float), min_size=1, max_size=7),
       n=st.integers(min_value=2, max_value=3))
def test_within_four_thirds_of_brute_force_optimum(weights: dict[str, float], n: int) -> None:
    lpt = max(loads(plan_shards(weights, n), weights))
    optimum = brute_force_optimum(weights, n)
    assert lpt <= (4 / 3 - 1 / (3 * n)) * optimum + 1e-9


@settings(max_examples=100, deadline=None)
@given(weights=weights_st, n=st.integers(min_value=1, max_value=8))
def test_deterministic_and_independent_of_insertion_order(weights: dict[str, float], n: int) -> None:
    reordered = dict(reversed(list(weights.items())))
    assert plan_shards(weights, n) == plan_shards(reordered, n)
    assert [shard_of(weights, k, n) for k in range(n)] == plan_shards(weights, n)


def test_known_answer_by_hand() -> None:
    # LPT on 7,6,5,4,3 over 2 shards: 7->A, 6->B, 5->B(6<7), 4->A(7<11), 3->A(11=11, lower index) = A 14, B 11.
    weights = {"a": 7, "b": 6, "c": 5, "d": 4, "e": 3}
    assert plan_shards(weights, 2) == [["a", "d", "e"], ["b", "c"]]
    # Equal weights go in name order, round robin.
    assert plan_shards({"x": 1, "w": 1, "v": 1}, 2) == [["v", "x"], ["w"]]
    assert plan_shards({}, 3) == [[], [], []]


@pytest.mark.parametrize("weights,n", [({"a": -1.0}, 2), ({"a": float("nan")}, 2), ({"a": 1.0}, 0),
                                       ({"a": float("inf")}, 1)])
def test_rejects_bad_input(weights: dict[str, float], n: int) -> None:
    with pytest.raises(ValueError):
        plan_shards(weights, n)


def test_shard_index_checked() -> None:
    with pytest.raises(ValueError):
        shard_of({"a": 1.0}, 2, 2)
    with pytest.raises(ValueError):
        shard_of({"a": 1.0}, -1, 2)
