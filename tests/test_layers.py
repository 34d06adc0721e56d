"""Attention layers: the classes, multi-head vs PyTorch, KV cache, GQA/MQA, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import attnkit
from attnkit import example
from attnkit.models.layers import (
    KVCache,
    MultiHeadAttention,
    NumpyAttention,
    RelativePositionBias,
    ScaledDotProductAttention,
    SelfAttention,
    kv_cache_bytes,
    repeat_kv,
)
from attnkit.models.positions import alibi_bias

ROW0 = [0.2254, 0.4135, 0.2964, 0.2964]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=dtype)


def _pair(num_heads: int = 4, embed_dim: int = 8, bias: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=True).double()
    ours = MultiHeadAttention.from_torch(ref)
    return ref, ours


# ------------------------------------------------------------------ single head
def test_numpy_attention_example() -> None:
    out, w = NumpyAttention()(example.Q, example.K, example.V, return_weights=True)
    np.testing.assert_allclose(out[0], ROW0, atol=5e-5)
    np.testing.assert_allclose(w.sum(-1), 1.0)
    np.testing.assert_array_equal(out, attnkit.attention(example.Q, example.K, example.V))
    causal = NumpyAttention()(example.Q, example.K, example.V, causal=True)
    np.testing.assert_array_equal(causal[0], example.V[0])
    assert "NumpyAttention" in repr(NumpyAttention(scale=0.5))


def test_numpy_attention_errors() -> None:
    with pytest.raises(TypeError, match="q must be a numpy"):
        NumpyAttention()(torch.ones(2, 2), example.K, example.V)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scale"):
        NumpyAttention(scale="big")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale"):
        NumpyAttention(scale=float("inf"))


@pytest.mark.parametrize("backend", ["torch", "sdpa"])
def test_sdpa_module_matches_numpy(backend: str) -> None:
    q, k, v = _randn(2, 3, 5, 4, seed=1), _randn(2, 3, 6, 4, seed=2), _randn(2, 3, 6, 3, seed=3)
    mask = torch.from_numpy(attnkit.key_padding_mask([4, 6], 6))[:, None]  # (2, 1, 1, 6)
    mod = ScaledDotProductAttention(backend=backend)
    for kwargs in ({}, {"mask": mask}, {"causal": "bottom-right"}, {"mask": mask, "causal": True}):
        got = mod(q, k, v, **kwargs)
        want = attnkit.attention(q.numpy(), k.numpy(), v.numpy(),
                                 **{a: (b.numpy() if torch.is_tensor(b) else b)
                                    for a, b in kwargs.items()})
        np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    assert "backend" in repr(mod)
    with pytest.raises(ValueError, match="backend"):
        ScaledDotProductAttention(backend="cuda")


def test_self_attention_batching_and_masks() -> None:
    torch.manual_seed(0)
    head = SelfAttention(6, d_k=4, d_v=3).double()
    x = _randn(3, 5, 6)
    out, w = head(x, causal=True, return_weights=True)
    assert out.shape == (3, 5, 3) and w.shape == (3, 5, 5)
    # a batch is the same as each sequence on its own
    for b in range(3):
        torch.testing.assert_close(head(x[b], causal=True), out[b])
    # the formula written out
    q, k, v = head.W_q(x), head.W_k(x), head.W_v(x)
    scores = q @ k.transpose(-2, -1) / 2.0
    scores = scores.masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
    torch.testing.assert_close(out, torch.softmax(scores, -1) @ v)
    # padding: masked keys get weight zero
    pad = torch.from_numpy(attnkit.key_padding_mask([5, 2, 3], 5))  # (3, 1, 5)
    _, w = head(x, mask=pad, return_weights=True)
    assert torch.all(w[1, :, 2:] == 0) and torch.all(w[2, :, 3:] == 0)
    with pytest.raises(ValueError, match="last dimension 6"):
        head(_randn(2, 5, 7))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        head(np.ones((5, 6)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="d_k"):
        SelfAttention(6, d_k=0)


# ------------------------------------------------------------------ vs PyTorch
@pytest.mark.parametrize("bias", [True, False])
def test_mha_matches_torch_no_mask(bias: bool) -> None:
    ref, ours = _pair(bias=bias)
    x = _randn(2, 5, 8, seed=5)
    want, want_w = ref(x, x, x, need_weights=True, average_attn_weights=False)
    got, got_w = ours(x, return_weights=True)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_w, want_w)
    # cross-attention: different key/value sequence
    mem = _randn(2, 7, 8, seed=6)
    torch.testing.assert_close(ours(x, mem, mem), ref(x, mem, mem, need_weights=False)[0])
    # unbatched
    torch.testing.assert_close(ours(x[0]), ref(x[0], x[0], x[0], need_weights=False)[0])


def test_mha_matches_torch_with_masks() -> None:
    ref, ours = _pair(num_heads=2)
    x = _randn(3, 6, 8, seed=7)
    # causal: PyTorch's boolean attn_mask is True where a key is *hidden*
    hidden = torch.ones(6, 6, dtype=torch.bool).triu(1)
    want = ref(x, x, x, attn_mask=hidden, need_weights=False)[0]
    torch.testing.assert_close(ours(x, causal=True), want)
    torch.testing.assert_close(ours(x, mask=~hidden), want)
    # key padding: True = padding in PyTorch; ours is (B, 1, 1, S) with True = real token
    lengths = [6, 4, 1]
    take = torch.from_numpy(attnkit.key_padding_mask(lengths, 6))[:, None]  # (3, 1, 1, 6)
    want = ref(x, x, x, key_padding_mask=~take[:, 0, 0], need_weights=False)[0]
    torch.testing.assert_close(ours(x, mask=take), want)
    # both, and a float mask (added to the scores)
    want = ref(x, x, x, key_padding_mask=~take[:, 0, 0], attn_mask=hidden,
               need_weights=False)[0]
    torch.testing.assert_close(ours(x, mask=take, causal=True), want)
    bias = _randn(6, 6, seed=8)
    want = ref(x, x, x, attn_mask=bias, need_weights=False)[0]
    torch.testing.assert_close(ours(x, mask=bias), want)


def test_mha_sdpa_backend_matches() -> None:
    ref, ours = _pair()
    fused = MultiHeadAttention.from_torch(ref, backend="sdpa")
    x = _randn(2, 5, 8, seed=9)
    torch.testing.assert_close(fused(x, causal=True), ours(x, causal=True))


def test_from_torch_errors() -> None:
    with pytest.raises(TypeError, match="mha must be"):
        MultiHeadAttention.from_torch(nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kdim"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(4, 2, kdim=3, vdim=3))
    with pytest.raises(ValueError, match="add_bias_kv"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(4, 2, add_bias_kv=True))


def test_mha_argument_errors() -> None:
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        MultiHeadAttention(12, 4, num_kv_heads=3)
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadAttention(8, 0)
    with pytest.raises(ValueError, match="even head width"):
        MultiHeadAttention(6, 2, rope=True)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="query must have last dimension 8"):
        mha(torch.ones(1, 3, 4))
    with pytest.raises(ValueError, match="same \\(B, S\\)"):
        mha(torch.ones(1, 3, 8), torch.ones(1, 4, 8), torch.ones(1, 5, 8))
    with pytest.raises(ValueError, match="batched"):
        mha(torch.ones(1, 3, 8), torch.ones(4, 8))
    with pytest.raises(ValueError, match="bottom-right"):
        mha(torch.ones(1, 3, 8), cache=KVCache(), causal=True)
    with pytest.raises(TypeError, match="cache must be"):
        mha(torch.ones(1, 3, 8), cache={})  # type: ignore[arg-type]


# ------------------------------------------------------------------ KV cache
@pytest.mark.parametrize("num_kv_heads,rope", [(4, False), (2, False), (1, True), (4, True)])
def test_cache_decoding_equals_full_causal(num_kv_heads: int, rope: bool) -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, num_kv_heads=num_kv_heads, rope=rope).double()
    x = _randn(2, 9, 16, seed=10)
    full = mha(x, causal=True)
    # token by token
    cache = KVCache()
    steps = [mha(x[:, t : t + 1], cache=cache, causal="bottom-right") for t in range(9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    assert cache.length == 9
    assert cache.k.shape == (2, num_kv_heads, 9, 4)
    # a prompt of 4 tokens at once, then one token at a time
    cache = KVCache()
    parts = [mha(x[:, :4], cache=cache, causal="bottom-right")]
    parts += [mha(x[:, t : t + 1], cache=cache, causal="bottom-right") for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full)


def test_cache_memory_and_shapes() -> None:
    torch.manual_seed(0)
    D, H, T, B = 32, 8, 5, 3
    sizes = {}
    for Hkv in (8, 2, 1):  # multi-head, grouped-query, multi-query
        mha = MultiHeadAttention(D, H, num_kv_heads=Hkv)
        assert mha.k_proj.out_features == mha.v_proj.out_features == Hkv * (D // H)
        assert mha.q_proj.out_features == D
        cache = KVCache()
        out = mha(torch.randn(B, T, D), cache=cache, causal="bottom-right")
        assert out.shape == (B, T, D)
        assert cache.k.shape == cache.v.shape == (B, Hkv, T, D // H)
        assert cache.nbytes == kv_cache_bytes(layers=1, kv_heads=Hkv, head_dim=D // H,
                                              tokens=T, batch=B, bytes_per_element=4)
        sizes[Hkv] = cache.nbytes
    assert sizes[8] == 4 * sizes[2] == 8 * sizes[1]


def test_kv_cache_bytes_llama2_70b() -> None:
    gqa = kv_cache_bytes(layers=80, kv_heads=8, head_dim=128, tokens=4096)
    assert gqa == 2 * 80 * 8 * 128 * 4096 * 2 == 1_342_177_280  # 1.25 GiB
    assert kv_cache_bytes(layers=80, kv_heads=64, head_dim=128, tokens=4096) == 8 * gqa
    with pytest.raises(ValueError, match="tokens"):
        kv_cache_bytes(layers=80, kv_heads=8, head_dim=128, tokens=0)


def test_kv_cache_errors_and_reset() -> None:
    cache = KVCache()
    assert cache.length == 0 and cache.nbytes == 0
    cache.append(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 5))
    with pytest.raises(ValueError, match="does not fit"):
        cache.append(torch.zeros(1, 3, 1, 4), torch.zeros(1, 3, 1, 5))
    with pytest.raises(ValueError, match="dtype"):
        cache.append(torch.zeros(1, 2, 1, 4, dtype=torch.float64), torch.zeros(1, 2, 1, 5))
    with pytest.raises(ValueError, match="agree"):
        cache.append(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 2, 5))
    with pytest.raises(ValueError, match="shape"):
        cache.append(torch.zeros(2, 1, 4), torch.zeros(2, 1, 4))
    with pytest.raises(TypeError, match="k must"):
        cache.append(np.zeros((1, 2, 1, 4)), torch.zeros(1, 2, 1, 5))  # type: ignore[arg-type]
    assert "length=3" in repr(cache)
    cache.reset()
    assert cache.length == 0


# ------------------------------------------------------------------ GQA
def test_gqa_with_all_heads_is_mha() -> None:
    torch.manual_seed(0)
    a = MultiHeadAttention(12, 3).double()
    torch.manual_seed(0)
    b = MultiHeadAttention(12, 3, num_kv_heads=3).double()
    x = _randn(2, 4, 12, seed=11)
    torch.testing.assert_close(a(x, causal=True), b(x, causal=True))


def test_gqa_equals_mha_with_shared_kv_weights() -> None:
    """GQA is MHA whose key/value heads are copies within each group."""
    torch.manual_seed(0)
    H, Hkv, Dh = 6, 2, 3
    gqa = MultiHeadAttention(H * Dh, H, num_kv_heads=Hkv).double()
    mha = MultiHeadAttention(H * Dh, H).double()
    with torch.no_grad():
        for name in ("q_proj", "out_proj"):
            getattr(mha, name).load_state_dict(getattr(gqa, name).state_dict())
        for name in ("k_proj", "v_proj"):
            w = getattr(gqa, name).weight.view(Hkv, 1, Dh, -1)
            getattr(mha, name).weight.copy_(repeat_kv(w, H // Hkv).reshape(H * Dh, -1))
            bias = getattr(gqa, name).bias.view(Hkv, 1, Dh)
            getattr(mha, name).bias.copy_(repeat_kv(bias, H // Hkv).reshape(-1))
    x = _randn(2, 5, H * Dh, seed=12)
    torch.testing.assert_close(gqa(x, causal=True), mha(x, causal=True))


def test_repeat_kv() -> None:
    x = np.arange(2 * 3 * 1 * 2).reshape(2, 3, 1, 2).astype(float)
    got = repeat_kv(x, 2)
    assert got.shape == (2, 6, 1, 2)
    np.testing.assert_array_equal(got[:, 0::2], x)
    np.testing.assert_array_equal(got[:, 1::2], x)
    np.testing.assert_array_equal(repeat_kv(torch.from_numpy(x), 2).numpy(), got)
    assert repeat_kv(x, 1) is x
    with pytest.raises(ValueError, match="n_rep"):
        repeat_kv(x, 0)
    with pytest.raises(ValueError, match="Hkv"):
        repeat_kv(np.ones((2, 2)), 2)
    with pytest.raises(TypeError, match="x must"):
        repeat_kv([1, 2, 3], 2)


# ------------------------------------------------------------------ positions in layers
def test_relative_position_bias_depends_on_distance_only() -> None:
    torch.manual_seed(0)
    rpb = RelativePositionBias(num_heads=3, num_buckets=8, max_distance=16).double()
    b = rpb(6)
    assert b.shape == (3, 6, 6)
    for offset in range(-5, 6):
        diag = torch.diagonal(b, offset=offset, dim1=1, dim2=2)
        torch.testing.assert_close(diag, diag[:, :1].expand_as(diag))
    torch.testing.assert_close(rpb(2, 6), b[:, 4:])  # the last two queries
    # as a float mask in attention
    mha = MultiHeadAttention(6, 3).double()
    assert mha(_randn(1, 6, 6), mask=b).shape == (1, 6, 6)
    with pytest.raises(ValueError, match="num_buckets"):
        RelativePositionBias(2, num_buckets=2)


def test_alibi_as_mask() -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).double()
    x = _randn(1, 5, 8)
    bias = torch.from_numpy(alibi_bias(2, 5))  # (H, L, S), broadcasts over B
    out, w = mha(x, mask=bias, causal=True, return_weights=True)
    assert out.shape == (1, 5, 8) and torch.all(w.triu(1) == 0)


# ------------------------------------------------------------------ gradients
def test_gradcheck_mha() -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 2, num_kv_heads=1, rope=True).double()
    x = _randn(1, 3, 4).requires_grad_()
    mask = torch.tensor([[True, True, False]])
    assert torch.autograd.gradcheck(lambda t: mha(t, mask=mask, causal=True), (x,))
    assert torch.autograd.gradcheck(lambda t: mha(t), (x,))
    # gradients reach every parameter
    mha(x, causal=True).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in mha.parameters())


def test_gradcheck_self_attention() -> None:
    torch.manual_seed(0)
    head = SelfAttention(3, d_k=2).double()
    x = _randn(2, 4, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: head(t, causal=True), (x,))


@pytest.mark.parametrize("layer", ["self", "mha"])
def test_layers_train_only_through_engines_that_carry_gradients(layer: str) -> None:
    """MultiHeadAttention(backend='numpy') trained only out_proj once: now it refuses to train."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)

    def make(backend: str) -> torch.nn.Module:
        if layer == "self":
            return SelfAttention(16, d_k=8, backend=backend)
        return MultiHeadAttention(16, 4, num_kv_heads=2, backend=backend)

    with pytest.raises(ValueError, match=r"is training .*, but backend 'numpy' computes no gradients"):
        make("numpy")(x)
    with torch.no_grad():  # inference: no gradient asked for, every engine serves
        assert make("numpy")(x).shape[:2] == (2, 5)
    assert make("numpy").requires_grad_(False)(x).grad_fn is None  # frozen
    for backend in ("torch", "sdpa", "flash"):
        module = make(backend)
        module(x, causal=True).square().sum().backward()
        for name, p in module.named_parameters():  # the projections before attention too
            assert p.grad is not None and p.grad.abs().sum() > 0, (backend, name)


