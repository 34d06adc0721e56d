"""Multi-head latent attention, absorbed against naive decoding, on the CPU.

``python -m attnkit.bench mla`` times the attention part of one decoding step of
:class:`attnkit.models.mla.MultiHeadLatentAttention` (one new query per head against a
latent cache of ``S`` tokens; the projections of the new token, the same in both
paths, are left out) on one thread, float32:

* **naive**: up-project all ``S`` cached latents to per-head keys and values, then
  multi-head attention;
* **absorbed**: the query absorbs ``W_UK``, attention runs over the latents (multi-query
  attention of width ``d_c + d_R``), ``W_UV`` is applied to the weighted latent.

Both in the same run (best and median of at least ``--repeats`` calls and
``--min-time`` seconds of calls); the ratio is naive time / absorbed time. The shape
is DeepSeek-V3's per head (``d_h`` 128, ``d_R`` 64, ``d_c`` 512) with ``--heads`` heads
(128 in the model; fewer by default, so that the naive path's up-projected keys fit a
laptop's memory at 32k tokens). Results: ``results-mla-cpu``. This module imports
torch at its top (the command line imports it when the command runs).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from ..models.mla import MultiHeadLatentAttention
from .measure import best_and_median, timing


def run(sizes: list[int], heads: int, head_dim: int, rope_dim: int, kv_latent: int,
        repeats: int, min_time: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Measure both paths at every cache length; returns the rows and the settings."""
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
                c = torch.randn(1, S, kv_latent, generator=g)  # the cached latents
                k_r = torch.randn(1, S, rope_dim, generator=g)  # the cached RoPE keys
                q_c = torch.randn(1, heads, 1, head_dim, generator=g)  # the new token's query
                q_r = torch.randn(1, heads, 1, rope_dim, generator=g)
                ref = layer._attend_naive(q_c, q_r, c, k_r, False)
                diff = float((layer._attend_absorbed(q_c, q_r, c, k_r, False) - ref).abs().max())
                result = {}
                for method, fn in (("absorbed", layer._attend_absorbed),
                                   ("naive", layer._attend_naive)):
                    best, median = best_and_median(
                        lambda fn=fn, args=(q_c, q_r, c, k_r): fn(*args, False), repeats,
                        min_time)
                    result[method] = (1e3 * best, 1e3 * median)
                base = result["absorbed"][0]
                for method, (best, median) in result.items():
                    rows.append({"S": S, "method": method, "best_ms": best, "median_ms": median,
                                 "ratio_vs_absorbed": best / base,
                                 "max_abs_diff_vs_naive": 0.0 if method == "naive" else diff})
    finally:
        torch.set_num_threads(threads)
    return {"rows": rows, "settings": {
        "heads": heads, "head_dim": head_dim, "rope_dim": rope_dim, "kv_latent": kv_latent,
        "v_head_dim": head_dim, "dtype": "float32", "threads": 1, "queries": 1,
        "repeats": repeats, "min_time_s": min_time, "sizes": sizes,
        "cache_numbers_per_token": kv_latent + rope_dim,
        "mha_numbers_per_token": 2 * heads * head_dim}}


def check(args: argparse.Namespace) -> None:
    """RoPE's even width (the shared options: :func:`~attnkit.bench.cli.check_options`)."""
    if args.rope_dim % 2:
        raise ValueError(f"--rope-dim must be even (RoPE rotates pairs); got {args.rope_dim}")


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The MLA benchmark from the command line; returns the results (kind ``mla-cpu``)."""
    result = run(args.sizes, args.heads, args.head_dim, args.rope_dim, args.kv_latent,
                 args.repeats, args.min_time)
    st = result["settings"]
    st["problem"] = (f"one decoding step's attention, {st['heads']} heads, d_h {st['head_dim']}, "
                     f"d_R {st['rope_dim']}, d_c {st['kv_latent']}, {st['dtype']}, one thread")
    st["time"] = timing(st["repeats"], st["min_time_s"]) + "; ratio = time / absorbed time"
    return {"kind": "mla-cpu", **result}


def table(result: dict[str, Any]) -> list[str]:
    """The Markdown table of an MLA results dict."""
    lines = ["| S | method | best ms | median ms | x absorbed | max abs diff vs naive |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['S']} | {r['method']} | {r['best_ms']:.2f} | {r['median_ms']:.2f} | "
                     f"{r['ratio_vs_absorbed']:.2f} | {r['max_abs_diff_vs_naive']:.1e} |")
    return lines
