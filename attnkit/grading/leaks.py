"""Find solutions or hidden tests in published files (used by the tests of the website).

A *secret* is a line of a source notebook inside a solution region, a hidden-test
region or a value-check region that does not also appear in a released student
notebook (a line such as ``return out`` can be in both; a self-study release publishes
its value checks, so they are secret only against a course release). Published text is
compared with all whitespace removed, so code highlighted into HTML spans is still found.

For a course release, :func:`public_check_calls` and :func:`value_leaks` find public
checks that could compute an answer or that spell out a reference value.

>>> import nbformat
>>> from attnkit.grading.leaks import secrets, find_leaks
>>> src = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
...     "x = None\\n### BEGIN SOLUTION\\nx = 'the answer is B'\\n### END SOLUTION")])
>>> find_leaks("print(1); x  =  'the answer is B'", secrets(src))
["x = 'the answer is B'"]
"""

from __future__ import annotations

import ast
import html
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .sets import MARKERS

__all__ = [
    "INPUT_BUILDERS", "INPUT_METHODS", "docstrings", "find_leaks", "imported_objects",
    "public_check_calls", "published_text", "secrets", "text_leaks", "value_leaks",
]

_REGIONS = (("BEGIN SOLUTION", "END SOLUTION"), ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS"),
            ("BEGIN VALUE CHECKS", "END VALUE CHECKS"))


def _squash(text: str) -> str:
    return "".join(text.split())


def _lines_in_regions(source: str, begin: str, end: str) -> list[str]:
    out, inside = [], False
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            out.append(line.strip())
    return out


def secrets(
    source_nb: Any,
    public_nbs: Iterable[Any] = (),
    *,
    hidden_only: bool = False,
    min_length: int = 12,
) -> set[str]:
    """The lines of ``source_nb`` that a published file must not contain.

    Args:
        source_nb: an nbgrader source notebook (a ``NotebookNode`` or dict).
        public_nbs: notebooks that are published anyway (the student versions of
            every set); a line that also occurs in one of them is not secret.
        hidden_only: only hidden-test and value-check lines, not solution lines.
        min_length: shorter lines (without whitespace) are ignored as too generic.
    """
    public = "\n".join(_squash(_source(c)) for nb in public_nbs for c in nb["cells"])
    found = set()
    regions = _REGIONS[1:] if hidden_only else _REGIONS
    for cell in source_nb["cells"]:
        for begin, end in regions:
            for line in _lines_in_regions(_source(cell), begin, end):
                key = _squash(line)
                if len(key) >= min_length and key not in public and not line.startswith("#"):
                    found.add(line)
    return found


def _source(cell: Any) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def published_text(path: str | Path) -> str:
    """The text a reader can get from a published file.

    HTML loses its tags and entities; a notebook gives its cells' sources and text
    outputs; anything else is read as UTF-8 (undecodable bytes dropped).
    """
    p = Path(path)
    raw = p.read_bytes().decode("utf-8", errors="ignore")
    if p.suffix in (".html", ".htm"):
        return html.unescape(re.sub(r"<[^>]+>", "", raw))
    if p.suffix == ".ipynb":
        try:
            nb = json.loads(raw)
        except ValueError:
            return raw
        parts = []
        for cell in nb.get("cells", []):
            parts.append(_source(cell))
            for out in cell.get("outputs", []):
                text = out.get("text") or out.get("data", {}).get("text/plain", "")
                parts.append("".join(text) if isinstance(text, list) else str(text))
        return "\n".join(parts) + "\n" + raw
    return raw


def find_leaks(text: str, secret_lines: Iterable[str]) -> list[str]:
    """The nbgrader markers and the secret lines that occur in ``text``, sorted."""
    hay = _squash(text)
    hits = [m for m in MARKERS if _squash(m) in hay]
    hits += [s for s in secret_lines if _squash(s) in hay]
    return sorted(set(hits))


# -- a course release: public checks that test form only -------------------------------------

#: Calls a public check of a course release may make besides the form checks, ``quiet``,
#: the student's own functions and the grader cells' helpers: building inputs.
INPUT_BUILDERS = frozenset({
    # builtins
    "abs", "bool", "dict", "enumerate", "float", "int", "isinstance", "len", "list", "range",
    "set", "sorted", "str", "tuple", "type", "zip",
    # NumPy constructors and random inputs
    "np.arange", "np.array", "np.asarray", "np.concatenate", "np.eye", "np.full", "np.linspace",
    "np.ones", "np.random.default_rng", "np.stack", "np.tril", "np.triu", "np.zeros",
    "np.swapaxes", "np.float16", "np.float32", "np.float64",
})

