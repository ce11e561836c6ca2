"""Canary analysis against a real Prometheus that requires authentication.

Prometheus itself serves https with a certificate from a private CA and basic auth
(`--web.config.file`); a bearer-token proxy in front of it stands for the auth proxies managed
Prometheus services put before their API (Prometheus has no bearer-token check of its own).
The credentials come from a Secret, read by `load_credentials` as the operator does.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import pytest

from conftest import e2e_module
from kubellm.api.models import Analysis, AnalysisStatus, PrometheusAuth
from kubellm.engines import get_engine
from kubellm.k8s.client import ApiError
from kubellm.k8s.prometheus import (
    PrometheusCredentials,
    PrometheusError,
    credentials_or_error,
    load_credentials,
    query_prometheus,
    run_analysis,
)
from kubellm.rollout.analysis import queries

harness = e2e_module("prometheus")
pytestmark = pytest.mark.timeout(120)
TOKEN = "s3cr3t-token"
USER, PASSWORD = "kubellm", "correct horse"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    binary = harness.prometheus_binary()
    assert binary, "the prometheus binary is missing (Debian: apt-get install prometheus)"
    workdir = tmp_path_factory.mktemp("prometheus-auth")
    web = harness.WebAuth.create(workdir, USER, PASSWORD)
    server = harness.Prometheus(workdir, [], binary, web=web)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bearer_proxy(prometheus: Any) -> Iterator[str]:
    """http://127.0.0.1:PORT: forwards GETs to Prometheus when the bearer token is right."""

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.send_error(401, "bad token")
                return
            with prometheus.open(prometheus.url + self.path) as upstream:
                body = upstream.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class Secrets:
    """Secrets by (namespace, name), answering like the API server (403 for the rest)."""

    def __init__(self, secrets: dict[tuple[str, str], dict[str, str]]) -> None:
        self.secrets = secrets

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        assert kind == "Secret"
        data = self.secrets.get((namespace or "", name))
        if data is None:
            raise ApiError(403, f'secrets "{name}" is forbidden')
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        return {"apiVersion": "v1", "kind": "Secret", "data": encoded}


def basic_secret(prometheus: Any, password: str = PASSWORD) -> Secrets:
    ca = prometheus.web.ca_file.read_text()
    return Secrets(
        {("ml", "prom"): {"username": USER, "password": password, "ca.crt": ca, "token": TOKEN}}
    )


BASIC = PrometheusAuth(type="basic", secret_name="prom", ca_key="ca.crt")
BEARER = PrometheusAuth(type="bearer", secret_name="prom")


def query(url: str, credentials: PrometheusCredentials | None) -> float | None:
    async def run() -> float | None:
        async with aiohttp.ClientSession() as session:
            return await query_prometheus(
                url, "vector(42)", session=session, credentials=credentials
            )

    return asyncio.run(run())


def load(secrets: Secrets, auth: PrometheusAuth) -> PrometheusCredentials:
    return asyncio.run(load_credentials(secrets, "ml", auth))


def test_prometheus_refuses_requests_without_credentials(prometheus: Any) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        context = prometheus.web.ssl_context()
        urllib.request.urlopen(f"{prometheus.url}/api/v1/query?query=up", context=context)
    assert refused.value.code == 401


def test_basic_auth_over_https_with_the_secrets_ca(prometheus: Any) -> None:
    credentials = load(basic_secret(prometheus), BASIC)
    assert query(prometheus.url, credentials) == 42


@pytest.mark.parametrize(
    ("secrets", "auth", "error"),
    [
        ("wrong-password", BASIC, "HTTP 401"),
        ("right", PrometheusAuth(type="basic", secret_name="prom"), "CERTIFICATE_VERIFY_FAILED"),
    ],
)
def test_wrong_credentials_or_ca_are_errors(
    prometheus: Any, secrets: str, auth: PrometheusAuth, error: str
) -> None:
    password = "nope" if secrets == "wrong-password" else PASSWORD
    credentials = load(basic_secret(prometheus, password), auth)
    with pytest.raises(PrometheusError, match=error):
        query(prometheus.url, credentials)
    with pytest.raises(PrometheusError, match="HTTP 401"):
        query(prometheus.url, PrometheusCredentials(ssl_context=prometheus.web.ssl_context()))


def test_bearer_token_through_an_auth_proxy(prometheus: Any, bearer_proxy: str) -> None:
    credentials = load(basic_secret(prometheus), BEARER)
    assert credentials.authorization == f"Bearer {TOKEN}"
    assert query(bearer_proxy, credentials) == 42
    with pytest.raises(PrometheusError, match="HTTP 401"):
        query(bearer_proxy, PrometheusCredentials(authorization="Bearer stale"))


def test_secret_problems_name_the_secret_and_key(prometheus: Any) -> None:
    with pytest.raises(PrometheusError, match=r"prometheusAuth\.secretNames"):
        load(Secrets({}), BEARER)  # forbidden: the operator may not read it
    missing = PrometheusAuth(type="bearer", secret_name="prom", token_key="bearerToken")
    with pytest.raises(PrometheusError, match="Secret ml/prom has no key 'bearerToken'"):
        load(basic_secret(prometheus), missing)
    not_a_ca = PrometheusAuth(type="basic", secret_name="prom", ca_key="username")
    with pytest.raises(PrometheusError, match="is not a PEM CA"):
        load(basic_secret(prometheus), not_a_ca)


def analyze(
    prometheus: Any, credentials: PrometheusCredentials | PrometheusError | None
) -> AnalysisStatus:
    spec = Analysis.model_validate(
        {"prometheusUrl": prometheus.url, "prometheusAuth": BASIC, "maxErrorRate": 0.1}
    )
    built = queries(
        spec, get_engine("vllm"), namespace="ml", llmdeployment="chat", canary="c", stable="s"
    )

    async def run() -> AnalysisStatus:
        async with aiohttp.ClientSession() as session:
            return await run_analysis(
                spec,
                built,
                session=session,
                now=datetime.now(UTC),
                previous_failures=0,
                credentials=credentials,
            )

    return asyncio.run(run())


def test_analysis_with_credentials_reaches_prometheus(prometheus: Any) -> None:
    """No engine is scraped here: too few requests, but every query was answered."""
    credentials = asyncio.run(credentials_or_error(basic_secret(prometheus), "ml", BASIC))
    assert isinstance(credentials, PrometheusCredentials)
    status = analyze(prometheus, credentials)
    assert status.verdict == "Inconclusive"
    assert all("HTTP" not in r.message and "https" not in r.message for r in status.results)


def test_unreadable_credentials_make_the_analysis_inconclusive_not_failed(prometheus: Any) -> None:
    error = asyncio.run(credentials_or_error(Secrets({}), "ml", BASIC))
    assert isinstance(error, PrometheusError)
    status = analyze(prometheus, error)
    assert status.verdict == "Inconclusive" and status.failures == 0
    assert any("forbidden" in r.message for r in status.results)
    assert asyncio.run(credentials_or_error(Secrets({}), "ml", None)) is None
