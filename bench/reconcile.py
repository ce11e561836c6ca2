"""Benchmark: kubellm against the platform floor, N workloads on the local control plane.

For each N, in one run on one control plane (whose controller-manager and scheduler use the
client rates printed as `kcm_qps`/`kcm_burst`; e2e/cluster/cluster.sh sets 200/400):

1. The floor: N plain Deployments with the very pod template kubellm renders for the
   LLMDeployment below, created with kubectl; seconds until all are Available; then a
   fleet-wide image change (`kubectl apply --server-side` of all N) until all have rolled.
2. kubellm: the operator (standalone), the same N as LLMDeployments created with kubectl;
   seconds until all are Ready, until every child is applied (the operator's own latency,
   per object from its creation to its last child), the operator's requests per object by
   verb (from `kubellm_api_requests_total`), reconcile p50/p99 (from its histogram), writes
   at steady state over two resyncs, peak RSS; then the same image change until every one
   is Ready on the new revision.

Prints one JSON line per N. Watches (not listings) tell when objects are ready, so the
bench itself adds little load. At N=10,000 a run takes a long time: run it in the background.

    python bench/reconcile.py --count 100 --count 1000
    python bench/reconcile.py --count 10000 --resync-seconds 60
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import yaml

from kubellm.render import render_children, resolve, single_revision

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / "e2e" / ".cluster"
KUBECONFIG = STATE / "kubeconfig"
KUBECTL = str(Path(sys.prefix) / "bin" / "kubectl")
ENV = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}
PODS_PER_NODE = 110  # fake nodes: one GPU per pod, room for every pod of an update's surge
METRICS_PORT, HEALTH_PORT = 18180, 18181
IMAGE, NEW_IMAGE = "vllm/vllm-openai:v0.19.0", "vllm/vllm-openai:v0.19.1"
INSTANCE = "app.kubernetes.io/instance"
CHILD_RESOURCES = {  # kind -> API path part (what kubellm creates for the spec below)
    "ControllerRevision": "apis/apps/v1",
    "Deployment": "apis/apps/v1",
    "Service": "api/v1",
    "PodDisruptionBudget": "apis/policy/v1",
    "PodMonitor": "apis/monitoring.coreos.com/v1",
}
PLURALS = {
    "ControllerRevision": "controllerrevisions",
    "Deployment": "deployments",
    "Service": "services",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "PodMonitor": "podmonitors",
    "LLMDeployment": "llmdeployments",
}


def kubectl(*args: str, stdin: str | None = None, timeout: float = 3600) -> str:
    proc = subprocess.run(
        [KUBECTL, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])}: {proc.stderr.strip()[:500]}")
    return proc.stdout


CLIENTS = 1  # kubectl processes that share a create or an update (--clients)
UPDATE = ("apply", "--server-side", "--force-conflicts", "--field-manager=bench")


def kubectl_all(args: tuple[str, ...], objects: list[dict[str, Any]]) -> None:
    """`kubectl ARGS -f -` of `objects`, split over CLIENTS kubectl processes at once (as a
    GitOps tool would); each kubectl sends its objects one after the other."""
    chunks = [objects[i::CLIENTS] for i in range(CLIENTS)]
    runs = [
        subprocess.Popen(
            [KUBECTL, *args, "-f", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=ENV,
            text=True,
        )
        for chunk in chunks
        if chunk
    ]
    for run_, chunk in zip(runs, chunks, strict=False):
        assert run_.stdin is not None
        run_.stdin.write(stream(chunk))
        run_.stdin.close()
    for run_ in runs:
        if run_.wait() != 0:
            raise RuntimeError(
                f"kubectl {args[0]}: {run_.stderr.read()[:500] if run_.stderr else ''}"
            )


# ---------------------------------------------------------------------- objects


def llmdeployment(namespace: str, name: str, image: str = IMAGE) -> dict[str, Any]:
    return {
        "apiVersion": "kubellm.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
            "engine": {"type": "vllm", "maxContextLength": 8192, "image": image},
            "resources": {"gpu": {"type": "H100-80GB"}},
            "scheduling": {"nodeSelector": {"kubellm.io/bench": "true"}},
            "rollout": {"strategy": "rolling"},
            "replicas": 1,
        },
    }


def plain_children(namespace: str, name: str, image: str = IMAGE) -> list[dict[str, Any]]:
    """The children kubellm renders for the same LLMDeployment, as anyone could create them."""
    children = render_children(single_revision(resolve(llmdeployment(namespace, name, image))))
    for child in children:
        child["metadata"]["labels"].pop("app.kubernetes.io/managed-by", None)
    return children


def plain_deployment(namespace: str, name: str, image: str = IMAGE) -> dict[str, Any]:
    return next(c for c in plain_children(namespace, name, image) if c["kind"] == "Deployment")


def bench_nodes(pods: int) -> str:
    """Fake H100 nodes (kwok), enough for `pods` one-GPU pods."""
    nodes = []
    for i in range(math.ceil(pods / PODS_PER_NODE)):
        name = f"bench-h100-{i}"
        capacity = {
            "cpu": str(8 * PODS_PER_NODE),
            "memory": f"{32 * PODS_PER_NODE}Gi",
            "ephemeral-storage": f"{32 * PODS_PER_NODE}Gi",
            "pods": str(PODS_PER_NODE),
            "nvidia.com/gpu": str(PODS_PER_NODE),
        }
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        "kwok.x-k8s.io/node": "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "type": "kwok",
                        "kubellm.io/bench": "true",
                        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                    },
                },
                "status": {"capacity": capacity, "allocatable": capacity},
            }
        )
    return yaml.safe_dump_all(nodes)


def stream(objects: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})


# --------------------------------------------------------------------- watching


class Api:
    """Just enough of the Kubernetes API for watches, with the cluster's kubeconfig."""

    def __init__(self) -> None:
        config = yaml.safe_load(KUBECONFIG.read_text())
        cluster = config["clusters"][0]["cluster"]
        url = urlparse(cluster["server"])
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        self.headers = {"Authorization": f"Bearer {config['users'][0]['user']['token']}"}

    def connection(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=timeout
        )

    def get(self, path: str) -> Any:
        conn = self.connection(120)
        try:
            conn.request("GET", path, headers=self.headers)
            response = conn.getresponse()
            return json.loads(response.read())
        finally:
            conn.close()


