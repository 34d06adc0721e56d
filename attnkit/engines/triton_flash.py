"""The Triton engine: FlashAttention forward and backward kernels, on CUDA.

The kernels live in :mod:`attnkit.engines.kernels.triton_attention`; this module checks
what they support, lays the tensors out for them, picks block sizes and wraps
them in a ``torch.autograd.Function``. This module imports torch and Triton at
its top: the registry imports it only when the engine is used, so importing
attnkit needs neither Triton nor a GPU.

Supported: CUDA tensors of dtype float16, bfloat16 or float32 (float32 uses
exact IEEE products, not TF32; float64 is a ``TypeError``); any lengths; any widths (padded with zeros
to a power of two of at least 16 for the kernels); causal masks of both
alignments; sliding windows with sinks and soft-capping (forward and backward; only
the key blocks a window leaves are visited); learned sink logits (``sink_logits``: the
forward kernel's initial state, forward and backward); **key masks**, i.e. masks that
depend on the key only, of shape
``(..., 1, S)`` (or ``(S,)``): boolean key-padding masks, or floating per-key
biases. Masks that differ between queries raise ``ValueError`` (use
``backend="flash"`` or ``"sdpa"`` for those, or ``causal=`` for causal masks).
A floating mask gets no gradient. A query whose every key is masked
gets a zero output and zero gradients.

With the environment variable ``TRITON_INTERPRET=1`` set before Triton is first
imported, the same kernels run on CPU tensors in Triton's interpreter (slowly:
for tests at small sizes).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F
import triton

from ..core._validate import AttentionSpec, CausalArg, Window, check_attention_args
from ..core.masks import Band
from ._online import LN2, LOG2E
from .base import Capabilities
from .kernels import triton_attention as ka

#: Key masks only (shape (..., 1, S)), no float64, no score_mod (a Python function cannot
#: run inside a kernel); enable_gqa through broadcast heads.
CAPS = Capabilities(
    native="torch", dtypes=("float16", "bfloat16", "float32"), mask_rows="key",
    gradients=True, devices=("cuda",),
    features=frozenset({"window", "sinks", "softcap", "enable_gqa", "sink_logits"}), tiled=True,
    test_examples=8, notes="Triton kernels (CUDA; CPU interpreter for tests)",
)


def interpreting() -> bool:
    """True when Triton's CPU interpreter is switched on (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> tuple[bool, str]:
    """Available when Triton imports and CUDA is present, or the interpreter is on."""
    if torch.cuda.is_available():
        return True, "Triton kernels on CUDA"
    if interpreting():
        return True, "Triton kernels in the CPU interpreter (TRITON_INTERPRET=1)"
    return False, "no CUDA GPU (set TRITON_INTERPRET=1 to run the kernels on the CPU, slowly)"


def run(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec) -> tuple[Any, None]:
    """Attention through the Triton kernels; returns ``(out, None)``.

    Inputs on the CPU (NumPy arrays arrive here as CPU tensors) are computed on the
    current CUDA device and the result comes back to the CPU (differentiably),
    unless the interpreter is on.
    """
    if q.device.type == "cuda" or interpreting():
        return flash_attention_triton(q, k, v, mask=mask, spec=spec), None
    home = q.device
    q, k, v = (x.cuda() for x in (q, k, v))
    mask = None if mask is None else mask.cuda()
    return flash_attention_triton(q, k, v, mask=mask, spec=spec).to(home), None


def key_bias(mask: Any, spec: AttentionSpec) -> Any:
    """The ``(B, S)`` float32 key mask for the kernels, in base-2 units, or ``None``.

    A boolean key-padding mask becomes 0 (takes part) or ``-inf`` (hidden); a
    floating one is multiplied by ``log2(e)``, as the scores are. ``mask`` is one
    that :meth:`Capabilities.refuse` has accepted: the same for every query (shape
    ``(..., 1, S)``).
    """
    if mask is None:
        return None
    mask = mask.expand(*spec.batch, 1, spec.S).reshape(-1, spec.S)  # (B, S)
    if spec.mask_kind == "bool":
        zero = torch.zeros((), dtype=torch.float32, device=mask.device)
        return zero.masked_fill(~mask, float("-inf")).expand(mask.shape).contiguous()
    return (mask.to(torch.float32) * LOG2E).contiguous()


