"""What is specific to the flash engine: tiles, lse, memory, gradients by recomputation.

The shared checks against the reference (every engine, every mask form) are in
tests/test_engines.py; here: block sizes that do not divide the lengths, the saved
log-sum-exp, the memory bound, float16, and the recomputing backward against
autograd through the "torch" engine.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import attnkit
from attnkit import attention
from attnkit.core.masks import Band, visible_mask
from attnkit.engines import _online as flash
from attnkit.engines.flash_numpy import flash_attention_numpy
from attnkit.engines.flash_torch import flash_attention_torch


def _problem(rng: np.random.Generator, L: int, S: int, E: int = 8, Ev: int = 5,
             batch: tuple[int, ...] = (2,)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (rng.normal(size=(*batch, L, E)), rng.normal(size=(*batch, S, E)),
            rng.normal(size=(*batch, S, Ev)))


def _lse_reference(q: np.ndarray, k: np.ndarray, mask: np.ndarray | None, causal: object,
                   scale: float) -> np.ndarray:
    """log(sum(exp(scores))) per row from the full score matrix (-inf: every key masked)."""
    scores = q @ np.swapaxes(k, -1, -2) * scale
    L, S = scores.shape[-2:]
    if mask is not None and mask.dtype == bool:
        scores = np.where(mask, scores, -np.inf)
    elif mask is not None:
        scores = scores + mask
    if causal:
        align = "bottom-right" if causal == "bottom-right" else "top-left"
        scores = np.where(attnkit.causal_mask(L, S, alignment=align), scores, -np.inf)
    m = scores.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return (m + np.log(np.exp(scores - m).sum(axis=-1, keepdims=True)))[..., 0]


@pytest.mark.parametrize("block_q,block_k", [(1, 1), (3, 5), (16, 7), (64, 64), (1000, 1)])
@pytest.mark.parametrize("causal", [False, "top-left", "bottom-right"])
@pytest.mark.parametrize("L,S", [(37, 23), (23, 37), (40, 40)])
def test_numpy_any_blocks_any_lengths(block_q: int, block_k: int, causal: object,
                                      L: int, S: int) -> None:
    rng = np.random.default_rng(L * 100 + S)
    q, k, v = _problem(rng, L, S)
    mask = rng.random((2, 1, S)) < 0.8
    ref = attention(q, k, v, mask=mask, causal=causal)
    out, lse = flash_attention_numpy(q, k, v, mask=mask, causal=causal, block_q=block_q,
                                     block_k=block_k, return_lse=True)
    np.testing.assert_allclose(out, ref, atol=1e-12)
    expected = _lse_reference(q, k, mask, causal, 1 / np.sqrt(8))
    np.testing.assert_allclose(lse, expected, atol=1e-12)
    assert np.array_equal(np.isinf(lse), np.isinf(expected))


@given(L=st.integers(1, 30), S=st.integers(1, 30), bq=st.integers(1, 12), bk=st.integers(1, 12),
       causal=st.sampled_from([False, "top-left", "bottom-right"]), seed=st.integers(0, 999))
def test_numpy_blocks_property(L: int, S: int, bq: int, bk: int, causal: object, seed: int) -> None:
    rng = np.random.default_rng(seed)
    q, k, v = _problem(rng, L, S, E=3, Ev=2, batch=())
    fmask = np.where(rng.random((L, S)) < 0.2, -np.inf, rng.normal(size=(L, S)))
    ref = attention(q, k, v, mask=fmask, causal=causal)
    out = flash_attention_numpy(q, k, v, mask=fmask, causal=causal, block_q=bq, block_k=bk)
    np.testing.assert_allclose(out, ref, atol=1e-12)
    assert np.isfinite(out).all()


def test_numpy_broadcast_batch_and_fully_masked_rows() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(3, 1, 6, 4))  # (B, 1, L, E) broadcasts over heads
    k = rng.normal(size=(1, 2, 9, 4))  # (1, H, S, E) broadcasts over the batch
    v = rng.normal(size=(9, 3))
    mask = np.ones((3, 1, 1, 9), bool)
    mask[1] = False  # batch entry 1: every key masked
    out, lse = flash_attention_numpy(q, k, v, mask=mask, block_q=4, block_k=4, return_lse=True)
    assert out.shape == (3, 2, 6, 3)
    np.testing.assert_allclose(out, attention(q, k, v, mask=mask), atol=1e-12)
    np.testing.assert_array_equal(out[1], 0.0)
    assert np.isneginf(lse[1]).all() and np.isfinite(lse[[0, 2]]).all()


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_lazy_shift_far_below_zero_after_a_hidden_tile(kind: str) -> None:
    """A row that sees no key in its first tile, then scores far below zero (float32).

    The running shift starts there from nothing; rescaling the (empty) state must give
    0, not ``0 * exp(huge) = nan``, and scores of -400 must not underflow to nothing.
    """
    rng = np.random.default_rng(0)
    q = np.full((1, 4, 8), 20.0, dtype=np.float32)
    k = -np.abs(rng.normal(size=(1, 12, 8))).astype(np.float32) * 10  # scores near -400
    v = rng.normal(size=(1, 12, 3)).astype(np.float32)
    mask = np.ones((4, 12), bool)
    mask[:, :4] = False  # the first key tile is hidden from every query
    mask[1, 4:8] = False  # query 1 also misses the second tile
    ref = attention(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), mask=mask)
    if kind == "numpy":
        out = flash_attention_numpy(q, k, v, mask=mask, block_q=4, block_k=4)
    else:
        tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
        out = flash_attention_torch(tq, tk, tv, mask=torch.from_numpy(mask),
                                    block_q=4, block_k=4).numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def _rising_scores(jump: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 inputs whose scores (scale 1) rise by about ``jump`` from key tile 0 to tile 1."""
    rng = np.random.default_rng(3)
    q = np.stack([np.ones(4), rng.normal(size=4) * 0.1], axis=-1)[None]  # (1, 4, 2)
    k = np.stack([np.repeat([0.0, jump], 4), rng.normal(size=8)], axis=-1)[None]  # (1, 8, 2)
    v = rng.normal(size=(1, 8, 3))
    return q.astype(np.float32), k.astype(np.float32), v.astype(np.float32)


