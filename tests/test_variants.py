"""The variants of attention() (window, sinks, softcap, enable_gqa, score_mod, sink_logits).

In every engine that declares them: against the NumPy reference, PyTorch SDPA (enable_gqa),
flex_attention (CPU, eager forward) and gradcheck; and the refusal of engines that
do not declare them. Which engine is tested for what comes from its declaration.
"""

from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from problems import cast

import attnkit
from attnkit import attention
from attnkit.core.masks import Band, visible_mask
from attnkit.engines import ENGINES, FEATURES, capabilities

BACKENDS = attnkit.backends()
OTHERS = [b for b in BACKENDS if b != "numpy"]


def _declares(backend: str, *features: str) -> bool:
    return all(capabilities(backend).supports(f) for f in features)


@st.composite
def variant_problems(draw: st.DrawFn, features: frozenset[str], key_masks: bool = False) -> dict:
    """Shapes, L != S, masks, both causal alignments, windows (also empty), sinks, caps, groups."""
    B = draw(st.integers(1, 2))
    hkv = draw(st.integers(1, 2))
    g = draw(st.integers(1, 3)) if "enable_gqa" in features else 1
    L, S = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    E, Ev = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    hq = hkv * g
    q = rng.normal(size=(B, hq, L, E))
    k = rng.normal(size=(B, hkv, S, E))
    v = rng.normal(size=(B, hkv, S, Ev))
    p: dict = dict(q=q, k=k, v=v, enable_gqa=g > 1 or (hkv != hq))
    if p["enable_gqa"] is False and draw(st.booleans()) and "enable_gqa" in features:
        p["enable_gqa"] = True  # Hq == Hkv: the same as no grouping
    kind = draw(st.sampled_from([None, "bool", "float"]))
    if kind is not None:
        shape = (B, 1, 1 if key_masks else draw(st.sampled_from([1, L])), S)
        if kind == "bool":
            p["mask"] = rng.random(shape) < 0.7
        else:
            p["mask"] = rng.normal(size=shape)
    p["causal"] = draw(st.sampled_from([False, "top-left", "bottom-right"]))
    side = st.one_of(st.none(), st.integers(0, 6))
    if "window" in features and draw(st.booleans()):
        p["window"] = (draw(side), draw(side))
        if "sinks" in features:
            p["sinks"] = draw(st.integers(0, 4))
    if "softcap" in features and draw(st.booleans()):
        p["softcap"] = draw(st.floats(0.2, 5.0))
    if "score_mod" in features and draw(st.booleans()):
        slope = draw(st.floats(0.0, 1.0))

        def alibi(s, b, h, qi, ki):  # noqa: ANN001, ANN202 - the score_mod signature
            return s - slope * (h + 1) * abs(qi - ki) + 0.1 * b

        p["score_mod"] = alibi
    if "sink_logits" in features and draw(st.booleans()):
        shape = draw(st.sampled_from([(), (hq,), (B, hq), (B, 1)]))
        p["sink_logits"] = np.asarray(rng.normal(size=shape) * 2.0)
    return p


def _reference(p: dict) -> np.ndarray:
    """attention() by the reference engine, with grouping done by repeating the heads."""
    q, k, v = p["q"], p["k"], p["v"]
    g = q.shape[-3] // k.shape[-3]
    args = {kk: vv for kk, vv in p.items() if kk not in ("q", "k", "v", "enable_gqa")}
    return attention(q, np.repeat(k, g, axis=-3), np.repeat(v, g, axis=-3), backend="numpy", **args)


@pytest.mark.parametrize("tensors", [False, True], ids=["numpy-in", "torch-in"])
@pytest.mark.parametrize("backend", OTHERS)
def test_variants_against_reference(backend: str, tensors: bool) -> None:
    c = capabilities(backend)
    dtype = "float64" if "float64" in c.dtypes else "float32"
    # torch promotes (int index * Python float) to float32: score_mod terms carry ~1e-7
    tol = 1e-6 if dtype == "float64" else 3e-5

    @settings(max_examples=c.test_examples or 60, deadline=None)
    @given(p=variant_problems(c.features, key_masks=c.mask_rows == "key"))
    def check(p: dict) -> None:
        ref = _reference(p)
        got = attention(**cast(p, dtype, tensors), backend=backend)
        got = got.numpy() if tensors else got
        np.testing.assert_allclose(got, ref, atol=tol, rtol=tol)

    check()


def test_reference_window_sinks_definition() -> None:
    """The reference's window/sinks mask is the definition, entry by entry."""
    for L, S, left, right, sinks in [(5, 5, 2, 0, 0), (3, 7, 1, 2, 2), (6, 2, 0, 0, 1), (4, 4, None, 1, 3)]:
        got = visible_mask(L, S, window=(left, right), sinks=sinks)
        for i in range(L):
            ip = i + S - L
            for j in range(S):
                lo_ok = left is None or j >= ip - left or j < sinks
                hi_ok = right is None or j <= ip + right
                assert got[i, j] == (lo_ok and hi_ok), (L, S, left, right, sinks, i, j)


