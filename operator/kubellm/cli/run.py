"""`kubellm run`: the operator, in cluster or with the current kubeconfig."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import aiohttp
import kopf
from prometheus_client import start_http_server

from kubellm import FIELD_MANAGER
from kubellm.controller.reconcile import Reconciler
from kubellm.handlers import Memo, register, tick
from kubellm.k8s.client import KubeClient
from kubellm.metrics import REGISTRY

PERSISTENCE_PREFIX = "kubellm.io"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch only these (repeatable)"
    )
    parser.add_argument("--metrics-port", type=int, default=8080)
    parser.add_argument("--health-port", type=int, default=8081)
    parser.add_argument("--resync-seconds", type=float, default=60.0)
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


def settings_for(args: argparse.Namespace) -> kopf.OperatorSettings:
    """Kopf configured explicitly: kubellm.io persistence, quiet events, bounded timeouts."""
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=PERSISTENCE_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PERSISTENCE_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = (
        f"{PERSISTENCE_PREFIX}/finalizer"  # unused: no blocking deletes
    )
    settings.posting.loggers = False  # events are posted deliberately, one per change
    settings.posting.reporting_component = FIELD_MANAGER
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.execution.max_workers = 8
    settings.peering.name = args.peering
    settings.peering.mandatory = not args.standalone
    settings.peering.standalone = args.standalone
    # The replica that started first leads; a newer one waits until it is gone.
    settings.peering.priority = 10**13 - int(time.time() * 1000)
    return settings


def credentials(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise SystemExit("no in-cluster service account and no kubeconfig found")
    return info


async def _ensure_peering(client: KubeClient, args: argparse.Namespace) -> None:
    """The peering object must exist for peering to work; create it when it does not."""
    for namespace in args.namespace or [None]:
        kind = "KopfPeering" if namespace else "ClusterKopfPeering"
        metadata = {"name": args.peering, **({"namespace": namespace} if namespace else {})}
        await client.apply({"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": metadata})


async def run_operator(args: argparse.Namespace) -> None:
    settings = settings_for(args)
    info = credentials(settings)
    client = KubeClient(info)
    apis = await client.served_group_versions()
    if not args.standalone:
        await _ensure_peering(client, args)
    registry = kopf.OperatorRegistry()
    register(registry, apis)
    kopf.on.login(registry=registry)(lambda **_: info)
    start_http_server(args.metrics_port, registry=REGISTRY)
    async with aiohttp.ClientSession() as prometheus_session:
        reconciler = Reconciler(client, apis, prometheus_session, pod_monitor=args.pod_monitor)
        memo = Memo(reconciler, args.resync_seconds)
        ticker = asyncio.create_task(tick(memo))
        try:
            await kopf.operator(
                registry=registry,
                settings=settings,
                memo=memo,
                clusterwide=not args.namespace,
                namespaces=args.namespace,
                standalone=args.standalone,
                peering_name=None if args.standalone else args.peering,
                priority=settings.peering.priority,
                liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
            )
        finally:
            ticker.cancel()
            await client.close()


def cmd_run(args: argparse.Namespace) -> int:
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    asyncio.run(run_operator(args))
    return 0
