"""Continuous batching: the scheduler that plans every step of a serving engine.

A server receives requests at any moment; each has a prompt and wants up to
``max_new_tokens`` more. A *step* runs the model once on a batch of *chunks*: a
chunk is a run of one request's tokens whose keys and values are not yet cached
(a whole prompt, a part of one, or the single newest token of a request that is
decoding). The scheduler decides, before every step, which chunks go in::

    static                   wait until the batch is empty, admit up to max_seqs
                             requests (only if their whole length fits in the pool),
                             prefill all their prompts in one step, then decode
                             until the last one finishes
    continuous               requests join and leave at every step (Orca, vLLM);
      chunked_prefill=False  a step with room for a waiting prompt prefills it whole
                             and the running requests do not decode in that step
      chunked_prefill=True   each step spends a budget of token_budget tokens: one
                             token for every decoding request first, then chunks of
                             the prompts (Sarathi-Serve): decoding never stalls for
                             longer than one budget's worth of prefill

Memory is a pool of blocks (:class:`attnkit.serving.paged.BlockManager`, or the
:class:`attnkit.serving.paged.PagedKVCache` that holds the data). When a request
needs a block and none is free, the scheduler *preempts* the most recently
admitted running request: its blocks are freed and it goes back to the queue, to
be recomputed later from its prompt and the tokens it has produced (vLLM's
recompute mode). With prefix caching, a request admitted (or readmitted) reuses
every full block of its tokens that the pool still holds.

:func:`run` is the loop around the scheduler. It takes a function that executes
one batch and says how long it took: the real engine
(:mod:`attnkit.serving.engine`) measures the time of the tiny model; a simulator
could read it from a cost model instead, with this scheduler unchanged. The
scheduler plans in a :class:`~attnkit.serving.paged.BlockManager` (blocks only)
or in the :class:`~attnkit.serving.paged.PagedKVCache` that holds the data.

Nothing here needs torch.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..core._validate import choice, flag, integer, positive_int, real
from .paged import BlockManager

__all__ = [
    "POLICIES",
    "Chunk",
    "Request",
    "RequestState",
    "Scheduler",
    "SchedulerConfig",
    "ServingRun",
    "percentile",
    "run",
    "synthetic_workload",
]

#: The batching policies.
POLICIES = ("static", "continuous")


@dataclass(frozen=True)
class Request:
    """One request: a prompt (token ids), how many tokens to generate, when it arrives.

    Attributes:
        rid: an identifier (unique within a run).
        prompt: the prompt's token ids (at least one).
        max_new_tokens: tokens to generate (at least one).
        arrival: arrival time in seconds of the run's clock.

    Raises:
        TypeError, ValueError: an ``rid`` or a token id that is not an integer, a
            negative token id, an empty prompt, a ``max_new_tokens`` below 1, a
            negative arrival.

    Example:
        >>> Request(3, (5, 1, 2), max_new_tokens=4, arrival=0.5)
        Request(rid=3, prompt=(5, 1, 2), max_new_tokens=4, arrival=0.5)
    """

    rid: int
    prompt: tuple[int, ...]
    max_new_tokens: int
    arrival: float = 0.0

    def __post_init__(self) -> None:
        integer("rid", self.rid)
        ids = tuple(integer(f"prompt[{i}]", t, minimum=0) for i, t in enumerate(self.prompt))
        if not ids:
            raise ValueError(f"request {self.rid}: prompt must hold at least one token; got none")
        object.__setattr__(self, "prompt", ids)
        positive_int("max_new_tokens", self.max_new_tokens)
        real("arrival", self.arrival, minimum=0)


@dataclass
class RequestState:
    """What the scheduler knows about a request while it runs, and what it measured.

    Attributes:
        request: the :class:`Request`.
        output: the tokens generated so far.
        seq: its sequence in the block pool (``None`` while waiting).
        computed: tokens whose keys and values are in the cache.
        first_token_time, finish_time: when the first and the last token came
            (``None`` until then). token_times: when each token came.
        preemptions: how often it was preempted. cached_tokens: prompt tokens found in
            the prefix cache at its admissions (summed).

    Example:
        >>> r = RequestState(Request(0, (5, 1), max_new_tokens=2))
        >>> r.output.append(7); r.token_times.append(2.0); r.first_token_time = 2.0
        >>> r.tokens, r.finished, r.ttft
        ([5, 1, 7], False, 2.0)
        >>> r.length, r.token_slice(1, 3)
        (3, [1, 7])
    """

    request: Request
    output: list[int] = field(default_factory=list)
    seq: int | None = None
    computed: int = 0
    first_token_time: float | None = None
    finish_time: float | None = None
    token_times: list[float] = field(default_factory=list)
    preemptions: int = 0
    cached_tokens: int = 0

    @property
    def tokens(self) -> list[int]:
        """Prompt and output so far: what the cache must hold before the next token."""
        return [*self.request.prompt, *self.output]

    @property
    def length(self) -> int:
        """``len(tokens)``, without building the list."""
        return len(self.request.prompt) + len(self.output)

    def token_slice(self, start: int, stop: int) -> list[int]:
        """``tokens[start:stop]``, without building the whole list."""
        prompt = self.request.prompt
        p = len(prompt)
        if start >= p:
            return self.output[start - p:stop - p]
        return [*prompt[start:stop], *self.output[:max(0, stop - p)]]

    @property
    def finished(self) -> bool:
        """The request has all its tokens."""
        return len(self.output) >= self.request.max_new_tokens

    @property
    def ttft(self) -> float | None:
        """Time to first token: from arrival to the end of the step that produced it."""
        t = self.first_token_time
        return None if t is None else t - self.request.arrival

    @property
    def itl(self) -> list[float]:
        """Inter-token latencies: the gaps between consecutive tokens."""
        return list(np.diff(self.token_times)) if len(self.token_times) > 1 else []


@dataclass(frozen=True)
class Chunk:
    """One request's share of a step: its tokens ``start .. start + n - 1`` go through the model.

    Attributes:
        state: the request. start: position of the first token (``context`` of the
            chunk: tokens already cached). n: tokens in the chunk.
        samples: the chunk ends at the request's newest token, so the step's output
            at its last position gives the next token.

    Example:
        >>> r = RequestState(Request(0, (5, 1, 2, 3), max_new_tokens=2))
        >>> c = Chunk(r, start=2, n=2, samples=True)    # the prompt's second half
        >>> c.tokens, c.is_decode
        ([2, 3], False)
    """

    state: RequestState
    start: int
    n: int
    samples: bool

    @property
    def tokens(self) -> list[int]:
        """The chunk's token ids."""
        return self.state.token_slice(self.start, self.start + self.n)

    @property
    def is_decode(self) -> bool:
        """One generated token fed back (decoding), rather than prompt or recomputed tokens."""
        return self.n == 1 and self.samples and self.start >= len(self.state.request.prompt)


