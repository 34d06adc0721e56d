"""Tests for attnkit.teaching.scaling (the experiments of the chapter "Why scale")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnkit import softmax
from attnkit.teaching.scaling import (
    dot_product_samples,
    dot_product_stats,
    entropy,
    monte_carlo_dot_products,
    random_score_row,
    saturation_stats,
    scaling_explorer_views,
    softmax_jacobian,
    weight_bars_html,
)


def test_softmax_jacobian_matches_autograd() -> None:
    torch = pytest.importorskip("torch")
    s = torch.tensor([0.3, -1.2, 2.0, 0.0, 0.7], dtype=torch.float64)
    expected = torch.autograd.functional.jacobian(lambda x: torch.softmax(x, -1), s).numpy()
    got = softmax_jacobian(softmax(s.numpy()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_softmax_jacobian_batched_symmetric_rows_sum_to_zero() -> None:
    p = softmax(np.random.default_rng(1).standard_normal((3, 2, 6)))
    jac = softmax_jacobian(p)
    assert jac.shape == (3, 2, 6, 6)
    np.testing.assert_allclose(jac, np.swapaxes(jac, -1, -2), atol=1e-15)
    np.testing.assert_allclose(jac.sum(axis=-1), 0.0, atol=1e-15)


def test_softmax_jacobian_vanishes_when_saturated() -> None:
    p = softmax(np.array([40.0, 0.0, 0.0, 0.0]))
    assert np.linalg.norm(softmax_jacobian(p)) < 1e-16


def test_softmax_jacobian_keeps_the_diagonal_of_a_one_hot_row() -> None:
    # float64 stores the top weight as exactly 1.0; its diagonal entry p_0 (1 - p_0)
    # must still be the sum of the other weights, not 1 - 1.0 = 0.
    s = np.array([40.0, 0.3, -0.2, 0.1, -0.4, 0.0, 0.2, -0.1])
    p = softmax(s)
    assert p[0] == 1.0
    jac = softmax_jacobian(p)
    assert jac[0, 0] == pytest.approx(p[1:].sum(), rel=1e-12)
    # the exact Frobenius norm, from 50-digit arithmetic (mpmath): 3.6151127e-17
    assert np.linalg.norm(jac) == pytest.approx(3.6151127e-17, rel=1e-6)
    np.testing.assert_allclose(jac.sum(axis=-1), 0.0, atol=1e-30)


def test_softmax_jacobian_rejects_scalar() -> None:
    with pytest.raises(ValueError, match="p must have at least one axis"):
        softmax_jacobian(0.5)


@pytest.mark.parametrize("n", [1, 2, 5, 64])
def test_entropy_uniform_is_log_n(n: int) -> None:
    assert float(entropy(np.full(n, 1.0 / n))) == pytest.approx(math.log(n), abs=1e-12)


def test_entropy_one_hot_is_zero_and_batched() -> None:
    p = np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(entropy(p), [0.0, math.log(2)], atol=1e-15)


def test_entropy_rejects_negative() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        entropy([-0.1, 1.1])


@pytest.mark.parametrize("d_k", [1, 16, 256])
def test_monte_carlo_variance_within_standard_errors(d_k: int) -> None:
    st = dot_product_stats(d_k, 20_000, rng=123)
    assert abs(st.mean) < 4 * st.se_mean
    assert abs(st.var - d_k) < 4 * st.se_var
    assert abs(st.scaled_var - 1.0) < 4 * st.se_scaled_var
    # the standard error of the variance is close to its Gaussian-theory value
    assert st.se_var == pytest.approx(math.sqrt((2 * d_k**2 + 6 * d_k) / 20_000), rel=0.15)


def test_monte_carlo_general_sigma() -> None:
    sigma, d_k = 2.0, 32
    st = dot_product_stats(d_k, 20_000, sigma=sigma, rng=7)
    assert st.expected_var == d_k * sigma**4
    assert abs(st.z_var) < 4
    assert abs(st.scaled_var - 1.0) < 4 * st.se_scaled_var


def test_dot_product_samples_match_stats_and_seed() -> None:
    s = dot_product_samples(16, 5_000, sigma=0.5, rng=11)
    assert s.shape == (5_000,)
    st = dot_product_stats(16, 5_000, sigma=0.5, rng=11)
    assert float(s.mean()) == pytest.approx(st.mean, abs=1e-12)
    np.testing.assert_array_equal(s, dot_product_samples(16, 5_000, sigma=0.5, rng=11))


def test_monte_carlo_is_seeded() -> None:
    a = monte_carlo_dot_products([1, 8], 500, seed=3)
    b = monte_carlo_dot_products([1, 8], 500, seed=3)
    assert a == b
    assert [s.d_k for s in a] == [1, 8]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_k": 0}, "d_k"),
        ({"d_k": 4, "n_samples": 1}, "n_samples"),
        ({"d_k": 4, "sigma": -1.0}, "sigma"),
    ],
)
def test_dot_product_stats_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dot_product_stats(**kwargs)


def test_random_score_row_scaled_is_unscaled_over_sqrt_dk() -> None:
    raw = random_score_row(64, 8, scaled=False, seed=5)
    np.testing.assert_allclose(random_score_row(64, 8, scaled=True, seed=5), raw / 8.0)


def test_saturation_grows_without_scaling() -> None:
    small = saturation_stats(4, scaled=False, n_draws=200)
    big = saturation_stats(1024, scaled=False, n_draws=200)
    big_scaled = saturation_stats(1024, scaled=True, n_draws=200)
    assert big.jacobian_norm < small.jacobian_norm
    assert big.max_weight > 0.9
    assert big.entropy < big_scaled.entropy
    assert big_scaled.jacobian_norm > 4 * big.jacobian_norm
    assert big.median_jacobian_norm < 1e-3 < big_scaled.median_jacobian_norm


def test_weight_bars_html_and_length_check() -> None:
    out = weight_bars_html([0.1, 0.9], ["a", "<b>"], scores=[0.0, 2.0], caption="row")
    assert "0.9000" in out and "&lt;b&gt;" in out and "2.0000" in out
    with pytest.raises(ValueError, match="labels"):
        weight_bars_html([0.5, 0.5], ["a"])


def test_explorer_views_grid_and_differences() -> None:
    views, rows, cols = scaling_explorer_views([1, 64, 1024], n_keys=8)
    assert len(views) == len(rows) == 2
    assert all(len(r) == 3 for r in views) and cols == ["1", "64", "1024"]
    flat = [v for r in views for v in r]
    assert len(set(flat)) == len(flat)  # every view is different
    assert "d_k = 1024" in views[1][2] and "not scaled" in views[1][2]
    # the entropy is named in words: H is the number of heads in the book
    assert "Entropy " in views[0][0] and "exp(entropy)" in views[0][0]
    assert "Entropy H" not in views[0][0] and "exp(H)" not in views[0][0]
    with pytest.raises(ValueError, match="dims"):
        scaling_explorer_views([])


def test_scaling_explorer_widget() -> None:
    pytest.importorskip("ipywidgets")
    from attnkit.teaching.scaling import scaling_explorer

    box = scaling_explorer([1, 64], n_keys=4)
    assert "attnkit-scaling-explorer" in box._dom_classes
    outer = box.children[-1]
    assert len(outer.children) == 2 and all(len(s.children) == 2 for s in outer.children)


def test_worked_example_steps_are_computed_not_copied() -> None:
    import attnkit
    from attnkit import example
    from attnkit.teaching import worked_example as we

    out, weights = attnkit.attention(example.Q, example.K, example.V, return_weights=True)
    for i in range(len(example.tokens)):
        s = we.row_steps(i)
        assert s.weights is not weights[i]
        np.testing.assert_allclose(s.raw, example.K @ example.Q[i], atol=0)
        np.testing.assert_allclose(s.weights, s.exps / s.exps.sum(), atol=0)
        np.testing.assert_allclose(s.out, s.weighted.sum(axis=0), atol=0)
        np.testing.assert_allclose(s.weights, weights[i], atol=1e-12)
        np.testing.assert_allclose(s.out, out[i], atol=1e-12)
    # a different key set: the steps follow the arguments, not the example
    rng = np.random.default_rng(0)
    Q, K, V = (rng.standard_normal((3, 4)) for _ in range(3))
    s = we.row_steps(1, Q, K, V, ("a", "b", "c"))
    np.testing.assert_allclose(s.out, attnkit.attention(Q, K, V)[1], atol=1e-12)
    with pytest.raises(ValueError, match="i must be a row of Q"):
        we.row_steps(5)


def test_worked_example_output_row_and_self_attenders_count_ties() -> None:
    from attnkit.teaching import worked_example as we

    rows, cols, _ = we.stage_rows(we.row_steps(0), 3)
    assert rows[-1][0] == "output" and rows[-1][1] == "Σw = 1.0000"
    # a tie counts as attending to oneself (the book's rule; "sat" ties with "cat")
    info = we.interpret(np.array([[0.2, 0.4, 0.4], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2]]))
    assert info.favourite == ((1, 2), (1,), (0,))
    assert info.self_attenders == (1,)
    info = we.interpret(np.array([[0.5, 0.5], [0.5, 0.5]]))
    assert info.self_attenders == (0, 1)
