"""A paged KV cache, as vLLM's PagedAttention: fixed-size blocks in one shared pool.

A contiguous KV cache reserves, for every sequence, room for the longest it may
ever become; most of that room is never written. A paged cache cuts the cache into
blocks of ``block_size`` token slots, all drawn from one pool, and gives each
sequence a *block table*: the list of pool blocks that hold its tokens, in order.
A sequence takes a new block only when its last one is full, so at most
``block_size - 1`` slots per sequence are reserved but unused, and sequences of
very different lengths share the pool::

    pool (num_blocks = 8, block_size = 4)        block tables
    block 0 [a0 a1 a2 a3]                         seq a: [0, 2, 5]   length 10
    block 1 [b0 b1 b2 .]                          seq b: [1]         length 3
    block 2 [a4 a5 a6 a7]
    block 3 [ .  .  .  .]  free
    block 4 [ .  .  .  .]  free
    block 5 [a8 a9 .  .]
    block 6, 7             free

Attention over a sequence reads its blocks through the table; each block gives a
partial result ``(out_b, lse_b)`` and :func:`attnkit.serving.decoding.merge_partials`
combines them exactly, so the result equals attention over the contiguous cache.

Shapes (one layer; ``H`` key/value heads, ``E`` key width, ``Ev`` value width)::

    k_pool    (num_blocks, H, block_size, E)
    v_pool    (num_blocks, H, block_size, Ev)
    append    k (H, T, E), v (H, T, Ev)           T new tokens of one sequence
    attention q (H, L, E) -> out (H, L, Ev)        the sequence's newest L queries
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..core._arrays import dtype_name, torch_module
from ..core._validate import CausalArg, array, choice, integer, normalise_causal, positive_int
from ..core.masks import causal_offset
from .decoding import merge_partials, partial_attention

__all__ = [
    "AllocationComparison",
    "OutOfBlocksError",
    "PagedKVCache",
    "PagedMemory",
    "compare_allocation",
]


class OutOfBlocksError(RuntimeError):
    """The pool has fewer free blocks than an append needs (nothing was written)."""


@dataclass(frozen=True)
class PagedMemory:
    """Memory of a :class:`PagedKVCache` at one moment.

    Attributes:
        num_blocks: blocks in the pool. blocks_used: blocks held by sequences.
        block_size: token slots per block. tokens: tokens stored (all sequences).
        bytes_per_token: bytes of one token's keys and values (all heads).
        bytes_used: ``tokens * bytes_per_token``, the bytes that hold data.
        bytes_reserved: ``blocks_used * block_size * bytes_per_token``, the bytes
            that sequences hold (used plus the unfilled tail of each last block).
        bytes_pool: the whole pool, ``num_blocks * block_size * bytes_per_token``.
    """

    num_blocks: int
    blocks_used: int
    block_size: int
    tokens: int
    bytes_per_token: int
    bytes_used: int
    bytes_reserved: int
    bytes_pool: int

    @property
    def waste(self) -> float:
        """Fraction of the reserved bytes that hold no token (internal fragmentation)."""
        return 0.0 if self.bytes_reserved == 0 else 1.0 - self.bytes_used / self.bytes_reserved


@dataclass(frozen=True)
class AllocationComparison:
    """Token slots reserved for a request mix, paged versus contiguous allocation.

    Attributes:
        lengths: each request's length in tokens.
        block_size: the paged cache's block size.
        max_length: what a contiguous cache reserves per request.
        tokens: ``sum(lengths)``, the slots that hold data.
        paged_reserved: ``sum(ceil(n / block_size) * block_size)``.
        contiguous_reserved: ``len(lengths) * max_length``.
    """

    lengths: tuple[int, ...]
    block_size: int
    max_length: int
    tokens: int
    paged_reserved: int
    contiguous_reserved: int

    @property
    def paged_waste(self) -> float:
        """Fraction of the paged reservation that holds no token."""
        return 0.0 if self.paged_reserved == 0 else 1.0 - self.tokens / self.paged_reserved

    @property
    def contiguous_waste(self) -> float:
        """Fraction of the contiguous reservation that holds no token."""
        return 0.0 if self.contiguous_reserved == 0 else 1.0 - self.tokens / self.contiguous_reserved


def compare_allocation(lengths: Sequence[int], *, block_size: int, max_length: int) -> AllocationComparison:
    """Compare the slots a request mix reserves in a paged and in a contiguous cache.

    A contiguous cache reserves ``max_length`` slots per request (it cannot know
    how long a request will grow); a paged cache reserves whole blocks, so each
    request wastes fewer than ``block_size`` slots.

    Args:
        lengths: tokens per request (non-negative integers, each ``<= max_length``).
        block_size: slots per block (positive integer).
        max_length: slots a contiguous cache reserves per request (positive integer).

    Returns:
        An :class:`AllocationComparison` (its ``paged_waste`` and
        ``contiguous_waste`` are the unused fractions).

    Raises:
        TypeError: a length, ``block_size`` or ``max_length`` that is not an integer.
        ValueError: a negative length or one above ``max_length``; a ``block_size`` or
            ``max_length`` below 1.

    Example:
        >>> c = compare_allocation([3, 10, 1], block_size=4, max_length=16)
        >>> c.tokens, c.paged_reserved, c.contiguous_reserved
        (14, 20, 48)
    """
    block_size = positive_int("block_size", block_size)
    max_length = positive_int("max_length", max_length)
    lens = [integer(f"lengths[{i}]", n, minimum=0, maximum=max_length)
            for i, n in enumerate(lengths)]
    return AllocationComparison(
        lengths=tuple(lens),
        block_size=block_size,
        max_length=max_length,
        tokens=sum(lens),
        paged_reserved=sum(math.ceil(n / block_size) * block_size for n in lens),
        contiguous_reserved=len(lens) * max_length,
    )


class PagedKVCache:
    """Keys and values of many sequences in fixed-size blocks of one shared pool.

    Shapes::

        k_pool  (num_blocks, H, block_size, E)     v_pool (num_blocks, H, block_size, Ev)
        append: k (H, T, E), v (H, T, Ev)          gather: k (H, n, E), v (H, n, Ev)
        attention: q (H, L, E) -> (H, L, Ev)       n = the sequence's length

    Args:
        num_blocks: blocks in the pool.
        block_size: token slots per block.
        num_heads: key/value heads ``H``.
        head_dim: key width ``E``.
        value_dim: value width ``Ev`` (default ``head_dim``).
        dtype: ``"float16"``, ``"bfloat16"`` (torch only), ``"float32"`` or ``"float64"``.
        array: ``"numpy"`` or ``"torch"``, the kind of the pool and of the inputs.
        device: torch device of the pool (``array="torch"`` only; default CPU).

    Raises:
        TypeError: a size that is not an integer.
        ValueError: a size below 1, an unknown ``dtype`` or ``array``, or a ``device``
            given for NumPy.

    Example:
        >>> import numpy as np
        >>> from attnkit import attention
        >>> cache = PagedKVCache(num_blocks=4, block_size=2, num_heads=1, head_dim=4)
        >>> s = cache.new_sequence()
        >>> k = np.ones((1, 3, 4), np.float32); cache.append(s, k, k)
        >>> cache.block_table(s), cache.length(s)
        ([0, 1], 3)
    """

    def __init__(
        self,
        *,
        num_blocks: int,
        block_size: int,
        num_heads: int,
        head_dim: int,
        value_dim: int | None = None,
        dtype: str = "float32",
        array: Literal["numpy", "torch"] = "numpy",
        device: Any = None,
    ) -> None:
        self.num_blocks = positive_int("num_blocks", num_blocks)
        self.block_size = positive_int("block_size", block_size)
        self.num_heads = positive_int("num_heads", num_heads)
        self.head_dim = positive_int("head_dim", head_dim)
        self.value_dim = self.head_dim if value_dim is None else positive_int("value_dim", value_dim)
        array = choice("array", array, ("numpy", "torch"))
        bf16 = ("bfloat16",) if array == "torch" else ()  # NumPy has no bfloat16
        self.array, self.dtype = array, choice("dtype", dtype, ("float16", "float32", "float64", *bf16))
        k_shape = (self.num_blocks, self.num_heads, self.block_size, self.head_dim)
        v_shape = (self.num_blocks, self.num_heads, self.block_size, self.value_dim)
        if array == "numpy":
            if device is not None:
                raise ValueError(f"device applies to array='torch' only; got device={device!r}")
            self.k_pool: Any = np.zeros(k_shape, dtype=self.dtype)
            self.v_pool: Any = np.zeros(v_shape, dtype=self.dtype)
        else:
            torch = torch_module()
            tdtype = getattr(torch, self.dtype)
            self.k_pool = torch.zeros(k_shape, dtype=tdtype, device=device)
            self.v_pool = torch.zeros(v_shape, dtype=tdtype, device=device)
        self._free: list[int] = list(range(self.num_blocks))  # taken from the front
        self._tables: dict[int, list[int]] = {}
        self._lengths: dict[int, int] = {}
        self._next_id = 0

    # ------------------------------------------------------------------ bookkeeping

    @property
    def sequences(self) -> list[int]:
        """Ids of the live sequences, in creation order."""
        return list(self._tables)

    @property
    def free_blocks(self) -> int:
        """Blocks not held by any sequence."""
        return len(self._free)

    def _check_seq(self, seq: Any) -> int:
        if seq not in self._tables:
            raise ValueError(f"unknown sequence id {seq!r}; live sequences are {self.sequences}")
        return seq

    def new_sequence(self) -> int:
        """Start an empty sequence (it holds no block until tokens arrive); returns its id."""
        seq = self._next_id
        self._next_id += 1
        self._tables[seq] = []
        self._lengths[seq] = 0
        return seq

    def length(self, seq: int) -> int:
        """Tokens stored for sequence ``seq``. Raises ``ValueError`` for an unknown id."""
        return self._lengths[self._check_seq(seq)]

    def block_table(self, seq: int) -> list[int]:
        """The pool blocks of sequence ``seq``, in token order (a copy)."""
        return list(self._tables[self._check_seq(seq)])

    def free(self, seq: int) -> None:
        """Drop sequence ``seq`` and return its blocks to the pool."""
        self._check_seq(seq)
        self._free.extend(self._tables.pop(seq))
        self._free.sort()  # reuse the lowest-numbered blocks first: deterministic tables
        del self._lengths[seq]

    def append(self, seq: int, k: Any, v: Any) -> None:
        """Append ``T`` tokens' keys ``k (H, T, E)`` and values ``v (H, T, Ev)`` to ``seq``.

        Takes new blocks from the pool only when the last block is full.

        Raises:
            ValueError: an unknown sequence, shapes that do not match the cache.
            TypeError: arrays of the wrong kind or dtype.
            OutOfBlocksError: the pool lacks the blocks needed (the cache is unchanged).
        """
        self._check_seq(seq)
        for name, x, width in (("k", k, self.head_dim), ("v", v, self.value_dim)):
            array(name, x, self.array)  # the kind of the pool
            if dtype_name(x) != self.dtype:
                raise TypeError(f"{name} must have dtype {self.dtype} like the pool; got {dtype_name(x)}")
            if x.ndim != 3 or x.shape[0] != self.num_heads or x.shape[2] != width:
                raise ValueError(
                    f"{name} must have shape (H={self.num_heads}, T, {width}); got {tuple(x.shape)}"
                )
        if k.shape[1] != v.shape[1]:
            raise ValueError(f"k and v must hold the same number of tokens T; got k {tuple(k.shape)} "
                             f"and v {tuple(v.shape)}")
        n_new = int(k.shape[1])
        table, n = self._tables[seq], self._lengths[seq]
        need = math.ceil((n + n_new) / self.block_size) - len(table)
        if need > len(self._free):
            raise OutOfBlocksError(
                f"appending {n_new} tokens to sequence {seq} (length {n}) needs {need} new blocks of "
                f"{self.block_size} slots, but only {len(self._free)} of {self.num_blocks} are free; "
                "free a sequence or make a larger pool"
            )
        table.extend(self._free[:need])
        del self._free[:need]
        t = 0
        while t < n_new:  # fill the last block, then the new ones, slot range by slot range
            block, slot = table[(n + t) // self.block_size], (n + t) % self.block_size
            take = min(self.block_size - slot, n_new - t)
            self.k_pool[block, :, slot:slot + take] = k[:, t:t + take]
            self.v_pool[block, :, slot:slot + take] = v[:, t:t + take]
            t += take
        self._lengths[seq] = n + n_new

    # ------------------------------------------------------------------ reading

    def gather(self, seq: int) -> tuple[Any, Any]:
        """The contiguous keys ``(H, n, E)`` and values ``(H, n, Ev)`` of ``seq`` (copies)."""
        table, n = self.block_table(seq), self.length(seq)
        k = self.k_pool[table]  # (nb, H, bs, E)
        v = self.v_pool[table]
        k = k.swapaxes(0, 1).reshape(self.num_heads, len(table) * self.block_size, self.head_dim)
        v = v.swapaxes(0, 1).reshape(self.num_heads, len(table) * self.block_size, self.value_dim)
        return k[:, :n], v[:, :n]

    def attention(self, seq: int, q: Any, *, causal: CausalArg = False,
                  scale: float | None = None) -> Any:
        """Attention of ``q (H, L, E)`` over sequence ``seq``, block by block through its table.

        Each block gives a partial result and :func:`attnkit.serving.decoding.merge_partials`
        combines them: the result equals ``attnkit.attention(q, *self.gather(seq),
        causal=causal, scale=scale)``. For decoding, ``q`` holds the newest ``L``
        tokens' queries and ``causal="bottom-right"`` lets query ``i`` see the
        keys up to its own position ``n - L + i``.

        Returns:
            ``out (H, L, Ev)`` of the pool's kind and dtype; an empty sequence gives
            zeros.

        Raises:
            ValueError: an unknown sequence, ``q`` not of shape ``(H, L, E)``.
            TypeError: ``q`` of another kind or dtype than the pool.
        """
        table, n = self.block_table(seq), self.length(seq)
        array("q", q, self.array)  # the kind of the pool
        if dtype_name(q) != self.dtype:
            raise TypeError(f"q must be a {self.array} array of dtype {self.dtype} like the pool; "
                            f"got {type(q).__name__} of dtype {dtype_name(q)}")
        if q.ndim != 3 or q.shape[0] != self.num_heads or q.shape[2] != self.head_dim:
            raise ValueError(
                f"q must have shape (H={self.num_heads}, L, E={self.head_dim}); got {tuple(q.shape)}"
            )
        alignment = normalise_causal(causal)
        L, bs, nb = int(q.shape[1]), self.block_size, len(table)
        if nb == 0:
            zeros = np.zeros if self.array == "numpy" else q.new_zeros
            return zeros((self.num_heads, L, self.value_dim))
        # The key position of every slot of every block, and which slots a query may see.
        pos = np.arange(nb * bs).reshape(nb, 1, 1, bs)  # (nb, 1, 1, bs)
        visible = np.broadcast_to(pos < n, (nb, 1, L, bs))
        if alignment is not None:
            rows = np.arange(L).reshape(1, 1, L, 1)
            visible = visible & (pos <= rows + causal_offset(L, n, alignment))
        kb, vb = self.k_pool[table], self.v_pool[table]  # (nb, H, bs, E), (nb, H, bs, Ev)
        if self.array == "torch":
            visible = torch_module().from_numpy(np.ascontiguousarray(visible)).to(q.device)
        # Every block at once: the blocks are a batch dimension of one partial call.
        outs, lses = partial_attention(q[None], kb, vb, mask=visible, scale=scale)  # (nb, H, L, .)
        out, _ = merge_partials(list(outs), list(lses))
        return out

    def memory(self) -> PagedMemory:
        """Bytes used, reserved and in the whole pool (see :class:`PagedMemory`)."""
        itemsize = self.k_pool.itemsize if self.array == "numpy" else self.k_pool.element_size()
        per_token = self.num_heads * (self.head_dim + self.value_dim) * itemsize
        tokens = sum(self._lengths.values())
        used_blocks = self.num_blocks - len(self._free)
        return PagedMemory(
            num_blocks=self.num_blocks,
            blocks_used=used_blocks,
            block_size=self.block_size,
            tokens=tokens,
            bytes_per_token=per_token,
            bytes_used=tokens * per_token,
            bytes_reserved=used_blocks * self.block_size * per_token,
            bytes_pool=self.num_blocks * self.block_size * per_token,
        )

    def __repr__(self) -> str:
        m = self.memory()
        return (f"PagedKVCache({len(self._tables)} sequences, {m.blocks_used}/{m.num_blocks} blocks "
                f"of {m.block_size} slots, {m.tokens} tokens)")
