"""Canary analysis, the I/O half: instant queries against the Prometheus HTTP API.

Prometheus may sit behind authentication (a bearer token or basic auth, over https with a
private CA): `load_credentials` reads them from the Secret `analysis.prometheusAuth` names,
and every query of an analysis carries them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import aiohttp

from kubellm.api.models import Analysis, AnalysisStatus, PrometheusAuth
from kubellm.k8s.client import ApiError
from kubellm.rollout.analysis import AnalysisQuery, assess


class PrometheusError(Exception):
    """Prometheus refused or failed a query; the message is its own."""


@dataclass(frozen=True)
class PrometheusCredentials:
    """What authenticates the operator to one Prometheus."""

    authorization: str | None = None  # the Authorization header: `Bearer ...` or `Basic ...`
    ssl_context: ssl.SSLContext | None = None  # verifies https against the Secret's CA

    def request_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.authorization:
            options["headers"] = {"Authorization": self.authorization}
        if self.ssl_context:
            options["ssl"] = self.ssl_context
        return options


class SecretReader(Protocol):
    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]: ...


async def load_credentials(
    secrets: SecretReader, namespace: str, auth: PrometheusAuth
) -> PrometheusCredentials:
    """Credentials from the Secret; a PrometheusError says which Secret or key is wrong."""
    where = f"Secret {namespace}/{auth.secret_name}"
    try:
        secret = await secrets.get("Secret", namespace, auth.secret_name)
    except ApiError as error:
        hint = (
            ": the operator reads only the Secrets named in its chart value"
            " prometheusAuth.secretNames"
            if error.status == 403
            else ""
        )
        raise PrometheusError(f"{where}: {error}{hint}") from error
    data: Mapping[str, str] = secret.get("data") or {}

    def value(key: str) -> str:
        if key not in data:
            raise PrometheusError(f"{where} has no key {key!r}")
        try:
            return base64.b64decode(data[key], validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError) as error:
            raise PrometheusError(f"{where} key {key!r}: {error}") from error

    if auth.type == "bearer":
        authorization = f"Bearer {value(auth.token_key)}"
    else:
        user_password = f"{value(auth.username_key)}:{value(auth.password_key)}"
        authorization = "Basic " + base64.b64encode(user_password.encode()).decode()
    context = None
    if auth.ca_key:
        try:
            context = ssl.create_default_context(cadata=value(auth.ca_key))
        except ssl.SSLError as error:
            raise PrometheusError(f"{where} key {auth.ca_key!r} is not a PEM CA: {error}") from None
    return PrometheusCredentials(authorization, context)


async def credentials_or_error(
    secrets: SecretReader, namespace: str, auth: PrometheusAuth | None
) -> PrometheusCredentials | PrometheusError | None:
    """For `run_analysis`: the credentials, the reason they cannot be read, or None."""
    if auth is None:
        return None
    try:
        return await load_credentials(secrets, namespace, auth)
    except PrometheusError as error:
        return error


async def query_prometheus(
    base_url: str,
    promql: str,
    *,
    session: aiohttp.ClientSession,
    timeout: float = 10,
    credentials: PrometheusCredentials | None = None,
) -> float | None:
    """One instant query summed to a number; None when no series matched."""
    url = f"{base_url.rstrip('/')}/api/v1/query"
    options = credentials.request_options() if credentials else {}
    try:
        async with session.get(
            url,
            params={"query": promql},
            timeout=aiohttp.ClientTimeout(total=timeout),
            **options,
        ) as response:
            if response.status in (401, 403):
                raise PrometheusError(f"{url}: HTTP {response.status} {response.reason}")
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        raise PrometheusError(f"{url}: {error or type(error).__name__}") from error
    if not isinstance(body, dict) or body.get("status") != "success":
        detail = body.get("error", body) if isinstance(body, dict) else body
        raise PrometheusError(f"{promql}: {detail}")
    data = body["data"]
    if data["resultType"] == "scalar":
        return float(data["result"][1])
    if data["resultType"] != "vector":
        raise PrometheusError(f"{promql}: expected a number, got a {data['resultType']}")
    if not data["result"]:
        return None
    return math.fsum(float(sample["value"][1]) for sample in data["result"])


async def run_analysis(
    analysis: Analysis,
    queries: Sequence[AnalysisQuery],
    *,
    session: aiohttp.ClientSession,
    now: datetime,
    previous_failures: int,
    previous_inconclusive: int = 0,
    timeout: float = 10,
    credentials: PrometheusCredentials | PrometheusError | None = None,
) -> AnalysisStatus:
    """Run every query (canary and stable) concurrently, then `assess` the numbers.

    A query Prometheus fails is reported in its result and makes the analysis
    Inconclusive; an unreachable Prometheus never rolls a canary back by itself. So are
    credentials that could not be read (`credentials_or_error`): no query is sent.
    """

    async def run(promql: str | None) -> float | PrometheusError | None:
        if promql is None:
            return None
        if isinstance(credentials, PrometheusError):
            return credentials
        try:
            return await query_prometheus(
                analysis.prometheus_url,
                promql,
                session=session,
                timeout=timeout,
                credentials=credentials,
            )
        except PrometheusError as error:
            return error

    answers = await asyncio.gather(
        *(run(q.canary) for q in queries), *(run(q.stable) for q in queries)
    )
    canary = dict(zip((q.name for q in queries), answers[: len(queries)], strict=True))
    stable = dict(zip((q.name for q in queries), answers[len(queries) :], strict=True))
    return assess(
        analysis,
        {name: v for name, v in canary.items() if not isinstance(v, PrometheusError)},
        {name: v for name, v in stable.items() if not isinstance(v, PrometheusError)},
        now,
        previous_failures,
        previous_inconclusive=previous_inconclusive,
        unsupported={q.name: q.unsupported for q in queries if q.unsupported},
        errors={name: str(v) for name, v in canary.items() if isinstance(v, PrometheusError)},
    )
