"""attnkit.models.transformer and .induction: the block, the tiny model, the task, its head scores."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attnkit.models.induction import (
    ablate_heads,
    ablate_path,
    context_guess,
    earlier_occurrence,
    induction_accuracy,
    induction_batch,
    induction_keys,
    induction_loss,
    induction_positions,
    induction_score,
    previous_token_score,
    train_induction,
)
from attnkit.models.transformer import FeedForward, TinyTransformer, TransformerBlock
from attnkit.teaching.token_views import token_weights_html


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _block(**kw) -> TransformerBlock:
    torch.manual_seed(0)
    return TransformerBlock(16, 4, **kw).double()


# ------------------------------------------------------------------ the block
@pytest.mark.parametrize("norm", ["pre", "post"])
def test_block_matches_its_definition(norm: str) -> None:
    blk = _block(norm=norm)
    x = _x(2, 5, 16)
    with torch.no_grad():
        a = blk.attn(blk.ln_attn(x) if norm == "pre" else x, causal=True)
        h = x + a if norm == "pre" else blk.ln_attn(x + a)
        f = blk.ff(blk.ln_ff(h) if norm == "pre" else h)
        want = h + f if norm == "pre" else blk.ln_ff(h + f)
        got = blk(x, causal=True)
    torch.testing.assert_close(got, want)


def test_feed_forward_is_position_wise_and_attention_is_not() -> None:
    blk = _block()
    x = _x(1, 6, 16)
    y = x.clone()
    y[:, 3] += 1.0
    with torch.no_grad():
        d_ff = (blk.ff(y) - blk.ff(x)).abs().amax(-1)[0]
        d_causal = (blk(y, causal=True) - blk(x, causal=True)).abs().amax(-1)[0]
    assert (d_ff > 0).tolist() == [False, False, False, True, False, False]
    assert (d_causal > 0).tolist() == [False, False, False, True, True, True]


def test_block_permutation_equivariant_without_mask() -> None:
    blk = _block()
    x = _x(1, 7, 16)
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    with torch.no_grad():
        torch.testing.assert_close(blk(x[:, perm]), blk(x)[:, perm])


def test_cross_attention_shapes_and_padding() -> None:
    blk = _block(cross_attention=True)
    x, mem = _x(2, 3, 16), _x(2, 7, 16, seed=1)
    keep = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    keep[..., 5:] = False
    with torch.no_grad():
        out, w = blk(x, memory=mem, memory_mask=keep, causal=True, return_weights=True)
    assert out.shape == (2, 3, 16)
    assert w["self"].shape == (2, 4, 3, 3) and w["cross"].shape == (2, 4, 3, 7)
    assert float(w["cross"][..., 5:].abs().max()) == 0.0
    assert float(torch.triu(w["self"], 1).abs().max()) == 0.0
    # the output depends on the memory only through its unmasked positions
    mem2 = mem.clone()
    mem2[:, 5:] += 3.0
    with torch.no_grad():
        torch.testing.assert_close(blk(x, memory=mem2, memory_mask=keep, causal=True), out)


def test_block_errors() -> None:
    with pytest.raises(ValueError, match="norm"):
        TransformerBlock(8, 2, norm="middle")
    with pytest.raises(ValueError, match="divisible"):
        TransformerBlock(10, 3)
    blk = _block()
    with pytest.raises(ValueError, match="memory"):
        blk(_x(1, 2, 16), memory=_x(1, 2, 16))
    with pytest.raises(ValueError, match=r"shape \(B, L, 16\)"):
        blk(_x(1, 2, 8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        blk([[0.0] * 16])
    with pytest.raises(ValueError, match="activation"):
        FeedForward(8, activation="tanh")
    with pytest.raises(ValueError, match="d_ff"):
        FeedForward(8, 0)
    xblk = _block(cross_attention=True)
    with pytest.raises(ValueError, match="memory must be given"):
        xblk(_x(1, 2, 16))
    with pytest.raises(ValueError, match="batch size"):
        xblk(_x(1, 2, 16), memory=_x(2, 3, 16))


def test_block_gradients() -> None:
    torch.manual_seed(0)
    blk = TransformerBlock(8, 2, d_ff=8, norm="post", cross_attention=True).double()
    mem = _x(1, 3, 8, seed=1)
    x = _x(1, 3, 8).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: blk(t, memory=mem, causal=True), (x,), eps=1e-6,
                                    atol=1e-5)


# ------------------------------------------------------------------ the model
def test_tiny_transformer_is_causal_and_checks_tokens() -> None:
    torch.manual_seed(0)
    model = TinyTransformer(vocab_size=10, max_len=8, d_model=16, num_heads=2, num_layers=2)
    tok = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    tok2 = tok.clone()
    tok2[0, 5] = 0
    with torch.no_grad():
        a, ws = model(tok, return_weights=True)
        b = model(tok2)
    assert a.shape == (1, 8, 10) and [w.shape for w in ws] == [(1, 2, 8, 8)] * 2
    torch.testing.assert_close(a[:, :5], b[:, :5])  # a later token never changes earlier logits
    assert not torch.allclose(a[:, 5:], b[:, 5:])
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        model(torch.full((1, 3), 10))
    with pytest.raises(ValueError, match="integer tensor"):
        model(torch.zeros(1, 3))
    with pytest.raises(TypeError):
        model([[1, 2]])
    with pytest.raises(ValueError, match="num_layers"):
        TinyTransformer(vocab_size=4, max_len=4, num_layers=0)


# ------------------------------------------------------------------ the task
def test_induction_batch_structure() -> None:
    x = induction_batch(64, 16, 24, generator=torch.Generator().manual_seed(3))
    assert x.shape == (64, 16) and x.dtype == torch.int64
    assert int(x.min()) >= 0 and int(x.max()) < 24
    first = earlier_occurrence(x)
    for row, e in zip(x.tolist(), first.tolist()):
        start = next(i for i, s in enumerate(e) if s >= 0)
        period = 16 - start
        assert 4 <= period <= 8
        assert len(set(row[:start])) == start  # distinct before the repeat
        assert row[start:] == row[start - period:start]
        assert e[start:] == list(range(start - period, start))
    assert len({16 - int((f >= 0).int().argmax()) for f in first}) > 1  # the period varies
    same = induction_batch(64, 16, 24, generator=torch.Generator().manual_seed(3))
    assert torch.equal(same, x)
    with pytest.raises(ValueError, match="vocab_size"):
        induction_batch(2, 16, 8)
    with pytest.raises(ValueError, match="length"):
        induction_batch(2, 3, 8)
    with pytest.raises(ValueError, match="batch_size"):
        induction_batch(0, 8, 8)


def test_positions_and_occurrences() -> None:
    tok = torch.tensor([[5, 6, 7, 5, 6, 7]])
    assert earlier_occurrence(tok).tolist() == [[-1, -1, -1, 0, 1, 2]]
    assert induction_positions(tok).tolist() == [[False, False, False, True, True, False]]
    with pytest.raises(ValueError, match="integer tensor"):
        earlier_occurrence(torch.zeros(2, 3))


def test_head_scores_on_ideal_patterns() -> None:
    tok = torch.tensor([[0, 1, 2, 3, 1, 2, 3, 1]])  # segment 1 2 3 repeated
    L = tok.shape[1]
    prev = torch.zeros(1, 1, L, L)
    prev[0, 0, 0, 0] = 1.0
    for i in range(1, L):
        prev[0, 0, i, i - 1] = 1.0
    assert float(previous_token_score(prev)) == 1.0
    ind = torch.zeros(1, 1, L, L)
    for i, e in enumerate(earlier_occurrence(tok)[0].tolist()):
        ind[0, 0, i, e + 1 if e >= 0 else i] = 1.0
    assert float(induction_score(ind, tok)) == 1.0
    assert float(induction_score(prev, tok)) == 0.0
    uniform = torch.tril(torch.ones(L, L))
    uniform = (uniform / uniform.sum(-1, keepdim=True))[None, None]
    assert 0 < float(previous_token_score(uniform)) < 0.5
    with pytest.raises(ValueError, match="no repeated token"):
        induction_score(ind, torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7]]))
    with pytest.raises(ValueError, match="shape"):
        induction_score(ind[..., :4, :4], tok)
    with pytest.raises(ValueError, match=r"\(\.\.\., L, L\)"):
        previous_token_score(torch.zeros(2, 3))


def test_training_is_deterministic_and_restores_settings() -> None:
    def run() -> tuple[list[float], torch.Tensor]:
        torch.manual_seed(0)
        m = TinyTransformer(vocab_size=12, max_len=8, d_model=16, num_layers=2)
        r = train_induction(m, steps=5, batch_size=8, lr=1e-2, seed=4)
        return r.losses, m.unembed.weight.detach().clone()

    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    a, wa = run()
    b, wb = run()
    assert a == b and torch.equal(wa, wb)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == det
    assert len(a) == 5 and all(loss > 0 for loss in a)


def test_training_learns_induction() -> None:
    torch.manual_seed(3)
    m = TinyTransformer(vocab_size=24, max_len=16, d_model=32, num_heads=1, num_layers=2)
    test = induction_batch(128, 16, 24, generator=torch.Generator().manual_seed(99))
    assert induction_accuracy(m, test) < 0.2
    run = train_induction(m, steps=300, batch_size=32, lr=5e-3, seed=3)
    assert run.losses[-1] < run.losses[0] / 3
    assert induction_accuracy(m, test) > 0.9
    with torch.no_grad():
        _, ws = m(test, return_weights=True)
    assert float(previous_token_score(ws[0]).mean()) > 0.4
    assert float(induction_score(ws[1], test)) > 0.6
    with ablate_heads(m, {1: [0]}):
        assert induction_accuracy(m, test) < 0.5
    assert induction_accuracy(m, test) > 0.9  # weights restored
    loss = induction_loss(m, test)
    assert loss.ndim == 0 and float(loss.detach()) < 0.5


def test_training_errors() -> None:
    m = TinyTransformer(vocab_size=8, max_len=8, d_model=8)
    with pytest.raises(TypeError, match="TinyTransformer"):
        train_induction(nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_len"):
        train_induction(m, length=10)
    with pytest.raises(ValueError, match="lr"):
        train_induction(m, lr=0.0)
    with pytest.raises(ValueError, match="steps"):
        train_induction(m, steps=0)
    with pytest.raises(ValueError, match="layer 5"):
        with ablate_heads(m, {5: [0]}):
            pass
    with pytest.raises(ValueError, match="head 3"):
        with ablate_heads(m, {0: [3]}):
            pass


def test_block_attn_inputs_replace_one_input_only() -> None:
    for norm in ("pre", "post"):
        blk = _block(norm=norm)
        x, other = _x(2, 5, 16), _x(2, 5, 16, seed=7)
        with torch.no_grad():
            same = blk(x, causal=True, attn_inputs={"key": x, "query": x, "value": x})
            torch.testing.assert_close(same, blk(x, causal=True))
            got = blk(x, causal=True, attn_inputs={"key": other})
            h = blk.ln_attn(x) if norm == "pre" else x
            hk = blk.ln_attn(other) if norm == "pre" else other
            a = blk.attn(h, hk, h, causal=True)
            mid = x + a if norm == "pre" else blk.ln_attn(x + a)
            f = blk.ff(blk.ln_ff(mid) if norm == "pre" else mid)
            want = mid + f if norm == "pre" else blk.ln_ff(mid + f)
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="attn_inputs keys"):
        blk(x, attn_inputs={"keys": x})
    with pytest.raises(ValueError, match="x's shape"):
        blk(x, attn_inputs={"key": x[:, :3]})
    with pytest.raises(TypeError, match="mapping"):
        blk(x, attn_inputs=[x])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="torch.Tensor"):
        blk(x, attn_inputs={"key": x.numpy()})
    with pytest.raises(ValueError, match="together"):
        blk(x, attn_inputs={"key": x}, attend=lambda q, k, v: q)


def test_induction_keys_and_scores_where_it_matters() -> None:
    tok = torch.tensor([[0, 1, 2, 3, 1, 2, 3, 1]])  # segment 1 2 3 repeated
    assert induction_keys(tok).tolist() == [[False, False, True, True, True, False, False, False]]
    L = tok.shape[1]
    w = torch.zeros(1, 2, L, L)
    w[:, :, 0, 0] = 1.0
    for i in range(1, L):
        w[0, 0, i, i - 1] = 1.0  # head 0: previous token everywhere
        w[0, 1, i, i - 1 if i < 4 else 0] = 1.0  # head 1: previous token up to position 3
    keys = induction_keys(tok)
    assert torch.allclose(previous_token_score(w, where=keys), torch.tensor([1.0, 2 / 3]))
    assert torch.allclose(previous_token_score(w)[0], torch.tensor([1.0, 3 / 7]))
    with pytest.raises(ValueError, match="no query"):
        previous_token_score(w, where=torch.zeros(1, L, dtype=torch.bool))
    with pytest.raises(ValueError, match="where must be"):
        previous_token_score(w, where=keys[:, :4])


def test_context_guess_counts_the_tokens_seen_once() -> None:
    tok = induction_batch(16, 12, 20, generator=torch.Generator().manual_seed(5))
    logs, inv = [], []
    for row, wh in zip(tok.tolist(), induction_positions(tok).tolist()):
        for t, use in enumerate(wh):
            if use:
                seen = row[: t + 1]
                cand = {a for a in seen if seen.count(a) == 1} - {row[t]}
                assert row[t + 1] in cand
                logs.append(math.log(len(cand)))
                inv.append(1 / len(cand))
    got = context_guess(tok)
    assert got["loss"] == pytest.approx(sum(logs) / len(logs))
    assert got["accuracy"] == pytest.approx(sum(inv) / len(inv))
    with pytest.raises(ValueError, match="no position"):
        context_guess(torch.tensor([[0, 1, 2, 3]]))


def test_tracking_does_not_change_training() -> None:
    test = induction_batch(32, 8, 12, generator=torch.Generator().manual_seed(2))

    def run(track: torch.Tensor | None):
        torch.manual_seed(0)
        m = TinyTransformer(vocab_size=12, max_len=8, d_model=16, num_layers=2)
        return train_induction(m, steps=7, batch_size=8, lr=1e-2, seed=4, track=track, track_every=3), m

    plain, _ = run(None)
    tracked, m = run(test)
    assert plain.losses == tracked.losses and plain.tracked_steps == []
    assert tracked.tracked_steps == [0, 3, 6, 7]
    for name in ("previous_token", "previous_token_at_keys", "induction"):
        rows = getattr(tracked, name)
        assert len(rows) == 4 and all(len(r) == 2 and len(r[0]) == 1 for r in rows)
    assert tracked.tracked_loss[-1] == pytest.approx(float(induction_loss(m, test).detach()), rel=1e-5)
    assert tracked.tracked_accuracy[-1] == pytest.approx(induction_accuracy(m, test))
    with torch.no_grad():
        _, ws = m(test, return_weights=True)
    assert tracked.induction[-1][1][0] == pytest.approx(float(induction_score(ws[1], test)[0]), rel=1e-5)
    with pytest.raises(ValueError, match="track_every"):
        train_induction(m, steps=2, track=test, track_every=0)
    with pytest.raises(ValueError, match="induction predicts"):
        train_induction(m, steps=2, track=torch.arange(8)[None])


def _two_layer() -> tuple[TinyTransformer, torch.Tensor]:
    torch.manual_seed(1)
    m = TinyTransformer(vocab_size=12, max_len=8, d_model=16, num_heads=2, num_layers=2).double()
    return m, induction_batch(5, 8, 12, generator=torch.Generator().manual_seed(8))


def test_ablate_heads_zero_and_mean() -> None:
    m, tok = _two_layer()
    ref = induction_batch(9, 8, 12, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        clean = m(tok)
        with ablate_heads(m, {0: [1]}):
            zero = m(tok)
        w = m.blocks[0].attn.out_proj.weight
        saved = w.clone()
        w[:, 8:] = 0.0  # head 1 writes columns 8..15 of W_O's input
        torch.testing.assert_close(zero, m(tok))
        w.copy_(saved)
        torch.testing.assert_close(m(tok), clean)  # hooks removed, weights untouched
        # mean-ablation: the head's output replaced by its mean over the reference, per position
        seen = {}
        hook = m.blocks[0].attn.out_proj.register_forward_pre_hook(
            lambda _m, a: seen.__setitem__("x", a[0].clone()))
        m(ref)
        hook.remove()
        mean = seen["x"].mean(0)
        hook = m.blocks[0].attn.out_proj.register_forward_pre_hook(
            lambda _m, a: (torch.cat([a[0][..., :8], mean[None, :, 8:].expand(a[0].shape[0], -1, -1)],
                                     -1),))
        want = m(tok)
        hook.remove()
        with ablate_heads(m, {0: [1]}, mode="mean", reference=ref):
            torch.testing.assert_close(m(tok), want)
        with ablate_heads(m, {1: [0, 1]}, mode="mean", reference=tok[:1]):  # its own mean: no change
            torch.testing.assert_close(m(tok[:1]), clean[:1])
    with pytest.raises(ValueError, match="mode"):
        with ablate_heads(m, {0: [0]}, mode="resample"):
            pass
    with pytest.raises(ValueError, match="reference"):
        with ablate_heads(m, {0: [0]}, mode="mean"):
            pass
    with pytest.raises(ValueError, match="reference"):
        with ablate_heads(m, {0: [0]}, reference=tok):
            pass


@pytest.mark.parametrize("path", ["query", "key", "value"])
def test_ablate_path_changes_one_input_of_one_layer(path: str) -> None:
    m, tok = _two_layer()
    b0, b1 = m.blocks
    with torch.no_grad():
        # by hand: layer 1's head 0 contributes concat[..., :8] @ W_O[:, :8]^T to the stream
        x = m.tok_emb(tok) + m.pos_emb(torch.arange(tok.shape[1]))
        seen = {}
        hook = b0.attn.out_proj.register_forward_pre_hook(lambda _m, a: seen.__setitem__("c", a[0]))
        x1 = b0(x, causal=True)
        hook.remove()
        contrib = seen["c"][..., :8] @ b0.attn.out_proj.weight[:, :8].T
        x2 = b1(x1, causal=True, attn_inputs={path: x1 - contrib})
        want = m.unembed(m.ln_final(x2))
        with ablate_path(m, {0: [0]}, into=1, path=path):
            got = m(tok)
        torch.testing.assert_close(got, want)
        assert float((got - m(tok)).abs().max()) > 0
        with ablate_path(m, {0: [0]}, into=1, path=path, mode="mean", reference=tok[:1]):
            torch.testing.assert_close(m(tok[:1]), m(tok)[:1])  # its own mean: no change


def test_ablate_path_errors() -> None:
    m, tok = _two_layer()
    with pytest.raises(ValueError, match="before into"):
        with ablate_path(m, {1: [0]}, into=1):
            pass
    with pytest.raises(ValueError, match="path"):
        with ablate_path(m, {0: [0]}, into=1, path="keys"):
            pass
    with pytest.raises(ValueError, match="into"):
        with ablate_path(m, {0: [0]}, into=2):
            pass
    with pytest.raises(ValueError, match="head 2"):
        with ablate_path(m, {0: [2]}, into=1):
            pass
    post = TinyTransformer(vocab_size=12, max_len=8, d_model=16, num_layers=2, norm="post")
    with pytest.raises(ValueError, match="pre-LN"):
        with ablate_path(post, {0: [0]}, into=1):
            pass
    with pytest.raises(TypeError, match="TinyTransformer"):
        with ablate_path(nn.Linear(2, 2), {0: [0]}, into=1):  # type: ignore[arg-type]
            pass


def test_token_weights_html() -> None:
    html = token_weights_html(["a", "b", "c"], [0.1, 0.2, 0.7], 2, marks={1: "to copy"})
    assert "to copy" in html and "0.70" in html and "query 2 (c) -&gt; key 0 (a)" in html
    with pytest.raises(ValueError, match="weights"):
        token_weights_html(["a"], [0.1, 0.9], 0)
    with pytest.raises(ValueError, match="query"):
        token_weights_html(["a", "b"], [0.1, 0.9], 2)
