"""The architecture, checked: layered imports, lazy imports at boundaries, one vocabulary.

Imports point down the layers, lazy imports sit at documented boundaries, and
argument checks use the one vocabulary of ``attnkit.core._validate``. The layers
(CONTRIBUTING.md draws them)::

    attnkit/__init__.py, __main__.py     the public names and the command line: anything
    teaching/ -> bench/ <- grading/      the top: book views, measurements, course tooling
    distributed/                         ring attention across processes
    serving/                             split-KV decoding, paged cache, sizing
    models/                              layers, positions, transformer, induction task
    engines/  (+ kernels/)               numpy_ref, torch_eager, sdpa, flash_*, triton
    core/, example.py                    attention(), validation, masks, registry

A module may import its own layer and the layers below it. The core reaches the
engines only by name, through ``core/registry.py``, at call time.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "attnkit"

LOWER = {
    "core": set(),
    "engines": {"core"},
    "models": {"core", "engines"},
    "serving": {"core", "engines", "models"},
    "distributed": {"core", "engines", "models", "serving"},
}
BELOW_TOP = {"core", "engines", "models", "serving", "distributed"}
#: What each layer may import besides itself ("facade": the package root, attnkit/__init__.py).
ALLOWED: dict[str, set[str]] = {
    **LOWER,
    "bench": BELOW_TOP | {"facade"},
    "teaching": BELOW_TOP | {"bench", "facade"},
    "grading": BELOW_TOP | {"bench", "facade"},  # its benchmark uses the machine record
}


def layer_of(module: str) -> str:
    """``attnkit.engines.flash`` -> ``"engines"``; ``attnkit.example`` belongs to the core."""
    parts = module.split(".")
    if parts == ["attnkit"] or parts[1] == "__main__":
        return "facade"
    if parts[1] == "example":
        return "core"
    return parts[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skip.update(id(n) for n in ast.walk(child))
    return skip


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """``(line, attnkit module imported, inside a function)`` for every attnkit import of a file."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:  # `from . import x` imports the module x when there is one
                sub = f"{mod}.{a.name}"
                is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").exists() or (
                    ROOT / Path(*sub.split("."))).is_dir()
                names.append(sub if is_module else mod)
        for name in names:
            if name == "attnkit" or name.startswith("attnkit."):
                found.append((node.lineno, name, id(node) in in_function))
    return found


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for path in sources():
        layer = layer_of(module_name(path))
        if layer == "facade":
            continue
        allowed = ALLOWED[layer] | {layer}
        for line, name, _ in imports(path):
            if layer_of(name) not in allowed:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {name} "
                             f"({layer_of(name)})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_the_core_imports_no_layer_above_it() -> None:
    """The core never imports models, serving, teaching, grading, distributed, bench (or engines)."""
    for path in sorted((PACKAGE / "core").rglob("*.py")) + [PACKAGE / "example.py"]:
        for line, name, _ in imports(path):
            assert layer_of(name) == "core", f"{path.relative_to(ROOT)}:{line} imports {name}"


