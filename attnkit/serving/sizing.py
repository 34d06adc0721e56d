"""Attention at serving scale: cache memory, arithmetic intensity, cache quantisation.

Everything here is arithmetic on published model shapes and GPU datasheet figures,
plus a small quantiser for key/value caches; nothing needs a GPU or torch.

* :class:`ModelShape` (with :data:`MODELS`: LLaMA-2 7B and 70B, Mistral 7B) and
  :class:`GPU` (with :data:`GPUS`: H100 SXM and A100 SXM 80 GB, H200 SXM 141 GB).
* :func:`kv_bytes_per_token`, :func:`kv_cache_bytes_for`, :func:`sequences_that_fit`:
  how much memory the KV cache takes and how many sequences a GPU holds.
* :func:`prefill_cost`, :func:`decode_cost` -> :class:`StepCost`: FLOPs, bytes moved,
  arithmetic intensity, and the roofline bound of one forward step;
  :func:`batch_cost`, the same for a batch that mixes prefill chunks and decoding.
* :func:`quantize`, :class:`Quantized`: symmetric per-group integer quantisation
  (8 or 4 bits) of a cache, with its exact storage size.

Conventions: a "format" is the number of bits per cached number (16, 8 or 4). An
8- or 4-bit format stores one float16 scale per ``group_size`` numbers, which the
byte counts include. Memory sizes are in bytes; ``GiB = 2**30``. A GPU sold as
"80 GB" has 80 GiB of HBM (80 x 2**30 bytes, five 16 GiB stacks), so :data:`GPUS`
stores ``80 * GiB``; bandwidths and FLOP rates are decimal (1 TB/s = 10**12 bytes/s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core._validate import choice, integer, positive_int, real

__all__ = [
    "GPU",
    "GPUS",
    "GiB",
    "MODELS",
    "ModelShape",
    "Quantized",
    "StepCost",
    "batch_cost",
    "decode_cost",
    "kv_bytes_per_token",
    "kv_cache_bytes_for",
    "prefill_cost",
    "quantize",
    "sequences_that_fit",
]

#: Bytes in a gibibyte.
GiB = 2**30

_FORMATS = (16, 8, 4)


# --------------------------------------------------------------------------- shapes
@dataclass(frozen=True)
class ModelShape:
    """The shape of a decoder-only Transformer, as published in its configuration.

    Attributes:
        name: a label.
        layers: blocks. d_model: model width. q_heads: query heads.
        kv_heads: key/value heads (``q_heads`` for multi-head, 1 for multi-query).
        head_dim: width of one head. d_ff: feed-forward hidden width.
        vocab: vocabulary size. gated_ff: the feed-forward has three matrices (SwiGLU)
            instead of two.
        window: the sliding-window size of its attention, or ``None`` for full attention.
    """

    name: str
    layers: int
    d_model: int
    q_heads: int
    kv_heads: int
    head_dim: int
    d_ff: int
    vocab: int
    gated_ff: bool = True
    window: int | None = None

    def __post_init__(self) -> None:
        for f in ("layers", "d_model", "q_heads", "kv_heads", "head_dim", "d_ff", "vocab"):
            positive_int(f, getattr(self, f))
        if self.q_heads % self.kv_heads:
            raise ValueError(f"q_heads must be a multiple of kv_heads; got {self.q_heads} and "
                             f"{self.kv_heads}")
        if self.window is not None:
            positive_int("window", self.window)

    @property
    def params(self) -> int:
        """Parameters: attention and feed-forward matrices, norms, embeddings (untied)."""
        d, dh = self.d_model, self.head_dim
        attn = d * self.q_heads * dh + 2 * d * self.kv_heads * dh + self.q_heads * dh * d
        ff = (3 if self.gated_ff else 2) * d * self.d_ff
        return self.layers * (attn + ff + 2 * d) + 2 * self.vocab * d + d

    def with_kv_heads(self, kv_heads: int, name: str | None = None) -> ModelShape:
        """The same model with another number of key/value heads (MHA, GQA or MQA)."""
        return ModelShape(name or f"{self.name}, {kv_heads} KV heads", self.layers, self.d_model,
                          self.q_heads, kv_heads, self.head_dim, self.d_ff, self.vocab,
                          self.gated_ff, self.window)


#: Published shapes (from each model's configuration file).
MODELS: dict[str, ModelShape] = {
    "LLaMA-2 7B": ModelShape("LLaMA-2 7B", 32, 4096, 32, 32, 128, 11008, 32000),
    "Mistral 7B": ModelShape("Mistral 7B", 32, 4096, 32, 8, 128, 14336, 32000, window=4096),
    "LLaMA-2 70B": ModelShape("LLaMA-2 70B", 80, 8192, 64, 8, 128, 28672, 32000),
}


@dataclass(frozen=True)
class GPU:
    """Datasheet figures of an accelerator.

    Attributes:
        name: a label. flops: peak dense 16-bit (BF16/FP16) tensor throughput, FLOP/s.
        bandwidth: memory (HBM) bandwidth, bytes/s (decimal).
        memory: memory size in bytes: the "80 GB" of the datasheet is 80 GiB.
        sms: streaming multiprocessors (the units that run thread blocks in parallel).
        source: where the figures come from.
    """

    name: str
    flops: float
    bandwidth: float
    memory: int
    sms: int
    source: str

    @property
    def ridge(self) -> float:
        """The roofline's ridge point, FLOP per byte: below it a kernel is memory-bound."""
        return self.flops / self.bandwidth


