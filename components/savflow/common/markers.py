"""Completion markers: a unit of work (a video, a checkpoint) counts as done only once its marker exists.

A step writes all of a unit's objects first and its marker last, at ``{root}/_done/{unit}.json``; readers
trust only marked units, so a killed step never leaves something that looks complete. A marker also records
what produced the unit (its key, :mod:`savflow.common.provenance`), which a re-run compares before it skips.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from savflow.common import storage
from savflow.common.savformat import check_name
from savflow.common.storage_stat import ObjectStat

MARKER_DIR = "_done"


def marker_uri(root: str, unit: str) -> str:
    return storage.join(root, MARKER_DIR, f"{check_name(unit, what='unit')}.json")


def write_marker(root: str, unit: str, payload: dict[str, Any]) -> None:
    """Mark ``unit`` complete. Writing the same unit twice keeps the first marker (create-only)."""
    try:
        storage.write_bytes(marker_uri(root, unit), json.dumps(payload, sort_keys=True).encode(),
                            create_only=True, content_type="application/json")
    except storage.AlreadyExistsError:
        pass


def read_marker(root: str, unit: str) -> dict[str, Any] | None:
    try:
        return json.loads(storage.read_bytes(marker_uri(root, unit)))
    except storage.NotFoundError:
        return None


def read_markers(root: str, units: list[str], workers: int = 16) -> dict[str, dict[str, Any] | None]:
    """The markers of ``units``, read in parallel (None for a unit whose marker is gone)."""
    if not units:
        return {}
    with ThreadPoolExecutor(min(workers, len(units)), thread_name_prefix="markers") as pool:
        return dict(zip(units, pool.map(partial(read_marker, root), units)))


def done_units(root: str) -> set[str]:
    """Every unit marked complete under ``root`` (one listing request)."""
    return {n[: -len(".json")] for n in storage.list_prefix(storage.join(root, MARKER_DIR), recursive=False)
            if n.endswith(".json")}


def done_stats(root: str) -> dict[str, ObjectStat]:
    """Every unit marked complete under ``root`` with its marker's size and version, which change whenever the
    unit is made again (one listing)."""
    return {n[: -len(".json")]: st for n, st in storage.list_children(storage.join(root, MARKER_DIR))[0].items()
            if n.endswith(".json")}


def clear_marker(root: str, unit: str) -> None:
    storage.delete(marker_uri(root, unit))
