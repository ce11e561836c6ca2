"""The offline CLI as users run it: exit codes, output shapes, error messages by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import EXAMPLES, llmd
from kubellm.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_render_yaml_stream(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "render", "-f", str(EXAMPLES[0]))
    assert code == 0
    kinds = [doc["kind"] for doc in yaml.safe_load_all(out)]
    # The revision's snapshot first, then its workload, then what routes traffic to it.
    assert kinds[0] == "ControllerRevision"
    assert kinds[1] in {"Deployment", "LeaderWorkerSet"} and "Service" in kinds


def test_render_json_is_a_v1_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "render", "-f", str(EXAMPLES[0]), "-o", "json")
    listing = json.loads(out)
    assert code == 0
    assert listing["apiVersion"] == "v1" and listing["kind"] == "List"
    assert all("kind" in item for item in listing["items"])


def test_render_reads_a_stream_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stream = tmp_path / "two.yaml"
    second = llmd()
    second["metadata"]["name"] = "other"
    stream.write_text(yaml.safe_dump_all([llmd(), second]))
    monkeypatch.setattr("sys.stdin", stream.open())
    code, out, _ = run(capsys, "render", "-f", "-", "-o", "json")
    names = {i["metadata"]["name"] for i in json.loads(out)["items"] if i["kind"] == "Service"}
    assert code == 0 and names == {"demo", "other"}


def test_render_invalid_input_prints_every_problem_by_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = llmd(
        model={"name": "meta-llama/Llama-3.1-70B-Instruct"},
        engine={"type": "tgi", "maxContextLength": 8192},
        resources={"gpu": {"type": "H100-80GB"}, "tensorParallel": 3, "pipelineParallel": 2},
    )
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    code, out, err = run(capsys, "render", "-f", str(path))
    assert code == 1 and out == ""
    assert "spec.resources.tensorParallel" in err
    assert all(line.startswith("error: demo: spec.") for line in err.splitlines())


def test_crd_prints_the_llmdeployment_crd(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "crd")
    (crd,) = list(yaml.safe_load_all(out))
    assert code == 0 and crd["metadata"]["name"] == "llmdeployments.kubellm.io"


def test_size_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "size", "--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpu", "h100-80gb",
        "--context", "32768", "-o", "json",
    )  # fmt: skip
    plan = json.loads(out)
    assert code == 0
    for key in ("tensorParallel", "pipelineParallel", "gpusPerReplica", "fits", "reason"):
        assert key in plan
    assert plan["tensorParallel"] * plan["pipelineParallel"] == plan["gpusPerReplica"]
    assert any(key.endswith("GiB") for key in plan)


def test_size_refuses_an_explicit_number_that_cannot_fit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys, "size", "--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpu", "L4",
        "--tensor-parallel", "1", "--pipeline-parallel", "1", "-o", "json",
    )  # fmt: skip
    plan = json.loads(out)
    assert code == 1 and plan["fits"] is False
    assert plan["tensorParallel"] == 1 and plan["pipelineParallel"] == 1


def test_size_shows_and_takes_the_headroom_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "size", "--model", "Qwen/Qwen3-32B", "--gpu", "H100", "--engine", "sglang",
    )  # fmt: skip
    assert code == 0 and "TP=2" in out
    assert "full-context seqs" in out and "meets the headroom rule of 2" in out
    assert "memory flag 0.827" in out  # SGLang's own --mem-fraction-static on an H100
    code, out, _ = run(
        capsys, "size", "--model", "Qwen/Qwen3-32B", "--gpu", "H100", "--context", "16384",
        "--min-concurrent-sequences", "1", "-o", "json",
    )  # fmt: skip
    plan = json.loads(out)
    assert code == 0 and plan["gpusPerReplica"] == 1
    assert plan["minConcurrentSequences"] == 1 and plan["meetsHeadroom"] is True


def test_size_unknown_model_says_what_to_add(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "size", "--model", "acme/unknown", "--gpu-memory-gib", "48")
    assert code == 2 and "spec.model.architecture" in err and "attentionHeads" in err


def test_offline_demo_sizes_every_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--offline")
    assert code == 0
    assert out.count("== ") == len(EXAMPLES)
    assert "refused" not in out
