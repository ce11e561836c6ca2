"""`kubellm run`: the operator, in cluster or with the current kubeconfig."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import get_args

import aiohttp
import kopf
from kopf._core.engines.peering import Identity  # the type kopf.operator() takes
from prometheus_client import start_http_server

from kubellm import FIELD_MANAGER
from kubellm.api.models import GpuNodeLabels
from kubellm.controller.cache import Cache
from kubellm.controller.leadership import Peering
from kubellm.controller.reconcile import Reconciler
from kubellm.controller.runtime import Runtime
from kubellm.handlers import configure, register
from kubellm.k8s.client import KubeClient
from kubellm.metrics import REGISTRY

PEERING_LIFETIME_SECONDS = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch only these (repeatable)"
    )
    parser.add_argument("--metrics-port", type=int, default=8080)
    parser.add_argument("--health-port", type=int, default=8081)
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=60.0,
        help="look at every LLMDeployment at least this often, with or without events",
    )
    parser.add_argument(
        "--unavailable-grace-seconds",
        type=float,
        default=300.0,
        help="serving pods Ready=False this long (not loading) turn the object Degraded",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=32,
        help="LLMDeployments reconciled at once (each writes its children at once)",
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--peering", default="kubellm", help="Kopf peering object name")
    parser.add_argument(
        "--standalone", action="store_true", help="no peering: only for a single replica"
    )
    parser.add_argument(
        "--pod-monitor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one PodMonitor per LLMDeployment; --no-pod-monitor when another PodMonitor (the"
        " chart's podMonitor.enabled) scrapes the engines, so no series is scraped twice",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    add_gpu_node_labels_argument(parser)


def add_gpu_node_labels_argument(parser: argparse.ArgumentParser) -> None:
    """The cluster's GPU node-label scheme; an LLMDeployment's resources.gpu.nodeLabels wins."""
    parser.add_argument(
        "--gpu-node-labels",
        choices=get_args(GpuNodeLabels),
        default="nvidia",
        help="how nodes name their GPU model: nvidia (GPU feature discovery, the default),"
        " gke, eks, karpenter-aws, karpenter-azure, or none (no GPU node affinity)",
    )


def settings_for(args: argparse.Namespace) -> kopf.OperatorSettings:
    """Kopf configured explicitly: it only watches (no annotations, finalizers or Events)."""
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # kubellm posts its own Events, one per change
    settings.posting.reporting_component = FIELD_MANAGER
    # Kopf keeps a task per object, holding that object's last event, until no event came
    # for this long (5 s by default): in a burst, thousands of bodies. The handlers only
    # file the event in the cache, so a worker has nothing to wait for.
    settings.queueing.idle_timeout = 0.5
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.peering.name = args.peering
    settings.peering.mandatory = not args.standalone
    settings.peering.standalone = args.standalone
    # The replica that started first leads; a newer one waits until it is gone.
    settings.peering.priority = 10**13 - int(time.time() * 1000)
    # A replica that dies without saying goodbye (SIGKILL, a lost node) holds the lead until
    # its keep-alive expires: 20 s, renewed every 10-15 s, instead of Kopf's 60 s.
    settings.peering.lifetime = PEERING_LIFETIME_SECONDS
    configure(settings)
    return settings


def credentials(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise SystemExit("no in-cluster service account and no kubeconfig found")
    return info


async def _ensure_peering(client: KubeClient, args: argparse.Namespace) -> None:
    """The peering object must exist for peering to work; create it when it does not (in the
    namespaces named exactly; a pattern's namespaces get theirs from the chart or kopf)."""
    exact = [n for n in args.namespace if not any(c in n for c in "*?[")]
    if args.namespace and not exact:
        return
    for namespace in exact or [None]:
        kind = "KopfPeering" if namespace else "ClusterKopfPeering"
        metadata = {"name": args.peering, **({"namespace": namespace} if namespace else {})}
        await client.apply({"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": metadata})


async def run_operator(args: argparse.Namespace) -> None:
    settings = settings_for(args)
    info = credentials(settings)
    client = KubeClient(info)
    identity = f"kubellm-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    peering = None
    if not args.standalone:
        peering = Peering(args.peering, identity, settings.peering.priority, tuple(args.namespace))
        await _ensure_peering(client, args)
    registry = kopf.OperatorRegistry()
    register(registry)
    kopf.on.login(registry=registry)(lambda **_: info)
    start_http_server(args.metrics_port, registry=REGISTRY)
    async with aiohttp.ClientSession() as prometheus_session:
        cache = Cache(per_namespace=bool(args.namespace))
        reconciler = Reconciler(
            client,
            cache,
            await client.served_group_versions(),
            prometheus_session,
            unavailable_grace=args.unavailable_grace_seconds,
            gpu_node_labels=args.gpu_node_labels,
            pod_monitor=args.pod_monitor,
        )
        runtime = Runtime(
            reconciler,
            cache,
            client,
            args.resync_seconds,
            workers=args.workers,
            peering=peering,
            namespaces=tuple(args.namespace),
        )
        if peering is None:
            await runtime.sync()
        runtime.start()
        try:
            await kopf.operator(
                registry=registry,
                settings=settings,
                memo=Memo(runtime),
                identity=Identity(identity),
                clusterwide=not args.namespace,
                namespaces=args.namespace,
                standalone=args.standalone,
                peering_name=None if args.standalone else args.peering,
                priority=settings.peering.priority,
                liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
            )
        finally:
            await runtime.stop()
            await client.close()


@dataclass
class Memo:
    """What Kopf hands every handler: the runtime."""

    runtime: Runtime


def cmd_run(args: argparse.Namespace) -> int:
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if not args.verbose:  # Kopf says "Handler ... succeeded" for every watch event
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    asyncio.run(run_operator(args))
    return 0
