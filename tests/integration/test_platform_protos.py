"""The compiled pipelines' Kubernetes task configs, parsed as each KFP backend release parses them.

The KFP API server turns a run into an Argo workflow and unmarshals every task's KubernetesExecutorConfig with
``protojson.Unmarshal`` (unknown fields rejected; kubeflow/pipelines backend/src/v2/compiler/argocompiler/
container.go ``containerExecutorTask``, same in 2.14-2.17), so a field the release's proto lacks fails the run
at creation. The protos of each release are in tests/data/kfp_platform_protos (SOURCES.md); json_format with
``ignore_unknown_fields=False`` is the Python twin of that strict unmarshal.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, struct_pb2

from savflow.common import platforms
from savflow.pipelines.compile import COMPILED_DIR

PROTOS = Path(__file__).resolve().parents[1] / "data" / "kfp_platform_protos"
RELEASE_FILES = {"2.14": "2.14.6", "2.15": "2.15.2", "2.16": "2.16.1", "2.17": "2.17.3"}


def _executor_config_class(release: str) -> type:
    from kfp.pipeline_spec import pipeline_spec_pb2

    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file_descriptor) -> None:  # noqa: ANN001 - a protobuf FileDescriptor
        if file_descriptor.name in added:
            return
        for dependency in file_descriptor.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        pool.Add(proto)
        added.add(file_descriptor.name)

    add(struct_pb2.DESCRIPTOR)
    add(pipeline_spec_pb2.DESCRIPTOR)
    blob = (PROTOS / f"kubernetes_executor_config_{RELEASE_FILES[release]}.binpb").read_bytes()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(blob))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("kfp_kubernetes.KubernetesExecutorConfig"))


def _executor_configs(name: str) -> dict[str, dict]:
    _, platform = yaml.safe_load_all((COMPILED_DIR / f"{name}.yaml").read_text())
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_every_listed_release_has_its_protos() -> None:
    assert set(platforms.KFP_BACKEND.supported) | set(platforms.KFP_BACKEND.refused) == set(RELEASE_FILES)


@pytest.mark.parametrize("name", ["sav-finetune", "sav-evaluate"])
@pytest.mark.parametrize("release", platforms.KFP_BACKEND.supported)
def test_supported_backends_accept_every_task(name: str, release: str) -> None:
    cls = _executor_config_class(release)
    configs = _executor_configs(name)
    assert configs
    for label, config in configs.items():
        try:
            json_format.ParseDict(config, cls(), ignore_unknown_fields=False)
        except json_format.ParseError as exc:
            raise AssertionError(f"{name}: executor {label}: KFP {release} would reject the run: {exc}") from exc


@pytest.mark.parametrize("release", sorted(platforms.KFP_BACKEND.refused))
def test_older_backends_reject_the_security_context(release: str) -> None:
    """Why the matrix starts at 2.16: an older API server fails the run on the first task."""
    cls = _executor_config_class(release)
    label, config = next(iter(_executor_configs("sav-evaluate").items()))
    with pytest.raises(json_format.ParseError, match="securityContext"):
        json_format.ParseDict(config, cls(), ignore_unknown_fields=False)
    without = {k: v for k, v in config.items() if k != "securityContext"}
    json_format.ParseDict(without, cls(), ignore_unknown_fields=False)