def _flash_on_tiles_of_four(kind: str, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                            passes: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """``(out, lse)`` of a flash engine on 4 x 4 tiles, scale 1; checks the torch passes.

    ``passes`` lists, for the torch engine's one block of queries, whether each pass
    over it was careful: ``[False]`` when the optimistic pass stands.
    """
    if kind == "numpy":
        return flash_attention_numpy(q, k, v, scale=1.0, block_q=4, block_k=4, return_lse=True)
    from attnkit.engines import flash_torch

    seen = []
    block = flash_torch._Tiles.block

    def counted(self: object, *args: object, careful: bool) -> object:
        seen.append(careful)
        return block(self, *args, careful=careful)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(flash_torch._Tiles, "block", counted)
        tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
        out, lse = (x.numpy() for x in flash_attention_torch(
            tq, tk, tv, scale=1.0, block_q=4, block_k=4, return_lse=True))
    assert seen == passes
    return out, lse


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("jump,careful", [(5.0, False), (80.0, False), (100.0, True),
                                          (1000.0, True)])
def test_scores_rising_far_above_the_first_tiles_maximum(kind: str, jump: float,
                                                         careful: bool) -> None:
    """The first tile's maxima are the shift of an optimistic pass; later tiles may rise.

    Rises of 5 and 80 (natural units) leave ``exp`` finite in float32, so the
    optimistic pass stands; 100 and 1000 overflow it, and the block is computed again
    with a running maximum. The torch engine's passes over the block are counted.
    """
    q, k, v = _rising_scores(jump)
    q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
    ref, ref_lse = attention(q64, k64, v64, scale=1.0), _lse_reference(q64, k64, None, False, 1.0)
    out, lse = _flash_on_tiles_of_four(kind, q, k, v, [False, True] if careful else [False])
    assert np.isfinite(out).all() and np.isfinite(lse).all()
    # float32 scores near `jump` carry absolute rounding errors near 6e-8 * jump
    np.testing.assert_allclose(out, ref, atol=1e-6 * max(jump, 10.0))
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-6)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_outputs_overflowing_in_the_optimistic_pass(kind: str) -> None:
    """Finite row sums but an overflowing output also make the block run carefully.

    Scores rise by 60 in the second key tile (``e^60`` is finite in float32) and the
    values are near ``1e20``, so the optimistic pass's ``p @ v`` overflows while its
    row sums do not; the careful pass keeps every weight below ``e^8``.
    """
    q, k, v = _rising_scores(60.0)
    v = v * np.float32(1e20)
    q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
    ref, ref_lse = attention(q64, k64, v64, scale=1.0), _lse_reference(q64, k64, None, False, 1.0)
    out, lse = _flash_on_tiles_of_four(kind, q, k, v, [False, True])
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-6)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("optimistic", [True, False])
@pytest.mark.parametrize("causal", [False, "top-left", "bottom-right"])
def test_optimistic_and_careful_passes_agree(kind: str, optimistic: bool,
                                             causal: object) -> None:
    """Every block optimistic (the default, on data that cannot overflow) or careful.

    Masks that hide whole rows and whole first tiles, causal alignments that hide
    every key from some queries, and tiles that do not divide the lengths.
    """
    rng = np.random.default_rng(11)
    q, k, v = _problem(rng, 23, 37)
    mask = rng.random((2, 23, 37)) < 0.7
    mask[:, :, :5] = False  # the first key tile is hidden from every query
    mask[0, 3] = False  # a row that sees no key
    ref = attention(q, k, v, mask=mask, causal=causal)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(flash, "OPTIMISTIC", optimistic)
        if kind == "numpy":
            out = flash_attention_numpy(q, k, v, mask=mask, causal=causal, block_q=6,
                                        block_k=5)
        else:
            tq, tk, tv, tm = (torch.from_numpy(x) for x in (q, k, v, mask))
            out = flash_attention_torch(tq, tk, tv, mask=tm, causal=causal, block_q=6,
                                        block_k=5).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-12)
    np.testing.assert_array_equal(out[0, 3], 0.0)


