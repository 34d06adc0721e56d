"""The exercise system: two releases from one source, write-it-yourself, honest tolerances.

* Every set's reference answers pass every check (value checks and hidden tests
  included) for 20 seeds of the checks' random inputs, and when every float answer is
  rounded to four decimal places (the rounding the sets allow).
* A course release (solutions hidden) leaks nothing: no solution, hidden-test or
  value-check line, no distinctive reference value, and its public checks call only
  form checks, the student's own functions and input builders.
* ``forbid`` declarations name real library objects, the guard refuses them by any
  alias and lets the library's own code use them, and a public check in Jupyter says
  the same as the grader.
* One table of wire-format tags serves the kernel's encoder and the grader's decoder.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from attnkit.grading import (
    _codec,
    _kernel,
    check_finite,
    check_normalised,
    check_number,
    check_range,
    check_set_of,
    check_symbols,
    check_unchanged,
)
from attnkit.grading._guard import ForbiddenCall, guard, guarded
from attnkit.grading._plan import build_plan, forbidden_in
from attnkit.grading._reference import round_answer, run_reference
from attnkit.grading.checks import FORM_CHECKS
from attnkit.grading.leaks import (
    find_leaks,
    public_check_calls,
    published_text,
    secrets,
    value_leaks,
)
from attnkit.grading.release import default_mode, prepare_source, release
from attnkit.grading.sets import MARKERS, WORKED_TAG, exercise_sets

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "exercises" / "source"
SETS = exercise_sets(SOURCES)

#: The seeds the checks' random inputs run with: each seed s of a check becomes (s, shift).
SEED_SHIFTS = range(20)


def _source(name: str) -> nbformat.NotebookNode:
    return nbformat.read(SOURCES / f"{name}.ipynb", as_version=4)


# -- tolerances: the reference answers over 20 seeds, and rounded --------------------------


@pytest.mark.parametrize("name", SETS)
def test_reference_answers_pass_every_check_for_20_seeds(name: str) -> None:
    failed = {}
    for shift in SEED_SHIFTS:   # the references keep their forbid rules (tried once: it is slow)
        run = run_reference(name, SOURCES, seed_shift=shift, guard=shift == 0)
        assert run.answers, f"{name}: no answers were defined"
        for gid, message in run.failures.items():
            failed.setdefault(gid, []).append(f"shift {shift}: {message[:200]}")
    assert not failed, failed


@pytest.mark.parametrize("name", SETS)
def test_answers_rounded_to_four_decimals_pass(name: str) -> None:
    run = run_reference(name, SOURCES, transform=lambda _, v: round_answer(v, 4))
    assert run.failures == {}


def test_a_tolerance_below_the_rounding_is_caught(tmp_path: Path) -> None:
    """The rounding test fails a check whose tolerance is finer than four decimals."""
    nb = _source("ch01")
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "ch01-fade-50-check":
            cell.source = cell.source.replace("check(\"fade_50\", fade_50, _g)",
                                              "check(\"fade_50\", fade_50, _g, atol=1e-8)")
            assert "atol=1e-8" in cell.source
    nbformat.write(nb, tmp_path / "ch01.ipynb")
    run = run_reference("ch01", tmp_path, transform=lambda _, v: round_answer(v, 4))
    assert "ch01-fade-50-check" in run.failures


def test_seed_shifts_change_the_inputs() -> None:
    a = run_reference("ch11", SOURCES, seed_shift=0).answers["error_8bit"]
    b = run_reference("ch11", SOURCES, seed_shift=7).answers["error_8bit"]
    assert a != b


# -- two releases from one source ---------------------------------------------------------


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> dict[str, nbformat.NotebookNode]:
    out = tmp_path_factory.mktemp("course")
    release(out, source_dir=SOURCES, mode="course")
    return {"dir": out, **{s: nbformat.read(out / f"{s}.ipynb", as_version=4) for s in SETS}}


def _checks(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]


def test_course_release_has_no_solution_hidden_test_or_value_check(course: dict) -> None:
    released = [course[s] for s in SETS]
    for name in SETS:
        secret = secrets(_source(name), released)
        assert secret, name
        for s in SETS:
            text = published_text(course["dir"] / f"{s}.ipynb")
            assert find_leaks(text, secret) == [], (s, name)
        page = (course["dir"] / "solutions" / f"{name}.md").read_text()
        assert find_leaks(page, secret) == [] and "{solution}" not in page, name


@pytest.mark.parametrize("name", SETS)
def test_course_public_checks_test_form_only(course: dict, name: str) -> None:
    """Course release: public checks call only form checks and build inputs.

    Allowed besides form checks: the student's own functions, the grader cells' helpers
    and input builders; each check has at least one form check.
    """
    src = _source(name)
    plan = build_plan(name, src)
    forbidden = {n.rsplit(".", 1)[-1] for names in plan.forbidden.values() for n in names}
    helpers = set()
    for c in plan.cells.values():
        if c.kind == "grader":
            helpers |= {n for n in _defined(c.source) if n not in forbidden}
    for cell in _checks(course[name]):
        gid = cell.metadata.nbgrader.grade_id
        reads = set(plan.cells[gid].reads)
        bad = public_check_calls(cell.source, reads | helpers, FORM_CHECKS)
        assert bad == [], (gid, bad)
        used = {n for n in FORM_CHECKS if re.search(rf"\b{n}\(", cell.source)}
        assert used, f"{gid}: the public check tests nothing"


def _defined(source: str) -> set[str]:
    from attnkit.grading._plan import assigned_names

    return assigned_names(source)


@pytest.mark.parametrize("name", SETS)
def test_course_release_spells_out_no_reference_value(course: dict, name: str) -> None:
    answers = run_reference(name, SOURCES).answers
    assert value_leaks(course[name], answers) == []


def test_the_leak_scanners_find_leaks() -> None:
    src = _source("ch11")
    plan = build_plan("ch11", src)
    for cell in src.cells:   # the source's check cells compute the answers
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "ch11-reach-check":
            assert "check" in public_check_calls(cell.source, set(plan.cells["ch11-reach-check"].reads),
                                                 FORM_CHECKS)
    answers = run_reference("ch11", SOURCES).answers
    leak = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"check('reach', reach, {answers['reach']})")])
    assert value_leaks(leak, answers) == [f"reach = {answers['reach']}"]


@pytest.mark.parametrize("name", SETS)
def test_self_study_release_shows_the_value_checks(name: str) -> None:
    released = nbformat.read(ROOT / "book" / "exercises" / f"{name}.ipynb", as_version=4)
    if default_mode(SOURCES) != "self-study":
        pytest.skip("the book is configured for a course release")
    src = _source(name)
    value_lines = {line.strip() for c in src.cells for line in _region(c.source, "VALUE CHECKS")
                   if line.strip() and not line.strip().startswith("#")}
    text = "\n".join(c.source for c in released.cells)
    missing = [line for line in value_lines if line not in text]
    assert value_lines and not missing, (name, missing)
    assert not [m for m in MARKERS if m in nbformat.writes(released)]
    assert not [c for c in released.cells if WORKED_TAG in c.metadata.get("tags", [])]


def _region(source: str, what: str) -> list[str]:
    out, inside = [], False
    for line in source.splitlines():
        if f"BEGIN {what}" in line:
            inside = True
        elif f"END {what}" in line:
            inside = False
        elif inside:
            out.append(line)
    return out


@pytest.mark.parametrize("name", SETS)
def test_both_releases_have_the_same_cells_and_points(course: dict, name: str) -> None:
    released = nbformat.read(ROOT / "book" / "exercises" / f"{name}.ipynb", as_version=4)

    def ids(nb: nbformat.NotebookNode) -> list[tuple[str, float]]:
        return [(c.metadata.nbgrader.grade_id, c.metadata.nbgrader.get("points", 0))
                for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")]

    assert ids(released) == ids(course[name])
    for cell in course[name].cells:
        if cell.cell_type == "code":
            compile(cell.source, f"{name}:course", "exec")


def test_prepare_source_moves_value_checks_and_mode_text() -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(
            "Run it.\n<!-- BEGIN COURSE -->\nForm only.\n<!-- END COURSE -->\n"
            "<!-- BEGIN SELF-STUDY -->\nValues too.\n<!-- END SELF-STUDY -->\nDone."),
        nbformat.v4.new_code_cell("with quiet():\n    check_shape('w', w, (2,))\n"
                                  "    ### BEGIN VALUE CHECKS\n    check('w', w, [1, 2])\n"
                                  "    ### END VALUE CHECKS"),
        nbformat.v4.new_code_cell("explain('why')", metadata={"tags": [WORKED_TAG]}),
    ])
    course_nb, study = prepare_source(nb, "course"), prepare_source(nb, "self-study")
    assert course_nb.cells[0].source == "Run it.\nForm only.\nDone."
    assert study.cells[0].source == "Run it.\nValues too.\nDone."
    assert "### BEGIN HIDDEN TESTS" in course_nb.cells[1].source
    assert "VALUE CHECKS" not in study.cells[1].source and "check('w', w, [1, 2])" in study.cells[1].source
    assert len(course_nb.cells) == len(study.cells) == 2
    with pytest.raises(ValueError, match="mode must be one of"):
        prepare_source(nb, "exam")


def test_default_mode_follows_hide_solutions(tmp_path: Path) -> None:
    src = tmp_path / "exercises" / "source"
    src.mkdir(parents=True)
    assert default_mode(src) == "self-study"
    (tmp_path / "_config.yml").write_text("sphinx:\n  config:\n    hide_solutions: true\n")
    assert default_mode(src) == "course"
    (tmp_path / "_config.yml").write_text("sphinx:\n  config:\n    hide_solutions: false\n")
    assert default_mode(src) == "self-study"


def test_release_command_takes_a_mode(tmp_path: Path, capsys) -> None:
    from attnkit.grading.__main__ import main

    assert main(["release", "ch01", "--out", str(tmp_path), "--mode", "course"]) == 0
    nb = nbformat.read(tmp_path / "ch01.ipynb", as_version=4)
    assert "VALUE CHECKS" not in nbformat.writes(nb)
    assert "check(\"fade_50\"" not in nbformat.writes(nb)
    with pytest.raises(SystemExit):
        main(["release", "--mode", "exam"])


# -- worked solutions -----------------------------------------------------------------------


@pytest.mark.parametrize("name", SETS)
def test_worked_solutions_explain_with_numbers(name: str) -> None:
    """Every exercise's worked solution has reasoning with numbers, not code only."""
    page = (ROOT / "book" / "exercises" / "solutions" / f"{name}.md").read_text()
    if default_mode(SOURCES) != "self-study":
        pytest.skip("the book is configured for a course release")
    solutions = re.findall(r"::::\{solution\}.*?\n(.*?)\n::::", page, re.S)
    exercises = re.findall(r"::::\{exercise\}", page)
    assert solutions and len(solutions) == len(exercises)
    for body in solutions:
        prose = re.sub(r"```.*?```", "", body, flags=re.S)
        assert len(prose.split()) >= 25, body[:200]
        assert re.search(r"\d", prose), body[:200]