#: NVIDIA datasheet figures (dense BF16 tensor throughput, without sparsity). The
#: memory sizes the datasheets write as "80 GB" and "141 GB" are GiB (2**30 bytes):
#: ``nvidia-smi`` reports 81,559 MiB (79.6 GiB) usable on an H100 80 GB.
GPUS: dict[str, GPU] = {
    "H100 SXM 80 GB": GPU("H100 SXM 80 GB", 989.4e12, 3.35e12, 80 * GiB, 132,
                          "NVIDIA H100 Tensor Core GPU datasheet: 989.4 TFLOP/s BF16 dense, "
                          "3.35 TB/s HBM3, 80 GB (80 GiB); 132 SMs"),
    "A100 SXM 80 GB": GPU("A100 SXM 80 GB", 312e12, 2.039e12, 80 * GiB, 108,
                          "NVIDIA A100 Tensor Core GPU datasheet: 312 TFLOP/s BF16 dense, "
                          "2,039 GB/s HBM2e, 80 GB (80 GiB); 108 SMs"),
    "H200 SXM 141 GB": GPU("H200 SXM 141 GB", 989.4e12, 4.8e12, 141 * GiB, 132,
                           "NVIDIA H200 Tensor Core GPU datasheet: BF16 1,979 TFLOP/s with "
                           "sparsity (989.4 dense, the H100's), 4.8 TB/s HBM3e, 141 GB (141 GiB); "
                           "132 SMs"),
}


# --------------------------------------------------------------------------- memory
def _storage_bits(bits: int, group_size: int) -> float:
    """Bits per cached number, including one float16 scale per group for 8/4 bits."""
    return 16.0 if bits == 16 else bits + 16.0 / group_size


def kv_bytes_per_token(model: ModelShape, bits: int = 16, *, group_size: int = 64) -> float:
    """Bytes the KV cache holds per token: ``2 x layers x kv_heads x head_dim x bits / 8``.

    For 8 and 4 bits, one float16 scale per ``group_size`` numbers is added.

    Args:
        model: the model's shape. bits: 16, 8 or 4.
        group_size: numbers that share one scale (8- and 4-bit formats).

    Returns:
        Bytes per token (a float, since a 4-bit format can give half bytes).

    Raises:
        TypeError: ``model`` not a :class:`ModelShape`. ValueError: other ``bits``, or a
            ``group_size`` that does not divide ``head_dim``.

    Example:
        >>> kv_bytes_per_token(MODELS["LLaMA-2 7B"])
        524288.0
    """
    if not isinstance(model, ModelShape):
        raise TypeError(f"model must be a ModelShape; got {type(model).__name__}")
    bits = choice("bits", bits, _FORMATS)
    group_size = positive_int("group_size", group_size)
    if model.head_dim % group_size:
        raise ValueError(f"group_size must divide head_dim = {model.head_dim}; got {group_size}")
    numbers_per_token = 2 * model.layers * model.kv_heads * model.head_dim
    return numbers_per_token * _storage_bits(bits, group_size) / 8


