"""attnkit: scaled dot-product attention, one definition and several engines.

>>> import attnkit
>>> out = attnkit.attention(attnkit.example.Q, attnkit.example.K, attnkit.example.V)
>>> out.shape
(5, 4)

Public API:

* :func:`attention` - the one entry point; ``backend=`` picks the engine.
* :func:`backends` - the engines usable on this machine.
* :mod:`example` - the shared example of the book (``tokens``, ``Q``, ``K``, ``V``).
* :func:`causal_mask`, :func:`key_padding_mask`, :func:`softmax` - the shared semantics.
* :func:`check_attention_args` - the validation routine every engine uses.
"""

from . import example
from ._validate import AttentionSpec, check_attention_args
from .core import attention
from .engines import backends
from .masks import causal_mask, causal_offset, key_padding_mask, softmax

__version__ = "0.1.0"

__all__ = [
    "AttentionSpec",
    "attention",
    "backends",
    "causal_mask",
    "causal_offset",
    "check_attention_args",
    "example",
    "key_padding_mask",
    "softmax",
    "__version__",
]
