"""Regression checks for recurring evaluations: compare a run's J&F with the previous run and a baseline.

Each evaluation of an experiment appends one JSON line to ``{experiment_dir}/eval/history.jsonl``; the
recurring ``sav-evaluate`` pipeline compares the new score with the newest earlier *passing* evaluation of the
same experiment and with an optional fixed baseline, and fails the run when J&F falls by more than ``max_drop``
points. A failing evaluation is recorded too (``passed: false``) but never becomes the reference, so a lasting
regression keeps failing until it is fixed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from savflow.common import storage

HISTORY_NAME = "history.jsonl"


@dataclass(frozen=True)
class HistoryEntry:
    """One evaluation of one checkpoint (scores x100, like the SA-V benchmark prints them)."""

    run: str
    checkpoint: str
    j_and_f: float
    j: float
    f: float
    num_videos: int
    num_objects: int
    finished_at: str
    passed: bool = True

    def to_line(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Verdict:
    """Outcome of the comparison; ``ok`` is False when any reference shows a drop beyond the threshold."""

    ok: bool
    previous: HistoryEntry | None
    delta_previous: float | None
    delta_baseline: float | None
    messages: list[str] = field(default_factory=list)


def parse_history(text: str, *, file: str = "?") -> list[HistoryEntry]:
    """History lines, oldest first; a malformed line is an error naming the file and line."""
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(HistoryEntry(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{file}:{lineno}: not a history entry: {exc}") from exc
    return entries


def compare(current: HistoryEntry, history: list[HistoryEntry], *, baseline: float | None,
            max_drop: float) -> Verdict:
    """Compare ``current`` with the newest earlier passing entry of another run and with ``baseline`` (J&F x100)."""
    previous = next((e for e in reversed(history) if e.run != current.run and e.passed), None)
    messages, ok = [], True
    delta_prev = delta_base = None
    if previous is not None:
        delta_prev = current.j_and_f - previous.j_and_f
        messages.append(f"J&F {current.j_and_f:.2f} vs previous run {previous.run} {previous.j_and_f:.2f} "
                        f"({delta_prev:+.2f})")
        if delta_prev < -max_drop:
            ok = False
            messages.append(f"J&F fell by {-delta_prev:.2f} points since run {previous.run}, more than the "
                            f"allowed {max_drop:.2f}")
    else:
        messages.append("no previous passing evaluation of this experiment")
    if baseline is not None:
        delta_base = current.j_and_f - baseline
        messages.append(f"J&F {current.j_and_f:.2f} vs baseline {baseline:.2f} ({delta_base:+.2f})")
        if delta_base < -max_drop:
            ok = False
            messages.append(f"J&F is {-delta_base:.2f} points below the baseline, more than the allowed "
                            f"{max_drop:.2f}")
    return Verdict(ok, previous, delta_prev, delta_base, messages)


def history_uri(experiment_dir: str) -> str:
    return storage.join(experiment_dir, "eval", HISTORY_NAME)


def load_history(experiment_dir: str) -> list[HistoryEntry]:
    uri = history_uri(experiment_dir)
    try:
        return parse_history(storage.read_text(uri), file=uri)
    except storage.NotFoundError:
        return []


def append_history(experiment_dir: str, entry: HistoryEntry) -> None:
    """Add ``entry`` unless its run is already recorded (a retried step must not add a second line).

    Object stores have no append: the whole file is rewritten, which is fine for one line per evaluation.
    """
    entries = load_history(experiment_dir)
    if any(e.run == entry.run for e in entries):
        return
    text = "".join(e.to_line() + "\n" for e in [*entries, entry])
    storage.write_text(history_uri(experiment_dir), text)
