"""Continuous batching at data-centre scale, simulated: the scheduler on a roofline clock.

The real engine (:mod:`attnkit.serving.engine`) runs chapter 10's tiny model and
advances the clock by each step's measured CPU time. This module runs the *same*
scheduler (:class:`attnkit.serving.scheduler.Scheduler`, through
:func:`attnkit.serving.scheduler.run`) with no model at all: a step's duration is
the roofline bound of that batch on a datasheet GPU, from chapter 11's cost model
(:func:`attnkit.serving.sizing.batch_cost`), for a published model shape. By
default, LLaMA-2 7B in 16-bit on one H100 SXM::

    step time = max(FLOPs / peak FLOP/s, bytes / memory bandwidth)
    FLOPs     = 2 N sum(n_new) + 4 n_L H d_h (keys each new query sees, summed)
    bytes     = N b (the weights, once per step) + b_KV (cached tokens read and new ones written)

with one entry ``(context, n_new)`` per chunk of the batch (:class:`Chunk` ``start``
and ``n``). The bound assumes every kernel runs at its roofline and leaves out
activations, kernel launches and the scheduler's own time: a real engine is
slower, by a factor the simulation does not know. What it shows is the shape of
the trade-offs (decoding steps nearly free to batch, a long prefill freezing the
decoding requests of its step, chunking bounding that stall) at the sizes where
they matter.

The pool gets as many blocks as fit beside the weights (:meth:`CostModel.num_blocks`,
keeping 10 % in reserve as chapter 11 does). No model runs, so no token is
predicted: each request's output is a fixed pseudo-random sequence of token ids
(:func:`simulated_token`), the same under every policy, so prefix caching and
recomputation after preemption see the same tokens everywhere.

Nothing here needs torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core._validate import choice, integer, positive_int, real
from .scheduler import Chunk, Request, SchedulerConfig, ServingRun, run
from .sizing import GPU, GPUS, MODELS, ModelShape, StepCost, batch_cost, kv_bytes_per_token

__all__ = ["SIMULATED_MACHINE", "CostModel", "simulate", "simulated_token"]

#: How results of the simulation name their machine (they are not timings of any machine).
SIMULATED_MACHINE = "simulated H100 SXM (cost model)"


def simulated_token(rid: int, position: int, vocab: int) -> int:
    """The token id that the simulation says request ``rid`` produces at ``position``.

    A fixed hash of the two (multiplicative, modulo ``vocab``): deterministic, the same
    under every policy, and different from request to request.

    Example:
        >>> simulated_token(0, 5, 32000) == simulated_token(0, 5, 32000), simulated_token(0, 5, 10) < 10
        (True, True)
    """
    rid = integer("rid", rid)
    position = integer("position", position, minimum=0)
    vocab = positive_int("vocab", vocab)
    return (rid * 2_654_435_761 + position * 40_503 + 12_345) % vocab


@dataclass(frozen=True)
class CostModel:
    """A step's duration from the roofline: a model shape on a GPU (chapter 11's figures).

    Attributes:
        model: the model's shape (default LLaMA-2 7B, :data:`attnkit.serving.sizing.MODELS`).
        gpu: the GPU (default H100 SXM 80 GB, :data:`attnkit.serving.sizing.GPUS`).
        weight_bits, kv_bits: formats of the weights and of the cache (16, 8 or 4).
        reserve: fraction of the GPU's memory kept free (activations, the allocator),
            as in chapter 11; the rest, less the weights, holds the cache.

    Raises:
        TypeError: a model or GPU of the wrong type. ValueError: an unknown format, a
            reserve outside ``[0, 1)``, weights that leave no room for a cache.

    Example:
        >>> cm = CostModel()
        >>> cm.model.name, cm.gpu.name
        ('LLaMA-2 7B', 'H100 SXM 80 GB')
        >>> round(cm.time_of([(0, 8192)]) * 1e3, 1)    # chapter 11's case study: one 8,192-token prefill, ms
        129.4
    """

    model: ModelShape = field(default_factory=lambda: MODELS["LLaMA-2 7B"])
    gpu: GPU = field(default_factory=lambda: GPUS["H100 SXM 80 GB"])
    weight_bits: int = 16
    kv_bits: int = 16
    reserve: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelShape):
            raise TypeError(f"model must be a ModelShape; got {type(self.model).__name__}")
        if not isinstance(self.gpu, GPU):
            raise TypeError(f"gpu must be a GPU; got {type(self.gpu).__name__}")
        choice("weight_bits", self.weight_bits, (16, 8, 4))
        choice("kv_bits", self.kv_bits, (16, 8, 4))
        real("reserve", self.reserve, minimum=0, below=1)
        if self.cache_bytes <= 0:
            raise ValueError(f"the weights of {self.model.name} ({self.weight_bytes / 2**30:.1f} GiB) "
                             f"leave no room for a cache on {self.gpu.name} with reserve = "
                             f"{self.reserve}")

    @property
    def weight_bytes(self) -> float:
        """Bytes of the weights."""
        return self.model.params * self.weight_bits / 8

    @property
    def cache_bytes(self) -> float:
        """Bytes left for the cache: ``memory x (1 - reserve) - weights``."""
        return self.gpu.memory * (1 - self.reserve) - self.weight_bytes

    def num_blocks(self, block_size: int) -> int:
        """Blocks of ``block_size`` tokens that fit in :attr:`cache_bytes`.

        Example:
            >>> CostModel().num_blocks(16)    # LLaMA-2 7B, 16-bit, on an H100 80 GB
            7609
        """
        block_size = positive_int("block_size", block_size)
        per_block = block_size * kv_bytes_per_token(self.model, self.kv_bits)
        return math.floor(self.cache_bytes / per_block)

    def cost_of(self, chunks: Sequence[Chunk] | Sequence[tuple[int, int]]) -> StepCost:
        """FLOPs and bytes of one step over ``chunks``.

        Args:
            chunks: the batch: :class:`~attnkit.serving.scheduler.Chunk` s, or
                ``(context, n_new)`` pairs (tokens already cached, tokens added).

        Returns:
            The :class:`~attnkit.serving.sizing.StepCost` of
            :func:`~attnkit.serving.sizing.batch_cost`.
        """
        pairs = [(c.start, c.n) if isinstance(c, Chunk) else c for c in chunks]
        return batch_cost(self.model, pairs, weight_bits=self.weight_bits, kv_bits=self.kv_bits)

    def time_of(self, chunks: Sequence[Chunk] | Sequence[tuple[int, int]]) -> float:
        """Seconds of one step over ``chunks`` (the roofline bound, see :meth:`cost_of`).

        Example:
            >>> cm = CostModel()
            >>> one, many = cm.time_of([(4096, 1)]), cm.time_of([(4096, 1)] * 32)
            >>> round(one * 1e3, 2), round(many / one, 2)    # 32 sequences: about 5x one, not 32x
            (4.66, 5.26)
        """
        return float(self.cost_of(chunks).time_on(self.gpu)["time_s"])

    def execute(self, batch: Sequence[Chunk]) -> tuple[dict[int, int], float]:
        """The executor of :func:`attnkit.serving.scheduler.run`: simulated tokens and the step's time."""
        sampled = {c.state.request.rid: simulated_token(c.state.request.rid, len(c.state.output),
                                                        self.model.vocab)
                   for c in batch if c.samples}
        return sampled, self.time_of(batch)


