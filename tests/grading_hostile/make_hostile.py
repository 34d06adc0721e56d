"""Regenerate the hostile submissions of exercise set ch05 (run after changing ch05).

    .venv/bin/python tests/grading_hostile/make_hostile.py

Each file is a sample submission of tests/grading_samples (alice: every answer right;
bob: four answers wrong, 8 of 12 points) with a cell added or an answer cell changed
to attack the grader or to fail in an unlucky way. The expected points of each, and
why, are in HOSTILE in tests/test_grading_hostile.py. The vandal's notebook holds the
placeholders TARGET_DIRS and TARGET_FILES, which the test replaces with the real paths
of the batch (the worst case: a student who knows where everything is).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent / "grading_samples"

# -- attacks on the checks (added to bob's wrong answers: they must still score 8) --------

REBIND = '''# make every check pass
def check(*args, **kwargs):
    return None
check_choice = check_shape = check
import contextlib
quiet = contextlib.nullcontext
import attnkit.grading as _g
_g.check = _g.check_choice = _g.check_shape = check
'''

PATCH = '''# patch NumPy and the check functions themselves
import numpy as np
import numpy.testing
import attnkit
import attnkit.grading.checks as _c
np.allclose = lambda *a, **k: True
np.isclose = lambda a, b, **k: np.ones(np.broadcast(np.asarray(a), np.asarray(b)).shape, bool)
np.array_equal = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
_c.check.__code__ = (lambda *a, **k: None).__code__
_c.check_shape.__code__ = (lambda *a, **k: None).__code__
_c.check_choice.__code__ = (lambda *a, **k: None).__code__
_c._check_numbers.__code__ = (lambda *a, **k: None).__code__
attnkit.softmax = lambda x, *a, **k: x
'''

HOOKS = '''# swallow every error, hide stderr, and rewrite results after each cell
import io
import os
import sys
ip = get_ipython()
ip.set_custom_exc((BaseException,), lambda shell, etype, evalue, tb, tb_offset=None: None)
def _after(result):
    result.error_in_exec = None
    result.error_before_exec = None
ip.events.register("post_run_cell", _after)
ip.events.register("pre_run_cell", lambda *a: None)
sys.stderr = io.StringIO()
os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
'''

# -- attacks on the grader's files and the machine (added to alice: 12 points) -----------

VANDAL = '''# overwrite every notebook and gradebook it can find, and add a student
TARGET_DIRS = []       # the test puts the batch's real directories here
TARGET_FILES = []      # and the real submissions, gradebook and feedback files here
import os
from pathlib import Path
hits = []
targets = [Path(p) for p in TARGET_FILES]
roots = [Path(p) for p in TARGET_DIRS]
roots += [Path("/tmp"), Path("/work"), Path("/root"), Path("/home"), Path.home(), Path.cwd().parent]
for root in roots:
    try:
        for dirpath, dirnames, filenames in os.walk(root):
            for f in filenames:
                if f.endswith((".ipynb", ".csv", ".txt", ".html")):
                    targets.append(Path(dirpath) / f)
            if dirpath.count(os.sep) > 6:
                dirnames[:] = []
    except OSError:
        pass
for t in targets:
    try:
        if t.name == "gradebook.csv":
            with t.open("a") as fh:
                fh.write("mallory,ch05,12,12,graded,x\\n")
        else:
            t.write_text("{}")
        hits.append(str(t))
    except OSError:
        pass
for d in TARGET_DIRS:
    try:
        (Path(d) / "mallory_ch05.ipynb").write_text("{}")
        hits.append(d)
    except OSError:
        pass
Path("vandal-report.txt").write_text("\\n".join(hits))
print("overwrote", len(hits), "files")
'''

DETACHED = '''# leave processes behind that outlive the notebook
import subprocess, sys
subprocess.Popen(["sleep", "31337"], start_new_session=True)
daemon = "import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n    time.sleep(31338)"
subprocess.Popen([sys.executable, "-c", daemon], start_new_session=True)
'''

CHATTY = '''# one 50 MB line of output
print("x" * 50_000_000)
'''

PEEK = '''# print IPython's input history
print(In)
print(_ih)
print(globals().get("Out"))
'''

RECITE = '''# print lines of the (public) source's hidden tests
print("_allowed = attnkit.causal_mask(2)")
print("_scores = np.where(_allowed, 0.0,\\n masked_score)")
print("### BEGIN HIDDEN TESTS")
'''

HOG = '''# allocate and fill 12 GiB, 64 MiB at a time
import numpy as np
chunks = []
for _ in range(12 * 16):
    chunks.append(np.ones(64 * 2**20 // 8))
'''

# -- answer cells that fail in a way that must cost only their own checks -----------------

CRASH = '''def masked_attention(q, k, v, mask):
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    return np.where(mask, scores, -np.inf) @ v

import os
os._exit(1)            # the kernel dies here
'''

STUBBORN = '''fp16_choice = "B"
while True:            # an endless loop that swallows the interrupt
    try:
        while True:
            pass
    except KeyboardInterrupt:
        pass
'''


def _cell(source: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    words = source.splitlines()[0].lstrip("# ").split()
    cell.id = "hostile-" + "-".join(w for w in words[:3] if w.isalnum())  # stable ids
    return cell


def _with_cell(base: nbformat.NotebookNode, source: str, after: str) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(base), as_version=4))
    i = next(i for i, c in enumerate(nb.cells)
             if c.metadata.get("nbgrader", {}).get("grade_id") == after)
    nb.cells.insert(i + 1, _cell(source))
    return nb


def _with_answer(base: nbformat.NotebookNode, gid: str, source: str) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(base), as_version=4))
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == gid:
            c.source = source
    return nb


def main() -> int:
    alice = nbformat.read(SAMPLES / "alice_ch05.ipynb", as_version=4)
    bob = nbformat.read(SAMPLES / "bob_ch05.ipynb", as_version=4)
    hostile = {
        "rebinder_ch05.ipynb": _with_cell(bob, REBIND, "ch05-setup"),
        "patcher_ch05.ipynb": _with_cell(bob, PATCH, "ch05-setup"),
        "hooker_ch05.ipynb": _with_cell(bob, HOOKS, "ch05-setup"),
        "vandal_ch05.ipynb": _with_cell(alice, VANDAL, "ch05-masked-score"),
        "crasher_ch05.ipynb": _with_answer(alice, "ch05-masked-attention", CRASH),
        "stubborn_ch05.ipynb": _with_answer(alice, "ch05-fp16", STUBBORN),
        "detacher_ch05.ipynb": _with_cell(alice, DETACHED, "ch05-setup"),
        "chatty_ch05.ipynb": _with_cell(alice, CHATTY, "ch05-weights"),
        "peeker_ch05.ipynb": _with_cell(_with_cell(alice, RECITE, "ch05-alignment-check"), PEEK,
                                        "ch05-alignment-check"),
        "hog_ch05.ipynb": _with_cell(alice, HOG, "ch05-alignment-check"),
        "Zoë Smith_ch05.ipynb": alice,
        "Zoe Smith_ch05.ipynb": bob,
    }
    for name, nb in hostile.items():
        nbformat.write(nb, HERE / name)
    print("\n".join(sorted(hostile)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
