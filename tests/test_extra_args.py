"""No flag kubellm sets can be overridden through `engine.extraArgs`, on any engine.

Each engine's parser is rebuilt from tests/data/upstream_flags.yaml (options copied by hand
from the pinned release) with the library or rules the engine really uses: argparse with
abbreviations (vLLM, after FlexibleArgumentParser's `_` -> `-` rewrite; SGLang), click
(trtllm-serve, exact names), clap-like exact names with short options (TGI). kubellm's own
command line is parsed, then the same line plus random extra arguments: whenever an extra
argument changes a value kubellm set, `conflicting_flags` must have refused it; when it only
sets options kubellm does not own, it must not be refused.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import llmd
from kubellm.engines import ENGINES, Engine
from kubellm.engines.base import ContainerInputs, conflicting_flags
from kubellm.render.resolve import InvalidSpecError, resolve

FIXTURE: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parent / "data" / "upstream_flags.yaml").read_text()
)
OVERRIDE = "overridden"


class RefusedError(Exception):
    """The stand-in parser rejects the command line (the engine would not start)."""


class _ArgParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # type: ignore[override]
        raise RefusedError(message)


def _flexible(args: list[str]) -> list[str]:
    """vLLM's FlexibleArgumentParser rewrite: `_` -> `-` in option names up to the first `.`."""
    out = []
    for arg in args:
        if arg.startswith("--"):
            key, sep, value = arg.partition("=")
            head, dot, tail = key[2:].partition(".")
            arg = "--" + head.replace("_", "-") + dot + tail + sep + value
        out.append(arg)
    return out


def argparse_parser(spec: dict[str, Any]) -> Callable[[list[str]], dict[str, Any]]:
    parser = _ArgParser(add_help=False, allow_abbrev=True)
    if "positional" in spec:
        parser.add_argument(spec["positional"], nargs="?")
    for option in spec["options"]:
        flags = [f for f in option["flags"] if not f.startswith("--no-")]
        if option["kind"] == "bool":
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction)
        elif option["kind"] == "flag":
            parser.add_argument(*flags, action="store_true")
        else:
            parser.add_argument(*flags)

    def parse(args: list[str]) -> dict[str, Any]:
        if spec["underscores_as_dashes"]:
            args = _flexible(args)
        return vars(parser.parse_args(args))

    return parse


def click_parser(spec: dict[str, Any]) -> Callable[[list[str]], dict[str, Any]]:
    params: list[click.Parameter] = [click.Argument([spec["positional"]], required=False)]
    for option in spec["options"]:
        flags = list(option["flags"])
        params.append(click.Option(flags, is_flag=option["kind"] == "flag"))
    command = click.Command("serve", params=params)

    def parse(args: list[str]) -> dict[str, Any]:
        try:
            with command.make_context("serve", list(args)) as ctx:
                return dict(ctx.params)
        except click.ClickException as error:
            raise RefusedError(str(error)) from None

    return parse


