r"""Sphinx extension: the book as one PDF (Sphinx's LaTeX builder, then XeLaTeX).

``make pdf`` builds the LaTeX sources from the committed outputs and typesets them
with ``latexmk -xelatex`` (Debian's TeX Live). What a printed notebook needs beyond
Sphinx's LaTeX writer, and what this extension does (for the LaTeX builder only):

* **HTML outputs as tables and text.** myst-nb gives the LaTeX builder no
  ``text/html``: a table that the book's cells display with ``HTML(...)`` would print
  as ``<IPython.core.display.HTML object>``. ``_config.yml`` lets myst-nb choose the
  HTML for LaTeX too, and :class:`PrintableOutputs` turns that HTML (the subset the
  teaching generators write: tables, captions, paragraphs, bold, italics, sub- and
  superscripts, line breaks, labelled drop-down lists) into docutils nodes: real
  tables in the PDF. Style sheets, scripts and the heatmaps' hover details are left out.
* **Widgets as a static view and a link.** An explorer (ipywidgets) is drawn from the
  notebook's saved widget state: its controls as text (the options, the one shown
  first), the view it shows first, and a line with the chapter's address on the
  website (``html_baseurl``, where set) and in Colab, where every view is.
* **Alt text of figures.** An image with alt text (``attnkit.teaching.show(fig,
  alt=...)``; see ``attnkit_site``) carries it in the PDF as its alternative text
  (``accsupp``'s ``/Alt``), which a PDF screen reader reads.
* **Numbers as on the site.** Sphinx numbers figures, theorems and equations through
  the whole book on the website; LaTeX would restart them in every chapter ("Fig.
  3.1"). Figures and tables count through the book (``numfig_secnum_depth = 0``),
  and each numbered equation gets the number the website shows, so "(19)" in the PDF is (19) on the site.
* **A book's structure.** The root page's table of contents sits inside one of its
  sections ("The chapters"), so Sphinx would make every chapter a section of it
  ("4.3 Why scale"). :class:`BookStructure` makes the root page an unnumbered
  introduction, each caption of the table of contents a part ("Chapters", "Back
  matter", "Exercises") and each page of it a chapter, numbered 1 to 12 as the text
  refers to them ("chapter 3 shows ..."); the bibliography is printed where the
  bibliography page is.
* **Print settings**: A4, long code lines wrapped, URLs in footnotes, fonts with
  Greek and mathematical symbols (FreeSerif, DejaVu Sans Mono for code), every font
  embedded (XeLaTeX embeds the subsets it uses).
"""

from __future__ import annotations

import html
import html.parser
import json
import re
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.writers.latex import LaTeXTranslator

#: Added to the LaTeX preamble (XeLaTeX).
PREAMBLE = r"""
% attnkit_pdf: alternative text of figures, numbering as on the website.
\usepackage{accsupp}
\hypersetup{pdflang={en}}
\newcounter{attnkitsecnumdepth}
% A figure and its caption fit on one page.
\makeatletter\AtBeginDocument{\spx@image@maxheight=0.82\textheight}\makeatother
% Subscript letters that FreeSerif and FreeSans lack (the title of chapter 3: d with subscript k).
\usepackage{newunicodechar}
\newunicodechar{ₕ}{\textsubscript{h}}\newunicodechar{ₖ}{\textsubscript{k}}
\newunicodechar{ₗ}{\textsubscript{l}}\newunicodechar{ₘ}{\textsubscript{m}}
\newunicodechar{ₙ}{\textsubscript{n}}\newunicodechar{ₚ}{\textsubscript{p}}
\newunicodechar{ₛ}{\textsubscript{s}}\newunicodechar{ₜ}{\textsubscript{t}}
\newunicodechar{ᵢ}{\textsubscript{i}}\newunicodechar{ⱼ}{\textsubscript{j}}
\newunicodechar{ᵥ}{\textsubscript{v}}\newunicodechar{ᵀ}{\textsuperscript{T}}
"""

