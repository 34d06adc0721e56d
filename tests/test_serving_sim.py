"""The scheduler on the roofline clock: step times against hand computation, shared scheduling.

The hand computations write LLaMA-2 7B's figures out (parameters, cache bytes per
token) and the H100 SXM's datasheet (989.4 TFLOP/s dense BF16, 3.35 TB/s), and
take each step's time as the larger of FLOPs / peak and bytes / bandwidth.
"""

from __future__ import annotations

import pytest
import torch

from attnkit import serving
from attnkit.models.transformer import TinyTransformer
from attnkit.serving.engine import serve
from attnkit.serving.scheduler import Request, SchedulerConfig, run, synthetic_workload
from attnkit.serving.simulator import SIMULATED_MACHINE, CostModel, simulate, simulated_token
from attnkit.serving.sizing import MODELS, batch_cost, decode_cost, prefill_cost

# LLaMA-2 7B parameters: 32 x (4 x 4096**2 + 3 x 4096 x 11008 + 2 x 4096) + 2 x 32000 x 4096 + 4096
N = 6_738_415_616
KV = 2 * 32 * 32 * 128 * 2  # cache bytes per token: K and V, 32 layers, 32 heads of 128, 2 bytes
ATT = 4 * 32 * 32 * 128  # attention FLOPs per (query, key) pair: 2 products x 2 FLOP x layers x heads x d_h
FLOPS, BW = 989.4e12, 3.35e12


def _time(flops: float, bytes_: float) -> float:
    return max(flops / FLOPS, bytes_ / BW)


def test_figures_written_out_are_the_library_s() -> None:
    m = MODELS["LLaMA-2 7B"]
    assert m.params == N and serving.kv_bytes_per_token(m) == KV
    assert SIMULATED_MACHINE == "simulated H100 SXM (cost model)"


def test_one_request_by_hand() -> None:
    out = simulate([Request(0, tuple(range(1000)), max_new_tokens=3)],
                   SchedulerConfig(token_budget=1024, num_blocks=100))
    t1 = _time(2 * N * 1000 + ATT * 1000 * 1001 / 2, 2 * N + 1000 * KV)  # prefill: compute-bound
    t2 = _time(2 * N + ATT * 1001, 2 * N + 1001 * KV)  # decoding: reads 1,001 tokens' K/V
    t3 = _time(2 * N + ATT * 1002, 2 * N + 1002 * KV)
    assert t1 == pytest.approx((2 * N * 1000 + ATT * 500_500) / FLOPS, rel=1e-12)
    assert t2 == pytest.approx((2 * N + 1001 * KV) / BW, rel=1e-12)
    r = out.requests[0]
    assert r.token_times == pytest.approx([t1, t1 + t2, t1 + t2 + t3], rel=1e-12)
    assert r.ttft == pytest.approx(t1, rel=1e-12)
    assert r.itl == pytest.approx([t2, t3], rel=1e-12)
    s = out.summary()
    assert s["output_tokens_per_s"] == pytest.approx(3 / (t1 + t2 + t3), rel=1e-12)
    assert [t["step_s"] for t in out.trace] == pytest.approx([t1, t2, t3], rel=1e-12)


def test_a_mixed_step_by_hand() -> None:
    """B arrives during A's prefill; the next step decodes A and prefills B together."""
    reqs = [Request(0, tuple(range(1000)), 2, arrival=0.0), Request(1, tuple(range(16)), 1, arrival=1e-3)]
    out = simulate(reqs, SchedulerConfig(token_budget=1024, num_blocks=100, prefix_caching=False))
    t1 = _time(2 * N * 1000 + ATT * 1000 * 1001 / 2, 2 * N + 1000 * KV)
    # A: 1 query over 1,001 keys; B: 16 queries over 1..16 keys. Weights read once.
    t2 = _time(2 * N * 17 + ATT * (1001 + 16 * 17 / 2), 2 * N + (1001 + 16) * KV)
    a, b = out.requests
    assert a.token_times == pytest.approx([t1, t1 + t2], rel=1e-12)
    assert b.ttft == pytest.approx(t1 + t2 - 1e-3, rel=1e-12)
    assert [t["tokens"] for t in out.trace] == [1000, 17]


