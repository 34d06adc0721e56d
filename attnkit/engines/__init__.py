"""The engine registry: adding an engine is one module and one line here.

Each engine module provides (see :mod:`attnkit.engines.base`)::

    CAPS: Capabilities                 # what it supports: arrays, dtypes, masks,
                                       # weights, gradients, devices, variants
    available() -> (bool, str)         # usable here? and why not
    run(q, k, v, mask, spec) -> (out, weights or None)

A module is imported on the engine's first use, and is itself the lazy boundary:
a module that needs torch (or Triton) imports it at its top, so importing
attnkit needs neither.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..core._validate import choice
from ._online import release_scratch
from .base import FEATURES, Capabilities

ENGINES: dict[str, str] = {
    "numpy": "attnkit.engines.numpy_ref",
    "torch": "attnkit.engines.torch_eager",
    "sdpa": "attnkit.engines.sdpa",
    "flash": "attnkit.engines.flash",
    "triton": "attnkit.engines.triton_flash",
}

__all__ = ["ENGINES", "FEATURES", "Capabilities", "backends", "capabilities", "load",
           "release_scratch"]


def load(name: str) -> ModuleType:
    """Import the module of engine ``name`` (a key of :data:`ENGINES`).

    Raises:
        ValueError: an unknown name.

    Example:
        >>> load("numpy").CAPS.weights
        True
    """
    choice("backend", name, sorted(ENGINES))
    return importlib.import_module(ENGINES[name])


def capabilities(name: str) -> Capabilities:
    """The declared :class:`Capabilities` of engine ``name`` (imports its module).

    Example:
        >>> sorted(capabilities("numpy").features)
        ['enable_gqa', 'score_mod', 'sinks', 'softcap', 'window']
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
