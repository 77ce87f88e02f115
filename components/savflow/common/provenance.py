"""Resume keys: what produced a unit of output, recorded with it, compared before a re-run trusts it.

Every completion marker (a staged video, a local copy of one, a predicted video, a checkpoint) carries a *key*:
the inputs and settings that determine the unit's content, for instance the source objects' sizes and versions,
the sample rate and layout, the checkpoint's digest, and the format version of the step's output. A re-run
computes the key it would record and compares: equal keys skip the unit; a different key redoes it, or, where
the old output may be worth keeping (predictions of another checkpoint, another training run), refuses with the
differences named. A marker without a key (written before keys existed) differs from every key.

The format versions below change when a step's output for the same inputs and settings changes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

# Version of what each step writes for given inputs; bump when that changes, so old output is redone.
STAGE_FORMAT = 1
INFER_FORMAT = 1
TRAIN_FORMAT = 1

KEY_FIELD = "key"
_MISSING = "(not recorded)"


def digest(value: Any) -> str:
    """sha256 of the canonical JSON of ``value`` (sorted keys): equal values, equal digests."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def key_of(payload: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The key a marker payload records (None when it records none)."""
    key = (payload or {}).get(KEY_FIELD)
    return key if isinstance(key, Mapping) else None


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and (value or not prefix):
        for name, item in value.items():
            _flatten(item, f"{prefix}.{name}" if prefix else str(name), out)
    else:
        out[prefix] = value


def differences(recorded: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> list[str]:
    """What differs between a recorded key and the one a run would record, one ``field: then -> now`` line per
    field (nested fields joined with dots); empty when the keys are equal."""
    if recorded is None:
        return [f"{KEY_FIELD}: {_MISSING} (written by an older savflow)"]
    then: dict[str, Any] = {}
    now: dict[str, Any] = {}
    _flatten(recorded, "", then)
    _flatten(wanted, "", now)
    return [f"{name}: {_show(then.get(name, _MISSING))} -> {_show(now.get(name, _MISSING))}"
            for name in sorted(set(then) | set(now)) if then.get(name, _MISSING) != now.get(name, _MISSING)]


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else f"{text[:77]}..."


def summarize(diffs_by_unit: Mapping[str, list[str]], *, limit: int = 3) -> str:
    """One line for a log or an error: how many units differ, and the differences of the first few."""
    units = sorted(diffs_by_unit)
    shown = "; ".join(f"{u}: {', '.join(diffs_by_unit[u])}" for u in units[:limit])
    more = f"; and {len(units) - limit} more" if len(units) > limit else ""
    return f"{len(units)} made differently ({shown}{more})"
