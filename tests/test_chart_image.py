"""The operator image definition (Dockerfile). No Docker engine here: parse and check it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def args() -> dict[str, str]:
    found = {}
    for keyword, rest in instructions():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            found[name] = value
    return found


def resolve(image: str) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args()[m.group(1)], image)


def test_multi_stage_with_pinned_base() -> None:
    stages = [rest.split() for keyword, rest in instructions() if keyword == "FROM"]
    assert len(stages) >= 2, "builder and runtime stages"
    assert [s[-1] for s in stages] == ["builder", "runtime"]
    for stage in stages:
        image = resolve(stage[0])
        m = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim-(\w+)@sha256:([0-9a-f]{64})", image)
        assert m, f"base image not pinned to an exact tag and digest: {image}"
    runtime = " ".join(rest for k, rest in instructions() if k == "COPY")
    assert "--from=builder" in runtime


def test_builder_installs_the_project() -> None:
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    assert re.search(r"pip install [^&]*\.(\s|$)", runs), "pip install . from the repo"


def test_runs_as_non_root_65532() -> None:
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid == "65532", f"last USER is {users[-1]}"


def test_entrypoint_and_cmd() -> None:
    found = {keyword: rest for keyword, rest in instructions() if keyword in {"ENTRYPOINT", "CMD"}}
    assert found["ENTRYPOINT"] == '["kubellm"]'
    assert found["CMD"] == '["run"]'


def test_dockerignore_keeps_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines and "*" in lines, "deny everything by default"
    sources = set()
    for keyword, rest in instructions():
        if keyword == "COPY" and "--from" not in rest:
            sources.update(p.rstrip("/") for p in shlex.split(rest)[:-1])
    assert "operator" in sources and "pyproject.toml" in sources
    for source in sources:
        assert f"!{source}" in lines or f"!{source}/" in lines, f"{source} excluded from context"
