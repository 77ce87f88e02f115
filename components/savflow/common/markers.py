"""Completion markers: a unit of work (a video, a checkpoint) counts as done only once its marker exists.

A step writes all of a unit's objects first and its marker last, at ``{root}/_done/{unit}.json``; readers
trust only marked units and re-runs skip them, so a killed step never leaves something that looks complete.
"""

from __future__ import annotations

import json
from typing import Any

from savflow.common import storage
from savflow.common.savformat import check_name

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


def done_units(root: str) -> set[str]:
    """Every unit marked complete under ``root`` (one listing request)."""
    return {n[: -len(".json")] for n in storage.list_prefix(storage.join(root, MARKER_DIR), recursive=False)
            if n.endswith(".json")}


def clear_marker(root: str, unit: str) -> None:
    storage.delete(marker_uri(root, unit))
