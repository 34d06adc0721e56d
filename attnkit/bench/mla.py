"""Multi-head latent attention, absorbed against naive decoding, on the CPU.

``python -m attnkit.bench mla`` times the attention part of one decoding step of
:class:`attnkit.models.mla.MultiHeadLatentAttention` (one new query per head against a
latent cache of ``S`` tokens; the projections of the new token, the same in both
paths, are left out) on one thread, float32:

* **naive** (MHA mode): up-project all ``S`` cached latents to per-head keys and
  values, then multi-head attention;
* **absorbed** (MQA mode): the query absorbs ``W_UK``, attention runs over the latents
  (the ``H`` heads' queries stacked into one matrix against the one shared key head of
  width ``d_c + d_rope``), ``W_UV`` is applied to the weighted latent.

Both in the same run, in :data:`ROUNDS` interleaved rounds (each round times every path
at that size: best and median of at least ``--repeats`` calls and ``--min-time``
seconds of calls), so that a change of load on a shared machine reaches both paths;
the row's best is the fastest call of any round, its median the median of the rounds'
medians. The ratio is naive time / absorbed time. Each row also records its
multiply-adds (:meth:`attnkit.serving.designs.LatentShape.attention_macs`) and the rate
they ran at. The shape is DeepSeek-V3's per head (``d_h`` 128, ``d_rope`` 64, ``d_c``
512) with ``--heads`` heads (128 in the model; fewer by default, so that the naive
path's up-projected keys fit a laptop's memory at 32k tokens). Results:
``results-mla-cpu``. This module imports torch at its top (the command line imports it
when the command runs).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch

from ..models.mla import MultiHeadLatentAttention
from ..serving.designs import LatentShape
from .measure import best_and_median, timing

#: Interleaved rounds per cache length (the command line's ``--rounds`` overrides it).
ROUNDS = 3


def run(sizes: list[int], heads: int, head_dim: int, rope_dim: int, kv_latent: int,
        repeats: int, min_time: float = 0.2, seed: int = 0, rounds: int = 1) -> dict[str, Any]:
    """Measure both paths at every cache length; returns the rows and the settings.

    Each row: ``S``, ``method``, ``best_ms``, ``median_ms``, ``ratio_vs_absorbed`` (this
    method's best over the absorbed path's best at that ``S``), ``macs`` (multiply-adds
    of the step), ``gmacs_per_s`` (``macs`` over the best time) and
    ``max_abs_diff_vs_naive``.
    """
    shape = LatentShape("benchmark", layers=1, d_model=heads * head_dim, heads=heads,
                        head_dim=head_dim, rope_dim=rope_dim, v_head_dim=head_dim,
                        kv_latent=kv_latent, q_latent=1, source="python -m attnkit.bench mla")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        d_model = heads * head_dim
        layer = MultiHeadLatentAttention(d_model, heads, kv_latent=kv_latent, head_dim=head_dim,
                                         rope_dim=rope_dim).eval()
        g = torch.Generator().manual_seed(seed + 1)
        rows = []
        with torch.no_grad():
            for S in sizes:
                kv = torch.randn(1, S, kv_latent + rope_dim, generator=g)  # cached [xi; k^rope]
                q_nope = torch.randn(1, heads, 1, head_dim, generator=g)  # the new token's query
                q_rope = torch.randn(1, heads, 1, rope_dim, generator=g)
                args = (q_nope, q_rope, kv, False)
                ref = layer._attend_naive(*args)
                diff = float((layer._attend_absorbed(*args) - ref).abs().max())
                paths = {"absorbed": layer._attend_absorbed, "naive": layer._attend_naive}
                bests: dict[str, list[float]] = {m: [] for m in paths}
                medians: dict[str, list[float]] = {m: [] for m in paths}
                for _ in range(rounds):
                    for method, fn in paths.items():
                        best, median = best_and_median(lambda fn=fn, a=args: fn(*a), repeats,
                                                       min_time)
                        bests[method].append(best)
                        medians[method].append(median)
                base = min(bests["absorbed"])
                for method in ("absorbed", "naive"):
                    best = min(bests[method])
                    macs = shape.attention_macs(queries=1, keys=S, mode=method)
                    rows.append({"S": S, "method": method, "best_ms": 1e3 * best,
                                 "median_ms": 1e3 * statistics.median(medians[method]),
                                 "ratio_vs_absorbed": best / base, "macs": macs,
                                 "gmacs_per_s": macs / best / 1e9,
                                 "max_abs_diff_vs_naive": 0.0 if method == "naive" else diff})
    finally:
        torch.set_num_threads(threads)
    return {"rows": rows, "settings": {
        "heads": heads, "head_dim": head_dim, "rope_dim": rope_dim, "kv_latent": kv_latent,
        "v_head_dim": head_dim, "dtype": "float32", "threads": 1, "queries": 1,
        "repeats": repeats, "min_time_s": min_time, "rounds": rounds, "sizes": sizes,
        "cache_numbers_per_token": kv_latent + rope_dim,
        "mha_numbers_per_token": 2 * heads * head_dim,
        "pair_macs": {m: shape.pair_macs(m) for m in ("naive", "absorbed")}}}


def check(args: argparse.Namespace) -> None:
    """RoPE's even width (the shared options: :func:`~attnkit.bench.cli.check_options`)."""
    if args.rope_dim % 2:
        raise ValueError(f"--rope-dim must be even (RoPE rotates pairs); got {args.rope_dim}")


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The MLA benchmark from the command line; returns the results (kind ``mla-cpu``)."""
    rounds = getattr(args, "rounds", None) or ROUNDS
    result = run(args.sizes, args.heads, args.head_dim, args.rope_dim, args.kv_latent,
                 args.repeats, args.min_time, rounds=rounds)
    st = result["settings"]
    st["problem"] = (f"one decoding step's attention, {st['heads']} heads, d_h {st['head_dim']}, "
                     f"d_rope {st['rope_dim']}, d_c {st['kv_latent']}, {st['dtype']}, one thread")
    st["time"] = (f"{rounds} interleaved round(s), each the " + timing(st["repeats"], st["min_time_s"])
                  + "; best = fastest of any round; ratio = time / absorbed time; "
                  "rate = multiply-adds / best time")
    return {"kind": "mla-cpu", **result}


def table(result: dict[str, Any]) -> list[str]:
    """The Markdown table of an MLA results dict."""
    lines = ["| S | method | best ms | median ms | x absorbed | GMAC/s | max abs diff vs naive |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['S']} | {r['method']} | {r['best_ms']:.2f} | {r['median_ms']:.2f} | "
                     f"{r['ratio_vs_absorbed']:.2f} | {r['gmacs_per_s']:.2f} | "
                     f"{r['max_abs_diff_vs_naive']:.1e} |")
    return lines
