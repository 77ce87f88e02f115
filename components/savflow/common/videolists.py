"""Video lists given by URI, the way every step and the pipelines take them ("" or None = no list)."""

from __future__ import annotations

from savflow.common import storage
from savflow.common.savformat import parse_video_list


def read_video_list(uri: str | None) -> list[str] | None:
    """The ids in the ``sav_val.txt``-style list at ``uri``; None when no list is given."""
    return parse_video_list(storage.read_text(uri), file=uri) if uri else None
