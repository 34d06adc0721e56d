"""Figure style for the book: drawn for the screen it is read on.

* opaque white backgrounds, so figures read in the site's dark mode;
* fixed sizes (deterministic output) and colour-blind-safe colours;
* sharp on high-density screens: in a notebook, figures are sent as "retina" PNGs
  (twice the pixels, shown at the same size: 200 pixels per inch);
* sharp in print: each figure is also stored as a vector PDF (fonts embedded as
  TrueType), which the book's PDF prints and the website ignores;
* legible at the size shown: a figure is at most :data:`MAX_WIDTH` inches wide, which
  the book's text column shows at full size, so 10-pt text stays 10 pt. A row of
  panels is stacked into a column (each panel at full width) rather than shrunk;
* described: :func:`show` and :func:`described` (and ``glue(..., alt=...)``) store the
  figure's alt text in the notebook, beside the code that draws it. The book's build
  makes it the image's ``alt`` attribute on the website and its alternative text in
  the PDF, so a screen reader says what the figure shows instead of a file name.
"""

from __future__ import annotations

import re
from typing import Any

#: The Okabe-Ito palette, safe for the common forms of colour blindness.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

#: Sequential colormap for heatmaps.
CMAP = "viridis"

#: The widest figure, in inches, that the text column shows without shrinking it
#: (at 100 CSS pixels per inch: 720 px, the width of the book's column on a desktop).
MAX_WIDTH = 7.2

#: Pixels per inch of the figures as drawn (the PNG holds twice as many: "retina").
DPI = 100


