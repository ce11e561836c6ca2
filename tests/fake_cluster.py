"""An in-memory Kubernetes API and the controllers around kubellm, for executor tests.

Faithful where the executor's correctness depends on it, and nowhere else:
- server-side apply records what each field manager owns in `managedFields` (keyed list
  items as the real API keys them), takes ownership back on a forced apply, keeps list items
  another manager added, and refuses a Service whose port names collide (HTTP 422);
- an unchanged apply changes nothing (no new resourceVersion, no watch event);
- status writes honour a resourceVersion precondition (HTTP 409);
- every change is a watch event, delivered to the operator's cache only when the test
  says so (stale reads are the default, not the exception);
- a Deployment controller, a scheduler with a limited number of GPUs and node pools, and a
  kubelet that makes placed pods Ready one step later (or crash, for a broken image).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubellm.k8s.client import ApiError
from kubellm.render.context import INSTANCE, MANAGED_BY, REVISION, SERVING

Key = tuple[str, str, str]
KUBELLM = "kubellm"
BROKEN_IMAGE = "registry.invalid/broken:1"


def _item_key(item: Mapping[str, Any], path: tuple[str, ...]) -> str | None:
    if path[-1] == "ports" and "port" in item:
        return json.dumps({"port": item["port"], "protocol": item.get("protocol", "TCP")})
    if path[-1] == "ports" and "containerPort" in item:
        return json.dumps(
            {"containerPort": item["containerPort"], "protocol": item.get("protocol", "TCP")}
        )
    if path[-1] == "ownerReferences":
        return json.dumps({"uid": item["uid"]})
    if "name" in item and path[-1] in ("containers", "env", "volumes", "initContainers"):
        return json.dumps({"name": item["name"]})
    if path[-1] == "volumeMounts":
        return json.dumps({"mountPath": item["mountPath"]})
    return None


def fieldset(value: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fieldsV1 set an apply of `value` owns (`{}` for a leaf or an atomic list)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {".": {}} if path else {}
        for key, sub in value.items():
            if not path and key in ("apiVersion", "kind"):
                continue
            if path == ("metadata",) and key in ("name", "namespace"):
                continue
            out[f"f:{key}"] = fieldset(sub, (*path, key))
        return out
    if isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
        keys = [_item_key(i, path) for i in value]
        if all(keys):
            return {
                ".": {},
                **{
                    f"k:{k}": fieldset(i, (*path, "item")) for k, i in zip(keys, value, strict=True)
                },
            }
    return {}


@dataclass
class FakeApi:
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    pending: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # watch events
    writes: Counter[str] = field(default_factory=Counter)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    fail_events: bool = False
    _version: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _uids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ---------------------------------------------------------------- server

    def _key(self, obj: Mapping[str, Any]) -> Key:
        meta = obj["metadata"]
        return (obj["kind"], meta.get("namespace") or "", meta["name"])

    def _store(self, body: dict[str, Any], event: str) -> dict[str, Any]:
        body["metadata"]["resourceVersion"] = str(next(self._version))
        self.objects[self._key(body)] = body
        self.pending.append((body["kind"], event, copy.deepcopy(body)))
        return copy.deepcopy(body)

    def put_object(self, obj: dict[str, Any], manager: str = "test") -> dict[str, Any]:
        """Create or overwrite an object as a client other than kubellm would."""
        body = copy.deepcopy(obj)
        key = self._key(body)
        old = self.objects.get(key)
        meta = body["metadata"]
        meta.setdefault("uid", old["metadata"]["uid"] if old else f"uid-{next(self._uids)}")
        meta.setdefault("creationTimestamp", "2026-03-01T12:00:00Z")
        meta["generation"] = (old["metadata"].get("generation", 1) + 1) if old else 1
        meta["managedFields"] = [
            {"manager": manager, "operation": "Update", "fieldsV1": fieldset(body)}
        ]
        if old and "status" in old:
            body["status"] = old["status"]
        return self._store(body, "MODIFIED" if old else "ADDED")

    def remove(self, key: Key) -> None:
        body = self.objects.pop(key, None)
        if body is not None:
            self.pending.append((key[0], "DELETED", copy.deepcopy(body)))
            uid = body["metadata"]["uid"]
            for other in [k for k, o in self.objects.items() if _owned_by(o, uid)]:
                self.remove(other)

    def edit_service_port(self, key: Key, port: int = 9999) -> None:
        """`kubectl edit`: the port (a list item's key) changes, so the item becomes the
        editor's; server-side apply alone can never take it back."""
        body = copy.deepcopy(self.objects[key])
        item = body["spec"]["ports"][0]
        old_key = f"k:{_port_key(item)}"
        item["port"] = port
        for entry in body["metadata"]["managedFields"]:
            ports = (entry["fieldsV1"].get("f:spec") or {}).get("f:ports") or {}
            ports.pop(old_key, None)
        body["metadata"]["managedFields"].append(
            {"manager": "kubectl-edit", "operation": "Update",
             "fieldsV1": {"f:spec": {"f:ports": {f"k:{_port_key(item)}": {".": {}}}}}}
        )  # fmt: skip
        self._store(body, "MODIFIED")

    def edit_replicas(self, key: Key, replicas: int) -> None:
        """`kubectl scale` of a workload kubellm owns."""
        body = copy.deepcopy(self.objects[key])
        body["spec"]["replicas"] = replicas
        body["metadata"]["generation"] = body["metadata"].get("generation", 1) + 1
        for entry in body["metadata"]["managedFields"]:
            (entry["fieldsV1"].get("f:spec") or {}).pop("f:replicas", None)
        body["metadata"]["managedFields"].append(
            {
                "manager": "kubectl",
                "operation": "Update",
                "fieldsV1": {"f:spec": {"f:replicas": {}}},
            }
        )
        self._store(body, "MODIFIED")

    # ------------------------------------------------------- kubellm's client

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.writes["apply"] += 1
        key = self._key(obj)
        old = self.objects.get(key)
        body = copy.deepcopy(dict(obj))
        meta = body["metadata"]
        if old is not None:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            if body["kind"] == "Service":
                body["spec"]["clusterIP"] = old["spec"]["clusterIP"]
                theirs = _foreign_ports(old, body)
                body["spec"]["ports"] = [*body["spec"]["ports"], *theirs]
                names = [p.get("name") for p in body["spec"]["ports"]]
                if len(names) != len(set(names)):
                    cause = 'spec.ports[1].name: Duplicate value: "http"'
                    raise ApiError(
                        422, f"Service {key[2]} is invalid: {cause}", "Invalid", (cause,)
                    )
            if "status" in old:
                body["status"] = old["status"]
        else:
            meta["uid"] = f"uid-{next(self._uids)}"
            meta["creationTimestamp"] = "2026-03-01T12:00:00Z"
            if body["kind"] == "Service":
                body["spec"]["clusterIP"] = f"10.96.0.{next(self._uids) % 250}"
        # A forced apply takes every field it names; other managers keep what they added.
        meta["managedFields"] = [
            {"manager": KUBELLM, "operation": "Apply", "fieldsV1": fieldset(dict(obj))},
            *(_still_theirs(old, body) if old else []),
        ]
        if old is not None and _same(old, body):
            return copy.deepcopy(old)
        meta["generation"] = (
            old["metadata"].get("generation", 1) + (old.get("spec") != body.get("spec"))
            if old is not None
            else 1
        )
        return self._store(body, "MODIFIED" if old else "ADDED")

    async def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.writes["replace"] += 1
        key = self._key(obj)
        old = self.objects.get(key)
        if old is None:
            raise ApiError(404, "not found", "NotFound")
        if obj["metadata"].get("resourceVersion") != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "conflict", "Conflict")
        body = copy.deepcopy(dict(obj))
        body["metadata"]["managedFields"] = [
            {"manager": KUBELLM, "operation": "Update", "fieldsV1": {}}
        ]
        body["metadata"]["generation"] = old["metadata"].get("generation", 1) + (
            old.get("spec") != body.get("spec")
        )
        return self._store(body, "MODIFIED")

    async def apply_status(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.writes["status"] += 1
        key = self._key(obj)
        old = self.objects.get(key)
        if old is None:
            raise ApiError(404, "not found", "NotFound")
        wanted = obj["metadata"].get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "the object has been modified", "Conflict")
        body = copy.deepcopy(old)
        body["status"] = copy.deepcopy(obj["status"])
        return self._store(body, "MODIFIED")

    async def delete(self, kind: str, namespace: str | None, name: str) -> None:
        self.writes["delete"] += 1
        self.remove((kind, namespace or "", name))

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        body = self.objects.get((kind, namespace or "", name))
        if body is None:
            raise ApiError(404, "not found", "NotFound")
        return copy.deepcopy(body)

    async def post_event(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        self.writes["event"] += 1
        if self.fail_events:
            raise TimeoutError("events are down")
        self.events.append((type_, reason, message))


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])