def clap_parser(spec: dict[str, Any]) -> Callable[[list[str]], dict[str, Any]]:
    """clap's derive defaults: exact long names, `--x=v`, `-p v`, `-pv`, `-p=v`; a repeated
    option keeps its last value (more lenient than clap, so the test is stricter)."""
    by_flag = {flag: option for option in spec["options"] for flag in option["flags"]}

    def parse(args: list[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        i = 0
        while i < len(args):
            arg = args[i]
            if arg.startswith("--"):
                name, has_value, value = arg.partition("=")
            elif arg.startswith("-") and len(arg) > 1:
                name, value = arg[:2], arg[2:].removeprefix("=")
                has_value = "=" if value else ""
            else:
                raise RefusedError(f"unexpected argument {arg!r}")
            option = by_flag.get(name)
            if option is None:
                raise RefusedError(f"unexpected argument {name!r}")
            if option["kind"] == "flag":
                values[option["flags"][0]] = True
            elif has_value:
                values[option["flags"][0]] = value
            elif i + 1 < len(args):
                i += 1
                values[option["flags"][0]] = args[i]
            else:
                raise RefusedError(f"{name} needs a value")
            i += 1
        return values

    return parse


PARSERS = {"argparse": argparse_parser, "click": click_parser, "clap": clap_parser}


def base_args(engine: Engine) -> list[str]:
    """kubellm's command line with every optional input set, so every flag it can set shows."""
    online = [s.online for s in engine.quantization.values() if s.online]
    kv = next((k for k in ("fp8", "fp8_e4m3") if k in engine.kv_cache_dtypes), "auto")
    inputs = ContainerInputs(
        model="org/model",
        served_name="served" if engine.serves_custom_name else None,
        revision="rev",
        tensor_parallel=2,
        pipeline_parallel=1,
        nodes=1,
        dtype="bfloat16",
        quantization_flag=online[0] if online else None,
        kv_cache_dtype=kv,
        max_context_length=8192,
        max_concurrency=64,
        memory_fraction=0.9,
        trust_remote_code=True,
        cache_dir="/cache",
    )
    return list(engine.container(inputs).args)


def owned_dests(parse: Callable[[list[str]], dict[str, Any]], base: list[str]) -> set[str]:
    """What kubellm's line sets: every value that differs from the parser's default."""
    defaults, rendered = parse([]), parse(base)
    return {k for k, v in rendered.items() if v != defaults.get(k)}


@st.composite
def extra_arguments(draw: st.DrawFn, spec: dict[str, Any]) -> list[str]:
    option = draw(st.sampled_from(spec["options"]))
    flag = draw(st.sampled_from(option["flags"]))
    if flag.startswith("--"):
        if spec["underscores_as_dashes"] and draw(st.booleans()):
            flag = "--" + flag[2:].replace("-", "_")
        if spec["parser"] == "argparse" and draw(st.booleans()):
            flag = flag[: draw(st.integers(3, len(flag)))]
    elif spec["parser"] == "argparse" and len(flag) > 2 and draw(st.booleans()):
        flag = flag[: draw(st.integers(2, len(flag)))]
    if option["kind"] != "value":
        return [flag]
    form = draw(st.sampled_from(["separate", "equals", "attached"]))
    if form == "equals":
        return [f"{flag}={OVERRIDE}"]
    if form == "attached" and not flag.startswith("--") and len(flag) == 2:
        return [flag + OVERRIDE]
    return [flag, OVERRIDE]


ENGINE_NAMES = sorted(FIXTURE)


def test_the_fixture_covers_every_engine_at_its_pinned_release() -> None:
    assert set(FIXTURE) == set(ENGINES)
    for name, spec in FIXTURE.items():
        assert spec["version"] == ENGINES[name].version
        assert spec["parser"] == ENGINES[name].flag_rules.parser
        assert spec["underscores_as_dashes"] == ENGINES[name].flag_rules.underscores_as_dashes


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_kubellm_s_own_line_parses_and_owns_what_it_sets(name: str) -> None:
    spec, engine = FIXTURE[name], ENGINES[name]
    parse = PARSERS[spec["parser"]](spec)
    base = base_args(engine)
    owned = owned_dests(parse, base)
    assert len(owned) >= 8, owned
    # Every option kubellm's line sets is one kubellm refuses in extraArgs, in any spelling.
    for option in spec["options"]:
        dest = _dest(parse, base, option)
        if dest in owned:
            for flag in option["flags"]:
                assert conflicting_flags(engine, (flag,)), (name, flag)


def _dest(
    parse: Callable[[list[str]], dict[str, Any]], base: list[str], option: dict[str, Any]
) -> str | None:
    flag = option["flags"][0]
    extra = [flag] if option["kind"] != "value" else [flag, OVERRIDE]
    try:
        before, after = parse(base), parse([*base, *extra])
    except RefusedError:
        return None
    changed = [k for k in after if after[k] != before.get(k)]
    owned_before = [k for k in before if k == option["flags"][0].lstrip("-").replace("-", "_")]
    return (changed or owned_before or [None])[0]


def _check(name: str, extra: list[str]) -> None:
    spec, engine = FIXTURE[name], ENGINES[name]
    parse = PARSERS[spec["parser"]](spec)
    base = base_args(engine)
    owned = owned_dests(parse, base)
    refused = bool(conflicting_flags(engine, tuple(extra)))
    try:
        before, after = parse(base), parse([*base, *extra])
    except RefusedError:
        return  # the engine would refuse to start: nothing is silently overridden
    changed = {k for k in after if after[k] != before.get(k)}
    if changed & owned:
        assert refused, f"{extra} overrides {changed & owned} and kubellm let it through"
    elif changed and not refused:
        return
    elif changed:
        # RefusedError although it sets nothing kubellm rendered: only options kubellm owns anyway.
        flag = conflicting_flags(engine, tuple(extra))[0][2]
        assert flag in engine.flag_rules.owned, (extra, flag)


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_no_owned_flag_can_be_overridden(name: str) -> None:
    @settings(max_examples=400, deadline=None, derandomize=True)
    @given(extra_arguments(FIXTURE[name]))
    def check(extra: list[str]) -> None:
        _check(name, extra)

    check()


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("vllm", ["--tensor_parallel_size=2"]),
        ("vllm", ["--max_model_len", "4096"]),
        ("vllm", ["--tensor-parallel", "2"]),  # argparse abbreviation
        ("vllm", ["-qfp8"]),  # short option with attached value
        ("vllm", ["--no-trust-remote-code"]),
        ("vllm", ["--config", "/tmp/serve.yaml"]),  # a file that may set any of them
        ("vllm", ["--model=other/model"]),  # moved to the positional model by vLLM
        ("sglang", ["--tensor-parallel-size", "2"]),  # alias of --tp-size
        ("sglang", ["--context-len", "4096"]),  # abbreviation of --context-length
        ("sglang", ["--tp", "2"]),
        ("trtllm", ["--config", "/tmp/x.yaml"]),  # alias of --extra_llm_api_options
        ("trtllm", ["--tensor_parallel_size=2"]),
        ("tgi", ["-p8000"]),
        ("tgi", ["--max-batch-size=8"]),
    ],
)
def test_the_spellings_the_issue_found_are_refused(name: str, extra: list[str]) -> None:
    assert conflicting_flags(ENGINES[name], tuple(extra))
    _check(name, extra)


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("vllm", ["--max_num_batched_tokens", "4096"]),
        ("vllm", ["--enable-lora"]),
        ("vllm", ["-pcp", "2"]),
        ("sglang", ["--chunked-prefill-size", "4096"]),
        ("sglang", ["--pp-max-micro-batch-size", "4"]),
        ("trtllm", ["--max_num_tokens", "4096"]),
        ("tgi", ["--max-concurrent-requests", "512"]),
        ("tgi", ["--lora-adapters", "a,b"]),
    ],
)
def test_options_kubellm_does_not_own_pass(name: str, extra: list[str]) -> None:
    assert not conflicting_flags(ENGINES[name], tuple(extra))
    _check(name, extra)


def test_problems_name_the_extra_argument_and_the_env_var() -> None:
    obj = llmd(
        engine={
            "type": "tgi",
            "maxContextLength": 8192,
            "extraArgs": ["--max-concurrent-requests", "512", "--num-shard=2"],
            "env": [{"name": "QUANTIZE", "value": "eetq"}, {"name": "NCCL_DEBUG", "value": "1"}],
        },
        model={"name": "mistralai/Mistral-7B-Instruct-v0.3"},
    )
    with pytest.raises(InvalidSpecError) as caught:
        resolve(obj)
    assert [p.field for p in caught.value.problems] == [
        "spec.engine.extraArgs[2]",
        "spec.engine.env[0].name",
    ]
    assert "--num-shard" in caught.value.problems[0].message