def kv_cache_bytes_for(model: ModelShape, *, context: int, batch: int = 1, bits: int = 16,
                       group_size: int = 64) -> float:
    """Bytes of the KV cache of ``batch`` sequences of ``context`` tokens each.

    A model with a sliding ``window`` keeps only the last ``window`` tokens.

    Raises:
        TypeError: a ``context`` or ``batch`` that is not an integer.
        ValueError: a non-positive ``context`` or ``batch`` (see :func:`kv_bytes_per_token`).

    Example:
        >>> kv_cache_bytes_for(MODELS["LLaMA-2 7B"], context=4096) / GiB
        2.0
    """
    context = positive_int("context", context)
    batch = positive_int("batch", batch)
    kept = context if model.window is None else min(context, model.window)
    return batch * kept * kv_bytes_per_token(model, bits, group_size=group_size)


def sequences_that_fit(gpu_memory: float, *, weights: float, per_sequence: float,
                       reserve: float = 0.1) -> int:
    """How many sequences' caches fit beside the weights, keeping a fraction in reserve.

    ``floor((gpu_memory * (1 - reserve) - weights) / per_sequence)``, or 0 when the
    weights alone do not fit. The reserve stands for activations, the allocator and
    fragmentation.

    Args:
        gpu_memory: bytes on the device. weights: bytes of the model's weights.
        per_sequence: cache bytes of one sequence. reserve: fraction kept free (0 to 1).

    Raises:
        TypeError: an argument that is not a real number.
        ValueError: non-positive memory or per-sequence size, negative weights, a
            reserve outside ``[0, 1)``.

    Example:
        >>> sequences_that_fit(80e9, weights=14e9, per_sequence=2e9)
        29
    """
    gpu_memory = real("gpu_memory", gpu_memory, positive=True)
    per_sequence = real("per_sequence", per_sequence, positive=True)
    weights = real("weights", weights, minimum=0)
    reserve = real("reserve", reserve, minimum=0, below=1)
    free = gpu_memory * (1 - reserve) - weights
    return max(0, math.floor(free / per_sequence))