def test_numpy_float16_is_computed_in_float32() -> None:
    """STYLE.md's rule: error at most about twice a plain float16 implementation's."""
    rng = np.random.default_rng(1)
    q, k, v = _problem(rng, 70, 90, E=32, Ev=16, batch=())
    ref = attention(q, k, v)
    h = [x.astype(np.float16) for x in (q, k, v)]
    out = flash_attention_numpy(*h, block_q=16, block_k=32)
    assert out.dtype == np.float16
    scores = (h[0] @ h[1].T) * np.float16(1 / np.sqrt(32))
    e = np.exp(scores - scores.max(-1, keepdims=True))
    plain = (e / e.sum(-1, keepdims=True)) @ h[2]  # textbook attention in float16 throughout
    err = np.abs(out.astype(np.float64) - ref).max()
    err_plain = np.abs(plain.astype(np.float64) - ref).max()
    assert err <= 2 * err_plain


def test_numpy_memory_is_linear() -> None:
    """Peak extra memory: O(L * E + block_q * block_k), far below the L x S matrix."""
    rng = np.random.default_rng(2)
    n, d = 2048, 16
    q, k, v = (rng.normal(size=(n, d)).astype(np.float32) for _ in range(3))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        flash_attention_numpy(q, k, v, block_q=128, block_k=128)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    full_matrix = n * n * 4
    assert peak < full_matrix / 20, (peak, full_matrix)


@pytest.mark.parametrize("name,value,error", [("block_q", 0, ValueError), ("block_k", -3, ValueError),
                                              ("block_q", 2.5, TypeError), ("block_k", True, TypeError)])
def test_bad_block_sizes(name: str, value: object, error: type) -> None:
    x = np.ones((4, 2))
    with pytest.raises(error, match=name):
        flash_attention_numpy(x, x, x, **{name: value})
    with pytest.raises(error, match=name):
        flash_attention_torch(*(torch.ones(4, 2) for _ in range(3)), **{name: value})


