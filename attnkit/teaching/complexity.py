"""Counting the cost of attention: per-step operation counts, an exact trace, model tables.

Chapter 6 of the book asks how much work ``softmax(q k^T / sqrt(d)) v`` does and how
much memory it needs. This module answers in three ways that the tests check against
each other:

* :func:`step_costs` - the closed forms, step by step (compare, scale, normalise,
  aggregate), for ``n`` queries and keys of width ``d``;
* :func:`trace_attention` - attention written as plain Python loops that count every
  elementary operation as it happens (a brute-force check of the closed forms, and
  the data behind the book's step-by-step explorer, :func:`walkthrough_views`);
* :func:`model_table` - what the closed forms give for real model shapes.

:func:`measure_scaling` times the engines of :func:`attnkit.attention` against ``n``
(and measures the NumPy engine's peak memory with :mod:`tracemalloc`);
:func:`loglog_slope` fits the exponent. Timings are for figures, never for tests.

Shape legend (self-attention, one head)::

    q (n, d)   k (n, d)   v (n, d_v)   scores, weights (n, n)   out (n, d_v)
"""

from __future__ import annotations

import html as _html
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..bench.measure import CLOCKS, best_of_rounds, peak_memory
from ..bench.results import fitted_slope as loglog_slope
from ..core._validate import choice, positive_int
from .html import html_table
from .primitives import fmt_num

__all__ = [
    "MODELS",
    "Measurement",
    "ModelRow",
    "ModelShape",
    "StepCost",
    "TraceStep",
    "loglog_slope",
    "measure_scaling",
    "model_table",
    "score_entries",
    "step_costs",
    "total_ops",
    "trace_attention",
    "walkthrough_views",
]

#: The four operations of attention, in order, with the symbol each one produces.
STAGES: tuple[str, ...] = ("compare", "scale", "normalise", "aggregate")

#: Elementary operations counted by :func:`trace_attention` (keys of its counters).
OP_KINDS: tuple[str, ...] = ("multiply-add", "multiply", "max", "subtract", "exp", "add", "divide")


# --------------------------------------------------------------------------- closed forms


@dataclass(frozen=True)
class StepCost:
    """The cost of one step of attention, as a formula and as a number.

    Attributes:
        step: the step's name (``"compare"``, ``"scale"``, ``"normalise"``, ``"aggregate"``).
        computes: what the step computes, e.g. ``"R = Q Kᵀ"`` (raw scores ``R``, scaled
            scores ``Z``, weights ``P``: the book's notation).
        counted: what the time column counts (e.g. ``"multiply-adds"``).
        time_formula: the count as a formula in ``n``, ``d_k``, ``d_v`` (e.g. ``"n²·d_k"``).
        time: the count for the given sizes.
        memory_formula: entries the step newly stores, as a formula.
        memory: entries newly stored (0 when the step works in place).
    """

    step: str
    computes: str
    counted: str
    time_formula: str
    time: int
    memory_formula: str
    memory: int


def step_costs(n: int, d: int, d_v: int | None = None) -> list[StepCost]:
    """The closed-form cost of each step of self-attention over ``n`` tokens.

    Shapes: ``q, k (n, d)``, ``v (n, d_v)``; scores and weights ``(n, n)``.

    The normalise step is counted by its ``n^2`` exponentials; it also takes
    ``n (n - 1)`` comparisons (row maxima), ``n^2`` subtractions, ``n (n - 1)``
    additions (row sums) and ``n^2`` divisions, each of order ``n^2`` as well
    (see :func:`total_ops` for every kind).

    Args:
        n: number of tokens (queries = keys).
        d: query/key width (the book's :math:`d_k`; the formulas write ``d_k``).
        d_v: value width; defaults to ``d``.

    Returns:
        Four :class:`StepCost` rows: compare, scale, normalise, aggregate.

    Raises:
        ValueError: a size that is not a positive integer.

    Example:
        >>> [c.time for c in step_costs(3, 4)]
        [36, 9, 9, 36]
    """
    n, d = positive_int("n", n), positive_int("d", d)
    d_v = d if d_v is None else positive_int("d_v", d_v)
    return [
        StepCost("compare", "R = Q Kᵀ", "multiply-adds", "n²·d_k", n * n * d,
                 "n²", n * n),
        StepCost("scale", "Z = R / √d_k", "multiplications", "n²", n * n,
                 "0 (in place)", 0),
        StepCost("normalise", "P = softmax(Z)", "exponentials", "n²", n * n,
                 "0 (in place)", 0),
        StepCost("aggregate", "O = P V", "multiply-adds", "n²·d_v", n * n * d_v,
                 "n·d_v", n * d_v),
    ]