def test_static_batching_by_hand() -> None:
    reqs = [Request(i, tuple(range(100 * i, 100 * i + 64)), 2) for i in range(2)]
    out = simulate(reqs, SchedulerConfig(policy="static", token_budget=64, num_blocks=64,
                                         chunked_prefill=False, prefix_caching=False))
    t1 = _time(2 * N * 128 + ATT * 2 * (64 * 65 / 2), 2 * N + 128 * KV)
    t2 = _time(2 * N * 2 + ATT * 2 * 65, 2 * N + 2 * 65 * KV)
    assert [r.token_times for r in out.requests] == [pytest.approx([t1, t1 + t2], rel=1e-12)] * 2


def test_batch_cost_is_prefill_and_decode_cost_at_the_ends() -> None:
    for m in MODELS.values():  # Mistral's sliding window too
        assert batch_cost(m, [(0, 5000)]) == prefill_cost(m, 5000)
        assert batch_cost(m, [(6000, 1)] * 3) == decode_cost(m, 6000, batch=3)
    with pytest.raises(ValueError, match="at least one"):
        batch_cost(MODELS["LLaMA-2 7B"], [])
    with pytest.raises(ValueError, match="n_new"):
        batch_cost(MODELS["LLaMA-2 7B"], [(0, 0)])


def test_chunked_prefill_keeps_decoding_within_the_case_study_budget() -> None:
    """Chapter 11's case study: an 8,192-token prefill (about 129 ms) against a 50 ms token budget."""
    reqs = [Request(0, tuple(range(64)), 40), Request(1, tuple(range(1, 8193)), 1, arrival=0.02)]
    cost = CostModel()
    whole = simulate(reqs, SchedulerConfig(token_budget=8192, num_blocks=cost.num_blocks(16),
                                           chunked_prefill=False), cost)
    chunked = simulate(reqs, SchedulerConfig(token_budget=512, num_blocks=cost.num_blocks(16)), cost)
    assert max(whole.requests[0].itl) > 0.129
    assert max(chunked.requests[0].itl) < 0.050
    assert cost.time_of([(0, 8192)]) == pytest.approx(0.1294, abs=5e-4)


def test_the_simulator_runs_the_engine_s_scheduler() -> None:
    """Same workload, same config: the real engine and the simulator schedule the same steps."""
    torch.manual_seed(0)
    model = TinyTransformer(vocab_size=50, max_len=64, d_model=16, num_heads=2)
    reqs = synthetic_workload(4, rate=float("inf"), vocab_size=50, system_prompt=8,
                              prompt_tokens=(4, 12), output_tokens=(2, 5))
    for cfg in (SchedulerConfig(token_budget=16, block_size=4, num_blocks=8, prefix_caching=False),
                SchedulerConfig(policy="static", token_budget=16, block_size=4, num_blocks=40,
                                max_seqs=3, prefix_caching=False)):
        real = serve(model, reqs, cfg, step_time=1.0)
        sim = simulate(reqs, cfg)
        keys = ("tokens", "prefill_tokens", "decode_tokens", "running", "waiting", "blocks_used")
        assert [[t[k] for k in keys] for t in real.trace] == [[t[k] for k in keys] for t in sim.trace]
        assert [r.preemptions for r in real.requests] == [r.preemptions for r in sim.requests]
    cm = CostModel()
    assert simulate(reqs, cfg, cm).trace == run(reqs, cfg, cm.execute).trace  # deterministic


def test_cost_model_pool_and_errors() -> None:
    cm = CostModel()
    assert cm.num_blocks(16) == int((80 * 2**30 * 0.9 - 2 * N) // (16 * KV))
    assert CostModel(kv_bits=8).num_blocks(16) > cm.num_blocks(16)
    with pytest.raises(TypeError, match="model must be a ModelShape"):
        CostModel(model="LLaMA-2 7B")
    with pytest.raises(ValueError, match="kv_bits"):
        CostModel(kv_bits=3)
    with pytest.raises(ValueError, match="no room"):
        CostModel(model=MODELS["LLaMA-2 70B"])
    with pytest.raises(TypeError, match="cost must be a CostModel"):
        simulate([Request(0, (1,), 1)], SchedulerConfig(), cost="H100")
    assert simulated_token(3, 7, 100) == simulated_token(3, 7, 100) < 100


def test_bad_policies_and_budgets() -> None:
    with pytest.raises(ValueError, match="policy must be one of"):
        SchedulerConfig(policy="fifo")
    with pytest.raises(ValueError, match="at least one block"):
        SchedulerConfig(token_budget=8, block_size=16)
