"""A real Prometheus scraping simulated engines on loopback, for analysis tests.

Each simulator stands for one revision's pods; its scrape target carries the labels the
operator's PodMonitor attaches (`namespace`, `llmdeployment`, `revision`, `engine`), so the
analysis queries run unchanged. Needs the `prometheus` binary (Debian: `apt-get install
prometheus`), which `.ci/run` installs; without it the tests fail, they never skip.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubellm.engines import get_engine


def stop_process(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def prometheus_binary() -> str:
    """Debian's prometheus; a missing binary fails the test (never a skip): .ci/run installs it."""
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail("the prometheus binary is not installed: `apt-get install -y prometheus`")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class ScrapeTarget:
    address: str  # host:port
    metrics_path: str
    labels: Mapping[str, str]


def write_config(
    path: Path, targets: list[ScrapeTarget], interval: str = "1s", file_sd: Path | None = None
) -> None:
    """One job per target: engines differ in metrics path (TensorRT-LLM); one more job for
    the targets a fleet writes to `file_sd` (each target sets its own `__metrics_path__`)."""
    jobs: list[dict[str, Any]] = [
        {
            "job_name": f"engine-{i}",
            "metrics_path": target.metrics_path,
            "static_configs": [{"targets": [target.address], "labels": dict(target.labels)}],
        }
        for i, target in enumerate(targets)
    ]
    if file_sd is not None:
        discovery = {"files": [str(file_sd)], "refresh_interval": interval}
        jobs.append({"job_name": "fleet", "file_sd_configs": [discovery]})
    config = {"global": {"scrape_interval": interval, "evaluation_interval": interval}}
    path.write_text(yaml.safe_dump({**config, "scrape_configs": jobs}))


class Simulator:
    """`python -m kubellm.simulator` as a process on a free loopback port."""

    def __init__(self, engine: str = "vllm", **options: float | str) -> None:
        self.engine = engine
        args = [sys.executable, "-m", "kubellm.simulator", "--engine", engine, "--port", "0"]
        for name, value in options.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.url = ""

    def wait_listening(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.url = line.split()[-1]
        return self.url

    def target(self, **labels: str) -> ScrapeTarget:
        address = urllib.parse.urlsplit(self.url).netloc
        labels = {"engine": self.engine, **labels}
        return ScrapeTarget(address, get_engine(self.engine).metrics_path, labels)

    def stop(self) -> None:
        stop_process(self.process)


@dataclass(frozen=True)
class WebAuth:
    """Prometheus' own web config: https with a certificate for 127.0.0.1, one basic-auth user.

    `--web.config.file` (https://prometheus.io/docs/prometheus/latest/configuration/https/)
    takes bcrypt password hashes; the CA and certificate are made with the openssl CLI.
    """

    username: str
    password: str
    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def create(cls, workdir: Path, username: str, password: str) -> WebAuth:
        ca_key, ca, key, csr, cert = (
            workdir / name for name in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt")
        )
        openssl = ["openssl", "req", "-nodes", "-newkey", "rsa:2048", "-sha256"]
        subprocess.run(
            [*openssl, "-x509", "-days", "1", "-subj", "/CN=kubellm test CA",
             "-keyout", str(ca_key), "-out", str(ca)],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [*openssl, "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr)],
            check=True, capture_output=True,
        )  # fmt: skip
        extensions = workdir / "san.cnf"
        extensions.write_text("subjectAltName=IP:127.0.0.1\n")
        subprocess.run(
            ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "1", "-sha256", "-extfile", str(extensions),
             "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        return cls(username, password, ca, cert, key)

    def write(self, path: Path) -> None:
        import bcrypt  # test dependency, only where a web config is written

        hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
        path.write_text(
            yaml.safe_dump(
                {
                    "tls_server_config": {
                        "cert_file": str(self.cert_file),
                        "key_file": str(self.key_file),
                    },
                    "basic_auth_users": {self.username: hashed},
                }
            )
        )

    def headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


class Prometheus:
    """A throwaway Prometheus on loopback with its data in `workdir`; behind https and basic
    auth when `web` is given."""

    def __init__(
        self,
        workdir: Path,
        targets: list[ScrapeTarget],
        binary: str,
        web: WebAuth | None = None,
        *,
        file_sd: Path | None = None,
        interval: str = "1s",
    ) -> None:
        self.workdir = workdir
        self.web = web
        self.port = free_port()
        self.url = f"{'https' if web else 'http'}://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        write_config(config, targets, interval, file_sd)
        arguments = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        if web:
            web.write(workdir / "web.yml")
            arguments.append(f"--web.config.file={workdir / 'web.yml'}")
        self.log = (workdir / "prometheus.log").open("w")
        self.process = subprocess.Popen(arguments, stdout=self.log, stderr=subprocess.STDOUT)

    def open(self, url: str) -> Any:
        """urllib.request.urlopen with this Prometheus' credentials and CA."""
        request = urllib.request.Request(url, headers=self.web.headers() if self.web else {})
        context = self.web.ssl_context() if self.web else None
        return urllib.request.urlopen(request, timeout=5, context=context)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.logs()}")
            try:
                with self.open(f"{self.url}/-/ready") as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout}s: {self.logs()}")

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with self.open(url) as response:
            body = json.load(response)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(self, promql: str, done: Callable[[float], bool], timeout: float = 30) -> float:
        """Poll `promql` (summed) until `done(value)`; returns the value."""
        deadline = time.monotonic() + timeout
        value = float("nan")
        while time.monotonic() < deadline:
            value = sum(float(s["value"][1]) for s in self.query(promql))
            if done(value):
                return value
            time.sleep(0.3)
        raise TimeoutError(f"{promql} still {value} after {timeout}s")

    def logs(self) -> str:
        self.log.flush()
        return (self.workdir / "prometheus.log").read_text()[-2000:]

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()
