"""Run a function on P local processes that form one ``torch.distributed`` group.

:func:`launch` spawns ``nprocs`` fresh Python processes (the ``spawn`` start
method: it works from a script, the command line and a Jupyter kernel alike, as
long as ``fn`` is importable, i.e. defined in a module rather than in the
notebook), joins them into one process group (gloo on CPUs, NCCL when every
process gets its own GPU) and returns the list of their results in rank order.

Failure is loud and quick: a rank that raises sends its exception to the parent,
which stops every other rank and re-raises it (with the rank's traceback as a
note); a rank that dies or a group that does not finish within ``timeout`` is a
``RuntimeError``/``TimeoutError``. Every collective inside the group also has a
timeout (``collective_timeout``), so ranks that wait for a dead peer give up by
themselves.
"""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import pickle
import queue as queue_mod
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from ..core._validate import choice, positive_int, real
from .mesh import make_mesh

__all__ = ["launch", "local_device"]


def local_device() -> Any:
    """This rank's device inside :func:`launch`: its GPU under NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _to_cpu(x: Any) -> Any:
    """Move tensors in (nested) lists, tuples and dicts to the CPU, detached."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, (list, tuple)):
        items = [_to_cpu(i) for i in x]
        return type(x)(items) if type(x) in (list, tuple) else type(x)(*items)
    if isinstance(x, dict):
        return {key: _to_cpu(val) for key, val in x.items()}
    return x


