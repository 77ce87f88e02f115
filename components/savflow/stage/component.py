"""KFP components of the stage step: thin wrappers over :func:`savflow.stage.stage.stage`."""

from typing import List

from kfp import dsl

from savflow.common.deployment import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def shard_items(num_shards: int, video_list: str = "") -> List[dict]:
    """The items of a ParallelFor over staging shards: ``{"shard": k, "video_list": video_list}`` for k in
    0..num_shards-1. The list (an upstream task's output: the validated videos) travels in the item because
    kfp.local 2.17 hands a task inside a ParallelFor the loop item in place of any other task's output."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    return [{"shard": k, "video_list": video_list} for k in range(num_shards)]


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def stage_shard(source: str, dest: str, shard: int, num_shards: int, video_list: str = "", sample_rate: int = 1,
                jpeg_quality: int = 95, layout: str = "", max_failures: int = 0, masks: bool = False) -> str:
    """Stage shard ``shard`` of ``num_shards`` of the split at ``source`` into ``dest``; returns the report URI.

    ``masks`` also writes the per-object PNGs of a train-style split, so that a held-out part of SA-V train can be
    evaluated (with J&F per size bucket, which only the manual annotations carry).

    Fails (so KFP retries it) when more than ``max_failures`` videos failed; complete videos are kept either way.
    """
    import logging

    from savflow.common.videolists import read_video_list
    from savflow.stage.stage import stage

    logging.basicConfig(level=logging.INFO)
    result = stage(source, dest, read_video_list(video_list), shard=shard, num_shards=num_shards,
                   sample_rate=sample_rate, jpeg_quality=jpeg_quality, layout=layout or None,
                   max_failures=max_failures, masks=masks, progress=True)
    print(result.summary())
    if result.exit_code != 0:
        raise RuntimeError(f"{len(result.failures)} videos failed (more than max_failures={max_failures}); "
                           f"see {result.report_uri}")
    return result.report_uri