class Watch(threading.Thread):
    """One watch of a collection; every event goes to `on_event(type, object, seconds)`."""

    def __init__(self, api: Api, path: str, on_event: Callable[[str, Any, float], None]) -> None:
        super().__init__(daemon=True)
        self.api, self.path, self.on_event = api, path, on_event
        self.stopped = threading.Event()
        deadline = time.monotonic() + 60
        listing = api.get(path)
        # a CRD registered a moment ago answers 429 "storage is (re)initializing" for a while
        while listing.get("kind") == "Status" and listing.get("code") == 429:
            if time.monotonic() > deadline:
                break
            time.sleep(1)
            listing = api.get(path)
        if listing.get("kind") == "Status":
            raise RuntimeError(f"list {path}: {listing.get('message')}")
        self.version = listing["metadata"]["resourceVersion"]
        now = time.monotonic()
        for item in listing.get("items") or []:
            on_event("ADDED", item, now)

    def run(self) -> None:
        while not self.stopped.is_set():
            query = urlencode(
                {
                    "watch": "1",
                    "resourceVersion": self.version,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": "300",
                }
            )
            conn = self.api.connection(330)
            try:
                conn.request("GET", f"{self.path}?{query}", headers=self.api.headers)
                response = conn.getresponse()
                for line in response:
                    if self.stopped.is_set():
                        return
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch {self.path}: {obj.get('message')}")
                    self.version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.on_event(event["type"], obj, time.monotonic())
            except (OSError, http.client.HTTPException):
                time.sleep(1)
            finally:
                conn.close()

    def stop(self) -> None:
        self.stopped.set()


class Tracker:
    """When each object first met `predicate` (its name -> monotonic seconds)."""

    def __init__(self, predicate: Callable[[Any], bool]) -> None:
        self.predicate = predicate
        self.ready: dict[str, float] = {}
        self.lock = threading.Lock()

    def __call__(self, type_: str, obj: Any, now: float) -> None:
        name = obj["metadata"]["name"]
        if type_ != "DELETED" and name not in self.ready and self.predicate(obj):
            with self.lock:
                self.ready[name] = now

    def wait(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while len(self.ready) < count and time.monotonic() < deadline:
            time.sleep(0.5)
        return len(self.ready)


def image_of(obj: Any) -> str:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "LLMDeployment":
        return str((spec.get("engine") or {}).get("image") or "")
    containers = spec["template"]["spec"]["containers"]
    return str(containers[0]["image"])


def deployment_rolled(image: str) -> Callable[[Any], bool]:
    """A Deployment whose every replica runs `image` and is available (kubectl rollout status)."""

    def rolled(obj: Any) -> bool:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        want = int(spec.get("replicas", 1))
        return (
            image_of(obj) == image
            and status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)
            and status.get("updatedReplicas", 0) == want
            and status.get("availableReplicas", 0) == want
            and status.get("replicas", 0) == want
        )

    return rolled