def test_the_layering_test_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an import from the core into serving is found."""
    fake = PACKAGE / "core" / "_layering_probe.py"
    fake.write_text("from ..serving import decoding\n\n\ndef f():\n    from .. import teaching\n")
    try:
        names = [name for _, name, _ in imports(fake)]
    finally:
        fake.unlink()
    assert names == ["attnkit.serving.decoding", "attnkit.teaching"]


# ------------------------------------------------------------------- lazy imports

#: The documented boundaries where an import may run inside a function: (file, function).
LAZY_BOUNDARIES: dict[tuple[str, str], str] = {}
#: Files, owned outside this change, that still import inside functions; the list may only
#: shrink (their torch imports belong at the top, or through core._arrays.torch_module).
KNOWN_INNER_IMPORTS = {
    "attnkit/models/linear_attention.py": "chapter 13's owners",
    "attnkit/models/sparse.py": "chapter 13's owners",
}
#: Layers whose modules import at their top (teaching/ and grading/ have their own owners).
STRICT_LAYERS = {"core", "engines", "models", "serving", "distributed", "bench", "facade"}


def test_imports_sit_at_module_boundaries() -> None:
    """No import statement inside a function, except at a documented boundary.

    Optional modules are reached through one accessor (``core._arrays.torch_module``)
    or through ``importlib`` at the documented plug-in boundaries (the engine
    registry, the flash engine's torch half, the benchmark's commands, the lazy
    public names); a module that always needs torch imports it at its top.
    """
    inner, still_known = [], set()
    for path in sources():
        rel = str(path.relative_to(ROOT))
        if layer_of(module_name(path)) not in STRICT_LAYERS:
            continue
        if rel in KNOWN_INNER_IMPORTS:
            if any(isinstance(n, (ast.Import, ast.ImportFrom)) for f in ast.walk(ast.parse(path.read_text()))
                   if isinstance(f, ast.FunctionDef) for n in ast.walk(f)):
                still_known.add(rel)
            continue
        tree = ast.parse(path.read_text())
        for f in ast.walk(tree):
            if not isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(f):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and (rel, f.name) not in LAZY_BOUNDARIES:
                    inner.append(f"{rel}:{node.lineno} in {f.name}(): {ast.unparse(node)}")
    assert not inner, "imports inside functions:\n" + "\n".join(sorted(set(inner)))
    assert still_known == set(KNOWN_INNER_IMPORTS), (
        f"no import left inside a function of {sorted(set(KNOWN_INNER_IMPORTS) - still_known)}: "
        "remove it from KNOWN_INNER_IMPORTS")


def test_importing_attnkit_and_its_benchmark_needs_neither_torch_nor_triton() -> None:
    code = ("import sys, attnkit, attnkit.bench, attnkit.serving, attnkit.models.positions, "
            "attnkit.serving.paged; print('torch' in sys.modules, 'triton' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------- one vocabulary

SCALAR_TYPES = re.compile(r"\b(bool|np\.bool_|numbers\.\w+|int|float|np\.integer|np\.floating)\b")
VOCABULARY_WORDS = re.compile(
    r"must be (a |an )?((positive|non-negative|finite|real) )*(integer|bool|number|real number)\b"
    r"(?! (tensor|array))|must be one of|must be an? (numpy\.ndarray|torch\.Tensor)\b"
)
#: Files outside this change's owners that still hold a copy; the list may only shrink.
KNOWN_COPIES = {
    "attnkit/teaching/glued.py": "portable(digits=...): owner of teaching/glued.py",
    "attnkit/teaching/numbers.py": "sci(digits=...): owner of teaching/numbers.py",
    "attnkit/models/mla.py": "'must be a torch.Tensor' by hand: chapter 13's owners",
    "attnkit/models/sparse.py": "_kind(): chapter 13's owners",
}


def _raises_argument_error(body: list[ast.stmt]) -> bool:
    for stmt in body:
        if isinstance(stmt, ast.Raise) and stmt.exc is not None:
            exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
            if isinstance(exc, ast.Name) and exc.id in ("TypeError", "ValueError"):
                return True
    return False


def _message(node: ast.Raise) -> str:
    """The constant text of a raised error's first argument (f-strings: their literal parts)."""
    if not isinstance(node.exc, ast.Call) or not node.exc.args:
        return ""
    return "".join(n.value for n in ast.walk(node.exc.args[0])
                   if isinstance(n, ast.Constant) and isinstance(n.value, str))