# -- write it yourself ---------------------------------------------------------------------


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


#: Packages a forbid list names for a student's own environment (SciPy is on Colab) that this
#: project does not install; the guard resolves a name once its module is imported.
NOT_INSTALLED_HERE = {"scipy"}


@pytest.mark.parametrize("name", SETS)
def test_forbidden_names_exist(name: str) -> None:
    plan = build_plan(name, _source(name))
    for function, names in plan.forbidden.items():
        answers = {n for c in _source(name).cells if c.metadata.get("nbgrader", {}).get("solution")
                   for n in _defined(c.source)}
        assert function in answers, (name, function)
        for dotted in names:
            if dotted.split(".")[0] in NOT_INSTALLED_HERE:
                assert importlib.util.find_spec(dotted.split(".")[0]) is None, dotted
                continue
            assert _resolve(dotted) is not None, (name, dotted)


def test_sets_that_ask_for_library_functions_forbid_them() -> None:
    forbidden = {}
    for name in SETS:
        forbidden.update(build_plan(name, _source(name)).forbidden)
    for function in ("stable_softmax", "masked_attention", "batched_attention", "online_attention",
                     "window_attention", "merge_two", "ring_outputs", "attention_backward",
                     "absorbed_scores", "absorbed_head", "select_keys", "gathered_attention",
                     "sink_softmax", "fit_exponent", "decode_step", "window_weights", "ring_pairs",
                     "tree_merge"):
        assert function in forbidden, function