@dataclass(frozen=True)
class SchedulerConfig:
    """A batching policy and the pool it runs in.

    Attributes:
        policy: ``"static"`` or ``"continuous"`` (see the module docstring).
        token_budget: tokens per step (continuous batching); at least one block.
        max_seqs: requests running at once.
        chunked_prefill: split prompts so that a step never exceeds the budget and
            decoding requests go first (continuous batching only).
        prefix_caching: reuse cached full blocks of a prompt's prefix.
        block_size: token slots per block. num_blocks: blocks in the pool.

    Raises:
        TypeError, ValueError: an unknown policy, a size that is not a positive
            integer, a ``token_budget`` below one block.

    Example:
        >>> SchedulerConfig(token_budget=8, block_size=16)
        Traceback (most recent call last):
        ...
        ValueError: token_budget must be at least one block (block_size = 16 tokens); got 8
    """

    policy: str = "continuous"
    token_budget: int = 512
    max_seqs: int = 64
    chunked_prefill: bool = True
    prefix_caching: bool = True
    block_size: int = 16
    num_blocks: int = 1024

    def __post_init__(self) -> None:
        choice("policy", self.policy, POLICIES)
        for name in ("token_budget", "max_seqs", "block_size", "num_blocks"):
            positive_int(name, getattr(self, name))
        flag("chunked_prefill", self.chunked_prefill)
        flag("prefix_caching", self.prefix_caching)
        if self.token_budget < self.block_size:
            raise ValueError(f"token_budget must be at least one block (block_size = "
                             f"{self.block_size} tokens); got {self.token_budget}")

    @property
    def label(self) -> str:
        """A short name: ``"static"``, ``"continuous"``, ``"continuous + chunked + prefix"``."""
        if self.policy == "static":
            return "static" + (" + prefix" if self.prefix_caching else "")
        extras = [w for w, on in (("chunked", self.chunked_prefill),
                                  ("prefix", self.prefix_caching)) if on]
        return " + ".join(["continuous", *extras])