def _literal_names(tree: ast.AST) -> set[str]:
    """Names bound to a literal tuple, list, set or dict (constants of options)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(
                node.value, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out.update(t.id for t in targets if isinstance(t, ast.Name))
    return out


def private_copies(source: str) -> list[str]:
    """Argument checks written out by hand instead of through ``core._validate``.

    * an ``if`` that tests ``isinstance(x, bool / int / float / numbers.*)`` and raises
      a ``TypeError``/``ValueError``: the vocabulary's ``integer``, ``real``, ``flag``;
    * an ``if x not in (literal options)`` that raises: its ``choice``;
    * a raised message in the vocabulary's words ("must be a positive integer", "must
      be one of", "must be a torch.Tensor", ...).
    """
    tree = ast.parse(source)
    options = _literal_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _raises_argument_error(node.body):
            for call in ast.walk(node.test):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                        and call.func.id == "isinstance" and len(call.args) == 2
                        and SCALAR_TYPES.search(ast.unparse(call.args[1]))):
                    found.append(f"{node.lineno}: scalar type check {ast.unparse(call)}")
            for cmp in ast.walk(node.test):
                if (isinstance(cmp, ast.Compare) and isinstance(cmp.ops[0], ast.NotIn)
                        and isinstance(cmp.left, ast.Name)  # an argument, not x.ndim or x.dtype
                        and (isinstance(cmp.comparators[0], (ast.Tuple, ast.List, ast.Set, ast.Dict))
                             or (isinstance(cmp.comparators[0], ast.Name)
                                 and cmp.comparators[0].id in options))):
                    found.append(f"{node.lineno}: choice by hand {ast.unparse(cmp)}")
        if isinstance(node, ast.Raise) and VOCABULARY_WORDS.search(_message(node)):
            found.append(f"{node.lineno}: the vocabulary's message by hand: {_message(node)[:70]!r}")
    return found


def test_argument_checks_use_the_one_vocabulary() -> None:
    copies, still_known = [], set()
    for path in sources():
        rel = str(path.relative_to(ROOT))
        if rel == "attnkit/core/_validate.py" or rel.startswith("attnkit/grading/"):
            continue  # the vocabulary itself; the grader's student-facing messages
        found = private_copies(path.read_text())
        if rel in KNOWN_COPIES:
            still_known.add(rel) if found else None
            continue
        copies += [f"{rel}:{f}" for f in found]
    assert not copies, "private copies of core/_validate.py's checks:\n" + "\n".join(copies)
    assert still_known == set(KNOWN_COPIES), (
        f"no copy left in {sorted(set(KNOWN_COPIES) - still_known)}: remove it from KNOWN_COPIES")


@pytest.mark.parametrize("copy", [
    # the copies this suite was written against (from serving/sizing.py, serving/paged.py,
    # models/transformer.py, distributed/layout.py, distributed/launch.py, serving/decoding.py)
    "def _count(name, value, *, minimum=1):\n"
    "    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:\n"
    "        raise ValueError(f'{name} must be an integer >= {minimum}; got {value!r}')\n"
    "    return int(value)\n",
    "def _positive_int(name, n):\n"
    "    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:\n"
    "        raise ValueError(f'{name} must be a positive integer; got {n!r}')\n",
    "LAYOUTS = ('contiguous', 'zigzag')\n"
    "def _check_layout(layout):\n"
    "    if layout not in LAYOUTS:\n"
    "        raise ValueError(f'layout must be contiguous or zigzag; got {layout!r}')\n",
    "def launch(nprocs):\n"
    "    if nprocs < 1:\n"
    "        raise ValueError(f'nprocs must be a positive integer; got {nprocs!r}')\n",
    "def f(return_lse):\n"
    "    if not isinstance(return_lse, (bool, np.bool_)):\n"
    "        raise TypeError(f'return_lse must be a bool; got {return_lse!r}')\n",
    "def f(x):\n"
    "    if not isinstance(x, torch.Tensor):\n"
    "        raise TypeError(f'x must be a torch.Tensor; got {type(x).__name__}')\n",
])
def test_the_vocabulary_test_catches_a_private_copy(copy: str) -> None:
    assert private_copies(copy)


def test_the_vocabulary_test_leaves_dispatch_and_shape_checks_alone() -> None:
    ok = ("def f(value, x):\n"
          "    if isinstance(value, bool):\n"
          "        return value\n"
          "    if x.ndim != 3:\n"
          "        raise ValueError(f'x must have shape (B, L, D); got {x.shape}')\n"
          "    if seq not in self._tables:\n"
          "        raise ValueError('unknown sequence')\n")
    assert private_copies(ok) == []