def test_module_level_block_sizes_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """attention(backend="flash") tiles with flash.BLOCK_Q / flash.BLOCK_K."""
    rng = np.random.default_rng(3)
    q, k, v = _problem(rng, 11, 13)
    monkeypatch.setattr(flash, "BLOCK_Q", 2)
    monkeypatch.setattr(flash, "BLOCK_K", 3)
    for x in (q, torch.from_numpy(q)):
        args = (x, k, v) if isinstance(x, np.ndarray) else (x, *map(torch.from_numpy, (k, v)))
        out = attention(*args, causal="bottom-right", backend="flash")
        np.testing.assert_allclose(np.asarray(out), attention(q, k, v, causal="bottom-right"),
                                   atol=1e-12)


def test_return_weights_is_refused() -> None:
    with pytest.raises(ValueError, match="never forms"):
        attention(attnkit.example.Q, attnkit.example.K, attnkit.example.V, backend="flash",
                  return_weights=True)


# --------------------------------------------------------------------------- torch


CASES = [
    dict(),
    dict(causal="top-left"),
    dict(causal="bottom-right"),
    dict(mask="bool"),
    dict(mask="bool", causal="bottom-right"),
    dict(mask="float", causal="top-left", scale=0.4),
]


@pytest.mark.parametrize("L,S", [(13, 21), (21, 13)])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "plain")
@pytest.mark.parametrize("blocks", [(4, 5), (64, 64)])
def test_torch_gradients_match_autograd(L: int, S: int, case: dict, blocks: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(L * S)
    shapes = ((2, 3, L, 6), (2, 1, S, 6), (1, 3, S, 4))  # broadcast batch dims
    xs = [torch.randn(*s, generator=gen, dtype=torch.float64) for s in shapes]
    kw = dict(case)
    if kw.get("mask") == "bool":
        m = torch.rand(2, 1, L, S, generator=gen) < 0.7
        m[0, 0, 1] = False  # a fully masked row
        kw["mask"] = m
    elif kw.get("mask") == "float":
        m = torch.randn(L, S, generator=gen, dtype=torch.float64)
        m[2] = float("-inf")  # a fully masked row
        kw["mask"] = m
    g_out = torch.randn(2, 3, L, 4, generator=gen, dtype=torch.float64)
    results = []
    for engine in ("torch", "flash"):
        leaves = [x.clone().requires_grad_(True) for x in xs]
        if engine == "torch":
            out = attention(*leaves, backend="torch", **kw)
        else:
            out = flash_attention_torch(*leaves, block_q=blocks[0], block_k=blocks[1], **kw)
        out.backward(g_out)
        results.append((out.detach(), [x.grad for x in leaves]))
    (out_ref, g_ref), (out, g) = results
    torch.testing.assert_close(out, out_ref, atol=1e-12, rtol=1e-12)
    for a, b in zip(g, g_ref, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-11)


def test_torch_fully_masked_rows_zero_output_and_grads() -> None:
    gen = torch.Generator().manual_seed(7)
    q = torch.randn(5, 4, generator=gen, requires_grad=True)
    k = torch.randn(2, 4, generator=gen, requires_grad=True)
    v = torch.randn(2, 3, generator=gen, requires_grad=True)
    out = flash_attention_torch(q, k, v, causal="bottom-right", block_q=2, block_k=1)
    out.sum().backward()
    assert (out[:3] == 0).all() and (q.grad[:3] == 0).all()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()


def test_torch_lse_matches_numpy() -> None:
    rng = np.random.default_rng(8)
    q, k, v = _problem(rng, 19, 27)
    mask = rng.random((19, 27)) < 0.5
    mask[4] = False
    _, lse_np = flash_attention_numpy(q, k, v, mask=mask, causal="bottom-right", block_q=5,
                                      block_k=6, return_lse=True)
    _, lse_t = flash_attention_torch(*map(torch.from_numpy, (q, k, v)),
                                     mask=torch.from_numpy(mask), causal="bottom-right",
                                     block_q=7, block_k=4, return_lse=True)
    np.testing.assert_allclose(lse_t.numpy(), lse_np, atol=1e-12)
    np.testing.assert_allclose(lse_np, _lse_reference(q, k, mask, "bottom-right", 8 ** -0.5),
                               atol=1e-12)


def test_torch_half_precision_grads_have_input_dtypes() -> None:
    gen = torch.Generator().manual_seed(9)
    xs = [torch.randn(2, n, 8, generator=gen).to(torch.bfloat16).requires_grad_(True)
          for n in (10, 12, 12)]
    out = flash_attention_torch(*xs, causal=True, block_q=4, block_k=4)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert all(x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad).all() for x in xs)


