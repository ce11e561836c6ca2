"""The only code that writes to the Kubernetes API: a small async REST client.

Server-side apply under field manager `kubellm` for children and status, merge patches for
replicas of older revisions, deletes for what the spec no longer needs. Every write is counted
(`kubellm_api_writes_total`), so benchmarks and metrics can prove a steady state costs none.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf

from kubellm import FIELD_MANAGER
from kubellm.metrics import API_REQUESTS, API_WRITES

_VERBS = {
    ("GET", ""): "get",
    ("POST", ""): "create",
    ("PUT", ""): "update",
    ("DELETE", ""): "delete",
    ("PATCH", "application/apply-patch+yaml"): "apply",
    ("PATCH", "application/merge-patch+json"): "patch",
}


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def collection(self, namespace: str | None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection(namespace)}/{name}"


KINDS: dict[str, Kind] = {
    k.kind: k
    for k in (
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("apps/v1", "ControllerRevision", "controllerrevisions"),
        Kind("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "leaderworkersets"),
        Kind("v1", "Service", "services"),
        Kind("v1", "Pod", "pods"),
        Kind("v1", "Secret", "secrets"),  # read only: Prometheus credentials for analysis
        Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        Kind("monitoring.coreos.com/v1", "PodMonitor", "podmonitors"),
        Kind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes"),
        Kind("keda.sh/v1alpha1", "ScaledObject", "scaledobjects"),
        Kind("keda.sh/v1alpha1", "TriggerAuthentication", "triggerauthentications"),
        Kind("kubellm.io/v1alpha1", "LLMDeployment", "llmdeployments"),
        Kind("kopf.dev/v1", "KopfPeering", "kopfpeerings"),
        Kind("kopf.dev/v1", "ClusterKopfPeering", "clusterkopfpeerings", namespaced=False),
    )
}


class ApiError(Exception):
    """The API server refused a request; `causes` are its per-field details (422)."""

    def __init__(
        self, status: int, message: str, reason: str = "", causes: tuple[str, ...] = ()
    ) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = causes


def _error(status: int, payload: Any) -> ApiError:
    if not isinstance(payload, dict):
        return ApiError(status, str(payload)[:500])
    details = payload.get("details") or {}
    causes = tuple(
        f"{c.get('field', '')}: {c.get('message', '')}".strip(": ")
        for c in details.get("causes") or []
        if isinstance(c, dict)
    )
    return ApiError(
        status, str(payload.get("message", payload)), str(payload.get("reason", "")), causes
    )


def _where(path: str) -> tuple[str, str]:
    """(namespace, resource[/subresource]) of an API path, for the request counters."""
    parts = path.strip("/").split("/")
    namespace = ""
    if "namespaces" in parts[:-1]:
        at = parts.index("namespaces")
        namespace = parts[at + 1]
        rest = parts[at + 2 :]
        if not rest:
            return "", "namespaces"
    else:
        rest = parts[2:] if parts[0] == "api" else parts[3:]
    resource = rest[0] if rest else "/".join(parts) or "/"
    if len(rest) >= 3:
        resource += "/" + rest[2]
    return namespace, resource


LIST_PAGE = 500  # objects per page of a listing
Page = list[dict[str, Any]]  # (named here: inside KubeClient, `list` is its method)

# Requests in flight at once. More do not make a busy API server answer sooner, and each TLS
# connection holds asyncio's 256 KiB read buffer and OpenSSL's state for as long as it lives:
# 64 connections cost 14 MiB more than 16 for the same 1,000 objects (bench/reconcile.py).
CONNECTIONS = 16
# How long one request may take on the wire (connecting; then between two reads of its answer).
# Waiting for a free connection is not timed: at 10,000 objects requests queued longer than a
# total timeout of 30 s and failed without ever being sent.
REQUEST_SECONDS = 30.0


class KubeClient:
    """Async Kubernetes REST calls with the operator's credentials."""

    def __init__(self, info: kopf.ConnectionInfo) -> None:
        self.server = info.server.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers=info.as_http_headers(),
            connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(), limit=CONNECTIONS),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=REQUEST_SECONDS, sock_read=REQUEST_SECONDS
            ),
        )

    async def close(self) -> None:
        await self._session.close()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        namespace, resource = _where(path)
        if method != "GET":
            API_WRITES.labels(method, namespace).inc()
        verb = _VERBS.get((method, content_type if method == "PATCH" else ""), method.lower())
        API_REQUESTS.labels(verb, resource).inc()
        async with self._session.request(
            method,
            self.server + path,
            params=params,
            json=body,
            headers={"Content-Type": content_type},
        ) as response:
            text = await response.text()
            try:
                payload = json.loads(text) if text else {}
            except ValueError:
                payload = text
            if response.status >= 400:
                raise _error(response.status, payload)
            if not isinstance(payload, dict):
                raise ApiError(response.status, f"not a JSON object: {text[:200]}")
            return payload

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply, forcing ownership: the operator is the only owner of children."""
        kind = KINDS[obj["kind"]]
        meta = obj["metadata"]
        return await self._request(
            "PATCH",
            kind.path(meta.get("namespace"), meta["name"]),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=obj,
            content_type="application/apply-patch+yaml",
        )

    async def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """A full update (PUT), conditional on `metadata.resourceVersion`: drift repair."""
        kind = KINDS[obj["kind"]]
        meta = obj["metadata"]
        return await self._request(
            "PUT",
            kind.path(meta.get("namespace"), meta["name"]),
            params={"fieldManager": FIELD_MANAGER},
            body=obj,
        )

    async def apply_status(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of the status subresource: fields no longer set are removed.

        A `metadata.resourceVersion` in `obj` is a precondition: the write fails with 409 if
        the object changed since it was read, so a stale computation never lands.
        """
        kind = KINDS[obj["kind"]]
        meta = obj["metadata"]
        return await self._request(
            "PATCH",
            kind.path(meta.get("namespace"), meta["name"]) + "/status",
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=obj,
            content_type="application/apply-patch+yaml",
        )

    async def merge_patch(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        path = KINDS[kind].path(namespace, name) + (f"/{subresource}" if subresource else "")
        return await self._request(
            "PATCH",
            path,
            params={"fieldManager": FIELD_MANAGER},
            body=patch,
            content_type="application/merge-patch+json",
        )

    async def delete(self, kind: str, namespace: str | None, name: str) -> None:
        """Delete in the background (children of children go by garbage collection)."""
        try:
            await self._request(
                "DELETE",
                KINDS[kind].path(namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except ApiError as error:
            if error.status != 404:
                raise

    async def post_event(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event on the object, as `kubectl describe` and `get events` show them."""
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self._request(
            "POST",
            f"/api/v1/namespaces/{namespace}/events",
            body={
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{meta.get('name')}.", "namespace": namespace},
                "involvedObject": {
                    "apiVersion": involved.get("apiVersion"),
                    "kind": involved.get("kind"),
                    "name": meta.get("name"),
                    "namespace": namespace,
                    "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "type": type_,
                "reason": reason,
                "message": message[:1024],
                "source": {"component": FIELD_MANAGER},
                "reportingComponent": FIELD_MANAGER,
                "reportingInstance": FIELD_MANAGER,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
        )

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        return await self._request("GET", KINDS[kind].path(namespace, name))

    async def list(self, kind: str, namespace: str | None = None, **selectors: str) -> Page:
        """Objects of a kind, in one namespace or all of them (each with its `kind`);
        `selectors`: `field_selector` and `label_selector`, as for `pages`."""
        return [obj async for page in self.pages(kind, namespace, **selectors) for obj in page]

    async def pages(
        self,
        kind: str,
        namespace: str | None = None,
        field_selector: str = "",
        label_selector: str = "",
    ) -> AsyncIterator[Page]:
        """A listing `LIST_PAGE` objects at a time (each with its `kind`): a caller that
        keeps only what it needs of each holds one page, not 10,000 Deployments, at once."""
        params = {
            k: v
            for k, v in (
                ("fieldSelector", field_selector),
                ("labelSelector", label_selector),
                ("limit", str(LIST_PAGE)),
            )
            if v
        }
        while True:
            listing = await self._request("GET", KINDS[kind].collection(namespace), params=params)
            items: Page = listing.get("items") or []
            yield [{**item, "kind": kind} for item in items]
            token = (listing.get("metadata") or {}).get("continue")
            if not token:
                return
            params["continue"] = token

    async def served_group_versions(self) -> frozenset[str]:
        """Every `group/version` the API server serves (to skip optional kinds)."""
        groups = await self._request("GET", "/apis")
        return frozenset(
            version["groupVersion"]
            for group in groups.get("groups", [])
            for version in group.get("versions", [])
        )
