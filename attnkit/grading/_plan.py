"""The grading plan of an exercise set: which cells run where, and what each check reads.

A source notebook (``exercises/source/chNN.ipynb``) has three kinds of code cells,
told apart by their nbgrader metadata:

* **grader cells** (locked, neither a solution nor graded: the set-up, fixed data):
  their released source runs in the student's kernel *and* in the grader's clean
  namespace, so that the checks see the grader's own ``np``, ``attnkit``, ``check``
  and data, whatever the student did to the kernel's copies;
* **answer cells** (``solution``) and any cell the student added: run only in the
  student's kernel;
* **check cells** (``grade``, with their points): never sent to the kernel. Each one
  runs in the grader's namespace after the names it *reads* have been copied out of
  the kernel as data (values) or as handles that call the student's function inside
  the sandbox (functions).

What a check reads is worked out from its source: the names it uses that neither
it, an earlier check nor a grader cell defines (and that are not built-ins). A check
can state it instead, in a comment line of its own::

    # reads: masked_attention, weights

which is what an instructor writes when the inference would be wrong (a check that
reads a student's variable of the same name as one of its own temporaries).

A grader cell may also declare that a student's function must be written without
some library functions, with string literals only::

    forbid("masked_attention", "attnkit.attention", "attnkit.engines")

The plan collects these (:attr:`Plan.forbidden`); the grader runs every call of that
function under the guard of :mod:`attnkit.grading._guard`.
:func:`plan_text` shows the result for review (``python -m attnkit.grading plan ch05``).
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Plan", "PlanCell", "assigned_names", "build_plan", "forbidden_in", "plan_text", "reads_of",
]

_READS = re.compile(r"^[ \t]*#[ \t]*reads:[ \t]*(.*)$", re.M)
_BUILTINS = set(dir(builtins)) | {"__name__", "__file__", "get_ipython", "display", "In", "Out"}


@dataclass
class PlanCell:
    """A grader or check cell of the source notebook."""

    grade_id: str
    kind: str                       # "grader" or "check"
    source: str
    points: float = 0.0
    reads: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """Grader and check cells by grade id, in source order, and the forbidden names.

    ``forbidden`` maps a student's function to the dotted names it may not call.
    """

    exercise_set: str
    cells: dict[str, PlanCell]
    forbidden: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.cells.values() if c.kind == "check")


def _names(tree: ast.AST) -> tuple[set[str], list[str]]:
    stored: set[str] = set()
    loaded: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded.append if isinstance(node.ctx, ast.Load) else stored.add)(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stored.add(node.name)
        elif isinstance(node, ast.alias):
            stored.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            stored.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            stored.add(node.name)
    return stored, loaded


def assigned_names(source: str) -> set[str]:
    """Names that ``source`` defines (assignments, imports, functions, loop targets)."""
    return _names(ast.parse(source))[0]


def reads_of(source: str, known: set[str]) -> list[str]:
    r"""The student's names that a check reads (see the module docstring).

    Args:
        source: the check cell's source (plain Python).
        known: names defined by the grader before this check.

    Raises:
        SyntaxError: the source is not plain Python.

    Example:
        >>> reads_of("_s = np.ones(2)\ncheck('w', weights, _s)", {"np", "check"})
        ['weights']
    """
    declared = _READS.search(source)
    if declared:
        return [n.strip() for n in declared.group(1).split(",") if n.strip().isidentifier()]
    stored, loaded = _names(ast.parse(source))
    out = []
    for n in loaded:
        if n not in stored and n not in known and n not in _BUILTINS and n not in out:
            out.append(n)
    return out


def forbidden_in(source: str) -> dict[str, tuple[str, ...]]:
    """The ``forbid("function", "name", ...)`` declarations of a grader cell.

    Raises:
        SyntaxError: the source is not plain Python.
        ValueError: a ``forbid`` call whose arguments are not all string literals (the
            grader must read it without running it).

    Example:
        >>> forbidden_in('forbid("f", "attnkit.attention", "attnkit.softmax")')
        {'f': ('attnkit.attention', 'attnkit.softmax')}
    """
    out: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "forbid"):
            continue
        args = node.args
        if node.keywords or len(args) < 2 or not all(
                isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args):
            raise ValueError("forbid(...) takes string literals only: the function's name, "
                             "then the dotted names it may not call")
        function, *names = (a.value for a in args)  # type: ignore[attr-defined]
        out[function] = tuple(dict.fromkeys(out.get(function, ()) + tuple(names)))
    return out


def _meta(cell: Any) -> dict:
    m = cell.get("metadata", {}).get("nbgrader", {})
    return m if isinstance(m, dict) else {}


def _src(cell: Any) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else str(s)


def build_plan(exercise_set: str, source_nb: Any) -> Plan:
    """The :class:`Plan` of a source notebook.

    Raises:
        ValueError: a grader or check cell is not plain Python (the message names it).
    """
    cells: dict[str, PlanCell] = {}
    forbidden: dict[str, tuple[str, ...]] = {}
    known: set[str] = set()
    for cell in source_nb["cells"]:
        m = _meta(cell)
        gid = m.get("grade_id")
        if cell.get("cell_type") != "code" or not gid:
            continue
        src = _src(cell)
        try:
            if m.get("grade"):
                reads = reads_of(src, known)
                cells[gid] = PlanCell(gid, "check", src, float(m.get("points", 0)), reads)
                known |= assigned_names(src)
            elif m.get("locked") and not m.get("solution"):
                reads = reads_of(src, known)
                cells[gid] = PlanCell(gid, "grader", src, 0.0, reads)
                known |= assigned_names(src)
                for function, names in forbidden_in(src).items():
                    forbidden[function] = tuple(dict.fromkeys(forbidden.get(function, ()) + names))
        except SyntaxError as exc:
            raise ValueError(
                f"cell {gid} of {exercise_set} must be plain Python (the grader runs it "
                f"outside IPython): {exc.msg} at line {exc.lineno}"
            ) from None
        except ValueError as exc:
            raise ValueError(f"cell {gid} of {exercise_set}: {exc}") from None
    return Plan(exercise_set, cells, forbidden)


def plan_text(plan: Plan) -> str:
    """A review listing: each grader and check cell, its points and the names it reads."""
    lines = [f"{plan.exercise_set}: {plan.max_points:g} points"]
    for c in plan.cells.values():
        pts = f"{c.points:g} pt" if c.kind == "check" else "grader cell"
        lines.append(f"  {c.grade_id:<40} {pts:<12} reads: {', '.join(c.reads) or '-'}")
    for function, names in plan.forbidden.items():
        lines.append(f"  write it yourself: {function} may not call {', '.join(names)}")
    return "\n".join(lines)