def test_mha_groups_heads_without_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grouped-query heads reach attention() as Hkv heads with enable_gqa, not repeated copies."""
    import attnkit.models.layers as layers

    attention = attnkit.attention
    torch.manual_seed(1)
    mha = MultiHeadAttention(16, 4, num_kv_heads=2, backend="torch")
    x = torch.randn(2, 6, 16)
    seen = {}

    def spy(q, k, v, **kw):  # what the layer hands to attention()
        seen.update(q=q.shape, k=k.shape, enable_gqa=kw["enable_gqa"])
        return attention(q, k, v, **kw)

    monkeypatch.setattr(layers, "attention", spy)
    out = mha(x, causal=True)
    assert seen == {"q": (2, 4, 6, 4), "k": (2, 2, 6, 4), "enable_gqa": True}
    # the same numbers as the copy that repeat_kv makes
    B, L, H, Hkv, Dh = 2, 6, 4, 2, 4
    q = mha.q_proj(x).view(B, L, H, Dh).transpose(1, 2)
    k = repeat_kv(mha.k_proj(x).view(B, L, Hkv, Dh).transpose(1, 2), H // Hkv)
    v = repeat_kv(mha.v_proj(x).view(B, L, Hkv, Dh).transpose(1, 2), H // Hkv)
    ref = mha.out_proj(attention(q, k, v, causal=True, backend="torch").transpose(1, 2).reshape(B, L, -1))
    torch.testing.assert_close(out, ref)
