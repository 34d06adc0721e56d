"""Ring attention on real gloo process groups: outputs and gradients equal one device.

Spawning processes costs seconds while each check costs milliseconds, so one
launch of 4 processes runs every case on groups of 1, 2, 3 and 4 ranks.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attnkit import attention, example
from attnkit.distributed import launch, ring_attention, shard, shard_positions, shard_sizes, unshard
from attnkit.distributed.checks import fail_on_rank, ring_checks, stall_on_rank, suite_by_size

F64_CASES = [
    {},
    {"causal": True},
    {"causal": True, "layout": "zigzag"},
    {"layout": "zigzag", "n_q": 13, "n_k": 13},
    {"n_q": 7, "n_k": 13, "causal": "bottom-right", "layout": "zigzag"},
    {"n_q": 13, "n_k": 7, "causal": "bottom-right"},  # early queries see no key at all
    {"n_q": 9, "n_k": 14, "causal": "top-left", "layout": "zigzag"},
    {"heads": 4, "kv_heads": 2, "causal": True, "layout": "zigzag"},  # GQA
    {"heads": 3, "kv_heads": 1, "n_q": 10, "n_k": 10},  # MQA
    {"padding": True, "n_k": 14, "n_q": 14},
    {"padding": True, "causal": True, "layout": "zigzag", "heads": 4, "kv_heads": 2, "seed": 3},
    {"scale": 0.7, "E": 5, "Ev": 3, "n_q": 3, "n_k": 3},  # fewer positions than ranks for P = 4
]
F32_CASES = [
    {"dtype": "float32", "n_q": 192, "n_k": 192, "E": 32, "Ev": 32, "causal": True, "layout": "zigzag"},
    {"dtype": "float32", "n_q": 150, "n_k": 190, "E": 32, "Ev": 32, "causal": "bottom-right"},
]
F64_TOL = 1e-13


@pytest.fixture(scope="module")
def by_size():
    """Every rank's results for every group size, from one launch of 4 processes."""
    return launch(suite_by_size, 4, F64_CASES + F32_CASES, timeout=300)


@pytest.mark.parametrize("P", [1, 2, 3, 4])
def test_ring_attention_equals_single_device(P, by_size):
    runs = [per_rank[P] for per_rank in by_size[:P]]
    assert all(P not in per_rank for per_rank in by_size[P:])  # ranks outside the group waited
    results = [run["cases"] for run in runs]
    for rank, per_rank in enumerate(results):
        for i, res in enumerate(per_rank):
            assert res["rank"] == rank
            assert res["pairs"] == res["expected_pairs"], res  # causal skipping drops no real work
            case = res["case"]
            if i < len(F64_CASES):
                for name, err in res["errors"].items():
                    assert err < F64_TOL, (P, rank, case, name, err)
            else:  # STYLE.md's rule: at most twice the plain float32 engine's error
                for name, err in res["errors"].items():
                    naive = res["naive_errors"][name]
                    assert err <= 2 * naive + 1e-6, (P, rank, case, name, err, naive)
    # the shards really were of the layout's sizes (uneven when P does not divide n)
    for i in range(len(F64_CASES)):
        c = results[0][i]["case"]
        assert [results[r][i]["L_r"] for r in range(P)] == shard_sizes(c["n_q"], P, layout=c["layout"])
        assert [results[r][i]["S_r"] for r in range(P)] == shard_sizes(c["n_k"], P, layout=c["layout"])
    # the shared example, causal, zigzag: ring and all-gather both equal one device
    ref = attention(example.Q, example.K, example.V, causal=True)
    for strategy in ("out", "all_gather_out"):
        out = unshard([run["example"][strategy] for run in runs], layout="zigzag")
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-15)
    assert [run["example"]["q"].shape[0] for run in runs] == shard_sizes(5, P, layout="zigzag")


def test_a_rank_that_raises_stops_the_group_with_its_error():
    start = time.monotonic()
    with pytest.raises(ValueError, match="rank 1 fails on purpose") as info:
        launch(fail_on_rank, 3, 1, timeout=240, collective_timeout=150)
    # the launcher stops the waiting ranks: far sooner than their own 150 s timeout, even when
    # a loaded machine takes tens of seconds to start three processes
    assert time.monotonic() - start < 120
    assert any("raised on rank 1 of 3" in note for note in getattr(info.value, "__notes__", []))


def test_every_exchange_has_a_timeout():
    """No launcher to rescue it: the waiting rank's own exchange times out and reports it."""
    start = time.monotonic()
    with pytest.raises(RuntimeError) as info:
        launch(stall_on_rank, 2, 1, 60.0, timeout=60, collective_timeout=3)
    assert time.monotonic() - start < 40
    assert any("raised on rank 0 of 2" in note for note in getattr(info.value, "__notes__", []))


