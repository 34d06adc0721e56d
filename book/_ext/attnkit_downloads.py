"""Sphinx extension: the page's download button gives the notebook the page was built from.

The book sets ``html_copy_source: false`` so that no raw source is published
under ``_sources/``. The theme's "download source" button would then point at a
missing file. This extension publishes, for each page, exactly one file:

* for a notebook page, the notebook as executed for this build (the outputs the
  page shows), so a reader downloads what they see;
* for a Markdown page, its source.

Exercise pages are student notebooks (no solutions, no hidden tests), so what is
downloaded from them is what a student should get.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx


def _set_source(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    if doctree is None or pagename not in app.env.found_docs:
        return
    src = Path(app.env.doc2path(pagename))
    suffix = src.suffix
    if suffix not in (".ipynb", ".md"):
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    # An exercise page is a student notebook: offer exactly that file (never executed).
    is_exercise = pagename.startswith("book/exercises/")
    chosen = executed if suffix == ".ipynb" and executed.exists() and not is_exercise else src
    dest = Path(app.outdir) / "_sources" / f"{pagename}{suffix}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(chosen, dest)
    context["sourcename"] = f"{pagename}{suffix}"
    context["page_source_suffix"] = suffix


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the extension with Sphinx."""
    # Before sphinx-book-theme builds its header buttons (priority 501).
    app.connect("html-page-context", _set_source, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}