def test_torch_mask_that_requires_grad_is_refused() -> None:
    x = torch.ones(3, 2)
    mask = torch.zeros(3, 3, requires_grad=True)
    with pytest.raises(ValueError, match="mask requires grad"):
        flash_attention_torch(x, x, x, mask=mask)


@pytest.mark.cuda
def test_torch_path_on_cuda() -> None:
    gen = torch.Generator(device="cuda").manual_seed(10)
    xs = [torch.randn(2, 4, n, 32, device="cuda", generator=gen, requires_grad=True)
          for n in (100, 130, 130)]
    out = attention(*xs, causal="bottom-right", backend="flash")
    ref = attention(*(x.double() for x in xs), causal="bottom-right", backend="torch")
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in xs)


# ------------------------------------------------------------------- chapter 8's views


def test_tile_trace_ends_at_the_reference_and_lse() -> None:
    from attnkit.teaching.flash_views import tile_trace

    rng = np.random.default_rng(11)
    q, k, v = _problem(rng, 7, 9, batch=())
    for causal in (None, "top-left", "bottom-right"):
        steps = tile_trace(q, k, v, block_q=3, block_k=4, causal=causal)
        assert len(steps) == 3 * 3
        ref = attention(q, k, v, causal=causal or False)
        last = [s for s in steps if s["cols"][1] == 9]
        np.testing.assert_allclose(np.vstack([s["estimate"] for s in last]), ref, atol=1e-12)
        lse = np.concatenate([s["m_i"] + np.log(s["l_i"]) for s in last])
        np.testing.assert_allclose(lse, _lse_reference(q, k, None, causal, 8 ** -0.5),
                                   atol=1e-12)


def test_tile_stepper_has_one_view_per_tile() -> None:
    pytest.importorskip("ipywidgets")
    from attnkit.teaching.flash_views import tile_stepper

    box = tile_stepper(attnkit.example.Q, attnkit.example.K, attnkit.example.V,
                       attnkit.example.tokens, block_q=2, block_k=3)
    assert "attnkit-flash-tiles" in box._dom_classes
    stack = box.children[-1]
    assert "attnkit-stack" in stack._dom_classes and len(stack.children) == 3 * 2
    views = [child.value for child in stack.children]
    assert len(set(views)) == len(views)
    assert "last key block" in views[1] and "Tile: queries The, cat" in views[0]


def test_scratch_memory_is_kept_per_thread_and_nested_calls_get_their_own() -> None:
    flash.release_scratch()
    with flash.scratch("numpy", (100,), np.float32) as (a,):
        with flash.scratch("numpy", (100,), np.float32) as (b,):  # nested: fresh memory
            assert not np.shares_memory(a, b)
    with flash.scratch("numpy", (50, 30), np.float32) as (c, d):  # the kept buffer again
        assert np.shares_memory(c, a) or np.shares_memory(c, b)
        assert not np.shares_memory(c, d) and (d.ctypes.data - c.ctypes.data) % 64 == 0
    flash.release_scratch()
    with flash.scratch("numpy", (100,), np.float32) as (e,):
        assert not np.shares_memory(e, a) and not np.shares_memory(e, b)