def llmdeployment_ready(image: str) -> Callable[[Any], bool]:
    """Ready on this generation (a rollout ends Progressing, so Ready means it finished)."""

    def ready(obj: Any) -> bool:
        status = obj.get("status") or {}
        return (
            image_of(obj) == image
            and status.get("observedGeneration") == obj["metadata"].get("generation")
            and status.get("phase") == "Ready"
        )

    return ready


class Children:
    """Per owner: when its LLMDeployment was first seen and when its last child appeared."""

    def __init__(self) -> None:
        self.created: dict[str, float] = {}
        self.last_child: dict[str, float] = {}
        self.count: defaultdict[str, int] = defaultdict(int)

    def owner(self, type_: str, obj: Any, now: float) -> None:
        self.created.setdefault(obj["metadata"]["name"], now)

    def child(self, type_: str, obj: Any, now: float) -> None:
        owner = (obj["metadata"].get("labels") or {}).get(INSTANCE)
        if owner and type_ == "ADDED":
            self.count[owner] += 1
            self.last_child[owner] = now


# ---------------------------------------------------------------------- metrics


def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=30) as r:
        text = r.read().decode()
    return parse_metrics(text)


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        pairs = frozenset(re.findall(r'(\w+)="([^"]*)"', labels))
        samples[(name, pairs)] = float(value)
    return samples


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def delta(after: Samples, before: Samples, name: str, **match: str) -> float:
    """Sum of one metric's growth between two scrapes, over the series matching `match`."""
    total = 0.0
    for (series, labels), value in after.items():
        if series == name and all((k, v) in labels for k, v in match.items()):
            total += value - before.get((series, labels), 0.0)
    return total


def requests_by(after: Samples, before: Samples) -> dict[str, float]:
    """The operator's API requests between two scrapes, by `verb resource`."""
    out: dict[str, float] = {}
    for (series, labels), value in after.items():
        if series != "kubellm_api_requests_total":
            continue
        grown = value - before.get((series, labels), 0.0)
        if grown:
            tags = dict(labels)
            out[f"{tags['verb']} {tags['resource']}"] = grown
    return out


def quantile(after: Samples, before: Samples, name: str, q: float) -> float | None:
    """histogram_quantile over the growth of a histogram between two scrapes."""
    buckets = sorted(
        (
            float(dict(labels)["le"]),
            value - before.get((series, labels), 0.0),
        )
        for (series, labels), value in after.items()
        if series == f"{name}_bucket"
    )
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                (count - lower_count) or 1
            )
        lower_bound, lower_count = bound, count
    return None


def server_writes() -> float:
    """Every mutating request the API server served (all clients, all resources)."""
    text = kubectl("get", "--raw", "/metrics")
    return sum(
        value
        for (name, labels), value in parse_metrics(text).items()
        if name == "apiserver_request_total"
        and dict(labels).get("verb") in ("POST", "PUT", "PATCH", "APPLY", "DELETE")
    )


def proc_status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


COMPONENTS = ("apiserver", "etcd", "controller-manager", "scheduler", "kwok")


def platform_cpu() -> dict[str, float]:
    """CPU seconds each control-plane process has used so far (they share the machine)."""
    return {c: cpu_seconds(int((STATE / f"{c}.pid").read_text())) for c in COMPONENTS}


def cpu_per_object(
    after: dict[str, float], before: dict[str, float], count: int
) -> dict[str, float]:
    """Milliseconds of CPU per object, per control-plane process."""
    return {c: round(1000 * (after[c] - before[c]) / count, 1) for c in COMPONENTS}


def client_rates() -> dict[str, int | None]:
    """The controller-manager's --kube-api-qps/--kube-api-burst, read from its command line."""
    pid = (STATE / "controller-manager.pid").read_text().strip()
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    rates: dict[str, int | None] = {"kcm_qps": None, "kcm_burst": None}
    for arg in args:
        for flag, key in (("--kube-api-qps=", "kcm_qps"), ("--kube-api-burst=", "kcm_burst")):
            if arg.startswith(flag):
                rates[key] = int(float(arg[len(flag) :]))
    return rates


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------------ phases