def _port_key(item: Mapping[str, Any]) -> str:
    return json.dumps({"port": item["port"], "protocol": item.get("protocol", "TCP")})


def _ports(entry: Mapping[str, Any]) -> dict[str, Any]:
    ports: dict[str, Any] = ((entry.get("fieldsV1") or {}).get("f:spec") or {}).get("f:ports") or {}
    return ports


def _still_theirs(old: Mapping[str, Any], body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Managed-fields entries of other managers whose Service ports stayed."""
    if body["kind"] != "Service":
        return []
    ports = {f"k:{_port_key(p)}" for p in body["spec"]["ports"]}
    return [
        e
        for e in old["metadata"].get("managedFields", [])
        if e["manager"] != KUBELLM and ports & set(_ports(e))
    ]


def _foreign_ports(old: Mapping[str, Any], body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Ports another manager owns, which this apply does not name: they stay."""
    ours = {_port_key(p) for p in body["spec"]["ports"]}
    theirs = {
        key[2:]
        for e in old["metadata"].get("managedFields", [])
        if e["manager"] != KUBELLM
        for key in _ports(e)
        if key.startswith("k:")
    }
    return [copy.deepcopy(p) for p in old["spec"]["ports"] if _port_key(p) in theirs - ours]


def _same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    def strip(obj: Mapping[str, Any]) -> Any:
        meta = {
            k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "generation")
        }
        return {**obj, "metadata": meta}

    return bool(strip(old) == strip(new))


