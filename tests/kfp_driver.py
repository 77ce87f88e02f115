"""What the KFP v2 backend makes of a compiled task's resources, in our words, from its source.

Read from kubeflow/pipelines at tags 2.16.0 and 2.17.0 (byte-identical there, and in 2.14.0/2.15.0):
``backend/src/v2/driver/driver.go`` ``initPodSpecPatch`` and ``getPodResource``:

* cpu/memory limits and requests: the string fields (``resourceCpuLimit``, ...) win, after the task's input
  placeholders are resolved, and are parsed as Kubernetes quantities; the deprecated float fields are used
  otherwise, formatted ``"%vG"`` (memory, GB) and ``"%v"`` (cpu);
* the accelerator: ``resourceType`` (placeholders resolved) else ``type``, ``resourceCount`` else ``count``;
  when both are set, ``res.Limits[k8score.ResourceName(acceleratorType)] = count``: the type is used verbatim
  as the *resource name* of a limit (no request, no node selector);
* the result goes to the user container ``main``.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}")


def resolve(text: str, inputs: Mapping[str, Any]) -> str:
    """The driver's ``resolvePodSpecInputRuntimeParameter`` for input-parameter placeholders."""
    return _PLACEHOLDER.sub(lambda m: str(inputs[m.group(1)]), text)


def _quantity(new: str | None, old: float | None, fmt: str, inputs: Mapping[str, Any]) -> str | None:
    if new:
        return resolve(new, inputs)
    if old:
        return fmt % old
    return None


def pod_resources(container: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """``{"limits": {...}, "requests": {...}}`` of container ``main`` for an executor's ``container`` spec."""
    res = container.get("resources") or {}
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    for target, key, new, old, fmt in (
            (limits, "memory", "resourceMemoryLimit", "memoryLimit", "%gG"),
            (requests, "memory", "resourceMemoryRequest", "memoryRequest", "%gG"),
            (limits, "cpu", "resourceCpuLimit", "cpuLimit", "%g"),
            (requests, "cpu", "resourceCpuRequest", "cpuRequest", "%g")):
        value = _quantity(res.get(new), res.get(old), fmt, inputs)
        if value is not None:
            target[key] = value
    accelerator = res.get("accelerator")
    if accelerator:
        kind = resolve(accelerator["resourceType"], inputs) if accelerator.get("resourceType") else \
            accelerator.get("type", "")
        count = resolve(accelerator["resourceCount"], inputs) if accelerator.get("resourceCount") else \
            (str(accelerator["count"]) if int(accelerator.get("count") or 0) > 0 else "")
        if kind and count:
            limits[kind] = count
    return {"limits": limits, "requests": requests}
