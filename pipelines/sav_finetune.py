"""``sav-finetune``: validate -> stage SA-V -> fine-tune SAM 2.1 (PyTorchJob) -> inference fan-out -> evaluate ->
publish.

The training split is checked against the training config first (with ``preflight``, before staging holds CPUs
and anything holds a GPU): a video sam2 would crash on, or silently not train on, fails the run there with every
problem listed by video and field, or with ``drop_invalid`` is left out of staging and training (the list of the
valid videos is the video list both get). The starting checkpoint is evaluated on the same videos while training
runs, so every run reports J&F before and after fine-tuning; with ``benchmark`` (a preset of
:mod:`savflow.common.benchmarks`) both are prompted and scored under that benchmark's protocol. Paths of one run
live under ``{experiment_dir}/eval/{run id}/`` and ``{experiment_dir}/validate/{run id}/``.
"""

from kfp import dsl

from savflow.common.devices import AUTO
from savflow.common.deployment import DEFAULT_IMAGE, GPU_TOLERATION, TRAIN_SERVICE_ACCOUNT
from savflow.common.savformat import ANN_EVERY, split_paths
from savflow.evaluate.component import publish_finetune
from savflow.infer.defaults import MODEL_CONFIG, SCORE_THRESHOLD, SHARDS
from savflow.pipelines.fanout import infer_and_evaluate
from savflow.preflight.component import preflight
from savflow.pipelines.task_settings import EVALUATE, STAGE, TaskSettings
from savflow.pipelines.run_folders import RUN_ID, this_run_folder
from savflow.stage.component import shard_items, stage_shard
from savflow.launch.component import train
from savflow.validate.component import validate_train


