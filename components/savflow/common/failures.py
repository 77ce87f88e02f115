"""Per-run failure reports: one bad video is recorded and skipped while the others finish.

Stage and infer collect a :class:`FailureReport`, write it as JSON next to their outputs and turn it into the
exit status: non-zero when more videos failed than ``max_failures`` allows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

from savflow.common import storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    video: str
    stage: str
    reason: str


@dataclass
class FailureReport:
    """Failures of one run of one step over a list of videos."""

    step: str
    total: int = 0
    done: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)

    def fail(self, video: str, stage: str, reason: str) -> None:
        log.error("%s: video %s failed at %s: %s", self.step, video, stage, reason)
        self.failures.append(Failure(video, stage, reason))

    def to_json(self) -> str:
        return json.dumps({"step": self.step, "total": self.total, "done": self.done, "skipped": self.skipped,
                           "failed": len(self.failures), "failures": [asdict(f) for f in self.failures]},
                          indent=2)

    def write(self, uri: str) -> None:
        storage.write_text(uri, self.to_json())

    def exit_code(self, max_failures: int = 0) -> int:
        """0 when at most ``max_failures`` videos failed, else 1."""
        return 0 if len(self.failures) <= max_failures else 1

    def summary(self) -> str:
        return (f"{self.step}: {self.total} videos: {self.done} done, {self.skipped} already complete, "
                f"{len(self.failures)} failed")
