"""Sphinx extension: the reader's side of the website (weight, console, back matter).

What it does, and why:

* **MathJax from parts, not the 1.2 MB bundle.** ``tex-chtml.js`` carries the
  accessibility menu and every input format. The book needs TeX with ``ams``,
  CommonHTML output and the hidden MathML that screen readers read; the loader
  fetches just those components. Only the files those components need are
  copied into the site (the PyPI package ``sphinx-mathjax-offline`` is the source
  of the files; its own extension would copy all 24 MB).
* **No second icon library.** The theme's CSS already draws every Font Awesome
  icon from its web fonts; the theme also loads ``fontawesome.js`` (1.5 MB), which
  redraws the same icons as SVG. The page template leaves that script out
  (``book/_templates/layout.html`` applies the ``attnkit_drop_fontawesome`` filter).
* **No Thebe.** Live code needs a server that this static site does not have; its
  two inline scripts declared ``THEBE_JS_URL`` twice (a console error on every page).
* **A default colour mode** (``auto``): the theme logged "invalid theme mode" without one.
* **The site's own CSS and JS** (``_static/site/``; not ``attnkit/``, a name
  that the exclude patterns of ``_config.yml`` drop from static files): phone layout of the
  explorers, dark-mode legibility of HTML outputs, tap-to-explain heatmap cells,
  a highlighted citation target, search snippets without TeX, figures that open
  full size, and a MathJax 2 ``Hub.Queue`` for the widget manager.
* **Author-year bibliography labels** (``bibtex_default_style: authoryear``), matching
  the author-year citations in the text.
* **A download button on each exercise page**, for that page's student notebook.
* **Names for what a screen reader meets on every page** (WCAG 2.2 AA, checked by
  axe-core in ``tests/browser``): each expand/collapse arrow of the navigation
  (a ``<summary>`` holding only an icon) is named after its section; the
  bibliography's entries are list items (docutils marks them with the deprecated
  ``doc-biblioentry`` role inside a ``role="list"``, which a list may not hold).
* **Figures described.** A figure's alt text is written in the notebook beside the
  code that draws it (``attnkit.teaching.show(fig, alt=...)``,
  ``glue(name, fig, alt=...)``), which stores it in the output's metadata
  (``{"image/png": {"alt": ...}}``). myst-nb copies only ``width`` and ``height``
  from there, so the image would get its file path as alt text; this extension
  wraps myst-nb's image renderer to copy ``alt`` too (a ``{glue:figure}`` directive's
  own ``:alt:`` still wins). The PDF carries the same text (``attnkit_pdf``).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

#: MathJax 3 components the pages load (see ``mathjax3_config.loader`` in _config.yml).
MATHJAX_FILES = [
    "startup.js",
    "core.js",
    "input/tex-base.js",
    "input/tex/extensions/ams.js",
    "input/tex/extensions/newcommand.js",
    "input/tex/extensions/noundefined.js",
    "output/chtml.js",
    "output/chtml/fonts/tex.js",
    "output/chtml/fonts/woff-v2",
    "a11y/assistive-mml.js",
]

_FONTAWESOME_JS = re.compile(r'\s*<script src="[^"]*_static/scripts/fontawesome\.js[^"]*"></script>')
_THEBE = re.compile(r"THEBE_JS_URL|sphinx-thebe")


def drop_fontawesome(markup: str) -> str:
    """Remove the theme's ``fontawesome.js`` script tag from rendered head markup."""
    return _FONTAWESOME_JS.sub("", str(markup))


def _mathjax_source() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("the MathJax files come from the package sphinx-mathjax-offline; install it")
    return Path(spec.origin).parent / "static" / "mathjax"


def _copy_mathjax(app: Sphinx, exc: Exception | None) -> None:
    if exc is not None or app.builder.format != "html":
        return
    src = _mathjax_source()
    dest = Path(app.outdir) / "_static" / "mathjax"
    if dest.exists():
        shutil.rmtree(dest)
    for rel in MATHJAX_FILES:
        s, d = src / rel, dest / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, d)
        else:
            shutil.copyfile(s, d)


