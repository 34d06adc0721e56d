"""``python -m attnkit.distributed``: run ring attention on local processes and check it.

Examples::

    python -m attnkit.distributed --nproc 4
    python -m attnkit.distributed --nproc 3 --seq 1000 --causal --layout zigzag --dtype float32

Every rank builds the same seeded problem, runs :func:`ring_attention` on its
shard (forward and backward) and compares with single-device attention; the
command prints each rank's shard and errors, and exits with status 1 when an
error exceeds the tolerance (float64: 1e-12; float32: twice the plain float32
engine's error plus 1e-6).
"""

from __future__ import annotations

import argparse
import sys

from .checks import ring_checks
from .launch import launch


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, launch the ranks, print the check; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m attnkit.distributed", description=__doc__.split("\n")[0])
    p.add_argument("--nproc", type=int, default=2, help="processes (ranks) to launch (default 2)")
    p.add_argument("--seq", type=int, default=256, help="sequence length n (default 256)")
    p.add_argument("--kv-seq", type=int, default=None, help="key length if it differs from --seq")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=None, help="fewer key/value heads (GQA)")
    p.add_argument("--dim", type=int, default=64, help="head width E (default 64)")
    p.add_argument("--causal", nargs="?", const="top-left", default=False,
                   choices=["top-left", "bottom-right"], help="causal mask (default alignment top-left)")
    p.add_argument("--layout", default="contiguous", choices=["contiguous", "zigzag"])
    p.add_argument("--padding", action="store_true", help="add a random key-padding mask")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--backend", default=None, choices=["gloo", "nccl"])
    p.add_argument("--no-grad", action="store_true", help="check the forward pass only")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole run")
    a = p.parse_args(argv)
    case = {"n_q": a.seq, "n_k": a.seq if a.kv_seq is None else a.kv_seq, "batch": a.batch,
            "heads": a.heads, "kv_heads": a.kv_heads, "E": a.dim, "Ev": a.dim, "causal": a.causal,
            "layout": a.layout, "padding": a.padding, "dtype": a.dtype, "grad": not a.no_grad}
    try:
        results = launch(ring_checks, a.nproc, [case], backend=a.backend, timeout=a.timeout)
    except ValueError as exc:
        p.error(str(exc))
    print(f"ring attention on {a.nproc} processes: n = {case['n_q']} queries, {case['n_k']} keys, "
          f"{a.heads} heads of width {a.dim}, causal={a.causal}, layout={a.layout}, {a.dtype}")
    ok = True
    for (res,) in results:
        errs = res["errors"]
        bounds = ({n: 1e-12 for n in errs} if a.dtype == "float64"
                  else {n: 2 * res["naive_errors"][n] + 1e-6 for n in errs})
        good = all(errs[n] <= bounds[n] for n in errs)
        ok &= good
        shown = ", ".join(f"{n} {errs[n]:.1e}" for n in errs)
        print(f"  rank {res['rank']}: {res['L_r']} queries, {res['S_r']} keys; max |error| {shown}"
              f"  {'ok' if good else 'TOO LARGE'}")
    print("equal to single-device attention" if ok else "MISMATCH against single-device attention")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
