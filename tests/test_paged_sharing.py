"""Prefix sharing in the paged cache: forks, copy-on-write, prefix caching, LRU eviction.

The property test runs random interleavings of new (with and without a cached
prefix), fork, append, free and evict on a small pool and checks after every
operation that each live sequence's gathered keys and values are exactly what a
model would have computed for its tokens, that the block accounting is exact, and
that an operation the pool refuses changes nothing.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit import attention
from attnkit.serving.paged import BlockManager, OutOfBlocksError, PagedKVCache

H, E = 1, 2


def kv_for(prefix: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Keys and values of the last token of ``prefix``: a function of the whole prefix, as in a model."""
    rng = np.random.default_rng(zlib.crc32(np.asarray(prefix, np.int64).tobytes()))
    return rng.normal(size=(H, 1, E)), rng.normal(size=(H, 1, E))


def kv_of(tokens: list[int], start: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys and values of ``tokens[start:]``, each from its own prefix."""
    if start == len(tokens):
        return np.zeros((H, 0, E)), np.zeros((H, 0, E))
    parts = [kv_for(tokens[:p + 1]) for p in range(start, len(tokens))]
    return np.concatenate([k for k, _ in parts], 1), np.concatenate([v for _, v in parts], 1)


def snapshot(cache: PagedKVCache) -> tuple:
    seqs = cache.sequences
    return (seqs, [cache.block_table(s) for s in seqs], [cache.length(s) for s in seqs],
            [cache.token_ids(s) for s in seqs], cache.free_blocks, cache.cached_blocks,
            [cache.refcount(b) for b in range(cache.num_blocks)], cache.k_pool.copy(),
            cache.v_pool.copy(), dict(cache.stats), cache.memory())


def check(cache: PagedKVCache, model: dict[int, list[int]]) -> None:
    """Data and accounting of every live sequence against the model of what it holds."""
    bs = cache.block_size
    assert sorted(cache.sequences) == sorted(model)
    held: dict[int, int] = {}
    counts = [0] * cache.num_blocks
    for s, tokens in model.items():
        table = cache.block_table(s)
        assert cache.length(s) == len(tokens)
        assert cache.token_ids(s) == tokens
        assert len(table) == -(-len(tokens) // bs)
        k, v = cache.gather(s)
        k_ref, v_ref = kv_of(tokens, 0)
        np.testing.assert_array_equal(k, k_ref)
        np.testing.assert_array_equal(v, v_ref)
        for i, b in enumerate(table):
            counts[b] += 1
            held[b] = max(held.get(b, 0), min(bs, len(tokens) - i * bs))
    assert [cache.refcount(b) for b in range(cache.num_blocks)] == counts
    m = cache.memory()
    assert m.blocks_used == len(held) == cache.num_blocks - cache.free_blocks
    assert 0 <= cache.cached_blocks <= cache.free_blocks
    assert m.tokens == sum(len(t) for t in model.values())
    assert m.tokens_held == sum(held.values())
    assert m.blocks_cached == cache.cached_blocks


ops = st.lists(st.one_of(
    st.tuples(st.just("new"), st.lists(st.integers(0, 1), max_size=9), st.booleans()),
    st.tuples(st.just("fork"), st.integers(0, 7)),
    st.tuples(st.just("append"), st.integers(0, 7), st.lists(st.integers(0, 1), min_size=1,
                                                              max_size=5)),
    st.tuples(st.just("free"), st.integers(0, 7)),
    st.tuples(st.just("evict"), st.integers(0, 3)),
    st.tuples(st.just("fork-freed"), st.integers(0, 7)),
), max_size=30)


@settings(max_examples=120, deadline=None)
@given(ops=ops, block_size=st.integers(1, 3), num_blocks=st.integers(2, 12),
       prefix_caching=st.booleans())
def test_random_interleavings_keep_data_and_accounting_exact(ops, block_size, num_blocks,
                                                             prefix_caching):
    cache = PagedKVCache(num_blocks=num_blocks, block_size=block_size, num_heads=H, head_dim=E,
                         dtype="float64", prefix_caching=prefix_caching)
    model: dict[int, list[int]] = {}
    freed: list[int] = []
    for op in ops:
        before = snapshot(cache)
        live = sorted(model)
        try:
            if op[0] == "new":
                tokens, use_prefix = op[1], op[2]
                s = cache.new_sequence(tokens if use_prefix else None)
                n = cache.length(s)
                assert n % block_size == 0 and n <= len(tokens)
                assert use_prefix and prefix_caching or n == 0
                model[s] = tokens[:n]
                try:
                    cache.append(s, *kv_of(tokens, n), tokens=tokens[n:])
                    model[s] = list(tokens)
                except OutOfBlocksError:  # the new sequence keeps its matched prefix only
                    pass
            elif op[0] == "fork" and live:
                s = live[op[1] % len(live)]
                model[cache.fork(s)] = list(model[s])
            elif op[0] == "append" and live:
                s = live[op[1] % len(live)]
                tokens = model[s] + op[2]
                cache.append(s, *kv_of(tokens, len(model[s])), tokens=op[2])
                model[s] = tokens
            elif op[0] == "free" and live:
                s = live[op[1] % len(live)]
                cache.free(s)
                del model[s]
                freed.append(s)
            elif op[0] == "evict":
                cached = cache.cached_blocks
                assert cache.evict(op[1]) == min(op[1], cached)
                assert cache.cached_blocks == cached - min(op[1], cached)
            elif op[0] == "fork-freed" and freed:
                s = freed[op[1] % len(freed)]
                with pytest.raises(ValueError, match=f"sequence {s} was freed"):
                    cache.fork(s)
                after = snapshot(cache)
                assert repr(after[:7]) == repr(before[:7])
        except OutOfBlocksError:
            after = snapshot(cache)
            assert after[:7] == before[:7] and after[9] == before[9]  # nothing changed
            np.testing.assert_array_equal(after[7], before[7])
            np.testing.assert_array_equal(after[8], before[8])
        check(cache, model)


def test_fork_shares_blocks_and_copies_on_write():
    cache = PagedKVCache(num_blocks=8, block_size=4, num_heads=H, head_dim=E, dtype="float64")
    a = cache.new_sequence()
    cache.append(a, *kv_of([1, 2, 3, 4, 5, 6], 0), tokens=[1, 2, 3, 4, 5, 6])
    b = cache.fork(a)
    assert cache.block_table(b) == cache.block_table(a) == [0, 1]
    assert (cache.refcount(0), cache.refcount(1), cache.free_blocks) == (2, 2, 6)
    assert cache.memory().tokens == 12 and cache.memory().tokens_held == 6
    assert cache.memory().sharing == 2.0
    cache.append(b, *kv_of([1, 2, 3, 4, 5, 6, 9], 6), tokens=[9])  # into the shared block 1
    assert cache.block_table(b) == [0, 2] and cache.block_table(a) == [0, 1]
    assert (cache.refcount(1), cache.refcount(2), cache.stats["copies_on_write"]) == (1, 1, 1)
    cache.append(a, *kv_of([1, 2, 3, 4, 5, 6, 7], 6), tokens=[7])  # block 1 is a's alone now
    assert cache.block_table(a) == [0, 1] and cache.stats["copies_on_write"] == 1
    for s, tokens in ((a, [1, 2, 3, 4, 5, 6, 7]), (b, [1, 2, 3, 4, 5, 6, 9])):
        k, v = kv_of(tokens, 0)
        q = np.random.default_rng(s).normal(size=(H, 2, E))
        np.testing.assert_allclose(cache.attention(s, q, causal="bottom-right"),
                                   attention(q, k, v, causal="bottom-right"), atol=1e-12)
    cache.free(a)
    with pytest.raises(ValueError, match=r"sequence 0 was freed; its blocks are gone \(live "
                                         r"sequences are \[1\]\)"):
        cache.fork(a)
    assert cache.refcount(0) == 1 and cache.free_blocks == 6


def test_prefix_cache_hits_lru_eviction_and_the_end_of_a_prefix_goes_first():
    bm = BlockManager(num_blocks=4, block_size=2, prefix_caching=True)
    system = [5, 5, 6, 6]
    a = bm.new_sequence(system)
    assert bm.length(a) == 0
    bm.reserve(a, 5, tokens=system + [1])
    b = bm.new_sequence(system + [2, 2])  # reuses both full blocks of the shared prompt
    assert bm.block_table(b) == [0, 1] and bm.length(b) == 4
    assert bm.stats["prefix_hit_tokens"] == 4 and bm.stats["prefix_query_tokens"] == 10
    bm.free(a)  # block 2 (a's partial block) is freed; blocks 0, 1 stay with b
    bm.free(b)  # nobody holds 0, 1: they stay cached, 1 (the end of the prefix) first in line
    assert bm.free_blocks == 4 and bm.cached_blocks == 2
    c = bm.new_sequence([9] * 6)
    bm.reserve(c, 6, tokens=[9] * 6)  # three blocks: 2, 3 free, then evicts 1 (LRU)
    assert bm.block_table(c) == [2, 3, 1] and bm.stats["evictions"] == 1
    assert bm.match_prefix(system) == [0]  # the first block of the prefix is still cached
    d = bm.new_sequence(system)
    assert bm.block_table(d) == [0] and bm.length(d) == 2 and bm.cached_blocks == 0
    with pytest.raises(OutOfBlocksError, match="needs 1 new blocks of 2 slots, but only 0 of 4"):
        bm.reserve(d, 1)


def test_refused_reserve_and_bad_arguments():
    bm = BlockManager(num_blocks=2, block_size=2)
    a = bm.new_sequence()
    bm.reserve(a, 3)
    b = bm.fork(a)
    with pytest.raises(OutOfBlocksError, match="needs 1 new blocks"):  # the copy needs a block
        bm.reserve(b, 1)
    assert bm.block_table(b) == [0, 1] and bm.length(b) == 3 and bm.refcount(1) == 2
    with pytest.raises(ValueError, match="tokens must hold n_new = 2 ids; got 1"):
        bm.reserve(a, 2, tokens=[1])
    with pytest.raises(ValueError, match=r"tokens\[1\] must be a non-negative integer; got -1"):
        bm.new_sequence([0, -1])
    with pytest.raises(TypeError, match="prefix_caching must be"):
        BlockManager(num_blocks=2, block_size=2, prefix_caching="yes")
    cache = PagedKVCache(num_blocks=4, block_size=2, num_heads=1, head_dim=2, num_layers=2)
    s = cache.new_sequence()
    x = np.zeros((1, 1, 2), np.float32)
    with pytest.raises(ValueError, match="append fills a one-layer cache; this one has 2 layers"):
        cache.append(s, x, x)
    cache.reserve(s, 2)
    cache.write(s, 0, np.ones((1, 2, 2), np.float32), np.ones((1, 2, 2), np.float32), layer=1)
    with pytest.raises(ValueError, match=r"positions 1..2 of sequence 0 are not in its latest "
                                         r"reservation, 0..1"):
        cache.write(s, 1, np.ones((1, 2, 2), np.float32), np.ones((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"layer must be an integer in \[0, 1\]; got 2"):
        cache.gather(s, layer=2)
    np.testing.assert_array_equal(cache.gather(s, layer=1)[0], 1.0)
    np.testing.assert_array_equal(cache.gather(s, layer=0)[0], 0.0)


def test_attention_with_a_mask_and_its_lse():
    rng = np.random.default_rng(3)
    cache = PagedKVCache(num_blocks=6, block_size=3, num_heads=2, head_dim=4, dtype="float64")
    s = cache.new_sequence()
    k, v = rng.normal(size=(2, 8, 4)), rng.normal(size=(2, 8, 4))
    cache.append(s, k, v)
    q = rng.normal(size=(2, 3, 4))
    mask = rng.random((3, 8)) < 0.6
    out, lse = cache.attention(s, q, mask=mask, return_lse=True)
    np.testing.assert_allclose(out, attention(q, k, v, mask=mask), atol=1e-12)
    scores = np.einsum("hle,hse->hls", q, k) / 2.0
    ref = np.log(np.where(mask, np.exp(scores), 0).sum(-1))
    np.testing.assert_allclose(lse, ref, atol=1e-12)
    with pytest.raises(TypeError, match="mask must be boolean"):
        cache.attention(s, q, mask=mask.astype(float))
    with pytest.raises(ValueError, match=r"mask must broadcast to \(H=2, L=3, n=8\)"):
        cache.attention(s, q, mask=mask[:, :5])