# ------------------------------------------------------------------ controllers


@dataclass
class Controllers:
    """The Deployment controller, the scheduler and the kubelet, one step at a time."""

    api: FakeApi
    gpus: int = 8  # free GPUs in the pool; each serving pod here takes one
    pods: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def pods_of(self, deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
        uid = deployment["metadata"]["uid"]
        return [o for o in self.api.objects.values() if o["kind"] == "Pod" and _owned_by(o, uid)]

    def step(self) -> None:
        deployments = [o for o in self.api.objects.values() if o["kind"] == "Deployment"]
        for deployment in deployments:
            self._scale(deployment)
        used = sum(
            1 for o in self.api.objects.values() if o["kind"] == "Pod" and o["spec"].get("nodeName")
        )
        for pod in sorted(
            (o for o in self.api.objects.values() if o["kind"] == "Pod"),
            key=lambda p: p["metadata"]["name"],
        ):
            used = self._kubelet(pod, used)
        for deployment in deployments:
            self._report(deployment)

    def _scale(self, deployment: dict[str, Any]) -> None:
        want = deployment["spec"].get("replicas", 1)
        pods = self.pods_of(deployment)
        template = deployment["spec"]["template"]
        for _ in range(want - len(pods)):
            name = f"{deployment['metadata']['name']}-{next(self.pods)}"
            self.api.put_object(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": name,
                        "namespace": deployment["metadata"]["namespace"],
                        "labels": dict(template["metadata"]["labels"]),
                        "ownerReferences": [
                            {
                                "uid": deployment["metadata"]["uid"],
                                "kind": "ReplicaSet",
                                "name": name,
                            }
                        ],
                    },
                    "spec": copy.deepcopy(template["spec"]),
                    "status": {"phase": "Pending", "conditions": []},
                },
                manager="kube-controller-manager",
            )
        # Pods that are not Ready go first, as a ReplicaSet scales down.
        surplus = sorted(pods, key=lambda p: (_ready(p), p["metadata"]["name"]))[
            : max(0, len(pods) - want)
        ]
        for pod in surplus:
            self.api.remove(("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"]))

    def _kubelet(self, pod: dict[str, Any], used: int) -> int:
        key = ("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"])
        spec, status = pod["spec"], copy.deepcopy(pod.get("status") or {})
        container = spec["containers"][0]
        if not spec.get("nodeName"):
            if spec.get("nodeSelector", {}).get("pool") == "nowhere":
                message = (
                    "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
                )
            elif used >= self.gpus:
                message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
            else:
                spec = {**spec, "nodeName": "gpu-node"}
                used += 1
                message = None
            status["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False" if message else "True",
                    "reason": "Unschedulable" if message else "",
                    "message": message or "",
                }
            ]
        elif container["image"] == BROKEN_IMAGE:
            status["containerStatuses"] = [
                {
                    "name": "engine",
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                }
            ]
        elif not _ready(pod):
            status["conditions"] = [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-03-01T12:01:00Z"},
            ]
        if spec != pod["spec"] or status != pod.get("status"):
            body = copy.deepcopy(pod)
            body["spec"], body["status"] = spec, status
            self.api.objects[key] = body
            self.api._store(body, "MODIFIED")
        return used

    def _report(self, deployment: Mapping[str, Any]) -> None:
        key = self.api._key(deployment)
        current = self.api.objects.get(key)
        if current is None:
            return
        ready = sum(1 for p in self.pods_of(current) if _ready(p))
        status = {"replicas": len(self.pods_of(current)), "readyReplicas": ready}
        if current.get("status") != status:
            body = copy.deepcopy(current)
            body["status"] = status
            self.api._store(body, "MODIFIED")


def _ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def serving_labels(name: str, revision: str) -> dict[str, str]:
    return {INSTANCE: name, REVISION: revision, SERVING: "true", MANAGED_BY: "kubellm"}