def test_repeated_calls_reuse_scratch_and_agree() -> None:
    rng = np.random.default_rng(3)
    q, k, v = _problem(rng, 40, 50)
    first = flash_attention_numpy(q, k, v, block_q=16, block_k=16)
    second = flash_attention_numpy(q, k, v, block_q=16, block_k=16)
    np.testing.assert_array_equal(first, second)
    assert not np.shares_memory(first, second)  # outputs are never scratch memory
    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
    t1, t2 = (flash_attention_torch(tq, tk, tv, block_q=16, block_k=16) for _ in range(2))
    torch.testing.assert_close(t1, t2, rtol=0, atol=0)
    assert t1.data_ptr() != t2.data_ptr()
    np.testing.assert_allclose(t1.numpy(), first, atol=1e-12)


def _count_visits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """``(i0, i1, keys)`` for every block of queries the tiled loops visit, counted as they run."""
    blocks: list[tuple[int, int, int]] = []
    real = Band.tiles

    def tiles(self: Band, i0: int, i1: int, block_k: int) -> list[tuple[int, int, bool]]:
        out = real(self, i0, i1, block_k)
        blocks.append((i0, i1, sum(j1 - j0 for j0, j1, _ in out)))
        return out

    monkeypatch.setattr(Band, "tiles", tiles)
    return blocks


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("n,causal,window", [(2048, True, (64, 0)), (4096, True, (256, 0)),
                                             (3000, True, (100, 0)), (2048, False, (40, 40)),
                                             (1500, True, (700, 0))])
def test_windowed_tiles_visit_at_most_twice_the_visible_keys(
        monkeypatch: pytest.MonkeyPatch, kind: str, n: int, causal: bool, window: tuple) -> None:
    """The tiles come from the window: each query's block computes < 2x the keys it sees.

    Counted in the engine's own loop (every tile it visits), not timed.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    args = (x, x, x) if kind == "numpy" else tuple(torch.from_numpy(x) for _ in range(3))
    visible = visible_mask(n, n, "top-left" if causal else None, window).sum(axis=1)  # per query
    full = visible == visible.max()  # queries whose window is not cut by the sequence's ends

    def visited_keys() -> np.ndarray:
        blocks = _count_visits(monkeypatch)
        attention(*args, causal=causal, window=window, backend="flash")
        visited = np.zeros(n, int)
        for i0, i1, keys in blocks:  # one pass per block (no overflow in these inputs)
            visited[i0:i1] += keys
        monkeypatch.undo()
        return visited

    visited = visited_keys()
    assert (visited >= visible).all()
    assert visited[full].max() < 2 * visible.max(), (visited[full].max(), visible.max())
    assert visited.sum() < 2 * visible.sum()
    if window[0] + window[1] + 1 < 512:  # the 512-row tiles of every banded call before: 2x or more
        monkeypatch.setattr(flash, "BLOCK_Q", 512)
        monkeypatch.setattr(flash, "BLOCK_K", 512)
        before = visited_keys()
        assert before[full].max() >= 2 * visible.max()


def test_window_blocks_are_chosen_from_the_band_width() -> None:
    assert flash.default_blocks("numpy", True, width=257) == (256, 256)
    assert flash.default_blocks("torch", True, width=5) == (16, 16)
    assert flash.default_blocks("numpy", True, width=10_000) == (512, 512)
    assert flash.default_blocks("numpy", True) == (512, 512)  # causal, no window


def test_gpu_specs_follow_the_card_a_results_file_names():
    from attnkit.teaching.flash_views import GPU_SPECS, gpu_specs

    h100 = gpu_specs("NVIDIA H100 80GB HBM3")
    assert h100 is GPU_SPECS["H100 SXM"]
    assert h100.hbm_bytes_per_s == 3.35e12 and h100.sms == 132
    # 228 KiB of shared memory on each of 132 multiprocessors: about 29 MiB
    assert round(h100.smem_per_sm_bytes * h100.sms / 2**20) == 29
    h200 = gpu_specs("NVIDIA H200")
    assert h200.hbm_bytes_per_s == 4.8e12 and h200.dense_bf16_flops == h100.dense_bf16_flops
    for other in ("NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200 NVL", "NVIDIA A100"):
        with pytest.raises(ValueError, match="device_name"):
            gpu_specs(other)
    with pytest.raises(TypeError, match="device_name"):
        gpu_specs(None)