def test_band_tiles_cover_exactly_the_visible_keys() -> None:
    """Tiles skipped are hidden from every query of the block; full tiles need no mask."""
    for L, S, causal, window, sinks in [(37, 41, "top-left", (5, 0), 2), (50, 20, "bottom-right", (3, 3), 0),
                                        (16, 64, None, (None, 4), 0), (30, 30, None, (7, None), 5)]:
        band = Band.of(L, S, causal, window, sinks)
        vis = visible_mask(L, S, causal, window, sinks)
        for i0 in range(0, L, 8):
            i1 = min(i0 + 8, L)
            covered = np.zeros(S, bool)
            for j0, j1, full in band.tiles(i0, i1, 6):
                covered[j0:j1] = True
                if full:
                    assert vis[i0:i1, j0:j1].all()
            assert not vis[i0:i1, ~covered].any()


def test_windowed_flash_skips_tiles() -> None:
    """The tiled engine's work grows linearly with n for a fixed window."""
    counts = {n: sum(len(Band.of(n, n, "top-left", (64, 0)).tiles(i0, min(i0 + 32, n), 32))
                     for i0 in range(0, n, 32)) for n in (256, 512, 1024)}
    assert counts[1024] - counts[512] == 2 * (counts[512] - counts[256])  # linear in n
    assert counts[1024] < 1024 // 32 * 4  # at most 4 tiles per block of queries


@pytest.mark.parametrize("backend", [b for b in BACKENDS if _declares(b, "enable_gqa")])
def test_enable_gqa_against_torch_sdpa(backend: str) -> None:
    gen = torch.Generator().manual_seed(0)
    dtype = torch.float64 if "float64" in capabilities(backend).dtypes else torch.float32
    for hq, hkv, causal in [(8, 2, False), (6, 3, True), (4, 1, False), (3, 3, True)]:
        q = torch.randn(2, hq, 7, 8, generator=gen, dtype=dtype)
        k = torch.randn(2, hkv, 7, 8, generator=gen, dtype=dtype)
        v = torch.randn(2, hkv, 7, 5, generator=gen, dtype=dtype)
        want = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        got = attention(q, k, v, causal=causal, enable_gqa=True, backend=backend)
        torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)


def test_enable_gqa_errors() -> None:
    q, k = np.ones((1, 6, 3, 4)), np.ones((1, 4, 3, 4))
    with pytest.raises(ValueError, match="multiple of the key/value heads"):
        attention(q, k, k, enable_gqa=True)
    with pytest.raises(ValueError, match="heads dimension"):
        attention(np.ones((3, 4)), np.ones((3, 4)), np.ones((3, 4)), enable_gqa=True)
    with pytest.raises(TypeError, match="enable_gqa must be a bool"):
        attention(q, q, q, enable_gqa="yes")


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, score_mod=None, block=None) -> torch.Tensor:  # noqa: ANN001
    from torch.nn.attention.flex_attention import flex_attention

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "unfused" on CPU: the eager path is what we want
        return flex_attention(q, k, v, score_mod=score_mod, block_mask=block)


def _flex_block_mask(L: int, S: int, window: tuple, sinks: int, causal: bool):  # noqa: ANN202
    from torch.nn.attention.flex_attention import create_block_mask

    left, right = window

    def mask_mod(b, h, qi, ki):  # noqa: ANN001, ANN202
        ip = qi + S - L
        ok = (ki <= ip + right) & ((ki >= ip - left) | (ki < sinks))
        if causal:
            ok = ok & (ki <= qi + S - L)
        return ok

    return create_block_mask(mask_mod, None, None, L, S, device="cpu")


@pytest.mark.parametrize("backend", [b for b in BACKENDS
                                     if _declares(b, "window", "sinks", "softcap", "score_mod")])
def test_against_flex_attention(backend: str) -> None:
    """Windows with sinks, soft-capping and a score modifier, against PyTorch's flex_attention."""
    gen = torch.Generator().manual_seed(1)
    B, H, L, S, E = 2, 3, 40, 56, 16
    q, k, v = (torch.randn(B, H, n, E, generator=gen) for n in (L, S, S))
    cap = 2.0
    numpy_native = capabilities(backend).native == "numpy"  # its score_mod sees NumPy arrays

    def softcap_mod(s, b, h, qi, ki):  # noqa: ANN001, ANN202
        return cap * torch.tanh(s / cap)

    def alibi(s, b, h, qi, ki):  # noqa: ANN001, ANN202 - works on tensors and NumPy arrays
        return s - 0.25 * (h + 1) * abs(qi + S - L - ki) + 0.5 * b

    def ours(**kw: object) -> torch.Tensor:
        if numpy_native:
            out = attention(q.numpy(), k.numpy(), v.numpy(), backend=backend, **kw)
            return torch.from_numpy(out)
        return attention(q, k, v, backend=backend, **kw)

    for window, sinks, causal in [((8, 0), 2, True), ((5, 3), 0, False), ((0, 0), 4, True)]:
        block = _flex_block_mask(L, S, window, sinks, causal)
        align = "bottom-right" if causal else False
        want = _flex(q, k, v, block=block)
        torch.testing.assert_close(ours(window=window, sinks=sinks, causal=align), want,
                                   atol=2e-5, rtol=2e-5)
        want = _flex(q, k, v, score_mod=softcap_mod, block=block)
        torch.testing.assert_close(ours(window=window, sinks=sinks, softcap=cap, causal=align),
                                   want, atol=2e-5, rtol=2e-5)
    want = _flex(q, k, v, score_mod=alibi)
    torch.testing.assert_close(ours(score_mod=alibi), want, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if capabilities(b).gradients
                                     and "float64" in capabilities(b).dtypes])
