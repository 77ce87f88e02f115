"""The distribution's package list (written by hand because of the folder mapping) covers every package."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> tuple[set[str], dict[str, str]]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(cfg["packages"]), cfg["package-dir"]


def test_every_package_folder_is_declared() -> None:
    declared, mapping = _declared()
    found = set()
    for top, folder in (("savflow", "components"), ("savflow.pipelines", "pipelines")):
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if "hydra_plugin" in rel.parts:
                continue
            found.add(".".join([top, *rel.parts]) if rel.parts else top)
    found.add("hydra_plugins.savflow_searchpath")
    assert found == declared
    assert (ROOT / mapping["hydra_plugins.savflow_searchpath"] / "__init__.py").is_file()


def test_no_package_of_ours_is_called_training() -> None:
    """sam2 installs a top-level ``training`` package; a folder of ours by that name would shadow it."""
    declared, _ = _declared()
    assert not any(p.split(".")[-1] == "training" for p in declared)


def test_our_hydra_configs_resolve_next_to_sam2s() -> None:
    from hydra import compose

    from savflow.common.hydra_config import ensure_search_path

    ensure_search_path()
    ensure_search_path()
    assert compose(config_name="configs/sam2.1/sam2.1_hiera_t.yaml").model._target_.endswith("SAM2Base")