def fresh_namespace(prefix: str, count: int) -> str:
    namespace = f"{prefix}-{count}-{int(time.time())}"
    kubectl("create", "namespace", namespace)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # pods need the namespace's default ServiceAccount
        if (
            subprocess.run(
                [KUBECTL, "get", "serviceaccount", "default", "-n", namespace],
                capture_output=True,
                env=ENV,
                check=False,
            ).returncode
            == 0
        ):
            return namespace
        time.sleep(0.5)
    raise RuntimeError(f"no default ServiceAccount in {namespace}")


def delete_namespace(namespace: str) -> None:
    """Delete and wait, so the next phase starts on a quiet control plane."""
    kubectl("delete", "namespace", namespace, "--timeout=3600s")


def floor(api: Api, count: int, timeout: float, update: bool) -> dict[str, Any]:
    namespace = fresh_namespace("floor", count)
    names = [f"m{i}" for i in range(count)]
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    created, updated = Tracker(deployment_rolled(IMAGE)), Tracker(deployment_rolled(NEW_IMAGE))
    watch = Watch(api, path, lambda t, o, now: (created(t, o, now), updated(t, o, now)))
    watch.start()
    try:
        objects = [plain_deployment(namespace, n) for n in names]
        writes, cpu = server_writes(), platform_cpu()
        start = time.monotonic()
        kubectl_all(("create",), objects)
        create_seconds = time.monotonic() - start
        ready = created.wait(count, timeout)
        all_ready = max(created.ready.values(), default=start) - start
        writes, cpu = server_writes() - writes, cpu_per_object(platform_cpu(), cpu, count)
        result: dict[str, Any] = {
            "floor_ready": ready,
            "floor_create_seconds": round(create_seconds, 1),
            "floor_seconds": round(all_ready, 1),
            "floor_server_writes_per_object": round(writes / count, 2),
            "floor_platform_cpu_ms_per_object": cpu,
        }
        if not update:
            return result
        start = time.monotonic()
        kubectl_all(UPDATE, [plain_deployment(namespace, n, NEW_IMAGE) for n in names])
        update_apply = time.monotonic() - start
        rolled = updated.wait(count, timeout)
        return {
            **result,
            "floor_updated": rolled,
            "floor_update_apply_seconds": round(update_apply, 1),
            "floor_update_seconds": round(max(updated.ready.values(), default=start) - start, 1),
        }
    finally:
        watch.stop()
        delete_namespace(namespace)


