"""What every strategy does before its first data exchange: the group, the timeout, the agreement.

* :func:`require_group` - an initialised ``torch.distributed`` group that this rank
  belongs to (``RuntimeError`` otherwise, before anything is sent).
* :func:`agree` - one small exchange of each rank's argument summary (shapes,
  dtype, options, and whether its own checks passed), so that a rank whose
  arguments were refused, or ranks that disagree on shapes, make *every* rank
  raise the same error at once instead of leaving the others waiting for a
  collective that never comes. (The summaries are plain Python values that this
  library pickles itself, between the ranks of one job.)
* :func:`wait` - wait for posted work with a timeout, so that no rank hangs on a
  dead or stalled peer.
"""

from __future__ import annotations

import datetime
import pickle
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from ..core._validate import real

__all__ = ["agree", "global_rank", "require_group", "shapes_but", "timeout_delta", "wait"]


def require_group(caller: str, group: Any) -> tuple[int, int]:
    """``(rank, world_size)`` of this process in ``group`` (``None``: the default group).

    Raises:
        RuntimeError: ``torch.distributed`` not initialised.
        ValueError: this process is not a member of ``group``.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(f"{caller} needs an initialised torch.distributed process group "
                           "(use attnkit.distributed.launch, or dist.init_process_group)")
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError(f"group must be a process group that this process belongs to; global rank "
                         f"{dist.get_rank()} is not a member of the group passed to {caller}")
    return rank, dist.get_world_size(group)


def global_rank(group: Any, rank: int) -> int:
    """The global rank of ``rank`` of ``group``."""
    return rank if group is None else dist.get_global_rank(group, rank)


def timeout_delta(timeout: Any) -> datetime.timedelta | None:
    """``timeout`` (seconds, or ``None`` for the group's own) as a ``timedelta``."""
    return None if timeout is None else datetime.timedelta(seconds=real("timeout", timeout, positive=True))


def wait(works: Sequence[Any], timeout: datetime.timedelta | None,
         stats: dict[str, float] | None = None) -> None:
    """Wait for posted collectives or exchanges; raises ``RuntimeError`` after ``timeout``.

    ``None`` waits for the group's own timeout (set by :func:`launch`'s
    ``collective_timeout``), so every wait ends.
    """
    start = time.perf_counter()
    for work in works:
        if work is None:
            continue
        if timeout is None:
            work.wait()
        else:
            work.wait(timeout)
    if stats is not None:
        stats["wait_s"] = stats.get("wait_s", 0.0) + time.perf_counter() - start


def _gather_bytes(payload: bytes, group: Any, timeout: datetime.timedelta | None) -> list[bytes]:
    """Every rank's ``payload`` (of any length), by two all-gathers that each wait at most ``timeout``."""
    device = (torch.device("cuda", torch.cuda.current_device())
              if dist.get_backend(group) == "nccl" else torch.device("cpu"))
    P = dist.get_world_size(group)
    size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(size) for _ in range(P)]
    wait([dist.all_gather(sizes, size, group=group, async_op=True)], timeout)
    longest = max(int(s) for s in sizes)
    mine = torch.zeros(longest, dtype=torch.uint8, device=device)
    mine[:len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8) if payload else mine[:0]
    every = [torch.empty_like(mine) for _ in range(P)]
    wait([dist.all_gather(every, mine, group=group, async_op=True)], timeout)
    return [bytes(t[:int(n)].cpu().numpy().tobytes()) for t, n in zip(every, sizes, strict=True)]


def agree(caller: str, group: Any, check: Callable[[], dict[str, Any]],
          same: Sequence[str] = (), timeout: datetime.timedelta | None = None) -> list[dict[str, Any]]:
    """Run this rank's argument ``check``, then exchange every rank's summary; returns them.

    ``check()`` validates this rank's arguments and returns a small dict
    describing them (shapes, dtype, options: plain Python values). The summaries
    travel in two small all-gathers (each waits at most ``timeout``, default the
    group's) *before* any data moves, so that:

    * a rank whose ``check`` raised re-raises its own error, and every other rank
      raises a ``ValueError`` naming that rank and its error;
    * a key of ``same`` on which the ranks disagree raises the same
      ``ValueError``, naming every rank's value, on every rank.

    Returns:
        The summaries of ranks ``0 .. P-1`` of ``group``.
    """
    error: BaseException | None = None
    try:
        mine: dict[str, Any] = check()
        note = None
    except (TypeError, ValueError) as exc:
        error, mine, note = exc, {}, f"{type(exc).__name__}: {exc}"
    every = [pickle.loads(b) for b in _gather_bytes(pickle.dumps((mine, note)), group, timeout)]
    refused = [(r, n) for r, (_, n) in enumerate(every) if n is not None]
    if error is not None:
        raise error
    if refused:
        r, n = refused[0]
        raise ValueError(f"{caller}: rank {r} of the group refused its arguments ({n}); every rank "
                         "stops before any data is exchanged")
    summaries = [s for s, _ in every]
    for key in same:
        values = [s[key] for s in summaries]
        if any(v != values[0] for v in values):
            shown = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            raise ValueError(f"{caller}: the ranks disagree on {key} ({shown}); every rank must pass "
                             f"the same {key} (found before any data was exchanged)")
    return summaries


def shapes_but(x: torch.Tensor, axis: int) -> tuple[int, ...]:
    """The shape of ``x`` with its ``axis`` dimension left out (the part ranks must share)."""
    shape = tuple(int(d) for d in x.shape)
    axis %= len(shape)
    return shape[:axis] + shape[axis + 1:]
