"""Accessibility checks shared by the browser tests: axe-core and the alt text of figures.

* :func:`audit` runs axe-core (the engine behind Lighthouse's accessibility audit,
  bundled by the PyPI package ``axe-playwright-python``) on an open page against the
  rules of WCAG 2.0, 2.1 and 2.2 at levels A and AA plus axe's best practices. The
  light mode runs every rule; the dark mode (switched on the same page, without a
  reload) runs only the rules that depend on colours. Impact ``serious`` or
  ``critical`` fails a test; ``moderate`` and ``minor`` go to the report that
  :func:`write_report` writes to ``artifacts/accessibility/``.
* Code blocks' syntax colours and MathJax's drawing are left out of the DOM audit for
  time (thousands of spans per chapter; the colour rule alone took 50 s on chapter
  10): the colours of code are checked from the site's ``pygments.css`` by
  ``test_code_colours_contrast`` instead, and formulas take the colour of the text
  around them. Their structure (scrollable code that a keyboard can reach, the
  MathML that a screen reader reads) is still checked.
* :func:`describes` is the rule for alt text: a description, not empty, not a path,
  not a file name (``attnkit.teaching.plotting.check_alt``, the rule the notebooks'
  ``alt=`` follows).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from axe_playwright_python.base import AXE_SCRIPT

from attnkit.teaching.plotting import check_alt

#: WCAG 2.2 level AA, with the rules of 2.0 and 2.1 it builds on, and axe's best practices.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
#: The rules whose result can change with the colour mode.
COLOUR_RULES = ["color-contrast", "link-in-text-block"]
FAILING = ("serious", "critical")

#: Left out of the DOM audit: the syntax-coloured tokens of code, MathJax's drawing.
_EXCLUDE_ALL = [[".highlight pre > span"]]
_EXCLUDE_COLOUR = [[".highlight"], ["mjx-container"]]

#: Every result, for the report: {(page, mode): [violation, ...]}.
RESULTS: dict[tuple[str, str], list[dict[str, Any]]] = {}


def _run(page: Any, exclude: list, options: dict) -> list[dict[str, Any]]:
    # No preload: axe would fetch the style sheets again, and resolves an @import of
    # the theme's against the site's root (a 404 that the console reports).
    options = {**options, "resultTypes": ["violations"], "preload": False}
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SCRIPT)
    found = page.evaluate(
        """([exclude, options]) => axe.run({include: [['html']], exclude}, options)
               .then(r => r.violations.map(v => ({
                   id: v.id, impact: v.impact, help: v.help, tags: v.tags,
                   nodes: v.nodes.map(n => ({target: n.target.join(' '),
                                             html: n.html.slice(0, 200),
                                             summary: (n.failureSummary || '').slice(0, 300)}))})))""",
        [exclude, options])
    return found


def audit(page: Any, path: str, mode: str) -> list[dict[str, Any]]:
    """Run axe on ``page`` (already open) in ``mode`` ("light": every rule; "dark": colours).

    Returns the violations (recorded for the report); the caller fails on
    :data:`FAILING` impacts.
    """
    if mode == "light":
        options = {"runOnly": {"type": "tag", "values": TAGS},
                   "rules": {r: {"enabled": False} for r in COLOUR_RULES}}
        exclude = _EXCLUDE_ALL
    else:
        options = {"runOnly": {"type": "rule", "values": COLOUR_RULES}}
        exclude = _EXCLUDE_COLOUR
    violations = _run(page, exclude, options)
    # The colour rule, light mode, without the excluded code and formulas.
    if mode == "light":
        colour = _run(page, _EXCLUDE_COLOUR, {"runOnly": {"type": "rule", "values": COLOUR_RULES}})
        violations += colour
    RESULTS[(path, mode)] = violations
    return violations


def failures(violations: list[dict[str, Any]]) -> list[str]:
    """One line per serious or critical violation: rule, impact, where, why."""
    lines = []
    for v in violations:
        if v["impact"] in FAILING:
            for n in v["nodes"][:5]:
                lines.append(f"{v['id']} ({v['impact']}): {n['target']}: {n['html'][:120]} -- "
                             f"{n['summary'][:200]}")
    return lines


def write_report(folder: Path) -> Path | None:
    """Write every page's violations: ``axe-report.md`` (readable) and ``axe-results.json``."""
    if not RESULTS:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    rows = sorted(RESULTS.items())
    (folder / "axe-results.json").write_text(json.dumps(
        [{"page": p, "mode": m, "violations": v} for (p, m), v in rows], indent=1), encoding="utf-8")
    lines = ["# Accessibility report (axe-core, WCAG 2.2 AA + best practices)", "",
             f"{len({p for p, _ in RESULTS})} pages; light mode: every rule; dark mode: colour rules.",
             "Serious and critical violations fail the browser tests; the rest are listed here.", ""]
    counts: dict[tuple[str, str], int] = {}
    for (_, _), found in rows:
        for v in found:
            key = (v["id"], v["impact"])
            counts[key] = counts.get(key, 0) + len(v["nodes"])
    lines += ["| rule | impact | elements (all pages, both modes) |", "|---|---|---|"]
    lines += [f"| {rule} | {impact} | {n} |" for (rule, impact), n in sorted(counts.items())]
    lines += ["", "## By page", ""]
    for (page, mode), found in rows:
        if not found:
            continue
        lines.append(f"### {page} ({mode})")
        for v in found:
            lines.append(f"- **{v['id']}** ({v['impact']}), {len(v['nodes'])} element(s): {v['help']}")
            for n in v["nodes"][:3]:
                lines.append(f"  - `{n['target']}`")
        lines.append("")
    report = folder / "axe-report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def describes(alt: str | None) -> bool:
    """Whether ``alt`` describes a figure (the rule of ``attnkit.teaching.plotting.check_alt``)."""
    try:
        check_alt(alt if alt is not None else "")
    except ValueError:
        return False
    return True
