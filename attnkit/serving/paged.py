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

**Sharing.** A block may sit in several tables at once; it counts its *references*
(``refcount``) and returns to the pool when the last one lets go. Two mechanisms
share blocks:

* :meth:`BlockManager.fork` starts a sequence that shares every block of another
  (parallel sampling, beam search, the branches of a speculative draft). When one of
  them appends into a shared block that is only partly filled, that block is copied
  first (**copy-on-write**), so neither sees the other's new tokens::

      seq a: [0, 1]  (6 tokens)   fork ->  seq b: [0, 1]     refcounts: 0 -> 2, 1 -> 2
      append 1 token to b:                 seq b: [0, 3]     block 1 copied to 3, then written

* **Automatic prefix caching.** A full block is identified by a hash of its token ids
  and of the hash of the block before it (so the hash names the whole prefix up to
  the block's end). With ``prefix_caching=True``, :meth:`BlockManager.new_sequence`
  given a prompt's token ids reuses every leading full block already in the pool, held
  by a live sequence or left behind by a finished one; only the rest of the prompt
  must be computed. Blocks that no sequence references but that hold a cached prefix
  stay in the pool until it runs out of free blocks, and are then evicted least
  recently used first (a finished sequence gives back its blocks last to first, so
  the end of a prefix goes before its beginning).

:class:`BlockManager` does the bookkeeping alone (no arrays: a scheduler plans in
it); :class:`PagedKVCache` adds the pools of keys and values, for one or
several layers, and attention through the tables.

Shapes (per layer; ``H`` key/value heads, ``E`` key width, ``Ev`` value width)::

    k_pool    (num_blocks, H, block_size, E)
    v_pool    (num_blocks, H, block_size, Ev)
    append    k (H, T, E), v (H, T, Ev)           T new tokens of one sequence
    attention q (H, L, E) -> out (H, L, Ev)        the sequence's newest L queries
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..core._arrays import dtype_name, torch_module
from ..core._validate import (
    CausalArg,
    array,
    choice,
    flag,
    integer,
    normalise_causal,
    positive_int,
)
from ..core.masks import causal_offset
from .decoding import merge_partials, partial_attention

__all__ = [
    "AllocationComparison",
    "BlockManager",
    "OutOfBlocksError",
    "PagedKVCache",
    "PagedMemory",
    "compare_allocation",
]


class OutOfBlocksError(RuntimeError):
    """The pool has fewer free blocks than an operation needs (nothing was changed)."""


@dataclass(frozen=True)
class PagedMemory:
    """Memory of a :class:`PagedKVCache` (or the blocks of a :class:`BlockManager`) at one moment.

    Attributes:
        num_blocks: blocks in the pool. blocks_used: blocks referenced by sequences.
        block_size: token slots per block.
        tokens: tokens of all sequences, each sequence counted in full (a prefix
            shared by two sequences counts twice).
        bytes_per_token: bytes of one token's keys and values (all heads and layers;
            0 for a :class:`BlockManager`, which holds no data).
        bytes_used: the bytes that hold data in referenced blocks, each block once
            (``tokens_held * bytes_per_token``).
        bytes_reserved: ``blocks_used * block_size * bytes_per_token``, the bytes that
            sequences hold (used plus the unfilled tail of each last block).
        bytes_pool: the whole pool, ``num_blocks * block_size * bytes_per_token``.
        tokens_held: slots holding data in referenced blocks, each block counted once;
            equals ``tokens`` when no block is shared.
        blocks_cached: blocks no sequence references that keep a cached prefix
            (evicted least recently used first when the pool runs out).
    """

    num_blocks: int
    blocks_used: int
    block_size: int
    tokens: int
    bytes_per_token: int
    bytes_used: int
    bytes_reserved: int
    bytes_pool: int
    tokens_held: int = 0
    blocks_cached: int = 0

    @property
    def waste(self) -> float:
        """Fraction of the reserved bytes that hold no token (internal fragmentation)."""
        return 0.0 if self.bytes_reserved == 0 else 1.0 - self.bytes_used / self.bytes_reserved

    @property
    def sharing(self) -> float:
        """``tokens / tokens_held``: how many sequence tokens each stored token serves (1: none shared)."""
        return 1.0 if self.tokens_held == 0 else self.tokens / self.tokens_held
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




def _block_hash(parent: bytes, tokens: Sequence[int]) -> bytes:
    """The hash of a full block: its token ids and the hash of the prefix before it."""
    return hashlib.blake2b(parent + np.asarray(tokens, dtype=np.int64).tobytes(),
                           digest_size=16).digest()


def _token_ids(tokens: Any) -> list[int]:
    ids = list(tokens)
    if all(type(t) is int and t >= 0 for t in ids):  # the common case, checked fast
        return ids
    return [integer(f"tokens[{i}]", t, minimum=0) for i, t in enumerate(ids)]


class BlockManager:
    """Block tables over a pool of numbered blocks: sharing, copy-on-write, prefix caching.

    The bookkeeping of a paged cache without its data, so that a scheduler or a
    simulator can plan with exactly the accounting that :class:`PagedKVCache` uses.
    Every block is in one of three states::

        free        on the free list (no data that anyone wants)
        referenced  in the block table of at least one sequence (refcount >= 1)
        cached      refcount 0, but it holds a full block of a prefix that a new
                    sequence may reuse; evicted least recently used when needed

    Args:
        num_blocks: blocks in the pool.
        block_size: token slots per block.
        prefix_caching: register full blocks by the hash of their token ids and the
            prefix before them, and reuse them in :meth:`new_sequence`.

    Raises:
        TypeError: a size that is not an integer, a ``prefix_caching`` that is not a bool.
        ValueError: a size below 1.

    Example:
        >>> bm = BlockManager(num_blocks=4, block_size=2, prefix_caching=True)
        >>> a = bm.new_sequence(); _ = bm.reserve(a, 5, tokens=[7, 7, 8, 8, 9])
        >>> b = bm.new_sequence(tokens=[7, 7, 8, 8, 1])   # the first two blocks are reused
        >>> bm.block_table(b), bm.length(b), bm.refcount(0)
        ([0, 1], 4, 2)
    """

    def __init__(self, *, num_blocks: int, block_size: int, prefix_caching: bool = False) -> None:
        self.num_blocks = positive_int("num_blocks", num_blocks)
        self.block_size = positive_int("block_size", block_size)
        self.prefix_caching = flag("prefix_caching", prefix_caching)
        self._free: list[int] = list(range(self.num_blocks))  # sorted; taken from the front
        self._refs = [0] * self.num_blocks
        self._fill = [0] * self.num_blocks  # slots holding data (or reserved for it)
        self._hash_of: dict[int, bytes] = {}  # registered full blocks
        self._block_of: dict[bytes, int] = {}
        self._cached: OrderedDict[int, None] = OrderedDict()  # refcount 0, registered; LRU first
        self._tables: dict[int, list[int]] = {}
        self._lengths: dict[int, int] = {}
        self._tokens: dict[int, list[int] | None] = {}  # None: some tokens came without ids
        self._hashes: dict[int, list[bytes]] = {}  # hash of each full block, in table order
        self._write_from: dict[int, int] = {}
        self._freed: set[int] = set()
        self._next_id = 0
        #: Counters since the pool was made: prompt tokens offered to and found in the
        #: prefix cache, blocks evicted, blocks copied on write.
        self.stats = {"prefix_query_tokens": 0, "prefix_hit_tokens": 0, "evictions": 0,
                      "copies_on_write": 0}

    # ------------------------------------------------------------------ views
    @property
    def sequences(self) -> list[int]:
        """Ids of the live sequences, in creation order."""
        return list(self._tables)

    @property
    def free_blocks(self) -> int:
        """Blocks not referenced by any sequence: free, or cached and evictable."""
        return len(self._free) + len(self._cached)

    @property
    def cached_blocks(self) -> int:
        """Blocks that no sequence references but that keep a cached prefix."""
        return len(self._cached)

    def refcount(self, block: int) -> int:
        """How many block tables hold ``block``."""
        return self._refs[integer("block", block, minimum=0, maximum=self.num_blocks - 1)]

    def _check_seq(self, seq: Any) -> int:
        if seq in self._tables:
            return seq
        if seq in self._freed:
            raise ValueError(f"sequence {seq!r} was freed; its blocks are gone (live sequences are "
                             f"{self.sequences})")
        raise ValueError(f"unknown sequence id {seq!r}; live sequences are {self.sequences}")

    def length(self, seq: int) -> int:
        """Tokens stored for sequence ``seq``. Raises ``ValueError`` for an unknown or freed id."""
        return self._lengths[self._check_seq(seq)]

    def block_table(self, seq: int) -> list[int]:
        """The pool blocks of sequence ``seq``, in token order (a copy)."""
        return list(self._tables[self._check_seq(seq)])

    def token_ids(self, seq: int) -> list[int] | None:
        """The token ids of ``seq`` (``None`` if some of its tokens came without ids)."""
        ids = self._tokens[self._check_seq(seq)]
        return None if ids is None else list(ids)

    # ------------------------------------------------------------------ prefix cache
    def _chain(self, tokens: Sequence[int], start_hash: bytes = b"", start: int = 0) -> list[bytes]:
        """Hashes of the full blocks of ``tokens`` from block ``start`` on."""
        bs, out, h = self.block_size, [], start_hash
        for i in range(start, len(tokens) // bs):
            h = _block_hash(h, tokens[i * bs:(i + 1) * bs])
            out.append(h)
        return out

    def match_prefix(self, tokens: Any) -> list[int]:
        """The cached blocks that hold the longest full-block prefix of ``tokens`` (changes nothing).

        Raises:
            TypeError, ValueError: a token id that is not a non-negative integer.
        """
        ids = _token_ids(tokens)
        if not self.prefix_caching:
            return []
        blocks = []
        for h in self._chain(ids):
            b = self._block_of.get(h)
            if b is None:
                break
            blocks.append(b)
        return blocks

    # ------------------------------------------------------------------ sequences
    def new_sequence(self, tokens: Any = None) -> int:
        """Start a sequence; with ``tokens`` and prefix caching, reuse its cached prefix.

        Args:
            tokens: the prompt's token ids (optional). With ``prefix_caching``, every
                leading full block of them that the pool holds joins the new
                sequence's table (its refcount grows), and the sequence starts with
                that many tokens; the caller computes and appends only the rest.

        Returns:
            The id of the new sequence (``length(id)`` tokens are already there).
        """
        ids = None if tokens is None else _token_ids(tokens)
        blocks = [] if ids is None else self.match_prefix(ids)
        seq = self._next_id
        self._next_id += 1
        for b in blocks:
            if self._refs[b] == 0:
                del self._cached[b]
            self._refs[b] += 1
        n = len(blocks) * self.block_size
        self._tables[seq] = blocks
        self._lengths[seq] = n
        self._tokens[seq] = [] if ids is None else ids[:n]
        self._hashes[seq] = [self._hash_of[b] for b in blocks]
        self._write_from[seq] = n
        if ids is not None:
            self.stats["prefix_query_tokens"] += len(ids)
            self.stats["prefix_hit_tokens"] += n
        return seq

    def fork(self, seq: int) -> int:
        """A new sequence that shares every block of ``seq`` (no copy; copy-on-write later).

        Raises:
            ValueError: ``seq`` unknown or already freed.

        Example:
            >>> bm = BlockManager(num_blocks=4, block_size=4)
            >>> a = bm.new_sequence(); _ = bm.reserve(a, 6)
            >>> b = bm.fork(a); bm.reserve(b, 1)      # b's partly filled block is copied
            [(1, 2, 2)]
            >>> bm.block_table(a), bm.block_table(b)
            ([0, 1], [0, 2])
        """
        self._check_seq(seq)
        new = self._next_id
        self._next_id += 1
        for b in self._tables[seq]:
            self._refs[b] += 1
        self._tables[new] = list(self._tables[seq])
        self._lengths[new] = self._lengths[seq]
        tokens = self._tokens[seq]
        self._tokens[new] = None if tokens is None else list(tokens)
        self._hashes[new] = list(self._hashes[seq])
        self._write_from[new] = self._lengths[seq]
        return new

    def free(self, seq: int) -> None:
        """Drop sequence ``seq``; each of its blocks loses a reference.

        A block that nobody references any more returns to the free list, or, if it
        holds a registered prefix block (prefix caching), stays cached until evicted.
        """
        self._check_seq(seq)
        for b in reversed(self._tables.pop(seq)):  # last blocks first: they are evicted first
            self._release(b)
        self._free.sort()  # reuse the lowest-numbered blocks first: deterministic tables
        for d in (self._lengths, self._tokens, self._hashes, self._write_from):
            del d[seq]
        self._freed.add(seq)

    def _release(self, b: int) -> None:
        self._refs[b] -= 1
        if self._refs[b] > 0:
            return
        if b in self._hash_of:
            self._cached[b] = None
            self._cached.move_to_end(b)  # the most recently used
        else:
            self._fill[b] = 0
            self._free.append(b)

    def evict(self, n: int | None = None) -> int:
        """Return up to ``n`` cached blocks (all if ``None``) to the free list, LRU first.

        Returns:
            The number of blocks evicted.
        """
        n = len(self._cached) if n is None else integer("n", n, minimum=0)
        count = 0
        while self._cached and count < n:
            self._free.append(self._evict_one())
            count += 1
        self._free.sort()
        return count

    def _evict_one(self) -> int:
        b, _ = self._cached.popitem(last=False)
        del self._block_of[self._hash_of.pop(b)]
        self._fill[b] = 0
        self.stats["evictions"] += 1
        return b

    def _take(self, k: int) -> list[int]:
        """``k`` blocks: free ones first (lowest numbers), then evicted cached ones."""
        taken = self._free[:k]
        del self._free[:k]
        while len(taken) < k:
            taken.append(self._evict_one())
        return taken

    # ------------------------------------------------------------------ growth
    def _writable(self, b: int) -> bool:
        return self._refs[b] == 1 and b not in self._hash_of

    def blocks_needed(self, seq: int, n_new: int) -> int:
        """Blocks from the pool that appending ``n_new`` tokens to ``seq`` takes (copy included)."""
        self._check_seq(seq)
        n_new = integer("n_new", n_new, minimum=0)
        table, n = self._tables[seq], self._lengths[seq]
        grow = math.ceil((n + n_new) / self.block_size) - len(table)
        copy = n_new > 0 and n % self.block_size != 0 and not self._writable(table[-1])
        return grow + int(copy)

    def reserve(self, seq: int, n_new: int, tokens: Any = None) -> list[tuple[int, int, int]]:
        """Make room for ``n_new`` more tokens of ``seq``; returns the block copies it made.

        If the last block is partly filled and shared (or registered in the prefix
        cache), it is first replaced by a private copy (copy-on-write); then new
        blocks are taken when the last one is full. With ``tokens`` (their ids) and
        prefix caching, each block that becomes full is registered by its hash. The
        slots ``length - n_new .. length - 1`` are then the sequence's to write.

        Args:
            seq: a live sequence. n_new: tokens to add (``>= 0``).
            tokens: their ids (``n_new`` of them), or ``None``; a sequence that once
                grows without ids is never registered again.

        Returns:
            ``[(source, destination, slots), ...]``: the copies made, which a cache
            that holds data must perform (:class:`PagedKVCache` does).

        Raises:
            ValueError: an unknown or freed sequence, ``tokens`` of the wrong length.
            OutOfBlocksError: the pool has too few free or evictable blocks; nothing
                changed.
        """
        need = self.blocks_needed(seq, n_new)
        ids = None if tokens is None else _token_ids(tokens)
        if ids is not None and len(ids) != n_new:
            raise ValueError(f"tokens must hold n_new = {n_new} ids; got {len(ids)}")
        if need > self.free_blocks:
            raise OutOfBlocksError(
                f"appending {n_new} tokens to sequence {seq} (length {self._lengths[seq]}) needs "
                f"{need} new blocks of {self.block_size} slots, but only {self.free_blocks} of "
                f"{self.num_blocks} are free; free a sequence or make a larger pool"
            )
        table, n, bs = self._tables[seq], self._lengths[seq], self.block_size
        copies = []
        if n_new and n % bs and not self._writable(table[-1]):  # copy-on-write
            (dst,) = self._take(1)
            src = table[-1]
            copies.append((src, dst, n % bs))
            self._refs[dst], self._fill[dst] = 1, n % bs
            table[-1] = dst
            self._release(src)
            self.stats["copies_on_write"] += 1
        for b in self._take(math.ceil((n + n_new) / bs) - len(table)):
            self._refs[b], self._fill[b] = 1, 0
            table.append(b)
        for i in range(n // bs, math.ceil((n + n_new) / bs)):  # slots now filled, per block
            self._fill[table[i]] = max(self._fill[table[i]], min(bs, n + n_new - i * bs))
        self._lengths[seq] = n + n_new
        self._write_from[seq] = n
        known = self._tokens[seq]
        if ids is None or known is None:
            if n_new:
                self._tokens[seq] = None
            return copies
        known.extend(ids)
        hashes = self._hashes[seq]
        new = self._chain(known, hashes[-1] if hashes else b"", len(hashes))
        for i, h in enumerate(new, start=len(hashes)):
            hashes.append(h)
            b = table[i]
            if self.prefix_caching and h not in self._block_of and b not in self._hash_of:
                self._block_of[h], self._hash_of[b] = b, h
        return copies

    # ------------------------------------------------------------------ accounting
    def block_memory(self, bytes_per_token: int = 0) -> PagedMemory:
        """Blocks and tokens now (see :class:`PagedMemory`), at ``bytes_per_token`` bytes per token."""
        used = self.num_blocks - self.free_blocks
        held = sum(itertools.compress(self._fill, self._refs))  # fills of referenced blocks
        return PagedMemory(
            num_blocks=self.num_blocks,
            blocks_used=used,
            block_size=self.block_size,
            tokens=sum(self._lengths.values()),
            bytes_per_token=bytes_per_token,
            bytes_used=held * bytes_per_token,
            bytes_reserved=used * self.block_size * bytes_per_token,
            bytes_pool=self.num_blocks * self.block_size * bytes_per_token,
            tokens_held=held,
            blocks_cached=len(self._cached),
        )

    def __repr__(self) -> str:
        m = self.block_memory()
        return (f"{type(self).__name__}({len(self._tables)} sequences, {m.blocks_used}/"
                f"{m.num_blocks} blocks of {m.block_size} slots, {m.tokens} tokens, "
                f"{m.blocks_cached} cached)")


class PagedKVCache(BlockManager):
    """Keys and values of many sequences in fixed-size blocks of one shared pool.

    The block bookkeeping (sharing, :meth:`BlockManager.fork`, copy-on-write, prefix caching,
    eviction) is :class:`BlockManager`'s; this class holds the data: one pool of keys
    and one of values per layer, all layers sharing the block tables (as in vLLM).

    Shapes::

        k_pools[l]  (num_blocks, H, block_size, E)     v_pools[l] (num_blocks, H, block_size, Ev)
        append: k (H, T, E), v (H, T, Ev)          gather: k (H, n, E), v (H, n, Ev)
        attention: q (H, L, E) -> (H, L, Ev)       n = the sequence's length

    One layer (the default) is filled with :meth:`append`. A model with several
    layers calls :meth:`reserve` once per step for a sequence, then :meth:`write`
    once per layer.

    Args:
        num_blocks: blocks in the pool.
        block_size: token slots per block.
        num_heads: key/value heads ``H``.
        head_dim: key width ``E``.
        value_dim: value width ``Ev`` (default ``head_dim``).
        dtype: ``"float16"``, ``"bfloat16"`` (torch only), ``"float32"`` or ``"float64"``.
        array: ``"numpy"`` or ``"torch"``, the kind of the pool and of the inputs.
        device: torch device of the pool (``array="torch"`` only; default CPU).
        num_layers: layers whose caches share the block tables (default 1).
        prefix_caching: see :class:`BlockManager`.

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
        num_layers: int = 1,
        prefix_caching: bool = False,
    ) -> None:
        super().__init__(num_blocks=num_blocks, block_size=block_size,
                         prefix_caching=prefix_caching)
        self.num_heads = positive_int("num_heads", num_heads)
        self.head_dim = positive_int("head_dim", head_dim)
        self.value_dim = self.head_dim if value_dim is None else positive_int("value_dim", value_dim)
        self.num_layers = positive_int("num_layers", num_layers)
        array = choice("array", array, ("numpy", "torch"))
        bf16 = ("bfloat16",) if array == "torch" else ()  # NumPy has no bfloat16
        self.array, self.dtype = array, choice("dtype", dtype, ("float16", "float32", "float64", *bf16))
        k_shape = (self.num_blocks, self.num_heads, self.block_size, self.head_dim)
        v_shape = (self.num_blocks, self.num_heads, self.block_size, self.value_dim)
        if array == "numpy":
            if device is not None:
                raise ValueError(f"device applies to array='torch' only; got device={device!r}")
            self.k_pools: list[Any] = [np.zeros(k_shape, dtype=self.dtype)
                                       for _ in range(self.num_layers)]
            self.v_pools: list[Any] = [np.zeros(v_shape, dtype=self.dtype)
                                       for _ in range(self.num_layers)]
        else:
            torch = torch_module()
            tdtype = getattr(torch, self.dtype)
            self.k_pools = [torch.zeros(k_shape, dtype=tdtype, device=device)
                            for _ in range(self.num_layers)]
            self.v_pools = [torch.zeros(v_shape, dtype=tdtype, device=device)
                            for _ in range(self.num_layers)]

    @property
    def k_pool(self) -> Any:
        """The key pool of layer 0, ``(num_blocks, H, block_size, E)``."""
        return self.k_pools[0]

    @property
    def v_pool(self) -> Any:
        """The value pool of layer 0, ``(num_blocks, H, block_size, Ev)``."""
        return self.v_pools[0]

    def _layer(self, layer: Any) -> int:
        return integer("layer", layer, minimum=0, maximum=self.num_layers - 1)

    # ------------------------------------------------------------------ writing
    def _check_kv(self, k: Any, v: Any) -> int:
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
        return int(k.shape[1])

    def reserve(self, seq: int, n_new: int, tokens: Any = None) -> list[tuple[int, int, int]]:
        """As :meth:`BlockManager.reserve`, and copy the copied-on-write blocks' data (every layer)."""
        copies = super().reserve(seq, n_new, tokens)
        for src, dst, slots in copies:
            for kp, vp in zip(self.k_pools, self.v_pools):
                kp[dst, :, :slots] = kp[src, :, :slots]
                vp[dst, :, :slots] = vp[src, :, :slots]
        return copies

    def write(self, seq: int, start: int, k: Any, v: Any, *, layer: int = 0) -> None:
        """Write ``T`` tokens' keys and values of one layer at positions ``start .. start + T - 1``.

        The positions must lie in the slots of the latest :meth:`reserve` of ``seq``
        (earlier positions may share blocks with other sequences or the prefix cache,
        and are never rewritten).

        Raises:
            ValueError: an unknown sequence, shapes that do not match the cache,
                positions outside the latest reservation, an unknown layer.
            TypeError: arrays of the wrong kind or dtype.
        """
        self._check_seq(seq)
        layer = self._layer(layer)
        T = self._check_kv(k, v)
        start = integer("start", start, minimum=0)
        lo, hi = self._write_from[seq], self._lengths[seq]
        if start < lo or start + T > hi:
            raise ValueError(f"positions {start}..{start + T - 1} of sequence {seq} are not in its "
                             f"latest reservation, {lo}..{hi - 1}; reserve() them first")
        table, bs, t = self._tables[seq], self.block_size, 0
        kp, vp = self.k_pools[layer], self.v_pools[layer]
        while t < T:  # fill the last block, then the new ones, slot range by slot range
            block, slot = table[(start + t) // bs], (start + t) % bs
            take = min(bs - slot, T - t)
            kp[block, :, slot:slot + take] = k[:, t:t + take]
            vp[block, :, slot:slot + take] = v[:, t:t + take]
            t += take

    def append(self, seq: int, k: Any, v: Any, tokens: Any = None) -> None:
        """Append ``T`` tokens' keys ``k (H, T, E)`` and values ``v (H, T, Ev)`` to ``seq``.

        A one-layer cache's :meth:`reserve` and :meth:`write` in one call. Takes new
        blocks from the pool only when the last block is full (after a copy-on-write
        if it is shared); ``tokens`` (their ids) let prefix caching register the
        blocks that become full.

        Raises:
            ValueError: an unknown sequence, shapes that do not match the cache, a
                cache of several layers (use :meth:`reserve` and :meth:`write`).
            TypeError: arrays of the wrong kind or dtype.
            OutOfBlocksError: the pool lacks the blocks needed (the cache is unchanged).
        """
        self._check_seq(seq)
        if self.num_layers != 1:
            raise ValueError(f"append fills a one-layer cache; this one has {self.num_layers} "
                             "layers: reserve() once, then write(..., layer=l) for each layer")
        T = self._check_kv(k, v)
        n = self._lengths[seq]
        self.reserve(seq, T, tokens)
        self.write(seq, n, k, v)

    # ------------------------------------------------------------------ reading
    def gather(self, seq: int, *, layer: int = 0) -> tuple[Any, Any]:
        """The contiguous keys ``(H, n, E)`` and values ``(H, n, Ev)`` of ``seq`` (copies)."""
        table, n = self.block_table(seq), self.length(seq)
        layer = self._layer(layer)
        k = self.k_pools[layer][table]  # (nb, H, bs, E)
        v = self.v_pools[layer][table]
        k = k.swapaxes(0, 1).reshape(self.num_heads, len(table) * self.block_size, self.head_dim)
        v = v.swapaxes(0, 1).reshape(self.num_heads, len(table) * self.block_size, self.value_dim)
        return k[:, :n], v[:, :n]

    def attention(self, seq: int, q: Any, *, causal: CausalArg = False,
                  scale: float | None = None, mask: Any = None, layer: int = 0,
                  return_lse: bool = False) -> Any:
        """Attention of ``q (H, L, E)`` over sequence ``seq``, block by block through its table.

        Each block gives a partial result and :func:`attnkit.serving.decoding.merge_partials`
        combines them: the result equals ``attnkit.attention(q, *self.gather(seq),
        causal=causal, scale=scale, mask=mask)``. For decoding, ``q`` holds the newest
        ``L`` tokens' queries and ``causal="bottom-right"`` lets query ``i`` see the
        keys up to its own position ``n - L + i``.

        Args:
            seq: a live sequence. q: ``(H, L, E)`` queries.
            causal, scale: as :func:`attnkit.attention`.
            mask: an optional boolean mask broadcastable to ``(H, L, n)`` (True = takes
                part), combined with ``causal``: e.g. a tree of draft tokens, each of
                which sees only its ancestors.
            layer: which layer's pool. return_lse: also return the log-sum-exp ``(H, L)``.

        Returns:
            ``out (H, L, Ev)`` of the pool's kind and dtype (and ``lse``); an empty
            sequence gives zeros (and ``-inf``).

        Raises:
            ValueError: an unknown sequence, ``q`` not of shape ``(H, L, E)``, a mask
                that does not broadcast, an unknown layer.
            TypeError: ``q`` of another kind or dtype than the pool; a mask that is not
                boolean.
        """
        table, n = self.block_table(seq), self.length(seq)
        layer = self._layer(layer)
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
            out = zeros((self.num_heads, L, self.value_dim))
            if not return_lse:
                return out
            lse = np.full((self.num_heads, L), -np.inf) if self.array == "numpy" else \
                q.new_full((self.num_heads, L), float("-inf"))
            return out, lse
        # The key position of every slot of every block, and which slots a query may see.
        pos = np.arange(nb * bs).reshape(nb, 1, 1, bs)  # (nb, 1, 1, bs)
        visible = np.broadcast_to(pos < n, (nb, 1, L, bs))
        if alignment is not None:
            rows = np.arange(L).reshape(1, 1, L, 1)
            visible = visible & (pos <= rows + causal_offset(L, n, alignment))
        if mask is not None:
            m = np.asarray(mask.cpu() if self.array == "torch" and hasattr(mask, "cpu") else mask)
            if m.dtype != np.bool_:
                raise TypeError(f"mask must be boolean (True = takes part); got dtype {m.dtype}")
            try:
                m = np.broadcast_to(m, (self.num_heads, L, n))
            except ValueError:
                raise ValueError(f"mask must broadcast to (H={self.num_heads}, L={L}, n={n}); "
                                 f"got shape {m.shape}") from None
            padded = np.zeros((self.num_heads, L, nb * bs), dtype=bool)
            padded[..., :n] = m
            blocked = padded.reshape(self.num_heads, L, nb, bs).transpose(2, 0, 1, 3)
            visible = visible & blocked  # (nb, H, L, bs)
        kb, vb = self.k_pools[layer][table], self.v_pools[layer][table]  # (nb, H, bs, E), (nb, H, bs, Ev)
        if self.array == "torch":
            visible = torch_module().from_numpy(np.ascontiguousarray(visible)).to(q.device)
        # Every block at once: the blocks are a batch dimension of one partial call.
        outs, lses = partial_attention(q[None], kb, vb, mask=visible, scale=scale)  # (nb, H, L, .)
        out, lse = merge_partials(list(outs), list(lses))
        return (out, lse) if return_lse else out

    def memory(self) -> PagedMemory:
        """Bytes used, reserved and in the whole pool (see :class:`PagedMemory`)."""
        itemsize = self.k_pool.itemsize if self.array == "numpy" else self.k_pool.element_size()
        per_token = self.num_layers * self.num_heads * (self.head_dim + self.value_dim) * itemsize
        return self.block_memory(per_token)

    def __repr__(self) -> str:
        m = self.memory()
        return (f"PagedKVCache({len(self._tables)} sequences, {m.blocks_used}/{m.num_blocks} blocks "
                f"of {m.block_size} slots, {m.tokens} tokens)")
