"""Continuous batching at data-centre scale, simulated: LLaMA-2 7B on an H100 SXM's roofline.

``python -m attnkit.bench serving-sim`` runs the serving scheduler
(:mod:`attnkit.serving.scheduler`, the one the real engine uses) on the clock of
chapter 11's cost model (:class:`attnkit.serving.simulator.CostModel`: each step
takes the roofline bound of its batch, for LLaMA-2 7B's shape in 16-bit on an
H100 SXM 80 GB's datasheet figures), for a seeded synthetic workload at several
request rates, under five policies:

* **static**: a batch of up to ``--max-seqs`` requests, admitted only when the
  previous batch has finished and only if every member's whole length fits;
* **continuous**: requests join and leave at every step, a waiting prompt is
  prefilled whole in a step of its own (no decoding in that step);
* **continuous + chunked**: each step spends at most ``--token-budget`` tokens,
  decoding tokens first, then chunks of prompts (Sarathi-Serve);
* **continuous + prefix**, **continuous + chunked + prefix**: the same with
  automatic prefix caching (the shared system prompt's blocks computed once).

Each row gives, for one rate and one policy, the output throughput (generated
tokens over the time from the first arrival to the last token), time to first
token and inter-token latency (p50, p99), end-to-end latency, the steps,
preemptions and prefix-cache hits. ``case_study`` adds chapter 11's case: a batch
of requests decoding when an 8,192-token prompt arrives, served with and without
chunked prefill at several budgets: the decoding requests' longest gap between
tokens from the prompt's arrival on, against a 50 ms per-token budget, and the long
prompt's time to first token.

The simulation is deterministic (no timing of this machine enters it), so its
results are the same wherever it runs; they are labelled with the machine
:data:`attnkit.serving.simulator.SIMULATED_MACHINE`. The roofline bound leaves out
activations, kernel launches and the scheduler's own time: a real engine is
slower, by a factor the simulation does not know.

Results: ``results-serving-sim``. Nothing here needs torch.
"""

from __future__ import annotations

import argparse
from typing import Any

from .. import __version__
from ..core._validate import integer, positive_int, real
from ..serving.scheduler import Request, SchedulerConfig, synthetic_workload
from ..serving.simulator import SIMULATED_MACHINE, CostModel, simulate

#: The policies compared: (label, policy, chunked prefill, prefix caching).
POLICY_SET = (
    ("static", "static", False, False),
    ("continuous", "continuous", False, False),
    ("continuous + chunked", "continuous", True, False),
    ("continuous + prefix", "continuous", False, True),
    ("continuous + chunked + prefix", "continuous", True, True),
)

#: The summary fields kept per row.
FIELDS = ("output_tokens_per_s", "makespan_s", "ttft_p50_s", "ttft_p99_s", "itl_p50_s",
          "itl_p99_s", "itl_max_s", "e2e_p50_s", "e2e_p99_s", "steps", "preemptions",
          "prefix_hit_fraction", "peak_blocks_used")

#: Chapter 11's case study: the per-token budget, the long prompt, the budgets tried.
CASE_BUDGET_S = 0.050
CASE_PROMPT = 8192
CASE_TOKEN_BUDGETS = (None, 2048, 1024, 512, 256)


def check(args: argparse.Namespace) -> None:
    """The command's own options, through the validation vocabulary.

    Raises:
        TypeError, ValueError: a bad value, named by its option.
    """
    for name in ("requests", "block_size", "token_budget", "max_seqs", "case_batch",
                 "case_context"):
        positive_int("--" + name.replace("_", "-"), getattr(args, name))
    integer("--system-prompt", args.system_prompt, minimum=0)
    integer("--seed", args.seed, minimum=0)
    for rate in args.rates:
        real("--rates", rate, positive=True)
    fraction = real("--shared-fraction", args.shared_fraction, minimum=0)
    if fraction > 1:
        raise ValueError(f"--shared-fraction must be in [0, 1]; got {fraction}")
    for name in ("prompt_tokens", "output_tokens"):
        flag = "--" + name.replace("_", "-")
        low, high = (positive_int(flag, x) for x in getattr(args, name))
        if high < low:
            raise ValueError(f"{flag} must be a range LOW HIGH with LOW <= HIGH; got {low} {high}")
    SchedulerConfig(token_budget=args.token_budget, block_size=args.block_size,
                    max_seqs=args.max_seqs)  # its own errors