def floor_with_children(api: Api, count: int, timeout: float) -> dict[str, Any]:
    """The same children kubellm makes (snapshot, Deployment, Service, PDB, PodMonitor),
    created by kubectl, one kubectl per kind at once: what the children cost the platform
    without the operator."""
    namespace = fresh_namespace("floorkids", count)
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    created = Tracker(deployment_rolled(IMAGE))
    watch = Watch(api, path, created)
    watch.start()
    try:
        by_kind: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for i in range(count):
            for child in plain_children(namespace, f"m{i}"):
                by_kind[child["kind"]].append(child)
        cpu = platform_cpu()
        start = time.monotonic()
        creators = [
            subprocess.Popen(
                [KUBECTL, "create", "-f", "-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                env=ENV,
                text=True,
            )
            for _ in by_kind
        ]
        for creator, objects in zip(creators, by_kind.values(), strict=True):
            assert creator.stdin is not None
            creator.stdin.write(stream(objects))
            creator.stdin.close()
        for creator in creators:
            creator.wait()
        ready = created.wait(count, timeout)
        all_ready = max(created.ready.values(), default=start) - start
        return {
            "floor_children_ready": ready,
            "floor_children_seconds": round(all_ready, 1),
            "floor_children_platform_cpu_ms_per_object": cpu_per_object(platform_cpu(), cpu, count),
        }
    finally:
        watch.stop()
        delete_namespace(namespace)


class Operator:
    def __init__(self, resync_seconds: float, extra: list[str]) -> None:
        self.log = Path(tempfile.mkstemp(prefix="kubellm-bench-", suffix=".log")[1])
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kubellm.cli.main", "run", "--standalone",
                 "--metrics-port", str(METRICS_PORT), "--health-port", str(HEALTH_PORT),
                 "--resync-seconds", str(resync_seconds), *extra],
                stdout=out, stderr=subprocess.STDOUT, env=ENV,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{HEALTH_PORT}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("operator not healthy in 120 s")

    def quiet(self, limit: float = 600) -> None:
        """Wait until the operator has made no request for 15 s (its work is done)."""
        deadline = time.monotonic() + limit
        last, since = scrape(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < 15:
            time.sleep(5)  # a scrape of 10,000 objects' series costs the operator CPU
            now = scrape()
            if delta(now, last, "kubellm_api_requests_total"):
                since = time.monotonic()
            last = now

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def kubellm(
    api: Api, count: int, timeout: float, resync: float, extra: list[str], update: bool
) -> dict[str, Any]:
    namespace = fresh_namespace("kubellm", count)
    names = [f"m{i}" for i in range(count)]
    created, updated = Tracker(llmdeployment_ready(IMAGE)), Tracker(llmdeployment_ready(NEW_IMAGE))
    children = Children()

    def owner_event(type_: str, obj: Any, now: float) -> None:
        children.owner(type_, obj, now)
        created(type_, obj, now)
        updated(type_, obj, now)

    watches = [Watch(api, f"/apis/kubellm.io/v1alpha1/namespaces/{namespace}/llmdeployments",
                     owner_event)]  # fmt: skip
    watches += [
        Watch(api, f"/{prefix}/namespaces/{namespace}/{PLURALS[kind]}", children.child)
        for kind, prefix in CHILD_RESOURCES.items()
    ]
    operator = Operator(resync, extra)
    pid = operator.process.pid
    for watch in watches:
        watch.start()
    try:
        objects = [llmdeployment(namespace, n) for n in names]
        before, writes, cpu = scrape(), server_writes(), cpu_seconds(pid)
        platform = platform_cpu()
        start = time.monotonic()
        kubectl_all(("create",), objects)
        create_seconds = time.monotonic() - start
        ready = created.wait(count, timeout)
        all_ready = max(created.ready.values(), default=start) - start
        platform = cpu_per_object(platform_cpu(), platform, count)
        operator.quiet()
        after, writes, cpu = scrape(), server_writes() - writes, cpu_seconds(pid) - cpu
        rss_created = proc_status(pid, "VmHWM")
        by = requests_by(after, before)
        latency = [children.last_child[n] - children.created[n] for n in children.last_child]
        children_done = max(children.last_child.values(), default=start) - start
        children_per_object = sum(children.count.values()) / count

        owners = api.get(f"/apis/kubellm.io/v1alpha1/namespaces/{namespace}/llmdeployments")
        kopf_marks = sum(
            1
            for o in owners["items"]
            for key in [
                *(o["metadata"].get("annotations") or {}),
                *o["metadata"].get("finalizers", []),
            ]
            if "kopf" in key
        )

        # steady state: two resyncs with nothing to do
        steady_before, steady_cpu = scrape(), cpu_seconds(pid)
        time.sleep(2 * resync + 5)
        steady_after, steady_cpu = scrape(), cpu_seconds(pid) - steady_cpu
        steady = requests_by(steady_after, steady_before)

        result: dict[str, Any] = {
            "ready": ready,
            "kubellm_create_seconds": round(create_seconds, 1),
            "kubellm_seconds": round(all_ready, 1),
            "children_seconds": round(children_done, 1),
            "children_per_object": round(children_per_object, 2),
            "operator_latency_p50_seconds": _round(percentile(latency, 0.5), 2),
            "operator_latency_p99_seconds": _round(percentile(latency, 0.99), 2),
            "writes_per_create": round(_writes(by) / count, 2),
            "reads_per_create": round(_reads(by) / count, 2),
            "requests_per_create": {k: round(v / count, 3) for k, v in sorted(by.items())},
            "reconciles_per_create": round(
                delta(after, before, "kubellm_reconcile_total") / count, 2
            ),
            "watch_events_per_create": round(
                delta(after, before, "kubellm_watch_events_total") / count, 2
            ),
            "reconcile_p50_seconds": _round(
                quantile(after, before, "kubellm_reconcile_duration_seconds", 0.5), 4
            ),
            "reconcile_p99_seconds": _round(
                quantile(after, before, "kubellm_reconcile_duration_seconds", 0.99), 4
            ),
            "kubellm_server_writes_per_object": round(writes / count, 2),
            "kopf_annotations_and_finalizers": kopf_marks,
            "operator_cpu_ms_per_create": round(1000 * cpu / count, 1),
            "platform_cpu_ms_per_object": platform,
            "steady_state_writes": _writes(steady),
            "steady_state_reads": _reads(steady),
            "steady_state_reconciles": delta(
                steady_after, steady_before, "kubellm_reconcile_total"
            ),
            "steady_cpu_percent": round(100 * steady_cpu / (2 * resync + 5), 1),
            "peak_rss_mib": round(proc_status(pid, "VmHWM"), 1),
            "peak_rss_create_mib": round(rss_created, 1),
            "rss_mib": round(proc_status(pid, "VmRSS"), 1),
        }
        if not update:
            return result
        # a fleet-wide image change
        update_before = scrape()
        start = time.monotonic()
        kubectl_all(UPDATE, [llmdeployment(namespace, n, NEW_IMAGE) for n in names])
        update_apply = time.monotonic() - start
        rolled = updated.wait(count, timeout)
        update_seconds = max(updated.ready.values(), default=start) - start
        operator.quiet()
        update_after = scrape()
        update_by = requests_by(update_after, update_before)
        return {
            **result,
            "peak_rss_mib": round(proc_status(pid, "VmHWM"), 1),  # the update's peak included
            "rss_mib": round(proc_status(pid, "VmRSS"), 1),
            "updated": rolled,
            "update_apply_seconds": round(update_apply, 1),
            "update_burst_seconds": round(update_seconds, 1),
            "writes_per_update": round(_writes(update_by) / count, 2),
            "requests_per_update": {k: round(v / count, 3) for k, v in sorted(update_by.items())},
            "update_reconcile_p99_seconds": _round(
                quantile(update_after, update_before, "kubellm_reconcile_duration_seconds", 0.99),
                4,
            ),
        }
    finally:
        for watch in watches:
            watch.stop()
        operator.stop()
        delete_namespace(namespace)


def _writes(by: Mapping[str, float]) -> float:
    return sum(v for k, v in by.items() if not k.startswith("get "))


def _reads(by: Mapping[str, float]) -> float:
    return sum(v for k, v in by.items() if k.startswith("get "))


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def wait_nodes(count: int) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        out = kubectl(
            "get", "nodes", "-l", "kubellm.io/bench=true", "-o",
            'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
        )  # fmt: skip
        if out.split().count("True") >= count:
            return
        time.sleep(2)
    raise RuntimeError("bench nodes not Ready")


def run(count: int, args: argparse.Namespace) -> dict[str, Any]:
    api = Api()
    pods = math.ceil(2.2 * count)  # an update surges one pod per object
    kubectl("apply", "-f", "-", stdin=bench_nodes(pods))
    wait_nodes(math.ceil(pods / PODS_PER_NODE))
    result: dict[str, Any] = {"count": count, "kubectl_clients": CLIENTS, **client_rates()}
    if not args.skip_floor:
        result.update(floor(api, count, args.timeout, not args.skip_update))
    if args.floor_children:
        result.update(floor_with_children(api, count, args.timeout))
    result.update(
        kubellm(
            api, count, args.timeout, args.resync_seconds, args.operator_arg, not args.skip_update
        )
    )
    if result.get("floor_children_seconds"):
        result["ratio_to_children"] = round(
            result["kubellm_seconds"] / result["floor_children_seconds"], 2
        )
    if result.get("floor_seconds"):
        result["ratio"] = round(result["kubellm_seconds"] / result["floor_seconds"], 2)
    if result.get("floor_update_seconds") and "update_burst_seconds" in result:
        result["update_ratio"] = round(
            result["update_burst_seconds"] / result["floor_update_seconds"], 2
        )
    return result


def main() -> None:
    # Cleanup (operator stopped, namespaces and nodes deleted) also when stopped by `kill`:
    # a background job ignores SIGINT.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, action="append", help="objects per run")
    parser.add_argument("--resync-seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="per phase")
    parser.add_argument("--skip-floor", action="store_true", help="kubellm only (quick checks)")
    parser.add_argument(
        "--skip-update", action="store_true", help="no fleet-wide image change (long at 10,000)"
    )
    parser.add_argument(
        "--floor-children",
        action="store_true",
        help="also the floor of the same children created by kubectl (without the operator)",
    )
    parser.add_argument(
        "--operator-arg", action="append", default=[], help="extra `kubellm run` argument"
    )
    parser.add_argument(
        "--clients", type=int, default=1, help="kubectl processes per create or update"
    )
    args = parser.parse_args()
    global CLIENTS
    CLIENTS = args.clients
    kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    try:
        for count in args.count or [100, 1000]:
            print(json.dumps(run(count, args)), flush=True)
    finally:
        kubectl("delete", "nodes", "-l", "kubellm.io/bench=true", "--wait=false")


if __name__ == "__main__":
    main()
