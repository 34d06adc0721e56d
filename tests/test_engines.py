"""Every engine against the NumPy reference (float64), and against PyTorch's own SDPA.

One parametrised suite: a new engine in the registry is checked here without a new
test. What each engine is tested for comes from its own declaration
(``attnkit.engines.capabilities(name)``), never from a list kept here.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from problems import cast

import attnkit
from attnkit import attention
from attnkit.engines import capabilities

BACKENDS = attnkit.backends()
OTHERS = [b for b in BACKENDS if b != "numpy"]

def caps(backend: str) -> dict:
    """The engine's declared capabilities, as this suite uses them."""
    c = capabilities(backend)
    return {"dtypes": tuple(d for d in ("float64", "float32") if d in c.dtypes),
            "masks": c.mask_rows, "examples": c.test_examples, "decl": c}


@st.composite
def problems(draw: st.DrawFn, masks: str = "any") -> dict:
    """A random attention problem: batch dims that broadcast, L != S, masks, causal, scale."""
    nb = draw(st.integers(0, 2))
    batch = tuple(draw(st.integers(1, 3)) for _ in range(nb))

    def bshape(full: tuple[int, ...] = batch) -> tuple[int, ...]:
        """A version of ``full`` with some dims set to 1 or leading dims dropped."""
        shape = tuple(d if draw(st.booleans()) else 1 for d in full)
        drop = draw(st.integers(0, len(shape)))
        return shape[drop:]

    L, S = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    E, Ev = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(*bshape(), L, E))
    k = rng.normal(size=(*bshape(), S, E))
    v = rng.normal(size=(*bshape(), S, Ev))
    kind = draw(st.sampled_from([None, "bool", "float"]))
    mask = None
    if kind is not None:
        rows = 1 if masks == "key" else draw(st.sampled_from([1, L]))
        out_batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        mshape = (*bshape(out_batch), rows, S)
        if kind == "bool":
            mask = rng.random(mshape) < 0.75
        else:
            mask = rng.normal(size=mshape)
            mask[rng.random(mshape) < 0.2] = -np.inf
    causal = draw(st.sampled_from([False, True, "top-left", "bottom-right"]))
    scale = draw(st.one_of(st.none(), st.floats(0.05, 3.0)))
    return dict(q=q, k=k, v=v, mask=mask, causal=causal, scale=scale)


def _tol(dtype: str) -> float:
    return 1e-10 if dtype == "float64" else 2e-5


@pytest.mark.parametrize("tensors", [False, True], ids=["numpy-in", "torch-in"])
@pytest.mark.parametrize("backend", OTHERS)
def test_against_reference(backend: str, tensors: bool) -> None:
    c = caps(backend)

    @settings(max_examples=c["examples"] or settings().max_examples)
    @given(p=problems(masks=c["masks"]), dtype=st.sampled_from(c["dtypes"]))
    def check(p: dict, dtype: str) -> None:
        ref = attention(**cast(p, "float64", False), backend="numpy")
        got = attention(**cast(p, dtype, tensors), backend=backend)
        assert isinstance(got, torch.Tensor) == tensors
        got = got.numpy() if tensors else got
        assert got.shape == ref.shape and str(got.dtype) == dtype
        np.testing.assert_allclose(got, ref, atol=_tol(dtype), rtol=_tol(dtype))

    check()


@pytest.mark.parametrize("backend", [b for b in BACKENDS if capabilities(b).weights])
def test_weights_against_reference(backend: str) -> None:
    @given(p=problems())
    def check(p: dict) -> None:
        out, w = attention(**p, backend=backend, return_weights=True)
        _, w_ref = attention(**p, backend="numpy", return_weights=True)
        np.testing.assert_allclose(w, w_ref, atol=1e-12)
        sums = w.sum(-1)
        assert np.all((np.abs(sums - 1) < 1e-9) | (sums == 0))

    check()


