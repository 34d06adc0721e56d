"""Explorers that work live in Jupyter *and* on the static website.

A static page has no kernel, so nothing can be recomputed there. These explorers
therefore precompute every view (HTML strings) and show one at a time in an
``ipywidgets.Stack``; the control is tied to the stack with ``widgets.jsdlink`` (one way),
which runs in the browser. The same widget works in Jupyter, where it is live.

DOM classes for tests and styling: the explorer box has ``attnkit-explorer``, the
stack of views ``attnkit-stack`` and each control ``attnkit-control``; each view is
wrapped in a ``div.attnkit-view``.

Keyboard and screen readers: every control has a description, which the website
makes its accessible name (``book/_vendor/static/site/attnkit.js``: a row of buttons
is a labelled group whose buttons say whether they are pressed and answer the arrow
keys; a slider's handle is labelled and its value text is the option shown). Each
view is a focusable region named after the choice it shows ("mask: causal"), so a
view wider than the screen scrolls with the keyboard, and a screen reader can read it.
"""

from __future__ import annotations

import html as _html
from collections.abc import Sequence
from typing import Any

from ..core._validate import choice


def _widgets() -> Any:
    import ipywidgets as widgets

    return widgets


def _control(labels: Sequence[str], description: str, kind: str) -> Any:
    choice("kind", kind, ("buttons", "slider"))
    widgets = _widgets()
    if kind == "buttons":
        return widgets.ToggleButtons(
            options=[(str(lab), i) for i, lab in enumerate(labels)],
            value=0,
            description=description,
            style={"button_width": "auto", "description_width": "initial"},
        )
    return widgets.SelectionSlider(
        options=[(str(lab), i) for i, lab in enumerate(labels)],
        value=0,
        description=description,
        continuous_update=True,
        style={"description_width": "initial"},
        layout=widgets.Layout(width="32em"),
    )


def _view(content: str, name: str) -> str:
    """One view, as a focusable region named ``name`` (what the controls chose)."""
    return (f'<div class="attnkit-view" role="region" tabindex="0" aria-label="{_html.escape(name)}">'
            f"{content}</div>")


def _name(description: str, label: object) -> str:
    described = description.strip().rstrip(":")
    return f"{described}: {label}" if described else f"view {label}"


def _box(children: list, classes: tuple[str, ...] = ("attnkit-explorer",)) -> Any:
    widgets = _widgets()
    box = widgets.VBox(children, layout=widgets.Layout(border="1px solid #cccccc", padding="6px"))
    for c in classes:
        box.add_class(c)
    return box


def _link(control: Any, stack: Any) -> None:
    widgets = _widgets()
    # SelectionSlider/ToggleButtons expose the chosen position as `index`. One way,
    # control to stack: a two-way link echoes each change back to the control, and a
    # reader who presses an arrow key several times quickly could see the control
    # jump back to an earlier option.
    widgets.jsdlink((control, "index"), (stack, "selected_index"))


def stepper(
    views: Sequence[str],
    labels: Sequence[str],
    *,
    description: str = "",
    kind: str = "buttons",
    title: str | None = None,
) -> Any:
    """A control that switches between precomputed HTML ``views``.

    Args:
        views: one HTML string per position.
        labels: one label per view (the control's options).
        description: the control's label, also its accessible name (give one: a
            control without a name cannot be told apart by a screen reader).
        kind: ``"buttons"`` (toggle buttons) or ``"slider"``.
        title: optional HTML shown above the control.

    Returns:
        An ``ipywidgets.VBox``; display it as a cell's last expression.
    """
    if len(views) != len(labels) or not views:
        raise ValueError(
            f"views and labels must be non-empty and of equal length; got {len(views)} and {len(labels)}"
        )
    widgets = _widgets()
    control = _control(labels, description, kind)
    control.add_class("attnkit-control")
    stack = widgets.Stack([widgets.HTML(_view(v, _name(description, lab))) for v, lab in zip(views, labels)],
                          selected_index=0)
    stack.add_class("attnkit-stack")
    _link(control, stack)
    children = ([widgets.HTML(title)] if title else []) + [control, stack]
    return _box(children)


def stepper2d(
    views: Sequence[Sequence[str]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    row_description: str = "",
    col_description: str = "",
    row_kind: str = "buttons",
    col_kind: str = "slider",
    title: str | None = None,
) -> Any:
    """Two linked controls over a grid of precomputed views ``views[i][j]``.

    The first control picks the row ``i`` (an outer stack); the second picks the
    column ``j`` and is linked to every inner stack, so both work client-side.
    """
    if len(views) != len(row_labels) or any(len(r) != len(col_labels) for r in views):
        raise ValueError("views must have len(row_labels) rows of len(col_labels) views each")
    widgets = _widgets()
    row_control = _control(row_labels, row_description, row_kind)
    col_control = _control(col_labels, col_description, col_kind)
    row_control.add_class("attnkit-control")
    col_control.add_class("attnkit-control")
    inner = []
    for row, row_label in zip(views, row_labels):
        stack = widgets.Stack([
            widgets.HTML(_view(v, f"{_name(row_description, row_label)}, "
                                  f"{_name(col_description, col_label)}"))
            for v, col_label in zip(row, col_labels)], selected_index=0)
        _link(col_control, stack)
        inner.append(stack)
    outer = widgets.Stack(inner, selected_index=0)
    outer.add_class("attnkit-stack")
    _link(row_control, outer)
    children = ([widgets.HTML(title)] if title else []) + [row_control, col_control, outer]
    return _box(children)