# --------------------------------------------------------------------------- roofline
@dataclass(frozen=True)
class StepCost:
    """FLOPs and bytes of one forward step, and what bounds it on a GPU.

    Attributes:
        flops: floating-point operations (a multiply-add counts 2).
        bytes: bytes read from and written to memory: weights once, the KV cache
            read (decode) or written (prefill). Activations are left out.
        tokens: tokens processed in the step.
    """

    flops: float
    bytes: float
    tokens: int

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte."""
        return self.flops / self.bytes

    def time_on(self, gpu: GPU) -> dict[str, Any]:
        """Roofline lower bounds: compute time, memory time, the larger one and its name."""
        t_c, t_m = self.flops / gpu.flops, self.bytes / gpu.bandwidth
        return {"compute_s": t_c, "memory_s": t_m, "time_s": max(t_c, t_m),
                "bound": "compute" if t_c >= t_m else "memory"}


def _attn_flops(model: ModelShape, key_visits: float) -> float:
    # scores q.k and the weighted sum of values: 2 matmuls x 2 FLOP per multiply-add
    return 4.0 * model.layers * model.q_heads * model.head_dim * key_visits


def prefill_cost(model: ModelShape, prompt: int, *, batch: int = 1, weight_bits: int = 16,
                 kv_bits: int = 16) -> StepCost:
    """One prefill step: ``batch`` prompts of ``prompt`` tokens, causal, all at once.

    FLOPs: ``2 x params x tokens`` for the matrices plus the attention of each query
    over its visible prefix. Bytes: the weights once and the new cache entries written.

    Raises:
        TypeError: sizes that are not integers, a format of the wrong type.
        ValueError: non-positive sizes or an unknown format.

    Example:
        >>> prefill_cost(MODELS["LLaMA-2 7B"], 2048).intensity > GPUS["H100 SXM 80 GB"].ridge
        True
    """
    prompt, batch = positive_int("prompt", prompt), positive_int("batch", batch)
    tokens = batch * prompt
    visible = np.minimum(np.arange(1, prompt + 1), model.window or prompt).sum()
    flops = 2.0 * model.params * tokens + _attn_flops(model, batch * float(visible))
    bytes_ = (model.params * choice("weight_bits", weight_bits, _FORMATS) / 8
              + tokens * kv_bytes_per_token(model, kv_bits))
    return StepCost(flops, bytes_, tokens)


def decode_cost(model: ModelShape, context: int, *, batch: int = 1, weight_bits: int = 16,
                kv_bits: int = 16) -> StepCost:
    """One decoding step: ``batch`` sequences each add one token to ``context`` cached ones.

    FLOPs: ``2 x params`` per token plus attention over ``context + 1`` keys. Bytes:
    the weights once (shared by the batch) and every sequence's whole cache read.

    Raises:
        TypeError: sizes that are not integers, a format of the wrong type.
        ValueError: non-positive sizes or an unknown format.

    Example:
        >>> decode_cost(MODELS["LLaMA-2 7B"], 2048).time_on(GPUS["H100 SXM 80 GB"])["bound"]
        'memory'
    """
    context, batch = positive_int("context", context), positive_int("batch", batch)
    keys = context + 1 if model.window is None else min(context + 1, model.window)
    flops = 2.0 * model.params * batch + _attn_flops(model, float(batch * keys))
    bytes_ = (model.params * choice("weight_bits", weight_bits, _FORMATS) / 8
              + batch * keys * kv_bytes_per_token(model, kv_bits))
    return StepCost(flops, bytes_, batch)


def _visits(context: int, n_new: int, window: int | None) -> float:
    """Keys seen by ``n_new`` queries after ``context`` cached tokens: ``sum_i min(context + i, w)``."""
    if window is None:
        return float(n_new * context + n_new * (n_new + 1) // 2)
    return float(np.minimum(np.arange(context + 1, context + n_new + 1), window).sum())


def batch_cost(model: ModelShape, chunks: Any, *, weight_bits: int = 16,
               kv_bits: int = 16) -> StepCost:
    """One forward step over a batch that mixes prefill chunks and decoding tokens.

    Each entry ``(context, n_new)`` of ``chunks`` is one sequence of the batch: it
    adds ``n_new`` tokens after ``context`` tokens already in its cache. A decoding
    sequence is ``(T, 1)``; a whole prompt is ``(0, n)``; a prompt's later chunk is
    ``(tokens of it already cached, chunk length)``. The weights are read once for
    the whole batch; each sequence reads its own cached keys and values (within the
    model's window) and writes its new ones::

        F     = 2 N sum(n_new) + 4 n_L H d_h sum_i min(context + i, w)
        bytes = N b + b_KV sum(min(context, w - 1) + n_new)

    so that ``batch_cost(m, [(0, n)])`` is :func:`prefill_cost` and
    ``batch_cost(m, [(T, 1)] * B)`` is :func:`decode_cost` exactly.

    Args:
        model: the model's shape.
        chunks: a non-empty sequence of ``(context, n_new)`` pairs of integers,
            ``context >= 0`` and ``n_new >= 1``.
        weight_bits, kv_bits: formats of the weights and of the cache (16, 8 or 4).

    Returns:
        A :class:`StepCost` whose ``tokens`` is ``sum(n_new)``.

    Raises:
        TypeError: entries that are not integers. ValueError: no chunks, a negative
            context, an ``n_new`` below 1, an unknown format.

    Example:
        >>> m = MODELS["LLaMA-2 7B"]
        >>> batch_cost(m, [(0, 2048)]) == prefill_cost(m, 2048)
        True
        >>> batch_cost(m, [(4096, 1)] * 8) == decode_cost(m, 4096, batch=8)
        True
    """
    pairs = [(integer(f"chunks[{i}] context", c, minimum=0), positive_int(f"chunks[{i}] n_new", n))
             for i, (c, n) in enumerate(chunks)]
    if not pairs:
        raise ValueError("chunks must hold at least one (context, n_new) pair; got none")
    w = model.window
    tokens = sum(n for _, n in pairs)
    visits = sum(_visits(c, n, w) for c, n in pairs)
    kv_tokens = sum((c if w is None else min(c, w - 1)) + n for c, n in pairs)
    flops = 2.0 * model.params * tokens + _attn_flops(model, visits)
    bytes_ = (model.params * choice("weight_bits", weight_bits, _FORMATS) / 8
              + kv_tokens * kv_bytes_per_token(model, kv_bits))
    return StepCost(flops, bytes_, tokens)


# --------------------------------------------------------------------------- quantiser
@dataclass(frozen=True)
class Quantized:
    """A tensor stored as small integers with one float16 scale per group.

    Attributes:
        values: integers in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``, shape of the input
            (int8; a real 4-bit store packs two per byte, which :attr:`nbytes` counts).
        scales: float16 scales, shape ``(..., D // group_size)``.
        bits: 8 or 4. group_size: numbers per scale along the last axis.
    """

    values: np.ndarray
    scales: np.ndarray
    bits: int
    group_size: int

    def dequantize(self) -> np.ndarray:
        """The float32 tensor the integers and scales stand for."""
        *lead, d = self.values.shape
        g = self.values.reshape(*lead, d // self.group_size, self.group_size).astype(np.float32)
        return (g * self.scales.astype(np.float32)[..., None]).reshape(*lead, d)

    @property
    def nbytes(self) -> float:
        """Storage in bytes: ``bits / 8`` per number plus 2 per scale."""
        return self.values.size * self.bits / 8 + self.scales.size * 2


def quantize(x: Any, bits: int, *, group_size: int = 64) -> Quantized:
    """Symmetric per-group quantisation along the last axis (round to nearest).

    Each group of ``group_size`` consecutive numbers gets the scale
    ``max|x| / (2**(bits-1) - 1)`` (stored in float16); each number becomes
    ``round(x / scale)``. The error of one number is at most half a scale step.

    Shapes::

        x       (..., D)      D divisible by group_size
        values  (..., D) int8       scales (..., D // group_size) float16

    Args:
        x: a NumPy array (or anything ``np.asarray`` accepts) of real numbers.
        bits: 8 or 4.
        group_size: numbers per scale.

    Returns:
        A :class:`Quantized`; ``.dequantize()`` gives the approximation back.

    Raises:
        ValueError: ``bits`` not 8 or 4, a ``group_size`` that does not divide ``D``,
            a scalar or non-finite input.

    Example:
        >>> qx = quantize(np.array([[0.5, -1.0, 0.25, 1.0]]), 8, group_size=4)
        >>> qx.values.tolist(), bool(qx.scales[0, 0] == np.float16(1 / 127))
        ([[64, -127, 32, 127]], True)
    """
    bits = choice("bits", bits, (8, 4))
    group_size = positive_int("group_size", group_size)
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] % group_size:
        raise ValueError(f"x must have a last dimension divisible by group_size = {group_size}; "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("x must be finite")
    qmax = 2 ** (bits - 1) - 1
    *lead, d = arr.shape
    groups = arr.reshape(*lead, d // group_size, group_size)
    scales = (np.abs(groups).max(-1) / qmax).astype(np.float16)  # (..., D / group_size)
    safe = np.where(scales == 0, np.float16(1), scales).astype(np.float64)[..., None]
    values = np.clip(np.rint(groups / safe), -qmax, qmax).astype(np.int8)
    return Quantized(values.reshape(arr.shape), scales, bits, group_size)