# Chapter 13's coding tasks answered by calling the library (two students) or with plausible
# mistakes (a third), graded by the grader: each loses exactly the checks that run it.

CH13_CHEATS = {
    "ch13-absorb": ['''
def absorbed_scores(q_nope, q_rope, latent, k_rope, w_uk):
    import torch
    from attnkit.models.mla import LatentCache
    LatentCache().append(torch.as_tensor(latent)[None], torch.as_tensor(k_rope)[None])
    keys = np.concatenate([latent @ w_uk.T, k_rope], axis=1)
    q = np.concatenate([q_nope, q_rope], axis=1)
    return q @ keys.T / np.sqrt(q.shape[1])

def absorbed_head(q_nope, q_rope, latent, k_rope, w_uk, w_uv):
    keys = np.concatenate([latent @ w_uk.T, k_rope], axis=1)
    q = np.concatenate([q_nope, q_rope], axis=1)
    return attnkit.attention(q, keys, latent @ w_uv.T, scale=1 / np.sqrt(q.shape[1]))
''', '''
def absorbed_head(q_nope, q_rope, latent, k_rope, w_uk, w_uv):
    import torch
    mla = attnkit.MultiHeadLatentAttention(8, 1, kv_latent=2, rope_dim=2)
    keys = np.concatenate([latent @ w_uk.T, k_rope], axis=1)
    q = np.concatenate([q_nope, q_rope], axis=1)
    s = q @ keys.T / np.sqrt(q.shape[1])
    return attnkit.softmax(s) @ (latent @ w_uv.T)
'''],
    "ch13-topk": ['''
def select_keys(index_scores, kappa):
    from attnkit.models.sparse import select_topk
    n = index_scores.shape[0]
    causal = np.arange(n)[None, :] <= np.arange(n)[:, None]
    return select_topk(np.where(causal, index_scores, -np.inf), kappa)

def gathered_attention(q, k, v, idx, valid):
    from attnkit.models.sparse import topk_attention
    return topk_attention(q, k, v, np.asarray(idx, dtype=np.int64), np.asarray(valid, dtype=bool))
''', '''
def select_keys(index_scores, kappa):
    from attnkit.models import sparse
    n = index_scores.shape[0]
    return sparse.window_selection(n, n, kappa)

def gathered_attention(q, k, v, idx, valid):
    return attnkit.attention(q, k, v, mask=selection_as_mask(idx, valid, k.shape[0]))
'''],
    "ch13-sink": ['''
def sink_softmax(z, sink_logits):
    import torch
    sink = np.broadcast_to(np.asarray(sink_logits, float)[:, None, None], (*z.shape[:-1], 1))
    return torch.softmax(torch.as_tensor(np.concatenate([z, sink], axis=-1)), -1).numpy()[..., :-1]
''', '''
def sink_softmax(z, sink_logits):
    sink = np.broadcast_to(np.asarray(sink_logits, float)[:, None, None], (*z.shape[:-1], 1))
    return attnkit.softmax(np.concatenate([z, sink], axis=-1))[..., :-1]
'''],
}

CH13_MISTAKES = {
    "ch13-topk": '''
def select_keys(index_scores, kappa):          # forgets causality
    idx = np.argsort(-index_scores, axis=1)[:, :kappa]
    return idx, np.ones(idx.shape, dtype=bool)

def gathered_attention(q, k, v, idx, valid):   # forgets the invalid slots
    s = np.einsum("id,ikd->ik", q, k[idx]) / np.sqrt(q.shape[1])
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return np.einsum("ik,ikd->id", p / p.sum(axis=1, keepdims=True), v[idx])
''',
    "ch13-sink": '''
def sink_softmax(z, sink_logits):              # shifts by the scores alone: nan when all masked
    s = np.asarray(sink_logits, float)[:, None, None]
    m = np.max(z, axis=-1, keepdims=True)
    e = np.exp(z - m)
    return e / (np.exp(s - m) + e.sum(axis=-1, keepdims=True))
''',
}


# Right values by the way the exercises rule out: the keys (or values) formed from the
# latents, and the selection written as an n x n mask. They pass the small checks; the
# hidden tests at S = d_h = 65,536 and n = 65,536 tokens are out of their reach.
CH13_NAIVE = {
    "ch13-absorb": '''
def absorbed_scores(q_nope, q_rope, latent, k_rope, w_uk):     # forms the keys
    keys = np.concatenate([latent @ w_uk.T, k_rope], axis=1)
    q = np.concatenate([q_nope, q_rope], axis=1)
    return q @ keys.T / np.sqrt(q.shape[1])

def absorbed_head(q_nope, q_rope, latent, k_rope, w_uk, w_uv):  # absorbed scores, formed values
    q = np.concatenate([q_nope @ w_uk, q_rope], axis=1)
    s = q @ np.concatenate([latent, k_rope], axis=1).T / np.sqrt(q_nope.shape[1] + q_rope.shape[1])
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)) @ (latent @ w_uv.T)
''',
    "ch13-topk": '''
def gathered_attention(q, k, v, idx, valid):                    # the n x n mask, then dense
    mask = selection_as_mask(idx, valid, k.shape[0])
    s = np.where(mask, q @ k.T / np.sqrt(q.shape[1]), -np.inf)
    m = s.max(axis=1, keepdims=True)
    p = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    den = p.sum(axis=1, keepdims=True)
    return (p / np.where(den > 0, den, 1.0)) @ v
''',
}