@pytest.mark.parametrize("backend", BACKENDS)
def test_against_torch_sdpa(backend: str) -> None:
    """Where the semantics coincide (no fully masked rows, top-left causal)."""
    c = caps(backend)
    gen = torch.Generator().manual_seed(0)
    for B, H, L, S, E, Ev in [(2, 3, 5, 7, 8, 4), (1, 2, 6, 6, 16, 16), (3, 1, 9, 4, 4, 2)]:
        q = torch.randn(B, H, L, E, generator=gen, dtype=torch.float64)
        k = torch.randn(B, H, S, E, generator=gen, dtype=torch.float64)
        v = torch.randn(B, H, S, Ev, generator=gen, dtype=torch.float64)
        if c["masks"] == "key":
            bool_mask = torch.rand(B, 1, 1, S, generator=gen) < 0.7
        else:
            bool_mask = torch.rand(B, 1, L, S, generator=gen) < 0.7
        bool_mask[..., 0] = True  # keep every row alive: SDPA's float path gives NaN otherwise
        float_mask = torch.randn(B, H, L, S, generator=gen, dtype=torch.float64)
        cases = [dict(), dict(mask=bool_mask), dict(scale=0.3)]
        if c["masks"] != "key":
            cases.append(dict(mask=float_mask))
        if L <= S:
            cases.append(dict(causal=True))
        for dtype in c["dtypes"]:
            tdt = getattr(torch, dtype)
            for case in cases:
                expected = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=case.get("mask"), is_causal=bool(case.get("causal")),
                    scale=case.get("scale"))
                args = {kk: (vv.to(tdt) if isinstance(vv, torch.Tensor) and vv.is_floating_point()
                             else vv) for kk, vv in case.items()}
                got = attention(q.to(tdt), k.to(tdt), v.to(tdt), **args, backend=backend)
                torch.testing.assert_close(got.double(), expected, atol=_tol(dtype), rtol=_tol(dtype))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fully_masked_rows_are_zero(backend: str) -> None:
    rng = np.random.default_rng(1)
    q, k, v = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 6, 3)), rng.normal(size=(2, 6, 5))
    mask = np.ones((2, 1, 6), bool)
    mask[1] = False  # every key of the second sequence is masked
    for dtype in caps(backend)["dtypes"]:
        out = attention(q.astype(dtype), k.astype(dtype), v.astype(dtype), mask=mask,
                        backend=backend)
        assert np.isfinite(out).all()
        np.testing.assert_array_equal(out[1], 0.0)
        # bottom-right with L > S: the first L - S queries see nothing
    q2 = rng.normal(size=(5, 3))
    out = attention(q2.astype("float32"), k[0, :2].astype("float32"), v[0, :2].astype("float32"),
                    causal="bottom-right", backend=backend)
    np.testing.assert_array_equal(out[:3], 0.0)
    assert np.abs(out[3:]).sum() > 0
    if capabilities(backend).weights:
        _, w = attention(q, k, v, mask=mask, backend=backend, return_weights=True)
        np.testing.assert_array_equal(w[1], 0.0)
    if "float64" in caps(backend)["dtypes"]:
        fmask = np.where(mask, 0.0, -np.inf)
        out = attention(q, k, v, mask=fmask, backend=backend)
        np.testing.assert_array_equal(out[1], 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("L,S", [(0, 4), (3, 0), (0, 0)])
def test_empty_lengths(backend: str, L: int, S: int) -> None:
    q, k, v = np.ones((2, L, 3), np.float32), np.ones((2, S, 3), np.float32), np.ones((2, S, 5), np.float32)
    out = attention(q, k, v, backend=backend)
    assert out.shape == (2, L, 5)
    np.testing.assert_array_equal(out, 0.0)
    t = attention(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), backend=backend)
    assert isinstance(t, torch.Tensor) and t.shape == (2, L, 5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_logits(backend: str) -> None:
    rng = np.random.default_rng(2)
    q, k, v = rng.normal(size=(4, 8)), rng.normal(size=(6, 8)), rng.normal(size=(6, 3))
    for dtype in caps(backend)["dtypes"]:
        x = [a.astype(dtype) for a in (q, k, v)]
        out = attention(*x, scale=1e4, backend=backend)  # scores of order 1e4: one-hot rows
        assert np.isfinite(out).all()
        expected = v[np.argmax(q @ k.T, axis=1)]
        np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if "float16" in capabilities(b).dtypes])
