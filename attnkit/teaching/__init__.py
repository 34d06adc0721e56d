"""Teaching helpers for the book: tables, heatmaps, explorers and figure style.

Nothing here is needed to compute attention; these turn computed arrays into what
a reader sees. Every explorer works in two places: live in Jupyter, and on the
static website with no kernel (precomputed views switched client-side).
"""

from .explorers import stepper, stepper2d
from .glued import glue, portable
from .html import heatmap_html, html_table
from .numbers import sci
from .plotting import check_alt, described, figure, show, style
from .primitives import agree, draw_weights, fmt_num, fmt_vec, superscript_power

__all__ = [
    "agree",
    "check_alt",
    "described",
    "draw_weights",
    "figure",
    "fmt_num",
    "fmt_vec",
    "glue",
    "heatmap_html",
    "html_table",
    "portable",
    "sci",
    "show",
    "stepper",
    "stepper2d",
    "style",
    "superscript_power",
]