def _configs(args: argparse.Namespace, longest: int, num_blocks: int) -> list[tuple[str, SchedulerConfig]]:
    out = []
    for label, policy, chunked, prefix in POLICY_SET:
        # without chunking, a step must hold a whole prompt (or a preempted request's recompute)
        budget = args.token_budget if chunked else max(args.token_budget, longest)
        out.append((label, SchedulerConfig(
            policy=policy, token_budget=budget, max_seqs=args.max_seqs, chunked_prefill=chunked,
            prefix_caching=prefix, block_size=args.block_size, num_blocks=num_blocks)))
    return out


def case_study(args: argparse.Namespace, cost: CostModel) -> list[dict[str, Any]]:
    """A batch decoding when an 8,192-token prompt arrives: longest token gap, with and without chunking."""
    n, ctx = args.case_batch, args.case_context
    reqs = [Request(i, tuple(range(i, i + ctx)), max_new_tokens=200) for i in range(n)]
    # the long prompt arrives once every decoding request has produced a few tokens
    t_prefill = cost.time_of([(0, ctx)] * n)
    reqs.append(Request(n, tuple(range(10**5, 10**5 + CASE_PROMPT)), max_new_tokens=16,
                        arrival=t_prefill + 10 * cost.time_of([(ctx, 1)] * n)))
    rows = []
    for budget in CASE_TOKEN_BUDGETS:
        cfg = SchedulerConfig(token_budget=budget or CASE_PROMPT + 16, chunked_prefill=budget is not None,
                              prefix_caching=False, block_size=args.block_size,
                              num_blocks=cost.num_blocks(args.block_size), max_seqs=n + 1)
        out = simulate(reqs, cfg, cost)
        long = out.requests[n]
        # the decoding requests' gaps between tokens that end after the long prompt arrived
        gaps = [b - a for r in out.requests[:n] for a, b in zip(r.token_times, r.token_times[1:])
                if b > long.request.arrival]
        worst = float(max(gaps))
        rows.append({"token_budget": budget, "chunked_prefill": budget is not None,
                     "worst_itl_s": worst, "within_budget": bool(worst <= CASE_BUDGET_S),
                     "long_prompt_ttft_s": float(long.ttft), "steps": len(out.trace)})
    return rows


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Simulate every policy at every rate; returns the rows, the case study and the settings."""
    cost = CostModel()
    num_blocks = cost.num_blocks(args.block_size)
    rows = []
    workloads = {}
    for rate in args.rates:
        reqs = synthetic_workload(
            args.requests, rate=rate, vocab_size=cost.model.vocab, seed=args.seed,
            system_prompt=args.system_prompt, shared_fraction=args.shared_fraction,
            prompt_tokens=tuple(args.prompt_tokens), output_tokens=tuple(args.output_tokens))
        workloads[rate] = reqs
        longest = max(len(r.prompt) + r.max_new_tokens for r in reqs)
        for label, cfg in _configs(args, longest, num_blocks):
            s = simulate(reqs, cfg, cost).summary()
            row: dict[str, Any] = {"rate_per_s": rate, "policy": label,
                                   "token_budget": cfg.token_budget}
            row.update({f: (int(s[f]) if f in ("steps", "preemptions", "peak_blocks_used")
                            else float(s[f])) for f in FIELDS})
            rows.append(row)
    for rate in args.rates:
        base = next(r for r in rows if r["rate_per_s"] == rate and r["policy"] == "static")
        for row in (r for r in rows if r["rate_per_s"] == rate):
            row["throughput_x_static"] = row["output_tokens_per_s"] / base["output_tokens_per_s"]
    any_reqs = workloads[args.rates[0]]
    settings = {
        "simulated": f"{cost.model.name} ({cost.model.params / 1e9:.2f} B parameters, 16-bit "
                     f"weights and cache) on {cost.gpu.name}: {cost.gpu.flops / 1e12:.1f} TFLOP/s, "
                     f"{cost.gpu.bandwidth / 1e12:.2f} TB/s; {num_blocks} blocks of "
                     f"{args.block_size} tokens ({(1 - cost.reserve):.0%} of the memory less the "
                     "weights)",
        "time": "each step takes the roofline bound of its batch, max(FLOPs / peak, bytes / "
                "bandwidth) (attnkit.serving.simulator.CostModel); activations, kernel launches "
                "and the scheduler's own time are left out",
        "requests": args.requests, "rates_per_s": list(args.rates),
        "system_prompt": args.system_prompt, "shared_fraction": args.shared_fraction,
        "prompt_tokens": list(args.prompt_tokens), "output_tokens": list(args.output_tokens),
        "seed": args.seed, "block_size": args.block_size, "num_blocks": num_blocks,
        "token_budget": args.token_budget, "max_seqs": args.max_seqs,
        "output_tokens_total": sum(r.max_new_tokens for r in any_reqs),
        "case_study": f"{args.case_batch} requests with {args.case_context}-token prompts decode "
                      f"200 tokens each; an {CASE_PROMPT}-token prompt arrives after their 10th; "
                      f"per-token budget {CASE_BUDGET_S * 1e3:.0f} ms",
        "problem": f"{args.requests} requests per rate (Poisson; a {args.system_prompt}-token system "
                   f"prompt shared by a fraction {args.shared_fraction:g}), greedy, "
                   "simulated tokens",
    }
    return {"settings": settings, "rows": rows, "case_study": case_study(args, cost)}


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The simulation; returns the results (kind ``serving-sim``), its machine named as simulated."""
    cost = CostModel()
    machine = {"simulated": True, "name": SIMULATED_MACHINE, "gpu": cost.gpu.name,
               "model": cost.model.name, "source": cost.gpu.source,
               "versions": {"attnkit": __version__}}
    return {"kind": "serving-sim", "machine": machine, **measure(args)}


