"""Learned sink logits (gpt-oss): one logit per head in every softmax denominator.

The definition (a key with score ``s_h`` and a zero value), in every engine that
declares ``sink_logits``: against the NumPy reference, against PyTorch's
flex_attention (an extra key scored by a ``score_mod``; its log-sum-exp route too),
gradients by gradcheck (the sink logits' own included), the flash engines' initial
state, and the refusals.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import attnkit
from attnkit import attention
from attnkit.engines import capabilities, numpy_ref
from attnkit.engines.flash_numpy import flash_attention_numpy
from attnkit.engines.flash_torch import flash_attention_torch

BACKENDS = attnkit.backends()
SINKING = [b for b in BACKENDS if capabilities(b).supports("sink_logits")]


def _definition(q: np.ndarray, k: np.ndarray, v: np.ndarray, sink: np.ndarray,
                allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """gpt-oss's formulation: append the sink's column to the scores, softmax, drop it."""
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])  # (..., L, S)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    column = np.broadcast_to(sink[..., None, None], (*scores.shape[:-1], 1))
    full = np.concatenate([scores, column], axis=-1)  # (..., L, S + 1)
    w = np.exp(full - full.max(-1, keepdims=True))
    w = w / w.sum(-1, keepdims=True)
    return w[..., :-1] @ v, w[..., :-1]  # the sink's value is zero: drop its column


def _problem(seed: int = 0, B: int = 2, H: int = 3, L: int = 6, S: int = 9, E: int = 4,
             Ev: int = 5) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    q, k = rng.normal(size=(B, H, L, E)), rng.normal(size=(B, H, S, E))
    v, sink = rng.normal(size=(B, H, S, Ev)), rng.normal(size=H) * 2.0
    return q, k, v, sink


def test_reference_is_the_definition() -> None:
    q, k, v, sink = _problem()
    allowed = np.random.default_rng(1).random((6, 9)) < 0.6
    allowed[2] = False  # a row that sees no key: all its weight goes to the sink
    for mask in (None, allowed):
        want_out, want_w = _definition(q, k, v, sink, mask)
        out, w = attention(q, k, v, mask=mask, sink_logits=sink, return_weights=True)
        np.testing.assert_allclose(out, want_out, atol=1e-13)
        np.testing.assert_allclose(w, want_w, atol=1e-13)
    assert (w.sum(-1) < 1).all()  # the sink always takes some weight
    np.testing.assert_array_equal(out[:, :, 2], 0.0)


def test_the_sink_gates_each_row_by_a_sigmoid() -> None:
    """o_sink = sigmoid(lse - s_h) * o: the sink rescales each output row."""
    q, k, v, sink = _problem(seed=2)
    spec = attnkit.check_attention_args(q, k, v, causal=True)
    out, _, lse = numpy_ref.run(q, k, v, None, spec, return_lse=True)
    gate = 1.0 / (1.0 + np.exp(sink[:, None] - lse))  # (B, H, L)
    np.testing.assert_allclose(attention(q, k, v, causal=True, sink_logits=sink),
                               gate[..., None] * out, atol=1e-13)


@pytest.mark.parametrize("backend", [b for b in SINKING if b != "numpy"])
def test_engines_against_reference(backend: str) -> None:
    c = capabilities(backend)
    dtype = torch.float64 if "float64" in c.dtypes else torch.float32
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    q, k, v, sink = _problem(seed=3, L=37, S=45)
    mask = np.random.default_rng(4).random((2, 1, 1, 45)) < 0.7
    cases = [dict(), dict(causal=True), dict(causal="bottom-right"), dict(mask=mask),
             dict(window=(5, 0), sinks=2, causal=True)]
    if c.supports("softcap"):
        cases.append(dict(softcap=1.5))
    per_batch = sink + np.array([[0.0], [1.0]])  # (2, 3): one logit per (batch, head)
    for s in (sink, np.asarray(sink[0]), per_batch):  # per head, shared, per (batch, head)
        for kw in cases:
            ref = attention(q, k, v, sink_logits=s, **kw)
            got = attention(*(torch.from_numpy(x).to(dtype) for x in (q, k, v)),
                            sink_logits=torch.from_numpy(s).to(dtype), backend=backend, **kw)
            np.testing.assert_allclose(got.double().numpy(), ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("backend", [b for b in SINKING if capabilities(b).supports("enable_gqa")])
def test_grouped_query_heads_take_one_logit_per_query_head(backend: str) -> None:
    rng = np.random.default_rng(5)
    q, k, v = rng.normal(size=(2, 6, 5, 4)), rng.normal(size=(2, 2, 7, 4)), rng.normal(size=(2, 2, 7, 3))
    sink = rng.normal(size=6)
    dtype = "float64" if "float64" in capabilities(backend).dtypes else "float32"
    args = [torch.from_numpy(x.astype(dtype)) for x in (q, k, v, sink)]
    got = attention(*args[:3], sink_logits=args[3], enable_gqa=True, causal=True, backend=backend)
    want = attention(q, np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1), sink_logits=sink,
                     causal=True)
    np.testing.assert_allclose(got.double().numpy(), want, atol=2e-5 if dtype == "float32" else 1e-12)


def _flex(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    from torch.nn.attention.flex_attention import flex_attention

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "unfused" on CPU: the eager path is what we want
        return flex_attention(*args, **kwargs)


def _flex_with_sink_key(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sink: torch.Tensor,
                        causal: bool) -> torch.Tensor:
    """flex_attention with one more key (index S): score_mod gives it s_h; its value is 0."""
    S = k.shape[-2]
    k1 = torch.cat([k, k.new_zeros(*k.shape[:-2], 1, k.shape[-1])], dim=-2)
    v1 = torch.cat([v, v.new_zeros(*v.shape[:-2], 1, v.shape[-1])], dim=-2)

    def score_mod(s, b, h, qi, ki):  # noqa: ANN001, ANN202
        if causal:
            s = torch.where(ki <= qi, s, float("-inf"))
        return torch.where(ki == S, sink[h], s)

    return _flex(q, k1, v1, score_mod=score_mod)


@pytest.mark.parametrize("backend", SINKING)
def test_against_flex_attention(backend: str) -> None:
    """flex_attention expresses the sink as a key scored by score_mod, or through its lse."""
    gen = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(2, 3, n, 16, generator=gen) for n in (24, 24, 24))
    sink = torch.randn(3, generator=gen) * 2
    numpy_native = capabilities(backend).native == "numpy"
    for causal in (False, True):
        want = _flex_with_sink_key(q, k, v, sink, causal)
        out, lse = _flex(q, k, v, return_lse=True,
                         score_mod=(lambda s, b, h, qi, ki: torch.where(ki <= qi, s, float("-inf")))
                         if causal else None)
        torch.testing.assert_close(torch.sigmoid(lse - sink[:, None])[..., None] * out, want,
                                   atol=1e-5, rtol=1e-5)  # the sigmoid gate, flex's own lse
        args = (q, k, v, sink) if not numpy_native else tuple(x.numpy() for x in (q, k, v, sink))
        got = attention(*args[:3], sink_logits=args[3], causal=causal, backend=backend)
        got = torch.from_numpy(got) if numpy_native else got
        torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)


def test_flex_attention_gradients_where_torch_computes_them() -> None:
    """flex_attention's backward on CPU raises NotImplementedError in torch 2.13; compare if not."""
    gen = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(1, 2, 8, 8, generator=gen, requires_grad=True) for _ in range(3))
    sink = (torch.randn(2, generator=gen)).requires_grad_()
    ours = attention(q, k, v, sink_logits=sink, backend="torch")
    want_grads = torch.autograd.grad(ours.square().sum(), (q, k, v, sink))
    try:
        flex = _flex_with_sink_key(q, k, v, sink, causal=False)
        grads = torch.autograd.grad(flex.square().sum(), (q, k, v, sink))
    except NotImplementedError:
        pytest.skip("flex_attention has no backward on this device in this torch")
    for a, b in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", [b for b in SINKING if capabilities(b).gradients
                                     and "float64" in capabilities(b).dtypes])
