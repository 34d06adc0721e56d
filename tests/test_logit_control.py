"""QK-norm and soft-capping in the chapter 10 model, and the training that tracks the logits."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit import attention
from attnkit.models.layers import MultiHeadAttention
from attnkit.models.logit_control import (
    VARIANTS,
    attention_logit_stats,
    train_logit_controls,
)
from attnkit.models.transformer import TinyTransformer


def _rms_norm(x: torch.Tensor, gain: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return gain * x / torch.sqrt(x.square().mean(-1, keepdim=True) + eps)


def test_qk_norm_is_a_per_head_rms_norm_before_attention() -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, num_heads=4, num_kv_heads=2, qk_norm=True, softcap=3.0).double()
    with torch.no_grad():
        mha.q_norm.weight.copy_(torch.linspace(0.5, 2.0, 4))
        mha.k_norm.weight.copy_(torch.linspace(-1.0, 1.5, 4))
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    q = mha.q_proj(x).view(2, 5, 4, 4).transpose(1, 2)
    k = mha.k_proj(x).view(2, 5, 2, 4).transpose(1, 2)
    v = mha.v_proj(x).view(2, 5, 2, 4).transpose(1, 2)
    q, k = _rms_norm(q, mha.q_norm.weight), _rms_norm(k, mha.k_norm.weight)
    o = attention(q, k, v, causal=True, enable_gqa=True, softcap=3.0, backend="torch")
    want = mha.out_proj(o.transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(mha(x, causal=True), want, atol=1e-12, rtol=1e-12)


def test_defaults_are_the_chapter_10_model() -> None:
    """Off by default: same parameters, same outputs as before the options existed."""
    torch.manual_seed(0)
    plain = TinyTransformer(vocab_size=10, max_len=8, d_model=16, num_heads=2)
    torch.manual_seed(0)
    normed = TinyTransformer(vocab_size=10, max_len=8, d_model=16, num_heads=2, qk_norm=True)
    extra = set(normed.state_dict()) - set(plain.state_dict())
    assert extra == {f"blocks.{i}.attn.{n}_norm.weight" for i in (0, 1) for n in "qk"}
    assert plain.blocks[0].attn.q_norm is None and plain.blocks[0].attn.softcap is None
    for name, t in plain.state_dict().items():  # the norms took no random numbers
        torch.testing.assert_close(normed.state_dict()[name], t)


def test_the_bounds_hold_whatever_the_projections() -> None:
    """|s| <= sqrt(Dh) max|g_q| max|g_k| with QK-norm; |s| <= c with soft-capping."""
    tokens = torch.randint(0, 12, (8, 10), generator=torch.Generator().manual_seed(1))
    for qk_norm, cap in [(True, None), (False, 4.0), (True, 4.0)]:
        torch.manual_seed(2)
        model = TinyTransformer(12, 10, d_model=16, num_heads=2, qk_norm=qk_norm, softcap=cap)
        with torch.no_grad():
            for block in model.blocks:
                block.attn.q_proj.weight.mul_(50.0)  # huge queries
                if qk_norm:
                    block.attn.q_norm.weight.fill_(1.5)
        top, _ = attention_logit_stats(model, tokens)
        bound = min(math.sqrt(8) * 1.5 if qk_norm else math.inf, cap or math.inf)
        assert top <= bound + 1e-5, (qk_norm, cap, top)
    torch.manual_seed(2)
    model = TinyTransformer(12, 10, d_model=16, num_heads=2)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.q_proj.weight.mul_(50.0)
    assert attention_logit_stats(model, tokens)[0] > 20.0  # without either: unbounded


def test_stats_agree_with_the_weights() -> None:
    """The hook's scores give the model's own weights; the entropy is of those weights."""
    torch.manual_seed(3)
    model = TinyTransformer(12, 9, d_model=16, num_heads=2, num_layers=2, softcap=2.0)
    tokens = torch.randint(0, 12, (4, 9), generator=torch.Generator().manual_seed(4))
    seen: list[torch.Tensor] = []
    model.blocks[1].attn.scores_hook = seen.append
    with torch.no_grad():
        _, weights = model(tokens, return_weights=True)
    model.blocks[1].attn.scores_hook = None
    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    torch.testing.assert_close(torch.softmax(seen[0].masked_fill(~causal, -math.inf), -1),
                               weights[1])
    top, ent = attention_logit_stats(model, tokens)
    want = sum(float(-(w * torch.log(w.clamp_min(1e-30))).sum(-1).mean()) for w in weights) / 2
    assert abs(ent - want) < 1e-6 and 0.0 < top < 2.0
    assert model.blocks[0].attn.scores_hook is None  # removed afterwards


def test_training_is_deterministic_and_tracks_every_checkpoint() -> None:
    kw = dict(steps=6, every=3, d_model=16, probe_size=16, softcap=2.0)
    runs = train_logit_controls(**kw)
    again = train_logit_controls(["both"], **kw)
    assert list(runs) == list(VARIANTS)
    for run in runs.values():
        assert run.steps == [0, 3, 6] and len(run.losses) == 6
        assert len(run.largest_score) == len(run.entropy) == 3
        assert all(0.0 < e < math.log(16) for e in run.entropy)
        assert 0.0 <= run.accuracy <= 1.0
    assert max(runs["softcap"].largest_score) <= 2.0 and max(runs["both"].largest_score) <= 2.0
    assert again["both"] == runs["both"]
    # the same initial weights: the variants without a cap start from the same model
    # up to the norm, so neither and softcap have the same initial ranking of scores
    assert runs["neither"].largest_score[0] > runs["softcap"].largest_score[0] > 0.0


@pytest.mark.parametrize("kw,error,match", [
    (dict(variants=["neither", "layernorm"]), ValueError, "variants must be one of"),
    (dict(variants="neither"), TypeError, "variants must be a sequence of names"),
    (dict(softcap=0.0), ValueError, "softcap"),
    (dict(steps=0), ValueError, "steps"),
    (dict(every=1.5), TypeError, "every"),
    (dict(lr=-1.0), ValueError, "lr"),
])
def test_bad_arguments_are_refused(kw: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        train_logit_controls(**kw)


def test_bad_layer_options_are_refused() -> None:
    with pytest.raises(ValueError, match="softcap"):
        MultiHeadAttention(8, 2, softcap=-1.0)
    with pytest.raises(TypeError, match="qk_norm"):
        MultiHeadAttention(8, 2, qk_norm="yes")
    with pytest.raises(TypeError, match="model must be a TinyTransformer"):
        attention_logit_stats(MultiHeadAttention(8, 2), torch.zeros(1, 2, dtype=torch.long))
