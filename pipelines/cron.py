"""Cron expressions and times as the KFP API wants them, checked before anything is sent.

KFP's cron schedules have six fields, seconds first (robfig/cron); users think in the standard five, so
:func:`to_kfp_cron` checks a standard expression field by field and prefixes ``0`` seconds.
"""

from __future__ import annotations

import datetime as dt
import re

_MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
# (name, low, high, names, '?' allowed), in KFP's six-field order.
_CRON_FIELDS = [
    ("second", 0, 59, {}, False),
    ("minute", 0, 59, {}, False),
    ("hour", 0, 23, {}, False),
    ("day of month", 1, 31, {}, True),
    ("month", 1, 12, _MONTHS, False),
    ("day of week", 0, 6, _DAYS, True),
]
# robfig/cron descriptors, accepted by KFP as they are.
CRON_DESCRIPTORS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_CRON_ITEM = re.compile(r"(?P<range>\*|\?|[A-Za-z0-9]+(-[A-Za-z0-9]+)?)(/(?P<step>[0-9]+))?")


class CronError(ValueError):
    """A cron expression KFP would reject or misread; the message names the field."""


def _cron_value(expr: str, fname: str, text: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names.get(text.upper()) if not text.isdigit() else int(text)
    if value is None:
        raise CronError(f"cron {expr!r}: {fname}: {text!r} is not a number or name")
    if not low <= value <= high:
        hint = " (use 0 for Sunday)" if fname == "day of week" and value == 7 else ""
        raise CronError(f"cron {expr!r}: {fname}: {value} is outside {low}-{high}{hint}")
    return value


def _check_cron_field(expr: str, text: str, spec: tuple[str, int, int, dict[str, int], bool]) -> None:
    fname, low, high, names, question_ok = spec
    for item in text.split(","):
        m = _CRON_ITEM.fullmatch(item)
        if not m:
            raise CronError(f"cron {expr!r}: {fname}: cannot read {item!r}")
        rng, step = m.group("range"), m.group("step")
        if step is not None and int(step) == 0:
            raise CronError(f"cron {expr!r}: {fname}: step 0 in {item!r}")
        if rng == "?":
            if not question_ok or step is not None:
                raise CronError(f"cron {expr!r}: {fname}: '?' is allowed only alone in day of month/week")
        elif rng != "*":
            lo_text, _, hi_text = rng.partition("-")
            lo = _cron_value(expr, fname, lo_text, low, high, names)
            if hi_text and _cron_value(expr, fname, hi_text, low, high, names) < lo:
                raise CronError(f"cron {expr!r}: {fname}: range {rng!r} runs backwards")


def to_kfp_cron(expr: str) -> str:
    """Check a cron expression and return it in KFP's six-field form (seconds first).

    Five fields (minute hour day-of-month month day-of-week) get ``0`` seconds prefixed; six fields are taken
    as already having seconds; robfig descriptors such as ``@daily`` pass unchanged. Day of week is 0-6 with 0
    Sunday, or SUN-SAT; months are 1-12 or JAN-DEC.
    """
    text = " ".join(expr.split())
    if text.lower() in CRON_DESCRIPTORS:
        return text.lower()
    fields = text.split(" ") if text else []
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise CronError(f"cron {expr!r}: expected 5 fields (minute hour day-of-month month day-of-week), "
                        f"got {len(fields)}")
    for value, spec in zip(fields, _CRON_FIELDS):
        _check_cron_field(expr, value, spec)
    return " ".join(fields)


def normalize_time(text: str) -> str:
    """ISO 8601 / RFC 3339 time to RFC 3339 UTC (``2025-01-31T02:00:00Z``); a time without zone is UTC."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"time {text!r}: expected ISO 8601, e.g. 2025-01-31T02:00:00Z") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
