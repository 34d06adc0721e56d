"""Static against continuous batching of the chapter 10 model, on the CPU.

``python -m attnkit.bench serving`` serves one seeded synthetic workload
(:func:`attnkit.serving.scheduler.synthetic_workload`: Poisson arrivals, a shared
system prompt, random prompt and output lengths) with a seeded float32
:class:`~attnkit.models.transformer.TinyTransformer` on ``--threads`` threads,
through :func:`attnkit.serving.engine.serve`, under five policies:

* **static**: a batch of up to ``--max-seqs`` requests is admitted only when the
  previous batch has finished, its prompts prefilled in one step;
* **continuous**: requests join and leave at every step, a waiting prompt is
  prefilled whole in a step of its own;
* **continuous + chunked**: each step spends at most ``--token-budget`` tokens,
  decoding tokens first, then chunks of prompts;
* **continuous + prefix** and **continuous + chunked + prefix**: the same with
  automatic prefix caching (the shared system prompt is computed once).

The clock of a run advances by each step's measured wall time (a request arrives
on that clock), so throughput and latencies are those of the engine on this
machine. Every policy runs ``--repeats`` times, the policies interleaved round by
round; each row gives the median of the repeats and, for throughput, the lowest
and highest (the spread), and ratios against static batching's medians in the same
run. The number of steps, the preemptions and the prefix hits do not depend on the
timing.

What the CPU numbers can show: the engine attends for each chunk of a step in its
own block-by-block call (:meth:`attnkit.serving.paged.PagedKVCache.attention`),
so a step's time grows with the number of chunks in it, and the model's matrix
products grow with its tokens. Unlike a GPU's decoding step, whose time hardly
depends on the batch (it reads the weights once), batching here may save little
per token: the comparison shows the scheduling (queueing, time to first token,
inter-token latency, prefill tokens saved by the prefix cache) more than the
throughput that batching buys on a GPU.

Results: ``results-serving-cpu``. This module imports torch at its top (the
command line imports it when the command runs).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from ..core._validate import integer, positive_int, real
from ..models.transformer import TinyTransformer
from ..serving.engine import serve
from ..serving.scheduler import SchedulerConfig, synthetic_workload
from .cpu import _load_average

#: The policies compared: (label, policy, chunked prefill, prefix caching).
POLICY_SET = (
    ("static", "static", False, False),
    ("continuous", "continuous", False, False),
    ("continuous + chunked", "continuous", True, False),
    ("continuous + prefix", "continuous", False, True),
    ("continuous + chunked + prefix", "continuous", True, True),
)

#: The summary fields kept per row (medians over the repeats).
FIELDS = ("output_tokens_per_s", "makespan_s", "ttft_p50_s", "ttft_p99_s", "itl_p50_s",
          "itl_p99_s", "itl_max_s", "e2e_p50_s", "e2e_p99_s")


def check(args: argparse.Namespace) -> None:
    """The command's own options, through the validation vocabulary.

    Raises:
        TypeError, ValueError: a bad value, named by its option.
    """
    for name in ("requests", "d_model", "heads", "layers", "vocab", "block_size", "num_blocks",
                 "token_budget", "max_seqs", "threads", "repeats"):
        positive_int("--" + name.replace("_", "-"), getattr(args, name))
    integer("--system-prompt", args.system_prompt, minimum=0)
    integer("--seed", args.seed, minimum=0)
    real("--rate", args.rate, positive=True, finite=False)
    real("--shared-fraction", args.shared_fraction, minimum=0)
    for name in ("prompt_tokens", "output_tokens"):
        flag = "--" + name.replace("_", "-")
        low, high = (positive_int(flag, x) for x in getattr(args, name))
        if high < low:
            raise ValueError(f"{flag} must be a range LOW HIGH with LOW <= HIGH; got {low} {high}")
    if args.d_model % args.heads:
        raise ValueError(f"--d-model must be a multiple of --heads = {args.heads}; got {args.d_model}")
    SchedulerConfig(token_budget=args.token_budget, block_size=args.block_size,
                    num_blocks=args.num_blocks, max_seqs=args.max_seqs)  # its own errors


def _configs(args: argparse.Namespace, longest: int) -> list[tuple[str, SchedulerConfig]]:
    out = []
    for label, policy, chunked, prefix in POLICY_SET:
        budget = args.token_budget if chunked else max(args.token_budget, longest)
        out.append((label, SchedulerConfig(
            policy=policy, token_budget=budget, max_seqs=args.max_seqs, chunked_prefill=chunked,
            prefix_caching=prefix, block_size=args.block_size, num_blocks=args.num_blocks)))
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Serve the workload under every policy; returns the rows and the settings."""
    reqs = synthetic_workload(
        args.requests, rate=args.rate, vocab_size=args.vocab, seed=args.seed,
        system_prompt=args.system_prompt, shared_fraction=args.shared_fraction,
        prompt_tokens=tuple(args.prompt_tokens), output_tokens=tuple(args.output_tokens))
    longest = max(len(r.prompt) + r.max_new_tokens for r in reqs)
    load_before = _load_average()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        torch.manual_seed(args.seed)
        model = TinyTransformer(vocab_size=args.vocab, max_len=longest, d_model=args.d_model,
                                num_heads=args.heads, num_layers=args.layers).eval()
        configs = _configs(args, longest)
        serve(model, reqs[:2], configs[-1][1])  # warm-up: first calls, allocations
        runs: dict[str, list[Any]] = {label: [] for label, _ in configs}
        for _ in range(args.repeats):  # rounds: every policy once per round
            for label, cfg in configs:
                runs[label].append(serve(model, reqs, cfg))
    finally:
        torch.set_num_threads(threads)
    reference = [r.output for r in runs["static"][0].requests]
    rows = []
    for label, cfg in configs:
        summaries = [out.summary() for out in runs[label]]
        first = runs[label][0]
        row: dict[str, Any] = {"policy": label, "token_budget": cfg.token_budget}
        for f in FIELDS:
            row[f] = float(np.median([s[f] for s in summaries]))
        tput = [s["output_tokens_per_s"] for s in summaries]
        row["output_tokens_per_s_min"], row["output_tokens_per_s_max"] = min(tput), max(tput)
        s0 = summaries[0]
        row.update({
            "steps": s0["steps"], "preemptions": s0["preemptions"],
            "prefix_hit_fraction": s0["prefix_hit_fraction"],
            "peak_blocks_used": s0["peak_blocks_used"],
            "peak_tokens_held": max(t["tokens_held"] for t in first.trace),
            "prefill_tokens": sum(t["prefill_tokens"] for t in first.trace),
            "same_outputs_as_static": all([r.output for r in out.requests] == reference
                                          for out in runs[label]),
        })
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["throughput_x_static"] = row["output_tokens_per_s"] / base["output_tokens_per_s"]
        row["ttft_p50_x_static"] = row["ttft_p50_s"] / base["ttft_p50_s"]
        row["itl_p99_x_static"] = row["itl_p99_s"] / base["itl_p99_s"]
    settings = {
        "requests": args.requests, "rate_per_s": args.rate, "system_prompt": args.system_prompt,
        "shared_fraction": args.shared_fraction, "prompt_tokens": list(args.prompt_tokens),
        "output_tokens": list(args.output_tokens), "seed": args.seed,
        "model": {"d_model": args.d_model, "heads": args.heads, "layers": args.layers,
                  "vocab": args.vocab, "max_len": longest, "dtype": "float32"},
        "block_size": args.block_size, "num_blocks": args.num_blocks,
        "token_budget": args.token_budget, "max_seqs": args.max_seqs, "threads": args.threads,
        "repeats": args.repeats,
        "load_average": f"{load_before} before, {_load_average()} after (1-minute load of the "
                        "whole machine; the benchmark itself adds about the threads it uses)",
        "prompt_tokens_total": sum(len(r.prompt) for r in reqs),
        "output_tokens_total": sum(r.max_new_tokens for r in reqs),
        "problem": f"{args.requests} requests (Poisson, {args.rate:g}/s; a {args.system_prompt}-"
                   f"token system prompt shared by a fraction {args.shared_fraction:g}) served by "
                   f"a {args.layers}-layer TinyTransformer (d_model {args.d_model}, {args.heads} "
                   "heads, float32), greedy",
        "time": "the run's clock advances by each step's measured wall time; medians over "
                f"{args.repeats} runs per policy, policies interleaved; ratios against static "
                "batching's medians in the same run (throughput: above 1 is better; "
                "latencies: below 1 is better)",
    }
    return {"settings": settings, "rows": rows}


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The serving benchmark; returns the results (kind ``serving-cpu``)."""
    return {"kind": "serving-cpu", **measure(args)}


def table(result: dict[str, Any]) -> list[str]:
    """The Markdown table of a serving results dict."""
    lines = ["| policy | tokens/s (min-max) | x static | TTFT p50 ms | TTFT p99 ms | ITL p50 ms "
             "| ITL p99 ms | steps | preempted | prefix hits | prefill tokens | peak tokens held "
             "| same outputs |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['policy']} | {r['output_tokens_per_s']:.0f} ({r['output_tokens_per_s_min']:.0f}"
            f"-{r['output_tokens_per_s_max']:.0f}) | {r['throughput_x_static']:.2f} | "
            f"{1e3 * r['ttft_p50_s']:.1f} | {1e3 * r['ttft_p99_s']:.1f} | {1e3 * r['itl_p50_s']:.1f} | "
            f"{1e3 * r['itl_p99_s']:.1f} | {r['steps']} | {r['preemptions']} | "
            f"{r['prefix_hit_fraction']:.2f} | {r['prefill_tokens']} | {r['peak_tokens_held']} | "
            f"{'yes' if r['same_outputs_as_static'] else 'no'} |")
    return lines
