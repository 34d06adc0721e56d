"""Continuous batching on the chapter 10 model: exact outputs, and the scheduler's policies.

The exactness test draws random request mixes (shared prefixes, arrivals, prompt
and output lengths) and random policies and pools (static or continuous batching,
chunked prefill or not, prefix caching or not, pools small enough to force
preemptions) and checks that every request's greedy output equals generating it
alone, with no cache and no batch. The model runs in float64, so that no argmax is
decided by rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnkit import serving
from attnkit.models.transformer import TinyTransformer
from attnkit.serving.engine import PagedEngine, generate_alone, serve
from attnkit.serving.paged import BlockManager
from attnkit.serving.scheduler import (
    Request,
    Scheduler,
    SchedulerConfig,
    run,
    synthetic_workload,
)

VOCAB, MAX_LEN = 7, 40


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one thread is fastest, and several oversubscribe a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> TinyTransformer:
    torch.manual_seed(0)
    return TinyTransformer(vocab_size=VOCAB, max_len=MAX_LEN, d_model=16, num_heads=2,
                           num_layers=2).double().eval()


_SOLO: dict[tuple[tuple[int, ...], int], list[int]] = {}


def solo(model: TinyTransformer, r: Request) -> list[int]:
    key = (r.prompt, r.max_new_tokens)
    if key not in _SOLO:
        _SOLO[key] = generate_alone(model, r.prompt, r.max_new_tokens)
    return _SOLO[key]


def fake_execute(batch):
    """A model stand-in for scheduler tests: token 1 for everyone, one second per step."""
    return {c.state.request.rid: 1 for c in batch if c.samples}, 1.0


# The system prompts a mix draws its prefixes from (the prefix cache finds them).
SYSTEMS = ((1, 2, 3, 4, 5, 6), (1, 2, 3, 0), ())


@st.composite
def mixes(draw):
    n = draw(st.integers(1, 6))
    reqs = []
    for i in range(n):
        system = draw(st.sampled_from(SYSTEMS))
        user = draw(st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=8))
        reqs.append(Request(i, system + tuple(user), draw(st.integers(1, 6)),
                            arrival=draw(st.sampled_from([0.0, 0.0, 0.0, 1.0, 2.0, 6.0]))))
    policy = draw(st.sampled_from(["static", "continuous", "continuous"]))
    chunked = draw(st.sampled_from([False, True, True]))
    block_size = draw(st.integers(1, 4))
    longest = max(len(r.prompt) + r.max_new_tokens for r in reqs)
    # from a pool that just holds the longest request (preemptions) to a roomy one
    num_blocks = -(-longest // block_size) + draw(st.integers(0, 8))
    budget = block_size * draw(st.integers(1, 4))
    if policy == "continuous" and not chunked:
        budget = max(budget, longest)  # whole prompts (and recomputations) fit a step
    cfg = SchedulerConfig(policy=policy, token_budget=budget, max_seqs=draw(st.integers(1, 5)),
                          chunked_prefill=chunked, prefix_caching=draw(st.booleans()),
                          block_size=block_size, num_blocks=num_blocks)
    return reqs, cfg


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mix=mixes())
def test_every_request_equals_generating_it_alone(model, mix):
    reqs, cfg = mix
    out = serve(model, reqs, cfg, step_time=1.0)
    assert [r.request.rid for r in out.requests] == [r.rid for r in reqs]
    for r in out.requests:
        assert r.output == solo(model, r.request), (cfg, r.request)
    for step in out.trace:
        if cfg.policy == "continuous" and cfg.chunked_prefill:
            assert step["tokens"] <= cfg.token_budget
    assert out.blocks.block_memory().blocks_used == 0  # every sequence gave its blocks back


def test_preemption_recomputes_and_prefix_caching_skips_the_shared_prompt(model):
    system = (1, 2, 3, 4, 5, 6, 0, 1)
    reqs = [Request(i, system + (i % VOCAB, (2 * i) % VOCAB), max_new_tokens=6) for i in range(4)]
    tight = SchedulerConfig(token_budget=8, block_size=2, num_blocks=12, prefix_caching=False)
    out = serve(model, reqs, tight, step_time=1.0)
    assert out.summary()["preemptions"] > 0
    assert any(t["prefill_tokens"] and t["decode_tokens"] for t in out.trace)  # mixed steps
    assert all(r.output == solo(model, r.request) for r in out.requests)
    roomy = SchedulerConfig(token_budget=8, block_size=2, num_blocks=64)
    plain = serve(model, reqs, SchedulerConfig(token_budget=8, block_size=2, num_blocks=64,
                                               prefix_caching=False), step_time=1.0)
    shared = serve(model, reqs, roomy, step_time=1.0)
    assert all(r.output == solo(model, r.request) for r in shared.requests)
    # the first request computes the system prompt; the other three find its 4 blocks
    assert shared.blocks.stats["prefix_hit_tokens"] == 3 * len(system)
    assert (sum(t["prefill_tokens"] for t in plain.trace)
            - sum(t["prefill_tokens"] for t in shared.trace)) == 3 * len(system)
    assert max(t["tokens_held"] for t in shared.trace) < max(t["tokens_held"] for t in plain.trace)


def test_chunked_prefill_mixes_decoding_into_every_step_of_a_long_prompt():
    reqs = [Request(0, (1,) * 4, max_new_tokens=12), Request(1, (2,) * 40, max_new_tokens=2,
                                                              arrival=2.0)]
    chunked = run(reqs, SchedulerConfig(token_budget=8, block_size=4, num_blocks=32), fake_execute)
    whole = run(reqs, SchedulerConfig(token_budget=64, block_size=4, num_blocks=32,
                                      chunked_prefill=False), fake_execute)
    # chunked: the long prompt takes five steps of 7 prompt tokens + 1 decoding token ...
    mixed = [t for t in chunked.trace if t["prefill_tokens"] and t["decode_tokens"]]
    assert len(mixed) >= 5 and all(t["tokens"] == 8 for t in mixed[:5])
    assert max(chunked.requests[0].itl) == 1.0  # ... so request 0 never waits a step
    # whole prompts: the prefill step holds request 0's decoding back one step
    assert max(whole.requests[0].itl) == 2.0
    assert [t["tokens"] for t in whole.trace if t["prefill_tokens"]] == [4, 40]


def test_static_batching_admits_only_into_an_empty_batch():
    reqs = [Request(0, (1, 2), max_new_tokens=5), Request(1, (3,), max_new_tokens=1),
            Request(2, (4, 4), max_new_tokens=1, arrival=0.5)]
    out = run(reqs, SchedulerConfig(policy="static", block_size=2, num_blocks=16, max_seqs=4,
                                    token_budget=2), fake_execute)
    r0, r1, r2 = out.requests
    assert r1.finish_time == 1.0 and r0.finish_time == 5.0
    assert r2.first_token_time == 6.0  # waited for the whole first batch to finish
    cont = run(reqs, SchedulerConfig(block_size=2, num_blocks=16, token_budget=4), fake_execute)
    assert cont.requests[2].first_token_time == 2.0  # joined at the next step


def test_summary_counts_and_percentiles():
    reqs = synthetic_workload(6, rate=2.0, vocab_size=VOCAB, seed=3, system_prompt=8,
                              prompt_tokens=(1, 6), output_tokens=(2, 5))
    out = run(reqs, SchedulerConfig(token_budget=8, block_size=4, num_blocks=32), fake_execute)
    s = out.summary()
    assert s["requests"] == 6 and s["output_tokens"] == sum(r.max_new_tokens for r in reqs)
    assert s["steps"] == len(out.trace) and s["preemptions"] == 0
    ttft = [r.first_token_time - r.request.arrival for r in out.requests]
    assert s["ttft_p50_s"] == pytest.approx(np.percentile(ttft, 50))
    assert 0 < s["prefix_hit_fraction"] < 1
    again = synthetic_workload(6, rate=2.0, vocab_size=VOCAB, seed=3, system_prompt=8,
                               prompt_tokens=(1, 6), output_tokens=(2, 5))
    assert again == reqs  # seeded


def test_clear_errors():
    with pytest.raises(ValueError, match="policy must be one of"):
        SchedulerConfig(policy="fifo")
    with pytest.raises(ValueError, match=r"token_budget must be at least one block \(block_size "
                                         r"= 16 tokens\); got 8"):
        SchedulerConfig(token_budget=8, block_size=16)
    with pytest.raises(TypeError, match="chunked_prefill must be"):
        SchedulerConfig(chunked_prefill="yes")
    cfg = SchedulerConfig(token_budget=4, block_size=4, num_blocks=3)
    long = Request(7, (1,) * 10, max_new_tokens=3)
    with pytest.raises(ValueError, match=r"request 7 needs up to 4 blocks .* but the pool has only "
                                         r"3: it is longer than the pool"):
        run([long], cfg, fake_execute)
    with pytest.raises(ValueError, match="longer than the pool"):
        Scheduler(cfg).add(long)
    with pytest.raises(ValueError, match="may need to prefill 12 tokens in one step, more than "
                                         "token_budget = 8; use chunked_prefill=True"):
        run([long], SchedulerConfig(token_budget=8, block_size=4, chunked_prefill=False),
            fake_execute)
    with pytest.raises(ValueError, match="requests must have distinct rid"):
        run([Request(0, (1,), 1), Request(0, (2,), 1)], cfg, fake_execute)
    with pytest.raises(ValueError, match="prompt must hold at least one token"):
        Request(0, (), 1)
    with pytest.raises(ValueError, match=r"blocks must have \(block_size, num_blocks, "
                                         r"prefix_caching\) = \(4, 3, True\)"):
        Scheduler(cfg, BlockManager(num_blocks=3, block_size=2, prefix_caching=True))
    with pytest.raises(TypeError, match="config must be a SchedulerConfig; got dict"):
        Scheduler({})


def test_engine_errors(model):
    cfg = SchedulerConfig(token_budget=8, block_size=4, num_blocks=16)
    with pytest.raises(TypeError, match="model must be a TinyTransformer; got Linear"):
        PagedEngine(torch.nn.Linear(2, 2), cfg)
    with pytest.raises(ValueError, match=r"request 0: prompt \(38 tokens\) \+ max_new_tokens \(4\) "
                                         r"- 1 exceeds the model's max_len = 40"):
        serve(model, [Request(0, (1,) * 38, 4)], cfg)
    with pytest.raises(ValueError, match="exceeds the model's max_len"):
        generate_alone(model, [1] * 38, 4)


def test_model_hooks_the_engine_uses(model):
    tokens = torch.tensor([[1, 2, 3, 4]])
    calls = []

    def attend(layer, q, k, v):  # plain causal attention: the model's own result
        calls.append(layer)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

    with torch.no_grad():
        np.testing.assert_allclose(model(tokens, attend=attend), model(tokens), atol=1e-12)
        np.testing.assert_array_equal(model(tokens, positions=torch.arange(4)), model(tokens))
        shifted = model(tokens, positions=torch.arange(1, 5))  # each token's own position
        assert not torch.allclose(shifted, model(tokens))
    assert calls == [0, 1]
    with pytest.raises(ValueError, match=r"positions must be 2 integers, one per token; got "
                                         r"shape \(3,\)"):
        model(tokens[:, :2], positions=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"positions must lie in \[0, max_len = 40\); got "
                                         r"values in \[39, 40\]"):
        model(tokens[:, :2], positions=torch.tensor([39, 40]))
    with pytest.raises(ValueError, match="do not combine it with return_weights"):
        model(tokens, attend=attend, return_weights=True)
    with pytest.raises(TypeError, match="attend must be a callable attend"):
        model.blocks[0].attn(torch.zeros(1, 2, 16, dtype=torch.float64), attend=3)


def test_exported_from_attnkit_serving():
    for name in ("Scheduler", "SchedulerConfig", "Request", "run", "synthetic_workload",
                 "PagedEngine", "serve", "generate_alone", "POLICIES"):
        assert name in serving.__all__ and getattr(serving, name) is not None
