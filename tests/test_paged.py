"""The paged KV cache: block tables, a shared pool, attention equal to the contiguous cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attnkit import attention
from attnkit.serving.paged import OutOfBlocksError, PagedKVCache, compare_allocation


def _tokens(rng, H, T, E, dtype=np.float64):
    return rng.normal(size=(H, T, E)).astype(dtype), rng.normal(size=(H, T, E)).astype(dtype)


@given(
    chunks=st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=4), min_size=1, max_size=4),
    block_size=st.integers(1, 6), L=st.integers(1, 3),
    causal=st.sampled_from([False, "bottom-right", "top-left"]), seed=st.integers(0, 2**16),
)
def test_interleaved_sequences_equal_contiguous_cache(chunks, block_size, L, causal, seed):
    rng = np.random.default_rng(seed)
    H, E = 2, 4
    # enough blocks for the largest draw: 4 sequences of up to 36 tokens, blocks of 1
    cache = PagedKVCache(num_blocks=4 * 36, block_size=block_size, num_heads=H, head_dim=E,
                         dtype="float64")
    seqs = [cache.new_sequence() for _ in chunks]
    full = {s: ([], []) for s in seqs}
    for step in range(max(len(c) for c in chunks)):  # appends interleave across sequences
        for s, c in zip(seqs, chunks):
            if step < len(c):
                k, v = _tokens(rng, H, c[step], E)
                cache.append(s, k, v)
                full[s][0].append(k)
                full[s][1].append(v)
    for s in seqs:
        k, v = (np.concatenate(x, axis=1) for x in full[s])
        gk, gv = cache.gather(s)
        np.testing.assert_array_equal(gk, k)
        np.testing.assert_array_equal(gv, v)
        assert cache.length(s) == k.shape[1]
        assert len(cache.block_table(s)) == -(-k.shape[1] // block_size)
        q = rng.normal(size=(H, L, E))
        out = cache.attention(s, q, causal=causal)
        np.testing.assert_allclose(out, attention(q, k, v, causal=causal), atol=1e-12)
    tables = [b for s in seqs for b in cache.block_table(s)]
    assert len(tables) == len(set(tables))  # no block is shared by two sequences


def test_free_returns_blocks_and_they_are_reused():
    rng = np.random.default_rng(0)
    cache = PagedKVCache(num_blocks=6, block_size=4, num_heads=1, head_dim=3)
    a, b = cache.new_sequence(), cache.new_sequence()
    cache.append(a, *_tokens(rng, 1, 9, 3, np.float32))  # 3 blocks
    cache.append(b, *_tokens(rng, 1, 4, 3, np.float32))  # 1 block
    assert cache.block_table(a) == [0, 1, 2] and cache.block_table(b) == [3]
    assert cache.free_blocks == 2
    cache.free(a)
    assert cache.free_blocks == 5 and cache.sequences == [b]
    c = cache.new_sequence()
    k, v = _tokens(rng, 1, 10, 3, np.float32)
    cache.append(c, k, v)
    assert cache.block_table(c) == [0, 1, 2]
    q = rng.normal(size=(1, 1, 3)).astype(np.float32)
    np.testing.assert_allclose(cache.attention(c, q), attention(q, k, v), atol=1e-6)


def test_out_of_blocks_leaves_the_cache_unchanged():
    rng = np.random.default_rng(1)
    cache = PagedKVCache(num_blocks=2, block_size=4, num_heads=1, head_dim=2)
    s = cache.new_sequence()
    cache.append(s, *_tokens(rng, 1, 5, 2, np.float32))
    with pytest.raises(OutOfBlocksError, match=r"needs 1 new blocks of 4 slots, but only 0 of 2 are free"):
        cache.append(s, *_tokens(rng, 1, 4, 2, np.float32))
    assert cache.length(s) == 5 and cache.block_table(s) == [0, 1]
    cache.append(s, *_tokens(rng, 1, 3, 2, np.float32))  # the last block still has 3 slots
    assert cache.length(s) == 8


def test_memory_report():
    rng = np.random.default_rng(2)
    cache = PagedKVCache(num_blocks=10, block_size=4, num_heads=2, head_dim=8, value_dim=6)
    for n in (5, 1, 8):
        s = cache.new_sequence()
        cache.append(s, rng.normal(size=(2, n, 8)).astype(np.float32),
                     rng.normal(size=(2, n, 6)).astype(np.float32))
    m = cache.memory()
    per_token = 2 * (8 + 6) * 4
    assert m.bytes_per_token == per_token
    assert (m.tokens, m.blocks_used) == (14, 2 + 1 + 2)
    assert m.bytes_used == 14 * per_token
    assert m.bytes_reserved == 5 * 4 * per_token
    assert m.bytes_pool == 10 * 4 * per_token == cache.k_pool.nbytes + cache.v_pool.nbytes
    assert m.waste == pytest.approx(1 - 14 / 20)
    assert "3 sequences, 5/10 blocks" in repr(cache)


def test_compare_allocation():
    c = compare_allocation([3, 10, 1, 0], block_size=4, max_length=16)
    assert (c.tokens, c.paged_reserved, c.contiguous_reserved) == (14, 20, 64)
    assert c.paged_waste == pytest.approx(6 / 20)
    assert c.contiguous_waste == pytest.approx(50 / 64)
    with pytest.raises(ValueError, match=r"lengths\[1\] must be an integer in \[0, 16\]; got 20"):
        compare_allocation([3, 20], block_size=4, max_length=16)
    with pytest.raises(TypeError, match=r"lengths\[0\] must be an integer in \[0, 16\]; got 2.5"):
        compare_allocation([2.5], block_size=4, max_length=16)
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        compare_allocation([3], block_size=0, max_length=16)


def test_torch_pool_and_gradients_flow_to_q():
    g = torch.Generator().manual_seed(0)
    cache = PagedKVCache(num_blocks=8, block_size=3, num_heads=2, head_dim=4, dtype="float64",
                         array="torch")
    s = cache.new_sequence()
    k = torch.randn(2, 7, 4, generator=g, dtype=torch.float64)
    v = torch.randn(2, 7, 4, generator=g, dtype=torch.float64)
    cache.append(s, k[:, :2], v[:, :2])
    cache.append(s, k[:, 2:], v[:, 2:])
    q = torch.randn(2, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    out = cache.attention(s, q, causal="bottom-right")
    torch.testing.assert_close(out, attention(q.detach(), k, v, causal="bottom-right"), atol=1e-12,
                               rtol=0)
    assert torch.autograd.gradcheck(lambda q: cache.attention(s, q), (q,))


def test_empty_sequence_attends_to_nothing():
    cache = PagedKVCache(num_blocks=2, block_size=2, num_heads=1, head_dim=2)
    s = cache.new_sequence()
    out = cache.attention(s, np.ones((1, 2, 2), np.float32))
    np.testing.assert_array_equal(out, 0.0)


def test_bad_input_errors():
    cache = PagedKVCache(num_blocks=2, block_size=2, num_heads=2, head_dim=4)
    s = cache.new_sequence()
    with pytest.raises(ValueError, match=r"unknown sequence id 7; live sequences are \[0\]"):
        cache.append(7, np.zeros((2, 1, 4), np.float32), np.zeros((2, 1, 4), np.float32))
    with pytest.raises(ValueError, match=r"k must have shape \(H=2, T, 4\); got \(3, 1, 4\)"):
        cache.append(s, np.zeros((3, 1, 4), np.float32), np.zeros((3, 1, 4), np.float32))
    with pytest.raises(ValueError, match="same number of tokens"):
        cache.append(s, np.zeros((2, 1, 4), np.float32), np.zeros((2, 2, 4), np.float32))
    with pytest.raises(TypeError, match="dtype float32 like the pool; got float64"):
        cache.append(s, np.zeros((2, 1, 4)), np.zeros((2, 1, 4)))
    with pytest.raises(TypeError, match="k must be a numpy.ndarray; got Tensor"):
        cache.append(s, torch.zeros(2, 1, 4), torch.zeros(2, 1, 4))
    with pytest.raises(ValueError, match=r"q must have shape \(H=2, L, E=4\)"):
        cache.attention(s, np.zeros((2, 1, 3), np.float32))
    cache.free(s)
    with pytest.raises(ValueError, match=r"sequence 0 was freed; its blocks are gone"):
        cache.free(s)
    with pytest.raises(ValueError, match="num_blocks must be a positive integer; got 0"):
        PagedKVCache(num_blocks=0, block_size=2, num_heads=1, head_dim=2)
    with pytest.raises(ValueError, match="dtype must be one of"):
        PagedKVCache(num_blocks=1, block_size=2, num_heads=1, head_dim=2, dtype="int8")
    with pytest.raises(ValueError, match=r"array must be one of \['numpy', 'torch'\]; got 'jax'"):
        PagedKVCache(num_blocks=1, block_size=2, num_heads=1, head_dim=2, array="jax")
