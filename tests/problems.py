"""What the engine suites share (tests/test_engines.py, tests/test_variants.py)."""

from __future__ import annotations

import numpy as np
import torch


def cast(p: dict, dtype: str, to_torch: bool) -> dict:
    """A problem's q, k, v (a floating mask, sink logits) in ``dtype``, as tensors when ``to_torch``."""
    out = dict(p)
    for name in ("q", "k", "v", "mask", "sink_logits"):
        x = p.get(name)
        if x is None:
            continue
        if x.dtype != np.bool_:
            x = x.astype(dtype)
        out[name] = torch.from_numpy(x) if to_torch else x
    return out