def test_float16_scores_do_not_overflow(backend: str) -> None:
    """q.k reaches ~1e5 > float16's max 65504; the scaled scores (/8) fit."""
    rng = np.random.default_rng(3)
    E = 64
    q = np.full((3, E), 40.0) * rng.choice([0.9, 1.0], size=(3, E))
    k = np.full((5, E), 40.0) * rng.choice([0.9, 1.0], size=(5, E))
    v = rng.normal(size=(5, 4))
    assert (q @ k.T).max() > np.finfo(np.float16).max
    ref = attention(q, k, v, backend="numpy")
    for tensors in (False, True):
        args = [a.astype(np.float16) for a in (q, k, v)]
        if tensors:
            args = [torch.from_numpy(a) for a in args]
        out = attention(*args, backend=backend)
        out = out.numpy() if tensors else out
        assert out.dtype == np.float16 and np.isfinite(out).all()
        np.testing.assert_allclose(out.astype(np.float64), ref, atol=2e-2)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if capabilities(b).gradients
                                     and "float64" in capabilities(b).dtypes])
def test_gradcheck(backend: str) -> None:
    gen = torch.Generator().manual_seed(4)
    q = torch.randn(2, 4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(2, 5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(2, 5, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.rand(2, 4, 5, generator=gen) < 0.7
    mask[1, 2] = False  # a fully masked row: zero output, finite (zero) gradients
    for kwargs in (dict(), dict(mask=mask), dict(causal=True), dict(causal="bottom-right"),
                   dict(mask=mask, causal="bottom-right", scale=0.7)):
        assert torch.autograd.gradcheck(
            lambda a, b, c, kw=kwargs: attention(a, b, c, backend=backend, **kw), (q, k, v))
    out = attention(q, k, v, mask=mask, backend=backend)
    out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[1, 2] == 0).all()


@pytest.mark.parametrize("backend", [b for b in OTHERS if capabilities(b).gradients])
def test_gradients_match_torch_engine(backend: str) -> None:
    if backend == "torch":
        pytest.skip("the torch engine is the reference for gradients")
    dtype = caps(backend)["dtypes"][0]
    tdt = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(5)
    base = [torch.randn(2, 2, n, d, generator=gen, dtype=tdt) for n, d in ((7, 4), (9, 4), (9, 3))]
    mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    mask[0, ..., 6:] = False
    for kwargs in (dict(causal="bottom-right"), dict(mask=mask), dict(causal=True, mask=mask)):
        grads = []
        for b in ("torch", backend):
            xs = [x.clone().requires_grad_(True) for x in base]
            out = attention(*xs, backend=b, **kwargs)
            (out * torch.linspace(-1, 1, out.shape[-1], dtype=tdt)).sum().backward()
            grads.append([x.grad for x in xs])
        for g_ref, g in zip(*grads):
            torch.testing.assert_close(g, g_ref, atol=_tol(dtype) * 10, rtol=_tol(dtype) * 10)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", [b for b in BACKENDS
                                     if "cuda" in capabilities(b).devices])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_cuda(backend: str, dtype: torch.dtype) -> None:
    """On a GPU: outputs on the input's device, error within the plain code's.

    The error is at most ~2x a plain same-precision
    implementation's error, both against a float64 reference (STYLE.md's rule).
    """
    gen = torch.Generator(device="cuda").manual_seed(6)
    B, H, L, S, E = 2, 4, 300, 300, 64
    q, k, v = (torch.randn(B, H, n, E, device="cuda", generator=gen) for n in (L, S, S))
    for causal in (False, "top-left", "bottom-right"):
        ref = attention(q.double(), k.double(), v.double(), causal=causal, backend="torch")
        qq, kk, vv = (x.to(dtype) for x in (q, k, v))
        got = attention(qq, kk, vv, causal=causal, backend=backend)
        assert got.device.type == "cuda" and got.dtype == dtype
        plain = _plain(qq, kk, vv, causal)
        err, err_plain = (got.double() - ref).abs().max().item(), (plain.double() - ref).abs().max().item()
        assert err <= 2 * err_plain + 1e-6, (err, err_plain)