def style() -> None:
    """Apply the book's matplotlib style (call once per notebook)."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update({
        "figure.facecolor": "white",
        "axes.facecolor": "white",
        "savefig.facecolor": "white",
        "figure.dpi": DPI,
        "savefig.dpi": 2 * DPI,
        "axes.prop_cycle": cycler(color=OKABE_ITO),
        "axes.grid": True,
        "grid.alpha": 0.3,
        "image.cmap": CMAP,
        "font.size": 10,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 10,
        "xtick.labelsize": 10,
        "ytick.labelsize": 10,
        # Vector copies for print: TrueType fonts (text a PDF reader can extract and a
        # screen reader can read; Type 3 is the default).
        "pdf.fonttype": 42,
    })
    try:  # in a notebook: PNGs at twice the resolution, shown at the same size, + PDF
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("retina", "pdf")
    except Exception:  # noqa: BLE001 - outside IPython there is nothing to configure
        pass


def figure(width: float = 6.0, height: float = 3.6, **kwargs: Any) -> tuple[Any, Any]:
    """``plt.subplots`` with the book's style and an explicit size in inches.

    A single row of ``ncols`` panels wider than :data:`MAX_WIDTH` is stacked into one
    column of ``ncols`` panels, each :data:`MAX_WIDTH` wide at most and ``height`` high,
    so that no panel is shrunk on the page (``axes`` keeps its shape: a 1-D array of
    ``ncols`` axes in order). ``width_ratios`` then no longer apply and are dropped.
    A grid wider than :data:`MAX_WIDTH` is drawn at :data:`MAX_WIDTH` with its aspect kept.

    Args:
        width, height: the size in inches of the figure as asked for.
        **kwargs: passed to ``plt.subplots`` (``ncols``, ``nrows``, ``sharey``, ...).

    Returns:
        ``(fig, axes)`` as ``plt.subplots`` returns them.

    Raises:
        ValueError: if ``width`` or ``height`` is not positive.

    Example:
        >>> fig, axes = figure(10.0, 3.6, ncols=2)   # two panels, one above the other
        >>> len(axes), bool(fig.get_figwidth() <= MAX_WIDTH)
        (2, True)
    """
    import matplotlib.pyplot as plt

    if not (width > 0 and height > 0):
        raise ValueError(f"width and height must be positive inches; got {width} and {height}")
    style()
    ncols, nrows = int(kwargs.get("ncols", 1)), int(kwargs.get("nrows", 1))
    if width > MAX_WIDTH and ncols > 1 and nrows == 1:
        kwargs["nrows"], kwargs["ncols"] = ncols, 1
        gridspec = dict(kwargs.pop("gridspec_kw", None) or {})
        gridspec.pop("width_ratios", None)
        if gridspec:
            kwargs["gridspec_kw"] = gridspec
        kwargs.pop("width_ratios", None)
        panel = min(MAX_WIDTH, max(width / ncols * 1.5, 5.0))
        width, height = panel, height * ncols
    elif width > MAX_WIDTH:
        width, height = MAX_WIDTH, height * MAX_WIDTH / width
    return plt.subplots(figsize=(width, height), **kwargs)


#: Alt text that names a file instead of describing a figure: a path, a file name or
#: a bare hash (what a page shows when a figure has no description).
_NOT_A_DESCRIPTION = re.compile(
    r"""^\s*(?:\S*[/\\]\S*|\S+\.(?:png|jpe?g|gif|svg|pdf|webp)|[0-9a-f]{16,}(?:\.\w+)?)\s*$""",
    re.IGNORECASE)

#: Fewest characters of a useful description ("Line plot of loss against steps" has 31).
MIN_ALT_CHARS = 12


def check_alt(alt: object) -> str:
    """``alt`` if it describes a figure: a sentence, not empty, a path or a file name.

    Args:
        alt: the alt text.

    Returns:
        The text, stripped.

    Raises:
        TypeError: ``alt`` is not a string.
        ValueError: it is empty, shorter than :data:`MIN_ALT_CHARS` characters, a path
            or a file name.

    Example:
        >>> check_alt(" Heatmap of the 5 x 5 weights; every row peaks on the diagonal. ")
        'Heatmap of the 5 x 5 weights; every row peaks on the diagonal.'
        >>> check_alt("_images/3f2a9c.png")
        Traceback (most recent call last):
        ...
        ValueError: alt must describe what the figure shows, not name a file; got '_images/3f2a9c.png'
    """
    if not isinstance(alt, str):
        raise TypeError(f"alt must be a string; got {type(alt).__name__}")
    text = alt.strip()
    if _NOT_A_DESCRIPTION.match(text):
        raise ValueError(f"alt must describe what the figure shows, not name a file; got {text!r}")
    if len(text) < MIN_ALT_CHARS:
        raise ValueError(f"alt must describe what the figure shows in at least {MIN_ALT_CHARS} "
                         f"characters; got {text!r}")
    return text


class Described:
    """A figure with its alt text: displays as the figure, with ``alt`` in the output's metadata.

    Jupyter stores the metadata beside each image (``{"image/png": {"alt": ...}}``,
    and the same for the PDF copy), and
    the book's build (``book/_ext/attnkit_site.py``) turns it into the image's alt
    attribute on the website and its alternative text in the PDF.

    Args:
        fig: a Matplotlib figure (anything IPython displays as an image).
        alt: what the figure shows, for a reader who cannot see it (:func:`check_alt`).
    """

    def __init__(self, fig: Any, alt: str) -> None:
        self.fig = fig
        self.alt = check_alt(alt)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        from IPython.core.formatters import format_display_data

        data, metadata = format_display_data(self.fig, include=include, exclude=exclude)
        images = [mime for mime in data if mime.startswith("image/") or mime == "application/pdf"]
        if not images:
            raise ValueError(f"alt text describes an image; {type(self.fig).__name__} displays none")
        for mime in images:
            metadata[mime] = {**metadata.get(mime, {}), "alt": self.alt}
        return data, metadata


def described(fig: Any, alt: str) -> Described:
    """``fig`` with its alt text, for ``display()`` or ``glue()``.

    Raises:
        TypeError, ValueError: see :func:`check_alt`.
    """
    return Described(fig, alt)


def show(fig: Any, alt: str) -> None:
    """Show ``fig`` as a cell's output with its alt text, then close it.

    Use it instead of ``plt.show()``: the figure is displayed once, with
    ``alt`` stored beside the image (see :class:`Described`).

    Args:
        fig: a Matplotlib figure.
        alt: what the figure shows, written from its data where it is data.

    Raises:
        TypeError, ValueError: see :func:`check_alt`.
    """
    from IPython.display import display

    display(Described(fig, alt))
    try:
        import matplotlib.pyplot as plt

        plt.close(fig)
    except ImportError:  # pragma: no cover - a figure implies matplotlib
        pass