def test_ch13_coding_tasks_refuse_the_library_and_catch_mistakes(tmp_path: Path) -> None:
    """Library calls, mistakes and the ruled-out naive ways lose exactly the coding checks.

    Graded by the grader: a library call fails every check that runs the function, with the
    guard's message; a mistake fails them by value; forming the keys, the values or an
    n x n matrix fails the checks of the functions written that way (the large hidden
    tests); the reference gets every point.
    """
    import importlib.util

    from attnkit.grading.grader import grade
    from attnkit.grading.release import student_notebook

    spec = importlib.util.spec_from_file_location(
        "make_samples", ROOT / "tests" / "grading_samples" / "make_samples.py")
    samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(samples)  # type: ignore[union-attr]
    source = _source("ch13")
    plan = build_plan("ch13", source)
    solutions = {c.metadata.nbgrader.grade_id: samples.solution_code(c.source)
                 for c in source.cells if c.metadata.get("nbgrader", {}).get("solution")}
    released = student_notebook("ch13", SOURCES, mode="course")
    students = {"ref": {}, **{f"cheat{i}": {gid: solutions[gid] + cheats[i]
                                            for gid, cheats in CH13_CHEATS.items()}
                              for i in range(2)},
                "sloppy": {gid: solutions[gid] + code for gid, code in CH13_MISTAKES.items()},
                "naive": {gid: solutions[gid] + code for gid, code in CH13_NAIVE.items()}}
    files = []
    for name, answers in students.items():
        path = tmp_path / f"{name}_ch13.ipynb"
        nbformat.write(samples.filled(released, source, answers), path)
        files.append(path)
    results = {r.student: r for r in grade("ch13", files, tmp_path / "graded", timeout=30,
                                           sandbox=False, html=False)}

    def lost(name: str) -> dict[str, str]:
        return {c.grade_id: c.message for c in results[name].checks if c.points < c.max_points}

    def checks_of(functions: set[str]) -> set[str]:
        return {gid for gid, c in plan.cells.items() if c.kind == "check" and set(c.reads) & functions}

    assert results["ref"].points == plan.max_points and lost("ref") == {}
    coded = set(plan.forbidden)
    assert coded == {"absorbed_scores", "absorbed_head", "select_keys", "gathered_attention",
                     "sink_softmax"}
    for name in ("cheat0", "cheat1"):
        defined = {f for f in coded if any(f"def {f}(" in CH13_CHEATS[g][int(name[-1])]
                                           for g in CH13_CHEATS)}
        assert set(lost(name)) == checks_of(defined), (name, lost(name))
        for gid, message in lost(name).items():
            assert "called" in message and "write it yourself" in message, (name, gid, message)
    assert set(lost("sloppy")) == checks_of({"select_keys", "gathered_attention", "sink_softmax"})
    assert not [m for m in lost("sloppy").values() if "write it yourself" in m]
    assert set(lost("naive")) == checks_of({"absorbed_scores", "absorbed_head",
                                            "gathered_attention"}), lost("naive")
    assert not [m for m in lost("naive").values() if "write it yourself" in m]


def test_forbid_declarations_are_literal() -> None:
    assert forbidden_in('forbid("f", "a.b")\nforbid("f", "c")') == {"f": ("a.b", "c")}
    with pytest.raises(ValueError, match="string literals"):
        forbidden_in("forbid('f', NAMES)")


def _lib_softmax(x):
    import attnkit

    return attnkit.softmax(x)


def _aliased(x, _f=None):
    import attnkit

    f = _f or attnkit.softmax
    return f(x)


def _swallowing(x):
    import attnkit

    try:
        return attnkit.softmax(x)
    except BaseException:
        e = np.exp(x - x.max())
        return e / e.sum()


def _own(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def _through_the_library(q):
    from attnkit.serving.decoding import partial_attention

    return partial_attention(q, q, q)[0]       # the library may call attention inside


@pytest.mark.parametrize("fn", [_lib_softmax, _aliased, _swallowing])
def test_guard_refuses_a_forbidden_call_by_any_route(fn) -> None:
    with pytest.raises(ForbiddenCall, match=f"{fn.__name__} called attnkit.softmax: this exercise "
                                            "asks you to write it yourself"):
        guarded(fn, fn.__name__, ["attnkit.softmax"])(np.array([1.0, 2.0]))


def test_guard_allows_own_code_and_the_librarys_own_calls() -> None:
    assert guarded(_own, "_own", ["attnkit.softmax"])(np.zeros(2)).tolist() == [0.5, 0.5]
    q = np.random.default_rng(0).standard_normal((3, 4))
    out = guarded(_through_the_library, "f", ["attnkit.attention", "attnkit.engines"])(q)
    assert out.shape == (3, 4)


def test_guard_refuses_modules_and_c_functions() -> None:
    torch = pytest.importorskip("torch")
    import attnkit.engines.numpy_ref as ref

    def by_module(q):
        return ref.available()          # any function defined in attnkit.engines

    def by_c_function(q):
        t = torch.as_tensor(q)
        return torch.nn.functional.scaled_dot_product_attention(t, t, t)

    q = np.zeros((2, 3))
    with pytest.raises(ForbiddenCall, match="called attnkit.engines.numpy_ref.available"):
        with guard("by_module", ["attnkit.engines"]):
            by_module(q)
    with pytest.raises(ForbiddenCall, match="scaled_dot_product_attention"):
        with guard("by_c_function", ["torch.nn.functional.scaled_dot_product_attention"]):
            by_c_function(q)
    import sys

    assert sys.getprofile() is None


def test_public_check_in_jupyter_says_what_the_grader_says(tmp_path: Path) -> None:
    """A public check run in Jupyter says what the grader says.

    The ivan sample's masked_attention calls attnkit.attention: run in a real kernel, its
    public checks fail with the grader's ForbiddenCall message.
    """
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "tests" / "grading_samples" / "ivan_ch05.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = {c.metadata.nbgrader.grade_id: o for c in nb.cells if c.cell_type == "code"
              and c.metadata.get("nbgrader", {}).get("grade_id") for o in c.outputs
              if o.output_type == "error"}
    shape = errors["ch05-masked-attention-shape"]
    assert shape.ename == "ForbiddenCall"
    assert shape.evalue.startswith("masked_attention called attnkit.attention: this exercise asks "
                                   "you to write it yourself")
    assert set(errors) == {"ch05-masked-attention-shape", "ch05-masked-attention-causal",
                           "ch05-masked-attention-padding", "ch05-masked-attention-empty-row"}