def _plain(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: object) -> torch.Tensor:
    """Textbook attention entirely in the inputs' precision."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        L, S = scores.shape[-2:]
        allowed = torch.from_numpy(attnkit.causal_mask(
            L, S, alignment="top-left" if causal is True or causal == "top-left" else "bottom-right"))
        scores = scores.masked_fill(~allowed.to(scores.device), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def test_backends_lists_reference_first() -> None:
    assert BACKENDS[0] == "numpy"
    assert {"torch", "sdpa"} <= set(BACKENDS)
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        assert "triton" not in BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_come_back_or_are_refused(backend: str) -> None:
    """The probe: tensors that need gradients come back with them, or a clear refusal.

    Never a result without a ``grad_fn`` from inputs that require grad (a gradient
    lost silently); what happens follows the engine's declared ``gradients``.
    """
    c = capabilities(backend)
    dtype = getattr(torch, caps(backend)["dtypes"][0])
    gen = torch.Generator().manual_seed(7)
    base = [torch.randn(2, n, 4, generator=gen, dtype=dtype) for n in (3, 5, 5)]
    for needs in ((0, 1, 2), (1,)):  # q, k and v; only k
        xs = [x.clone().requires_grad_(i in needs) for i, x in enumerate(base)]
        if c.gradients:
            out = attention(*xs, causal="bottom-right", backend=backend)
            assert out.grad_fn is not None, backend
            out.square().sum().backward()
            for i, x in enumerate(xs):
                assert (x.grad is not None) == (i in needs)
                if x.grad is not None:
                    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        else:
            with pytest.raises(ValueError, match=rf"backend '{backend}' computes no gradients, but "
                                                 r".*require.* grad.*use a backend that carries"):
                attention(*xs, backend=backend)
            with torch.no_grad():  # inference asks for no gradient: every engine serves it
                assert attention(*xs, backend=backend).grad_fn is None
            assert attention(*(x.detach() for x in xs), backend=backend).grad_fn is None
    # a floating mask that requires grad: its gradient, or a clear refusal
    mask = torch.randn(3, 5, generator=gen, dtype=dtype, requires_grad=True)
    if c.masks == ("bool",) or c.mask_rows == "key":
        mask = torch.randn(1, 5, generator=gen, dtype=dtype, requires_grad=True)
    if "float" not in c.masks:
        return
    if c.mask_gradients:
        attention(*base, mask=mask, backend=backend).sum().backward()
        assert mask.grad is not None and torch.isfinite(mask.grad).all()
    else:
        with pytest.raises(ValueError, match="mask requires grad"):
            attention(*base, mask=mask, backend=backend)


def test_numpy_inputs_never_need_gradients() -> None:
    """NumPy arrays carry no gradient: every engine takes them, whatever it declares."""
    q, k, v = (np.random.default_rng(8).normal(size=(3, 4)) for _ in range(3))
    ref = attention(q, k, v)
    for backend in BACKENDS:
        if "float64" in capabilities(backend).dtypes:
            np.testing.assert_allclose(attention(q, k, v, backend=backend), ref, atol=1e-12)
