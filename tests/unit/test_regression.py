"""Regression verdicts of the recurring evaluation, and the history file they read."""

from __future__ import annotations

import pytest

from savflow.evaluate import regression as rg


def entry(run: str, jf: float) -> rg.HistoryEntry:
    return rg.HistoryEntry(run=run, checkpoint=f"gs://b/exp/checkpoints/{run}.pt", j_and_f=jf, j=jf - 1,
                           f=jf + 1, num_videos=3, num_objects=6, finished_at="2026-11-25T00:00:00Z")


def test_first_run_passes_without_references() -> None:
    v = rg.compare(entry("r1", 50.0), [], baseline=None, max_drop=1.0)
    assert v.ok and v.previous is None and v.delta_previous is None
    assert v.messages == ["no previous passing evaluation of this experiment"]


def test_drop_within_threshold_passes_and_beyond_fails() -> None:
    history = [entry("r1", 60.0), entry("r2", 55.0)]
    ok = rg.compare(entry("r3", 54.5), history, baseline=None, max_drop=0.5)
    assert ok.ok and ok.previous.run == "r2" and ok.delta_previous == pytest.approx(-0.5)
    bad = rg.compare(entry("r3", 54.0), history, baseline=None, max_drop=0.5)
    assert not bad.ok and "fell by 1.00 points since run r2" in bad.messages[-1]


def test_baseline_is_checked_independently() -> None:
    v = rg.compare(entry("r2", 70.0), [entry("r1", 69.0)], baseline=72.0, max_drop=1.0)
    assert not v.ok and v.delta_previous == pytest.approx(1.0) and v.delta_baseline == pytest.approx(-2.0)


def test_a_retried_run_does_not_compare_with_itself() -> None:
    v = rg.compare(entry("r2", 40.0), [entry("r1", 41.0), entry("r2", 40.0)], baseline=None, max_drop=5)
    assert v.previous.run == "r1"


def test_history_round_trip_and_no_duplicates(store_root: str) -> None:
    exp = store_root + "/exp"
    assert rg.load_history(exp) == []
    rg.append_history(exp, entry("r1", 50.0))
    rg.append_history(exp, entry("r2", 51.0))
    rg.append_history(exp, entry("r2", 99.0))
    assert [(e.run, e.j_and_f) for e in rg.load_history(exp)] == [("r1", 50.0), ("r2", 51.0)]


def test_malformed_history_names_file_and_line() -> None:
    with pytest.raises(ValueError, match=r"h.jsonl:2: not a history entry"):
        rg.parse_history(entry("r1", 1.0).to_line() + "\n{bad\n", file="h.jsonl")


def test_a_failed_evaluation_never_becomes_the_reference() -> None:
    """Otherwise a lasting regression would fail once and pass from the next run on."""
    failed = rg.HistoryEntry(**{**entry("r2", 40.0).__dict__, "passed": False})
    v = rg.compare(entry("r3", 40.0), [entry("r1", 50.0), failed], baseline=None, max_drop=1.0)
    assert v.previous.run == "r1" and not v.ok


def test_concurrent_evaluations_all_land(store_root: str) -> None:
    """Four evaluations of one experiment finishing together (a schedule with max concurrency 4): each adds its
    own entry, none is lost, and a retry of one adds nothing."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    exp = store_root + "/exp"
    start = Barrier(4)

    def evaluate(i: int) -> bool:
        start.wait()
        return rg.append_history(exp, entry(f"r{i}", 50.0 + i))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(evaluate, range(4)))
    assert sorted(e.run for e in rg.load_history(exp)) == ["r0", "r1", "r2", "r3"]
    assert rg.append_history(exp, entry("r2", 1.0)) is False


def test_only_evaluations_of_the_same_videos_and_protocol_compare() -> None:
    same = rg.HistoryEntry(**{**entry("r1", 70.0).__dict__, "video_set": "a", "protocol": "p"})
    other_videos = rg.HistoryEntry(**{**entry("r2", 90.0).__dict__, "video_set": "b", "protocol": "p"})
    current = rg.HistoryEntry(**{**entry("r3", 69.5).__dict__, "video_set": "a", "protocol": "p"})
    verdict = rg.compare(current, [same, other_videos], baseline=None, max_drop=1.0)
    assert verdict.ok and verdict.previous.run == "r1"
    alone = rg.compare(current, [other_videos], baseline=None, max_drop=1.0)
    assert alone.ok and alone.previous is None and "1 on others not compared" in alone.messages[0]


def test_the_single_file_history_of_earlier_versions_is_still_read(store_root: str) -> None:
    from savflow.common import storage

    exp = store_root + "/exp"
    storage.write_text(rg.history_uri(exp), entry("old", 40.0).to_line() + "\n")
    rg.append_history(exp, rg.HistoryEntry(**{**entry("new", 41.0).__dict__, "finished_at": "2026-11-26T00:00:00Z"}))
    assert [e.run for e in rg.load_history(exp)] == ["old", "new"]


def test_a_run_records_one_entry_per_benchmark_and_compares_within_each(store_root: str) -> None:
    """sav-evaluate's ``benchmarks``: one object per (run, benchmark), a retry of either adds nothing, and a
    benchmark's previous evaluation is its own, never another benchmark's on the same videos and protocol."""
    exp = store_root + "/exp"

    def named(run: str, jf: float, benchmark: str) -> rg.HistoryEntry:
        return rg.HistoryEntry(**{**entry(run, jf).__dict__, "benchmark": benchmark})

    assert rg.append_history(exp, named("r1", 50.0, "davis")) and rg.append_history(exp, named("r1", 80.0, "sav"))
    assert rg.append_history(exp, entry("r1", 60.0))  # the single evaluation ("") of the same run
    assert rg.append_history(exp, named("r1", 1.0, "sav")) is False
    assert sorted((e.benchmark, e.j_and_f) for e in rg.load_history(exp)) == [("", 60.0), ("davis", 50.0),
                                                                              ("sav", 80.0)]
    v = rg.compare(named("r2", 79.5, "sav"), rg.load_history(exp), baseline=None, max_drop=1.0)
    assert v.ok and v.previous.benchmark == "sav" and v.delta_previous == pytest.approx(-0.5)
    alone = rg.compare(named("r2", 10.0, "mose"), rg.load_history(exp), baseline=None, max_drop=1.0)
    assert alone.ok and alone.previous is None and "evaluation of mose" in alone.messages[0]
