"""The engines on a GPU: the Triton engine against SDPA's FlashAttention, TFLOP/s.

``python -m attnkit.bench engines --device cuda``: bf16, ``batch * n = 16384``
tokens, ``heads = 2048 / d``, ``d`` in 64 and 128, ``n`` from 512 to 16384, causal
and not; the Triton engine against ``scaled_dot_product_attention`` restricted to
its FlashAttention backend, forward and forward+backward, timed with
``triton.testing.do_bench`` (median, CUDA events). FLOPs per forward:
``4 * batch * heads * n * n * d`` (half of that with a causal mask);
forward+backward counts 3.5 times the forward (the backward as 2.5 forwards,
FlashAttention's convention). The card's bf16 matrix product rate is measured in the
same run (an 8192^3 product) as the peak.

This module imports torch and Triton at its top: the command line imports it only
for ``--device cuda``.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench

from ..engines.triton_flash import flash_attention_triton, tuned_configs
from .measure import peak_memory, spawn
from .report import fmt

GPU_SIZES = (512, 1024, 2048, 4096, 8192, 16384)


def child(cfg: dict[str, Any]) -> Any:
    """One child's measurement: the kernels at one ``(d, causal)``, or the matmul peak."""
    return matmul_peak() if cfg["mode"] == "matmul" else gpu_child(cfg)


def check(args: argparse.Namespace) -> None:
    """The default sizes (the shared options: :func:`~attnkit.bench.cli.check_options`)."""
    args.sizes = args.sizes or list(GPU_SIZES)