def flash_attention_triton(
    q: Any,
    k: Any,
    v: Any,
    *,
    mask: Any = None,
    causal: CausalArg = False,
    scale: float | None = None,
    window: Window | None = None,
    sinks: int = 0,
    softcap: float | None = None,
    sink_logits: Any = None,
    return_lse: bool = False,
    spec: AttentionSpec | None = None,
) -> Any:
    """FlashAttention through the Triton kernels, differentiable in ``q``, ``k``, ``v``, sink logits.

    Shapes::

        q (..., L, E)    k (..., S, E)    v (..., S, Ev)
        mask  (..., 1, S): boolean (True = the key takes part) or floating (added)
        out (..., L, Ev)                  lse (..., L), float32

    Args:
        q, k, v: CUDA tensors (CPU tensors under ``TRITON_INTERPRET=1``) of dtype
            float16, bfloat16 or float32.
        mask: a key mask (boolean key padding, or a floating per-key bias), or ``None``.
        causal: ``False``, ``True``/``"top-left"`` or ``"bottom-right"``.
        scale: factor on ``q @ k^T``; default ``1 / sqrt(E)``.
        window, sinks, softcap: as :func:`attnkit.attention`; the kernels visit only the
            key blocks that the window and the causal mask leave.
        sink_logits: as :func:`attnkit.attention` (a tensor; its gradient is a row sum
            of the backward's ``D`` weighted by the sink's weights).
        return_lse: also return the natural log-sum-exp of each row of scores
            (``-inf`` where every key is masked).
        spec: an already validated description of the call (skips validation).

    Returns:
        ``out`` in the dtype of ``q``, or ``(out, lse)``.

    Raises:
        ValueError: a mask form the kernels do not take; a tensor on the CPU
            without the interpreter; more than 65535 batch entries (the grid's limit).
        TypeError: float64 tensors.
        TypeError, ValueError: as :func:`attnkit.attention`.

    Example:
        >>> q = torch.randn(2, 4, 1024, 64, device="cuda", dtype=torch.bfloat16)  # doctest: +SKIP
        >>> flash_attention_triton(q, q, q, causal=True).shape  # doctest: +SKIP
        torch.Size([2, 4, 1024, 64])
    """
    if spec is None:
        spec = check_attention_args(q, k, v, mask=mask, causal=causal, scale=scale,
                                    window=window, sinks=sinks, softcap=softcap,
                                    sink_logits=sink_logits)
        if spec.kind != "torch":
            raise TypeError(f"flash_attention_triton takes torch tensors; got q of kind {spec.kind}")
        # dtypes, masks, variants, gradients: the one place that says no (attnkit.attention
        # has asked it already for its own calls)
        CAPS.refuse("triton", spec, mask)
    if q.device.type != "cuda" and not interpreting():
        raise ValueError(
            f"backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU "
            f"interpreter); got q on {q.device}"
        )
    if spec.L == 0 or spec.S == 0:
        raise ValueError(f"the Triton kernels need L > 0 and S > 0; got L={spec.L}, "
                         f"S={spec.S} (attnkit.attention handles empty inputs)")
    if math.prod(spec.batch) > 65535:
        raise ValueError(
            f"the Triton kernels launch one program row per batch entry, at most 65535; got "
            f"batch dimensions {spec.batch} ({math.prod(spec.batch)} entries): split the batch"
        )
    bias = key_bias(mask, spec)
    if bias is not None:
        bias = bias.to(q.device)
    out, lse = TritonFlashFunction.apply(q, k, v, bias, spec.sink_logits, spec)
    if return_lse:
        return out, (lse * LN2).masked_fill(lse == float("inf"), float("-inf"))
    return out


# ----------------------------------------------------------------------------- layout


