"""Per-student feedback files: text and HTML, each bounded in bytes.

The grader writes, for each student of a set, ``feedback/SLUG-SET.txt`` and (for a
graded notebook) ``feedback/SLUG-SET.html``: the points of each check and why a check
failed, what happened to cells (time limits, a dead kernel), the cells that were put
back, and the outputs of the student's cells. Every text that reaches these files was
scrubbed of hidden-test lines before (:class:`attnkit.grading.grader.Result`); here it
is only laid out and capped: each file holds at most ``limit`` bytes and says where it
was cut. Files are written atomically (a temporary file renamed over the old one), so
an interrupted run never leaves half a file.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

__all__ = ["cap", "feedback_paths", "fmt_points", "write_feedback"]


def fmt_points(x: float) -> str:
    """Points as the gradebook and feedback show them.

    Example:
        >>> fmt_points(12.0), fmt_points(1.5)
        ('12', '1.5')
    """
    return f"{x:g}"


def cap(text: str, limit: int, what: str) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, saying how much was left out.

    Example:
        >>> print(cap("abcdef", 3, "output"))
        abc
        [output cut here: 3 more bytes not shown]
        <BLANKLINE>
    """
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", errors="ignore")
    return kept + f"\n[{what} cut here: {len(data) - limit:,} more bytes not shown]\n"


def feedback_paths(out_dir: Path, slug: str, exercise_set: str) -> tuple[Path, Path]:
    """The text and HTML feedback files of one student: ``OUT/feedback/SLUG-SET.{txt,html}``."""
    base = Path(out_dir) / "feedback" / f"{slug}-{exercise_set}"
    return base.with_suffix(".txt"), base.with_suffix(".html")


def _parts(res: Any, limit: int) -> tuple[list[str], list[str], list[str], str]:
    """Head lines, check lines, event lines, and the outputs section (capped)."""
    head = [
        f"Exercise set {res.exercise_set}, student {res.student}: "
        f"{fmt_points(res.points)} / {fmt_points(res.max_points)} points",
        f"Submitted file: {Path(res.file).name}",
    ]
    checks = []
    if res.status != "graded":
        head.append(f"Not graded ({res.status}): {res.note}. Score 0.")
    else:
        width = max((len(c.grade_id) for c in res.checks), default=10)
        for c in res.checks:
            mark = "ok  " if c.points >= c.max_points else "FAIL"
            pts = f"{fmt_points(c.points)}/{fmt_points(c.max_points)}"
            line = f"  {mark} {pts:>5}  {c.grade_id:<{width}}"
            checks.append((line + (f"  {c.message}" if c.message else "")).rstrip())
        if res.restored:
            checks += ["", "Cells missing from the submission were put back from the exercise "
                       "set: " + ", ".join(res.restored)]
    events = [f"  {e}" for e in res.events]
    body = "".join(f"--- output of {lbl} ---\n{t.rstrip()}\n" for lbl, t in res.outputs)
    used = len("\n".join(head + checks + events).encode())
    body = cap(body, max(limit - used - 400, 200), "feedback") if body else ""
    return head, checks, events, body


def _text(res: Any, limit: int) -> str:
    head, checks, events, body = _parts(res, limit)
    lines = head + [""] + checks
    if events:
        lines += ["", "What happened while your notebook ran:"] + events
    if body:
        lines += ["", "Outputs of your cells (each cut at a fixed size):", body]
    return cap("\n".join(lines) + "\n", limit, "feedback")


def _html(res: Any, limit: int) -> str:
    head, _, events, body = _parts(res, limit)
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(res.exercise_set)}: {esc(res.student)}</title>",
             "<style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto}"
             "pre{white-space:pre-wrap;background:#f6f6f6;padding:.5rem}"
             ".ok{color:#006400}.fail{color:#a00}td{padding:.2rem .6rem;vertical-align:top}"
             "</style></head><body>",
             f"<h1>{esc(head[0])}</h1>", f"<p>{esc(head[1])}</p>", "<table>"]
    for c in res.checks:
        ok = c.points >= c.max_points
        parts.append(f'<tr><td class="{"ok" if ok else "fail"}">{"ok" if ok else "FAIL"}</td>'
                     f"<td>{fmt_points(c.points)}/{fmt_points(c.max_points)}</td>"
                     f"<td>{esc(c.grade_id)}</td><td>{esc(c.message)}</td></tr>")
    parts.append("</table>")
    if res.restored:
        parts.append(f"<p>Cells put back from the exercise set: {esc(', '.join(res.restored))}</p>")
    if events:
        parts.append("<h2>What happened while your notebook ran</h2><ul>")
        parts += [f"<li>{esc(e.strip())}</li>" for e in events]
        parts.append("</ul>")
    if body:
        parts += ["<h2>Outputs of your cells</h2>", f"<pre>{esc(body)}</pre>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_feedback(res: Any, out_dir: Path, limit: int, html: bool = True) -> list[Path]:
    """Write one student's feedback; return the files written (text, then HTML if graded).

    Args:
        res: a :class:`~attnkit.grading.grader.Result` (its texts already scrubbed).
        out_dir: the output directory (files go to ``out_dir/feedback``).
        limit: bytes of each file (the outputs section is cut first).
        html: also write the HTML file (graded notebooks only).

    Returns:
        The paths written.
    """
    text_path, html_path = feedback_paths(out_dir, res.slug, res.exercise_set)
    atomic_write(text_path, _text(res, limit).encode("utf-8"))
    written = [text_path]
    if html and res.status == "graded":
        atomic_write(html_path, _html(res, limit).encode("utf-8"))
        written.append(html_path)
    return written
