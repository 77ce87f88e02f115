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
