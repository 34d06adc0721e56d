"""Multi-head latent attention: absorbed equals naive, the cache decodes exactly.

Also: gradients are right, and bad sizes are refused.
"""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.models.mla import LatentCache, MultiHeadLatentAttention


def _layer(**kw) -> MultiHeadLatentAttention:
    torch.manual_seed(0)
    args = dict(kv_latent=8, rope_dim=4, q_latent=12)
    args.update(kw)
    return MultiHeadLatentAttention(32, 4, **args).double()


def _x(B=2, L=9, D=32, seed=1):
    return torch.randn(B, L, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kw", [{}, {"q_latent": None}, {"head_dim": 6, "v_head_dim": 5}])
def test_absorbed_equals_naive(causal, kw):
    layer = _layer(**kw)
    x = _x()
    naive, absorbed = layer(x, causal=causal), layer(x, causal=causal, mode="absorbed")
    assert float((naive - absorbed).abs().max().detach()) <= 1e-12


@pytest.mark.parametrize("mode", ["naive", "absorbed"])
def test_latent_cache_decoding_equals_full_causal(mode):
    layer, x = _layer(), _x()
    full = layer(x, causal=True)
    cache = LatentCache()
    steps = [layer(x[:, t:t + 1], cache=cache, causal="bottom-right", mode=mode)
             for t in range(x.shape[1])]
    assert float((torch.cat(steps, 1) - full).detach().abs().max()) <= 1e-12
    assert cache.length == x.shape[1]
    assert cache.nbytes == 2 * x.shape[1] * layer.cache_numbers_per_token * 8


@pytest.mark.parametrize("mode", ["naive", "absorbed"])
def test_chunked_prefill_with_the_cache_equals_full_causal(mode):
    # several queries per step against a longer cache: the absorbed path's stacked
    # queries need the bottom-right mask repeated for every head
    layer, x = _layer(), _x(L=11)
    full = layer(x, causal=True)
    cache = LatentCache()
    parts = [layer(x[:, a:b], cache=cache, causal="bottom-right", mode=mode)
             for a, b in ((0, 4), (4, 5), (5, 11))]
    assert float((torch.cat(parts, 1) - full).detach().abs().max()) <= 1e-12


def test_cache_holds_dc_plus_drope_numbers_per_token_in_one_row():
    layer = _layer()
    cache = LatentCache()
    layer(_x(B=1, L=5), cache=cache, causal="bottom-right")
    assert tuple(cache.kv.shape) == (1, 5, 12) and layer.cache_numbers_per_token == 12
    assert tuple(cache.latent.shape) == (1, 5, 8) and tuple(cache.k_rope.shape) == (1, 5, 4)
    # the latent and the rotary key are views of the one row the absorbed path reads
    assert cache.latent.data_ptr() == cache.kv.data_ptr()
    assert torch.equal(torch.cat([cache.latent, cache.k_rope], -1), cache.kv)


@pytest.mark.parametrize("mode", ["naive", "absorbed"])
def test_gradcheck(mode):
    torch.manual_seed(0)
    layer = MultiHeadLatentAttention(8, 2, kv_latent=3, rope_dim=2, q_latent=5).double()
    x = torch.randn(1, 4, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer(t, causal=True, mode=mode), (x,))


def test_parameter_gradients_agree_between_paths():
    layer, x = _layer(), _x()
    grads = []
    for mode in ("naive", "absorbed"):
        layer.zero_grad()
        layer(x, causal=True, mode=mode).square().sum().backward()
        grads.append([p.grad.clone() for p in layer.parameters()])
    for a, b in zip(*grads):
        assert float((a - b).abs().max()) <= 1e-10


def test_rope_on_the_compressed_key_cannot_be_absorbed():
    # With RoPE on W_UK c_j, the matrix between the query and c_j depends on j - i:
    # R_{j-i} W_UK. Two offsets give two different matrices, so no fixed one exists.
    from attnkit.models.positions import apply_rope

    torch.manual_seed(0)
    w_uk = torch.randn(8, 6, dtype=torch.float64)  # (d_h, d_c)
    eye = torch.eye(8, dtype=torch.float64)
    # apply_rope rotates rows: row r of apply_rope(I) is R e_r, so R = apply_rope(I)^T
    r1 = apply_rope(eye, torch.full((8,), 1.0)).T
    r5 = apply_rope(eye, torch.full((8,), 5.0)).T
    v = torch.randn(1, 8, dtype=torch.float64)
    assert torch.allclose(apply_rope(v, torch.tensor([5.0])), (r5 @ v.T).T)
    assert float((r1 @ w_uk - r5 @ w_uk).abs().max()) > 1e-3


def test_refusals():
    with pytest.raises(ValueError, match="kv_latent must be a positive integer; got 0"):
        MultiHeadLatentAttention(32, 4, kv_latent=0)
    with pytest.raises(ValueError, match="rope_dim must be even"):
        MultiHeadLatentAttention(32, 4, kv_latent=8, rope_dim=3)
    with pytest.raises(ValueError, match="embed_dim must be divisible"):
        MultiHeadLatentAttention(30, 4, kv_latent=8)
    layer = _layer()
    with pytest.raises(ValueError, match="mode must be one of"):
        layer(_x(), mode="fast")
    with pytest.raises(ValueError, match="x must have shape"):
        layer(torch.zeros(1, 3, 7, dtype=torch.float64))
    with pytest.raises(TypeError, match="cache must be a LatentCache"):
        layer(_x(), cache=attnkit.KVCache())
    cache = LatentCache()
    with pytest.raises(ValueError, match="latent and k_rope must agree"):
        cache.append(torch.zeros(1, 2, 3), torch.zeros(1, 3, 2))
    cache.append(torch.zeros(1, 2, 3), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="do not fit the cache"):
        cache.append(torch.zeros(1, 1, 4), torch.zeros(1, 1, 1))


def test_lazy_export():
    assert attnkit.MultiHeadLatentAttention is MultiHeadLatentAttention
    assert "MultiHeadLatentAttention" in dir(attnkit)