def _width(n: int) -> int:
    """Kernel width for a head of width ``n``: a power of two, at least 16."""
    return max(16, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


def _flat(x: Any, batch: tuple[int, ...], length: int, width: int) -> Any:
    """``x (..., length, w)`` -> ``(B, length, width)``: batch expanded, zero-padded, contiguous."""
    x = x.expand(*batch, length, x.shape[-1]).reshape(-1, length, x.shape[-1])
    if x.shape[-1] != width:
        x = F.pad(x, (0, width - x.shape[-1]))
    return x.contiguous()


#: Block shapes ``(BLOCK_M, BLOCK_N, num_warps, num_stages)`` per kernel: for 16-bit
#: inputs by head width (the shapes the autotuner chose on an H100 at n >= 2048,
#: benchmarks/results-gpu.json), and for float32 (exact products, no tensor cores).
DEFAULT_CONFIGS: dict[str, dict[Any, tuple[int, int, int, int]]] = {
    "attn_fwd": {64: (128, 64, 8, 3), 128: (128, 128, 8, 3), "other": (128, 64, 4, 3),
                 "float32": (64, 32, 4, 2)},
    "attn_bwd_dkdv": {64: (32, 128, 4, 3), 128: (64, 128, 8, 3), "other": (32, 64, 4, 3),
                      "float32": (32, 64, 4, 2)},
    "attn_bwd_dq": {64: (128, 64, 8, 3), 128: (128, 64, 8, 3), "other": (64, 32, 4, 3),
                    "float32": (64, 32, 4, 2)},
}

#: Shapes that ``ATTNKIT_TRITON_AUTOTUNE=1`` tries (``python -m attnkit.bench`` sets it).
AUTOTUNE_CONFIGS: dict[str, list[tuple[int, int, int, int]]] = {
    "attn_fwd": [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 4)],
    "attn_bwd_dkdv": [(32, 128, 4, 3), (64, 128, 8, 3), (32, 64, 4, 4)],
    "attn_bwd_dq": [(128, 32, 4, 3), (128, 64, 8, 3), (64, 32, 4, 4)],
}


def autotuning() -> bool:
    """True when ``ATTNKIT_TRITON_AUTOTUNE=1``: block shapes are tuned per problem size."""
    return os.environ.get("ATTNKIT_TRITON_AUTOTUNE", "0") == "1" and not interpreting()


#: Tiles in Triton's CPU interpreter, which runs each one in NumPy: small ones.
INTERPRETER_BLOCKS: tuple[int, int] = (16, 16)