def _worker(rank: int, world_size: int, fn: Callable[..., Any], args: tuple, init_file: str,
            backend: str, collective_timeout: float, threads: int, results: Any,
            mesh: tuple[int, int] | None = None) -> None:
    try:
        torch.set_num_threads(threads)
        if backend == "gloo":
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo0" if os.uname().sysname == "Darwin" else "lo")
        if backend == "nccl":
            torch.cuda.set_device(rank)
        dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank,
                                world_size=world_size,
                                timeout=datetime.timedelta(seconds=collective_timeout))
        if mesh is not None:
            make_mesh(*mesh, timeout=collective_timeout)
        value = fn(rank, world_size, *args)
        results.put((rank, "ok", pickle.dumps(_to_cpu(value))))
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent
        tb = traceback.format_exc()
        try:
            payload = pickle.dumps(exc)
            pickle.loads(payload)
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            payload = None
        results.put((rank, "error", (payload, f"{type(exc).__name__}: {exc}", tb)))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(
    fn: Callable[..., Any],
    nprocs: int,
    *args: Any,
    backend: str | None = None,
    timeout: float = 300.0,
    collective_timeout: float = 60.0,
    threads: int | None = None,
    mesh: tuple[int, int] | None = None,
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``nprocs`` local processes in one process group.

    Args:
        fn: a function importable by name (defined in a module, not in a notebook
            or ``__main__``), called as ``fn(rank, nprocs, *args)`` after the group is
            initialised. Its return value must pickle (tensors come back on the CPU).
        nprocs: the number of processes ``P`` (the group's world size).
        *args: passed to ``fn`` (must pickle).
        backend: ``"gloo"`` or ``"nccl"``; default NCCL when there is a GPU for every
            process, else gloo.
        timeout: seconds for the whole group; then every rank is stopped.
        collective_timeout: seconds any one collective or exchange may wait.
        threads: torch threads per process (default: the CPU cores divided by
            ``nprocs``, at least 1, so that the ranks do not oversubscribe the CPU).
        mesh: ``(P_ulysses, P_ring)`` with product ``nprocs``: every rank builds the
            sub-groups of that grid (:func:`attnkit.distributed.make_mesh`) before
            calling ``fn``, which finds them with :func:`attnkit.distributed.current_mesh`.

    Returns:
        The ``nprocs`` return values, in rank order.

    Raises:
        ValueError, TypeError: bad arguments (``fn`` not importable, ``nprocs < 1``,
            an unknown backend, NCCL without enough GPUs, a mesh whose sizes do not
            multiply to ``nprocs``).
        Exception: the first exception raised by a rank, re-raised in the caller
            with that rank's traceback attached as a note (or a ``RuntimeError``
            carrying it when the exception does not pickle); the other ranks are
            stopped.
        RuntimeError: a rank that exits without a result (e.g. killed).
        TimeoutError: the group did not finish within ``timeout``.

    Example:
        >>> from attnkit.distributed.checks import ring_check
        >>> results = launch(ring_check, 2, {"n_q": 7, "n_k": 7})  # doctest: +SKIP
        >>> [max(r["errors"].values()) < 1e-12 for r in results]  # doctest: +SKIP
        [True, True]
    """
    _check_importable(fn)
    nprocs = positive_int("nprocs", nprocs)
    timeout = real("timeout", timeout, positive=True)
    collective_timeout = real("collective_timeout", collective_timeout, positive=True)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if backend is None:
        backend = "nccl" if gpus >= nprocs else "gloo"
    backend = choice("backend", backend, ("gloo", "nccl"))
    if backend == "nccl" and gpus < nprocs:
        raise ValueError(f"backend='nccl' needs one GPU per process: nprocs={nprocs}, GPUs={gpus}")
    if mesh is not None:
        if not isinstance(mesh, (tuple, list)) or len(mesh) != 2:
            raise TypeError(f"mesh must be a pair (P_ulysses, P_ring) or None; got {mesh!r}")
        mesh = (positive_int("mesh[0]", mesh[0]), positive_int("mesh[1]", mesh[1]))
        if mesh[0] * mesh[1] != nprocs:
            raise ValueError(f"mesh must have P_ulysses * P_ring = nprocs = {nprocs}; got {mesh}")
    threads = max(1, (os.cpu_count() or 1) // nprocs) if threads is None else positive_int(
        "threads", threads)

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    tmp = tempfile.mkdtemp(prefix="attnkit-launch-")
    init_file = os.path.join(tmp, "rendezvous")
    procs = [ctx.Process(target=_worker, name=f"attnkit-rank-{rank}",
                         args=(rank, nprocs, fn, args, init_file, backend, collective_timeout,
                               threads, results, mesh))
             for rank in range(nprocs)]
    try:
        for p in procs:
            p.start()
        return _collect(procs, results, timeout)
    finally:
        _stop(procs)
        results.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _check_importable(fn: Any) -> None:
    """``fn`` must be a module-level function that a spawned process can import by name."""
    if not callable(fn):
        raise TypeError(f"fn must be callable; got {type(fn).__name__}")
    module = getattr(fn, "__module__", None)
    interactive = module == "__main__" and getattr(sys.modules.get("__main__"), "__file__", None) is None
    if module is None or interactive or "<locals>" in getattr(fn, "__qualname__", ""):
        raise ValueError(
            f"fn must be importable by the spawned processes (a module-level function in an importable "
            f"module); got {getattr(fn, '__qualname__', fn)!r} from module {module!r}. "
            "Move it into a .py module (functions defined in a notebook cannot be spawned)")


def _collect(procs: list[Any], results: Any, timeout: float) -> list[Any]:
    """The ranks' return values in rank order; the first rank's error, death or the deadline raises."""
    nprocs = len(procs)
    done: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(done) < nprocs:
        try:
            rank, status, payload = results.get(timeout=0.2)
        except queue_mod.Empty:
            dead = [r for r, p in enumerate(procs) if r not in done and p.exitcode not in (None, 0)]
            if dead:
                try:  # it may have queued its error just before dying
                    rank, status, payload = results.get(timeout=1.0)
                except queue_mod.Empty:
                    raise RuntimeError(
                        f"rank {dead[0]} of {nprocs} exited with code {procs[dead[0]].exitcode} "
                        "without a result (killed, or crashed in native code)") from None
            elif time.monotonic() > deadline:
                late = [r for r in range(nprocs) if r not in done]
                raise TimeoutError(
                    f"launch: ranks {late} of {nprocs} did not finish within {timeout} s") from None
            else:
                continue
        if status != "ok":
            _reraise(rank, nprocs, payload)
        done[rank] = pickle.loads(payload)
    return [done[r] for r in range(nprocs)]


def _reraise(rank: int, nprocs: int, payload: tuple[bytes | None, str, str]) -> None:
    """Raise a rank's exception in the caller, with that rank's traceback as a note."""
    exc_bytes, summary, tb = payload
    exc = pickle.loads(exc_bytes) if exc_bytes is not None else None
    note = f"raised on rank {rank} of {nprocs}; that rank's traceback:\n{tb}"
    if isinstance(exc, Exception) and hasattr(exc, "add_note"):
        exc.add_note(note)
        raise exc
    raise RuntimeError(f"rank {rank} of {nprocs} raised {summary}\n{note}")


def _stop(procs: list[Any]) -> None:
    """Stop the ranks still running, then wait for every one (killing those that linger)."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)
