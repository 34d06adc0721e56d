"""Figure style for the book.

Opaque backgrounds (readable in dark mode), fixed
sizes (deterministic output) and colour-blind-safe colours.
"""

from __future__ import annotations

from typing import Any

#: The Okabe-Ito palette, safe for the common forms of colour blindness.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

#: Sequential colormap for heatmaps.
CMAP = "viridis"


def style() -> None:
    """Apply the book's matplotlib style (call once per notebook)."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update({
        "figure.facecolor": "white",
        "axes.facecolor": "white",
        "savefig.facecolor": "white",
        "figure.dpi": 100,
        "axes.prop_cycle": cycler(color=OKABE_ITO),
        "axes.grid": True,
        "grid.alpha": 0.3,
        "image.cmap": CMAP,
        "font.size": 10,
    })


def figure(width: float = 6.0, height: float = 3.6, **kwargs: Any) -> tuple[Any, Any]:
    """``plt.subplots`` with the book's style and an explicit size in inches."""
    import matplotlib.pyplot as plt

    style()
    return plt.subplots(figsize=(width, height), **kwargs)
