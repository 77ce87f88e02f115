"""Rebuild the official-inference known answer in this folder (see README.md):

    python tests/data/official_infer/regenerate.py --tools /tmp/official/tools

Regenerates the random tiny checkpoint and the synthetic split from their recipes (``recipe.json``), runs
``vos_inference(..., per_obj_png_file=True)`` from facebookresearch/sam2's ``tools/vos_inference.py`` (*not* part
of this project: pass the ``tools/`` folder of a checkout) on every video, with the predictor built as that
script's ``main()`` builds it for ``--per_obj_png_file`` (``++model.non_overlap_masks=false``, no
post-processing), but on the CPU in float32 with one intra-op thread, and keeps what it wrote for the annotated
frames under ``pred/``. ``recipe.json`` gets the digests of the weights and inputs it ran on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPE = HERE / "recipe.json"


def load_recipe() -> dict:
    return json.loads(RECIPE.read_text())


def build_weights(recipe: dict):
    """The random-init model of the recipe: ``torch.manual_seed(seed)`` then ``build_sam2(config, None)``."""
    import torch
    from sam2.build_sam import build_sam2

    from savflow.common.hydra_config import ensure_search_path

    ensure_search_path()
    torch.manual_seed(recipe["weights"]["torch_manual_seed"])
    return build_sam2(recipe["weights"]["config"], None, device="cpu").state_dict()


def weights_digest(state_dict) -> str:
    """SHA-256 over the state dict's names, dtypes, shapes and raw bytes, in order."""
    h = hashlib.sha256()
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def write_split(recipe: dict, root: Path) -> list[str]:
    from savflow.common.demo_data import SyntheticSpec, write_val_split

    return write_val_split(str(root), SyntheticSpec(**recipe["split"]))


def inputs_digest(root: Path) -> str:
    """SHA-256 over the relative names and bytes of every file of the split, sorted by name."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(root).as_posix()}\n".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=Path, required=True, help="tools/ folder of a facebookresearch/sam2 checkout")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    recipe = load_recipe()
    sys.path.insert(0, str(args.tools.resolve()))
    import vos_inference as official  # noqa: E402  (facebookresearch/sam2 tools/vos_inference.py)
    from sam2.build_sam import build_sam2_video_predictor

    from savflow.common.savformat import FRAMES_DIR, MASKS_DIR

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        state = build_weights(recipe)
        ckpt = tmp_path / "tiny.pt"
        torch.save({"model": state}, ckpt)
        split = tmp_path / "split"
        videos = write_split(recipe, split)
        predictor = build_sam2_video_predictor(recipe["weights"]["config"], str(ckpt), device="cpu",
                                               apply_postprocessing=False,
                                               hydra_overrides_extra=["++model.non_overlap_masks=false"])
        out = tmp_path / "out"
        for video in videos:
            official.vos_inference(predictor=predictor, base_video_dir=str(split / FRAMES_DIR),
                                   input_mask_dir=str(split / MASKS_DIR), output_mask_dir=str(out),
                                   video_name=video, per_obj_png_file=True)
        shutil.rmtree(HERE / "pred", ignore_errors=True)
        kept = 0
        for gt in sorted((split / MASKS_DIR).rglob("*.png")):  # the annotated frames: where GT masks are
            rel = gt.relative_to(split / MASKS_DIR)
            (HERE / "pred" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(out / rel, HERE / "pred" / rel)
            kept += 1
        written = sum(1 for _ in out.rglob("*.png"))
        recipe["digests"] = {"weights_sha256": weights_digest(state), "inputs_sha256": inputs_digest(split)}
        recipe["made_with"] = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                               "intra_op_threads": torch.get_num_threads(), "official_pngs_written": written,
                               "official_pngs_kept": kept}
    RECIPE.write_text(json.dumps(recipe, indent=1) + "\n")
    print(f"kept {kept} of {written} official PNGs; digests {recipe['digests']}")


if __name__ == "__main__":
    main()