# -- the wire format: one table of tags ----------------------------------------------------


def test_one_table_of_tags_for_encoder_and_decoder() -> None:
    import sympy

    x = sympy.Symbol("x")
    samples = {"int": 2**60, "nonfinite": float("inf"), "complex": 1j, "ndarray": np.arange(3),
               "tuple": (1, 2), "set": {1}, "dict": {"a": 1}, "sympy": x + 1,
               "sympy_matrix": sympy.Matrix([[x]]), "function": len, "object": object()}
    for name, value in samples.items():
        encoded = _codec.encode(value)
        assert isinstance(encoded, dict) and list(encoded) == [_codec.TAGS[name]], name
        _codec.decode(encoded)
    assert set(samples) | {"error"} == set(_codec.TAGS)
    with pytest.raises(_codec.AnswerError, match="boom"):
        _codec.decode({_codec.TAGS["error"]: "boom"})
    # no tag is spelled anywhere but in the table
    for module in (_codec, _kernel):
        text = inspect.getsource(module)
        table = text[text.index("TAGS: dict"):text.index("}", text.index("TAGS: dict"))] \
            if module is _codec else ""
        literals = {n.value for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Constant)
                    and isinstance(n.value, str)}
        spelled = {t for t in _codec.TAGS.values() if any(f"'{t}'" in lit or f'"{t}"' in lit
                                                          or lit == t for lit in literals)}
        assert spelled <= {t for t in _codec.TAGS.values() if t in table}, (module.__name__, spelled)
    assert not hasattr(_kernel, "decode_payload")


# -- form checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: check_number("n", np.ones(2)), "n: expected one number, got an array of shape (2,)"),
        (lambda: check_number("n", True), "n: expected a number, got bool True"),
        (lambda: check_number("n", 2.5, integer=True), "n: expected a whole number, got 2.5000"),
        (lambda: check_number("n", 5e9, high=1e6), "n: expected a number between -inf and 1e+06"),
        (lambda: check_number("n", float("nan")), "n: expected a number, got nan"),
        (lambda: check_range("w", [0.2, 1.5], 0, 1), "w: every entry must lie between 0 and 1; got 1.5"),
        (lambda: check_finite("o", [1.0, np.nan]), "o: every entry must be finite; got nan"),
        (lambda: check_normalised("w", [[0.5, 0.6]]), "w: the weights must sum to 1 along axis -1"),
        (lambda: check_set_of("s", ["A"], "AB"), "s: expected a set such as {'A'}, got list"),
        (lambda: check_set_of("s", {"A", "Z"}, "AB"), "s: every element must be one of 'A', 'B'; got {'Z'}"),
        (lambda: check_unchanged("x", np.ones(2), np.zeros(2)), "x: your function changed its input"),
    ],
)
def test_form_check_messages(call, message: str) -> None:
    with pytest.raises(AssertionError) as info:
        call()
    assert str(info.value).startswith(message), str(info.value)


def test_form_checks_accept_good_answers() -> None:
    import sympy

    check_number("n", np.int64(66), low=1, integer=True)
    check_number("m", -np.inf)
    check_range("w", np.array([[0.0, 1.0]]), 0, 1)
    check_normalised("w", np.full((3, 4), 0.25))
    check_set_of("s", frozenset({"a"}), "AB")
    d, s = sympy.symbols("d_k sigma", positive=True)
    check_symbols("v", d * sympy.Symbol("sigma") ** 4, [d, s])
    with pytest.raises(AssertionError, match="it also uses n"):
        check_symbols("v", d * sympy.Symbol("n"), [d, s])


def test_both_releases_are_graded_the_same(tmp_path: Path) -> None:
    """Answers handed in on the course release get the points they get on the self-study one."""
    import importlib.util

    from attnkit.grading.grader import grade
    from attnkit.grading.release import student_notebook

    spec = importlib.util.spec_from_file_location(
        "make_samples", ROOT / "tests" / "grading_samples" / "make_samples.py")
    samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(samples)  # type: ignore[union-attr]
    source = _source("ch05")
    course_nb = student_notebook("ch05", SOURCES, mode="course")
    files = []
    for name, answers in [("alice", {}), ("ivan", {"ch05-masked-attention": samples.MASKED_LIBRARY})]:
        nb = samples.filled(course_nb, source, answers)
        assert "VALUE CHECKS" not in nbformat.writes(nb)
        path = tmp_path / f"{name}_ch05.ipynb"
        nbformat.write(nb, path)
        files.append(path)
    results = grade("ch05", files, tmp_path / "graded", timeout=10, sandbox=False, html=False)
    assert {r.student: r.points for r in results} == {"alice": 12, "ivan": 6}


# -- the shortcuts a second read found: each now scores 0 on its task ----------------------

_ATTN_WARM = ("from attnkit.serving.decoding import partial_attention as _pa\n"
              "_pa(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3)))   # an engine exists first\n")

