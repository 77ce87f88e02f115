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


def load_api_client(context: str | None = None) -> Any:
    """An API client from the in-cluster service account, or from kubeconfig (its ``context``) outside one."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(context=context)
    return client.ApiClient()