@given(n=st.integers(0, 40), P=st.integers(1, 6), layout=st.sampled_from(["contiguous", "zigzag"]))
def test_shard_unshard_round_trip(n, P, layout):
    x = np.arange(n * 2).reshape(1, n, 2)
    parts = [shard(x, r, P, layout=layout, dim=1) for r in range(P)]
    assert [p.shape[1] for p in parts] == shard_sizes(n, P, layout=layout)
    np.testing.assert_array_equal(unshard(parts, layout=layout, dim=1), x)
    pos = np.concatenate([shard_positions(n, r, P, layout=layout) for r in range(P)])
    assert sorted(pos.tolist()) == list(range(n))
    t = torch.from_numpy(x)
    tparts = [shard(t, r, P, layout=layout, dim=-2) for r in range(P)]
    assert torch.equal(unshard(tparts, layout=layout), t)


def test_zigzag_balances_causal_work():
    n, P = 64, 4
    def work(layout):  # visible (query, key) pairs per rank under a causal mask
        return [int((shard_positions(n, r, P, layout=layout) + 1).sum()) for r in range(P)]
    contiguous, zigzag = work("contiguous"), work("zigzag")
    assert max(contiguous) / min(contiguous) > 5
    assert max(zigzag) == min(zigzag)


def test_shard_bad_arguments():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 1\]; got 2"):
        shard(x, 2, 2)
    with pytest.raises(TypeError, match=r"rank must be an integer in \[0, 1\]; got 1.0 of type float"):
        shard(x, 1.0, 2)
    with pytest.raises(ValueError, match=r"layout must be one of \['contiguous', 'zigzag'\]; got 'striped'"):
        shard(x, 0, 2, layout="striped")
    with pytest.raises(ValueError, match=r"dim must be an integer in \[-2, 1\]; got 3"):
        shard(x, 0, 2, dim=3)
    with pytest.raises(TypeError, match="x must be a numpy.ndarray or torch.Tensor; got list"):
        shard([1, 2], 0, 2)
    with pytest.raises(ValueError, match=r"shard lengths \[1, 3\] along dim -2 are not those"):
        unshard([x[:1], x[1:]], layout="contiguous")


@pytest.mark.parametrize("tensors", [False, True], ids=["numpy", "torch"])
def test_unshard_names_shards_of_different_widths(tensors):
    parts = [np.zeros((2, 3)), np.zeros((2, 5))]  # the same lengths, other widths
    if tensors:
        parts = [torch.from_numpy(p) for p in parts]
    with pytest.raises(ValueError, match=r"same shape in every dimension but the sequence axis "
                                         r"dim=-2; got shards\[0\] of shape \(2, 3\) and "
                                         r"shards\[1\] of shape \(2, 5\)"):
        unshard(parts)
    with pytest.raises(ValueError, match=r"shards\[1\] of shape \(2, 2, 3\)"):
        unshard([np.zeros((2, 3)), np.zeros((2, 2, 3))])


def test_ring_attention_needs_a_process_group():
    q = torch.zeros(4, 2)
    with pytest.raises(RuntimeError, match="needs an initialised torch.distributed process group"):
        ring_attention(q, q, q)


def test_command_line_check(capsys):
    from attnkit.distributed.__main__ import main

    assert main(["--nproc", "1", "--seq", "24", "--heads", "2", "--dim", "8", "--causal"]) == 0
    out = capsys.readouterr().out
    assert "rank 0: 24 queries, 24 keys" in out and "equal to single-device attention" in out


def test_launch_bad_arguments():
    with pytest.raises(ValueError, match="nprocs must be a positive integer; got 0"):
        launch(ring_checks, 0, [])
    with pytest.raises(ValueError, match="must be importable"):
        launch(lambda rank, world: rank, 2)
    with pytest.raises(ValueError, match=r"backend must be one of \['gloo', 'nccl'\]; got 'mpi'"):
        launch(ring_checks, 1, [], backend="mpi")
    with pytest.raises(TypeError, match="timeout must be a real number"):
        launch(ring_checks, 1, [], timeout="10")
    with pytest.raises(ValueError, match="collective_timeout must be a finite positive number; got 0"):
        launch(ring_checks, 1, [], collective_timeout=0)


@pytest.mark.cuda
def test_nccl_ring_attention_on_gpus():
    P = min(torch.cuda.device_count(), 4)
    results = launch(ring_checks, P, F64_CASES[:3] + F32_CASES, backend="nccl" if P > 1 else None)
    for per_rank in results:
        for i, res in enumerate(per_rank):
            for name, err in res["errors"].items():
                bound = F64_TOL if i < 3 else 2 * res["naive_errors"][name] + 1e-6
                assert err <= bound, (res["case"], name, err)
