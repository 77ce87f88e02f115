"""Every object we render, against the schema of every release we support; and the releases we refuse.

The matrix is :data:`savflow.common.platforms.SUPPORTED` (the README quotes it). CRD schemas of each release
are in ``schemas/`` (SOURCES.md names the tags); Kubernetes core objects are checked with kubernetes-validate's
strict schemas of each supported minor. A refused release is refused because a test shows the rendered object
failing its schema, for the reason the matrix gives.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from crds import CRD_SCHEMAS, crd_object
from k8s_checks import (KUBECTL_MISSING, OVERLAYS, ROOT, as_pod, kubectl, kustomize,
                        pod_specs, validate)
from savflow.common import platforms
from savflow.launch import pytorchjob, trainjob
from test_manifests import LAUNCHER_SPECS, NAMESPACE

needs_kubectl = pytest.mark.skipif(kubectl() is None, reason=KUBECTL_MISSING)
PYTORCHJOB = ("kubeflow.org/v1", "PyTorchJob")
TRAINJOB = ("trainer.kubeflow.org/v1alpha1", "TrainJob")
CRON = ("argoproj.io/v1alpha1", "CronWorkflow")


def _supported(key: tuple[str, str], overlay: str | None = None) -> list[str]:
    if key == PYTORCHJOB:
        return list(platforms.TRAINING_OPERATOR.supported)
    if key == TRAINJOB:
        return list(platforms.TRAINER.supported)
    # k8s/argo renders the list `schedules` (3.6+); k8s/argo-v3.5 the single `schedule`
    return ["3.5"] if overlay == "argo-v3.5" else [r for r in platforms.ARGO.supported if r != "3.5"]


def test_every_supported_release_has_a_schema_here() -> None:
    for key, platform in ((PYTORCHJOB, platforms.TRAINING_OPERATOR), (TRAINJOB, platforms.TRAINER),
                          (CRON, platforms.ARGO)):
        assert set(platform.supported) | set(platform.refused) <= set(CRD_SCHEMAS[key]), platform.name


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(path) for name, path in OVERLAYS.items()}


def _check_everywhere(obj: dict[str, Any], overlay: str | None = None) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_SCHEMAS:
        for release in _supported(key, overlay):
            validate(obj, release)
    else:
        for minor in platforms.KUBERNETES.supported:
            validate(obj, minor)
    for where, labels, spec in pod_specs(obj):
        for minor in platforms.KUBERNETES.supported:
            validate(as_pod(where, labels, spec, NAMESPACE), minor)


@needs_kubectl
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_kustomized_objects_validate_on_every_supported_release(rendered: dict, overlay: str) -> None:
    for obj in rendered[overlay]:
        _check_everywhere(obj, overlay)


@pytest.mark.parametrize("label", sorted(LAUNCHER_SPECS))
def test_launcher_objects_validate_on_every_supported_release(label: str) -> None:
    spec = LAUNCHER_SPECS[label]
    _check_everywhere(pytorchjob.render_pytorchjob(spec, "sav-run-1", NAMESPACE))
    _check_everywhere(trainjob.render_trainjob(spec, "sav-run-1", NAMESPACE))


@pytest.mark.parametrize("release", sorted(platforms.TRAINER.refused))
def test_trainer_releases_without_runtime_patches_are_refused(release: str) -> None:
    """Trainer 2.0/2.1 have no runtimePatches and cannot express the pods' security context: the object we
    render is invalid there (strict validation; the API server's default would prune the field silently)."""
    body = trainjob.render_trainjob(LAUNCHER_SPECS["template"], "sav-run-1", NAMESPACE)
    with pytest.raises(jsonschema.ValidationError, match="runtimePatches"):
        validate(body, release)
    crd = _crd("trainjobs.trainer.kubeflow.org", TRAINJOB, release)
    with pytest.raises(platforms.UnsupportedPlatform, match=f"v{release} is installed; savflow needs v2.2"):
        platforms.check_trainjob_crd(crd)


@needs_kubectl
def test_each_argo_kustomization_fits_only_its_releases(rendered: dict) -> None:
    (base,) = [o for o in rendered["argo"] if o["kind"] == "CronWorkflow"]
    (old,) = [o for o in rendered["argo-v3.5"] if o["kind"] == "CronWorkflow"]
    with pytest.raises(jsonschema.ValidationError, match="schedule"):
        validate(base, "3.5")
    with pytest.raises(jsonschema.ValidationError, match="schedules"):
        validate(old, "4.1")
    assert old["spec"]["schedule"] == base["spec"]["schedules"][0]
    strip = ({k: v for k, v in o["spec"].items() if k not in ("schedule", "schedules")} for o in (base, old))
    assert next(strip) == next(strip), "the two differ only in the schedule field"


def _crd(name: str, key: tuple[str, str], release: str) -> dict[str, Any]:
    """The CustomResourceDefinition ``name`` as ``release`` installs it (tests/crds.py)."""
    obj = crd_object(key[1], release)
    assert obj["metadata"]["name"] == name
    return obj


@pytest.mark.parametrize("name,key,release,expected", [
    ("pytorchjobs.kubeflow.org", PYTORCHJOB, "1.8", "1.8"),
    ("pytorchjobs.kubeflow.org", PYTORCHJOB, "1.9", "1.9"),
    ("trainjobs.trainer.kubeflow.org", TRAINJOB, "2.0", "2.0"),
    ("trainjobs.trainer.kubeflow.org", TRAINJOB, "2.1", "2.1"),
    ("trainjobs.trainer.kubeflow.org", TRAINJOB, "2.2", "2.2"),
    ("trainjobs.trainer.kubeflow.org", TRAINJOB, "2.3", "2.3"),
    ("cronworkflows.argoproj.io", CRON, "3.5", "3.5"),
    ("cronworkflows.argoproj.io", CRON, "3.6", "3.6"),
    ("cronworkflows.argoproj.io", CRON, "3.7", "3.6"),
    ("cronworkflows.argoproj.io", CRON, "4.1", "4.1"),
])
def test_release_is_read_from_the_crd_schema(name: str, key: tuple[str, str], release: str, expected: str) -> None:
    assert platforms.crd_release(_crd(name, key, release)) == expected


def test_readme_quotes_the_matrix() -> None:
    readme = (ROOT / "README.md").read_text()
    assert platforms.matrix_markdown() in readme, "regenerate the README's table from platforms.matrix_markdown()"
