"""Accessibility checks shared by the browser tests: axe-core and the alt text of figures.

* :func:`audit` runs axe-core (the engine behind Lighthouse's accessibility audit,
  bundled by the PyPI package ``axe-playwright-python``) on an open page against the
  rules of WCAG 2.0, 2.1 and 2.2 at levels A and AA plus axe's best practices. The
  light mode runs every rule; the dark mode (switched on the same page, without a
  reload) runs only the rules that depend on colours. Impact ``serious`` or
  ``critical`` fails a test; ``moderate`` and ``minor`` go to the report that
  :func:`write_report` writes to ``artifacts/accessibility/``.
* Before axe runs, :func:`simplify_for_audit` empties MathJax's drawing of each formula
  and the syntax-colour spans of each code block: thousands of elements per chapter
  that axe would walk for every rule (chapter 10 took 43 s instead of 9), and that no
  rule can fault once two things hold, which it asserts first: the drawing is hidden
  from screen readers (``aria-hidden``; the MathML they read stays) and holds nothing
  focusable, and a code block's spans carry no role, name or focus of their own. The
  formula's box and the code block themselves stay, with their text and sizes, so
  their structure is audited (a wide formula or a long code line must be reachable by
  keyboard), and so is the code's base colour; the colours of the tokens are checked
  from the site's ``pygments.css`` by ``test_code_colours_contrast``, and formulas
  take the colour of the text around them.
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

#: Every result, for the report: {(page, mode): [violation, ...]}.
RESULTS: dict[tuple[str, str], list[dict[str, Any]]] = {}


def _run(page: Any, options: dict) -> list[dict[str, Any]]:
    # No preload: axe would fetch the style sheets again, and resolves an @import of
    # the theme's against the site's root (a 404 that the console reports).
    options = {**options, "resultTypes": ["violations"], "preload": False}
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SCRIPT)
    found = page.evaluate(
        """(options) => axe.run(document, options)
               .then(r => r.violations.map(v => ({
                   id: v.id, impact: v.impact, help: v.help, tags: v.tags,
                   nodes: v.nodes.map(n => ({target: n.target.join(' '),
                                             html: n.html.slice(0, 200),
                                             summary: (n.failureSummary || '').slice(0, 300)}))})))""",
        options)
    return found


def simplify_for_audit(page: Any) -> None:
    """Empty what no axe rule can fault, after checking that it cannot (module docstring).

    Raises:
        AssertionError: a formula's drawing is not hidden from screen readers or holds
            something focusable, or a code block's token has a role, name or tab stop.
    """
    wrong = page.evaluate(
        """() => {
            const focusable = 'a[href], button, input, select, textarea, [tabindex], [contenteditable]';
            const bad = [];
            document.querySelectorAll('mjx-container > mjx-math').forEach(m => {
                if (m.getAttribute('aria-hidden') !== 'true' || m.querySelector(focusable))
                    bad.push('formula: ' + m.parentElement.textContent.slice(0, 40));
            });
            document.querySelectorAll('.highlight pre').forEach(p => {
                if (p.querySelector('[role], [aria-label], [aria-labelledby], ' + focusable))
                    bad.push('code: ' + p.textContent.slice(0, 40));
            });
            return bad;
        }""")
    assert not wrong, f"left out of the audit but not inert: {wrong[:5]}"
    page.evaluate(
        """() => {
            document.querySelectorAll('mjx-container > mjx-math').forEach(m => m.replaceChildren());
            document.querySelectorAll('.highlight pre').forEach(p => { p.textContent = p.textContent; });
        }""")


def audit(page: Any, path: str, mode: str) -> list[dict[str, Any]]:
    """Run axe on ``page`` (open, :func:`simplify_for_audit` applied) in ``mode``.

    "light": every rule of :data:`TAGS`; "dark": the colour rules. Returns the
    violations (recorded for the report); the caller fails on :data:`FAILING` impacts.
    """
    if mode == "light":
        options = {"runOnly": {"type": "tag", "values": TAGS}}
    else:
        options = {"runOnly": {"type": "rule", "values": COLOUR_RULES}}
    violations = _run(page, options)
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
