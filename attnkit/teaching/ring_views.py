"""Chapter 12's ring explorer: each rank's state, step by step, on the static page.

:func:`ring_trace` replays, in one process, exactly what every rank of
:func:`attnkit.distributed.ring_attention` computes at each step (which key/value
block it holds, its partial ``(out, lse)`` from :func:`attnkit.serving.decoding.partial_attention`,
its running result after :func:`attnkit.serving.decoding.merge_partials`); the chapter checks
the final state against the real multi-process run. :func:`ring_stepper` turns
the trace into precomputed HTML views switched client-side.
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.masks import causal_offset
from ..distributed.layout import shard_positions
from ..serving.decoding import merge_partials, partial_attention
from .html import html_table

#: Light Okabe-Ito tints, one per rank (orange, sky blue, bluish green, yellow).
RANK_COLOURS = ("#f5d39a", "#b9dff5", "#9fe0cc", "#f7efa0")


def ring_trace(q: np.ndarray, k: np.ndarray, v: np.ndarray, world_size: int, *,
               layout: str = "contiguous", causal: str | None = None) -> list[list[dict[str, Any]]]:
    """What every rank computes at every ring step, for single-head ``q (n, E)``, ``k, v (n, .)``.

    Returns ``trace[t][r]``: a dict with ``block`` (whose keys rank ``r`` holds at
    step ``t``), ``q_pos``/``k_pos`` (global positions), ``visible`` (the block's
    causal visibility), ``scores``, the step's partial ``out``/``lse`` and the
    running ``out``/``lse`` after the merge (rows in this rank's query order).
    """
    n, S = q.shape[0], k.shape[0]
    scale = 1 / math.sqrt(q.shape[1])
    offset = None if causal is None else causal_offset(n, S, causal)  # type: ignore[arg-type]
    run: list[tuple[np.ndarray, np.ndarray] | None] = [None] * world_size
    trace = []
    for t in range(world_size):
        step = []
        for r in range(world_size):
            s = (r - t) % world_size
            qp = shard_positions(n, r, world_size, layout=layout)  # type: ignore[arg-type]
            kp = shard_positions(S, s, world_size, layout=layout)  # type: ignore[arg-type]
            vis = np.ones((len(qp), len(kp)), dtype=bool)
            if offset is not None:
                vis = kp[None, :] <= qp[:, None] + offset
            out_b, lse_b = partial_attention(q[qp], k[kp], v[kp], mask=vis)
            merged = (out_b, lse_b) if run[r] is None else merge_partials(
                [run[r][0], out_b], [run[r][1], lse_b])
            run[r] = merged
            scores = np.where(vis, q[qp] @ k[kp].T * scale, -np.inf)
            step.append({"rank": r, "block": s, "q_pos": qp, "k_pos": kp, "visible": vis,
                         "scores": scores, "out": out_b, "lse": lse_b, "run_out": merged[0],
                         "run_lse": merged[1]})
        trace.append(step)
    return trace


def _vec(x: np.ndarray) -> str:
    return "[" + ", ".join(f"{float(a):.4f}" for a in x) + "]"


def _num(x: float) -> str:
    return "-inf" if x == -np.inf else f"{float(x):.4f}"


def _grid(trace: list[list[dict[str, Any]]], t: int, tokens: Sequence[str], n: int, S: int) -> str:
    """The (query x key) score grid: who computes each cell at step t, what was done before."""
    owner = {}  # (i, j) -> (step, rank) that computes it
    for tt, step in enumerate(trace):
        for st in step:
            for a, i in enumerate(st["q_pos"]):
                for b, j in enumerate(st["k_pos"]):
                    owner[(int(i), int(j))] = (tt, st["rank"], bool(st["visible"][a, b]),
                                               float(st["scores"][a, b]))
    cell = "border:1px solid #bbbbbb;padding:3px 8px;text-align:right;min-width:3.5em"
    rows = ['<table class="attnkit-ring-grid" style="border-collapse:collapse;font-family:monospace;'
            'font-size:0.9em;background:#ffffff;color:#111111;margin:0.5em 0"><tr>'
            f'<th style="{cell};font-size:0.8em">query \\ key</th>']
    rows += [f'<th style="{cell}">{_html.escape(tokens[j])}</th>' for j in range(S)]
    rows.append("</tr>")
    for i in range(n):
        rows.append(f'<tr><th style="{cell}">{_html.escape(tokens[i])}</th>')
        for j in range(S):
            tt, r, vis, sc = owner[(i, j)]
            if not vis:
                rows.append(f'<td style="{cell};color:#999999">&ndash;</td>')
            elif tt == t:  # the rank is written as well as coloured (colour is not the only cue)
                rows.append(f'<td style="{cell};background:{RANK_COLOURS[r % 4]};font-weight:bold">'
                            f'{sc:.3f}<sub style="font-weight:normal"> r{r}</sub></td>')
            elif tt < t:
                rows.append(f'<td style="{cell};background:#e8e8e8;color:#333333">{sc:.3f}</td>')
            else:
                rows.append(f'<td style="{cell};color:#999999">&middot;</td>')
        rows.append("</tr>")
    rows.append("</table>")
    return "".join(rows)


def ring_view(trace: list[list[dict[str, Any]]], t: int, tokens: Sequence[str],
              final: np.ndarray) -> str:
    """HTML for ring step ``t``: the score grid coloured by rank and every rank's state."""
    P = len(trace)
    n = final.shape[0]
    S = sum(len(st["k_pos"]) for st in trace[0])
    table_rows = []
    for st in trace[t]:
        r, s = st["rank"], st["block"]
        keys = ", ".join(tokens[j] for j in st["k_pos"]) or "(none)"
        for a, i in enumerate(st["q_pos"]):
            table_rows.append([f"rank {r}", tokens[i], f"rank {s}: {keys}", _num(st["lse"][a]),
                               _num(st["run_lse"][a]), _vec(st["run_out"][a]), _vec(final[i])])
    table = html_table(table_rows, col_labels=[
        "rank", "query", "K/V block held", "lse of this block", "merged lse", "merged out",
        "single-device out"], caption=f"Each rank's queries after step {t + 1} of {P}")
    legend = " ".join(
        f'<span style="background:{RANK_COLOURS[r % 4]};padding:1px 6px;margin-right:4px">rank {r}</span>'
        for r in range(P))
    last = t == P - 1
    note = ("Last step: every rank has merged every block, and its merged out equals the "
            "single-device output row for row." if last else
            "Merged out is the attention over the key blocks seen so far; the next block "
            "is already on its way from the previous rank.")
    return (f'<div class="attnkit-ring-view" style="background:#ffffff;color:#111111;padding:4px">'
            f'<div style="margin-bottom:0.4em">Step {t + 1} of {P}: rank r attends its queries to '
            f'the key/value block of rank r - {t} (mod {P}). Coloured and marked r0, r1, ...: '
            f'computed now, by {legend}; '
            f'grey: merged at an earlier step; dots: later; dashes: masked.</div>'
            f'{_grid(trace, t, tokens, n, S)}{table}<div style="margin-top:0.3em">{note}</div></div>')


def ring_stepper(q: np.ndarray, k: np.ndarray, v: np.ndarray, tokens: Sequence[str],
                 configs: Sequence[tuple[int, str, str | None]]) -> Any:
    """Step through the ring for several ``(world_size, layout, causal)`` configurations.

    Returns an ``ipywidgets`` box (CSS class ``attnkit-ring``): buttons pick the
    configuration, a slider picks the step (a configuration with fewer ranks than
    the longest shows its final state on the extra steps).
    """
    from ..core.attention import attention
    from .explorers import stepper2d

    steps = max(P for P, _, _ in configs)
    views, labels = [], []
    for P, layout, causal in configs:
        trace = ring_trace(q, k, v, P, layout=layout, causal=causal)
        final = attention(q, k, v, causal=causal or False)
        row = [ring_view(trace, min(t, P - 1), tokens, final) for t in range(steps)]
        for t in range(P, steps):
            row[t] = row[t].replace('<div class="attnkit-ring-view"', '<div class="attnkit-ring-view" '
                                    'data-done="1"', 1).replace(
                "Last step:", f"With {P} ranks the ring is done after {P} steps.", 1)
        views.append(row)
        labels.append(f"{P} ranks, {layout}" + (", causal" if causal else ""))
    box = stepper2d(views, labels, [str(t + 1) for t in range(steps)], row_description="ranks",
                    col_description="step", row_kind="buttons", col_kind="slider",
                    title="<b>Ring attention on the shared example, step by step</b>")
    box.add_class("attnkit-ring")
    return box
