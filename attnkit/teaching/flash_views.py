"""Chapter 8's views of FlashAttention: a tile-by-tile trace, its step-through, measurements.

* :func:`tile_trace` runs the tiled forward pass on small 2-D inputs and records the
  online-softmax state (``m_i``, ``l_i``, ``acc``) after every tile;
* :func:`tile_stepper` turns that trace into precomputed HTML views behind a
  client-side control (:func:`attnkit.teaching.stepper`), so that it works on the
  static website;
* :func:`peak_memory`, :func:`load_results`, :func:`plot_cpu_results` and
  :func:`plot_gpu_results` live in :mod:`attnkit.bench` (measurement, reading and
  drawing the files written by ``python -m attnkit.bench``) and are re-exported here;
* :func:`gpu_specs` gives the datasheet figures (with their sources) of the GPU that a
  results file names, so that the chapter's roofline follows the card that was measured.

The trace uses natural ``exp`` to match the chapter's equations; the engine folds
``log2(e)`` into the scale and uses ``exp2``, which gives the same numbers.
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..bench.measure import peak_memory as _peak_memory
from ..bench.results import load_results, plot_cpu_results, plot_gpu_results

__all__ = ["GPU_SPECS", "GPUSpecs", "gpu_specs", "load_results", "peak_memory",
           "plot_cpu_results", "plot_gpu_results", "tile_stepper", "tile_trace", "tile_view"]
from ..core.masks import causal_offset
from .html import _CELL_STYLE, _TABLE_STYLE, html_table
from .primitives import fmt_num, fmt_vec

#: Moved to :mod:`attnkit.bench` (measurement, loading and drawing results); kept
#: here under their old names for the chapters that call them.
peak_memory = _peak_memory


@dataclass(frozen=True)
class GPUSpecs:
    """Published figures of one GPU that chapter 8's roofline and memory sums need.

    Units: bytes are decimal where the vendor gives decimal (``hbm_bytes_per_s``,
    ``l2_bytes``: NVIDIA's "TB/s" and "MB" are 10^12 and 10^6) and binary where it gives
    binary (``smem_per_sm_bytes``, ``registers_per_sm_bytes``: "KB" of on-chip memory are
    2^10 bytes).

    Attributes:
        name: the card as the book names it (e.g. ``"H100 SXM"``).
        hbm_bytes_per_s: peak HBM bandwidth, bytes/s (the roofline's beta).
        dense_bf16_flops: datasheet dense BF16 tensor-core peak, FLOP/s (no sparsity).
        sms: streaming multiprocessors.
        smem_per_sm_bytes: the most shared memory one multiprocessor offers.
        registers_per_sm_bytes: register file of one multiprocessor.
        l2_bytes: L2 cache.
        exp_flops: throughput of the special-function units (exponentials), per second,
            where a source gives it; ``None`` otherwise.
        sources: where each figure comes from (the book's bibliography keys).
    """

    name: str
    hbm_bytes_per_s: float
    dense_bf16_flops: float
    sms: int
    smem_per_sm_bytes: int
    registers_per_sm_bytes: int
    l2_bytes: int
    exp_flops: float | None
    sources: str


#: Datasheet figures, keyed by the book's name for the card. The H100 SXM5 and the
#: H200 SXM share the GH100 chip (132 SMs, 228 KiB shared memory and a 256 KiB register
#: file per SM, 50 MB of L2); they differ in HBM (3.35 TB/s HBM3 against 4.8 TB/s
#: HBM3e). The exponential rate is FlashAttention-3's figure for the H100 SXM5.
GPU_SPECS: dict[str, GPUSpecs] = {
    "H100 SXM": GPUSpecs(
        "H100 SXM", 3.35e12, 989.4e12, 132, 228 * 2**10, 256 * 2**10, 50 * 10**6, 3.9e12,
        "nvidia2023h100 (bandwidth, BF16 peak), nvidia2022hopper (SMs, shared memory, "
        "register file, L2), shah2024flashattention3 (exponentials)"),
    "H200 SXM": GPUSpecs(
        "H200 SXM", 4.8e12, 989.4e12, 132, 228 * 2**10, 256 * 2**10, 50 * 10**6, None,
        "nvidia2024h200 (bandwidth, BF16 peak); the GH100 chip's figures as for the "
        "H100 SXM (nvidia2022hopper)"),
}


def gpu_specs(device_name: str) -> GPUSpecs:
    """The :data:`GPU_SPECS` entry for a device name as ``torch.cuda`` reports it.

    ``"NVIDIA H100 80GB HBM3"`` (the SXM5 board) maps to ``"H100 SXM"``, and ``"NVIDIA
    H200"`` to ``"H200 SXM"``. Cards whose figures differ (the H100 PCIe and NVL, the
    H200 NVL) are not in the table, so they raise rather than borrow another card's
    numbers.

    Args:
        device_name: the name recorded in a results file (``machine["gpu"]``).

    Returns:
        The card's :class:`GPUSpecs`.

    Raises:
        TypeError: ``device_name`` is not a string.
        ValueError: a card that is not in :data:`GPU_SPECS`; add its figures, with
            their sources, before reading its results.

    Example:
        >>> gpu_specs("NVIDIA H100 80GB HBM3").hbm_bytes_per_s
        3350000000000.0
    """
    if not isinstance(device_name, str):
        raise TypeError(f"device_name must be a string; got {type(device_name).__name__}")
    name = device_name.upper()
    if "PCIE" not in name and "NVL" not in name:
        if "H100" in name and ("HBM3" in name or "SXM" in name):
            return GPU_SPECS["H100 SXM"]
        if "H200" in name:
            return GPU_SPECS["H200 SXM"]
    raise ValueError(
        f"device_name: no datasheet figures for {device_name!r}; known cards: "
        f"{', '.join(GPU_SPECS)} (add the card to attnkit.teaching.flash_views.GPU_SPECS "
        "with its sources)")


def tile_trace(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    *,
    block_q: int = 2,
    block_k: int = 2,
    causal: str | None = None,
    scale: float | None = None,
) -> list[dict[str, Any]]:
    """The tiled forward pass on one head, recording the state after every tile.

    Shapes: ``q (L, E)``, ``k (S, E)``, ``v (S, Ev)``.

    Args:
        q, k, v: 2-D arrays (computed in float64).
        block_q, block_k: tile sizes; the lengths need not be multiples of them.
        causal: ``None``, ``"top-left"`` or ``"bottom-right"``; tiles that the causal
            mask hides entirely are recorded as skipped.
        scale: factor on ``q @ k^T``; default ``1 / sqrt(E)``.

    Returns:
        One dict per tile, in the order the loop visits them, with the tile's
        ``rows``/``cols`` ranges, its ``scores``, ``skipped``, the state before
        (``m_old``, ``l_old``, ``acc_old``) and after (``m_i``, ``l_i``, ``acc``),
        ``alpha = exp(m_old - m_i)`` and ``estimate = acc / l_i``.

    Example:
        >>> from attnkit import example
        >>> steps = tile_trace(example.Q, example.K, example.V)
        >>> len(steps), steps[-1]["rows"]
        (9, (4, 5))
    """
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    if q.ndim != 2 or k.ndim != 2 or v.ndim != 2:
        raise ValueError(f"q, k, v must be 2-D; got shapes {q.shape}, {k.shape}, {v.shape}")
    L, S = q.shape[0], k.shape[0]
    scale = 1.0 / math.sqrt(q.shape[1]) if scale is None else float(scale)
    offset = None if causal is None else causal_offset(L, S, causal)  # type: ignore[arg-type]
    steps = []
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        m_i = np.full(i1 - i0, -np.inf)
        l_i = np.zeros(i1 - i0)
        acc = np.zeros((i1 - i0, v.shape[1]))
        for j0 in range(0, S, block_k):
            j1 = min(j0 + block_k, S)
            step: dict[str, Any] = {"rows": (i0, i1), "cols": (j0, j1),
                                    "m_old": m_i.copy(), "l_old": l_i.copy(),
                                    "acc_old": acc.copy()}
            scores = (q[i0:i1] @ k[j0:j1].T) * scale
            if offset is not None:
                hidden = np.arange(j0, j1)[None, :] > np.arange(i0, i1)[:, None] + offset
                scores = np.where(hidden, -np.inf, scores)
            step["scores"] = scores
            step["skipped"] = bool(np.all(np.isneginf(scores)))
            m_new = np.maximum(m_i, scores.max(axis=1))
            m_safe = np.where(np.isneginf(m_new), 0.0, m_new)
            p = np.exp(scores - m_safe[:, None])
            alpha = np.exp(m_i - m_safe)
            l_i = alpha * l_i + p.sum(axis=1)
            acc = alpha[:, None] * acc + p @ v[j0:j1]
            m_i = m_new
            step.update(m_i=m_i.copy(), l_i=l_i.copy(), acc=acc.copy(), alpha=alpha, p=p,
                        estimate=np.where(l_i[:, None] > 0, acc / np.where(l_i > 0, l_i, 1.0)[:, None], 0.0))
            steps.append(step)
    return steps


def _grid_html(steps: list[dict[str, Any]], current: int, tokens: Sequence[str]) -> str:
    """The L x S score matrix: tiles done (grey), the current tile (yellow), the rest (dots)."""
    L = max(s["rows"][1] for s in steps)
    S = max(s["cols"][1] for s in steps)
    state = np.zeros((L, S), dtype=int)  # 0 not yet, 1 done, 2 current
    value = np.full((L, S), np.nan)
    for n, s in enumerate(steps[: current + 1]):
        (i0, i1), (j0, j1) = s["rows"], s["cols"]
        state[i0:i1, j0:j1] = 2 if n == current else 1
        value[i0:i1, j0:j1] = s["scores"]
    cur = steps[current]
    out = [f'<table class="attnkit-tile-grid" style="{_TABLE_STYLE}">',
           f'<tr><th style="{_CELL_STYLE};font-size:0.8em">query \\ key</th>']
    for j in range(S):
        out.append(f'<th style="{_CELL_STYLE}">{_html.escape(tokens[j])}</th>')
    out.append("</tr>")
    for i in range(L):
        out.append(f'<tr><th style="{_CELL_STYLE}">{_html.escape(tokens[i])}</th>')
        for j in range(S):
            if state[i, j] == 0:
                text, style = "&middot;", "color:#999999"
            else:
                text = "&minus;&infin;" if np.isneginf(value[i, j]) else f"{value[i, j]:.3f}"
                style = ("background:#fff3b0;font-weight:bold;outline:2px solid #E69F00"
                         if state[i, j] == 2 else "background:#e8e8e8;color:#333333")
            out.append(f'<td style="{_CELL_STYLE};{style};min-width:3.5em">{text}</td>')
        out.append("</tr>")
    out.append("</table>")
    (i0, i1), (j0, j1) = cur["rows"], cur["cols"]
    caption = (f"Tile: queries {', '.join(tokens[i0:i1])} &times; keys "
               f"{', '.join(tokens[j0:j1])} (scaled scores). Grey: tiles already folded "
               "into the state, then discarded; dots: not computed yet.")
    return (f'<div style="margin-bottom:0.4em">{caption}</div>' + "".join(out))


def tile_view(steps: list[dict[str, Any]], current: int, tokens: Sequence[str],
              final: np.ndarray) -> str:
    """HTML for step ``current``: the tile grid and the state of the tile's query rows."""
    s = steps[current]
    (i0, i1), j1 = s["rows"], s["cols"][1]
    rows = []
    for r, i in enumerate(range(i0, i1)):
        rows.append([tokens[i], fmt_num(s["m_old"][r]), fmt_num(s["m_i"][r]), fmt_num(s["alpha"][r]),
                     fmt_num(s["l_i"][r]), fmt_vec(s["acc"][r]), fmt_vec(s["estimate"][r]),
                     fmt_vec(final[i])])
    table = html_table(
        rows,
        col_labels=["query", "m_i before", "m_i after", "alpha = exp(m_old - m_new)",
                    "l_i", "acc", "acc / l_i (so far)", "final output"],
        caption="The running state of this tile's query rows after the update",
    )
    last = j1 == max(t["cols"][1] for t in steps)
    note = ("This was the last key block for these rows: acc / l_i is now their final "
            "output, exactly." if last else
            "acc / l_i is the attention output over the keys seen so far; later tiles "
            "rescale it by alpha and add to it.")
    if s["skipped"]:
        note = ("Every score in this tile is masked: the state does not change (the "
                "engine does not even compute such a tile). " + note)
    return (f'<div class="attnkit-tile-view" style="background:#ffffff;color:#111111;'
            f'padding:4px">{_grid_html(steps, current, tokens)}{table}'
            f'<div style="margin-top:0.3em">{note}</div></div>')


def tile_stepper(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    tokens: Sequence[str],
    *,
    block_q: int = 2,
    block_k: int = 2,
    causal: str | None = None,
) -> Any:
    """A step-through of the tiled forward pass that works on the static page.

    Shapes: ``q (L, E)``, ``k (S, E)``, ``v (S, Ev)``; ``tokens`` names the rows
    (``max(L, S)`` labels).

    Returns:
        An ``ipywidgets.VBox`` (CSS class ``attnkit-flash-tiles``) with one toggle
        button per tile and a stack of precomputed views (class ``attnkit-stack``).
    """
    from ..core.masks import softmax
    from .explorers import stepper

    steps = tile_trace(q, k, v, block_q=block_q, block_k=block_k, causal=causal)
    qf, kf, vf = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    scores = qf @ kf.T / math.sqrt(qf.shape[1])
    if causal is not None:
        L, S = scores.shape
        hidden = np.arange(S)[None, :] > np.arange(L)[:, None] + causal_offset(L, S, causal)  # type: ignore[arg-type]
        scores = np.where(hidden, -np.inf, scores)
    final = softmax(scores, axis=-1) @ vf
    views = [tile_view(steps, n, tokens, final) for n in range(len(steps))]
    labels = [f"{n + 1}" for n in range(len(steps))]
    box = stepper(views, labels, description="tile", kind="buttons",
                  title=f"<b>Tiles of {block_q} queries &times; {block_k} keys, "
                        "in the order the loop visits them</b>")
    box.add_class("attnkit-flash-tiles")
    box.children[-1].add_class("attnkit-stack")
    return box
