"""Linear attention: the recurrence equals the parallel form; the recall task and trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnkit.models.linear_attention import (
    elu_feature_map,
    linear_attention,
    linear_attention_recurrent,
)
from attnkit.models.recall import RecallModel, mqar_batch, recall_accuracy, train_recall


@pytest.mark.parametrize("shape", [(7, 3, 5), (2, 3, 11, 4, 2)])
def test_recurrence_equals_parallel_form(shape):
    *batch, L, dk, dv = shape
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, *batch, L, dk))
    v = rng.standard_normal((*batch, L, dv))
    rec, (S, z) = linear_attention_recurrent(q, k, v)
    assert np.abs(rec - linear_attention(q, k, v)).max() <= 1e-12
    assert S.shape == (*batch, dk, dv) and z.shape == (*batch, dk)
    # the state after all tokens is the sum of the rank-one updates
    fk = elu_feature_map(k)
    assert np.abs(S - np.einsum("...td,...te->...de", fk, v)).max() <= 1e-12


def test_state_carries_over_and_torch_matches():
    rng = np.random.default_rng(1)
    q, k, v = rng.standard_normal((3, 9, 4))
    first, state = linear_attention_recurrent(q[:4], k[:4], v[:4])
    rest, _ = linear_attention_recurrent(q[4:], k[4:], v[4:], state)
    assert np.abs(np.concatenate([first, rest]) - linear_attention(q, k, v)).max() <= 1e-12
    t = linear_attention(*(torch.from_numpy(x).requires_grad_() for x in (q, k, v)))
    assert np.abs(t.detach().numpy() - linear_attention(q, k, v)).max() <= 1e-12
    tr, _ = linear_attention_recurrent(*(torch.from_numpy(x) for x in (q, k, v)))
    assert np.abs(tr.numpy() - linear_attention(q, k, v)).max() <= 1e-12


def test_refusals():
    with pytest.raises(ValueError, match="L = S"):
        linear_attention_recurrent(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(TypeError):
        linear_attention(np.zeros((2, 3)), torch.zeros(2, 3), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="share d_k"):
        linear_attention(np.zeros((2, 3)), np.zeros((2, 4)), np.zeros((2, 3)))


def test_mqar_batch_targets_are_the_listed_values():
    toks, tgt, is_q = mqar_batch(4, 5, vocab=32, generator=torch.Generator().manual_seed(3))
    for b in range(4):
        pairs = dict(zip(toks[b, 0:10:2].tolist(), toks[b, 1:10:2].tolist()))
        assert len(pairs) == 5
        for pos in range(10, 15):
            assert tgt[b, pos] == pairs[int(toks[b, pos])]
    assert int(is_q.sum()) == 5 and bool((tgt[:, ~is_q] == -100).all())
    with pytest.raises(ValueError, match="pairs must be at most vocab // 2"):
        mqar_batch(1, 20, vocab=32)


def test_both_mixers_have_the_same_parameters_and_training_is_seeded():
    a, b = RecallModel(32, 16, mixer="softmax"), RecallModel(32, 16, mixer="linear")
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    r1 = train_recall("linear", [2, 3], steps=3, batch=4, vocab=16, d_model=8)
    r2 = train_recall("linear", [2, 3], steps=3, batch=4, vocab=16, d_model=8)
    assert r1.losses == r2.losses
    assert 0.0 <= recall_accuracy(r1.model, 2, batch=8) <= 1.0
    with pytest.raises(ValueError, match="mixer must be one of"):
        RecallModel(32, 16, mixer="mamba")