#: (set, solution cell, code appended to it, the task's check cells): the code redefines the
#: task's function by a shortcut; every one of those checks must fail.
SHORTCUTS = {
    "ch02 torch.special.softmax": ("ch02", "ch02-stable-softmax", """
import torch
def stable_softmax(x, axis=-1):
    return torch.special.softmax(torch.as_tensor(np.asarray(x, dtype=float)), axis).numpy()
""", ["ch02-softmax-small", "ch02-softmax-large", "ch02-softmax-axis"]),
    "ch02 Tensor.softmax": ("ch02", "ch02-stable-softmax", """
import torch
_t = torch.zeros(1)
def stable_softmax(x, axis=-1):
    return _t.new_tensor(np.asarray(x, dtype=float)).softmax(axis).numpy()
""", ["ch02-softmax-small", "ch02-softmax-large", "ch02-softmax-axis"]),
    "ch03 sympy.diff": ("ch03", "ch03-derive-softmax", """
_S = sympy.exp(z0) + sympy.exp(z1) + sympy.exp(z2)
dp0_dz0 = sympy.diff(sympy.exp(z0) / _S, z0)
dp0_dz1 = sympy.diff(sympy.exp(z0) / _S, z1)
""", ["ch03-derive-softmax-check"]),
    "ch05 partial_attention": ("ch05", "ch05-masked-attention", _ATTN_WARM + """
def masked_attention(q, k, v, mask):
    return _pa(q, k, v, mask=mask)[0]
""", ["ch05-masked-attention-shape", "ch05-masked-attention-causal",
      "ch05-masked-attention-padding", "ch05-masked-attention-empty-row"]),
    "ch07 partial_attention": ("ch07", "ch07-batched", _ATTN_WARM + """
def batched_attention(q, k, v, causal=False):
    return _pa(q, k, v, causal=causal)[0]
""", ["ch07-batched-shape", "ch07-batched-values", "ch07-batched-causal"]),
    "ch07 torch.func.grad_and_value": ("ch07", "ch07-backward", """
import torch, torch.func
def attention_backward(q, k, v, d_out):
    t = [torch.as_tensor(np.asarray(a, dtype=float)) for a in (q, k, v, d_out)]
    def f(q, k, v):
        return (torch.softmax(q @ k.T / q.shape[-1] ** 0.5, -1) @ v * t[3]).sum()
    g, _ = torch.func.grad_and_value(f, argnums=(0, 1, 2))(*t[:3])
    return tuple(x.numpy() for x in g)
""", ["ch07-backward-shapes", "ch07-backward-values"]),
    "ch07 torch.func.jacrev": ("ch07", "ch07-backward", """
import torch, torch.func
def attention_backward(q, k, v, d_out):
    t = [torch.as_tensor(np.asarray(a, dtype=float)) for a in (q, k, v, d_out)]
    def f(q, k, v):
        return (torch.softmax(q @ k.T / q.shape[-1] ** 0.5, -1) @ v * t[3]).sum()
    return tuple(x.numpy() for x in torch.func.jacrev(f, argnums=(0, 1, 2))(*t[:3]))
""", ["ch07-backward-shapes", "ch07-backward-values"]),
    "ch10 group_norm": ("ch10", "ch10-layer-norm", """
import torch
def layer_norm(x):
    t = torch.as_tensor(np.asarray(x, dtype=float))
    return torch.nn.functional.group_norm(t.reshape(-1, 1, t.shape[-1]), 1).reshape(t.shape).numpy()
""", ["ch10-layer-norm-check"]),
    "ch10 native_layer_norm": ("ch10", "ch10-layer-norm", """
import torch
def layer_norm(x):
    t = torch.as_tensor(np.asarray(x, dtype=float))
    return torch.native_layer_norm(t, [t.shape[-1]], None, None, 1e-5)[0].numpy()
""", ["ch10-layer-norm-check"]),
    "ch10 partial_attention": ("ch10", "ch10-prefix", _ATTN_WARM + """
def causal_by_prefix(q, k, v):
    return _pa(q, k, v, causal=True)[0]
""", ["ch10-prefix-check"]),
    "ch11 partial_attention": ("ch11", "ch11-window", _ATTN_WARM + """
def window_attention(q, k, v, w):
    n = q.shape[0]
    band = np.array([[0 <= i - j < w for j in range(n)] for i in range(n)])
    return _pa(q, k, v, mask=band)[0]
""", ["ch11-window-check"]),
    "ch12 one partial_attention call": ("ch12", "ch12-ring", """
def ring_outputs(q, k, v, G):
    out, lse = partial_attention(q, k, v)
    return out, np.tile(lse, (G, 1))
""", ["ch12-ring-example", "ch12-ring-random"]),
    "ch12 full attention in NumPy": ("ch12", "ch12-ring", """
def ring_outputs(q, k, v, G):
    s = q @ k.T / np.sqrt(q.shape[1])
    m = s.max(axis=1, keepdims=True)
    e = np.exp(s - m)
    lse = (m + np.log(e.sum(axis=1, keepdims=True)))[:, 0]
    return e / e.sum(axis=1, keepdims=True) @ v, np.tile(lse, (G, 1))
""", ["ch12-ring-example", "ch12-ring-random"]),
    # the coverage exercises of issue 19: a plausible mistake or a library call each
    "ch06 a fit without logarithms": ("ch06", "ch06-fit", """
def fit_exponent(n, t):
    x, y = np.asarray(n, float), np.asarray(t, float)
    x_c = x - x.mean()
    return float((x_c * (y - y.mean())).sum() / (x_c * x_c).sum())
""", ["ch06-fit-check"]),
    "ch06 the slope between the end points": ("ch06", "ch06-fit", """
def fit_exponent(n, t):
    return float(np.log(t[-1] / t[0]) / np.log(n[-1] / n[0]))
""", ["ch06-fit-check"]),
    "ch10 whole-head ablation for the paths": ("ch10", "ch10-ablation", """
acc_paths = [acc_zero_0] * 3
""", ["ch10-paths-check"]),
    "ch11 serving.decode_cost": ("ch11", "ch11-roofline", """
def decode_step(params, layers, q_heads, kv_heads, head_dim, context, batch):
    m = ModelShape("m", layers, q_heads * head_dim, q_heads, kv_heads, head_dim, 1, 1)
    c = serving.decode_cost(m, context, batch=batch)
    return c.flops * params / m.params, c.bytes
""", ["ch11-decode-check"]),
    "ch11 the weights read once per sequence": ("ch11", "ch11-roofline", """
def decode_step(params, layers, q_heads, kv_heads, head_dim, context, batch):
    keys = context + 1
    flops = batch * (2 * params + layers * q_heads * keys * 4 * head_dim)
    return flops, batch * (2 * params + keys * 2 * layers * kv_heads * head_dim * 2)
""", ["ch11-decode-check"]),
    "ch11 a window one token too wide": ("ch11", "ch11-sink", """
def window_weights(scores, w, sinks):
    scores = np.asarray(scores, dtype=float)
    keep = np.zeros(scores.shape[0], dtype=bool)
    keep[max(0, scores.shape[0] - w - 1):] = True
    keep[:sinks] = True
    e = np.where(keep, np.exp(scores - scores[keep].max()), 0.0)
    return e / e.sum()
""", ["ch11-sink-check"]),
    "ch11 attnkit.attention's weights": ("ch11", "ch11-sink", """
def window_weights(scores, w, sinks):
    n = len(scores)
    return attnkit.attention(np.zeros((1, 2)), np.zeros((n, 2)), np.eye(n), mask=np.asarray(scores)[None],
                             causal="bottom-right", window=(w - 1, 0), sinks=sinks, return_weights=True)[1][0]
""", ["ch11-sink-check"]),
    "ch12 a visible block counted whole": ("ch12", "ch12-schedule", """
def ring_pairs(n, G, layout):
    pairs = np.zeros((G, G), dtype=int)
    for r in range(G):
        rows = shard_positions(n, r, G, layout=layout)
        for c in range(G):
            cols = shard_positions(n, (r - c) % G, G, layout=layout)
            pairs[r, c] = len(rows) * len(cols) if cols.min() <= rows.max() else 0
    return pairs
""", ["ch12-schedule-check"]),
    "ch12 the overlap threshold without latency": ("ch12", "ch12-overlap", """
tokens_with_latency = tokens_no_latency
hides_352k = 352_000 / 64 >= tokens_with_latency
""", ["ch12-overlap-check"]),
    "ch12 Ulysses moving only K and V": ("ch12", "ch12-ulysses", """
ulysses_bytes = (262_144 // 8) * 2 * 8 * 128 * 2 * 7 // 8
""", ["ch12-ulysses-check"]),
    "ch12 a sequential merge": ("ch12", "ch12-tree", """
def tree_merge(outs, lses):
    out, lse, levels = outs[0], lses[0], []
    for o, l in zip(outs[1:], lses[1:]):
        out, lse = merge_two(out, lse, o, l)
        levels.append([lse])
    return out, lse, levels
""", ["ch12-tree-check"]),
    "ch12 merge_partials": ("ch12", "ch12-tree", """
def tree_merge(outs, lses):
    out, lse = merge_partials(list(outs), list(lses))
    levels, parts = [], list(lses)
    while len(parts) > 1:
        pairs = zip(parts[::2], parts[1::2])
        merged = [merge_partials([np.zeros((len(a), 1))] * 2, [a, b])[1] for a, b in pairs]
        parts = merged + ([parts[-1]] if len(parts) % 2 else [])
        levels.append(parts)
    return out, lse, levels
""", ["ch12-tree-check"]),
    "ch08 an update that forgets the old state": ("ch08", "ch08-online", """
def online_update(m, l, acc, q, kb, vb):
    s = q @ kb.T / np.sqrt(q.shape[-1])
    mb = s.max(axis=1)
    p = np.exp(s - mb[:, None])
    return mb, p.sum(axis=1), p @ vb
""", ["ch08-online-update"]),
}


