"""Validate a training split against a config in one pass: every problem of every video, then one verdict.

The exit status (:meth:`Report.exit_code`): 0 when no video has an error (warnings are printed; ``strict``
makes them errors), 1 when some have (or the config itself cannot train). With ``drop_invalid`` the valid
videos are written as a file list (``savflow train --file-list``, ``savflow stage --video-list``) and the status
is 0 as long as the config is sound and some video is left.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from savflow.common import savformat, storage
from savflow.validate.checks import CONFIG, Finding, check_config, check_video
from savflow.validate.needs import TrainNeeds
from savflow.validate.scan import scan_split

VALID_LIST = "file_list.valid.txt"


@dataclass
class Report:
    root: str
    kind: str
    needs: list[TrainNeeds]
    videos: list[str]
    findings: list[Finding]
    strict: bool = False

    def _bad(self, f: Finding) -> bool:
        return f.severity == "error" or self.strict

    @property
    def config_errors(self) -> list[Finding]:
        return [f for f in self.findings if f.video == CONFIG and self._bad(f)]

    @property
    def invalid(self) -> list[str]:
        return sorted({f.video for f in self.findings if f.video != CONFIG and self._bad(f)})

    @property
    def valid(self) -> list[str]:
        bad = set(self.invalid)
        return [v for v in self.videos if v not in bad]

    def exit_code(self, drop_invalid: bool = False) -> int:
        if self.config_errors or not self.valid:
            return 1
        return 0 if drop_invalid or not self.invalid else 1

    def lines(self) -> list[str]:
        """Findings grouped by video (the config first), then the summary."""
        order = {v: i for i, v in enumerate([CONFIG, *self.videos])}
        found = sorted(self.findings, key=lambda f: (order.get(f.video, len(order)), f.severity != "error"))
        warnings = sum(f.severity == "warning" for f in self.findings)
        config = ", ".join(f"{n.config}: num_frames {n.num_frames}, ann_every {n.ann_every}" for n in self.needs)
        return [str(f) for f in found] + [
            f"validate {self.root} ({self.kind}) for {config}: {len(self.videos)} videos, {len(self.valid)} valid, "
            f"{len(self.invalid)} invalid; {len(self.findings) - warnings} errors, {warnings} warnings"]

    def to_json(self) -> str:
        return json.dumps({"root": self.root, "kind": self.kind, "needs": [asdict(n) for n in self.needs],
                           "videos": len(self.videos), "valid": self.valid, "invalid": self.invalid,
                           "findings": [asdict(f) for f in self.findings]}, indent=2)


def validate_split(root: str, needs: Sequence[TrainNeeds], *, videos: list[str] | None = None,
                   all_frames: bool = False, probe_videos: bool = True, stage_sample_rate: int = 1,
                   strict: bool = False, workers: int = 16, scratch: str | Path | None = None) -> Report:
    """Check every video of the training split at ``root`` (or of ``videos``) against each of ``needs``."""
    split = scan_split(root, videos, all_frames=all_frames, probe_videos=probe_videos,
                       stage_sample_rate=stage_sample_rate, workers=workers, scratch=scratch)
    findings: dict[Finding, None] = {}  # ordered, and one finding that several configs share is listed once
    for need in needs:
        findings.update(dict.fromkeys(check_config(need)))
        for facts in split.videos:
            findings.update(dict.fromkeys(check_video(facts, need)))
    return Report(root, split.kind, list(needs), [f.video for f in split.videos], list(findings), strict)


def write_valid_list(report: Report, uri: str | None = None) -> str:
    """Write the valid videos as a file list (default ``{root}/file_list.valid.txt``); returns its URI."""
    uri = uri or storage.join(report.root, VALID_LIST)
    storage.write_text(uri, savformat.format_video_list(report.valid))
    return uri


def validate_step(train: str, config: str, overrides: Sequence[str] = (), *, video_list: str = "",
                  stage_sample_rate: int = 1, drop_invalid: bool = False, probe_videos: bool = False,
                  valid_list: str = "", report: str = "") -> str:
    """The pipeline step: validate, print the findings, and return the video list to go on with; raise when the
    run should stop. With ``valid_list`` (a URI) that is the list of the videos that passed, written there
    whether or not any was dropped, so that staging and training take exactly the videos that were checked (not
    ones added to the split since); without it, ``video_list``, or with ``drop_invalid`` the
    valid videos' list written next to the data. ``report`` (a URI) also gets the findings as JSON, failing or
    not. mp4s are not opened unless ``probe_videos``: in a bucket that downloads every one, which staging does
    next anyway (and checks their size and frame count as it decodes)."""
    from savflow.common.videolists import read_video_list
    from savflow.validate.needs import read_needs

    found = validate_split(train, read_needs(config, overrides), videos=read_video_list(video_list),
                           stage_sample_rate=stage_sample_rate, probe_videos=probe_videos)
    print("\n".join(found.lines()))
    if report:
        storage.write_text(report, found.to_json())
    if found.exit_code(drop_invalid):
        raise RuntimeError(f"{train}: {len(found.invalid)} of {len(found.videos)} training videos are invalid for "
                           f"{config}{' (or the config is)' if found.config_errors else ''}; see the log above")
    if valid_list:
        return write_valid_list(found, valid_list)
    return write_valid_list(found) if drop_invalid else video_list