def table(result: dict[str, Any]) -> list[str]:
    """The Markdown tables of a serving-sim results dict: policies by rate, then the case study."""
    lines = ["| rate /s | policy | tokens/s | x static | TTFT p50 ms | TTFT p99 ms | ITL p50 ms "
             "| ITL p99 ms | ITL max ms | steps | preempted | prefix hits |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['rate_per_s']:g} | {r['policy']} | {r['output_tokens_per_s']:.0f} | "
            f"{r['throughput_x_static']:.2f} | {1e3 * r['ttft_p50_s']:.1f} | "
            f"{1e3 * r['ttft_p99_s']:.1f} | {1e3 * r['itl_p50_s']:.1f} | {1e3 * r['itl_p99_s']:.1f} | "
            f"{1e3 * r['itl_max_s']:.1f} | {r['steps']} | {r['preemptions']} | "
            f"{r['prefix_hit_fraction']:.2f} |")
    lines += ["", "Case study: " + result["settings"]["case_study"], "",
              "| prefill | longest token gap ms | within budget | long prompt's TTFT ms | steps |",
              "|---|---|---|---|---|"]
    for c in result.get("case_study", []):
        how = f"chunks of {c['token_budget']}" if c["chunked_prefill"] else "whole"
        lines.append(f"| {how} | {1e3 * c['worst_itl_s']:.1f} | {'yes' if c['within_budget'] else 'no'} "
                     f"| {1e3 * c['long_prompt_ttft_s']:.1f} | {c['steps']} |")
    return lines