def total_ops(n: int, d: int, d_v: int | None = None) -> dict[str, dict[str, int]]:
    """Every elementary operation of naive attention, per step and kind, in closed form.

    The counts are those of :func:`trace_attention` (which performs them one by one):
    compare ``n^2 d`` multiply-adds; scale ``n^2`` multiplications; normalise
    ``n (n - 1)`` max-comparisons, ``n^2`` subtractions, ``n^2`` exponentials,
    ``n (n - 1)`` additions, ``n^2`` divisions; aggregate ``n^2 d_v`` multiply-adds.

    Args:
        n, d, d_v: as in :func:`step_costs`.

    Returns:
        ``{step: {kind: count}}`` with only the kinds that occur.

    Example:
        >>> total_ops(2, 3)["normalise"]
        {'max': 2, 'subtract': 4, 'exp': 4, 'add': 2, 'divide': 4}
    """
    n, d = positive_int("n", n), positive_int("d", d)
    d_v = d if d_v is None else positive_int("d_v", d_v)
    return {
        "compare": {"multiply-add": n * n * d},
        "scale": {"multiply": n * n},
        "normalise": {"max": n * (n - 1), "subtract": n * n, "exp": n * n,
                      "add": n * (n - 1), "divide": n * n},
        "aggregate": {"multiply-add": n * n * d_v},
    }


def score_entries(n: int, *, heads: int = 1, layers: int = 1) -> int:
    """Number of attention-score entries ``heads * layers * n^2`` (one sequence).

    Example:
        >>> score_entries(8192, heads=32, layers=32)
        68719476736
    """
    n = positive_int("n", n)
    return positive_int("heads", heads) * positive_int("layers", layers) * n * n


# --------------------------------------------------------------------------- exact trace


@dataclass(frozen=True)
class TraceStep:
    """One step of :func:`trace_attention`: one entry of a matrix, or one whole stage.

    Attributes:
        stage: one of :data:`STAGES`.
        target: ``(i, j)`` of the entry computed; ``(i, -1)`` for a whole row
            (normalise) and ``(-1, -1)`` for the whole matrix (scale).
        terms: the products summed (compare, aggregate), as ``(a, b)`` pairs.
        value: the value written (a float, or the row/matrix as a tuple).
        ops: elementary operations this step performed, by kind.
    """

    stage: str
    target: tuple[int, int]
    terms: tuple[tuple[float, float], ...]
    value: object
    ops: dict[str, int] = field(default_factory=dict)


