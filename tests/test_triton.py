"""The Triton kernels: in Triton's CPU interpreter at small sizes, and on CUDA when present.

The interpreter tests re-import the kernels with ``TRITON_INTERPRET=1`` (Triton
decides at decoration time whether a kernel is compiled or interpreted), so they
run on any machine with Triton installed, GPU or not. They use small sizes: the
interpreter executes each tile in NumPy.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import attnkit
from attnkit import attention

triton = pytest.importorskip("triton")

from attnkit.engines import numpy_ref, triton_flash  # noqa: E402
from attnkit.engines.triton_flash import flash_attention_triton  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


#: Triton picks compiled or interpreted kernels when it is imported and when a kernel
#: is decorated, so the interpreter tests need TRITON_INTERPRET=1 from the start:
#: test_interpreter_suite runs them in a child process that has it.
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"


@pytest.fixture()
def interpreter() -> None:
    """Skip unless this process runs Triton's CPU interpreter."""
    if not INTERPRETING:
        pytest.skip("runs in test_interpreter_suite's child process (TRITON_INTERPRET=1)")


def test_interpreter_suite() -> None:
    """Run this file's interpreter tests in a child process with TRITON_INTERPRET=1."""
    if INTERPRETING:
        pytest.skip("this process already runs the interpreter tests itself")
    if tuple(int(x) for x in triton.__version__.split(".")[:2]) < (3, 9):
        # Seen with Triton 3.6: its interpreter stops inside these kernels with
        # "only 0-dimensional arrays can be converted to Python scalars"; the
        # compiled kernels work there. requirements.txt pins triton 3.9.
        pytest.skip(f"Triton {triton.__version__}'s interpreter; these tests need 3.9+")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
         "-k", "interpreter and not suite"],
        env=env, capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


def _inputs(shapes: tuple, seed: int, dtype: torch.dtype = torch.float32,
            device: str = "cpu") -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=gen).to(device=device, dtype=dtype).requires_grad_(True)
            for s in shapes]


def _compare_with_torch(xs: list[torch.Tensor], atol: float, **kw: object) -> None:
    """Output and gradients of the Triton engine against autograd through "torch"."""
    gen = torch.Generator().manual_seed(99)
    results = []
    for engine in ("torch", "triton"):
        leaves = [x.detach().clone().requires_grad_(True) for x in xs]
        out = attention(*leaves, backend=engine, **kw)
        g = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out)
        gen.manual_seed(99)
        out.backward(g)
        results.append((out.detach(), [x.grad for x in leaves]))
    (out_ref, g_ref), (out, g) = results
    torch.testing.assert_close(out, out_ref, atol=atol, rtol=atol)
    for a, b in zip(g, g_ref, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=atol, rtol=atol)


@pytest.mark.parametrize("L,S,causal", [
    (20, 37, False),          # lengths that are not multiples of the 16-wide blocks
    (33, 33, "top-left"),
    (20, 37, "bottom-right"),
    (37, 20, "bottom-right"),  # L > S: the first 17 rows see no key
    (37, 20, "top-left"),
])
def test_interpreter_forward_backward(interpreter: None, L: int, S: int, causal: object) -> None:
    xs = _inputs(((2, L, 8), (2, S, 8), (2, S, 6)), seed=L + S)
    _compare_with_torch(xs, atol=2e-5, causal=causal)


def test_interpreter_key_padding_and_broadcast_batch(interpreter: None) -> None:
    xs = _inputs(((2, 1, 19, 5), (1, 2, 24, 5), (1, 2, 24, 3)), seed=1)
    mask = torch.rand(2, 1, 1, 24, generator=torch.Generator().manual_seed(2)) < 0.6
    mask[1] = False  # batch entry 1: every key hidden -> zero rows, zero grads
    _compare_with_torch(xs, atol=2e-5, mask=mask, causal="bottom-right")
    out = attention(*xs, mask=mask, backend="triton")
    assert (out[1] == 0).all()


def test_interpreter_float_key_bias(interpreter: None) -> None:
    xs = _inputs(((3, 17, 8), (3, 17, 8), (3, 17, 8)), seed=3)
    bias = torch.randn(3, 1, 17, generator=torch.Generator().manual_seed(4))
    bias[0, 0, :5] = float("-inf")
    _compare_with_torch(xs, atol=2e-5, mask=bias, causal=True)