#: Methods a public check may call on its inputs (random draws, copies, reshapes).
INPUT_METHODS = frozenset({
    "append", "astype", "copy", "integers", "normal", "random", "reshape", "standard_normal",
    "uniform",
})


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def public_check_calls(
    check_source: str,
    allowed_names: set[str],
    form_checks: Iterable[str],
) -> list[str]:
    """The calls in a course release's public check that are not allowed there.

    Allowed: the form checks, ``quiet``, ``allowed_names`` (the student's functions the
    check reads, and helpers the grader cells define), :data:`INPUT_BUILDERS` and
    :data:`INPUT_METHODS`. Anything else (``check``, ``check_expr``, a call into
    ``attnkit``, arithmetic helpers such as ``np.exp``) could compute the answer.

    Example:
        >>> public_check_calls("check('x', x, attnkit.softmax(z))", {"x"}, ["check_shape"])
        ['attnkit.softmax', 'check']
    """
    ok = set(form_checks) | {"quiet"} | set(allowed_names) | INPUT_BUILDERS
    bad = set()
    for node in ast.walk(ast.parse(check_source)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name is not None and name in ok:
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr in INPUT_METHODS:
            continue
        bad.add(name or ast.unparse(node.func))
    return sorted(bad)


def _value_forms(value: Any) -> set[str]:
    """How a reference value would be written in a notebook, if it is distinctive enough."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, str):
        return set()
    if isinstance(value, (int, np.integer)):
        v = int(value)
        return {str(v), f"{v:,}", f"{v:_}"} if abs(v) >= 100 else set()
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v) or v == round(v, 1) or abs(v) < 1e-12:
            return set()              # round numbers (0.5, 64.0) occur everywhere
        forms = {f"{v:.4f}", f"{v:.3f}", f"{v:.4g}", f"{v:.5g}", repr(v)}
        return {f for f in forms if sum(ch.isdigit() for ch in f.lstrip("-0.")) >= 3}
    return set()


def value_leaks(released_nb: Any, answers: dict[str, Any]) -> list[str]:
    """Reference values of ``answers`` that a released notebook's code cells spell out.

    Only distinctive values are looked for (ints of three digits or more, floats that
    are not round); markdown cells are not searched (a task states its data).

    Example:
        >>> import nbformat
        >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        ...     "check('total', total, 31416)")])
        >>> value_leaks(nb, {"total": 31416, "choice": "B"})
        ['total = 31416']
    """
    code = "\n".join(_source(c) for c in released_nb["cells"] if c.get("cell_type") == "code")
    tokens = set(re.findall(r"-?[\d_,]*\.?\d+(?:e-?\d+)?", code))
    hits = []
    for name, value in answers.items():
        for form in sorted(_value_forms(value)):
            if form in tokens:
                hits.append(f"{name} = {form}")
    return hits


# -- docstrings and pages every student reads -------------------------------------------------


def _text_forms(value: Any) -> set[str]:
    """How a reference value would be written in prose or an example (finer than in code)."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, str):
        return set()
    if isinstance(value, (int, np.integer)):
        v = int(value)
        return {str(v), f"{v:,}"} if abs(v) >= 10 else set()
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v) or v == round(v, 1) or abs(v) < 1e-12:
            return set()
        if v == round(v):
            return _text_forms(int(v))
        forms = {f"{v:.4f}", f"{v:.3f}", f"{v:.4g}", f"{v:.5g}", repr(v)}
        return {f for f in forms if sum(ch.isdigit() for ch in f.lstrip("-0.")) >= 2}
    return set()


def text_leaks(text: str, answers: dict[str, Any]) -> list[str]:
    """Reference answers that a text (a docstring, a page every student reads) spells out.

    Finer than :func:`value_leaks`: a docstring example that checks a number which is an
    exercise's answer, or a page's sample failure message that prints one, gives it away, so
    integers from 10 and floats with two significant digits count, and so does an
    answer's variable name when it is distinctive (it has an underscore or a digit) and the
    answer is a value, not a function the student writes.

    Example:
        >>> text_leaks('>>> check("share_7", x, 0.4783)', {"share_7": 0.9 ** 7, "count": 12})
        ['share_7 = 0.4783', 'the name share_7']
    """
    tokens = set(re.findall(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:e-?\d+)?(?![\w])", text))
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    hits = []
    for name, value in answers.items():
        for form in sorted(_text_forms(value)):
            if form in tokens:
                hits.append(f"{name} = {form}")
        if callable(value):
            continue
        if name in words and ("_" in name.strip("_") or any(ch.isdigit() for ch in name)):
            hits.append(f"the name {name}")
    return sorted(set(hits))


def docstrings(objects: Iterable[Any]) -> dict[str, str]:
    """The docstrings a student can read with ``help()``, keyed by a dotted name.

    Each object's, and for a module or class its public members' (methods included).
    """
    import inspect

    out: dict[str, str] = {}
    seen: set[int] = set()

    def visit(obj: Any, label: str, depth: int) -> None:
        if id(obj) in seen or depth > 2:
            return
        seen.add(id(obj))
        doc = inspect.getdoc(obj) if not isinstance(obj, (int, float, str, bytes)) else None
        if doc:
            out[label] = doc
        if inspect.ismodule(obj) or inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr != "__init__":
                    continue
                if inspect.ismodule(member):
                    continue
                if inspect.ismodule(obj) and getattr(member, "__module__", obj.__name__) != obj.__name__:
                    continue                     # documented where it is defined
                if callable(member) or isinstance(member, (property, staticmethod, classmethod)):
                    visit(member, f"{label}.{attr}", depth + 1)

    for obj in objects:
        visit(obj, getattr(obj, "__name__", type(obj).__name__), 0)
    return out


def imported_objects(source: str, package: str = "attnkit") -> list[Any]:
    """The objects of ``package`` that the ``import`` statements of ``source`` bind."""
    import importlib

    objs = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                try:
                    objs.append(importlib.import_module(alias.name))
                except ImportError:
                    continue
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            try:
                mod = importlib.import_module(node.module)
            except ImportError:
                continue
            for alias in node.names:
                obj = getattr(mod, alias.name, None)
                if obj is None:
                    try:
                        obj = importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        continue
                objs.append(obj)
    return [o for o in objs if (getattr(o, "__name__", "") if isinstance(o, type(ast))
                                else getattr(o, "__module__", "") or "").split(".")[0] == package]
