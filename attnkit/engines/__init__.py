"""The engines: one module per engine, registered by one line in :mod:`attnkit.core.registry`.

Each engine module provides (see :mod:`attnkit.engines.base`)::

    CAPS: Capabilities                 # what it supports: dtypes, masks, weights,
                                       # gradients, devices, variants
    available() -> (bool, str)         # usable here? and why not
    run(q, k, v, mask, spec) -> (out, weights or None)

A module is imported on the engine's first use, and is itself the lazy boundary:
a module that needs torch (or Triton) imports it at its top, so importing
attnkit needs neither. The registry (:data:`ENGINES`, :func:`load`,
:func:`capabilities`, :func:`backends`) lives in the core, which dispatches to the
engines by name; it is re-exported here.
"""

from __future__ import annotations

from ..core.registry import ENGINES, backends, capabilities, load
from ._online import release_scratch
from .base import FEATURES, Capabilities

__all__ = ["ENGINES", "FEATURES", "Capabilities", "backends", "capabilities", "load",
           "release_scratch"]
