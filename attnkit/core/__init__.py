"""The core: one definition of attention, its validation vocabulary, and its masks.

* :mod:`attnkit.core.attention` - :func:`attention`, the one entry point; it checks the
  arguments once and hands them to an engine (:mod:`attnkit.engines`).
* :mod:`attnkit.core._validate` - the validation vocabulary every layer uses
  (``integer``, ``positive_int``, ``real``, ``choice``, ``flag``, ``array``) and
  :func:`check_attention_args`.
* :mod:`attnkit.core.masks` - causal and key-padding masks, windows (``Band``), softmax.
* :mod:`attnkit.core._arrays` - what kind of array a value is (NumPy or torch), the
  working precision, and the one accessor for the optional torch.
* :mod:`attnkit.core.registry` - the engines by name, imported when first used.

The core imports NumPy only: never the engines (it reaches them by name, through the
registry, when :func:`attention` runs), nor the models, serving, distributed,
teaching, grading or benchmark layers above it (``tests/test_architecture.py``).
"""

from __future__ import annotations

from ._validate import AttentionSpec, check_attention_args
from .attention import attention
from .masks import causal_mask, causal_offset, key_padding_mask, softmax

__all__ = [
    "AttentionSpec",
    "attention",
    "causal_mask",
    "causal_offset",
    "check_attention_args",
    "key_padding_mask",
    "softmax",
]