#: Fonts: FreeSerif/FreeSans (Debian's fonts-freefont-otf) cover Greek, arrows and the
#: mathematical symbols of the prose; DejaVu Sans Mono (fonts-dejavu-core) the code.
FONTPKG = r"""
\setmainfont{FreeSerif}[Extension=.otf, UprightFont=*, ItalicFont=*Italic,
  BoldFont=*Bold, BoldItalicFont=*BoldItalic]
\setsansfont{FreeSans}[Extension=.otf, UprightFont=*, ItalicFont=*Oblique,
  BoldFont=*Bold, BoldItalicFont=*BoldOblique]
\setmonofont{DejaVu Sans Mono}[Scale=0.85]
"""

LATEX_ELEMENTS = {
    "papersize": "a4paper",
    "pointsize": "10pt",
    "fontpkg": FONTPKG,
    "preamble": PREAMBLE,
    # Code lines longer than the page wrap (at spaces, and anywhere if they must).
    "sphinxsetup": "verbatimwrapslines=true, verbatimforcewraps=true, verbatimmaxunderfull=2",
    "figure_align": "htbp",
    # Sphinx would title the contents after the first caption of the table of contents.
    "tableofcontents": "\\renewcommand{\\contentsname}{Contents}\n\\sphinxtableofcontents",
}


def _latex_defaults(app: Sphinx, config: Config) -> None:
    # Figures, tables and equations counted through the book, as the website counts
    # them (its table of contents is not numbered); LaTeX would restart each chapter.
    config.numfig_secnum_depth = 0
    elements = dict(LATEX_ELEMENTS)
    elements.update(config.latex_elements or {})
    if "preamble" in (config.latex_elements or {}):
        elements["preamble"] = PREAMBLE + config.latex_elements["preamble"]
    config.latex_elements = elements
    config.latex_show_urls = "footnote"
    # xindy is not in Debian's TeX packages the book installs; makeindex is.
    config.latex_use_xindy = False


# --------------------------------------------------------------------------- HTML subset

class _Element:
    __slots__ = ("tag", "attrs", "children")

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[_Element | str] = []

    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


_VOID = {"br", "hr", "img", "input", "meta", "link", "col", "wbr"}
_DROPPED = {"style", "script", "head", "title", "meta", "link"}
_DROPPED_CLASSES = {"attnkit-detail", "attnkit-hint"}
_BLOCK = {"div", "p", "table", "ul", "ol", "li", "label", "select", "section", "figure",
          "caption", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "hr", "details", "summary",
          "thead", "tbody", "tr", "dl", "dt", "dd", "blockquote"}


