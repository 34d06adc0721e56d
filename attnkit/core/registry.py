"""The engine registry: adding an engine is one module and one line here.

Each engine module provides (see :mod:`attnkit.engines.base`)::

    CAPS: Capabilities                 # what it supports: dtypes, masks, weights,
                                       # gradients, devices, variants
    available() -> (bool, str)         # usable here? and why not
    run(q, k, v, mask, spec) -> (out, weights or None)

The registry names engines by module path and imports a module on the engine's
first use: this is the one place where the core reaches the engines above it, by
name and at call time. An engine module is itself the lazy boundary: one that
needs torch (or Triton) imports it at its top, so importing attnkit needs neither.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from ._validate import choice

if TYPE_CHECKING:  # the declaration type only; no import at run time
    from ..engines.base import Capabilities

ENGINES: dict[str, str] = {
    "numpy": "attnkit.engines.numpy_ref",
    "torch": "attnkit.engines.torch_eager",
    "sdpa": "attnkit.engines.sdpa",
    "flash": "attnkit.engines.flash",
    "triton": "attnkit.engines.triton_flash",
}

__all__ = ["ENGINES", "backends", "capabilities", "declaring", "load"]


def load(name: str) -> ModuleType:
    """Import the module of engine ``name`` (a key of :data:`ENGINES`).

    Raises:
        ValueError: an unknown name. TypeError: a name that is not a string.

    Example:
        >>> load("numpy").CAPS.weights
        True
    """
    return importlib.import_module(ENGINES[choice("backend", name, sorted(ENGINES))])


def capabilities(name: str) -> Capabilities:
    """The declared :class:`~attnkit.engines.Capabilities` of engine ``name`` (imports its module).

    Example:
        >>> sorted(capabilities("numpy").features)
        ['enable_gqa', 'score_mod', 'sink_logits', 'sinks', 'softcap', 'window']
    """
    return load(name).CAPS


def backends() -> list[str]:
    """Names of the engines usable on this machine, in registry order.

    Example:
        >>> backends()[0]
        'numpy'
    """
    usable = []
    for name in ENGINES:
        try:
            ok, _ = load(name).available()
        except ImportError:
            ok = False
        if ok:
            usable.append(name)
    return usable


def declaring(field: str) -> list[str]:
    """The registered engines (importable here) whose capabilities set ``field``.

    Example:
        >>> "torch" in declaring("gradients"), "numpy" in declaring("gradients")
        (True, False)
    """
    names = []
    for name in ENGINES:
        try:
            if getattr(capabilities(name), field):
                names.append(name)
        except ImportError:
            continue
    return names
