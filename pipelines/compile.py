"""Compile the registered pipelines to KFP IR YAML, and tell whether the committed copies are stale.

The compiled files under ``pipelines/compiled/`` are what users upload by hand and what reviewers diff, so they
must be exactly what the code compiles to today: :func:`is_stale` compiles afresh into a temporary folder and
compares the YAML documents. The KFP compiler writes them with sorted keys and no timestamps, but its header
comment prints dict defaults (``tolerations``) in an order that varies between processes, so a file whose
documents are unchanged is left as it is (a compile of unchanged code changes no committed byte); writes go
through a temporary file and a rename, so an interrupted compile never leaves half a file behind. Pipeline
modules are imported only when a pipeline is asked for: listing names needs no kfp import.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

COMPILED_DIR = Path(__file__).resolve().parent / "compiled"

# name -> (module, attribute of the @dsl.pipeline function). The name is also the compiled file's stem.
PIPELINES: dict[str, tuple[str, str]] = {
    "sav-finetune": ("savflow.pipelines.sav_finetune", "sav_finetune"),
    "sav-evaluate": ("savflow.pipelines.sav_evaluate", "sav_evaluate"),
}


def _names(names: Iterable[str] | None, registry: Mapping[str, tuple[str, str]]) -> list[str]:
    chosen = list(registry) if names is None else list(names)
    unknown = [n for n in chosen if n not in registry]
    if unknown:
        raise ValueError(f"unknown pipeline(s) {', '.join(unknown)}; known: {', '.join(registry)}")
    return chosen


def load_pipeline(name: str, registry: Mapping[str, tuple[str, str]] = PIPELINES) -> Any:
    """Import and return the @dsl.pipeline function registered as ``name``."""
    (name,) = _names([name], registry)
    module_name, attr = registry[name]
    return getattr(importlib.import_module(module_name), attr)


def compile_pipeline(name: str, package_path: str | Path,
                     registry: Mapping[str, tuple[str, str]] = PIPELINES) -> Path:
    """Compile one registered pipeline to ``package_path`` (a ``.yaml`` file), atomically; a file already there
    with the same documents is kept byte for byte."""
    from kfp import compiler

    package_path = Path(package_path)
    package_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{package_path.name}.", suffix=".yaml", dir=package_path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)
    try:
        compiler.Compiler().compile(pipeline_func=load_pipeline(name, registry), package_path=tmp)
        if not (package_path.is_file() and _same_documents(package_path.read_text(), Path(tmp).read_text())):
            os.replace(tmp, package_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return package_path


def compile_all(out_dir: str | Path = COMPILED_DIR, names: Iterable[str] | None = None,
                registry: Mapping[str, tuple[str, str]] = PIPELINES) -> list[Path]:
    """Compile the named pipelines (default: all registered) to ``{out_dir}/{name}.yaml``."""
    return [compile_pipeline(n, Path(out_dir) / f"{n}.yaml", registry) for n in _names(names, registry)]


def is_stale(compiled_dir: str | Path = COMPILED_DIR, names: Iterable[str] | None = None,
             registry: Mapping[str, tuple[str, str]] = PIPELINES) -> list[str]:
    """Names whose file in ``compiled_dir`` is missing or differs from a fresh compile (empty: all fresh).

    The YAML documents are compared, not the text: KFP's header comment prints dict defaults in an order that
    varies between runs, while the pipeline spec itself does not."""
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in _names(names, registry):
            fresh = compile_pipeline(name, Path(tmp) / f"{name}.yaml", registry).read_text()
            committed = Path(compiled_dir) / f"{name}.yaml"
            if not committed.is_file() or not _same_documents(committed.read_text(), fresh):
                stale.append(name)
    return stale


def _same_documents(a: str, b: str) -> bool:
    return list(yaml.safe_load_all(a)) == list(yaml.safe_load_all(b))
