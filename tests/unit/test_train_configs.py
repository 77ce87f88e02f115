"""Our Hydra configs resolve by name, follow the shrinking rules, and train the models that inference builds."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from savflow.train.worker import compose_training_config

TINY_TRAIN = "sam2.1_tiny128_sav_finetune"
TINY_MODEL = "sam2.1_hiera_tiny128"
BPLUS_TRAIN = "sam2.1_hiera_b+_sav_finetune"


def _compose(name: str):
    cfg = compose_training_config(name, [])
    OmegaConf.resolve(cfg)
    return cfg


def _shapes(module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_tiny_model_follows_the_shrinking_rules():
    m = _compose(TINY_MODEL).model
    feat = m.image_size // 16
    assert (m.image_size, feat) == (128, 8)
    trunk, neck = m.image_encoder.trunk, m.image_encoder.neck
    channels = [trunk.embed_dim * 2 ** i for i in range(len(trunk.stages))]
    assert list(neck.backbone_channel_list) == channels[::-1]
    assert len(trunk.window_spec) == len(trunk.stages)
    assert all(0 <= b < sum(trunk.stages) for b in trunk.global_att_blocks)
    assert neck.position_encoding.num_pos_feats == neck.d_model
    layer = m.memory_attention.layer
    assert m.memory_attention.d_model == layer.d_model == neck.d_model
    for attn in (layer.self_attention, layer.cross_attention):
        assert list(attn.feat_sizes) == [feat, feat] and attn.embedding_dim == neck.d_model
    enc = m.memory_encoder
    assert layer.cross_attention.kv_in_dim == enc.out_dim == enc.position_encoding.num_pos_feats
    assert enc.in_dim == enc.mask_downsampler.embed_dim == enc.fuser.layer.dim == neck.d_model


def test_tiny_training_config_trains_the_inference_model():
    """Same architecture in both files: a model-only checkpoint of training loads into the inference model."""
    train_model = instantiate(_compose(TINY_TRAIN).trainer.model, _convert_="all")
    infer_model = instantiate(_compose(TINY_MODEL).model, _recursive_=True)
    assert _shapes(train_model) == _shapes(infer_model)
    params = sum(p.numel() for p in infer_model.parameters())
    assert 1.2e6 < params < 1.8e6
    infer_model.load_state_dict(train_model.state_dict(), strict=True)


def test_bplus_finetune_trains_the_released_bplus_model():
    train_model = instantiate(_compose(BPLUS_TRAIN).trainer.model, _convert_="all")
    release = instantiate(_compose("configs/sam2.1/sam2.1_hiera_b+.yaml").model, _recursive_=True)
    assert _shapes(train_model) == _shapes(release)


@pytest.mark.parametrize("name", [TINY_TRAIN, BPLUS_TRAIN])
def test_training_configs_read_staged_sav_with_json_raw_dataset(name):
    cfg = _compose(name)
    assert cfg.trainer.mode == "train_only"
    video_dataset = cfg.trainer.data.train.datasets[0].dataset.datasets[0].video_dataset
    assert video_dataset._target_ == "training.dataset.vos_raw_dataset.JSONRawDataset"
    assert video_dataset.ann_every == 4
    assert cfg.trainer.checkpoint.model_weight_initializer.state_dict.checkpoint_path is None
    assert cfg.trainer.checkpoint.get("resume_from") is None


def test_bplus_keeps_the_mose_recipe():
    ours = _compose(BPLUS_TRAIN)
    mose = _compose("configs/sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml")
    for key in ("optim", "loss", "model"):
        assert ours.trainer[key] == mose.trainer[key], key
    assert ours.vos == mose.vos
    assert (ours.scratch.resolution, ours.scratch.num_frames, ours.trainer.optim.amp.amp_dtype) == (1024, 8,
                                                                                                  "bfloat16")


def _raw_datasets(cfg) -> list:
    datasets = cfg.trainer.data.train.datasets
    return [d.video_dataset for ds in datasets for d in ds.dataset.datasets]


@pytest.mark.parametrize("name", [BPLUS_TRAIN, TINY_TRAIN])
def test_staging_keeps_exactly_the_frames_training_reads(name: str):
    """JSONRawDataset drops every frame without an annotation (rm_unannotated, its default) and reads the
    annotations as every ann_every-th frame; staging at the pipeline's default sample rate must keep exactly
    those frames (a lower rate stages frames nobody reads, a higher one loses annotated frames)."""
    import inspect

    import yaml
    from training.dataset.vos_raw_dataset import JSONRawDataset

    from savflow.common.savformat import ANN_EVERY
    from savflow.pipelines.compile import COMPILED_DIR

    defaults = inspect.signature(JSONRawDataset.__init__).parameters
    doc = next(yaml.safe_load_all((COMPILED_DIR / "sav-finetune.yaml").read_text()))
    sample_rate = doc["root"]["inputDefinitions"]["parameters"]["sample_rate"]["defaultValue"]
    for raw in _raw_datasets(_compose(name)):
        assert raw.get("rm_unannotated", defaults["rm_unannotated"].default) is True
        assert raw.get("sample_rate", 1) == 1
        assert raw.ann_every == ANN_EVERY == sample_rate
