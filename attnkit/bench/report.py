"""Results files: ``results-<kind>.json`` and a Markdown table beside it."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from .measure import machine_info

MiB = 1024 * 1024


def utc_now() -> str:
    """The date and time stamped on results files, e.g. ``2026-11-30 11:52 UTC``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def save_results(out_dir: Path, stem: str, result: dict[str, Any], text: str) -> tuple[Path, Path]:
    """Write ``<stem>.json`` (``result``) and ``<stem>.md`` (``text``); return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    jpath.write_text(json.dumps(result, indent=1) + "\n")
    mpath.write_text(text)
    return jpath, mpath


def write_results(result: dict[str, Any], out_dir: Path, command: str) -> tuple[Path, Path]:
    """Write ``results-<kind>.json`` and ``results-<kind>.md``; return their paths."""
    kind = result["kind"]
    result = {
        "date": utc_now(),
        "command": command,
        "machine": machine_info("cuda" if kind == "gpu" else "cpu"),
        **result,
    }
    return save_results(out_dir, f"results-{kind}", result, markdown(result))


def _fmt(x: Any, spec: str) -> str:
    return "" if x is None else format(x, spec)


def markdown(result: dict[str, Any]) -> str:
    """A human-readable table of a results dictionary."""
    m = result["machine"]
    cpu = m.get("cpu_details", {})
    lines = [f"# Benchmark results ({result['kind'].upper()})", "",
             f"- date: {result['date']}", f"- command: `{result['command']}`",
             f"- machine: {m.get('gpu', m['cpu'])}; {m['logical_cpus']} logical CPUs; "
             f"{m['platform']}",
             f"- CPU: {cpu.get('model', m['cpu'])}, vendor {cpu.get('vendor', '?')}, family "
             f"{cpu.get('family', '?')} model {cpu.get('model_number', '?')}; vector ISA "
             f"{cpu.get('vector_isa', '?')} (AVX-512: {', '.join(cpu.get('avx512', [])) or 'no'})",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()), ""]
    lines += [f"- {k}: {v}" for k, v in result["settings"].items() if v is not None] + [""]
    if result.get("fitted_slopes"):
        lines += ["Fitted slope of log(time) against log(n): "
                  + ", ".join(f"{e} {s:.2f}" for e, s in result["fitted_slopes"].items()), ""]
    if result["kind"].startswith("cpu"):
        lines += ["| n | engine | best ms | median ms | x SDPA time | peak RSS growth MiB "
                  "| tracemalloc MiB | x naive memory |", "|---|---|---|---|---|---|---|---|"]
        for r in result["rows"]:
            if "error" in r:
                lines.append(f"| {r['n']} | {r['engine']} | error: {r['error'][-80:]} |")
                continue
            rss = r.get("peak_rss_growth_bytes")
            tm = r.get("tracemalloc_peak_bytes")
            lines.append(
                f"| {r['n']} | {r['engine']} | {r['time_best_s'] * 1e3:.1f} | "
                f"{r['time_median_s'] * 1e3:.1f} | {_fmt(r.get('time_ratio_vs_sdpa'), '.2f')} | "
                f"{_fmt(None if rss is None else rss / MiB, '.1f')} | "
                f"{_fmt(None if tm is None else tm / MiB, '.1f')} | "
                f"{_fmt(r.get('memory_ratio_vs_naive'), '.4f')} |")
    else:
        p = result["matmul_peak"]
        lines += [f"Measured bf16 matmul peak: {_fmt(p.get('tflops'), '.0f')} TFLOP/s "
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
                f"{_fmt(r.get('fwd_speedup_vs_sdpa'), '.2f')} | "
                f"{_fmt(None if frac is None else 100 * frac, '.0f')} | "
                f"{r['fwdbwd_ms']:.3f} | {r['fwdbwd_tflops']:.0f} | "
                f"{_fmt(r.get('fwdbwd_speedup_vs_sdpa'), '.2f')} |")
    return "\n".join(lines) + "\n"


