"""What the tiled engines share: the online-softmax constants, block sizes and checks.

The NumPy engine (:mod:`attnkit.engines.flash_numpy`), the torch engine
(:mod:`attnkit.engines.flash_torch`) and the Triton engine keep their running
maximum ``m_i`` and log-sum-exp either in natural units (``exp``) or in base-2 units
(``exp2``: ``log2(e)`` folded into the scale, as GPU kernels do). Which one is
faster depends on the machine's maths library and vector units, so the NumPy
engine decides once per process by a short probe (:func:`numpy_exp_base`).

Which tiles a block of queries visits is decided by :class:`attnkit.core.masks.Band`
(causal mask, window and sinks): tiles that no query of the block can see are
skipped, tiles that every query sees entirely are computed without a mask.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..core._arrays import torch_module
from ..core._validate import AttentionSpec, positive_int
from ..core.masks import Band

#: log2(e): exp(x) = exp2(x * LOG2E).
LOG2E: float = 1.4426950408889634
#: ln(2), to turn a base-2 log-sum-exp back into natural units.
LN2: float = 0.6931471805599453

#: Default query-block height of the NumPy and torch loops (``None``: that of
#: :func:`default_blocks`). Set it to force a block size everywhere.
BLOCK_Q: int | None = None
#: Default key-block width (``None``: that of :func:`default_blocks`).
BLOCK_K: int | None = None

#: Whether the tiled loops try an optimistic pass over each block of queries first:
#: the first tile's row maxima become the shift, later tiles compute no maximum, and
#: the block is computed again carefully only if an exponential overflowed (its row
#: sum or output is then not finite). ``False``: every block is computed carefully.
OPTIMISTIC: bool = True

#: Lazy rescaling (the careful pass of the tiled loops): the running maximum is only
#: moved when a tile's scores exceed it by more than this (natural units), so most
#: tiles need no rescaling pass; ``exp`` of at most 8 (about 3000) cannot overflow
#: float32 sums of any tile.
RESCALE_THRESHOLD: float = 8.0


def blocks(block_q: Any, block_k: Any, kind: str = "numpy", banded: bool = False,
           width: int | None = None) -> tuple[int, int]:
    """The block sizes to use: the arguments if given, else the module's, else the defaults.

    ``banded``: a causal mask or a window hides keys from the queries; ``width``:
    the most keys a query sees under a window (:func:`default_blocks`).

    Raises:
        TypeError, ValueError: a block size that is not a positive integer (named in
            the message).

    Example:
        >>> blocks(64, 128)
        (64, 128)
    """
    dq, dk = default_blocks(kind, banded, width)
    bq = block_q if block_q is not None else (BLOCK_Q if BLOCK_Q is not None else dq)
    bk = block_k if block_k is not None else (BLOCK_K if BLOCK_K is not None else dk)
    return positive_int("block_q", bq), positive_int("block_k", bk)


def call_blocks(spec: AttentionSpec, block_q: Any = None, block_k: Any = None,
                kind: str = "numpy") -> tuple[int, int]:
    """The block sizes for the call ``spec``: :func:`blocks` with its band's shape.

    Example:
        >>> from attnkit import check_attention_args
        >>> x = np.ones((4096, 8))
        >>> call_blocks(check_attention_args(x, x, x, causal=True, window=(100, 0)))
        (96, 96)
    """
    band = Band.of_spec(spec)
    return blocks(block_q, block_k, kind, band.bounded, band.width)


#: The narrowest tile :func:`default_blocks` picks for a window: below it, the fixed
#: cost of a block of queries outweighs the hidden scores a taller block computes.
MIN_WINDOW_BLOCK: int = 16


def default_blocks(kind: str, banded: bool = False, width: int | None = None) -> tuple[int, int]:
    """The default ``(block_q, block_k)`` of the NumPy and torch loops.

    Without a causal mask or a window: blocks of 1024 queries by 512 keys (a 2 MiB
    float32 tile). Each block of queries pays a fixed cost (its first tile's row
    maxima, a few small operations), and each pass over the keys reads them again,
    so tall blocks of queries pay off. Against SDPA at n = 1024 ... 8192 on an AVX2
    machine, 1024 x 512 took less time than 512 x 512 at every n in the torch loop
    and at n <= 4096 in the NumPy loop (2 % more at 8192); in the torch loop,
    256 x 512 and 1024 x 1024 took more.

    With a causal mask (``banded``): 512 x 512. A block of queries computes every
    key that any of its rows sees, so taller blocks compute more hidden scores.

    With a window that bounds both sides, of ``width`` keys per query at most:
    square tiles of ``width`` rounded down to a multiple of 16 (at least
    :data:`MIN_WINDOW_BLOCK`, at most 512). A block of ``b`` queries visits the
    ``b + width - 1`` keys that any of its rows sees, so with ``b <= width`` the
    keys visited per query stay within twice the keys visible (for windows of
    :data:`MIN_WINDOW_BLOCK` keys or more); 512-row blocks under a window of 256
    keys visited about 3 times the keys each query sees.

    ``python -m attnkit.bench`` measures the engines with these defaults;
    :data:`BLOCK_Q` and :data:`BLOCK_K` override them.

    Example:
        >>> default_blocks("torch"), default_blocks("torch", banded=True)
        ((1024, 512), (512, 512))
        >>> default_blocks("numpy", banded=True, width=257)
        (256, 256)
    """
    del kind  # one default for both loops
    if width is not None:
        b = min(512, max(MIN_WINDOW_BLOCK, width // 16 * 16))
        return b, b
    return (512, 512) if banded else (1024, 512)


#: Scratch memory (a tile of scores, the running state) kept between calls, per
#: thread, up to this many bytes: a freshly allocated buffer costs a page fault
#: per 4 KiB page on its first use, which shows in short calls (n around 1024).
SCRATCH_KEEP_BYTES: int = 16 * 2**20

_scratch_pool = threading.local()


@contextlib.contextmanager
def scratch(kind: str, sizes: tuple[int, ...], dtype: Any, device: Any = None) -> Iterator[list[Any]]:
    """Flat buffers of the given sizes (in elements), carved from one kept allocation.

    ``kind`` is ``"numpy"`` or ``"torch"`` (then ``dtype`` is a torch dtype and
    ``device`` a torch device; only CPU memory is kept, CUDA has its own cache).
    Each buffer starts a multiple of 16 elements after the first (64 bytes for
    float32). While a call holds the memory, a nested call (a ``score_mod`` that
    calls attention, say) gets its own.

    Example:
        >>> import numpy as np
        >>> with scratch("numpy", (3, 5), np.float32) as (a, b):
        ...     a.shape, b.shape
        ((3,), (5,))
    """
    align = 16  # elements of at most 4 bytes per 64 bytes; float64: 128 bytes
    offsets, total = [], 0
    for n in sizes:
        offsets.append(total)
        total += -(-int(n) // align) * align
    keep = kind == "numpy" or device.type == "cpu"
    pool = _scratch_pool.__dict__.setdefault(kind, {})
    key = (dtype, device)
    buf = pool.pop(key, None) if keep else None
    if buf is None or buf.shape[0] < total:
        if kind == "numpy":
            buf = np.empty(max(total, 1), dtype=dtype)
        else:
            buf = torch_module().empty(max(total, 1), dtype=dtype, device=device)
    try:
        yield [buf[o:o + int(n)] for o, n in zip(offsets, sizes, strict=True)]
    finally:
        if keep and buf.shape[0] * buf.itemsize <= SCRATCH_KEEP_BYTES:
            pool[key] = buf


def release_scratch() -> None:
    """Free the scratch memory that the tiled engines keep for this thread.

    Example:
        >>> release_scratch()
    """
    _scratch_pool.__dict__.clear()


def _faster_base(exp: Any, exp2: Any, x: Any, out: Any) -> str:
    """``"exp2"`` or ``"exp"``: the faster of two exponentials on ``x`` (best of 5 each).

    ``ATTNKIT_EXP`` (``exp`` or ``exp2``) in the environment overrides the probe;
    ``exp2`` must be at least 10 % faster to be chosen.
    """
    forced = os.environ.get("ATTNKIT_EXP")
    if forced in ("exp", "exp2"):
        return forced
    best = {}
    for name, fn in (("exp", exp), ("exp2", exp2)):
        fn(x, out=out)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn(x, out=out)
            times.append(time.perf_counter() - t0)
        best[name] = min(times)
    return "exp2" if best["exp2"] < 0.9 * best["exp"] else "exp"


@functools.cache
def numpy_exp_base() -> str:
    """``"exp2"`` or ``"exp"``: whichever NumPy computes faster here, on a float32 tile.

    ``np.exp2`` is faster than ``np.exp`` on some CPUs and slower on others (its SIMD
    paths differ by vector ISA and NumPy build), so the NumPy engine measures both
    once per process (a few milliseconds) and uses the faster. The environment
    variable ``ATTNKIT_EXP`` (``exp`` or ``exp2``) overrides it.
    """
    x = np.linspace(-20.0, 0.0, 256 * 512, dtype=np.float32).reshape(256, 512)
    return _faster_base(np.exp, np.exp2, x, np.empty_like(x))


@functools.cache
def torch_exp_base() -> str:
    """``"exp2"`` or ``"exp"``: whichever torch computes faster here (CPU), probed once.

    The same probe as :func:`numpy_exp_base`, for the torch loop on CPU tensors; the
    environment variable ``ATTNKIT_EXP`` overrides it too.
    """
    torch = torch_module()
    x = torch.linspace(-20.0, 0.0, 256 * 512).reshape(256, 512)
    return _faster_base(torch.exp, torch.exp2, x, torch.empty_like(x))


def units(base: str) -> float:
    """Scores are multiplied by this before exponentiating with ``base``: 1 or log2(e)."""
    return LOG2E if base == "exp2" else 1.0


def lse_natural(m: Any, log_l: Any, base: str) -> Any:
    """``lse = m + log(l)`` in natural units from a running max ``m`` and ``log_base(l)``."""
    return (m + log_l) * (LN2 if base == "exp2" else 1.0)
