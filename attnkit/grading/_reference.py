"""Run an exercise set's reference answers through its own checks, in this process.

The tests of the exercise sets (``tests/test_exercises.py``) use this to show that
every check accepts the reference answer for every seed its random inputs could use,
and answers rounded as the sets allow (four decimal places), not just the one seed and
the unrounded floats the notebook happened to run with; and to know the reference
values that a course release must not show.

A run executes the source notebook's code cells in order in one namespace: grader
cells, solution cells (then each function named by a ``forbid`` declaration is wrapped
in its guard, so the reference must keep its own rule), and every check cell whole
(value checks and hidden tests included). Worked-solution cells (run by nbval with the
notebook) and the set-up cell that installs attnkit on Colab do not run.

``seed_shift`` changes every seed the cells give ``np.random.default_rng``: seed ``s``
becomes the entropy ``(s, seed_shift)`` (shift 0 keeps the notebook's own seeds).
"""

from __future__ import annotations

import contextlib
import io
import os
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import nbformat
import numpy as np

from ._guard import ForbiddenCall, guarded
from ._plan import Plan, assigned_names, build_plan
from .sets import WORKED_TAG, source_notebook

__all__ = ["ReferenceRun", "round_answer", "run_reference"]

#: Tag of the set-up cell that installs attnkit where it is missing (never run here).
SETUP_TAG = "attnkit-setup"


@dataclass
class ReferenceRun:
    """What a run found.

    ``failures`` maps a check's grade id to its failure message (empty: every check
    passed); ``answers`` maps each name a solution cell assigns to its value.
    """

    exercise_set: str
    seed_shift: int
    plan: Plan
    failures: dict[str, str] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)


def round_answer(value: Any, decimals: int = 4) -> Any:
    """A float answer (or array of floats) rounded to ``decimals``; anything else as it is.

    Example:
        >>> round_answer(0.9 ** 7), round_answer(12), round_answer("B")
        (0.4783, 12, 'B')
    """
    if isinstance(value, (bool, np.bool_, int, np.integer)) or isinstance(value, str):
        return value
    if isinstance(value, (float, np.floating)):
        return float(np.round(value, decimals)) if np.isfinite(value) else value
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return np.round(value, decimals)
    return value


@contextlib.contextmanager
def _shifted_seeds(shift: int) -> Iterator[None]:
    original = np.random.default_rng
    if not shift:
        yield
        return

    def default_rng(seed: Any = None, *args: Any, **kwargs: Any) -> np.random.Generator:
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seed = (int(seed), int(shift))
        return original(seed, *args, **kwargs)

    np.random.default_rng = default_rng  # type: ignore[assignment]
    try:
        yield
    finally:
        np.random.default_rng = original  # type: ignore[assignment]


def _meta(cell: Any) -> dict:
    m = cell.get("metadata", {}).get("nbgrader", {})
    return m if isinstance(m, dict) else {}


def run_reference(
    exercise_set: str,
    source_dir: str | os.PathLike[str] | None = None,
    *,
    seed_shift: int = 0,
    transform: Callable[[str, Any], Any] | None = None,
    guard: bool = True,
) -> ReferenceRun:
    """Run the reference answers of ``exercise_set`` through all its checks.

    Args:
        exercise_set: e.g. ``"ch11"``.
        source_dir: the source notebooks (default: :func:`~attnkit.grading.sets.default_source_dir`).
        seed_shift: see the module docstring.
        transform: called as ``transform(name, value)`` for each name a solution cell
            assigns, after the cell ran; its result replaces the value (e.g.
            :func:`round_answer`, to hand in rounded answers).
        guard: run the functions named by ``forbid`` declarations under their guard
            (``False`` only to save time where the guard was already tried: it changes
            no value, and its profile hook slows every call).

    Returns:
        A :class:`ReferenceRun`; a cell other than a check that fails raises.

    Example:
        >>> run = run_reference("ch01", seed_shift=3)   # doctest: +SKIP
        >>> run.failures                                # doctest: +SKIP
        {}
    """
    path = source_notebook(exercise_set, source_dir)
    nb = nbformat.read(path, as_version=4)
    plan = build_plan(exercise_set, nb)
    run = ReferenceRun(exercise_set, seed_shift, plan)
    ns: dict[str, Any] = {"__name__": "__attnkit_reference__"}
    with _shifted_seeds(seed_shift), warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for cell in nb.cells:
            tags = cell.metadata.get("tags", [])
            if cell.cell_type != "code" or SETUP_TAG in tags or WORKED_TAG in tags:
                continue
            meta = _meta(cell)
            gid = meta.get("grade_id", "")
            code = compile(cell.source, f"<{exercise_set}:{gid or 'cell'}>", "exec")
            if meta.get("grade"):
                try:
                    exec(code, ns)  # noqa: S102 - the set's own source
                except (Exception, ForbiddenCall) as exc:  # a failed check: record why
                    run.failures[gid] = f"{type(exc).__name__}: {exc}"
                continue
            exec(code, ns)  # noqa: S102 - the set's own source
            if meta.get("solution"):
                for name in assigned_names(cell.source):
                    if name.startswith("_") or name not in ns:
                        continue
                    if transform is not None:
                        ns[name] = transform(name, ns[name])
                    value = ns[name]
                    if guard and isinstance(value, types.FunctionType) and name in plan.forbidden:
                        ns[name] = guarded(value, name, plan.forbidden[name])
                    run.answers[name] = ns[name]
    return run
