"""A real continuous-batching engine for chapter 10's Transformer, on a paged KV cache.

:class:`PagedEngine` runs :class:`attnkit.models.transformer.TinyTransformer` on the
batches that :class:`attnkit.serving.scheduler.Scheduler` plans. One step puts the
new tokens of every chunk of the batch end to end in one row (no padding: a
prompt's chunk of 200 tokens and 30 decoding tokens make a row of 230), each with
its own position, and runs the model once. In every layer, an ``attend`` function
replaces the attention call:

1. each chunk's new keys and values are written into the slots that the scheduler
   reserved for it in the :class:`~attnkit.serving.paged.PagedKVCache` (all chunks
   first, so that a request that found its prefix in another request's blocks in
   this very step reads them written);
2. each chunk's queries attend, causally, over its sequence's blocks, block by
   block with the exact log-sum-exp merge.

The output at the last token of every chunk that ends a request's known tokens is
its next token (greedy: the most likely one).

:func:`generate_alone` is the reference: one request, no cache, no batch, the whole
sequence through the model at every step. :func:`serve` runs a workload and
returns the scheduler's record; the tests check that every request's output equals
:func:`generate_alone`'s, whatever the mix, policy, chunking, prefix caching and
preemptions. The two add the same numbers in different orders (block by block
against all at once), so their logits agree to rounding; the tests run the model
in float64, where no argmax is that close to a tie.

This module imports torch; ``import attnkit`` alone does not.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..core._validate import integer, real
from ..models.transformer import TinyTransformer
from .paged import PagedKVCache
from .scheduler import Chunk, Request, SchedulerConfig, ServingRun, run

__all__ = ["PagedEngine", "generate_alone", "serve"]


def _model(model: Any) -> TinyTransformer:
    if not isinstance(model, TinyTransformer):
        raise TypeError(f"model must be a TinyTransformer; got {type(model).__name__}")
    return model


@torch.no_grad()
def generate_alone(model: TinyTransformer, prompt: Sequence[int], max_new_tokens: int) -> list[int]:
    """Greedy generation of one request on its own: the whole sequence through the model each step.

    No cache, no batch, no scheduler: the reference that batched serving must equal.

    Args:
        model: a :class:`~attnkit.models.transformer.TinyTransformer`.
        prompt: token ids. max_new_tokens: tokens to generate.

    Returns:
        The ``max_new_tokens`` generated token ids.

    Raises:
        TypeError: not a ``TinyTransformer``. ValueError: a prompt and output longer
            than the model's ``max_len``, bad token ids.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m = TinyTransformer(vocab_size=8, max_len=8, d_model=8, num_heads=2).eval()
        >>> len(generate_alone(m, [1, 2, 3], 4))
        4
    """
    model = _model(model)
    n_new = integer("max_new_tokens", max_new_tokens, minimum=1)
    tokens = [integer(f"prompt[{i}]", t, minimum=0) for i, t in enumerate(prompt)]
    if len(tokens) + n_new - 1 > model.max_len:
        raise ValueError(f"prompt ({len(tokens)} tokens) + max_new_tokens ({n_new}) - 1 exceeds the "
                         f"model's max_len = {model.max_len}")
    device = next(model.parameters()).device
    out: list[int] = []
    for _ in range(n_new):
        logits = model(torch.tensor([tokens + out], device=device))  # (1, n, V)
        out.append(int(logits[0, -1].argmax()))
    return out


class PagedEngine:
    """Runs a ``TinyTransformer`` on scheduled batches through a paged KV cache.

    Shapes (one step; ``N`` = tokens of all chunks together)::

        tokens, positions  (1, N), (N,)
        per layer: q (1, H, N, Dh), k, v (1, H, N, Dh) -> out (1, H, N, Dh)
        cache: num_layers pools of (num_blocks, H, block_size, Dh)

    Args:
        model: the model (put in eval mode; its parameters' dtype is the cache's).
        config: the scheduler's config; the cache gets its block size, number of
            blocks and prefix caching.

    Raises:
        TypeError: not a ``TinyTransformer`` or a ``SchedulerConfig``.
        ValueError: a model whose attention groups key/value heads (the paged
            cache's attention takes one query head per key/value head).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m = TinyTransformer(vocab_size=8, max_len=16, d_model=8, num_heads=2)
        >>> eng = PagedEngine(m, SchedulerConfig(token_budget=4, block_size=4, num_blocks=8))
        >>> eng.cache.num_layers, eng.cache.num_heads, eng.cache.head_dim
        (2, 2, 4)
    """

    def __init__(self, model: TinyTransformer, config: SchedulerConfig) -> None:
        self.model = _model(model).eval()
        if not isinstance(config, SchedulerConfig):
            raise TypeError(f"config must be a SchedulerConfig; got {type(config).__name__}")
        attn = self.model.blocks[0].attn
        if attn.num_kv_heads != attn.num_heads:
            raise ValueError("PagedEngine needs one key/value head per query head; got "
                             f"{attn.num_heads} query heads and {attn.num_kv_heads} key/value heads")
        p = next(self.model.parameters())
        self.config = config
        self.cache = PagedKVCache(
            num_blocks=config.num_blocks, block_size=config.block_size,
            num_heads=attn.num_kv_heads, head_dim=attn.head_dim,
            dtype=str(p.dtype).replace("torch.", ""), array="torch", device=p.device,
            num_layers=len(self.model.blocks), prefix_caching=config.prefix_caching)

    @torch.no_grad()
    def forward(self, batch: Sequence[Chunk]) -> Tensor:
        """Run one step; returns the logits ``(N, V)`` of every token of the batch."""
        device = next(self.model.parameters()).device
        tokens = torch.tensor([t for c in batch for t in c.tokens], device=device)
        positions = torch.tensor([p for c in batch for p in range(c.start, c.start + c.n)],
                                 device=device)
        spans, o = [], 0
        for c in batch:
            spans.append((c.state.seq, c.start, o, c.n))
            o += c.n
        cache = self.cache

        def attend(layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            # q (1, H, N, Dh), k, v (1, H, N, Dh): the new tokens of every chunk, end to end
            for seq, start, o, n in spans:  # every chunk's keys and values first
                cache.write(seq, start, k[0, :, o:o + n], v[0, :, o:o + n], layer=layer)
            outs = [cache.attention(seq, q[0, :, o:o + n].contiguous(), causal="bottom-right",
                                    layer=layer)  # (H, n, Dh) over the sequence's blocks
                    for seq, start, o, n in spans]
            return torch.cat(outs, dim=1)[None]  # (1, H, N, Dh)

        return self.model(tokens[None], positions=positions, attend=attend)[0]  # (N, V)

    def execute(self, batch: Sequence[Chunk]) -> tuple[dict[int, int], float]:
        """One step: the next token of every sampling chunk (greedy), and the step's wall time."""
        t0 = time.perf_counter()
        logits = self.forward(batch)
        sampled, o = {}, 0
        for c in batch:
            o += c.n
            if c.samples:
                sampled[c.state.request.rid] = int(logits[o - 1].argmax())
        return sampled, time.perf_counter() - t0


def serve(model: TinyTransformer, requests: Sequence[Request], config: SchedulerConfig, *,
          step_time: float | None = None) -> ServingRun:
    """Serve ``requests`` with ``model`` under ``config``; greedy decoding.

    Args:
        model: a ``TinyTransformer``.
        requests: the workload; each prompt plus its output must fit ``max_len``.
        config: the batching policy and pool.
        step_time: ``None`` to advance the clock by each step's measured wall time; a
            number of seconds to advance it by that much per step instead (a
            reproducible schedule, for tests and figures).

    Returns:
        The :class:`~attnkit.serving.scheduler.ServingRun` (outputs, latencies, trace).

    Raises:
        TypeError, ValueError: as :class:`PagedEngine` and
            :func:`attnkit.serving.scheduler.run`; a request longer than ``max_len``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m = TinyTransformer(vocab_size=8, max_len=16, d_model=8, num_heads=2)
        >>> reqs = [Request(i, (1, 2, 3, i), max_new_tokens=3) for i in range(3)]
        >>> cfg = SchedulerConfig(token_budget=8, block_size=4, num_blocks=8)
        >>> out = serve(m, reqs, cfg, step_time=1.0)
        >>> all(r.output == generate_alone(m, r.request.prompt, 3) for r in out.requests)
        True
    """
    engine = PagedEngine(model, config)
    for r in requests:
        if len(r.prompt) + r.max_new_tokens - 1 > engine.model.max_len:
            raise ValueError(f"request {r.rid}: prompt ({len(r.prompt)} tokens) + max_new_tokens "
                             f"({r.max_new_tokens}) - 1 exceeds the model's max_len = "
                             f"{engine.model.max_len}")
    execute = engine.execute
    if step_time is not None:
        fixed = real("step_time", step_time, minimum=0)

        def execute(batch: list[Chunk]) -> tuple[dict[int, int], float]:
            return engine.execute(batch)[0], fixed

    return run(requests, config, execute, blocks=engine.cache)
