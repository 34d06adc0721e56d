"""The engine registry: adding an engine is one module and one line here.

Each engine module provides::

    ARRAY: "numpy" | "torch" | "any"   # the array kind its run() takes
    RETURNS_WEIGHTS: bool              # whether it can return the weights
    available() -> (bool, str)         # usable here? and why not
    run(q, k, v, mask, spec) -> (out, weights or None)

Modules are imported only when an engine is used, so importing attnkit needs
neither torch nor Triton.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ENGINES: dict[str, str] = {
    "numpy": "attnkit.engines.numpy_ref",
    "torch": "attnkit.engines.torch_eager",
    "sdpa": "attnkit.engines.sdpa",
    "flash": "attnkit.engines.flash",
    "triton": "attnkit.engines.triton_flash",
}


def load(name: str) -> ModuleType:
    """Import the module of engine ``name`` (a key of :data:`ENGINES`)."""
    if not isinstance(name, str) or name not in ENGINES:
        raise ValueError(f"backend must be one of {sorted(ENGINES)}; got {name!r}")
    return importlib.import_module(ENGINES[name])


def backends() -> list[str]:
    """Names of the engines usable on this machine, in registry order."""
    usable = []
    for name in ENGINES:
        try:
            ok, _ = load(name).available()
        except ImportError:
            ok = False
        if ok:
            usable.append(name)
    return usable