def _builder_inited(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    app.builder.templates.environment.filters["attnkit_drop_fontawesome"] = drop_fontawesome
    # The colour mode of a first visit: the reader's system setting. Without one the
    # theme logs "invalid theme mode" on every page.
    app.config.html_context.setdefault("default_mode", "auto")


def _remove_unused_files(app: Sphinx, exc: Exception | None) -> None:
    if exc is not None or app.builder.format != "html":
        return
    scripts = Path(app.outdir) / "_static" / "scripts"
    for p in scripts.glob("fontawesome.js*"):
        p.unlink()
    for p in (Path(app.outdir) / "_static").glob("sphinx-thebe.*"):
        p.unlink()


def _without_thebe(files: Iterable[Any]) -> list[Any]:
    kept = []
    for f in files:
        name = str(getattr(f, "filename", f) or "")
        body = str(getattr(f, "attributes", {}).get("body", "") if hasattr(f, "attributes") else "")
        if _THEBE.search(name) or _THEBE.search(body):
            continue
        kept.append(f)
    return kept


def _exercise_button(app: Sphinx, pagename: str) -> str:
    name = pagename.rsplit("/", 1)[-1]
    href = app.builder.get_relative_uri(pagename, "index").rsplit("index", 1)[0]
    return (
        '<p class="attnkit-download-exercise">'
        f'<a class="btn btn-primary" href="{href}_sources/{pagename}.ipynb" download="{name}.ipynb">'
        f'<i class="fa-solid fa-download"></i> Download the notebook {name}.ipynb</a>'
        " to work on these exercises in Jupyter.</p>"
    )


#: A navigation entry with sections: its link (``current`` too, on the entry's own page),
#: then a <summary> with only an icon.
_NAV_SUMMARY = re.compile(
    r'(<a class="(?:current )?reference internal" href="[^"]*">(?P<title>(?:(?!</a>).)*)</a>\s*'
    r"<details[^>]*>\s*)<summary>", re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")


def name_nav_toggles(markup: str) -> str:
    """Give each expand/collapse ``<summary>`` of the navigation the name of its section.

    Example:
        >>> name_nav_toggles('<a class="reference internal" href="x.html">Exercises</a>'
        ...                  '<details><summary><i></i></summary>').split("<details>")[1]
        '<summary aria-label="Show or hide the sections of Exercises"><i></i></summary>'
        >>> name_nav_toggles('<a class="current reference internal" href="#">API reference</a>'
        ...                  '<details open="open"><summary><i></i></summary>').split('open">')[1]
        '<summary aria-label="Show or hide the sections of API reference"><i></i></summary>'
    """
    def named(m: re.Match) -> str:
        title = " ".join(_TAGS.sub("", m.group("title")).split()).replace('"', "&quot;")
        return f'{m.group(1)}<summary aria-label="Show or hide the sections of {title}">'

    return _NAV_SUMMARY.sub(named, str(markup))


def bibliography_as_list(body: str) -> str:
    """The bibliography's entries as list items of their ``role="list"`` container."""
    return body.replace('role="doc-biblioentry"', 'role="listitem"')


def _named_toctree(generate: Any) -> Any:
    def generate_named(*args: Any, **kwargs: Any) -> str:
        return name_nav_toggles(generate(*args, **kwargs))

    generate_named.attnkit_named = True  # type: ignore[attr-defined]
    return generate_named


def _page_context(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    generate = context.get("generate_toctree_html")
    if callable(generate) and not getattr(generate, "attnkit_named", False):
        context["generate_toctree_html"] = _named_toctree(generate)
    if "body" in context and 'role="doc-biblioentry"' in context["body"]:
        context["body"] = bibliography_as_list(context["body"])
    if "script_files" in context:
        context["script_files"] = _without_thebe(context["script_files"])
    if "css_files" in context:
        context["css_files"] = _without_thebe(context["css_files"])
    if re.fullmatch(r"book/exercises/ch\d\d", pagename) and "body" in context:
        context["body"] = _exercise_button(app, pagename) + context["body"]


def _alt_from_output_metadata() -> None:
    """Make myst-nb give an image output the ``alt`` stored in its output metadata."""
    from docutils import nodes
    from myst_nb.core.render import NbElementRenderer

    original = NbElementRenderer.render_image
    if getattr(original, "attnkit_alt", False):
        return

    def render_image(self: Any, data: Any) -> list:
        rendered = original(self, data)
        alt = (data.output_metadata.get(data.mime_type) or {}).get("alt")
        if alt:
            for node in rendered:
                if isinstance(node, nodes.image) and not node.get("alt"):
                    node["alt"] = str(alt)
        return rendered

    render_image.attnkit_alt = True  # type: ignore[attr-defined]
    NbElementRenderer.render_image = render_image  # type: ignore[method-assign]


def _register_bibtex_style() -> None:
    from pybtex.plugin import register_plugin
    from pybtex.style.formatting.plain import Style as PlainStyle
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        """Labels like "Vaswani et al., 2017", with a/b suffixes for clashes."""

        def format_labels(self, sorted_entries: Iterable[Any]) -> Iterable[str]:
            entries = list(sorted_entries)
            labels = [self._label(e) for e in entries]
            seen: dict[str, int] = {}
            for lab in labels:
                seen[lab] = seen.get(lab, 0) + 1
            count: dict[str, int] = {}
            for lab in labels:
                if seen[lab] > 1:
                    count[lab] = count.get(lab, 0) + 1
                    lab = f"{lab}{chr(ord('a') + count[lab] - 1)}"
                yield lab

        @staticmethod
        def _label(entry: Any) -> str:
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            last = ["".join(p.last_names).replace("{", "").replace("}", "") for p in people]
            year = entry.fields.get("year", "n.d.")
            if not last:
                who = entry.key
            elif len(last) == 1:
                who = last[0]
            elif len(last) == 2:
                who = f"{last[0]} and {last[1]}"
            else:
                who = f"{last[0]} et al."
            return f"{who}, {year}"

    class AuthorYearStyle(PlainStyle):
        default_label_style = "authoryear"
        default_sorting_style = "author_year_title"

    register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels, force=True)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle, force=True)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the extension with Sphinx (see the module docstring for what it does)."""
    _register_bibtex_style()
    _alt_from_output_metadata()
    app.config.mathjax_path = "mathjax/startup.js"
    app.connect("builder-inited", _builder_inited)
    # After myst-nb and the theme have added their files (default priority 500).
    app.connect("html-page-context", _page_context, priority=900)
    app.connect("build-finished", _copy_mathjax)
    app.connect("build-finished", _remove_unused_files)
    # Loaded first and not deferred: the MathJax 2 shim must exist before the widget manager.
    app.add_js_file("site/attnkit.js", priority=150)
    app.add_css_file("site/attnkit.css", priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}
