"""Regression checks for recurring evaluations: compare a run's J&F with the previous run and a baseline.

Each evaluation of an experiment is one object, ``{experiment_dir}/eval/history/{run}.json`` (a run's evaluation
of a named benchmark of ``sav-evaluate``'s ``benchmarks``: ``{run}.{benchmark}.json``), written create-only:
evaluations that finish at the same moment (a schedule allowing concurrent runs) each add their own entry and
none can lose another's, and a retried step keeps the first. (Earlier versions kept one ``history.jsonl``; its
lines are still read.) The recurring ``sav-evaluate`` pipeline compares the new score with the newest earlier
*passing* evaluation of the same experiment *of the same benchmark, on the same videos under the same scoring
protocol* (the name and digests in each entry) and with an optional fixed baseline, and fails the run when J&F
falls by more than ``max_drop`` points. A failing evaluation is recorded too (``passed: false``) but never
becomes the reference, so a lasting regression keeps failing until it is fixed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from savflow.common import storage
from savflow.common.savformat import check_name

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
    video_set: str = ""  # digest of the evaluated video ids ("" in entries from before it was recorded)
    protocol: str = ""  # digest of the scoring options
    benchmark: str = ""  # the name of the sav-evaluate benchmark ("": the single evaluation, and fine-tunes)

    def to_line(self) -> str:
        fields = asdict(self)
        if not fields["benchmark"]:  # as the entries of earlier versions, which their readers take
            del fields["benchmark"]
        return json.dumps(fields, sort_keys=True)


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
    """Compare ``current`` with the newest earlier passing entry of another run of the same benchmark, videos and
    protocol, and with ``baseline`` (J&F x100)."""
    previous = next((e for e in reversed(history) if e.run != current.run and e.passed
                     and (e.benchmark, e.video_set, e.protocol)
                     == (current.benchmark, current.video_set, current.protocol)), None)
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
        others = [e for e in history if e.run != current.run and e.passed]
        what = f" of {current.benchmark}" if current.benchmark else ""
        messages.append(f"no previous passing evaluation{what} of this experiment" + (
            f" on the same videos and protocol ({len(others)} on others not compared)" if others else ""))
    if baseline is not None:
        delta_base = current.j_and_f - baseline
        messages.append(f"J&F {current.j_and_f:.2f} vs baseline {baseline:.2f} ({delta_base:+.2f})")
        if delta_base < -max_drop:
            ok = False
            messages.append(f"J&F is {-delta_base:.2f} points below the baseline, more than the allowed "
                            f"{max_drop:.2f}")
    return Verdict(ok, previous, delta_prev, delta_base, messages)


HISTORY_DIR = "history"


def history_uri(experiment_dir: str) -> str:
    """The history of the versions that kept one file (still read)."""
    return storage.join(experiment_dir, "eval", HISTORY_NAME)


def entry_uri(experiment_dir: str, run: str, benchmark: str = "") -> str:
    name = check_name(run, what="run id") + (f".{check_name(benchmark, what='benchmark name')}" if benchmark else "")
    return storage.join(experiment_dir, "eval", HISTORY_DIR, f"{name}.json")


def load_history(experiment_dir: str) -> list[HistoryEntry]:
    """Every recorded evaluation, oldest first (by finish time, then run id)."""
    from concurrent.futures import ThreadPoolExecutor

    entries: list[HistoryEntry] = []
    legacy = history_uri(experiment_dir)
    try:
        entries += parse_history(storage.read_text(legacy), file=legacy)
    except storage.NotFoundError:
        pass
    root = storage.join(experiment_dir, "eval", HISTORY_DIR)
    uris = [storage.join(root, n) for n in storage.list_prefix(root, recursive=False) if n.endswith(".json")]
    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(storage.read_text, uris))
    for uri, text in zip(uris, texts):
        entries += parse_history(text, file=uri)
    # a run's evaluation (of one benchmark) recorded in both places counts once (its first)
    unique = {(e.run, e.benchmark): e for e in reversed(entries)}
    return sorted(unique.values(), key=lambda e: (e.finished_at, e.run, e.benchmark))


def append_history(experiment_dir: str, entry: HistoryEntry) -> bool:
    """Record ``entry`` as its own object; False when its run's evaluation of its benchmark is already recorded
    (a retried step)."""
    if any((e.run, e.benchmark) == (entry.run, entry.benchmark) for e in load_history(experiment_dir)):
        return False
    try:
        storage.write_text(entry_uri(experiment_dir, entry.run, entry.benchmark), entry.to_line() + "\n",
                           create_only=True)
    except storage.AlreadyExistsError:
        return False
    return True
