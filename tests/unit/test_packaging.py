"""The built distribution holds every package, config and compiled pipeline, however the folders grow.

The package list is derived (setup.py: ``find_packages`` over ``components/`` and ``pipelines/``); these tests
build the wheel the way ``pip install .`` and the Dockerfile do and look inside it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools reuses build/lib: a stale module would ship
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    (wheel,) = out.glob("savflow-*.whl")
    return set(zipfile.ZipFile(wheel).namelist())


def _expected() -> set[str]:
    names = {str(p.relative_to(ROOT / "components")) for p in (ROOT / "components").rglob("*")
             if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts and ".egg-info" not in str(p)}
    names |= {"savflow/pipelines/" + str(p.relative_to(ROOT / "pipelines")) for p in (ROOT / "pipelines").rglob("*")
              if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts}
    return names


def test_the_wheel_holds_every_module_config_and_compiled_pipeline(wheel_names: set[str]) -> None:
    missing = sorted(_expected() - wheel_names)
    assert not missing, f"not in the wheel: {missing}"
    assert "savflow/pipelines/compiled/sav-finetune.yaml" in wheel_names
    assert "hydra_plugins/savflow_searchpath/__init__.py" in wheel_names
    assert "savflow/configs/sam2.1_hiera_b+_sav_finetune.yaml" in wheel_names


def test_import_paths_show_their_folders() -> None:
    """savflow.X.Y is components/savflow/X/Y.py, savflow.pipelines.Y is pipelines/Y.py."""
    import savflow.common.storage
    import savflow.pipelines.cli

    assert Path(savflow.common.storage.__file__) == ROOT / "components/savflow/common/storage.py"
    assert Path(savflow.pipelines.cli.__file__) == ROOT / "pipelines/cli.py"


def test_no_package_of_ours_is_called_training(wheel_names: set[str]) -> None:
    """sam2 installs a top-level ``training`` package; a folder of ours by that name would shadow it."""
    assert not any("/training/" in n for n in wheel_names if n.startswith("savflow/"))


def test_our_hydra_configs_resolve_next_to_sam2s() -> None:
    from hydra import compose

    from savflow.common.hydra_config import ensure_search_path

    ensure_search_path()
    ensure_search_path()
    assert compose(config_name="configs/sam2.1/sam2.1_hiera_t.yaml").model._target_.endswith("SAM2Base")


def test_the_image_build_sees_everything_the_wheel_is_built_from() -> None:
    """docker/Dockerfile builds the same wheel: each file and folder the build reads must be sent in the build
    context (docker/Dockerfile.dockerignore allowlist) and copied into the build stage."""
    needed = {"pyproject.toml", "setup.py", "README.md", "components", "pipelines"}
    ignore = (ROOT / "docker/Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for line in (ROOT / "docker/Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            copied.update(p.rstrip("/") for p in line.split()[1:-1])
    assert needed <= allowed, needed - allowed
    assert needed <= copied, needed - copied