class Scheduler:
    """Decides, step by step, which chunks of which requests the model runs.

    Args:
        config: a :class:`SchedulerConfig`.
        blocks: the pool to plan in: a :class:`~attnkit.serving.paged.BlockManager`
            or a :class:`~attnkit.serving.paged.PagedKVCache` (default: a new
            ``BlockManager`` of the config's sizes). Its block size, number of
            blocks and prefix caching must match the config.

    Raises:
        TypeError: ``config`` or ``blocks`` of the wrong type.
        ValueError: a pool that does not match the config.

    Example:
        >>> s = Scheduler(SchedulerConfig(token_budget=16, block_size=4, num_blocks=8))
        >>> s.add(Request(0, tuple(range(20)), max_new_tokens=2))
        >>> [(c.start, c.n, c.samples) for c in s.schedule()]   # the first chunk of the prompt
        [(0, 16, False)]
    """

    def __init__(self, config: SchedulerConfig, blocks: BlockManager | None = None) -> None:
        if not isinstance(config, SchedulerConfig):
            raise TypeError(f"config must be a SchedulerConfig; got {type(config).__name__}")
        self.config = config
        if blocks is None:
            blocks = BlockManager(num_blocks=config.num_blocks, block_size=config.block_size,
                                  prefix_caching=config.prefix_caching)
        if not isinstance(blocks, BlockManager):
            raise TypeError(f"blocks must be a BlockManager or PagedKVCache; got "
                            f"{type(blocks).__name__}")
        got = (blocks.block_size, blocks.num_blocks, blocks.prefix_caching)
        want = (config.block_size, config.num_blocks, config.prefix_caching)
        if got != want:
            raise ValueError(f"blocks must have (block_size, num_blocks, prefix_caching) = {want} "
                             f"like the config; got {got}")
        self.blocks = blocks
        self.waiting: list[RequestState] = []  # ordered by (arrival, rid)
        self.running: list[RequestState] = []  # ordered by admission
        self.finished: list[RequestState] = []

    # ------------------------------------------------------------------ requests
    def _check(self, r: Request) -> None:
        bs, cfg = self.config.block_size, self.config
        longest = len(r.prompt) + r.max_new_tokens
        if math.ceil(longest / bs) > cfg.num_blocks:
            raise ValueError(
                f"request {r.rid} needs up to {math.ceil(longest / bs)} blocks ({len(r.prompt)} "
                f"prompt + {r.max_new_tokens} new tokens in blocks of {bs}) but the pool has only "
                f"{cfg.num_blocks}: it is longer than the pool and could never finish")
        recompute = longest - 1  # a preempted request prefills its prompt and all but one output
        if cfg.policy == "continuous" and not cfg.chunked_prefill and recompute > cfg.token_budget:
            raise ValueError(
                f"request {r.rid} may need to prefill {recompute} tokens in one step, more than "
                f"token_budget = {cfg.token_budget}; use chunked_prefill=True or a larger budget")

    def add(self, request: Request) -> None:
        """Queue a request that has arrived.

        Raises:
            TypeError: not a :class:`Request`.
            ValueError: a request longer than the pool, or (without chunked prefill)
                longer than the token budget.
        """
        if not isinstance(request, Request):
            raise TypeError(f"request must be a Request; got {type(request).__name__}")
        self._check(request)
        self._enqueue(RequestState(request))

    def _enqueue(self, st: RequestState) -> None:
        keys = [(w.request.arrival, w.request.rid) for w in self.waiting]
        self.waiting.insert(bisect.bisect(keys, (st.request.arrival, st.request.rid)), st)

    @property
    def has_work(self) -> bool:
        """Requests wait or run."""
        return bool(self.waiting or self.running)

    # ------------------------------------------------------------------ planning
    def _preempt(self, st: RequestState) -> None:
        """Free ``st``'s blocks and queue it again; it will be recomputed."""
        assert st.seq is not None
        self.blocks.free(st.seq)
        st.seq, st.computed = None, 0
        st.preemptions += 1
        self.running.remove(st)
        self._enqueue(st)

    def _grow(self, st: RequestState, n: int, scheduled: set[int]) -> bool:
        """Reserve ``n`` slots for ``st``, preempting the youngest other requests if needed."""
        assert st.seq is not None
        while self.blocks.blocks_needed(st.seq, n) > self.blocks.free_blocks:
            victims = [r for r in reversed(self.running)
                       if r is not st and id(r) not in scheduled]
            victim = victims[0] if victims else st
            self._preempt(victim)
            if victim is st:
                return False
        self.blocks.reserve(st.seq, n, st.token_slice(st.computed, st.computed + n))
        return True

    def _admission(self, st: RequestState, budget: int | None,
                   committed: int) -> tuple[int, int, int] | None:
        """``(matched tokens, chunk length, blocks promised for later)`` if ``st`` fits now, else None."""
        tokens, bs = st.tokens, self.config.block_size
        matched = self.blocks.match_prefix(tokens[:-1])
        m = len(matched) * bs
        rest = len(tokens) - m
        n = rest if budget is None or not self.config.chunked_prefill else min(rest, budget)
        if n == 0 or (budget is not None and n > budget):
            return None
        revived = sum(1 for b in matched if self.blocks.refcount(b) == 0)  # leave the free pool
        need = math.ceil((m + n) / bs) - len(matched)
        future = 0
        if self.config.policy == "static":  # the rest of the request is promised up front
            longest = len(st.request.prompt) + st.request.max_new_tokens
            future = math.ceil(longest / bs) - math.ceil((m + n) / bs)
        if committed + need + revived + future > self.blocks.free_blocks:
            return None
        return m, n, future

    def _admit(self, st: RequestState, m: int, n: int) -> Chunk:
        tokens = st.tokens
        st.seq = self.blocks.new_sequence(tokens[:-1])
        assert self.blocks.length(st.seq) == m
        st.computed, st.cached_tokens = m, st.cached_tokens + m
        self.blocks.reserve(st.seq, n, tokens[m:m + n])
        self.waiting.remove(st)
        self.running.append(st)
        return Chunk(st, m, n, samples=m + n == len(tokens))

    def schedule(self) -> list[Chunk]:
        """The chunks of the next step (empty when nothing can run); reserves their slots."""
        if self.config.policy == "static":
            return self._schedule_static()
        cfg = self.config
        budget = cfg.token_budget
        batch: list[Chunk] = []
        scheduled: set[int] = set()
        if not cfg.chunked_prefill:  # prefill first: a step of whole prompts if one fits
            while self.waiting and len(self.running) < cfg.max_seqs:
                plan = self._admission(self.waiting[0], budget, 0)
                if plan is None:
                    break
                chunk = self._admit(self.waiting[0], plan[0], plan[1])
                batch.append(chunk)
                scheduled.add(id(chunk.state))
                budget -= chunk.n
            if batch:
                return batch
        # decoding requests first (one token each), then prompts being prefilled
        decoding = [r for r in self.running if r.length - r.computed == 1]
        prefilling = [r for r in self.running if r.length - r.computed > 1]
        for st in decoding + prefilling:
            if st not in self.running or budget == 0:
                continue  # preempted to make room for an older request
            n = min(st.length - st.computed, budget)
            if not self._grow(st, n, scheduled):
                continue
            scheduled.add(id(st))
            batch.append(Chunk(st, st.computed, n, samples=st.computed + n == st.length))
            budget -= n
        while cfg.chunked_prefill and budget > 0 and self.waiting and len(self.running) < cfg.max_seqs:
            plan = self._admission(self.waiting[0], budget, 0)
            if plan is None:
                break
            chunk = self._admit(self.waiting[0], plan[0], plan[1])
            scheduled.add(id(chunk.state))
            batch.append(chunk)
            budget -= chunk.n
        return batch

    def _schedule_static(self) -> list[Chunk]:
        if self.running:  # decode the batch until its last request finishes
            batch = []
            for st in self.running:
                ok = self._grow(st, 1, set())
                assert ok, "static batching reserves every request's whole length at admission"
                batch.append(Chunk(st, st.computed, 1, samples=True))
            return batch
        batch, committed = [], 0
        while self.waiting and len(self.running) < self.config.max_seqs:
            plan = self._admission(self.waiting[0], None, committed)
            if plan is None:
                break
            committed += plan[2]
            batch.append(self._admit(self.waiting[0], plan[0], plan[1]))
        return batch

    def complete(self, batch: Sequence[Chunk], sampled: dict[int, int], now: float) -> None:
        """Record a finished step: the chunks are cached, and each sampling chunk's token came.

        Args:
            batch: the chunks that :meth:`schedule` returned.
            sampled: the new token of every request whose chunk had ``samples`` set,
                by request id.
            now: the time at the end of the step.

        Raises:
            ValueError: a sampling chunk without its token.
        """
        for ch in batch:
            st = ch.state
            st.computed = ch.start + ch.n
            if not ch.samples:
                continue
            rid = st.request.rid
            if rid not in sampled:
                raise ValueError(f"sampled must hold the new token of request {rid}")
            st.output.append(int(sampled[rid]))
            st.token_times.append(now)
            if st.first_token_time is None:
                st.first_token_time = now
            if st.finished:
                st.finish_time = now
                assert st.seq is not None
                self.blocks.free(st.seq)
                st.seq = None
                self.running.remove(st)
                self.finished.append(st)


