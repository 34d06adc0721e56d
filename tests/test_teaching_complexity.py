"""Tests of attnkit.teaching.complexity: closed forms vs a brute-force count, model table.

No timed assertions: measure_scaling is checked for shape and sanity only.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import attnkit
from attnkit import example
from attnkit.teaching.complexity import (
    MODELS,
    ModelShape,
    loglog_slope,
    measure_scaling,
    model_table,
    score_entries,
    step_costs,
    total_ops,
    trace_attention,
    walkthrough_views,
)


def _counts_by_stage(steps):
    by_stage: dict[str, Counter] = {}
    for s in steps:
        by_stage.setdefault(s.stage, Counter()).update(s.ops)
    return {stage: dict(c) for stage, c in by_stage.items()}


@pytest.mark.parametrize("n,d,d_v", [(1, 1, 1), (2, 3, 3), (3, 4, 4), (4, 2, 5), (6, 3, 1)])
def test_trace_counts_equal_closed_forms(n, d, d_v):
    rng = np.random.default_rng(n * 100 + d)
    q, k = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    v = rng.standard_normal((n, d_v))
    *_, steps = trace_attention(q, k, v)
    counted = _counts_by_stage(steps)
    expected = {stage: {kind: c for kind, c in kinds.items() if c}
                for stage, kinds in total_ops(n, d, d_v).items()}
    assert counted == expected
    # the headline step costs are the corresponding entries of the full count
    headline = {"compare": "multiply-add", "scale": "multiply", "normalise": "exp",
                "aggregate": "multiply-add"}
    for cost in step_costs(n, d, d_v):
        assert cost.time == total_ops(n, d, d_v)[cost.step][headline[cost.step]]


def test_trace_counts_by_brute_force_loops():
    """An independent count: enumerate every (i, j, c) triple the formulas touch."""
    n, d, d_v = 4, 3, 2
    macs_qk = sum(1 for i in range(n) for j in range(n) for c in range(d))
    macs_pv = sum(1 for i in range(n) for c in range(d_v) for j in range(n))
    costs = {c.step: c for c in step_costs(n, d, d_v)}
    assert costs["compare"].time == macs_qk
    assert costs["aggregate"].time == macs_pv
    assert costs["compare"].memory == n * n
    assert costs["scale"].memory == 0 and costs["normalise"].memory == 0
    assert costs["aggregate"].memory == n * d_v


def test_trace_values_match_reference_engine():
    scores, weights, out, steps = trace_attention(example.Q, example.K, example.V)
    ref_out, ref_w = attnkit.attention(example.Q, example.K, example.V, return_weights=True)
    np.testing.assert_allclose(out, ref_out, atol=1e-12)
    np.testing.assert_allclose(weights, ref_w, atol=1e-12)
    np.testing.assert_allclose(scores[0], [0, 1, 0.5, 0.5, 0.75], atol=1e-12)
    n, d_v = example.V.shape
    assert len(steps) == n * n + 1 + n + n * d_v


def test_trace_rejects_bad_shapes():
    with pytest.raises(ValueError, match="q, k, v"):
        trace_attention(np.zeros(3), np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="need q"):
        trace_attention(np.zeros((3, 2)), np.zeros((4, 2)), np.zeros((3, 2)))


def test_step_costs_rejects_bad_sizes():
    for bad, error in ((0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="n must be a positive integer"):
            step_costs(bad, 4)


def test_score_entries_headline_numbers():
    assert score_entries(4) == 16
    assert score_entries(1000) == 1_000_000
    assert score_entries(8192) == 67_108_864
    assert score_entries(8192, heads=32, layers=32) == 68_719_476_736


def test_model_table_equals_closed_forms():
    rows = model_table()
    assert [r.model.name for r in rows] == [m.name for m in MODELS]
    for r in rows:
        m = r.model
        n, h, layers, e = m.context, m.heads, m.layers, m.head_dim
        assert r.scores_per_head == n**2
        assert r.scores_per_pass == layers * h * n**2
        assert r.attention_macs == 2 * layers * h * n**2 * e
        assert r.layer_scores_bytes == 2 * h * n**2
        assert r.weight_macs == pytest.approx(m.params * n)
        assert 0 < r.attention_share_causal < r.attention_share < 1
        # the causal share halves attention's multiply-adds, nothing else
        half = r.attention_macs / 2
        assert r.attention_share_causal == pytest.approx(half / (half + r.weight_macs))
        # at the crossover context the two multiply-add counts are equal
        assert 2 * layers * h * r.crossover**2 * e == pytest.approx(m.params * r.crossover)
    gpt3, llama, llama31_70b, llama31_405b = rows
    assert gpt3.layer_scores_bytes == 768 * 2**20  # 96 heads x 8 MiB
    assert llama.layer_scores_bytes == 2 * 2**30  # 64 heads x 32 MiB
    assert round(gpt3.crossover) == 74_175 and round(llama.crossover) == 53_406
    # Llama 3.1 70B has LLaMA-2 70B's attention shape at 32 times the context
    assert llama31_70b.crossover == llama.crossover
    assert llama31_70b.attention_macs == 32**2 * llama.attention_macs
    assert round(100 * llama31_70b.attention_share) == 71
    assert round(100 * llama31_70b.attention_share_causal) == 55
    assert round(llama31_405b.crossover) == 98_092


def test_model_table_custom_shape():
    (row,) = model_table([ModelShape("tiny", layers=2, heads=3, head_dim=4, context=5, params=10)])
    assert row.scores_per_pass == 2 * 3 * 25
    assert row.attention_macs == 2 * 2 * 3 * 25 * 4


def test_walkthrough_views_one_per_step():
    views, labels = walkthrough_views(example.Q[:3], example.K[:3], example.V[:3],
                                      example.tokens[:3])
    assert len(views) == len(labels) == 9 + 1 + 3 + 12
    assert len(set(views)) == len(views)  # every view differs from the others
    assert "step 1 of 25" in views[0] and "step 25 of 25" in views[-1]
    with pytest.raises(ValueError, match="tokens"):
        walkthrough_views(example.Q[:3], example.K[:3], example.V[:3], example.tokens)


def test_loglog_slope_recovers_exponent():
    x = np.array([10.0, 20.0, 40.0, 80.0])
    assert loglog_slope(x, 3 * x**2) == pytest.approx(2.0)
    assert loglog_slope(x, 0.5 * x**1.5) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        loglog_slope([1.0], [1.0])


def test_measure_scaling_shape_and_memory():
    ms = measure_scaling([32, 64], d=8, backends=("numpy",), repeats=1)
    assert [(m.backend, m.n, m.d) for m in ms] == [("numpy", 32, 8), ("numpy", 64, 8)]
    assert all(m.seconds > 0 for m in ms)
    # the naive engine holds at least one float32 n x n matrix at its peak
    assert all(m.peak_bytes is not None and m.peak_bytes >= 4 * m.n**2 for m in ms)


def test_measure_scaling_rejects_unknown_clock():
    with pytest.raises(ValueError, match="clock"):
        measure_scaling([8], d=4, backends=("numpy",), repeats=1, clock="sundial")
