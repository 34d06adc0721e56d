"""What an engine declares about itself, and the one place that refuses what it cannot do.

Every engine module defines::

    CAPS: Capabilities                 # what it supports (this file)
    available() -> (bool, str)         # usable here? and why not
    run(q, k, v, mask, spec) -> (out, weights or None)

:meth:`Capabilities.refuse` is called by :func:`attnkit.attention` before an engine
runs: an argument the engine does not support is a clear ``TypeError`` or
``ValueError`` from here, never an error from deep inside an engine. The shared
tests (``tests/test_engines.py``), the benchmark (``python -m attnkit.bench``) and
the book's tables read these declarations instead of keeping their own lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..core import registry
from ..core._validate import FLOAT_DTYPES, AttentionSpec

#: The variant features of :func:`attnkit.attention` that an engine may declare.
FEATURES = ("window", "sinks", "softcap", "enable_gqa", "score_mod", "sink_logits")


@dataclass(frozen=True)
class Capabilities:
    """An engine's declaration of what it supports.

    Attributes:
        native: the array kind its ``run`` takes (``"numpy"``, ``"torch"``, or ``"any"``
            for both); inputs of the other kind are converted (and results converted
            back), so every engine accepts NumPy arrays and torch tensors.
        dtypes: the floating dtypes it computes in.
        masks: the mask kinds it takes, ``"bool"`` and/or ``"float"``.
        mask_rows: ``"any"``, or ``"key"`` for masks that must be the same for every
            query (shape ``(..., 1, S)``: key padding, per-key biases).
        weights: whether it can return the ``(..., L, S)`` weights.
        gradients: whether torch autograd flows through it to ``q``, ``k`` and ``v``
            (their tensors come back with a ``grad_fn``), and to ``sink_logits`` when it
            declares that feature; an engine without it refuses tensors that need
            gradients, so that no gradient is ever lost silently.
        mask_gradients: whether a floating mask that requires grad gets its gradient.
        devices: where it computes: ``"cpu"`` and/or ``"cuda"``.
        features: the variants it supports, a subset of :data:`FEATURES`.
        tiled: whether it works tile by tile and skips the tiles that ``causal`` or
            ``window`` hide (its windowed cost is linear in the sequence length).
        test_examples: how many random problems the shared test suite draws for it
            (``None``: hypothesis's default; small for slow engines such as an
            interpreter).
        notes: one line for the book's table of engines.
    """

    native: Literal["numpy", "torch", "any"]
    dtypes: tuple[str, ...] = FLOAT_DTYPES
    masks: tuple[str, ...] = ("bool", "float")
    mask_rows: Literal["any", "key"] = "any"
    weights: bool = False
    gradients: bool = False
    mask_gradients: bool = False
    devices: tuple[str, ...] = ("cpu",)
    features: frozenset[str] = field(default_factory=frozenset)
    tiled: bool = False
    test_examples: int | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.features) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; known: {list(FEATURES)}")

    def supports(self, feature: str) -> bool:
        """Whether the engine declares ``feature`` (one of :data:`FEATURES`)."""
        return feature in self.features

    def refuse(self, name: str, spec: AttentionSpec, mask: Any = None) -> None:
        """Raise a clear error when the call ``spec`` needs something this engine lacks.

        Args:
            name: the engine's registry name, for the message.
            spec: the validated call.
            mask: the caller's mask (its shape decides ``mask_rows``), or ``None``.

        Raises:
            ValueError: ``return_weights``, a mask kind or form, a variant feature, or
                gradients (tensors that require grad) the engine does not declare.
            TypeError: a dtype the engine does not compute in.
        """
        others = "an engine that declares it (see attnkit.engines.capabilities())"
        need = [n for n in spec.needs_grad if n != "mask"]
        if need and not self.gradients:
            raise ValueError(
                f"backend {name!r} computes no gradients, but {', '.join(need)} "
                f"require{'s' if len(need) == 1 else ''} grad: the result would have none "
                f"(the gradient would be lost); use a backend that carries gradients "
                f"({', '.join(map(repr, registry.declaring('gradients')))}), or call it on "
                "detached tensors or under torch.no_grad()"
            )
        if "mask" in spec.needs_grad and not self.mask_gradients:
            raise ValueError(
                f"mask requires grad, but backend {name!r} computes no gradient for a floating "
                f"mask; pass mask.detach(), or use a backend that differentiates the mask "
                f"({', '.join(map(repr, registry.declaring('mask_gradients')))})"
            )
        if spec.return_weights and not self.weights:
            raise ValueError(
                f"backend {name!r} never forms the (..., L, S) weight matrix, so it cannot "
                "return it; use backend='numpy' or 'torch' for return_weights=True"
            )
        if spec.dtype not in self.dtypes:
            raise TypeError(
                f"backend {name!r} takes dtypes {', '.join(self.dtypes)}; got {spec.dtype} "
                f"(use {others})"
            )
        if spec.mask_kind is not None and spec.mask_kind not in self.masks:
            raise ValueError(
                f"backend {name!r} takes {' or '.join(self.masks)} masks; got a {spec.mask_kind} "
                f"mask (use {others})"
            )
        if (mask is not None and self.mask_rows == "key" and mask.ndim >= 2
                and mask.shape[-2] != 1 and spec.L != 1):
            raise ValueError(
                f"backend {name!r} takes key masks only, of shape (..., 1, S): the same keys "
                f"hidden (or biased) for every query; got mask shape {tuple(mask.shape)} for "
                f"L={spec.L}, S={spec.S} (use backend='flash' or 'sdpa', or causal=/window=)"
            )
        missing = sorted(spec.features - self.features)
        if missing:
            arg = {"enable_gqa": "enable_gqa=True"}.get(missing[0], missing[0] + "=")
            raise ValueError(
                f"backend {name!r} does not support {arg} (it supports "
                f"{', '.join(sorted(self.features)) or 'none of the variants'}); "
                f"use {others}"
            )