def test_variants_gradcheck(backend: str) -> None:
    c = capabilities(backend)
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(1, 4, 5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(1, 2, 7, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(1, 2, 7, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    cases = [dict(enable_gqa=True), dict(enable_gqa=True, window=(2, 0), sinks=1, causal="bottom-right"),
             dict(enable_gqa=True, window=(1, 1)), dict(enable_gqa=True, window=(0, 0), causal=True),
             dict(enable_gqa=True, softcap=0.8),
             dict(enable_gqa=True, score_mod=lambda s, b, h, qi, ki: s * (1 + 0.1 * h) - 0.2 * abs(qi - ki)),
             dict(enable_gqa=True, window=(2, 1), sinks=2, softcap=1.5,
                  score_mod=lambda s, b, h, qi, ki: torch.sin(s)),
             dict(enable_gqa=True, causal=True, sink_logits=torch.tensor([0.5, -1.0, 2.0, 0.0],
                                                                     dtype=torch.float64))]
    for kw in cases:
        if not set(kw) - {"causal"} <= set(c.features) | {"causal"}:
            continue
        assert torch.autograd.gradcheck(
            lambda a, b, d, kw=kw: attention(a, b, d, backend=backend, **kw), (q, k, v)), kw


@pytest.mark.parametrize("backend", BACKENDS)
def test_undeclared_features_are_refused_clearly(backend: str) -> None:
    c = capabilities(backend)
    x = np.ones((1, 2, 3, 4), np.float32)
    args = {"window": (1, 0), "sinks": 1, "softcap": 2.0, "enable_gqa": True,
            "score_mod": lambda s, b, h, qi, ki: s, "sink_logits": np.zeros(2, np.float32)}
    for feature in FEATURES:
        kw = {feature: args[feature]}
        if feature == "sinks":
            kw["window"] = (1, 0)
        if c.supports(feature) and (feature != "sinks" or c.supports("window")):
            attention(x, x, x, backend=backend, **kw)
        else:
            with pytest.raises(ValueError, match=rf"backend '{backend}' does not support"):
                attention(x, x, x, backend=backend, **kw)


@pytest.mark.parametrize("bad,match", [
    (dict(window=3), "window must be None or a pair"),
    (dict(window=(-1, 0)), r"window\[0\] must be a non-negative integer"),
    (dict(window=(1, 2.5)), r"window\[1\] must be a non-negative integer"),
    (dict(sinks=-1), "sinks must be a non-negative integer"),
    (dict(softcap=0.0), "softcap must be a finite positive number"),
    (dict(softcap="big"), "softcap must be a real number"),
    (dict(score_mod=3), "score_mod must be a function"),
])
def test_bad_variant_arguments(bad: dict, match: str) -> None:
    x = np.ones((3, 4))
    with pytest.raises((TypeError, ValueError), match=match):
        attention(x, x, x, **bad)


def test_a_toy_engine_is_one_module_and_one_registry_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding an engine: one module (here built in memory) and one line in ENGINES."""
    toy = types.ModuleType("toy_engine")
    exec(  # the whole module, as a file in attnkit/engines/ would hold it
        "from attnkit.engines.base import Capabilities\n"
        "from attnkit.engines import numpy_ref\n"
        "CAPS = Capabilities(native='numpy', features=frozenset({'window', 'sinks'}))\n"
        "def available():\n    return True, 'toy'\n"
        "def run(q, k, v, mask, spec):\n    return numpy_ref.run(q, k, v, mask, spec)[0], None\n",
        toy.__dict__)
    monkeypatch.setitem(sys.modules, "toy_engine", toy)
    monkeypatch.setitem(ENGINES, "toy", "toy_engine")  # the one registry line
    assert "toy" in attnkit.backends()
    rng = np.random.default_rng(3)
    q, k, v = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 6, 3)), rng.normal(size=(2, 6, 2))
    np.testing.assert_allclose(attention(q, k, v, window=(1, 0), sinks=1, backend="toy"),
                               attention(q, k, v, window=(1, 0), sinks=1))
    with pytest.raises(ValueError, match="backend 'toy' does not support softcap"):
        attention(q, k, v, softcap=1.0, backend="toy")
    with pytest.raises(ValueError, match="never forms"):
        attention(q, k, v, backend="toy", return_weights=True)