def gpu_child(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Measure the Triton kernels and SDPA's FlashAttention at one ``(d, causal)``, all ``n``."""
    d, causal, tokens = cfg["d"], cfg["causal"], cfg["tokens"]
    heads = 2048 // d
    rows = []
    for n in cfg["sizes"]:
        batch = max(1, tokens // n)
        gen = torch.Generator(device="cuda").manual_seed(n + d)
        q, k, v = (torch.randn(batch, heads, n, d, device="cuda", generator=gen,
                               dtype=torch.bfloat16) for _ in range(3))
        d_out = torch.randn_like(q)
        flops = 4 * batch * heads * n * n * d * (0.5 if causal else 1.0)

        def sdpa(q: Any, k: Any, v: Any) -> Any:
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        def triton_fa(q: Any, k: Any, v: Any) -> Any:
            return flash_attention_triton(q, k, v, causal=causal)

        ref = sdpa(q, k, v)
        for name, fn in (("sdpa-flash", sdpa), ("triton", triton_fa)):
            row: dict[str, Any] = {"engine": name, "d": d, "n": n, "causal": causal,
                                   "batch": batch, "heads": heads}
            try:
                row.update(_gpu_measure(fn, (q, k, v), d_out, flops, ref))
                if name == "triton":
                    row["configs"] = tuned_configs()
            except Exception as exc:  # noqa: BLE001 - report, and keep measuring the rest
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
        del q, k, v, d_out, ref
        torch.cuda.empty_cache()
    return rows


def _gpu_measure(fn: Any, qkv: tuple, d_out: Any, flops: float, ref: Any) -> dict[str, Any]:
    """Forward and forward+backward time, TFLOP/s and peak extra memory of ``fn(q, k, v)``."""
    row: dict[str, Any] = {}
    out = fn(*qkv)
    row["max_abs_diff_vs_sdpa"] = float((out.float() - ref.float()).abs().max())
    del out
    row["fwd_peak_extra_bytes"] = peak_memory(lambda: fn(*qkv), "cuda")
    ms = do_bench(lambda: fn(*qkv), warmup=25, rep=100, return_mode="median")
    row["fwd_ms"] = ms
    row["fwd_tflops"] = flops / ms / 1e9
    leaves = [x.detach().requires_grad_(True) for x in qkv]

    def fwd_bwd() -> None:
        for x in leaves:
            x.grad = None
        fn(*leaves).backward(d_out)

    ms = do_bench(fwd_bwd, warmup=25, rep=100, return_mode="median")
    row["fwdbwd_ms"] = ms
    row["fwdbwd_tflops"] = 3.5 * flops / ms / 1e9
    return row


def matmul_peak() -> dict[str, Any]:
    """The measured bf16 matrix-product rate of the current GPU (8192^3, median)."""
    n = 8192
    gen = torch.Generator(device="cuda").manual_seed(0)
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen)
            for _ in range(2))
    ms = do_bench(lambda: a @ b, warmup=50, rep=300, return_mode="median")
    return {"n": n, "dtype": "bfloat16", "ms": ms, "tflops": 2 * n**3 / ms / 1e9}


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """All GPU configurations, one child per (head dim, causal)."""
    rows: list[dict[str, Any]] = []
    for d in args.dims:
        for causal in (False, True):
            cfg = {"mode": "gpu", "d": d, "causal": causal, "sizes": list(args.sizes),
                   "tokens": args.tokens}
            got = spawn(cfg, threads_one=False, extra_env={"ATTNKIT_TRITON_AUTOTUNE": "1"})
            if isinstance(got, dict):
                print(f"d={d} causal={causal}: {got.get('error')}", flush=True)
                continue
            rows += got
            for r in got:
                print(f"d={d:3d} causal={causal!s:5} n={r['n']:5d} {r['engine']:10s} "
                      f"fwd {r.get('fwd_tflops', float('nan')):6.1f} TFLOP/s  "
                      f"fwd+bwd {r.get('fwdbwd_tflops', float('nan')):6.1f} TFLOP/s"
                      + (f"  {r['error']}" if "error" in r else ""), flush=True)
    peak = spawn({"mode": "matmul"}, threads_one=False)
    by = {(r["engine"], r["d"], r["n"], r["causal"]): r for r in rows}
    for r in rows:
        s = by.get(("sdpa-flash", r["d"], r["n"], r["causal"]))
        for key in ("fwd", "fwdbwd"):
            if s and f"{key}_tflops" in r and f"{key}_tflops" in s:
                r[f"{key}_speedup_vs_sdpa"] = r[f"{key}_tflops"] / s[f"{key}_tflops"]
            if f"{key}_tflops" in r and "tflops" in peak:
                r[f"{key}_fraction_of_matmul_peak"] = r[f"{key}_tflops"] / peak["tflops"]
    return {
        "kind": "gpu",
        "settings": {
            "dtype": "bfloat16", "tokens_per_batch": args.tokens, "heads": "2048 / d",
            "dims": list(args.dims), "sizes": list(args.sizes),
            "flops": "forward 4*B*H*n*n*d (x0.5 causal); forward+backward 3.5x forward",
            "timing": "triton.testing.do_bench, median of CUDA-event timings",
            "sdpa": "F.scaled_dot_product_attention under sdpa_kernel(FLASH_ATTENTION)",
            "triton_blocks": "autotuned per problem size (ATTNKIT_TRITON_AUTOTUNE=1) over "
                             "attnkit.engines.triton_flash.AUTOTUNE_CONFIGS; the chosen "
                             "shapes are in each row's 'configs'",
        },
        "matmul_peak": peak,
        "rows": rows,
    }


def table(result: dict[str, Any]) -> list[str]:
    """The Markdown table of a GPU results dict."""
    p = result["matmul_peak"]
    lines = [f"Measured bf16 matmul peak: {fmt(p.get('tflops'), '.0f')} TFLOP/s "
             f"({p.get('n')}^3 product).", "",
             "| d | causal | n | engine | fwd ms | fwd TFLOP/s | fwd x SDPA | fwd % peak "
             "| fwd+bwd ms | fwd+bwd TFLOP/s | fwd+bwd x SDPA |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(result["rows"], key=lambda r: (r["d"], r["causal"], r["n"], r["engine"])):
        if "error" in r:
            lines.append(f"| {r['d']} | {r['causal']} | {r['n']} | {r['engine']} | "
                         f"error: {r['error'][-80:]} |")
            continue
        frac = r.get("fwd_fraction_of_matmul_peak")
        lines.append(
            f"| {r['d']} | {r['causal']} | {r['n']} | {r['engine']} | "
            f"{r['fwd_ms']:.3f} | {r['fwd_tflops']:.0f} | "
            f"{fmt(r.get('fwd_speedup_vs_sdpa'), '.2f')} | "
            f"{fmt(None if frac is None else 100 * frac, '.0f')} | "
            f"{r['fwdbwd_ms']:.3f} | {r['fwdbwd_tflops']:.0f} | "
            f"{fmt(r.get('fwdbwd_speedup_vs_sdpa'), '.2f')} |")
    return lines