def test_interpreter_lse(interpreter: None) -> None:
    q, k, v = (x.detach() for x in _inputs(((2, 21, 8), (2, 30, 8), (2, 30, 8)), seed=5))
    mask = torch.ones(2, 1, 30, dtype=torch.bool)
    mask[1] = False
    _, lse = flash_attention_triton(q, k, v, mask=mask, causal="bottom-right", return_lse=True)
    scores = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(8)
    allowed = torch.from_numpy(attnkit.causal_mask(21, 30, alignment="bottom-right")) & mask
    expected = torch.logsumexp(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    torch.testing.assert_close(lse[0].double(), expected[0], atol=1e-5, rtol=1e-5)
    assert torch.isneginf(lse[1]).all() and torch.isneginf(expected[1]).all()


def test_interpreter_float16(interpreter: None) -> None:
    """STYLE.md's rule: error at most about twice a plain float16 implementation's."""
    q, k, v = (x.detach() for x in _inputs(((1, 40, 16), (1, 50, 16), (1, 50, 16)), seed=6))
    ref = attention(q.double(), k.double(), v.double(), causal=True, backend="torch")
    h = [x.half() for x in (q, k, v)]
    out = attention(*h, causal=True, backend="triton")
    assert out.dtype == torch.float16
    scores = (h[0].float() @ h[1].float().transpose(-1, -2) / 4).half()
    scores = scores.masked_fill(~torch.from_numpy(attnkit.causal_mask(40, 50)), float("-inf"))
    plain = torch.softmax(scores, dim=-1) @ h[2]  # textbook attention in float16
    err = (out.double() - ref).abs().max().item()
    err_plain = (plain.double() - ref).abs().max().item()
    assert err <= 2 * err_plain


@pytest.mark.parametrize("kw", [
    dict(window=(5, 0), causal="bottom-right"), dict(window=(3, 2), sinks=2),
    dict(window=(0, 0), sinks=3, causal=True), dict(softcap=1.5), dict(window=(None, 3)),
    dict(window=(7, None), sinks=1, softcap=2.0), dict(window=(4, 0), enable_gqa=True),
])
def test_interpreter_windows_sinks_softcap(interpreter: None, kw: dict) -> None:
    """Forward and backward with the variants, across several 16-wide blocks (some skipped)."""
    gen = torch.Generator().manual_seed(7)
    hq = 4 if kw.get("enable_gqa") else 2
    q = torch.randn(1, hq, 37, 16, generator=gen)
    k, v = (torch.randn(1, 2, 45, 16, generator=gen) for _ in range(2))
    g = torch.randn(1, hq, 37, 16, generator=gen)
    grads = {}
    for backend, dtype in (("triton", torch.float32), ("torch", torch.float64)):
        leaves = [x.detach().to(dtype).requires_grad_() for x in (q, k, v)]
        out = attention(*leaves, backend=backend, **kw)
        out.backward(g.to(dtype))
        grads[backend] = [out.double(), *(x.grad.double() for x in leaves)]
    for got, want in zip(grads["triton"], grads["torch"]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kw", [
    dict(), dict(causal="bottom-right"), dict(window=(5, 0), sinks=2, causal=True),
    dict(softcap=1.5, causal=True), dict(enable_gqa=True, causal=True),
])
def test_interpreter_sink_logits(interpreter: None, kw: dict) -> None:
    """Learned sink logits: the kernel's initial state (m = s_h, l = 1).

    Forward, backward and the logits' own gradient, against the torch engine in
    float64; rows that see no key (L > S, bottom-right) give 0 and zero gradients.
    """
    gen = torch.Generator().manual_seed(17)
    hq = 4 if kw.get("enable_gqa") else 2
    q = torch.randn(1, hq, 37, 16, generator=gen)
    k, v = (torch.randn(1, 2, 29, 16, generator=gen) for _ in range(2))
    sink = torch.tensor([1.5, -0.5, 3.0, 0.0][:hq])
    g = torch.randn(1, hq, 37, 16, generator=gen)
    grads = {}
    for backend, dtype in (("triton", torch.float32), ("torch", torch.float64)):
        leaves = [x.detach().to(dtype).requires_grad_() for x in (q, k, v, sink)]
        out = attention(*leaves[:3], sink_logits=leaves[3], backend=backend, **kw)
        out.backward(g.to(dtype))
        grads[backend] = [out.double(), *(x.grad.double() for x in leaves)]
    for got, want in zip(grads["triton"], grads["torch"], strict=True):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
    if kw.get("causal") == "bottom-right":  # L = 37 > S = 29: the first 8 rows see only the sink
        assert (grads["triton"][0][..., :8, :] == 0).all()


