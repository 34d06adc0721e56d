"""Chapter 12's ring explorer: the replayed trace ends at single-device attention."""

from __future__ import annotations

import numpy as np
import pytest

from attnkit import attention, example
from attnkit.teaching.ring_views import ring_stepper, ring_trace, ring_view


@pytest.mark.parametrize("P,layout,causal", [(1, "contiguous", None), (2, "contiguous", None),
                                             (3, "zigzag", "top-left"), (4, "zigzag", "bottom-right")])
def test_trace_ends_at_single_device_attention(P, layout, causal):
    trace = ring_trace(example.Q, example.K, example.V, P, layout=layout, causal=causal)
    assert len(trace) == P and all(len(step) == P for step in trace)
    ref = attention(example.Q, example.K, example.V, causal=causal or False)
    for st in trace[-1]:
        np.testing.assert_allclose(st["run_out"], ref[st["q_pos"]], atol=1e-15)
    for t, step in enumerate(trace):  # at step t rank r holds the block of rank r - t
        assert [st["block"] for st in step] == [(r - t) % P for r in range(P)]


def test_views_and_stepper():
    trace = ring_trace(example.Q, example.K, example.V, 3)
    final = attention(example.Q, example.K, example.V)
    views = [ring_view(trace, t, example.tokens, final) for t in range(3)]
    assert len(set(views)) == 3
    assert "Step 1 of 3" in views[0] and "Last step" in views[2]
    box = ring_stepper(example.Q, example.K, example.V, example.tokens,
                       [(2, "contiguous", None), (3, "zigzag", "top-left")])
    assert "attnkit-ring" in box._dom_classes
