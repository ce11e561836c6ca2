"""Property tests: the planner never raises on valid input and its answers are consistent."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kubellm.engines import ENGINES
from kubellm.sizing import ModelArchitecture, SizingPlan, SizingRequest, plan
from kubellm.sizing.memory import BYTES_PER_PARAM, KV_CACHE_DTYPE_BYTES


@st.composite
def models(draw: st.DrawFn) -> ModelArchitecture:
    heads = draw(st.sampled_from([1, 2, 3, 8, 12, 14, 16, 24, 32, 40, 48, 64, 128, 232]))
    kv = draw(st.sampled_from([d for d in range(1, heads + 1) if heads % d == 0]))
    head_dim = draw(st.sampled_from([32, 64, 96, 128, 256]))
    mla = draw(st.one_of(st.none(), st.just(576)))
    window = draw(st.sampled_from([0, 0, 128, 4096]))
    layers = draw(st.integers(1, 160))
    return ModelArchitecture(
        name="prop/model",
        parameters=draw(st.integers(10**6, 10**12)),
        layers=layers,
        hidden_size=heads * head_dim,
        attention_heads=heads,
        kv_heads=kv,
        head_dim=head_dim,
        vocab_size=draw(st.integers(1000, 300_000)),
        max_position=draw(st.integers(512, 262_144)),
        experts=draw(st.sampled_from([0, 8, 128])),
        mla_kv_elements=mla,
        native_quantization=draw(st.sampled_from(["none", "none", "fp8", "mxfp4"])),
        weights_gib=draw(st.one_of(st.none(), st.floats(0.1, 2000))),
        sliding_window=window,
        sliding_window_layers=draw(st.integers(0, layers)) if window else 0,
    )


engines = st.sampled_from([engine.traits for engine in ENGINES.values()])


@st.composite
def requests(draw: st.DrawFn) -> SizingRequest:
    model = draw(models())
    return SizingRequest(
        model=model,
        gpu_memory_gib=draw(st.floats(1.0, 400.0)),
        gpus_per_node=draw(st.sampled_from([1, 2, 4, 8, 16])),
        gpu_name=draw(st.sampled_from([None, "H100-80GB", "L4", "A100-80GB", "Custom"])),
        quantization=draw(st.sampled_from(sorted(BYTES_PER_PARAM))),
        dtype_bytes=draw(st.sampled_from([1, 2, 4])),
        kv_cache_dtype=draw(st.sampled_from(sorted(KV_CACHE_DTYPE_BYTES))),
        context_length=draw(st.one_of(st.none(), st.integers(1, 300_000))),
        max_concurrency=draw(st.one_of(st.none(), st.integers(1, 2048))),
        gpu_memory_utilization=draw(st.floats(0.05, 1.0)),
        tensor_parallel=draw(st.one_of(st.none(), st.integers(1, 32))),
        pipeline_parallel=draw(st.one_of(st.none(), st.integers(1, 200))),
        min_concurrent_sequences=draw(st.integers(1, 8)),
        engine=draw(engines),
    )


def _consistent(req: SizingRequest, p: SizingPlan) -> None:
    if req.tensor_parallel is not None:
        assert p.tensor_parallel == req.tensor_parallel
    if req.pipeline_parallel is not None:
        assert p.pipeline_parallel == req.pipeline_parallel
    assert p.reason and "\n" not in p.reason
    if p.fits:
        assert p.field is None
        assert p.per_gpu_used_gib <= p.per_gpu_capacity_gib + 1e-9
        assert p.kv_cache_per_gpu_gib >= p.kv_cache_required_gib
        assert req.model.attention_heads % p.tensor_parallel == 0
        assert p.tensor_parallel <= req.gpus_per_node
        assert p.tensor_parallel * p.pipeline_parallel == p.gpus_per_replica
        assert p.pipeline_parallel <= req.model.layers
        assert p.nodes_per_replica * req.gpus_per_node >= p.gpus_per_replica
        if not req.engine.multi_node:
            assert p.nodes_per_replica == 1
        if not req.engine.supports_pipeline_parallel:
            assert p.pipeline_parallel == 1
        if req.engine.kv_heads_must_divide:
            assert req.model.kv_heads % p.tensor_parallel == 0
        assert p.max_concurrent_sequences >= 1
        if req.tensor_parallel is None and req.pipeline_parallel is None:
            # no automatic plan above the headroom rule
            assert p.meets_headroom
            assert p.max_concurrent_sequences >= req.min_concurrent_sequences
    else:
        assert p.field in {
            "resources.tensorParallel",
            "resources.pipelineParallel",
            "resources.gpu",
            "resources.minConcurrentSequences",
            "engine.maxContextLength",
            "engine.quantization",
            "engine.gpuMemoryUtilization",
        }
    assert set(p.to_dict()) >= {"tensorParallel", "pipelineParallel", "gpusPerReplica", "fits"}


@settings(max_examples=300, deadline=None)
@given(requests())
def test_plan_never_raises_and_is_consistent(req: SizingRequest) -> None:
    _consistent(req, plan(req))


@settings(max_examples=200, deadline=None)
@given(requests(), st.floats(1.0, 4.0))
def test_more_memory_never_needs_more_gpus(req: SizingRequest, factor: float) -> None:
    small = plan(req)
    big = plan(SizingRequest(**{**req.__dict__, "gpu_memory_gib": req.gpu_memory_gib * factor}))
    if small.fits:
        assert big.fits
        assert big.gpus_per_replica <= small.gpus_per_replica