class _Parser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Element("root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = _Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(el)
        if tag not in _VOID:
            self.stack.append(el)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(markup: str) -> _Element:
    """A light DOM of ``markup`` (the HTML the book's cells display)."""
    parser = _Parser()
    parser.feed(markup)
    parser.close()
    return parser.root


def _skip(el: _Element) -> bool:
    return el.tag in _DROPPED or bool(_DROPPED_CLASSES & set(el.classes()))


def _selected(select: _Element) -> str:
    options = [o for o in select.children if isinstance(o, _Element) and o.tag == "option"]
    chosen = [o for o in options if "selected" in o.attrs] or options[:1]
    return " ".join(chosen[0].text().split()) if chosen else ""


def _inline(el: _Element | str) -> list[nodes.Node]:
    """Inline nodes for ``el`` (text, bold, italics, sub/superscripts, code, links)."""
    if isinstance(el, str):
        text = re.sub(r"\s+", " ", el)
        return [nodes.Text(text)] if text else []
    if _skip(el):
        return []
    if el.tag == "select":
        return [nodes.strong("", _selected(el))]
    inner = [n for c in el.children for n in _inline(c)]
    wrap = {"b": nodes.strong, "strong": nodes.strong, "i": nodes.emphasis, "em": nodes.emphasis,
            "sub": nodes.subscript, "sup": nodes.superscript, "code": nodes.literal,
            "tt": nodes.literal, "kbd": nodes.literal}.get(el.tag)
    if wrap is not None:
        return [wrap("", "", *inner)] if inner else []
    if el.tag == "a" and el.attrs.get("href", "").startswith(("http://", "https://")):
        return [nodes.reference("", "", *inner, refuri=el.attrs["href"])]
    if el.tag == "br":
        return [nodes.Text("\n")]
    return inner


def _paragraphs(inline: list[nodes.Node]) -> list[nodes.Node]:
    """Paragraphs from inline nodes, split at line breaks; empty ones dropped."""
    out: list[nodes.Node] = []
    current: list[nodes.Node] = []

    def flush() -> None:
        while current and isinstance(current[0], nodes.Text) and not current[0].strip():
            current.pop(0)
        if any(n.astext().strip() for n in current):
            out.append(nodes.paragraph("", "", *current))
        current.clear()

    for n in inline:
        if isinstance(n, nodes.Text) and "\n" in n:
            parts = str(n).split("\n")
            for k, part in enumerate(parts):
                if k:
                    flush()
                if part:
                    current.append(nodes.Text(part))
        else:
            current.append(n)
    flush()
    return out


def _rows(table: _Element) -> list[_Element]:
    rows = []
    for c in table.children:
        if isinstance(c, _Element):
            if c.tag == "tr":
                rows.append(c)
            elif c.tag in ("thead", "tbody", "tfoot"):
                rows += [r for r in c.children if isinstance(r, _Element) and r.tag == "tr"]
    return rows


def _cell(el: _Element) -> nodes.entry:
    content = [n for c in el.children for n in _inline(c)]
    if el.tag == "th":
        content = [nodes.strong("", "", *content)] if content else []
    entry = nodes.entry()
    entry += _paragraphs(content) or [nodes.paragraph()]
    return entry


def _table(el: _Element) -> list[nodes.Node]:
    out: list[nodes.Node] = []
    captions = [c for c in el.children if isinstance(c, _Element) and c.tag == "caption"]
    for cap in captions:
        out += _paragraphs([nodes.emphasis("", "", *_inline(cap))])
    rows = [[c for c in r.children if isinstance(c, _Element) and c.tag in ("td", "th")]
            for r in _rows(el)]
    rows = [r for r in rows if r]
    if not rows:
        return out
    ncols = max(len(r) for r in rows)
    table = nodes.table(classes=["attnkit-output-table"] + (["longtable"] if len(rows) > 30 else []))
    group = nodes.tgroup(cols=ncols)
    table += group
    for _ in range(ncols):
        group += nodes.colspec(colwidth=1)
    body = nodes.tbody()
    group += body
    for r in rows:
        row = nodes.row()
        for c in r:
            row += _cell(c)
        for _ in range(ncols - len(r)):
            row += nodes.entry("", nodes.paragraph())
        body += row
    out.append(table)
    return out


def html_to_nodes(markup: str) -> list[nodes.Node]:
    """Docutils nodes (paragraphs, tables) for the HTML ``markup`` of a cell's output.

    Example:
        >>> [n.tagname for n in html_to_nodes("<b>Step 1</b><table><tr><th>a</th><td>1</td></tr></table>")]
        ['paragraph', 'table']
    """
    return _blocks(parse_html(markup))


def _blocks(el: _Element) -> list[nodes.Node]:
    out: list[nodes.Node] = []
    pending: list[nodes.Node] = []

    def flush() -> None:
        out.extend(_paragraphs(pending))
        pending.clear()

    for c in el.children:
        if isinstance(c, _Element) and _skip(c):
            continue
        if isinstance(c, _Element) and c.tag == "table":
            flush()
            out += _table(c)
        elif isinstance(c, _Element) and c.tag == "label" and any(
                isinstance(k, _Element) and k.tag == "select" for k in c.children):
            flush()
            name = " ".join("".join(k for k in c.children if isinstance(k, str)).split())
            select = next(k for k in c.children if isinstance(k, _Element) and k.tag == "select")
            out.append(nodes.paragraph("", "", nodes.Text(f"{name}: "), nodes.strong("", _selected(select))))
        elif isinstance(c, _Element) and c.tag in ("ul", "ol"):
            flush()
            items = nodes.bullet_list() if c.tag == "ul" else nodes.enumerated_list()
            for li in c.children:
                if isinstance(li, _Element) and li.tag == "li":
                    items += nodes.list_item("", *(_blocks(li) or [nodes.paragraph()]))
            out.append(items)
        elif isinstance(c, _Element) and c.tag in _BLOCK:
            flush()
            out += _blocks(c)
        else:
            pending += _inline(c)
    flush()
    return out


# --------------------------------------------------------------------------- widgets

_WIDGET_VIEW = re.compile(r'<script type="application/vnd\.jupyter\.widget-view\+json">(.*?)</script>', re.S)
_CONTROLS = ("ToggleButtonsModel", "SelectionSliderModel", "DropdownModel", "RadioButtonsModel",
             "SelectionRangeSliderModel", "SelectModel")


def _model(state: dict, ref: Any) -> dict | None:
    key = str(ref).removeprefix("IPY_MODEL_")
    return state.get(key)


def widget_static_view(state: dict, model_id: str) -> list[nodes.Node]:
    """The first view of widget ``model_id`` from the notebook's saved widget ``state``.

    Controls become a line of text (description, options, the one shown); an HTML
    widget becomes its converted HTML; a ``Stack`` shows its selected child.
    """
    model = _model(state, model_id)
    if model is None:
        return []
    name, s = model.get("model_name", ""), model.get("state", {})
    if name in ("VBoxModel", "HBoxModel", "BoxModel", "GridBoxModel"):
        return [n for child in s.get("children", []) for n in widget_static_view(state, child)]
    if name == "StackModel":
        children = s.get("children", [])
        index = s.get("selected_index") or 0
        return widget_static_view(state, children[index]) if 0 <= index < len(children) else []
    if name in ("HTMLModel", "HTMLMathModel"):
        return html_to_nodes(s.get("value", ""))
    if name == "LabelModel":
        return _paragraphs([nodes.Text(s.get("value", ""))])
    if name in _CONTROLS:
        labels = s.get("_options_labels", [])
        index = s.get("index")
        shown = labels[index] if isinstance(index, int) and 0 <= index < len(labels) else ""
        described = (s.get("description") or "choice").rstrip(":")
        para = nodes.paragraph("", "", nodes.strong("", f"{described}: "),
                               nodes.Text(" · ".join(labels)), nodes.Text(" (shown: "),
                               nodes.emphasis("", shown), nodes.Text(")"))
        return [para]
    return []


def _widget_state(env: Any, docname: str) -> dict:
    try:
        from myst_nb.sphinx_ import NbMetadataCollector
    except ImportError:  # pragma: no cover - myst-nb is the book's parser
        return {}
    files = NbMetadataCollector.get_js_files(env, docname)
    entry = files.get("ipywidgets_state")
    if not entry:
        return {}
    return json.loads(html.unescape(entry[1].get("body", "{}"))).get("state", {})


def _links(app: Sphinx, docname: str) -> list[nodes.Node]:
    """Where every view of an explorer is: the page on the website, the notebook in Colab."""
    links: list[nodes.Node] = []
    base = (app.config.html_baseurl or "").rstrip("/")
    if base:
        url = f"{base}/{docname}.html"
        links.append(nodes.reference("", "the book's website", refuri=url))
    options = app.config.html_theme_options or {}
    repo = (options.get("repository_url") or "").rstrip("/")
    colab = ((options.get("launch_buttons") or {}).get("colab_url") or "").rstrip("/")
    if repo.startswith("https://github.com/") and colab:
        branch = options.get("repository_branch") or "main"
        folder = (options.get("path_to_docs") or "").strip("./")
        path = "/".join(p for p in (folder, f"{docname}.ipynb") if p)
        url = f"{colab}/github/{repo.removeprefix('https://github.com/')}/blob/{branch}/{path}"
        links.append(nodes.reference("", "the notebook in Colab", refuri=url))
    return links


def _interactive_note(app: Sphinx, docname: str) -> nodes.Node:
    links = _links(app, docname)
    para = nodes.paragraph(classes=["attnkit-interactive-note"])
    para += nodes.emphasis("", "An interactive explorer: the printed view is its first setting. Every "
                               "setting can be explored in ")
    for k, link in enumerate(links):
        if k:
            para += nodes.emphasis("", " or in ")
        para += link
    if not links:
        para += nodes.emphasis("", "the book's website")
    para += nodes.emphasis("", ".")
    return para


class PrintableOutputs(SphinxPostTransform):
    """For the LaTeX builder: HTML outputs as tables and text, widgets as a static view and a link."""

    default_priority = 199
    formats = ("latex",)

    def run(self, **kwargs: Any) -> None:
        """Replace each raw HTML node with its printable nodes."""
        for raw in list(self.document.findall(nodes.raw)):
            if "html" not in raw.get("format", "").split():
                continue
            docname = self._docname(raw)
            markup = raw.astext()
            view = _WIDGET_VIEW.search(markup)
            if view:
                model_id = json.loads(html.unescape(view.group(1))).get("model_id", "")
                replacement = widget_static_view(_widget_state(self.env, docname), model_id)
                replacement.append(_interactive_note(self.app, docname))
            else:
                replacement = html_to_nodes(markup)
                if "<select" in markup and "<script" in markup:  # a plain-HTML explorer
                    replacement.append(_interactive_note(self.app, docname))
            container = nodes.container("", *replacement, classes=["attnkit-printed-output"])
            raw.replace_self(container if replacement else [])

    def _docname(self, node: nodes.Node) -> str:
        """The page ``node`` comes from, in the one document LaTeX gets.

        Sphinx inlines a page by moving its document's children into a
        ``start_of_file`` node without re-parenting them, so walking up from a node of
        that page ends at the page's own document, whose ``source`` names it.
        """
        while node is not None:
            if isinstance(node, addnodes.start_of_file):
                return node["docname"]
            if isinstance(node, nodes.document) and node.get("source"):
                return self.env.path2doc(node["source"]) or self.env.docname
            node = node.parent
        return self.env.docname


def _top_level_files(node: nodes.Node) -> list[addnodes.start_of_file]:
    """The pages included by ``node``'s table of contents (not those nested in them)."""
    found = []
    for child in node.children:
        if isinstance(child, addnodes.start_of_file):
            found.append(child)
        elif isinstance(child, nodes.Element):
            found += _top_level_files(child)
    return found


def _latex(text: str) -> nodes.raw:
    return nodes.raw("", text + "\n", format="latex")


class BookStructure(SphinxPostTransform):
    """For the LaTeX builder: an unnumbered introduction, then parts of chapters (see module doc)."""

    default_priority = 198
    formats = ("latex",)

    def run(self, **kwargs: Any) -> None:
        """Restructure the one document the LaTeX builder assembled from the root page."""
        root = self.config.root_doc
        if self.env.docname != root:
            return
        title_section = next((c for c in self.document.children if isinstance(c, nodes.section)), None)
        if title_section is None:
            return
        captions = {}
        for toctree in self.env.get_doctree(root).findall(addnodes.toctree):
            for included in toctree.get("includefiles", []):
                captions[str(included)] = toctree.get("caption")
        # The root page's own tables of contents (not those of the pages they include).
        wrappers = [w for w in title_section.findall(nodes.compound)
                    if "toctree-wrapper" in w.get("classes", []) and _top_level_files(w)
                    and _top_level_files(w)[0]["docname"] in captions]
        if not wrappers:
            return
        parts = []
        for wrapper in wrappers:
            files = _top_level_files(wrapper)
            parts.append((captions.get(files[0]["docname"]), files))
            wrapper.parent.remove(wrapper)
        # The root page: its title is the book's; the rest is an unnumbered introduction.
        title = title_section.children[0] if isinstance(title_section.children[0], nodes.title) else None
        body = [c for c in title_section.children if c is not title]
        intro = nodes.section(ids=["attnkit-introduction"], names=["introduction"])
        intro += nodes.title("", "Introduction")
        for c in body:
            title_section.remove(c)
            intro += c
        title_section += _latex("\\setcounter{attnkitsecnumdepth}{\\value{secnumdepth}}"
                                "\\setcounter{secnumdepth}{-1}")
        title_section += intro
        first = True
        for caption, files in parts:
            if first:
                title_section += _latex("\\setcounter{secnumdepth}{\\value{attnkitsecnumdepth}}")
                first = False
            if caption:
                title_section += _latex(f"\\part{{{_tex_escape(caption)}}}")
            for f in files:
                if f.parent is not None:
                    f.parent.remove(f)
                title_section += f


class BibliographyInPlace(SphinxPostTransform):
    """For the LaTeX builder: the bibliography where the bibliography page is, not after the exercises."""

    default_priority = 760  # after Sphinx's BibliographyTransform (750) gathered the citations
    formats = ("latex",)

    def run(self, **kwargs: Any) -> None:
        """Move the gathered references to the bibliography page's place."""
        from sphinx.builders.latex.nodes import thebibliography

        bibliography = next(iter(self.document.findall(thebibliography)), None)
        if bibliography is None:
            return
        for page in self.document.findall(addnodes.start_of_file):
            sections = [c for c in page.children if isinstance(c, nodes.section)]
            if len(sections) != 1 or "bibliograph" not in page["docname"]:
                continue
            content = [c for c in sections[0].children
                       if not isinstance(c, (nodes.title, nodes.target, nodes.comment))]
            if any(c.astext().strip() for c in content):
                continue  # the page says more than its list of references: leave it
            bibliography.parent.remove(bibliography)
            page.replace(sections[0], bibliography)
            return


# --------------------------------------------------------------------------- LaTeX visitors

_TEX_WORDS = {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_escape(text: str) -> str:
    """``text`` on one line, with TeX's special characters escaped."""
    return re.sub(r"([\\{}$&#^_%~])", lambda m: _TEX_WORDS.get(m.group(1), "\\" + m.group(1)),
                  " ".join(text.split()))


def visit_image(self: LaTeXTranslator, node: nodes.image) -> None:
    """Sphinx's image, wrapped so that its alt text is the PDF's alternative text."""
    alt = node.get("alt")
    described = bool(alt) and not str(node.get("uri", "")).endswith(str(alt))
    if described:
        self.body.append(r"\BeginAccSupp{method=pdfstringdef,Alt={" + _tex_escape(str(alt)) + "}}")
    LaTeXTranslator.visit_image(self, node)
    if described:
        self.body.append(r"\EndAccSupp{}")


def depart_image(self: LaTeXTranslator, node: nodes.image) -> None:
    """Sphinx's own."""
    LaTeXTranslator.depart_image(self, node)


def visit_math_block(self: LaTeXTranslator, node: nodes.math_block) -> None:
    r"""Sphinx's display math, numbered with the number the website shows.

    The equation counter is set just before a numbered equation, so LaTeX prints the
    site's number and hyperref's anchor stays unique (a ``\tag`` would leave the
    counter, and two equations would share an anchor).
    """
    number = equation_number(self.builder.env, node)
    if number.isdigit() and node.get("label"):
        self.body.append(f"\\setcounter{{equation}}{{{int(number) - 1}}}")
    LaTeXTranslator.visit_math_block(self, node)


def equation_number(env: Any, node: nodes.Element) -> str:
    """The number Sphinx gives equation ``node`` on the website ("19"), or ""."""
    ids = node.get("ids") or []
    if not ids:
        return ""
    numbers = env.toc_fignumbers.get(node.get("docname", ""), {}).get("displaymath", {})
    return ".".join(map(str, numbers.get(ids[0], ())))


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the extension (see the module docstring)."""
    app.connect("config-inited", _latex_defaults)
    app.add_post_transform(BookStructure)
    app.add_post_transform(PrintableOutputs)
    app.add_post_transform(BibliographyInPlace)
    app.add_node(nodes.image, override=True, latex=(visit_image, depart_image))
    app.add_node(nodes.math_block, override=True, latex=(visit_math_block, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}