def test_gradcheck_including_the_sink_logits(backend: str) -> None:
    c = capabilities(backend)
    gen = torch.Generator().manual_seed(8)
    q = torch.randn(2, 3, 5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(2, 3, 7, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(2, 3, 7, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    sink = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.rand(2, 1, 5, 7, generator=gen) < 0.6
    mask[0, 0, 1] = False  # a row that sees only the sink: zero output, zero gradients
    cases = [dict(), dict(causal=True), dict(causal="bottom-right", mask=mask),
             dict(window=(1, 0), sinks=1, causal=True)]
    if c.supports("softcap"):
        cases.append(dict(softcap=0.7))
    for kw in cases:
        assert torch.autograd.gradcheck(
            lambda a, b, d, s, kw=kw: attention(a, b, d, sink_logits=s, backend=backend, **kw),
            (q, k, v, sink)), kw
    # one logit shared by every head, and one per (batch, head)
    for shape in [(), (2, 3)]:
        s = torch.randn(shape, dtype=torch.float64, generator=gen, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda a, b, d, s_: attention(a, b, d, sink_logits=s_, backend=backend), (q, k, v, s))


@pytest.mark.parametrize("backend", [b for b in SINKING if capabilities(b).gradients])
def test_sink_gradient_matches_the_torch_engine(backend: str) -> None:
    """For every engine that carries gradients, float32 ones included (the Triton kernels)."""
    dtype = torch.float64 if "float64" in capabilities(backend).dtypes else torch.float32
    gen = torch.Generator().manual_seed(9)
    base = [torch.randn(2, 2, n, 8, generator=gen, dtype=dtype) for n in (19, 23, 23)]
    sink0 = torch.tensor([1.5, -0.5], dtype=dtype)
    for kw in (dict(causal="bottom-right"), dict(window=(4, 0), sinks=1, causal=True)):
        grads = []
        for b in ("torch", backend):
            xs = [x.clone().requires_grad_(True) for x in (*base, sink0)]
            out = attention(*xs[:3], sink_logits=xs[3], backend=b, **kw)
            (out * torch.linspace(-1, 1, out.shape[-1], dtype=dtype)).sum().backward()
            grads.append([x.grad for x in xs])
        for g_ref, g in zip(*grads, strict=True):
            tol = 1e-10 if dtype == torch.float64 else 2e-4
            torch.testing.assert_close(g, g_ref, atol=tol, rtol=tol)


def test_flash_starts_from_the_sink() -> None:
    """The online softmax's initial state is the sink's: m_0 = s_h, l_0 = 1, acc_0 = 0."""
    q, k, v, sink = _problem(seed=10, L=8, S=8)
    none = np.zeros((2, 1, 8, 8), bool)  # no key visible: the state stays the initial one
    out, lse = flash_attention_numpy(q, k, v, mask=none, sink_logits=sink, return_lse=True,
                                     block_q=3, block_k=3)
    np.testing.assert_array_equal(out, 0.0)
    np.testing.assert_allclose(lse, np.broadcast_to(sink[:, None], lse.shape), atol=1e-12)
    t = torch.from_numpy(sink)
    out_t, lse_t = flash_attention_torch(*(torch.from_numpy(x) for x in (q, k, v)),
                                         mask=torch.from_numpy(none), sink_logits=t,
                                         return_lse=True, block_q=3, block_k=3)
    assert (out_t == 0).all()
    torch.testing.assert_close(lse_t, t[:, None].expand(lse_t.shape))
    # every block size gives the reference, whatever tile comes first
    ref, ref_lse = attention(q, k, v, causal=True, sink_logits=sink), None
    for bq, bk in [(1, 1), (2, 5), (8, 8), (3, 2)]:
        got, got_lse = flash_attention_numpy(q, k, v, causal=True, sink_logits=sink,
                                             return_lse=True, block_q=bq, block_k=bk)
        np.testing.assert_allclose(got, ref, atol=1e-13)
        ref_lse = got_lse if ref_lse is None else ref_lse
        np.testing.assert_allclose(got_lse, ref_lse, atol=1e-13)


@pytest.mark.parametrize("backend", SINKING)
def test_extreme_sink_logits(backend: str) -> None:
    """A huge logit takes all the weight (output 0); a very negative one changes nothing."""
    q, k, v, _ = _problem(seed=11)
    dtype = "float64" if "float64" in capabilities(backend).dtypes else "float32"
    x = [torch.from_numpy(a.astype(dtype)) for a in (q, k, v)]
    big = attention(*x, sink_logits=torch.full((3,), 200.0, dtype=getattr(torch, dtype)),
                    backend=backend)
    assert torch.isfinite(big).all() and big.abs().max() < 1e-30
    small = attention(*x, sink_logits=torch.full((3,), -200.0, dtype=getattr(torch, dtype)),
                      causal=True, backend=backend)
    torch.testing.assert_close(small, attention(*x, causal=True, backend=backend))


@pytest.mark.parametrize("backend", SINKING)
def test_empty_lengths_with_sink_logits(backend: str) -> None:
    for L, S in [(0, 4), (3, 0)]:
        q, k = np.ones((2, L, 3), np.float32), np.ones((2, S, 3), np.float32)
        out = attention(q, k, np.ones((2, S, 5), np.float32), backend=backend,
                        sink_logits=np.zeros(2, np.float32))
        assert out.shape == (2, L, 5) and (out == 0).all()


@pytest.mark.parametrize("bad,error,match", [
    ([0.0, 1.0], TypeError, "sink_logits must be a numpy.ndarray, as q is"),
    (torch.zeros(2), TypeError, "sink_logits must be a numpy.ndarray, as q is"),
    (np.zeros(2, np.int64), TypeError, "sink_logits must have a real floating dtype; got int64"),
    (np.zeros(3), ValueError, r"sink_logits must broadcast to the batch dimensions \(...\) = "
                              r"\(2, 2\), one logit per head; got shape \(3,\)"),
    (np.zeros((2, 2, 1)), ValueError, "must broadcast to the batch dimensions"),
    (np.array([0.0, -np.inf]), ValueError, "sink_logits must be finite"),
    (np.array([np.nan, 0.0]), ValueError, "sink_logits must be finite"),
])
def test_bad_sink_logits_are_refused(bad: object, error: type, match: str) -> None:
    x = np.ones((2, 2, 3, 4))
    with pytest.raises(error, match=match):
        attention(x, x, x, sink_logits=bad)


def test_sink_logits_that_need_gradients_are_refused_by_engines_without_them() -> None:
    x = torch.ones(2, 3, 4)
    sink = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="backend 'numpy' computes no gradients, but sink_logits "
                                         "requires grad"):
        attention(x, x, x, sink_logits=sink, backend="numpy")
    with torch.no_grad():  # inference: served
        assert attention(x, x, x, sink_logits=sink, backend="numpy").shape == (2, 3, 4)


def test_sinks_and_sink_logits_are_different_things() -> None:
    """sinks=N keeps N real keys in view of a window; sink_logits adds a key with no value."""
    q, k, v, sink = _problem(seed=12, L=8, S=8)
    windowed = attention(q, k, v, causal=True, window=(2, 0), sinks=1)
    with_logits = attention(q, k, v, causal=True, window=(2, 0), sinks=1, sink_logits=sink)
    assert not np.allclose(windowed, with_logits)
    _, w = attention(q, k, v, causal=True, window=(2, 0), sinks=1, return_weights=True)
    np.testing.assert_allclose(w.sum(-1), 1.0)  # sinks=N: still a full softmax over real keys


def test_an_engine_without_the_feature_refuses_by_name() -> None:
    """The registry's refusal point names sink_logits and the engines that declare it."""
    import dataclasses

    caps = dataclasses.replace(capabilities("torch"), features=frozenset({"window", "sinks"}))
    x = torch.ones(2, 3, 4)
    spec = attnkit.check_attention_args(x, x, x, sink_logits=torch.zeros(2))
    with pytest.raises(ValueError, match=r"backend 'plain' does not support sink_logits= .*"
                                         r"use an engine that declares it"):
        caps.refuse("plain", spec)
    caps.refuse("plain", attnkit.check_attention_args(x, x, x))  # without the logits: served
