"""Ulysses, USP (2-D), sharded-cache decoding and tensor parallelism on real gloo groups.

One launch of 4 processes with a 2 x 2 mesh runs every check (sub-groups of 1, 2
and 3 ranks are made inside it): process start-ups cost seconds, checks
milliseconds. Every strategy is compared with single-device attention in
float64, forward and backward.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnkit.distributed import (
    TensorParallelAttention,
    all_reduce_partials,
    current_mesh,
    kv_replication,
    launch,
    make_mesh,
    shard_2d,
    sharded_decode_attention,
    ulysses_attention,
    unshard_2d,
    usp_attention,
)
from attnkit.distributed.strategy_checks import ULYSSES_CASES, USP_CASES, strategies_suite

TOL = 1e-12


@pytest.fixture(scope="module")
def runs():
    return launch(strategies_suite, 4, 2.0, timeout=240, collective_timeout=60, mesh=(2, 2))


def params(h, hkv, D=16, Dh=4):
    """Numbers in W_Q, W_O and the query bias, and in W_K, W_V and their biases (no output bias)."""
    return (2 * D + 1) * h * Dh + 2 * (D + 1) * hkv * Dh


def _assert_small(items, key):
    for item in items:
        for name, err in item["errors"].items():
            assert err < TOL, (key, item, name, err)


def test_ulysses_equals_single_device_forward_and_backward(runs):
    for run in runs:
        items = run["ulysses"]
        assert sorted({i["P"] for i in items}) == [1, 2, 4]
        assert len(items) == 3 * len(ULYSSES_CASES)
        assert all(set(i["errors"]) == {"out", "dq", "dk", "dv"} for i in items)
        _assert_small(items, "ulysses")


def test_usp_two_by_two_equals_single_device_forward_and_backward(runs):
    for run in runs:
        items = run["usp"]
        assert len(items) == len(USP_CASES) and all(i["mesh"] == (2, 2) for i in items)
        assert all(set(i["errors"]) == {"out", "dq", "dk", "dv"} for i in items)
        _assert_small(items, "usp")


def test_sharded_cache_decoding_equals_single_device_and_merge_partials(runs):
    sizes = set()
    for run in runs:
        for item in run["tree"]:
            sizes.add(item["P"])
            errs = item["errors"]
            assert errs["lse_inf_match"] == 0.0, item  # the same rows see no key at all
            for name in ("out", "lse", "out_vs_merge_partials", "lse_vs_merge_partials"):
                assert errs[name] < TOL, (item, name)
            # the traffic per step is the queries' partials, whatever the cache length:
            # B * H = 6 rows of lse (max) and of Ev + 1 = 7 numbers (sums) per query, float64;
            # the source also broadcasts the queries (6 rows of E = 8 numbers each)
            if item["P"] > 1:
                broadcast = 8 * 6 * item["L"] * 8 if item["group_rank"] == 0 else 0
                assert item["bytes_sent"] == 8 * 6 * item["L"] * (1 + 7) + broadcast, item
    assert sizes == {1, 2, 3, 4}
    # the S = 3 cache over 4 ranks leaves rank 3 an empty slice: it still merges exactly
    assert any(i["S_r"] == 0 for i in runs[3]["tree"])


def test_tensor_parallel_attention_equals_the_full_layer(runs):
    for run in runs:
        items = run["tp"]
        assert sorted({i["P"] for i in items}) == [1, 2, 4]
        for item in items:
            assert set(item["errors"]) >= {"out", "dx", "dq_proj", "dk_proj", "dv_proj", "dout_proj"}
        _assert_small(items, "tp")
        for item in items:  # each rank holds 1/P of the weights (K/V heads replicated when P > H_kv)
            P, H, Hkv = item["P"], item["heads"], item["kv_heads"]
            want = params(H // P, max(Hkv // P, 1)) / params(H, Hkv)
            assert item["weights_fraction"] == pytest.approx(want), item


def test_misuses_raise_on_every_rank_before_any_data_moves(runs):
    messages = [run["misuse"] for run in runs]
    for rank, m in enumerate(messages):
        assert m["heads"].startswith("ValueError") and "must divide the query heads; got Hq = 3" in m["heads"]
        if rank == 1:  # the rank with the bad shard gets its own error ...
            assert m["mismatched"].startswith("ValueError: q and k must have the same width E")
        else:  # ... the others learn which rank refused, instead of waiting for it
            assert "rank 1 of the group refused its arguments" in m["mismatched"]
        assert ("the ranks disagree on q (rank 0: (1, 4, 8), rank 1: (1, 4, 8), rank 2: (2, 4, 8)"
                in m["disagree"])
        assert "are not a contiguous split of L = 14" in m["split"]
        assert "replicate_kv=True" in m["replicate"] and "4 does not divide 2" in m["replicate"]
        assert "not a two-level (2 x 2, contiguous) split" in m["usp_pieces"]
        assert "sharded_decode_attention: the ranks disagree on q" in m["decode_disagree"]
        assert "P must divide num_heads; got num_heads = 6" in m["tp_heads"]
        assert m["bad_exchange"] == ("ValueError: exchange must be one of ['all_to_all', 'p2p']; "
                                     "got 'carrier pigeon'")


def test_an_exchange_with_a_missing_rank_times_out_by_itself(runs):
    assert runs[3]["stall"] == {"stalled": True}
    for run in runs[:3]:
        stall = run["stall"]
        assert stall["message"].startswith("RuntimeError") and "timed out" in stall["message"]
        assert stall["waited_s"] < 30  # the 2 s timeout, not the group's 60 s


def test_the_strategies_need_an_initialised_group():
    q = torch.zeros(1, 2, 4, 8)
    for call in (lambda: ulysses_attention(q, q, q), lambda: usp_attention(q, q, q),
                 lambda: sharded_decode_attention(q, q, q), lambda: all_reduce_partials(q, q[..., 0]),
                 lambda: TensorParallelAttention(8, 2), lambda: make_mesh(1, 1)):
        with pytest.raises(RuntimeError, match="needs an initialised torch.distributed process group"):
            call()
    with pytest.raises(RuntimeError, match="no mesh has been built in this process"):
        current_mesh()


def test_shard_2d_round_trip_and_grid():
    x = np.arange(22).reshape(11, 2)
    for layout in ("contiguous", "zigzag"):
        parts = [shard_2d(x, r, 2, 3, layout=layout) for r in range(6)]
        np.testing.assert_array_equal(unshard_2d(parts, 2, 3, layout=layout), x)
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 3\]; got 4"):
        shard_2d(x, 4, 2, 2)
    with pytest.raises(ValueError, match="shards must hold one piece per rank, 4; got 3"):
        unshard_2d(parts[:3], 2, 2)


def test_kv_replication():
    assert [kv_replication(h, 4) for h in (1, 2, 3, 4, 6, 8)] == [4, 2, 4, 1, 2, 1]


def test_launch_checks_its_mesh():
    with pytest.raises(ValueError, match=r"mesh must have P_ulysses \* P_ring = nprocs = 4; got \(2, 3\)"):
        launch(strategies_suite, 4, mesh=(2, 3))
    with pytest.raises(TypeError, match="mesh must be a pair"):
        launch(strategies_suite, 4, mesh=4)