def test_interpreter_sink_logits_lse(interpreter: None) -> None:
    """The returned lse includes the sink; a batch entry that sees no key has lse = s_h."""
    q, k, v = (x.detach() for x in _inputs(((2, 21, 8), (2, 30, 8), (2, 30, 8)), seed=18))
    mask = torch.ones(2, 1, 30, dtype=torch.bool)
    mask[1] = False
    sink = torch.tensor([0.25, -2.0])
    out, lse = flash_attention_triton(q, k, v, mask=mask, sink_logits=sink, return_lse=True)
    ref, _, ref_lse = numpy_ref.run(
        *(x.double().numpy() for x in (q, k, v)), mask.numpy(),
        attnkit.check_attention_args(q.double().numpy(), k.double().numpy(), v.double().numpy(),
                                     mask=mask.numpy(), sink_logits=sink.double().numpy()),
        return_lse=True)
    torch.testing.assert_close(out.double(), torch.from_numpy(ref.copy()), atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(lse.double(), torch.from_numpy(ref_lse.copy()), atol=2e-5, rtol=2e-5)
    assert (out[1] == 0).all() and torch.allclose(lse[1], torch.full((21,), -2.0))


@pytest.mark.parametrize("blocks,causal,window", [((16, 16), True, (64, 0)),
                                                   ((64, 64), True, (100, 0)),
                                                   ((64, 64), False, (30, 30))])
def test_interpreter_windowed_kernel_visits_at_most_twice_the_visible_keys(
        interpreter: None, monkeypatch: pytest.MonkeyPatch, blocks: tuple, causal: bool,
        window: tuple) -> None:
    """Counted by the forward kernel (its loops' trip counts): under twice the keys seen.

    The tiles are capped by the window (the 64-wide tiles become 32 under a window of
    101 keys, 16 under 61).
    """
    monkeypatch.setattr(triton_flash, "INTERPRETER_BLOCKS", blocks)
    gen = torch.Generator().manual_seed(3)
    n = 320
    q, k, v = (torch.randn(1, n, 16, generator=gen) for _ in range(3))
    visited = triton_flash.visited_keys(q, k, v, causal=causal, window=window)[0].numpy()
    visible = attnkit.core.masks.visible_mask(n, n, "top-left" if causal else None,
                                              window).sum(axis=1)
    full = visible == visible.max()  # queries whose window the sequence's ends do not cut
    assert (visited >= visible).all()
    assert visited[full].max() < 2 * visible.max(), (visited[full].max(), visible.max())
    if blocks != (16, 16):  # the window's cap made the tiles smaller
        assert triton_flash.window_block_cap(window[0] + window[1] + 1) < max(blocks)


def test_window_caps_the_gpu_tiles() -> None:
    """On a GPU each kernel's tiles, capped by the window, keep BLOCK_M + 2 BLOCK_N <= width."""
    for name, table in triton_flash.DEFAULT_CONFIGS.items():
        for key, (m, n, _, _) in table.items():
            for width in (48, 65, 101, 257, 1025, 5000):
                cap = triton_flash.window_block_cap(width)
                bm, bn = min(m, cap), min(n, cap)
                assert bm + 2 * bn <= width, (name, key, width, bm, bn)
                assert bm >= 16 and bn >= 16 and bm & (bm - 1) == 0 and bn & (bn - 1) == 0
    assert triton_flash.window_block_cap(None) is None


@pytest.mark.parametrize("mask,match", [
    (torch.ones(7, 9, dtype=torch.bool), "key masks only"),
    (torch.zeros(2, 7, 9), "key masks only"),
])
def test_interpreter_unsupported_masks_are_value_errors(interpreter: None, mask: torch.Tensor,
                                                        match: str) -> None:
    x = torch.ones(2, 7, 4)
    y = torch.ones(2, 9, 4)
    with pytest.raises(ValueError, match=match):
        attention(x, y, y, mask=mask, backend="triton")


def test_interpreter_float64_is_a_type_error(interpreter: None) -> None:
    x = torch.ones(3, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match="float64"):
        attention(x, x, x, backend="triton")


def test_cpu_tensors_without_interpreter_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # read at call time by the engine
    x = torch.ones(3, 4)
    with pytest.raises(ValueError, match="CUDA"):
        flash_attention_triton(x, x, x)


def test_too_many_batch_entries_is_a_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # past the device check; nothing launches
    x = torch.ones(70000, 1, 2, 4)
    with pytest.raises(ValueError, match="65535"):
        flash_attention_triton(x, x, x)


def test_importing_attnkit_imports_no_triton() -> None:
    """The engine module is the lazy boundary.

    attnkit and its NumPy engines need neither torch nor Triton; the Triton engine's
    module imports both at its top.
    """
    code = ("import sys, attnkit; "
            "attnkit.attention(attnkit.example.Q, attnkit.example.K, attnkit.example.V, "
            "backend='flash'); assert 'triton' not in sys.modules and 'torch' not in sys.modules; "
            "import attnkit.engines.triton_flash; assert 'triton' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env={"TRITON_INTERPRET": "0", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})


def test_available_says_why() -> None:
    ok, why = triton_flash.available()
    assert isinstance(ok, bool) and why
    if not torch.cuda.is_available():
        assert ok == (triton_flash.interpreting())


# ------------------------------------------------------------------------------ CUDA


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("causal", [False, "top-left", "bottom-right"])
def test_cuda_error_rule_forward_and_backward(dtype: torch.dtype, causal: object) -> None:
    """Forward and gradients: error at most ~2x a plain same-precision implementation's."""
    L, S, E = 333, 517, 64
    xs = _inputs(((2, 3, L, E), (2, 3, S, E), (2, 3, S, E)), seed=7, device="cuda")
    g = torch.randn(2, 3, L, E, device="cuda", generator=torch.Generator("cuda").manual_seed(8))

    def grads(engine: str, precision: torch.dtype) -> tuple[torch.Tensor, list[torch.Tensor]]:
        leaves = [x.detach().to(precision).requires_grad_(True) for x in xs]
        if engine == "plain":
            scores = leaves[0] @ leaves[1].transpose(-1, -2) / math.sqrt(E)
            if causal:
                allowed = torch.from_numpy(attnkit.causal_mask(L, S, alignment=(
                    "bottom-right" if causal == "bottom-right" else "top-left"))).cuda()
                scores = scores.masked_fill(~allowed, float("-inf"))
            out = torch.softmax(scores, dim=-1) @ leaves[2]
        else:
            out = attention(*leaves, causal=causal, backend=engine)
        out.backward(g.to(precision))
        return out.detach().double(), [x.grad.double() for x in leaves]

    out_ref, g_ref = grads("torch", torch.float64)
    out, g_fast = grads("triton", dtype)
    out_plain, g_plain = grads("plain", dtype)

    def err(a: torch.Tensor, b: torch.Tensor) -> float:
        return (a - b).abs().max().item()

    assert err(out, out_ref) <= 2 * err(out_plain, out_ref) + 1e-6
    for a, p, r in zip(g_fast, g_plain, g_ref, strict=True):
        assert err(a, r) <= 2 * err(p, r) + 1e-6, (err(a, r), err(p, r))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_cuda_sink_logits_forward_backward(dtype: torch.dtype) -> None:
    """Compiled kernels with learned sink logits, at a length of several tiles.

    Output and every gradient (the logits' included) against the torch engine in float64.
    """
    gen = torch.Generator().manual_seed(19)
    q = torch.randn(2, 4, 700, 64, generator=gen)
    k, v = (torch.randn(2, 4, 900, 64, generator=gen) for _ in range(2))
    sink = torch.tensor([2.0, -1.0, 0.5, 4.0])
    g = torch.randn(2, 4, 700, 64, generator=gen)
    atol = {torch.float16: 2e-2, torch.bfloat16: 1e-1, torch.float32: 1e-4}[dtype]
    results = {}
    for backend, dt, device in (("triton", dtype, "cuda"), ("torch", torch.float64, "cpu")):
        leaves = [x.to(device=device, dtype=dt).requires_grad_() for x in (q, k, v, sink)]
        out = attention(*leaves[:3], sink_logits=leaves[3], causal="bottom-right",
                        backend=backend)
        out.backward(g.to(device=device, dtype=dt))
        results[backend] = [t.detach().double().cpu() for t in (out, *(x.grad for x in leaves))]
    for got, want in zip(results["triton"], results["torch"], strict=True):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, atol=atol * max(1.0, want.abs().max().item()),
                                   rtol=atol)


@pytest.mark.cuda
def test_cuda_key_padding_long_and_lse() -> None:
    xs = _inputs(((2, 4, 1000, 128), (2, 4, 1500, 128), (2, 4, 1500, 128)), seed=9,
                 dtype=torch.float32, device="cuda")
    mask = torch.ones(2, 1, 1, 1500, dtype=torch.bool, device="cuda")
    mask[0, ..., 1100:] = False
    mask[1] = False
    _compare_with_torch(xs, atol=1e-4, mask=mask, causal="bottom-right")
    q, k, v = (x.detach() for x in xs)
    _, lse = flash_attention_triton(q, k, v, mask=mask, return_lse=True)
    scores = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(128)
    expected = torch.logsumexp(scores.masked_fill(~mask, float("-inf")), dim=-1)
    torch.testing.assert_close(lse[0].double(), expected[0], atol=1e-4, rtol=1e-4)
    assert torch.isneginf(lse[1]).all()


@pytest.mark.cuda
def test_cuda_numpy_inputs_come_back_as_numpy() -> None:
    rng = np.random.default_rng(10)
    q, k, v = (rng.normal(size=(2, 40, 16)).astype(np.float32) for _ in range(3))
    out = attention(q, k, v, causal=True, backend="triton")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, attention(q, k, v, causal=True), atol=1e-5)
