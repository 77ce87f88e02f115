"""The Kubernetes API client and namespace a savflow process uses: in a pod its service account's, else the
kubeconfig's (as kubectl would)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def current_namespace() -> str:
    """The namespace of this pod when in-cluster, else the kubeconfig context's, else ``default``."""
    if SA_NAMESPACE_FILE.exists():
        return SA_NAMESPACE_FILE.read_text().strip()
    from kubernetes import config

    with contextlib.suppress(config.ConfigException, OSError):
        _, context = config.list_kube_config_contexts()
        return context.get("context", {}).get("namespace") or "default"
    return "default"


class KubeConfigError(RuntimeError):
    """No way to reach a Kubernetes API: not in a cluster, and no usable kubeconfig."""


def load_api_client(context: str | None = None) -> Any:
    """An API client from the in-cluster service account, or from kubeconfig (its ``context``) outside one;
    :class:`KubeConfigError` saying what was tried when neither is there."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config(context=context)
        except (config.ConfigException, OSError) as exc:
            raise KubeConfigError(f"no Kubernetes API to talk to: not inside a cluster, and the kubeconfig "
                                  f"($KUBECONFIG or ~/.kube/config) gives none: {exc}") from exc
    return client.ApiClient()


def read_crd(api_client: Any, name: str) -> dict[str, Any] | None:
    """The CustomResourceDefinition object ``name`` as the API server serves it (camelCase keys, the schema
    included), or None when it is not installed; other API errors (403, ...) are raised."""
    import json

    from kubernetes import client
    from kubernetes.client import ApiException

    try:
        response = client.ApiextensionsV1Api(api_client).read_custom_resource_definition(name, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return json.loads(response.data)
