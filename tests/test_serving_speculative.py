"""Speculative decoding with a token tree: exactness, the tree mask, acceptance, the formula.

The models run in float64, so that no argmax of the verification pass (through a
cache, under the tree mask) and of plain greedy decoding (the whole sequence each
step) differs by rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnkit.models.transformer import TinyTransformer
from attnkit.serving.engine import generate_alone
from attnkit.serving.speculative import (
    accept_child,
    check_tree,
    draft_model,
    estimate_acceptance,
    expected_speedup,
    expected_tokens_per_pass,
    measure_speculation,
    speculative_generate,
    tree_depths,
    tree_from_branching,
    tree_mask,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(seed: int, layers: int = 3, vocab: int = 11, heads: int = 2) -> TinyTransformer:
    torch.manual_seed(seed)
    return TinyTransformer(vocab_size=vocab, max_len=48, d_model=16, num_heads=heads,
                           num_layers=layers).double().eval()


# ---------------------------------------------------------------- the tree mask
def test_tree_mask_matches_a_hand_drawn_tree() -> None:
    #   root ─┬─ 0 ─┬─ 2 ── 5
    #         │     └─ 3
    #         └─ 1 ── 4
    parents = [-1, -1, 0, 0, 1, 2]
    sees = {0: {0}, 1: {1}, 2: {0, 2}, 3: {0, 3}, 4: {1, 4}, 5: {0, 2, 5}}
    expected = np.zeros((6, 6), dtype=bool)
    for i, js in sees.items():
        expected[i, sorted(js)] = True
    np.testing.assert_array_equal(tree_mask(parents), expected)
    assert tree_depths(parents) == [1, 1, 2, 2, 2, 3]


def test_tree_mask_of_a_chain_is_causal_and_nodes_need_not_be_ordered() -> None:
    np.testing.assert_array_equal(tree_mask([-1, 0, 1, 2]), np.tril(np.ones((4, 4), dtype=bool)))
    # node 0 is the child of node 1: parents may come after their children
    np.testing.assert_array_equal(tree_mask([1, -1]), [[True, True], [False, True]])


def test_tree_from_branching() -> None:
    assert tree_from_branching(()) == ()
    assert tree_from_branching((3,)) == (-1, -1, -1)
    assert tree_from_branching((2, 1)) == (-1, -1, 0, 1)


@pytest.mark.parametrize(("parents", "error", "words"), [
    ([0], ValueError, "own ancestor"),
    ([1, 2, 0], ValueError, "own ancestor"),
    ([-1, 2, 1], ValueError, "own ancestor"),
    ([-1, 5], ValueError, r"parents\[1\] must be -1 \(the root\) or a node index in \[0, 2\); got 5"),
    ([-2], ValueError, "got -2"),
    ([-1, 0.5], TypeError, r"parents\[1\]"),
    ("ab", TypeError, "sequence of integers"),
    (3, TypeError, "sequence of integers"),
])
def test_bad_trees_are_refused(parents, error, words) -> None:
    with pytest.raises(error, match=words):
        check_tree(parents)


# ---------------------------------------------------------------- exactness
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tree", [(), (-1,), (-1, 0, 1), tree_from_branching((2, 2)),
                                  (-1, -1, 0, 0, 1, 2), tree_from_branching((3, 1, 1))])
def test_greedy_speculative_decoding_equals_greedy_decoding(seed: int, tree) -> None:
    target = _model(seed)
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, 11, int(rng.integers(1, 8))).tolist()
    want = generate_alone(target, prompt, 20)
    for layers in (1, 2):
        out = speculative_generate(target, draft_model(target, layers), prompt, 20, tree=tree)
        assert out.tokens == want
        assert out.target_passes <= 20 and sum(out.accepted) + out.target_passes >= 20


def test_grouped_query_target_and_another_draft() -> None:
    torch.manual_seed(3)
    target = TinyTransformer(vocab_size=9, max_len=40, d_model=16, num_heads=4,
                             num_layers=2).double().eval()
    attn = target.blocks[0].attn
    assert attn.num_kv_heads == attn.num_heads  # plain multi-head; the draft is independent
    draft = _model(5, layers=1, vocab=9)
    out = speculative_generate(target, draft, [1, 2], 15, tree=tree_from_branching((2, 2, 1)))
    assert out.tokens == generate_alone(target, [1, 2], 15)


def test_a_perfect_draft_is_always_accepted() -> None:
    target = _model(4)
    chain = tree_from_branching((1,) * 4)
    out = speculative_generate(target, draft_model(target, 3), [3, 1], 20, tree=chain)
    assert out.accepted == [4] * 4  # 5 tokens per pass: 20 tokens in 4 passes
    assert out.tokens_per_pass == expected_tokens_per_pass(1.0, 4) == 5.0
    assert out.draft_passes == 4 * 4


def test_plain_decoding_is_one_token_per_pass() -> None:
    target = _model(6)
    out = speculative_generate(target, target, [2], 7, tree=())
    assert out.accepted == [0] * 7 and out.tokens_per_pass == 1.0 and out.draft_passes == 0


def test_sampling_runs_and_is_seeded() -> None:
    target = _model(7)
    draft = draft_model(target, 1)
    tree = tree_from_branching((2, 1))
    a = speculative_generate(target, draft, [1, 2, 3], 12, tree=tree, temperature=1.0, seed=3)
    b = speculative_generate(target, draft, [1, 2, 3], 12, tree=tree, temperature=1.0, seed=3)
    assert a.tokens == b.tokens and len(a.tokens) == 12
    assert all(0 <= t < 11 for t in a.tokens)


def test_bad_arguments() -> None:
    target = _model(0)
    with pytest.raises(TypeError, match="draft must be a TinyTransformer"):
        speculative_generate(target, "draft", [1], 3)
    with pytest.raises(ValueError, match="share a vocabulary"):
        speculative_generate(target, _model(0, vocab=5), [1], 3)
    with pytest.raises(ValueError, match="own ancestor"):
        speculative_generate(target, target, [1], 3, tree=[1, 0])
    with pytest.raises(ValueError, match="exceeds the target's max_len"):
        speculative_generate(target, target, [1] * 40, 8, tree=(-1, 0))
    with pytest.raises(ValueError, match="temperature"):
        speculative_generate(target, target, [1], 3, temperature=-1.0)
    with pytest.raises(ValueError, match="num_layers"):
        draft_model(target, 4)


# ---------------------------------------------------------------- acceptance rule
@pytest.mark.parametrize("k", [1, 3])
def test_acceptance_rule_keeps_the_target_distribution(k: int) -> None:
    """Children drawn from q, accepted by the rule: the token that results is distributed as p."""
    rng = np.random.default_rng(0)
    p = np.array([0.5, 0.3, 0.15, 0.05])
    q = np.array([0.1, 0.2, 0.3, 0.4])
    trials = 6_000
    counts = np.zeros(4)
    for _ in range(trials):
        children = rng.choice(4, size=k, p=q).tolist()
        _, tok = accept_child(p, q, children, rng)
        counts[tok] += 1
    # 5 standard errors of a binomial proportion
    se = np.sqrt(p * (1 - p) / trials)
    assert np.all(np.abs(counts / trials - p) < 5 * se), counts / trials


# ---------------------------------------------------------------- Leviathan et al.
def test_expected_tokens_per_pass_by_hand() -> None:
    assert expected_tokens_per_pass(0.5, 2) == 1 + 0.5 + 0.25
    assert expected_tokens_per_pass(0.8, 3) == pytest.approx(1 + 0.8 + 0.64 + 0.512)
    assert expected_tokens_per_pass(0.0, 5) == 1.0
    assert expected_tokens_per_pass(1.0, 5) == 6.0
    assert expected_tokens_per_pass(0.3, 0) == 1.0
    assert expected_speedup(0.8, 3, 0.05) == pytest.approx(2.952 / 1.15)
    with pytest.raises(ValueError, match="alpha"):
        expected_tokens_per_pass(1.5, 2)
    with pytest.raises(ValueError, match="gamma"):
        expected_tokens_per_pass(0.5, -1)


@pytest.mark.parametrize(("alpha", "gamma"), [(0.6, 3), (0.9, 5)])
def test_expected_tokens_per_pass_matches_a_simulated_chain(alpha: float, gamma: int) -> None:
    """Accept each of gamma draft tokens with probability alpha until the first rejection."""
    rng = np.random.default_rng(1)
    draws = rng.random((20_000, gamma)) < alpha
    accepted = np.where(draws.all(1), gamma, np.argmin(draws, axis=1))
    assert (accepted + 1).mean() == pytest.approx(expected_tokens_per_pass(alpha, gamma), rel=0.02)
    assert estimate_acceptance(accepted.tolist(), gamma) == pytest.approx(alpha, abs=0.015)


def test_estimate_acceptance_by_hand() -> None:
    assert estimate_acceptance([2, 2], 2) == 1.0
    assert estimate_acceptance([0, 0], 2) == 0.0
    assert estimate_acceptance([1], 2) == 0.5
    with pytest.raises(ValueError, match="accepted"):
        estimate_acceptance([3], 2)


def test_the_package_serves_the_names_lazily() -> None:
    import attnkit.serving as serving
    from attnkit.serving import speculative

    lazy = {n for n, m in serving._LAZY.items() if m == "attnkit.serving.speculative"}
    assert lazy == set(speculative.__all__)
    assert serving.tree_mask is tree_mask and "speculative_generate" in serving.__all__


def test_measure_speculation_pools_passes_and_predicts_from_alpha() -> None:
    target = _model(8)
    draft = draft_model(target, 1)
    prompts = [[1, 2, 3], [4], [5, 6]]
    r = measure_speculation(target, draft, prompts, 12, tree=tree_from_branching((1, 1, 1)))
    assert r["gamma"] == 3 and r["nodes"] == 3 and r["tokens"] == 36
    assert r["tokens_per_pass"] == pytest.approx(np.mean(r["accepted"]) + 1)
    assert r["alpha"] == estimate_acceptance(r["accepted"], 3)
    assert r["predicted_tokens_per_pass"] == expected_tokens_per_pass(r["alpha"], 3)
    assert r["draft_passes"] == 3 * r["target_passes"]
    tree = measure_speculation(target, draft, prompts, 12, tree=tree_from_branching((2, 1)))
    assert tree["alpha"] is None and tree["predicted_tokens_per_pass"] is None
    with pytest.raises(ValueError, match="prompts"):
        measure_speculation(target, draft, [], 4)