def _with_solution(name: str, grade_id: str, extra: str, tmp_path: Path) -> Path:
    nb = _source(name)
    cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    assert len(cells) == 1, grade_id
    cells[0].source += "\n" + extra
    nbformat.write(nb, tmp_path / f"{name}.ipynb")
    return tmp_path


@pytest.mark.parametrize("shortcut", sorted(SHORTCUTS))
def test_each_shortcut_scores_0_on_its_task(shortcut: str, tmp_path: Path) -> None:
    name, grade_id, extra, task_checks = SHORTCUTS[shortcut]
    run = run_reference(name, _with_solution(name, grade_id, extra, tmp_path))
    assert set(task_checks) <= set(run.failures), (shortcut, run.failures)


#: NumPy's fitting functions, which ch06's fit_exponent may not call (forbid in the set)
CH06_LIBRARY_FITS = {
    "np.polyfit": """
def fit_exponent(n, t):
    return float(np.polyfit(np.log(np.asarray(n, float)), np.log(np.asarray(t, float)), 1)[0])
""",
    "np.linalg.lstsq": """
def fit_exponent(n, t):
    x = np.log(np.asarray(n, float))
    a = np.stack([x, np.ones_like(x)], axis=1)
    return float(np.linalg.lstsq(a, np.log(np.asarray(t, float)), rcond=None)[0][0])
""",
    "np.polynomial": """
def fit_exponent(n, t):
    fit = np.polynomial.Polynomial.fit(np.log(np.asarray(n, float)), np.log(np.asarray(t, float)), 1)
    return float(fit.convert().coef[1])
""",
}