def trace_attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, *, scale: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[TraceStep]]:
    """Attention as plain loops that count every elementary operation as it is done.

    Shapes: ``q (n, d)``, ``k (n, d)``, ``v (n, d_v)``; returns ``scores (n, n)`` (scaled),
    ``weights (n, n)``, ``out (n, d_v)``. Only for small ``n``: it runs in Python.

    Args:
        q, k, v: 2-D float arrays (one sequence, one head).
        scale: factor applied to the scores; default ``1 / sqrt(d)``.

    Returns:
        ``(scores, weights, out, steps)``; ``steps`` lists one :class:`TraceStep` per
        score entry, one for the scaling, one per softmax row and one per output entry.

    Raises:
        ValueError: arrays that are not 2-D or whose shapes do not fit together.

    Example:
        >>> from attnkit import example
        >>> _, _, out, steps = trace_attention(example.Q, example.K, example.V)
        >>> sum(s.ops.get("multiply-add", 0) for s in steps)
        200
    """
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    if q.ndim != 2 or k.ndim != 2 or v.ndim != 2:
        raise ValueError(f"q, k, v must be 2-D; got shapes {q.shape}, {k.shape}, {v.shape}")
    n, d = q.shape
    if k.shape != (n, d) or v.shape[0] != n:
        raise ValueError(
            f"need q (n, d), k (n, d), v (n, d_v); got {q.shape}, {k.shape}, {v.shape}"
        )
    d_v = v.shape[1]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    steps: list[TraceStep] = []

    scores = np.zeros((n, n))
    for i in range(n):  # compare: r_ij = sum_u q_iu k_ju (raw scores, scaled below)
        for j in range(n):
            acc, terms = 0.0, []
            for u in range(d):
                acc += q[i, u] * k[j, u]
                terms.append((float(q[i, u]), float(k[j, u])))
            scores[i, j] = acc
            steps.append(TraceStep("compare", (i, j), tuple(terms), acc, {"multiply-add": d}))

    for i in range(n):  # scale, in place
        for j in range(n):
            scores[i, j] *= scale
    steps.append(TraceStep("scale", (-1, -1), (), tuple(map(tuple, scores.tolist())),
                           {"multiply": n * n}))

    weights = np.zeros((n, n))
    for i in range(n):  # normalise: stable softmax of row i
        ops: Counter[str] = Counter()
        m = scores[i, 0]
        for j in range(1, n):
            m = max(m, scores[i, j])
            ops["max"] += 1
        l_i = 0.0  # the row's sum of exponentials (the softmax denominator)
        for j in range(n):
            ex = math.exp(scores[i, j] - m)
            ops["subtract"] += 1
            ops["exp"] += 1
            weights[i, j] = ex
            if j > 0:
                l_i += ex
                ops["add"] += 1
            else:
                l_i = ex
        for j in range(n):
            weights[i, j] /= l_i
            ops["divide"] += 1
        steps.append(TraceStep("normalise", (i, -1), (), tuple(weights[i].tolist()), dict(ops)))

    out = np.zeros((n, d_v))
    for i in range(n):  # aggregate: o_iu = sum_j w_ij v_ju
        for u in range(d_v):
            acc, terms = 0.0, []
            for j in range(n):
                acc += weights[i, j] * v[j, u]
                terms.append((float(weights[i, j]), float(v[j, u])))
            out[i, u] = acc
            steps.append(TraceStep("aggregate", (i, u), tuple(terms), acc, {"multiply-add": n}))
    return scores, weights, out, steps


# --------------------------------------------------------------------------- explorer views


#: Numbers in the walkthrough: integers without decimals, others to 4 digits.
_num = partial(fmt_num, compact=True)


def _grid(a: np.ndarray, filled: np.ndarray) -> list[list[str]]:
    return [[f"{a[i, j]:.4f}" if filled[i, j] else "\u00b7" for j in range(a.shape[1])]
            for i in range(a.shape[0])]


