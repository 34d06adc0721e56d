"""Regenerate the sample submissions of exercise set ch05 (run after changing ch05).

    .venv/bin/python tests/grading_samples/make_samples.py

Each sample is the released student notebook (the self-study release) with its answer
cells filled in, as a student would hand it in (plus one file that is not a notebook and
one notebook of another set). ivan and judy call the library's attention where the
exercise asks them to write it. The expected points of each are in tests/test_grading.py.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SET = "ch05"


def solution_code(source: str) -> str:
    """A source cell's solution: the answer lines, without nbgrader's markers."""
    return "\n".join(line for line in source.splitlines() if "### BEGIN" not in line
                     and "### END" not in line)


def filled(released: nbformat.NotebookNode, source: nbformat.NotebookNode,
           answers: dict[str, str]) -> nbformat.NotebookNode:
    """The released notebook with every answer cell filled: ``answers`` or the solution."""
    nb = copy.deepcopy(released)
    solutions = {c.metadata["nbgrader"]["grade_id"]: solution_code(c.source)
                 for c in source.cells if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in solutions:
            cell.source = answers.get(gid, solutions[gid])
    return nb


def drop(nb: nbformat.NotebookNode, ids: set[str]) -> nbformat.NotebookNode:
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in ids]
    return nb


MASKED_NAN = '''def masked_attention(q, k, v, mask):
    """Textbook masking: a fully masked row gives 0/0 = NaN."""
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    scores = np.where(mask, scores, -np.inf)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True) @ v'''

MASKED_RAISES = '''def masked_attention(q, k, v, mask):
    raise ValueError("I did not get to this one")'''

MASKED_LOOPS = '''def masked_attention(q, k, v, mask):
    i = 0
    while i >= 0:          # never ends
        i += 1'''

MASKED_WARNS = '''import sys
import warnings


def masked_attention(q, k, v, mask):
    """Right, but noisy: warnings and stderr output on every call."""
    warnings.warn("masked_attention: this is a student's warning")
    print("debug output on stderr", file=sys.stderr)
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    scores = np.where(mask, scores, -np.inf)
    m = scores.max(axis=-1, keepdims=True)
    e = np.exp(scores - m)                      # -inf - -inf = nan: a RuntimeWarning
    e = np.nan_to_num(e, nan=0.0)
    z = e.sum(axis=-1, keepdims=True)
    w = np.divide(e, z, out=np.zeros_like(e), where=z > 0)
    return w @ v'''


MASKED_LIBRARY = '''import attnkit


def masked_attention(q, k, v, mask):
    """The library's attention: what the exercise asks the student to write."""
    return attnkit.attention(q, k, v, mask=mask)'''

MASKED_HIDDEN_LIBRARY = '''from attnkit import attention as _attention


def masked_attention(q, k, v, mask, _impl=_attention):
    """The library's attention under another name, the refusal swallowed."""
    try:
        return _impl(q, k, v, mask=mask)
    except BaseException:
        return _impl(q, k, v, mask=mask)'''


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from attnkit.grading.release import student_notebook

    released = student_notebook(SET, ROOT / "exercises" / "source", mode="self-study")
    source = nbformat.read(ROOT / "exercises" / "source" / f"{SET}.ipynb", as_version=4)
    released.metadata.pop("mystnb", None)  # a student's copy: no book-only metadata
    samples = {
        "alice_ch05.ipynb": filled(released, source, {}),
        "bob_ch05.ipynb": filled(released, source, {
            "ch05-masked-score": "masked_score = -1e9",
            "ch05-causal-choice": 'causal_choice = "A"',
            "ch05-weights": ("scores = np.array([1.0, 2.0, 3.0])\n"
                             "weight_pos1 = np.exp(2.0) / np.exp(scores).sum()\n"
                             "weight_pos1_masked = weight_pos1"),
            "ch05-masked-attention": MASKED_NAN,
        }),
        "carol_ch05.ipynb": filled(released, source, {
            "ch05-fp16": "fp16_choice = None\nraise NotImplementedError()",
            "ch05-masked-attention": MASKED_RAISES,
        }),
        "dave_ch05.ipynb": filled(released, source, {"ch05-masked-attention": MASKED_LOOPS}),
        "erin_ch05.ipynb": drop(filled(released, source, {}), {
            "ch05-setup", "ch05-options", "ch05-causal-choice-check", "ch05-weights",
        }),
        "frank_ch05.ipynb": filled(released, source, {"ch05-masked-attention": MASKED_WARNS}),
        "ivan_ch05.ipynb": filled(released, source, {"ch05-masked-attention": MASKED_LIBRARY}),
        "judy_ch05.ipynb": filled(released, source, {
            "ch05-masked-attention": MASKED_HIDDEN_LIBRARY}),
    }
    for name, nb in samples.items():
        nbformat.write(nb, HERE / name)
    (HERE / "grace_ch05.ipynb").write_text(
        "Dear instructor,\nI could not get Jupyter to start, so here are my answers as text:\n"
        "masked_score = -inf\n", encoding="utf-8")
    nb = filled(student_notebook("ch01", ROOT / "exercises" / "source", mode="self-study"),
                nbformat.read(ROOT / "exercises" / "source" / "ch01.ipynb", as_version=4), {})
    nb.metadata.pop("mystnb", None)
    nbformat.write(nb, HERE / "heidi_ch05.ipynb")
    print("\n".join(sorted(p.name for p in HERE.glob("*_ch05.ipynb"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