# ---------------------------------------------------------------------- the loop
def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation, as ``numpy.percentile``); NaN if empty.

    Example:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 50), percentile([], 99)
        (2.5, nan)
    """
    arr = np.asarray(list(values), dtype=float)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


@dataclass
class ServingRun:
    """What :func:`run` returns: every request's record, the memory trace, the summary.

    Attributes:
        config: the policy. requests: one :class:`RequestState` per request, by id.
        trace: one dict per step: ``time`` (end of the step), ``tokens`` (in the
            batch), ``prefill_tokens``, ``decode_tokens``, ``running``, ``waiting``,
            ``blocks_used``, ``blocks_cached``, ``tokens_held`` (stored once each),
            ``tokens_logical`` (all sequences' lengths summed), ``step_s``.
        blocks: the pool after the run (its ``stats`` count prefix hits).

    Example:
        >>> reqs = [Request(0, (1, 2), max_new_tokens=3)]
        >>> out = run(reqs, SchedulerConfig(token_budget=4, block_size=4, num_blocks=2),
        ...           lambda b: ({0: 9}, 0.5))
        >>> out.requests[0].output, [t["tokens"] for t in out.trace], out.summary()["makespan_s"]
        ([9, 9, 9], [2, 1, 1], 1.5)
    """

    config: SchedulerConfig
    requests: list[RequestState]
    trace: list[dict[str, float]]
    blocks: BlockManager

    def summary(self) -> dict[str, float]:
        """Throughput and latency: tokens/s, TTFT, ITL and end-to-end latency p50 and p99.

        ``output_tokens_per_s`` divides the generated tokens by the time from the first
        arrival to the last token; ``ttft_*`` are over requests; ``itl_*`` are over every
        gap between consecutive tokens of every request; ``steps`` counts model steps.
        """
        reqs = self.requests
        start = min(r.request.arrival for r in reqs)
        end = max(r.finish_time for r in reqs if r.finish_time is not None)
        out_tokens = sum(len(r.output) for r in reqs)
        itl = [g for r in reqs for g in r.itl]
        ttft = [r.ttft for r in reqs if r.ttft is not None]
        e2e = [r.finish_time - r.request.arrival for r in reqs if r.finish_time is not None]
        stats = self.blocks.stats
        q = stats["prefix_query_tokens"]
        return {
            "requests": len(reqs),
            "output_tokens": out_tokens,
            "makespan_s": end - start,
            "output_tokens_per_s": out_tokens / (end - start) if end > start else float("nan"),
            "ttft_p50_s": percentile(ttft, 50), "ttft_p99_s": percentile(ttft, 99),
            "itl_p50_s": percentile(itl, 50), "itl_p99_s": percentile(itl, 99),
            "itl_max_s": max(itl) if itl else float("nan"),
            "e2e_p50_s": percentile(e2e, 50), "e2e_p99_s": percentile(e2e, 99),
            "steps": len(self.trace),
            "preemptions": sum(r.preemptions for r in reqs),
            "prefix_hit_fraction": stats["prefix_hit_tokens"] / q if q else 0.0,
            "peak_blocks_used": max((t["blocks_used"] for t in self.trace), default=0),
        }


#: ``execute(batch) -> (sampled tokens by request id, seconds the step took)``.
Executor = Callable[[list[Chunk]], tuple[dict[int, int], float]]


def run(requests: Sequence[Request], config: SchedulerConfig, execute: Executor, *,
        blocks: BlockManager | None = None) -> ServingRun:
    """Serve ``requests`` under ``config``: schedule, execute, record, until all are done.

    The clock starts at 0 and advances by the time each step takes (as ``execute``
    reports it); when nothing can run it jumps to the next arrival. A request joins
    the queue at the first step boundary at or after its arrival.

    Args:
        requests: the workload (distinct ``rid``).
        config: the policy.
        execute: runs one batch; returns the new token of every chunk whose
            ``samples`` is set (by request id) and the step's duration in seconds.
        blocks: the pool (default: a new :class:`BlockManager` of the config's sizes).

    Returns:
        A :class:`ServingRun`.

    Raises:
        TypeError, ValueError: as :meth:`Scheduler.add`; duplicate request ids; a
            negative step time.

    Example:
        >>> reqs = [Request(i, (1, 2, 3), max_new_tokens=2, arrival=0.0) for i in range(2)]
        >>> cfg = SchedulerConfig(token_budget=4, block_size=4, num_blocks=4)
        >>> out = run(reqs, cfg, lambda b: ({c.state.request.rid: 7 for c in b if c.samples}, 1.0))
        >>> out.summary()["steps"], [r.output for r in out.requests]
        (3, [[7, 7], [7, 7]])
    """
    reqs = sorted(requests, key=lambda r: (r.arrival, r.rid))
    if len({r.rid for r in reqs}) != len(reqs):
        raise ValueError("requests must have distinct rid")
    sched = Scheduler(config, blocks)
    for r in reqs:
        sched._check(r)
    pending, i, now = reqs, 0, 0.0
    trace: list[dict[str, float]] = []
    while i < len(pending) or sched.has_work:
        while i < len(pending) and pending[i].arrival <= now:
            sched.add(pending[i])
            i += 1
        batch = sched.schedule()
        if not batch:
            if i < len(pending):
                now = max(now, pending[i].arrival)
                continue
            raise RuntimeError("the scheduler can run nothing although requests wait: "
                               f"{len(sched.waiting)} waiting, {len(sched.running)} running")
        sampled, dt = execute(batch)
        dt = real("step time", dt, minimum=0)
        now += dt
        sched.complete(batch, sampled, now)
        m = sched.blocks.block_memory()
        prefill = sum(c.n for c in batch if not c.is_decode)
        trace.append({"time": now, "step_s": dt, "tokens": sum(c.n for c in batch),
                      "prefill_tokens": prefill,
                      "decode_tokens": sum(c.n for c in batch) - prefill,
                      "running": len(sched.running), "waiting": len(sched.waiting),
                      "blocks_used": m.blocks_used, "blocks_cached": m.blocks_cached,
                      "tokens_held": m.tokens_held, "tokens_logical": m.tokens})
    states = sorted(sched.finished, key=lambda s: s.request.rid)
    return ServingRun(config, states, trace, sched.blocks)


# ---------------------------------------------------------------------- workload
def synthetic_workload(num_requests: int, *, rate: float, vocab_size: int, seed: int = 0,
                       system_prompt: int = 0, shared_fraction: float = 1.0,
                       prompt_tokens: tuple[int, int] = (8, 32),
                       output_tokens: tuple[int, int] = (8, 32)) -> list[Request]:
    """A seeded synthetic workload: Poisson arrivals, a shared system prompt, random lengths.

    Each request's prompt is, with probability ``shared_fraction``, the same
    ``system_prompt`` tokens followed by its own user tokens; its user-prompt and
    output lengths are uniform in the given inclusive ranges; arrivals form a Poisson
    process of ``rate`` requests per second (``rate = inf``: all at time 0).

    Args:
        num_requests: requests. rate: arrivals per second (positive, may be ``inf``).
        vocab_size: token ids are drawn from ``[0, vocab_size)``.
        seed: the seed of every draw.
        system_prompt: length of the shared system prompt (0: none).
        shared_fraction: fraction of requests that start with it.
        prompt_tokens, output_tokens: ``(low, high)`` lengths of the user prompt and of
            the output.

    Returns:
        ``num_requests`` :class:`Request` s with ids ``0 .. num_requests - 1``.

    Raises:
        TypeError, ValueError: counts that are not positive integers, a bad range, a
            ``shared_fraction`` outside ``[0, 1]``.

    Example:
        >>> reqs = synthetic_workload(3, rate=2.0, vocab_size=10, system_prompt=4)
        >>> [len(r.prompt) - len(r.prompt[4:]) for r in reqs], reqs[0].prompt[:4] == reqs[1].prompt[:4]
        ([4, 4, 4], True)
    """
    n = positive_int("num_requests", num_requests)
    rate = real("rate", rate, positive=True, finite=False)
    vocab_size = positive_int("vocab_size", vocab_size)
    system_prompt = integer("system_prompt", system_prompt, minimum=0)
    shared_fraction = real("shared_fraction", shared_fraction, minimum=0)
    if shared_fraction > 1:
        raise ValueError(f"shared_fraction must be in [0, 1]; got {shared_fraction}")
    ranges = {}
    for name, (lo, hi) in (("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens)):
        lo, hi = positive_int(f"{name}[0]", lo), positive_int(f"{name}[1]", hi)
        if hi < lo:
            raise ValueError(f"{name} must be a range (low, high) with low <= high; got {(lo, hi)}")
        ranges[name] = (lo, hi)
    rng = np.random.default_rng(integer("seed", seed, minimum=0))
    system = rng.integers(0, vocab_size, system_prompt).tolist()
    gaps = np.zeros(n) if math.isinf(rate) else rng.exponential(1.0 / rate, n)
    arrivals = np.cumsum(gaps) - gaps[0]  # the first request arrives at time 0
    out = []
    for i in range(n):
        lo, hi = ranges["prompt_tokens"]
        user = rng.integers(0, vocab_size, int(rng.integers(lo, hi + 1))).tolist()
        shared = bool(rng.random() < shared_fraction)
        lo, hi = ranges["output_tokens"]
        n_out = int(rng.integers(lo, hi + 1))
        out.append(Request(i, tuple((system if shared else []) + user), n_out,
                           float(arrivals[i])))
    return out
