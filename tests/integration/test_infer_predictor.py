"""Building the video predictor: config names and files, checkpoints from storage, device and post-processing."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from savflow.common import storage
from savflow.common.devices import resolve_device
from savflow.infer.predictor import build_predictor, has_c_extension, is_config_file

TINY = "sam2.1_hiera_tiny128"
TINY_FILE = Path(__file__).resolve().parents[2] / "components" / "savflow" / "configs" / f"{TINY}.yaml"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _state_dict(seed: int) -> dict[str, torch.Tensor]:
    from sam2.build_sam import build_sam2

    from savflow.common.hydra_config import ensure_search_path

    ensure_search_path()
    torch.manual_seed(seed)
    return build_sam2(TINY, None, device="cpu").state_dict()


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="expected one of"):
        resolve_device("meta")


def test_config_names_and_files(tmp_path: Path):
    assert not is_config_file(TINY)
    assert not is_config_file("configs/sam2.1/sam2.1_hiera_b+.yaml")
    assert is_config_file("gs://bucket/configs/model.yaml")
    assert is_config_file(str(tmp_path / "model.yaml"))


def test_checkpoint_from_bucket_and_config_from_a_file_uri(gcs_bucket: str, tmp_path: Path):
    weights = _state_dict(seed=3)
    local = tmp_path / "ckpt.pt"
    torch.save({"model": weights}, local)
    storage.upload_file(local, f"{gcs_bucket}/ckpt.pt")
    storage.upload_file(TINY_FILE, f"{gcs_bucket}/cfg/my_tiny.yaml")
    loaded = build_predictor(f"{gcs_bucket}/ckpt.pt", f"{gcs_bucket}/cfg/my_tiny.yaml", device="cpu")
    assert type(loaded.model).__name__ == "SAM2VideoPredictor" and loaded.device.type == "cpu"
    assert loaded.model.image_size == 128 and loaded.model.non_overlap_masks is False
    got = loaded.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in weights.items())
    # The global Hydra instance is restored: names resolve again afterwards.
    assert build_predictor(None, TINY, device="cpu").model.image_size == 128


def test_config_file_on_local_disk(tmp_path: Path):
    shutil.copy(TINY_FILE, tmp_path / "copy.yaml")
    assert build_predictor(None, str(tmp_path / "copy.yaml"), device="cpu").model.image_size == 128


def test_checkpoint_of_another_model_is_rejected(tmp_path: Path):
    weights = _state_dict(seed=0)
    weights.pop(next(iter(weights)))
    torch.save({"model": weights}, tmp_path / "partial.pt")
    with pytest.raises(RuntimeError, match=r"partial.pt: cannot load into sam2.1_hiera_tiny128: (?s:.*)Missing key"):
        build_predictor(str(tmp_path / "partial.pt"), TINY, device="cpu")


def test_missing_checkpoint_names_the_uri(tmp_path: Path):
    with pytest.raises(storage.NotFoundError, match="nope.pt"):
        build_predictor(str(tmp_path / "nope.pt"), TINY, device="cpu")


def test_hole_filling_is_turned_off_explicitly_where_it_cannot_run(caplog):
    with caplog.at_level(logging.WARNING, logger="savflow.infer.predictor"):
        loaded = build_predictor(None, TINY, device="cpu", apply_postprocessing=True)
    assert loaded.model.fill_hole_area == 0 and not loaded.hole_filling
    reason = "without its _C extension" if not has_c_extension() else "not CUDA"
    assert any("hole filling" in r.message and reason in r.message for r in caplog.records)
    assert build_predictor(None, TINY, device="cpu").model.fill_hole_area == 0
    assert not caplog.records[1:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_compile_needs_cuda():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        build_predictor(None, TINY, device="cpu", compile=True)
