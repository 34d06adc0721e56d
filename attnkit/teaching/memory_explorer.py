"""The KV-cache memory explorer: pick a model, GPU, context, batch and format; see what fits.

Four or five choices make hundreds of combinations, too many for a stack of widget
views. The explorer is therefore plain HTML: ``<select>`` controls, a table, and a
few lines of JavaScript that look the chosen combination up in a table of results
computed here, in Python, by :mod:`attnkit.serving`. The browser formats nothing and
computes nothing, so the page shows the library's numbers, with or without a kernel.

DOM: the explorer has the class ``attnkit-memory-explorer``; each control is a
``select`` with ``data-key`` = ``model``, ``gpu``, ``context``, ``batch`` or ``format``;
the result is in the element with class ``attnkit-memory-result``.
"""

from __future__ import annotations

import hashlib
import html as _html
import json
from collections.abc import Sequence

from ..serving.sizing import GPU, GiB, ModelShape, kv_cache_bytes_for, sequences_that_fit
from .html import _CELL_STYLE, _TABLE_STYLE

__all__ = ["memory_explorer_data", "memory_explorer_html"]

_FORMAT_LABELS = {16: "16-bit (float16/bfloat16)", 8: "8-bit integers + scales",
                  4: "4-bit integers + scales"}


def _gib(x: float) -> str:
    return f"{x / GiB:,.2f} GiB"


def memory_explorer_data(models: Sequence[ModelShape], gpus: Sequence[GPU], contexts: Sequence[int],
                         batches: Sequence[int], formats: Sequence[int] = (16, 8, 4), *,
                         weight_bits: int = 16, reserve: float = 0.1,
                         group_size: int = 64) -> dict[str, dict[str, str]]:
    """Every combination's result, formatted: ``{"m|g|c|b|f": {field: text}}`` (indices).

    Fields: ``kv`` (cache of the batch), ``per_seq`` (one sequence), ``weights``,
    ``total``, ``fits`` ("yes"/"no" against the GPU with ``reserve`` kept free) and
    ``max_seqs`` (how many such sequences fit).

    Raises:
        ValueError: an empty choice list, or values :mod:`attnkit.serving` rejects.
    """
    for name, seq in (("models", models), ("gpus", gpus), ("contexts", contexts),
                      ("batches", batches), ("formats", formats)):
        if len(seq) == 0:
            raise ValueError(f"{name} must not be empty")
    out: dict[str, dict[str, str]] = {}
    for mi, m in enumerate(models):
        weights = m.params * weight_bits / 8
        for gi, g in enumerate(gpus):
            for ci, c in enumerate(contexts):
                for fi, f in enumerate(formats):
                    per_seq = kv_cache_bytes_for(m, context=c, bits=f, group_size=group_size)
                    max_seqs = sequences_that_fit(g.memory, weights=weights, per_sequence=per_seq,
                                                  reserve=reserve)
                    for bi, b in enumerate(batches):
                        kv = per_seq * b
                        total = weights + kv
                        out[f"{mi}|{gi}|{ci}|{bi}|{fi}"] = {
                            "kv": _gib(kv), "per_seq": _gib(per_seq), "weights": _gib(weights),
                            "total": _gib(total),
                            "fits": "yes" if b <= max_seqs else "no",
                            "max_seqs": f"{max_seqs:,}",
                        }
    return out


def memory_explorer_html(models: Sequence[ModelShape], gpus: Sequence[GPU], contexts: Sequence[int],
                         batches: Sequence[int], formats: Sequence[int] = (16, 8, 4), *,
                         weight_bits: int = 16, reserve: float = 0.1, group_size: int = 64,
                         initial: dict[str, int] | None = None) -> str:
    """The explorer as one self-contained HTML string (controls, result table, lookup script).

    Args:
        models, gpus: the shapes and accelerators to choose from.
        contexts, batches: context lengths (tokens) and batch sizes to choose from.
        formats: cache formats in bits (16, 8, 4).
        weight_bits: bits per weight (16 for bfloat16 weights).
        reserve: fraction of GPU memory kept for activations and the allocator.
        group_size: numbers per scale in the 8- and 4-bit formats.
        initial: the index selected first for each control (default 0).

    Returns:
        HTML; display it with ``IPython.display.HTML``.

    Raises:
        ValueError: see :func:`memory_explorer_data`.
    """
    data = memory_explorer_data(models, gpus, contexts, batches, formats, weight_bits=weight_bits,
                                reserve=reserve, group_size=group_size)
    initial = initial or {}
    payload = json.dumps(data, sort_keys=True, separators=(",", ":"))
    uid = "attnkit-mem-" + hashlib.sha1(payload.encode()).hexdigest()[:10]
    controls = [
        ("model", "model", [f"{m.name} ({m.kv_heads} KV heads)" for m in models]),
        ("gpu", "GPU", [g.name for g in gpus]),
        ("context", "context (tokens)", [f"{c:,}" for c in contexts]),
        ("batch", "sequences (batch)", [f"{b:,}" for b in batches]),
        ("format", "cache format", [_FORMAT_LABELS.get(f, f"{f}-bit") for f in formats]),
    ]
    parts = [f'<div id="{uid}" class="attnkit-memory-explorer" style="border:1px solid #cccccc;'
             f'padding:6px;background:#ffffff;color:#111111">',
             "<div style='display:flex;flex-wrap:wrap;gap:0.8em;margin-bottom:0.4em'>"]
    for key, label, options in controls:
        sel = initial.get(key, 0)
        opts = "".join(f'<option value="{i}"{" selected" if i == sel else ""}>{_html.escape(o)}</option>'
                       for i, o in enumerate(options))
        parts.append(f"<label>{_html.escape(label)}<br><select data-key='{key}'>{opts}</select></label>")
    parts.append("</div>")
    rows = [("weights (16-bit)" if weight_bits == 16 else f"weights ({weight_bits}-bit)", "weights"),
            ("KV cache of one sequence", "per_seq"), ("KV cache of the batch", "kv"),
            ("weights + KV cache", "total"),
            (f"fits, keeping {reserve:.0%} of the GPU free", "fits"),
            ("sequences of this length that fit", "max_seqs")]
    first_key = "|".join(str(initial.get(k, 0)) for k, _, _ in controls)
    parts.append(f'<table class="attnkit-memory-result" style="{_TABLE_STYLE}">')
    for label, field in rows:
        parts.append(f'<tr><th style="{_CELL_STYLE};text-align:left">{_html.escape(label)}</th>'
                     f'<td data-field="{field}" style="{_CELL_STYLE}">'
                     f"{_html.escape(data[first_key][field])}</td></tr>")
    parts.append("</table>")
    parts.append(
        "<script>(function(){"
        f"var root=document.getElementById('{uid}');if(!root)return;"
        f"var data={payload};"
        "var keys=['model','gpu','context','batch','format'];"
        "function update(){var k=keys.map(function(n){return root.querySelector("
        "\"select[data-key='\"+n+\"']\").value;}).join('|');var r=data[k];if(!r)return;"
        "root.querySelectorAll('td[data-field]').forEach(function(td){"
        "td.textContent=r[td.getAttribute('data-field')];});}"
        "root.querySelectorAll('select').forEach(function(s){s.addEventListener('change',update);});"
        "update();})();</script>")
    parts.append("</div>")
    return "".join(parts)