@pytest.mark.parametrize("fit", sorted(CH06_LIBRARY_FITS))
def test_ch06_numpys_fits_score_0_on_the_fit_check(fit: str, tmp_path: Path) -> None:
    """fit_exponent written with NumPy's own fit fails its check (the task asks for the sums).

    The answers cell after it calls fit_exponent too; a student's kernel would stop there,
    which run_reference does not model, so that cell fits through a copy of the model
    solution and only the fit's own check is under test.
    """
    nb = _source("ch06")
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    model = by_id["ch06-fit"].source.replace("def fit_exponent(", "def _model_fit(")
    by_id["ch06-fit"].source += "\n" + model + "\n" + CH06_LIBRARY_FITS[fit]
    assert "fit_exponent(" in by_id["ch06-slopes"].source
    by_id["ch06-slopes"].source = by_id["ch06-slopes"].source.replace("fit_exponent(", "_model_fit(")
    nbformat.write(nb, tmp_path / "ch06.ipynb")
    run = run_reference("ch06", tmp_path)
    assert "ch06-fit-check" in run.failures and "numpy" in run.failures["ch06-fit-check"], run.failures
    assert not {"ch06-slopes-check", "ch06-extrapolate-check", "ch06-why-check"} & set(run.failures)


def test_the_ch08_full_matrix_shortcut_scores_0_on_the_state_checks(tmp_path: Path) -> None:
    """A full-matrix online_attention (the second read's 10/10) cannot write online_update."""
    extra = '''
def online_attention(q, k, v, block_size):
    s = q @ k.T / np.sqrt(q.shape[1])
    m = s.max(axis=1)
    e = np.exp(s - m[:, None])
    l = e.sum(axis=1)
    return e / l[:, None] @ v, m + np.log(l)

def online_update(m, l, acc, q, kb, vb):
    raise NotImplementedError()
'''
    run = run_reference("ch08", _with_solution("ch08", "ch08-online", extra, tmp_path))
    task = [g for g, c in run.plan.cells.items() if c.kind == "check" and g.startswith("ch08-online")]
    assert len(task) == 5 and set(task) <= set(run.failures), run.failures


_ORDER_SCRIPT = r"""
import sys, nbformat
from pathlib import Path
from attnkit.grading._reference import run_reference
src, name, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
nb = nbformat.read(src / f"{name}.ipynb", as_version=4)
checks = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
task = [c for c in checks if c.metadata.nbgrader.grade_id in sys.argv[4:]]
# nothing but the set-up, the locked cells and the solutions, then the task's checks in
# reverse order: no other check has created an engine or imported anything first
nb.cells = [c for c in nb.cells if c not in checks] + task[::-1]
nbformat.write(nb, out / f"{name}.ipynb")
run = run_reference(name, out)
print(sorted(run.failures.items()))
sys.exit(1 if run.failures else 0)
"""


@pytest.mark.parametrize("name,task", [
    ("ch05", ["ch05-masked-attention-causal", "ch05-masked-attention-empty-row"]),
    ("ch07", ["ch07-batched-causal", "ch07-backward-values"]),
    ("ch08", ["ch08-online-update", "ch08-online-random"]),
    ("ch10", ["ch10-prefix-check", "ch10-layer-norm-check"]),
    ("ch11", ["ch11-window-check", "ch11-decode-check", "ch11-sink-check"]),
    ("ch12", ["ch12-ring-random", "ch12-ring-example", "ch12-tree-check", "ch12-schedule-check"]),
])
def test_model_solution_passes_its_checks_whatever_ran_before(name: str, task: list, tmp_path: Path) -> None:
    """The reference passes its task's checks run first, alone and in reverse order.

    In a fresh interpreter: no engine was made and nothing imported by another check.
    """
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _ORDER_SCRIPT, str(SOURCES), name, str(tmp_path), *task],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_guard_judges_library_generated_code_by_its_caller(tmp_path: Path) -> None:
    """Code generated at run time ("<string>") is judged by who generated it.

    A dataclass's __init__ made by library code is the library's; code a student execs is
    the student's.
    """
    import subprocess
    import sys

    script = r'''
import numpy as np
from attnkit.grading._guard import ForbiddenCall, guard
from attnkit.serving.decoding import partial_attention
q = np.ones((2, 3))
with guard("f", ["attnkit.engines", "attnkit.attention"]):     # the first engine is made here
    partial_attention(q, q, q)
try:
    with guard("g", ["attnkit.softmax"]):
        exec("import attnkit\nattnkit.softmax(np.zeros(2))")
except ForbiddenCall:
    print("refused")
'''
    path = tmp_path / "generated.py"
    path.write_text(script)
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "refused", proc.stdout + proc.stderr[-2000:]


# -- docstrings and pages every student reads spell out no answer --------------------------


def test_no_answer_in_docstrings_or_the_exercises_page() -> None:
    import pkgutil

    import attnkit.grading as grading
    from attnkit.grading.leaks import docstrings, imported_objects, text_leaks

    modules = [grading] + [importlib.import_module(f"attnkit.grading.{m.name}")
                           for m in pkgutil.iter_modules(grading.__path__)]
    every = {}
    found = []
    for name in SETS:
        nb = _source(name)
        answers = run_reference(name, SOURCES, guard=False).answers
        every.update(answers)
        setup = "\n".join(c.source for c in nb.cells if c.cell_type == "code"
                          and not c.metadata.get("nbgrader", {}).get("solution")
                          and not c.metadata.get("nbgrader", {}).get("grade")
                          and WORKED_TAG not in c.metadata.get("tags", []))
        for label, doc in docstrings(imported_objects(setup)).items():
            found += [f"{name}: {label}: {h}" for h in text_leaks(doc, answers)]
    for label, doc in docstrings(modules).items():
        found += [f"{label}: {h}" for h in text_leaks(doc, every)]
    for page in ("index.md",):
        found += [f"book/exercises/{page}: {h}"
                  for h in text_leaks((ROOT / "book" / "exercises" / page).read_text(), every)]
    assert found == []


def test_text_leaks_finds_the_leaks_the_second_read_found() -> None:
    from attnkit.grading.leaks import text_leaks

    answers = {**run_reference("ch01", SOURCES, guard=False).answers,
               **run_reference("ch05", SOURCES, guard=False).answers}
    assert text_leaks('>>> check_number("steps", 66, low=1, integer=True)', answers)
    assert text_leaks('>>> check_number("fade", 0.0052, low=0, high=1)', answers)
    assert text_leaks("AssertionError: weight_pos1: expected 0.2447, got 0.3", answers)
