"""The inference and scoring protocol of each VOS benchmark, so that a number called "DAVIS J&F" is made the way
DAVIS numbers are made, and two results compare only when made alike.

What each preset holds, and where it comes from:

* which frames are prompted: every benchmark here is semi-supervised with the ground-truth masks of the first
  frame an object is annotated on (``use_all_masks`` off). Objects that first appear after frame 0 are prompted
  where they appear (``track_later_objects``) on LVOS and YouTube-VOS; on SA-V, DAVIS and MOSE every object is on
  frame 0 (facebookresearch/sam2 ``tools/README.md``: "assumes that all objects to track already appear on frame
  0 in each video (as is the case in DAVIS, MOSE or SA-V) ... (such as LVOS or YouTube-VOS), please add the
  ``--track_object_appearing_later_in_video`` flag").
* first/last frame skipping: the SA-V evaluator (``sav_dataset/sav_evaluator.py``, ``--do_not_skip_first_and_last
  _frame`` off by default; ``sav_dataset/README.md``: "first and last annotated frames dropped") and the DAVIS
  2017 evaluation it derives from both leave out the first and the last annotated frame. MOSE, LVOS and
  YouTube-VOS publish their test scores from their own servers; savflow's local score for them uses the same
  DAVIS-style rule, and says so in ``metrics.json`` (``scoring``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's protocol."""

    name: str
    title: str
    track_later_objects: bool
    skip_first_last: bool
    scoring: str  # whose rule the local score follows
    use_all_masks: bool = False

    def inference(self) -> dict[str, bool]:
        """The inference options the protocol fixes (``savflow infer`` flags of the same names)."""
        return {"use_all_masks": self.use_all_masks, "track_later_objects": self.track_later_objects}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_DAVIS_RULE = "DAVIS 2017 / SA-V evaluator (first and last annotated frames skipped)"
_SERVER = "; the benchmark's official test score comes from its evaluation server"

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("sav", "SA-V", track_later_objects=False, skip_first_last=True, scoring=_DAVIS_RULE),
    Benchmark("davis", "DAVIS 2017", track_later_objects=False, skip_first_last=True, scoring=_DAVIS_RULE),
    Benchmark("mose", "MOSE", track_later_objects=False, skip_first_last=True, scoring=_DAVIS_RULE + _SERVER),
    Benchmark("lvos", "LVOS", track_later_objects=True, skip_first_last=True, scoring=_DAVIS_RULE + _SERVER),
    Benchmark("ytvos", "YouTube-VOS", track_later_objects=True, skip_first_last=True,
              scoring=_DAVIS_RULE + _SERVER),
)}


def benchmark(name: str) -> Benchmark:
    """The preset called ``name``; a clear error listing the known ones otherwise."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}: expected one of {', '.join(BENCHMARKS)}") from None


def inference_differences(preset: Benchmark, settings: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{option: (made with, preset's)}`` for the inference options of ``settings`` (a prediction marker)
    that are not the preset's; options the marker does not record are not compared."""
    return {k: (settings[k], v) for k, v in preset.inference().items() if k in settings and settings[k] != v}