def simulate(requests: Sequence[Request], config: SchedulerConfig,
             cost: CostModel | None = None) -> ServingRun:
    """Serve ``requests`` under ``config`` on the cost model's clock (no model runs).

    The scheduler and its loop are :func:`attnkit.serving.scheduler.run`'s, unchanged;
    only the executor differs from the real engine's: :meth:`CostModel.execute`.

    Args:
        requests: the workload (token ids below the model's vocabulary size).
        config: the batching policy and pool (:meth:`CostModel.num_blocks` gives the
            pool that fits on the GPU).
        cost: the cost model (default: LLaMA-2 7B, 16-bit, on an H100 SXM).

    Returns:
        The :class:`~attnkit.serving.scheduler.ServingRun`: each request's token times,
        the trace, :meth:`~attnkit.serving.scheduler.ServingRun.summary`.

    Raises:
        TypeError: ``cost`` not a :class:`CostModel`.
        ValueError: as :func:`attnkit.serving.scheduler.run`.

    Example:
        >>> reqs = [Request(0, tuple(range(1000)), max_new_tokens=3)]
        >>> out = simulate(reqs, SchedulerConfig(token_budget=1024, num_blocks=100))
        >>> [round(t * 1e3, 2) for t in out.requests[0].token_times]    # prefill, then two decoding steps
        [13.89, 18.07, 22.25]
    """
    cost = CostModel() if cost is None else cost
    if not isinstance(cost, CostModel):
        raise TypeError(f"cost must be a CostModel; got {type(cost).__name__}")
    return run(requests, config, cost.execute)
