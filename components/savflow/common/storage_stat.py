"""What identifies a stored object's content without reading it, as every storage backend reports it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectStat:
    """An object's size and version: the GCS generation (which every rewrite changes) or a local file's
    modification time in nanoseconds. Resume keys record it for source objects (:mod:`savflow.common.provenance`)."""

    size: int
    version: str
