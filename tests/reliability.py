"""The reliability figures of a test run (issue 12, point 6): tests record what they injected, killed or fed
in and what came of it; the session's terminal summary prints one table of them (see tests/conftest.py), the
table the README's reliability section quotes.
"""

from __future__ import annotations

from collections import defaultdict

COLUMNS = ("faults injected", "retried", "failed units", "identical", "kills", "resumed", "identical ",
           "bad inputs", "rejected, named")
_rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))


def faults(step: str, *, injected: int, retried: int, failed_units: int, identical: bool) -> None:
    row = _rows[step]
    row["faults injected"] += injected
    row["retried"] += retried
    row["failed units"] += failed_units
    row["fault runs"] += 1
    row["identical"] += int(identical)


def kill(step: str, *, killed: bool, resumed: bool, identical: bool) -> None:
    """One trial; a trial whose command ended before its kill point counts as no kill."""
    row = _rows[step]
    row["kill trials"] += 1
    row["kills"] += int(killed)
    row["resumed"] += int(killed and resumed)
    row["identical "] += int(killed and identical)


def bad_input(step: str, *, rejected_with_name: bool) -> None:
    row = _rows[step]
    row["bad inputs"] += 1
    row["rejected, named"] += int(rejected_with_name)


_GROUPS = {"fault runs": COLUMNS[:4], "kill trials": COLUMNS[4:7], "bad inputs": COLUMNS[7:]}


def _cell(row: dict[str, int], column: str) -> str:
    counter = next(c for c, columns in _GROUPS.items() if column in columns)
    if not row.get(counter):
        return "-"
    if column == "identical":
        return f"{row['identical']}/{row['fault runs']}"
    return str(row.get(column, 0))


def table() -> list[str]:
    """The table as Markdown lines (empty when nothing was recorded): "-" where a step was not tried that way;
    ``identical`` of the fault runs is runs identical / runs, of the kills the trials killed and identical."""
    if not _rows:
        return []
    head = ("step",) + COLUMNS
    lines = ["| " + " | ".join(h.strip() for h in head) + " |", "|" + "---|" * len(head)]
    for step, row in sorted(_rows.items()):
        lines.append(f"| {step} | " + " | ".join(_cell(row, c) for c in COLUMNS) + " |")
    return lines
