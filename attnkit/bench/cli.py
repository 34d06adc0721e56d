"""``python -m attnkit.bench engines|decoding|...|serving``: the benchmarks' one command line.

Every number about speed or memory in the book comes from here (never from a
timed test). The benchmarks share one results schema and one writer
(:func:`attnkit.bench.report.write_results`)::

    python -m attnkit.bench engines  [--device cpu|cuda] [--window W] ...   (the default)
    python -m attnkit.bench decoding [--sizes S ...] [--splits N ...] ...
    python -m attnkit.bench ring     [--nprocs P ...] [--n N] ...
    python -m attnkit.bench mla      [--sizes S ...] [--heads H] [--rounds R] ...
    python -m attnkit.bench sparse   [--sizes N ...] [--topk K ...] [--rounds R] ...
    python -m attnkit.bench serving  [--requests N] [--rate R] [--token-budget T] ...
    python -m attnkit.bench serving-sim [--requests N] [--rates R ...] [--token-budget T] ...

``engines`` compares the engines, each configuration in its own child process
(:mod:`attnkit.bench.cpu`: one thread, time and peak memory; with ``--window`` also
the windowed speed-up against full causal attention and against the ideal;
:mod:`attnkit.bench.gpu`: the Triton kernels against SDPA's FlashAttention,
TFLOP/s). ``decoding`` times split-KV decoding against one pass
(:mod:`attnkit.bench.decoding`); ``ring`` runs ring attention on P local processes
(:mod:`attnkit.bench.ring`); ``mla`` and ``sparse`` time chapter 13's multi-head latent
attention and top-k sparse attention (:mod:`attnkit.bench.mla`,
:mod:`attnkit.bench.sparse`); ``serving`` serves a synthetic workload with the
chapter 10 model under static and continuous batching (:mod:`attnkit.bench.serving`);
``serving-sim`` runs the same scheduler on the roofline clock of LLaMA-2 7B on an H100
(:mod:`attnkit.bench.serving_sim`; simulated, so its results are deterministic).
Without a command, ``engines`` runs, so
``python -m attnkit.bench --device cpu`` works as before.

Each writes ``<out>/results-<kind>.json`` (the date, the command, the machine, the
settings and the rows) and a Markdown page beside it. A benchmark's module is
imported when its command runs (the ring's and the GPU's import torch and Triton):
importing :mod:`attnkit.bench` imports neither.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path

from ..core._arrays import torch_module
from ..core._validate import integer, positive_int, real
from .report import write_results

#: The benchmark commands and the modules that run them (imported when used).
COMMANDS = {
    "engines": "attnkit.bench.cpu",  # attnkit.bench.gpu with --device cuda
    "decoding": "attnkit.bench.decoding",
    "ring": "attnkit.bench.ring",
    "mla": "attnkit.bench.mla",
    "sparse": "attnkit.bench.sparse",
    "serving": "attnkit.bench.serving",
    "serving-sim": "attnkit.bench.serving_sim",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m attnkit.bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")

    e = commands.add_parser("engines", help="the engines side by side (default)")
    e.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="cpu: one-thread engine comparison; cuda: Triton vs SDPA TFLOP/s")
    e.add_argument("--sizes", type=int, nargs="+", help="sequence lengths n")
    e.add_argument("--engines", nargs="+", default=None,
                   help="CPU engines to compare (default: every CPU engine; sdpa is the baseline)")
    e.add_argument("--d", type=int, default=64, help="CPU head width (default 64)")
    e.add_argument("--dims", type=int, nargs="+", default=[64, 128],
                   help="GPU head widths (default 64 128)")
    e.add_argument("--tokens", type=int, default=16384, help="GPU: batch * n")
    e.add_argument("--repeats", type=int, default=5, help="CPU: timed calls per child")
    e.add_argument("--rounds", type=int, default=1, help="CPU: interleaved rounds")
    e.add_argument("--min-time", type=float, default=0.5,
                   help="CPU: keep calling until this many seconds of calls (default 0.5)")
    e.add_argument("--window", type=int, default=None,
                   help="CPU: causal sliding window (W, 0), and full causal attention as its "
                        "baseline; writes results-cpu-window.*")
    e.add_argument("--block-q", type=int, default=None,
                   help="CPU: queries per tile of the flash engines (default: the "
                        "library's, attnkit.engines._online.default_blocks)")
    e.add_argument("--block-k", type=int, default=None,
                   help="CPU: keys per tile of the flash engines (default: the library's)")

    d = commands.add_parser("decoding", help="split-KV decoding against one pass (CPU)")
    d.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384, 65536],
                   help="cache lengths S")
    d.add_argument("--heads", type=int, default=8)
    d.add_argument("--dim", type=int, default=128)
    d.add_argument("--splits", type=int, nargs="+", default=[2, 4, 8])
    d.add_argument("--workers", type=int, default=2, help="threads for the chunks")
    d.add_argument("--repeats", type=int, default=7)
    d.add_argument("--min-time", type=float, default=0.2,
                   help="keep calling until this many seconds of calls (default 0.2)")
    d.add_argument("--arrays", nargs="+", default=["numpy", "torch"], choices=["numpy", "torch"])

    r = commands.add_parser("ring", help="ring attention on P local gloo processes (CPU)")
    r.add_argument("--nprocs", type=int, nargs="+", default=[1, 2, 4])
    r.add_argument("--n", type=int, default=8192, help="sequence length")
    r.add_argument("--batch", type=int, default=1)
    r.add_argument("--heads", type=int, default=2)
    r.add_argument("--dim", type=int, default=64)
    r.add_argument("--repeats", type=int, default=2)
    r.add_argument("--strategies", nargs="*", default=["ring", "ulysses", "usp"],
                   choices=["ring", "ulysses", "usp"],
                   help="context-parallel strategies compared on one problem, in the same run "
                        "(none: skip the comparison)")
    r.add_argument("--cp-heads", type=int, default=4, help="query heads of the comparison")
    r.add_argument("--cp-kv-heads", type=int, default=2, help="key/value heads of the comparison")

    m = commands.add_parser("mla", help="multi-head latent attention: absorbed vs naive (CPU)")
    m.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 16384, 32768],
                   help="cache lengths S")
    m.add_argument("--heads", type=int, default=16)
    m.add_argument("--head-dim", type=int, default=128)
    m.add_argument("--rope-dim", type=int, default=64)
    m.add_argument("--kv-latent", type=int, default=512)
    m.add_argument("--repeats", type=int, default=5)
    m.add_argument("--min-time", type=float, default=0.2)
    m.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds per cache length (default: attnkit.bench.mla.ROUNDS)")

    t = commands.add_parser("sparse", help="top-k sparse attention against dense (CPU)")
    t.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="sequence lengths n (default: attnkit.bench.sparse.SIZES)")
    t.add_argument("--topk", type=int, nargs="+", default=None,
                   help="keys kept per query (default: attnkit.bench.sparse.TOPK)")
    t.add_argument("--dim", type=int, default=64)
    t.add_argument("--index-heads", type=int, default=2)
    t.add_argument("--index-dim", type=int, default=8)
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--min-time", type=float, default=0.2)
    t.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds per sequence length "
                        "(default: attnkit.bench.sparse.ROUNDS)")

    v = commands.add_parser("serving", help="static against continuous batching of the chapter "
                                            "10 model (CPU)")
    v.add_argument("--requests", type=int, default=64, help="requests in the workload")
    v.add_argument("--rate", type=float, default=40.0, help="arrivals per second (Poisson)")
    v.add_argument("--system-prompt", type=int, default=64,
                   help="tokens of the shared system prompt")
    v.add_argument("--shared-fraction", type=float, default=0.9,
                   help="fraction of requests that start with the system prompt")
    v.add_argument("--prompt-tokens", type=int, nargs=2, default=[16, 128], metavar=("LOW", "HIGH"),
                   help="user-prompt length range")
    v.add_argument("--output-tokens", type=int, nargs=2, default=[16, 64], metavar=("LOW", "HIGH"),
                   help="output length range")
    v.add_argument("--d-model", type=int, default=128)
    v.add_argument("--heads", type=int, default=4)
    v.add_argument("--layers", type=int, default=4)
    v.add_argument("--vocab", type=int, default=512)
    v.add_argument("--block-size", type=int, default=16)
    v.add_argument("--num-blocks", type=int, default=256)
    v.add_argument("--token-budget", type=int, default=256,
                   help="tokens per step (continuous batching); without chunked prefill it "
                        "is raised to the longest request")
    v.add_argument("--max-seqs", type=int, default=16, help="requests running at once")
    v.add_argument("--threads", type=int, default=1, help="torch threads")
    v.add_argument("--repeats", type=int, default=3, help="runs of every policy")
    v.add_argument("--seed", type=int, default=0, help="seed of the workload and the weights")

    s = commands.add_parser("serving-sim", help="the same scheduler on the roofline of LLaMA-2 7B "
                                                "on an H100 (simulated)")
    s.add_argument("--requests", type=int, default=200, help="requests per rate")
    s.add_argument("--rates", type=float, nargs="+", default=[2.0, 4.0, 8.0, 12.0, 16.0],
                   help="arrival rates to simulate, requests per second (Poisson)")
    s.add_argument("--system-prompt", type=int, default=1024,
                   help="tokens of the shared system prompt")
    s.add_argument("--shared-fraction", type=float, default=0.8,
                   help="fraction of requests that start with the system prompt")
    s.add_argument("--prompt-tokens", type=int, nargs=2, default=[128, 2048],
                   metavar=("LOW", "HIGH"), help="user-prompt length range")
    s.add_argument("--output-tokens", type=int, nargs=2, default=[64, 512], metavar=("LOW", "HIGH"),
                   help="output length range")
    s.add_argument("--block-size", type=int, default=16)
    s.add_argument("--token-budget", type=int, default=512,
                   help="tokens per step with chunked prefill; without it the budget is raised "
                        "to the longest request")
    s.add_argument("--max-seqs", type=int, default=256, help="requests running at once")
    s.add_argument("--case-batch", type=int, default=32,
                   help="case study: requests decoding when the long prompt arrives")
    s.add_argument("--case-context", type=int, default=1024,
                   help="case study: their prompt length")
    s.add_argument("--seed", type=int, default=0, help="seed of the workload")

    for sub in (e, d, r, m, t, v, s):
        sub.add_argument("--out", type=Path, default=Path("benchmarks"),
                         help="folder for results-*.json and results-*.md (default benchmarks/)")
    return parser


def _command_line(argv: list[str]) -> str:
    """The command as run, without ``--out`` (where the files go does not change them)."""
    given = list(argv)
    if "--out" in given:
        i = given.index("--out")
        del given[i:i + 2]
    return " ".join(["python -m attnkit.bench", *given])


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m attnkit.bench`` / ``attnkit bench``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:  # one measurement, in the process the engines runner spawned
        cfg = json.loads(argv[1])
        runner = importlib.import_module("attnkit.bench.gpu" if cfg["mode"] in ("gpu", "matmul")
                                         else COMMANDS["engines"])
        print(json.dumps(runner.child(cfg)))
        return 0
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["engines", *argv]  # the engines benchmark, as before the commands existed
    parser = _parser()
    args = parser.parse_args(argv)
    module = COMMANDS[args.command]
    if args.command == "engines":
        device = args.device
        if device != "cpu":
            why = cuda_unready()
            if device == "cuda" and why is not None:
                parser.error(f"--device cuda: {why}; run with --device cpu, or on a machine with "
                             "an NVIDIA GPU, CUDA-enabled torch and Triton")
            device = "cuda" if why is None else "cpu"
        args.device = device
        module = "attnkit.bench.gpu" if device == "cuda" else module
    runner = importlib.import_module(module)
    try:
        check_options(args)
        if hasattr(runner, "check"):  # what only this benchmark checks (and its defaults)
            runner.check(args)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    result = runner.from_args(args)
    jpath, mpath = write_results(result, args.out, _command_line(argv), runner.table)
    print(mpath.read_text())
    print(f"wrote {jpath} and {mpath}")
    return 0


#: Options that are counts (positive integers, or lists of them), whichever command has them.
COUNTS = ("sizes", "heads", "dim", "d", "dims", "tokens", "splits", "workers", "repeats",
          "rounds", "nprocs", "n", "batch", "head_dim", "rope_dim", "kv_latent", "topk",
          "index_heads", "index_dim", "block_q", "block_k", "cp_heads", "cp_kv_heads")


def check_options(args: argparse.Namespace) -> None:
    """The options every command shares, through the validation vocabulary.

    Counts (:data:`COUNTS`) are positive integers, ``--min-time`` a number of seconds
    ``>= 0``, ``--window`` a non-negative integer; an option left out (``None``)
    takes its command's default.

    Raises:
        TypeError, ValueError: a bad value, named by its option (``--min-time``).
    """
    for name, value in vars(args).items():
        flag = "--" + name.replace("_", "-")
        values = value if isinstance(value, list) else [value]
        if name in COUNTS:
            for x in values:
                if x is not None:
                    positive_int(flag, x)
        elif name == "min_time":
            real(flag, value, minimum=0)
        elif name == "window" and value is not None:
            integer(flag, value, minimum=0)


def cuda_unready() -> str | None:
    """``None`` when the GPU benchmark can run here, else why not (one sentence)."""
    try:
        torch = torch_module()
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA GPU is usable here (torch {torch.__version__}: torch.cuda.is_available() is False)"
    if importlib.util.find_spec("triton") is None:
        return "Triton is not installed"
    return None


if __name__ == "__main__":
    sys.exit(main())
