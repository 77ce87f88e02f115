"""An HTTP-level Kubernetes API fake for the launcher and the preflight check, driven by the real client.

kmock's ``KubernetesEmulator`` keeps objects in memory and serves create/get/list/patch/delete over HTTP; it runs
on its own event loop in a background thread. On top of it, :class:`StrictEmulator` does what the real API
server does for a create with ``fieldValidation=Strict`` on a custom resource whose CRD is installed: it checks
the body against that CRD's served schema and answers 400 naming the unknown fields, in the apiserver's wording
("strict decoding error: unknown field ..."; apiextensions-apiserver pruning + ``runtime.NewStrictDecodingError``),
instead of storing the object. Without the option it stores the object as given (the real server would prune
unknown fields silently). kmock ignores label and field selectors, which no test relies on.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import attrs
import jsonschema
import kmock
from kubernetes import client

from crds import close_schema, crd_object

RESOURCES = ("kubeflow.org/v1/pytorchjobs", "trainer.kubeflow.org/v1alpha1/trainjobs", "v1/pods", "v1/events",
             "v1/nodes", "v1/serviceaccounts", "apiextensions.k8s.io/v1/customresourcedefinitions",
             "kueue.x-k8s.io/v1beta1/localqueues")


@attrs.frozen
class StrictDecodingError(kmock.KubernetesError):
    status: int = 400
    reason: str = "BadRequest"
    message: str = ""


def _unknown_fields(schema: dict[str, Any], body: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(close_schema(schema))
    found = []
    for error in validator.iter_errors(body):
        if error.validator == "additionalProperties":
            known = set(error.schema.get("properties", {}))
            prefix = ".".join(str(p) for p in error.absolute_path if not isinstance(p, int))
            for key in sorted(set(error.instance) - known):
                found.append(f"{prefix}.{key}" if prefix else key)
    return sorted(set(found))


class StrictEmulator(kmock.KubernetesEmulator):
    """KubernetesEmulator plus strict field validation of custom resources against their installed CRD."""

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and request.resource.group == "authorization.k8s.io":
            # access reviews are evaluated, never stored: forget the previous one so kmock's object tracking
            # does not answer the next (nameless) review with a conflict
            for key in [k for k, _ in list(self.objects.items()) if k[0].group == "authorization.k8s.io"]:
                del self._objects[key]
        if (request.action == kmock.action.CREATE and request.params.get("fieldValidation") == "Strict"
                and request.resource is not None and request.resource.group):
            crd = self._crd_of(request.resource)
            if crd is not None:
                version = request.resource.version
                (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
                unknown = _unknown_fields(served["schema"]["openAPIV3Schema"], request.data)
                if unknown:
                    kind = crd["spec"]["names"]["kind"]
                    raise StrictDecodingError(message=(
                        f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: '
                        + ", ".join(f'unknown field "{f}"' for f in unknown)))
        return await super()._handle(request)

    def _crd_of(self, resource: Any) -> dict[str, Any] | None:
        name = f"{resource.plural}.{resource.group}"
        for key, obj in list(self.objects.items()):
            if key[0].plural == "customresourcedefinitions" and key[2] == name:
                return dict(obj)
        return None


class FakeCluster:
    """The emulator on a loopback port, served from a background thread's event loop."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)
        self.api: StrictEmulator
        self.url = ""

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with StrictEmulator() as emulator, kmock.Server(emulator) as server:
            self.api, self.url = emulator, str(server.url).rstrip("/")
            for resource in RESOURCES:
                emulator.resources[resource] = {}
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> "FakeCluster":
        self._thread.start()
        assert self._ready.wait(10), "kmock did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def client(self) -> client.ApiClient:
        config = client.Configuration()
        config.host = self.url
        return client.ApiClient(config)

    def install(self, kind: str, release: str) -> dict[str, Any]:
        """Install the CRD of ``kind`` as ``release`` ships it, through the real client."""
        body = crd_object(kind, release)
        client.ApiextensionsV1Api(self.client()).create_custom_resource_definition(body)
        return body

    def requests(self, method: str, plural: str) -> list[Any]:
        return [r for r in list(self.api) if r.method == method and r.resource is not None
                and r.resource.plural == plural and r.subresource is None]