def build(cluster: bool = True):
    """The pipeline, with Kubernetes task settings (``cluster``) or without them (for ``kfp.local``)."""
    ts = TaskSettings(cluster)

    @dsl.pipeline(name="sav-finetune",
                  description="Fine-tune SAM 2.1 on SA-V and evaluate it (J&F) before and after.")
    def sav_finetune(
        raw_train: str,
        raw_val: str,
        staged_train: str,
        staged_val: str,
        experiment_dir: str,
        init_checkpoint: str,
        train_video_list: str = "",
        val_video_list: str = "",
        image: str = DEFAULT_IMAGE,
        train_config: str = "sam2.1_hiera_b+_sav_finetune",
        model_config: str = MODEL_CONFIG,
        epochs: int = 0,
        batch_size: int = 0,
        seed: int = -1,
        train_overrides: list = [],
        drop_invalid: bool = False,
        train_backend: str = "pytorchjob",
        nodes: int = 1,
        gpus_per_node: int = 8,
        train_cpu: str = "32",
        train_memory: str = "256Gi",
        train_shm: str = "64Gi",
        train_scratch: str = "",
        train_timeout_s: int = 604800,
        namespace: str = "",
        train_service_account: str = TRAIN_SERVICE_ACCOUNT,
        queue_name: str = "",
        credentials_secret: str = "",
        stage_shards: int = 4,
        sample_rate: int = ANN_EVERY,
        jpeg_quality: int = 95,
        train_layout: str = "tar",
        stage_max_failures: int = 0,
        infer_shards: int = SHARDS,
        use_all_masks: bool = False,
        track_later_objects: bool = True,
        infer_device: str = AUTO,
        score_thresh: float = SCORE_THRESHOLD,
        do_not_skip_first_last: bool = False,
        benchmark: str = "",
        node_selector: dict = {},
        tolerations: list = [dict(GPU_TOLERATION)],
    ) -> float:
        check = preflight(namespace=namespace, backend=train_backend, nodes=nodes, gpus_per_node=gpus_per_node,
                          node_selector=node_selector, queue_name=queue_name,
                          staged_train=staged_train, staged_val=staged_val, experiment_dir=experiment_dir,
                          cluster=cluster)
        ts.name(check, "preflight")
        ts.uncached(ts.image(check, image))
        checked = this_run_folder(ts, image, experiment_dir, "validate").output
        validated = validate_train(train=raw_train, config=train_config, overrides=train_overrides,
                                   video_list=train_video_list, sample_rate=sample_rate, drop_invalid=drop_invalid,
                                   valid_list=f"{checked}/file_list.txt", report=f"{checked}/report.json")
        ts.name(validated, "validate train")
        ts.uncached(ts.image(validated, image, EVALUATE))
        # the videos that passed (all of train_video_list, or with drop_invalid the valid ones), in the items
        items = ts.image(shard_items(num_shards=stage_shards, video_list=validated.output), image)
        items.after(check)
        with dsl.ParallelFor(items.output) as item:
            k = item.shard
            stage_train = stage_shard(source=raw_train, dest=staged_train, shard=k, num_shards=stage_shards,
                                      video_list=item.video_list, sample_rate=sample_rate,
                                      jpeg_quality=jpeg_quality, layout=train_layout, max_failures=stage_max_failures)
            ts.name(stage_train, "stage train")
            ts.uncached(ts.scratch(ts.retries(ts.image(stage_train, image, STAGE))))
            stage_val = stage_shard(source=raw_val, dest=staged_val, shard=k, num_shards=stage_shards,
                                    video_list=val_video_list, sample_rate=1, jpeg_quality=jpeg_quality, layout="dir",
                                    max_failures=stage_max_failures, masks=True)
            ts.name(stage_val, "stage val")
            ts.uncached(ts.scratch(ts.retries(ts.image(stage_val, image, STAGE))))

        eval_dir = this_run_folder(ts, image, experiment_dir, "eval").output
        val = split_paths(staged_val)
        common = dict(image=image, model_config=model_config, frames=val.frames,
                      masks=val.masks, annotations_root=val.annotations,
                      video_list=val_video_list, num_shards=infer_shards, use_all_masks=use_all_masks,
                      track_later_objects=track_later_objects, device=infer_device, score_thresh=score_thresh,
                      do_not_skip_first_last=do_not_skip_first_last, benchmark=benchmark,
                      node_selector=node_selector, tolerations=tolerations)

        base = infer_and_evaluate(ts, checkpoint=init_checkpoint, pred_root=f"{eval_dir}/base/pred",
                                  eval_root=f"{eval_dir}/base", title="starting checkpoint", after=[stage_val],
                                  **common)

        trained = train(image=image, config=train_config, train_frames=split_paths(staged_train).frames,
                        train_annotations=split_paths(staged_train).annotations, experiment_dir=experiment_dir,
                        run_id=RUN_ID, checkpoint=init_checkpoint, file_list=validated.output, epochs=epochs,
                        batch_size=batch_size, seed=seed, overrides=train_overrides, backend=train_backend,
                        nodes=nodes, gpus_per_node=gpus_per_node, cpu=train_cpu, memory=train_memory,
                        shm_size=train_shm, scratch_size=train_scratch, node_selector=node_selector,
                        tolerations=tolerations, service_account=train_service_account,
                        credentials_secret=credentials_secret, namespace=namespace, timeout_s=train_timeout_s,
                        queue_name=queue_name)
        trained.after(stage_train)
        ts.uncached(ts.image(trained, image))
        checkpoint = trained.outputs["Output"]

        tuned = infer_and_evaluate(ts, checkpoint=checkpoint, pred_root=f"{eval_dir}/finetuned/pred",
                                   eval_root=f"{eval_dir}/finetuned", title="fine-tuned", after=[stage_val], **common)

        publish = publish_finetune(base_jf=base.outputs["Output"], tuned_jf=tuned.outputs["Output"],
                                   experiment_dir=experiment_dir, run_id=RUN_ID, checkpoint=checkpoint,
                                   eval_output=f"{eval_dir}/finetuned")
        ts.uncached(ts.image(publish, image))
        return publish.outputs["Output"]

    return sav_finetune


sav_finetune = build()
