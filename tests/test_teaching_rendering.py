"""How the teaching helpers render: figure sizes for the screen, heatmap details lines."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from attnkit.teaching import heatmap_html, html_table  # noqa: E402
from attnkit.teaching.plotting import MAX_WIDTH, figure  # noqa: E402


def test_a_wide_row_of_panels_is_stacked_at_full_width() -> None:
    fig, axes = figure(11.0, 3.9, ncols=3, layout="constrained")
    assert axes.shape == (3,)
    w, h = fig.get_size_inches()
    assert w <= MAX_WIDTH and h == pytest.approx(3 * 3.9)
    # One panel above the other, in order.
    tops = [ax.get_position().y0 for ax in axes]
    assert tops == sorted(tops, reverse=True)
    plt.close(fig)


def test_width_ratios_of_a_stacked_row_are_dropped() -> None:
    fig, axes = figure(9.5, 4.0, ncols=2, gridspec_kw={"width_ratios": [1.1, 1]})
    assert axes.shape == (2,) and fig.get_figwidth() <= MAX_WIDTH
    plt.close(fig)


def test_a_wide_grid_keeps_its_aspect() -> None:
    fig, axes = figure(10.0, 7.0, nrows=2, ncols=2)
    assert axes.shape == (2, 2)
    assert fig.get_figwidth() == pytest.approx(MAX_WIDTH)
    assert fig.get_figheight() == pytest.approx(7.0 * MAX_WIDTH / 10.0)
    plt.close(fig)


def test_a_narrow_figure_is_unchanged() -> None:
    fig, _ = figure(6.0, 3.6)
    assert tuple(fig.get_size_inches()) == pytest.approx((6.0, 3.6))
    plt.close(fig)


@pytest.mark.parametrize(("w", "h"), [(0.0, 3.0), (5.0, -1.0)])
def test_figure_rejects_a_size_that_is_not_positive(w: float, h: float) -> None:
    with pytest.raises(ValueError, match="width and height"):
        figure(w, h)


def test_heatmap_cells_explain_themselves_without_title_tooltips() -> None:
    html = heatmap_html(np.array([[0.25, 0.75], [0.5, 0.5]]), ["a", "b"], ["x", "y"],
                        titles=lambda i, j: f"cell {i},{j}\nline two")
    assert "title=" not in html
    assert html.count('class="attnkit-cell" tabindex="0"') == 4
    assert '<span class="attnkit-detail">cell 1,0\nline two</span>' in html
    assert ":focus .attnkit-detail{display:block" in html  # shown on tap/click/focus
    assert "attnkit-hint" in html


def test_heatmap_without_explanations_has_no_details_line() -> None:
    html = heatmap_html(np.eye(2), ["a", "b"], ["x", "y"])
    assert "attnkit-detail" not in html and "tabindex" not in html


def test_captions_keep_dark_ink_on_white() -> None:
    html = html_table([[1.0]], caption="c")
    assert "<caption" in html and "color:#111111;background:#ffffff" in html


def test_sci_writes_powers_of_ten_that_do_not_break() -> None:
    from attnkit.teaching import sci

    assert sci(1.5603e-11) == "1.56\u202f×\u202f10⁻¹¹"
    assert sci(-2.5e7, 1) == "\u22122.5\u202f×\u202f10⁷"
    assert sci(3.0) == "3.00"
    with pytest.raises(ValueError, match="finite"):
        sci(float("nan"))
    with pytest.raises(ValueError, match="digits"):
        sci(1.0, -1)
