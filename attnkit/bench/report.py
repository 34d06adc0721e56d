"""The one results writer: ``results-<kind>.json`` and a Markdown page beside it.

Every benchmark's results share one schema::

    kind       "cpu", "cpu-window", "gpu", "decoding-cpu", "distributed-cpu", "mla-cpu",
               "topk-cpu", "serving-cpu", "serving-sim"
    date       "2026-11-30 11:52 UTC"
    command    the command that made it, e.g. "python -m attnkit.bench decoding"
    machine    attnkit.bench.machine.machine(): CPU, its vector ISA, memory, versions (GPU);
               for a simulation, {"simulated": true, "name": ..., "versions": ...} (its own)
    settings   what was measured and how (each a value or a sentence)
    rows       one dict per measured configuration (the benchmark's own fields)

and, by kind, ``fitted_slopes`` (the CPU engines) and ``matmul_peak`` (the GPU).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .machine import machine, machine_line

MiB = 1024 * 1024

#: The title of each kind's Markdown page.
TITLES = {
    "cpu": "Benchmark results (CPU)",
    "cpu-window": "Benchmark results (CPU, causal sliding window)",
    "gpu": "Benchmark results (GPU)",
    "decoding-cpu": "Split-KV decoding against one-pass decoding (CPU)",
    "distributed-cpu": "Ring attention on local gloo processes (CPU): time, memory and traffic per rank",
    "mla-cpu": "Multi-head latent attention: absorbed against naive decoding (CPU)",
    "topk-cpu": "Top-k sparse attention against dense causal attention (CPU)",
    "serving-cpu": "Static against continuous batching of the chapter 10 model (CPU)",
    "serving-sim": "Static against continuous batching, simulated: LLaMA-2 7B on an H100 SXM's roofline",
}


def utc_now() -> str:
    """The date and time stamped on results files, e.g. ``2026-11-30 11:52 UTC``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def fmt(x: Any, spec: str) -> str:
    """``format(x, spec)``, or an empty cell for ``None``.

    Example:
        >>> fmt(1.234, ".1f"), fmt(None, ".1f")
        ('1.2', '')
    """
    return "" if x is None else format(x, spec)


def write_results(result: dict[str, Any], out_dir: Path, command: str,
                  table: Callable[[dict[str, Any]], list[str]]) -> tuple[Path, Path]:
    """Write ``results-<kind>.json`` and ``results-<kind>.md``; return their paths.

    Args:
        result: a benchmark's ``kind``, ``settings``, ``rows`` (and extras).
        out_dir: the folder (made if missing).
        command: the command that made the results.
        table: the benchmark's Markdown table of ``result`` (a list of lines).
    """
    kind = result["kind"]
    simulated = result.get("machine")  # a simulation names its own (simulated) machine
    result = {"kind": kind, "date": utc_now(), "command": command,
              "machine": simulated or machine("cuda" if kind == "gpu" else "cpu"),
              **{k: v for k, v in result.items() if k not in ("kind", "machine")}}
    return save_results(out_dir, f"results-{kind}", result, markdown(result, table))


def save_results(out_dir: Path, stem: str, result: dict[str, Any], text: str) -> tuple[Path, Path]:
    """Write ``<stem>.json`` (``result``) and ``<stem>.md`` (``text``); return their paths.

    The files themselves: :func:`write_results` stamps and renders a benchmark's
    results and calls this.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    jpath.write_text(json.dumps(result, indent=1) + "\n")
    mpath.write_text(text)
    return jpath, mpath


def markdown(result: dict[str, Any], table: Callable[[dict[str, Any]], list[str]]) -> str:
    """The Markdown page of a results dict: date, command, machine, settings, then ``table``.

    Example:
        >>> page = markdown({"kind": "cpu", "date": "d", "command": "c", "settings": {"d": 64},
        ...                  "machine": {"cpu": "X", "logical_cpus": 1, "platform": "p",
        ...                              "versions": {"numpy": "2"}}, "rows": []},
        ...                 lambda r: ["| n |"])
        >>> page.splitlines()[0], page.splitlines()[-1]
        ('# Benchmark results (CPU)', '| n |')
    """
    m = result["machine"]
    lines = [f"# {TITLES.get(result['kind'], 'Benchmark results')}", "",
             f"- date: {result['date']}", f"- command: `{result['command']}`",
             f"- machine: {m['name'] if m.get('simulated') else machine_line(m)}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()), ""]
    lines += [f"- {k}: {v}" for k, v in result["settings"].items() if v is not None] + [""]
    if result.get("fitted_slopes"):
        lines += ["Fitted slope of log(time) against log(n): "
                  + ", ".join(f"{e} {s:.2f}" for e, s in result["fitted_slopes"].items()), ""]
    return "\n".join(lines + table(result)) + "\n"
