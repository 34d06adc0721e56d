"""Sphinx extension: the API reference (``book/api``), generated from attnkit's docstrings.

The pages name modules, not functions (``.. automodule:: attnkit.serving.decoding``
with ``:members:``), so the reference follows the code: a function added to a
module's ``__all__`` appears, a removed one disappears, a moved one moves.

* autodoc reads the docstrings, napoleon their Google style (Args, Returns, Raises,
  Example); the examples are doctests that ``make test`` runs.
* Every name of a module's ``__all__`` gets an entry, its constants too.
* A name importable from ``attnkit`` itself is documented once, as ``attnkit.NAME``
  (what readers type, and what the site's search finds): a page of a submodule skips
  the members that are the same object as a name in ``attnkit.__all__``.
* The build is nitpicky (``-n``): a type from NumPy, PyTorch or the standard library
  in a signature is not documented here, so those references are not checked; every
  reference to an attnkit name is. A docstring may name an object by the path where
  it is defined (``attnkit.models.positions.apply_rope``), by a name its module
  imports (``TinyTransformer`` in ``attnkit.models.induction``) or a private helper
  (``attnkit.engines._online.default_blocks``): a reference that imports to a
  documented object links to its entry; one that imports to an undocumented attnkit
  object is printed as code without a link; one that imports to nothing is an error.
* A property's or attribute's docstring is prose: napoleon would read "Parameters:
  attention and ..." as a section and "ridge point: FLOP per byte" as a type.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config

#: Types named in signatures that are documented elsewhere (their packages' own docs).
EXTERNAL_TYPES = [
    r"(np|numpy|torch|nn|dist|F|npt|typing|collections\.abc|abc|types|pathlib|os|argparse|io"
    r"|subprocess|nbformat|sympy|ipywidgets|matplotlib|concurrent\.futures|enum|re|json)\..*",
    r"(ArrayLike|NDArray|Tensor|Module|Path|Callable|Sequence|Iterable|Iterator|Mapping"
    r"|ModuleType|Namespace|ArgumentParser|TextIO|Generator|Literal|Any|Self|PathLike|Figure|Axes"
    r"|NotebookNode|Expr|Basic|ProcessGroup|Pattern|Popen|TracebackType|Enum)",
]


def _defaults(app: Sphinx, config: Config) -> None:
    config.autodoc_typehints = "signature"
    config.autodoc_typehints_format = "short"
    config.autodoc_member_order = "groupwise"
    config.autodoc_preserve_defaults = True
    # Constants are shown without their values (a table of GPUs or engines is read on
    # its page, not in a signature line).
    config.autodoc_default_options = {"no-value": True, **(config.autodoc_default_options or {})}
    config.napoleon_google_docstring = True
    config.napoleon_numpy_docstring = False
    config.napoleon_use_rtype = False
    config.nitpick_ignore_regex = list(config.nitpick_ignore_regex or []) + [
        ("py:class", pattern) for pattern in EXTERNAL_TYPES] + [
        ("py:obj", pattern) for pattern in EXTERNAL_TYPES]


def _documented_at_top(name: str, obj: Any) -> bool:
    package = importlib.import_module("attnkit")
    return name in getattr(package, "__all__", ()) and getattr(package, name, None) is obj


def _skip_member(app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """Which members of a module get an entry.

    Skipped, on a submodule's page: a member documented as ``attnkit.NAME``. Kept:
    every name of the module's ``__all__``, a constant without a docstring too (autodoc
    leaves those out), but not a submodule (its own page or directive documents it).
    """
    module = app.env.temp_data.get("autodoc:module")
    if what != "module" or not module:
        return None
    if module != "attnkit" and _documented_at_top(name, obj):
        return True
    public = getattr(sys.modules.get(module), "__all__", ())
    if skip and name in public and not isinstance(obj, types.ModuleType):
        return False
    return None


def _import(path: str) -> Any:
    """The attnkit object or module at dotted ``path``, or None."""
    if not path.startswith("attnkit"):
        return None
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _documented(env: Any) -> dict[int, str]:
    """id(object) -> the name its entry has, for every documented attnkit object."""
    cache = env.temp_data.get("attnkit:documented")
    if cache is None:
        cache = {}
        for name, _entry in env.get_domain("py").objects.items():
            obj = _import(name)
            if obj is not None and not isinstance(obj, (int, float, str, bool)):
                cache.setdefault(id(obj), name)
        env.temp_data["attnkit:documented"] = cache
    return cache


def _home_module(node: Any) -> str:
    """The module that defines the object whose entry holds ``node`` ("" if none)."""
    from sphinx import addnodes

    while node is not None and not isinstance(node, addnodes.desc):
        node = node.parent
    if node is None:
        return ""
    signature = next(iter(node.findall(addnodes.desc_signature)), None)
    if signature is None:
        return ""
    obj = _import(f"{signature.get('module', '')}.{signature.get('fullname', '')}")
    return getattr(obj, "__module__", "") or ""


def _missing_reference(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a reference to an attnkit object by what it imports to (see the module docstring)."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    module = node.get("py:module") or ""
    candidates = [target] + ([f"{module}.{target}"] if module else [])
    home = _home_module(node)  # where the documented object is defined
    if home and home != module:
        candidates.append(f"{home}.{target}")
    if "." not in target:  # a name that a docstring mentions from another attnkit module
        candidates += [f"{m}.{target}" for m in sorted(sys.modules) if m.startswith("attnkit.")
                       and target in vars(sys.modules[m]) and
                       getattr(vars(sys.modules[m])[target], "__module__", "") == m]
    for path in candidates:
        obj = _import(path)
        if obj is None:
            continue
        name = _documented(env).get(id(obj))
        if name is not None and name != target:
            builder = app.builder
            resolved = env.get_domain("py").resolve_xref(
                env, node.get("refdoc", env.docname), builder, node["reftype"], name, node, contnode)
            if resolved is not None:
                return resolved
        return contnode  # an attnkit object without an entry of its own: code, no link
    return None


_ORIGINAL: dict[tuple[str, str], list[str]] = {}


def _keep_first_line(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if what in ("attribute", "property", "data"):
        _ORIGINAL[(what, name)] = list(lines)


def _prose_first_line(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    original = _ORIGINAL.pop((what, name), None)
    if original is not None:
        lines[:] = original


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the extension (see the module docstring)."""
    app.setup_extension("sphinx.ext.autodoc")
    app.setup_extension("sphinx.ext.napoleon")
    app.connect("config-inited", _defaults)
    app.connect("autodoc-skip-member", _skip_member)
    # Around napoleon (priority 500), which reads a property's first line as "type: description".
    app.connect("autodoc-process-docstring", _keep_first_line, priority=400)
    app.connect("autodoc-process-docstring", _prose_first_line, priority=600)
    app.connect("missing-reference", _missing_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}
