"""KFP component of the validation, meant as a pipeline's first data step (before staging holds CPUs and
training holds GPUs): wiring only, the work is :func:`savflow.validate.run.validate_step`."""

from kfp import dsl

from savflow.common.deployment import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def validate_train(train: str, config: str, overrides: list = [], video_list: str = "", sample_rate: int = 1,
                   drop_invalid: bool = False, probe_videos: bool = False, valid_list: str = "",
                   report: str = "") -> str:
    """Check the training split ``train`` (raw mp4s, or JPEG frames + annotations) against the training config
    with ``overrides``, as :command:`savflow validate` does; fails the run listing every problem by video and
    field. Returns the video list to stage and train on: with ``valid_list`` (a URI) the videos that passed,
    written there (all of them, or with ``drop_invalid`` the valid ones); without it ``video_list``, or with
    ``drop_invalid`` the valid ones' list written next to the data. ``report``: a URI for the findings as JSON.
    ``probe_videos`` also opens each mp4 (size, frame count)."""
    from savflow.validate.run import validate_step

    return validate_step(train, config, list(overrides), video_list=video_list, stage_sample_rate=sample_rate,
                         drop_invalid=drop_invalid, probe_videos=probe_videos, valid_list=valid_list,
                         report=report)