def window_block_cap(width: int | None) -> int | None:
    """The largest tile side (``BLOCK_M`` and ``BLOCK_N``) for a window of ``width`` keys.

    A block of ``BLOCK_M`` queries visits the key blocks (of ``BLOCK_N``, aligned to
    ``BLOCK_N``) that any of its rows sees: at most ``BLOCK_M + width + 2 * BLOCK_N``
    keys. Sides of at most ``width / 3`` (a power of two, at least 16) keep that
    within twice the ``width`` keys a query sees. ``None`` without a window.

    Example:
        >>> window_block_cap(257), window_block_cap(64), window_block_cap(None)
        (64, 16, None)
    """
    if width is None:
        return None
    return max(16, 1 << max(0, (width // 3).bit_length() - 1))


def _config(name: str, E: int, float32: bool, width: int | None = None) -> dict[str, int]:
    """The fixed launch configuration of kernel ``name``, its tiles capped by the window."""
    table = DEFAULT_CONFIGS[name]
    m, n, warps, stages = table["float32"] if float32 else table.get(E, table["other"])
    if interpreting():  # small tiles: the interpreter runs each one in NumPy
        m, n = INTERPRETER_BLOCKS
    cap = window_block_cap(width)
    if cap is not None:
        m, n = min(m, cap), min(n, cap)
    if interpreting():
        return {"BLOCK_M": m, "BLOCK_N": n}
    return {"BLOCK_M": m, "BLOCK_N": n, "num_warps": warps, "num_stages": stages}


_TUNED: dict[str, Any] = {}


def _kernel(name: str, tune: bool) -> Any:
    """Kernel ``name``: plain, or wrapped in ``triton.autotune`` when ``tune``."""
    raw = getattr(ka, name)
    if not tune:
        return raw
    if name not in _TUNED:
        configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
                   for m, n, w, s in AUTOTUNE_CONFIGS[name]]
        key = ["L", "S", "E", "EV", "CAUSAL", "HAS_BIAS", "IEEE", "WINDOW", "SOFTCAP"]
        if name == "attn_fwd":
            key.append("HAS_SINK")
        _TUNED[name] = triton.autotune(configs=configs, key=key)(raw)
    return _TUNED[name]


def tuned_configs() -> dict[str, str]:
    """The block shapes the autotuner chose for the last problem size (for the benchmark)."""
    return {name: str(getattr(k, "best_config", None)) for name, k in _TUNED.items()}


def _launch(name: str, grid_rows: int, B: int, *args: Any, width: int | None = None,
            **meta: Any) -> dict[str, int]:
    """Launch kernel ``name`` over ``cdiv(grid_rows, block)`` x ``B`` programs.

    Autotuned (``ATTNKIT_TRITON_AUTOTUNE=1``) unless a window of ``width`` keys caps
    the tiles (:func:`window_block_cap`) or the forward counts its visits; returns
    the fixed configuration used (empty when autotuned).
    """
    along = "BLOCK_N" if name == "attn_bwd_dkdv" else "BLOCK_M"
    cap = window_block_cap(width)
    fits = cap is None or all(max(m, n) <= cap for m, n, _, _ in AUTOTUNE_CONFIGS[name])
    if autotuning() and fits and not meta.get("COUNT"):
        _kernel(name, True)[lambda m: (triton.cdiv(grid_rows, m[along]), B)](*args, **meta)
        return {}
    config = _config(name, meta["E"], meta["IEEE"], width)
    _kernel(name, False)[(triton.cdiv(grid_rows, config[along]), B)](*args, **meta, **config)
    return config


def _forward(q: Any, k: Any, v: Any, bias: Any, spec: AttentionSpec,
             count: bool = False, sink: Any = None) -> tuple[Any, Any, Any]:
    """Run ``attn_fwd`` on ``(B, L, E)`` tensors: ``out (B, L, EV)``, ``lse (B, L)`` base 2, visits.

    ``visits`` (with ``count``): ``(B, L)`` int32, the keys whose scores the kernel
    computed for each query (its block's count); else ``None``. ``sink``: ``(B,)``
    float32 sink logits in base-2 units, or ``None``.
    """
    B, L, E = q.shape
    S, EV = k.shape[1], v.shape[2]
    out = torch.empty((B, L, EV), device=q.device, dtype=q.dtype)
    lse = torch.empty((B, L), device=q.device, dtype=torch.float32)
    dummy = bias if bias is not None else torch.zeros(1, dtype=torch.float32, device=q.device)
    sink_arg = sink if sink is not None else torch.zeros(1, dtype=torch.float32, device=q.device)
    band, meta = _band(spec)
    # one count per (batch entry, program); at most one program per query
    visits = torch.zeros((B, L if count else 1), device=q.device, dtype=torch.int32)
    config = _launch(
        "attn_fwd", L, B, q, k, v, dummy, sink_arg, out, lse, visits,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        out.stride(0), out.stride(1), 0 if bias is None else bias.stride(0),
        L, S, spec.scale * LOG2E, *band, width=Band.of_spec(spec).width,
        E=E, EV=EV, HAS_BIAS=bias is not None, IEEE=q.dtype == torch.float32, COUNT=count,
        HAS_SINK=sink is not None, **meta,
    )
    if not count:
        return out, lse, None
    programs = triton.cdiv(L, config["BLOCK_M"])
    per_block = visits.reshape(-1)[: B * programs].reshape(B, programs)
    return out, lse, per_block.repeat_interleave(config["BLOCK_M"], dim=1)[:, :L]


def visited_keys(q: Any, k: Any, v: Any, **kwargs: Any) -> Any:
    """Keys whose scores the forward kernel computes for each query, as the kernel counts them.

    Shapes: ``q (..., L, E)``, ``k (..., S, E)``, ``v (..., S, Ev)`` -> ``(B, L)`` int32,
    ``B`` the batch entries: each block of queries stores its key loops' trip counts
    times ``BLOCK_N``. ``kwargs``: ``causal``, ``scale``, ``window``, ``sinks``,
    ``softcap`` as :func:`attnkit.attention`. For tests and the benchmark: the keys a
    query sees are :func:`attnkit.core.masks.visible_mask`'s row sums.
    """
    spec = check_attention_args(q, k, v, **kwargs)
    CAPS.refuse("triton", spec)
    we, wev = _width(spec.E), _width(spec.Ev)
    flat = [_flat(x, spec.batch, n, w) for x, n, w in ((q, spec.L, we), (k, spec.S, we),
                                                         (v, spec.S, wev))]
    return _forward(*flat, None, spec, count=True)[2]


def _band(spec: AttentionSpec) -> tuple[tuple[int, int, int, float, float], dict]:
    """The kernels' ``(offset, lo_off, sinks, cap_in, cap_out)`` and the causal/window/softcap flags.

    Soft-capping on base-2 scores ``s``: ``cap_out * tanh(s * cap_in)`` with
    ``cap_in = ln 2 / c`` and ``cap_out = c * log2(e)``.
    """
    band = Band.of_spec(spec)
    c = spec.softcap
    values = (0 if band.hi is None else band.hi, 0 if band.lo is None else band.lo, band.sinks,
              1.0 if c is None else LN2 / c, 1.0 if c is None else c * LOG2E)
    flags = dict(CAUSAL=band.hi is not None, WINDOW=band.lo is not None,
                 SOFTCAP=spec.softcap is not None)
    return values, flags


def _backward(q: Any, k: Any, v: Any, bias: Any, out: Any, lse: Any, d_out: Any,
              spec: AttentionSpec) -> tuple[Any, Any, Any]:
    """Run the two backward kernels; returns ``dq, dk, dv`` in the layout of the inputs."""
    B, L, E = q.shape
    S, EV = k.shape[1], v.shape[2]
    d_out = d_out.contiguous()
    delta = (d_out.float() * out.float()).sum(-1).contiguous()  # D = rowsum(dO * O), (B, L)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dummy = bias if bias is not None else torch.zeros(1, dtype=torch.float32, device=q.device)
    band, flags = _band(spec)
    common = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
              d_out.stride(0), d_out.stride(1), 0 if bias is None else bias.stride(0),
              L, S, spec.scale * LOG2E, spec.scale, *band)
    meta = dict(E=E, EV=EV, HAS_BIAS=bias is not None, IEEE=q.dtype == torch.float32, **flags)
    width = Band.of_spec(spec).width
    _launch("attn_bwd_dkdv", S, B, q, k, v, dummy, d_out, lse, delta, dk, dv, *common,
            width=width, **meta)
    _launch("attn_bwd_dq", L, B, q, k, v, dummy, d_out, lse, delta, dq, *common, width=width,
            **meta)
    return dq, dk, dv


class TritonFlashFunction(torch.autograd.Function):
    """Forward and backward through the Triton kernels; saves ``out`` and ``lse``."""

    @staticmethod
    def forward(ctx: Any, q: Any, k: Any, v: Any, bias: Any, sink_logits: Any,
                spec: AttentionSpec) -> Any:
        """Lay the inputs out for the kernels, run the forward kernel, save for backward.

        ``sink_logits`` is ``spec.sink_logits`` (or ``None``), passed apart so that
        autograd sees it as an input.
        """
        we, wev = _width(spec.E), _width(spec.Ev)
        qf = _flat(q, spec.batch, spec.L, we)
        kf = _flat(k, spec.batch, spec.S, we)
        vf = _flat(v, spec.batch, spec.S, wev)
        sink = None
        if sink_logits is not None:  # (B,) float32, base 2
            sink = (sink_logits.detach().to(device=q.device, dtype=torch.float32)
                    .expand(spec.batch).reshape(-1) * LOG2E).contiguous()
        out, lse, _ = _forward(qf, kf, vf, bias, spec, sink=sink)
        ctx.save_for_backward(qf, kf, vf, out, lse)
        ctx.bias, ctx.spec = bias, spec
        ctx.sink = None if sink is None else (sink, sink_logits.shape, sink_logits.dtype)
        ctx.shapes = (q.shape, k.shape, v.shape)
        ctx.mark_non_differentiable(lse)
        result = out[..., : spec.Ev].reshape(spec.out_shape)
        return result, lse.reshape(*spec.batch, spec.L)

    @staticmethod
    def backward(ctx: Any, d_out: Any, _d_lse: Any) -> tuple[Any, ...]:
        """Run the two backward kernels; sum gradients over broadcast batch copies."""
        qf, kf, vf, out, lse = ctx.saved_tensors
        spec = ctx.spec
        do = _flat(d_out, spec.batch, spec.L, vf.shape[-1])
        dq, dk, dv = _backward(qf, kf, vf, ctx.bias, out, lse, do, spec)
        grads = []
        for g, shape, length, width in zip(
            (dq, dk, dv), ctx.shapes, (spec.L, spec.S, spec.S), (spec.E, spec.E, spec.Ev),
            strict=True,
        ):
            g = g[..., :width].reshape(*spec.batch, length, width)
            grads.append(g.sum_to_size(shape))  # broadcast batch: sum over the copies
        d_sink = None
        if ctx.sink is not None:  # -sum_i w_i^sink D_i, w_i^sink = exp2(s_h - lse_i)
            sink, shape, dtype = ctx.sink
            delta = (do.float() * out.float()).sum(-1)  # (B, L): D = rowsum(dO * O)
            d_sink = -(torch.exp2(sink[:, None] - lse) * delta).sum(-1)  # (B,)
            d_sink = d_sink.reshape(spec.batch).sum_to_size(shape).to(dtype)
        return (*grads, None, d_sink, None)
