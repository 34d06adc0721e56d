"""``python -m attnkit.bench``: the engines side by side, time and peak memory.

Every number about speed or memory in the book comes from here (never from a
timed test). Each configuration runs in its own child process, so that one
engine's memory high-water mark or thread pool cannot leak into another's.

CPU (``--device cpu``, the default without a GPU): one thread
(``torch.set_num_threads(1)``, ``OMP/MKL/OPENBLAS_NUM_THREADS=1``), ``d = 64``,
float32, ``q, k, v`` of shape ``(1, 1, n, d)``; engines ``numpy`` (the naive
reference, forms the n x n matrix), ``torch`` (naive, eager), ``sdpa`` (PyTorch's
fused kernel), ``flash-numpy`` and ``flash-torch`` (attnkit's tiled engine on
NumPy and on torch input, with the library's tile sizes or ``--block-q`` and
``--block-k``, to try others on a machine). Measured per call:

* time: the best (minimum) and the median of at least ``--repeats`` calls, and
  of at least ``--min-time`` seconds of calls, after one warm-up call; over
  ``--rounds`` interleaved rounds the minimum of the best times; ratios are best
  time over SDPA's best time at the same ``n``. The machine's load average before
  and after is recorded with the results;
* peak memory: the growth of the child's resident set during one call (Linux:
  reset the high-water mark through ``/proc/self/clear_refs``, read ``VmHWM``
  afterwards; the inputs already exist), and for NumPy engines also the peak of
  ``tracemalloc`` (NumPy reports its buffers to it).

GPU (``--device cuda``): bf16, ``batch * n = 16384`` tokens, ``heads = 2048 / d``,
``d`` in 64 and 128, ``n`` from 512 to 16384, causal and not; the Triton engine
against ``scaled_dot_product_attention`` restricted to its FlashAttention backend,
forward and forward+backward, timed with ``triton.testing.do_bench`` (median,
CUDA events). FLOPs per forward: ``4 * batch * heads * n * n * d`` (half of
that with a causal mask); forward+backward counts 3.5 times the forward (the
backward as 2.5 forwards, FlashAttention's convention). The card's bf16 matrix
product rate is measured in the same run (an 8192^3 product) as the peak.

Results go to ``benchmarks/results-{cpu,gpu}.json`` (with the machine, the library
versions and the command) and a human-readable ``.md`` beside each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .cpu import CPU_ENGINES, CPU_SIZES, cpu_child, run_cpu
from .gpu import GPU_DIMS, GPU_SIZES, gpu_child, matmul_peak, run_gpu
from .report import write_results

# ------------------------------------------------------------------------ parent


def _cuda_ready() -> str | None:
    """``None`` when the GPU benchmark can run here, else why not (one sentence)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA GPU is usable here (torch {torch.__version__}: torch.cuda.is_available() is False)"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed"
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m attnkit.bench`` / ``attnkit bench``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="attnkit bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="cpu: one-thread engine comparison; cuda: Triton vs SDPA TFLOP/s")
    parser.add_argument("--sizes", type=int, nargs="+", help="sequence lengths n")
    parser.add_argument("--engines", nargs="+", choices=CPU_ENGINES, default=list(CPU_ENGINES),
                        help="CPU engines to compare (sdpa is the time baseline)")
    parser.add_argument("--d", type=int, default=64, help="CPU head width (default 64)")
    parser.add_argument("--dims", type=int, nargs="+", default=list(GPU_DIMS),
                        help="GPU head widths (default 64 128)")
    parser.add_argument("--tokens", type=int, default=16384, help="GPU: batch * n")
    parser.add_argument("--repeats", type=int, default=5, help="CPU: timed calls per child")
    parser.add_argument("--rounds", type=int, default=1, help="CPU: interleaved rounds")
    parser.add_argument("--min-time", type=float, default=0.5,
                        help="CPU: keep calling until this many seconds of calls (default 0.5)")
    parser.add_argument("--window", type=int, default=None,
                        help="CPU: causal sliding window (W, 0) instead of full attention; "
                             "writes results-cpu-window.*")
    parser.add_argument("--block-q", type=int, default=None,
                        help="CPU: queries per tile of the flash engines (default: the "
                             "library's, attnkit.engines._online.default_blocks)")
    parser.add_argument("--block-k", type=int, default=None,
                        help="CPU: keys per tile of the flash engines (default: the library's)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks"),
                        help="folder for results-*.json and results-*.md (default benchmarks/)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        cfg = json.loads(args.child)
        if cfg["mode"] == "cpu":
            result: Any = cpu_child(cfg)
        elif cfg["mode"] == "gpu":
            result = gpu_child(cfg)
        else:
            result = matmul_peak()
        print(json.dumps(result))
        return 0

    device = args.device
    cuda = _cuda_ready()
    if device == "auto":
        device = "cuda" if cuda is None else "cpu"
    elif device == "cuda" and cuda is not None:
        parser.error(f"--device cuda: {cuda}; run with --device cpu, or on a machine with an "
                     "NVIDIA GPU, CUDA-enabled torch and Triton")
    given = list(argv if argv is not None else sys.argv[1:])
    if "--out" in given:  # where the files go does not change the results
        i = given.index("--out")
        del given[i:i + 2]
    command = "python -m attnkit.bench " + " ".join(given)
    if args.min_time < 0:
        parser.error(f"--min-time must be a number of seconds >= 0; got {args.min_time}")
    if args.window is not None and args.window < 0:
        parser.error(f"--window must be a non-negative integer; got {args.window}")
    for flag, value in (("--block-q", args.block_q), ("--block-k", args.block_k)):
        if value is not None and value < 1:
            parser.error(f"{flag} must be a positive integer; got {value}")
    if device == "cpu":
        if "sdpa" not in args.engines:
            parser.error("--engines must include sdpa, the time baseline")
        args.sizes = args.sizes or list(CPU_SIZES)
        result = run_cpu(args)
    else:
        args.sizes = args.sizes or list(GPU_SIZES)
        result = run_gpu(args)
    jpath, mpath = write_results(result, args.out, command.strip())
    print(mpath.read_text())
    print(f"wrote {jpath} and {mpath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