def walkthrough_views(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, tokens: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Precomputed HTML views of :func:`trace_attention`, one per step, for a stepper.

    Each view names the step, writes out the products it sums, shows the matrix being
    filled (the current entry highlighted) and a running count of every operation so
    far. Pass the result to :func:`attnkit.teaching.stepper`.

    Shapes: ``q, k (n, d)``, ``v (n, d_v)``, ``len(tokens) == n``.

    Returns:
        ``(views, labels)``: lists of equal length (the number of trace steps).

    Example:
        >>> from attnkit import example
        >>> views, labels = walkthrough_views(example.Q[:3], example.K[:3], example.V[:3],
        ...                                   example.tokens[:3])
        >>> len(views)
        25
    """
    scores, weights, out, steps = trace_attention(q, k, v)
    n, d = np.asarray(q).shape
    d_v = np.asarray(v).shape[1]
    if len(tokens) != n:
        raise ValueError(f"tokens must have n={n} entries; got {len(tokens)}")
    raw = scores / (1.0 / math.sqrt(d))
    grand = Counter()
    for s in steps:
        grand.update(s.ops)
    done: Counter[str] = Counter()
    s_filled = np.zeros((n, n), bool)
    p_filled = np.zeros((n, n), bool)
    o_filled = np.zeros((n, d_v), bool)
    cols_v = [f"dim {c}" for c in range(d_v)]
    views, labels = [], []
    for t, s in enumerate(steps):
        done.update(s.ops)
        i, j = s.target
        hi: list[tuple[int, int]] = []
        if s.stage == "compare":
            s_filled[i, j] = True
            hi = [(i, j)]
            expr = " + ".join(f"{_num(a)}\u00b7{_num(b)}" for a, b in s.terms)
            what = (f"<b>compare</b>: score of query <i>{_html.escape(tokens[i])}</i> against key "
                    f"<i>{_html.escape(tokens[j])}</i>: r[{i},{j}] = q<sub>{i}</sub>\u00b7"
                    f"k<sub>{j}</sub> = {expr} = {_num(s.value)}")
            table = html_table(_grid(raw, s_filled), tokens, tokens, highlight=hi,
                               caption="raw scores R = Q K^T (rows: queries, columns: keys)")
        elif s.stage == "scale":
            what = (f"<b>scale</b>: every score times 1/\u221a{d} = {1 / math.sqrt(d):.4f} "
                    f"({n}\u00d7{n} = {n * n} multiplications, written in place)")
            hi = [(a, b) for a in range(n) for b in range(n)]
            table = html_table(_grid(scores, np.ones((n, n), bool)), tokens, tokens,
                               highlight=hi, caption="scaled scores Z = R / \u221ad")
        elif s.stage == "normalise":
            p_filled[i, :] = True
            hi = [(i, b) for b in range(n)]
            what = (f"<b>normalise</b>: softmax of row <i>{_html.escape(tokens[i])}</i>: "
                    f"{s.ops['max']} comparisons for the maximum, "
                    f"{s.ops['subtract']} subtractions, "
                    f"{s.ops['exp']} exponentials, {s.ops['add']} additions, "
                    f"{s.ops['divide']} divisions")
            table = html_table(_grid(weights, p_filled), tokens, tokens, highlight=hi,
                               caption="weights P = softmax(Z), row by row")
        else:
            o_filled[i, j] = True
            hi = [(i, j)]
            expr = " + ".join(f"{a:.4f}\u00b7{_num(b)}" for a, b in s.terms)
            what = (f"<b>aggregate</b>: output of <i>{_html.escape(tokens[i])}</i>, dimension {j}: "
                    f"o[{i},{j}] = \u03a3<sub>j'</sub> w[{i},j'] v[j',{j}] = {expr} = {s.value:.4f}")
            table = html_table(_grid(out, o_filled), tokens, cols_v, highlight=hi,
                               caption="output O = P V")
        counts = [[kind, done[kind], grand[kind]] for kind in OP_KINDS if grand[kind]]
        tally = html_table(counts, None, ["operation", "so far", "in all"], fmt="d",
                           caption=f"step {t + 1} of {len(steps)}: running count")
        views.append(
            f'<div class="attnkit-walkthrough"><p style="margin:0.3em 0">{what}</p>'
            f'<div style="display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start">'
            f"{table}{tally}</div></div>"
        )
        labels.append(f"{t + 1}")
    return views, labels


# --------------------------------------------------------------------------- real models


@dataclass(frozen=True)
class ModelShape:
    """The shape of a decoder-only Transformer as far as attention's cost is concerned.

    Attributes:
        name: display name.
        layers: number of Transformer blocks.
        heads: query heads per layer (each forms its own ``n x n`` scores).
        head_dim: width :math:`d_h` of one head's queries and keys (and values).
        context: the sequence length ``n`` the table uses: the model's published context.
        params: nominal parameter count :math:`N` (the number in the model's name).
    """

    name: str
    layers: int
    heads: int
    head_dim: int
    context: int
    params: float


#: The models of chapter 6, each at its published context: GPT-3 175B (Brown et al.,
#: 2020), LLaMA-2 70B (Touvron et al., 2023), and Llama 3.1 70B and 405B
#: (Llama Team, 2024; the released configurations: 80 layers x 64 heads and 126 layers x
#: 128 heads of width 128, ``max_position_embeddings`` 131,072). Llama 3.1 70B has
#: LLaMA-2 70B's attention shape at 32 times its context.
MODELS: tuple[ModelShape, ...] = (
    ModelShape("GPT-3 175B", layers=96, heads=96, head_dim=128, context=2048, params=175e9),
    ModelShape("LLaMA-2 70B", layers=80, heads=64, head_dim=128, context=4096, params=70e9),
    ModelShape("Llama 3.1 70B", layers=80, heads=64, head_dim=128, context=131_072,
               params=70e9),
    ModelShape("Llama 3.1 405B", layers=126, heads=128, head_dim=128, context=131_072,
               params=405e9),
)


@dataclass(frozen=True)
class ModelRow:
    """Attention's cost for one model at full context, batch 1 (one forward pass).

    Attributes:
        model: the :class:`ModelShape`.
        scores_per_head: score entries of one head in one layer, ``n^2``.
        scores_per_pass: score entries in the whole forward pass,
            ``layers * heads * n^2``.
        attention_macs: multiply-adds of ``Q K^T`` and ``P V`` in the forward pass,
            ``2 * layers * heads * n^2 * head_dim``.
        layer_scores_bytes: bytes of one layer's score matrices (all heads) in fp16,
            ``heads * n^2 * 2``.
        weight_macs: multiply-adds of the parameter matrices, ``params * n`` (each
            parameter takes part in one multiply-add per token).
        attention_share: ``attention_macs / (attention_macs + weight_macs)``.
        attention_share_causal: the same share when a causal kernel skips the masked
            half of every score matrix (``attention_macs / 2`` in place of
            ``attention_macs``).
        crossover: the context ``n`` at which attention's multiply-adds would equal the
            weights', ``params / (2 * layers * heads * head_dim)`` (dense attention).
    """

    model: ModelShape
    scores_per_head: int
    scores_per_pass: int
    attention_macs: int
    layer_scores_bytes: int
    weight_macs: float
    attention_share: float
    attention_share_causal: float
    crossover: float


def model_table(models: Iterable[ModelShape] = MODELS) -> list[ModelRow]:
    """Attention's cost for each model shape, from the closed forms of :func:`step_costs`.

    Args:
        models: :class:`ModelShape` records (default :data:`MODELS`).

    Returns:
        One :class:`ModelRow` per model.

    Example:
        >>> model_table()[0].scores_per_head
        4194304
    """
    rows = []
    for m in models:
        n = m.context
        per_head = n * n
        per_pass = score_entries(n, heads=m.heads, layers=m.layers)
        macs = sum(c.time for c in step_costs(n, m.head_dim) if c.counted == "multiply-adds")
        macs *= m.heads * m.layers
        weight = float(m.params) * n
        crossover = float(m.params) / (2 * m.layers * m.heads * m.head_dim)
        rows.append(ModelRow(m, per_head, per_pass, macs, m.heads * per_head * 2, weight,
                             macs / (macs + weight), macs / 2 / (macs / 2 + weight),
                             crossover))
    return rows


# --------------------------------------------------------------------------- measurement


@dataclass(frozen=True)
class Measurement:
    """One timing (and, for NumPy, peak-memory) measurement of attention at size ``n``.

    Attributes:
        backend: the engine (``attnkit.attention(backend=...)``).
        n: sequence length; ``d``: head width.
        seconds: the fastest of the repeats (the least disturbed by other work),
            on the clock named by ``clock``.
        clock: ``"cpu"`` (CPU time of this process) or ``"wall"`` (elapsed time).
        peak_bytes: peak bytes allocated during one call, seen by :mod:`tracemalloc`
            (NumPy only; ``None`` for engines whose memory it cannot see).
    """

    backend: str
    n: int
    d: int
    seconds: float
    clock: str
    peak_bytes: int | None


def measure_scaling(
    ns: Sequence[int],
    d: int = 64,
    *,
    backends: Sequence[str] = ("numpy", "sdpa"),
    repeats: int = 5,
    seed: int = 0,
    dtype: str = "float32",
    torch_threads: int | None = 1,
    clock: str = "cpu",
) -> list[Measurement]:
    """Time :func:`attnkit.attention` for each ``n`` and backend; NumPy's peak memory too.

    Inputs are ``q, k, v (n, d)`` drawn from a seeded normal generator. The calls are
    made in ``repeats`` rounds, each round visiting every ``(backend, n)`` once, and a
    point's time is its fastest call: on a machine shared with other work, a burst of
    disturbance then spoils one round of every size instead of every call of one
    size, and the minimum discards it. Peak memory is measured in a separate call
    under :mod:`tracemalloc`, which sees NumPy's allocations (not torch's).

    The default clock is the CPU time of this process (:func:`time.process_time`):
    for single-threaded work it counts the work done and not the time spent waiting
    for a core that another program holds, so it is far steadier than elapsed time
    on a busy machine. With several threads it adds up their CPU times; use
    ``clock="wall"`` to measure elapsed time instead.

    Args:
        ns: sequence lengths to measure.
        d: head width.
        backends: engine names.
        repeats: number of rounds (timed calls per point), after one warm-up call.
        seed: seed of the input generator.
        dtype: NumPy dtype of the inputs.
        torch_threads: threads for torch while measuring (restored afterwards);
            ``None`` leaves torch's setting alone.
        clock: ``"cpu"`` (:func:`time.process_time`) or ``"wall"``
            (:func:`time.perf_counter`).

    Returns:
        One :class:`Measurement` per ``(backend, n)``, backends in the outer order.

    Raises:
        ValueError: an ``n`` that is not a positive integer, or an unknown ``clock``.

    Example:
        >>> ms = measure_scaling([64, 128], backends=("numpy",), repeats=1)
        >>> [m.n for m in ms]
        [64, 128]
    """
    from ..core.attention import attention

    choice("clock", clock, list(CLOCKS))
    rng = np.random.default_rng(seed)
    ns = [positive_int("n", n) for n in ns]
    from ..engines import capabilities

    numpy_native = {b: capabilities(b).native == "numpy" for b in backends}
    inputs: dict[tuple[str, int], tuple] = {}
    for n in ns:
        arrays = tuple(rng.standard_normal((n, d)).astype(dtype) for _ in range(3))
        for backend in backends:
            if numpy_native[backend]:
                inputs[backend, n] = arrays
            else:
                import torch

                inputs[backend, n] = tuple(torch.from_numpy(x) for x in arrays)

    saved_threads = None
    if torch_threads is not None and not all(numpy_native.values()):
        import torch

        saved_threads = torch.get_num_threads()
        torch.set_num_threads(torch_threads)
    try:
        # the bench timer: a warm-up call each, then interleaved rounds, the fastest call kept
        calls = {key: (lambda q=q, k=k, v=v, b=key[0]: attention(q, k, v, backend=b))
                 for key, (q, k, v) in inputs.items()}
        best = best_of_rounds(calls, max(1, repeats), clock=clock)
        peaks: dict[tuple[str, int], int | None] = dict.fromkeys(inputs)
        for key, (q, k, v) in inputs.items():
            if not numpy_native[key[0]]:  # tracemalloc sees NumPy's allocations only
                continue
            peaks[key] = peak_memory(lambda q=q, k=k, v=v, b=key[0]: attention(q, k, v, backend=b))
    finally:
        if saved_threads is not None:
            import torch

            torch.set_num_threads(saved_threads)
    return [Measurement(b, n, d, best[b, n], clock, peaks[b, n]) for b in backends for n in ns]
