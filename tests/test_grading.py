"""The exercise sets and their grading: checks, release, the grader on sample submissions.

The sample submissions (tests/grading_samples, made by make_samples.py) are of set
ch05 (12 points). One batch is graded once per module with a short cell time limit.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest

from attnkit.grading import check, check_choice, check_shape, quiet
from attnkit.grading._plan import assigned_names, build_plan
from attnkit.grading._sandbox import SandboxUnavailable, probe
from attnkit.grading.cli import main as grade_main
from attnkit.grading.grader import grade, restore_missing_cells, slug, student_name
from attnkit.grading.leaks import find_leaks, published_text, secrets
from attnkit.grading.release import release
from attnkit.grading.sets import MARKERS, exercise_sets, grade_ids

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "grading_samples"
SOURCES = ROOT / "exercises" / "source"
STUDENT = ROOT / "book" / "exercises"
SETS = exercise_sets(SOURCES)  # every set in exercises/source (ch01 ... ch09, ch12, ...)

#: student -> (points, status) for the sample submissions of ch05 (maximum 12).
EXPECTED = {
    "alice": (12, "graded"),              # every answer right
    "bob": (8, "graded"),                 # four answers wrong
    "carol": (5, "graded"),               # masked_attention raises, one answer missing
    "dave": (6, "graded"),                # masked_attention never returns
    "erin": (10, "graded"),               # deleted four cells, one of them an answer
    "frank": (12, "graded"),              # right, but warns and writes to stderr
    "grace": (0, "not a notebook"),
    "heidi": (0, "wrong exercise set"),   # a ch01 notebook
    "ivan": (6, "graded"),                # masked_attention calls attnkit.attention
    "judy": (6, "graded"),                # the same under an alias, the refusal swallowed
    "spy": (12, "graded"),                # right, and looks for the hidden tests on disk
}

#: A student cell that searches every file it can reach for a line of the hidden tests
#: (NEEDLE is replaced by one such line) and prints what it found.
SPY = '''import json, os, tempfile
from pathlib import Path

_found = []
for _d in [Path(tempfile.gettempdir()), Path("/tmp"), Path.cwd().parent]:
    for _root, _dirs, _files in os.walk(_d):
        if "pyvenv.cfg" in _files:  # the (read-only) Python environment: no tests in it
            _dirs[:] = []
            continue
        _dirs[:] = [d for d in _dirs if d not in (".git", "__pycache__")]
        for _f in _files:
            _p = Path(_root, _f)
            try:
                if NEEDLE in _p.read_text(errors="ignore"):
                    _found.append(str(_p))
            except OSError:
                pass
print("SPY" + json.dumps({"cwd": os.getcwd(), "listing": os.listdir("."), "found": _found}))
masked_score = -np.inf
'''


def _hidden_line(exercise_set: str) -> str:
    """A line of code from the first hidden-test block of ``exercise_set``'s source."""
    src = nbformat.read(SOURCES / f"{exercise_set}.ipynb", as_version=4)
    for cell in src.cells:
        inside = False
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and line.strip() and not line.strip().startswith("#"):
                return line.strip()
    raise AssertionError(f"{exercise_set} has no hidden tests")


def _sandbox_works() -> bool:
    try:
        probe()
    except SandboxUnavailable:
        return False
    return True


#: The samples are graded in the sandbox where bubblewrap runs (tests/test_grading_hostile.py
#: covers the sandbox itself); elsewhere without it, so that these tests still run.
SANDBOX = _sandbox_works()


def _sample_files() -> list[Path]:
    return sorted(p for p in SAMPLES.glob("*_ch05.ipynb"))


def _snapshot(paths: list[Path]) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Grade every sample (plus a spying one) once: ``{"results", "out", "before", "report"}``."""
    tmp = tmp_path_factory.mktemp("grading")
    alice = nbformat.read(SAMPLES / "alice_ch05.ipynb", as_version=4)
    for cell in alice.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "ch05-masked-score":
            cell.source = SPY.replace("NEEDLE", repr(_hidden_line("ch05")))
    spy = tmp / "spy_ch05.ipynb"
    nbformat.write(alice, spy)
    files = _sample_files() + [spy]
    before = _snapshot(files)
    out = tmp / "graded"
    results = grade("ch05", files, out, timeout=2, sandbox=SANDBOX)
    return {"results": results, "out": out, "before": before}


def test_sample_points_and_status(batch: dict) -> None:
    got = {r.student: (r.points, r.status) for r in batch["results"]}
    assert got == EXPECTED
    assert all(r.max_points == 12 for r in batch["results"])


def test_each_failed_check_says_why(batch: dict) -> None:
    by = {r.student: r for r in batch["results"]}
    failed = {name: {c.grade_id: c.message for c in r.checks if c.points < c.max_points}
              for name, r in by.items()}
    assert set(failed["bob"]) == {"ch05-masked-score-check", "ch05-causal-choice-check",
                                  "ch05-weight-pos1-masked-check", "ch05-masked-attention-empty-row"}
    assert "expected 'C', got 'A'" in failed["bob"]["ch05-causal-choice-check"]
    assert "got nan" in failed["bob"]["ch05-masked-attention-empty-row"]
    assert all("ValueError: I did not get to this one" in failed["carol"][g]
               for g in failed["carol"] if "masked-attention" in g)
    assert "not answered yet" in failed["carol"]["ch05-fp16-check"]
    assert len(failed["dave"]) == 4
    assert all("time limit" in m for m in failed["dave"].values())
    assert not failed["frank"] and not failed["alice"]
    assert by["erin"].restored == ["ch05-setup", "ch05-options", "ch05-causal-choice-check",
                                   "ch05-weights"]
    assert "ch01" in by["heidi"].note and "grace_ch05.ipynb" in by["grace"].note


def test_gradebook_csv(batch: dict) -> None:
    with (batch["out"] / "gradebook.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["student", "exercise_set", "points", "max_points", "status", "file"]
    assert {r["student"]: (float(r["points"]), r["status"]) for r in rows} == EXPECTED
    assert {r["exercise_set"] for r in rows} == {"ch05"} and {r["max_points"] for r in rows} == {"12"}


def test_feedback_files(batch: dict) -> None:
    fb = batch["out"] / "feedback"
    text = (fb / "bob-ch05.txt").read_text()
    assert text.startswith("Exercise set ch05, student bob: 8 / 12 points")
    assert re.search(r"FAIL +0/1 +ch05-causal-choice-check +AssertionError: causal_choice: "
                     r"expected 'C', got 'A'", text)
    assert "Not graded (not a notebook)" in (fb / "grace-ch05.txt").read_text()
    graded = {r.student for r in batch["results"] if r.status == "graded"}
    assert {p.stem.rsplit("-", 1)[0] for p in fb.glob("*.html")} == graded


def test_feedback_shows_no_hidden_test_code(batch: dict) -> None:
    hidden = secrets(nbformat.read(SOURCES / "ch05.ipynb", as_version=4), _released(),
                     hidden_only=True)
    assert hidden, "ch05 has hidden tests"
    for path in (batch["out"] / "feedback").iterdir():
        assert find_leaks(published_text(path), hidden) == [], path.name


def test_submissions_are_not_modified(batch: dict) -> None:
    for path, (data, mtime) in batch["before"].items():
        assert path.read_bytes() == data, path
        assert path.stat().st_mtime_ns == mtime, path


def test_hidden_tests_are_not_on_disk_where_student_code_runs(batch: dict) -> None:
    text = (batch["out"] / "feedback" / "spy-ch05.txt").read_text()
    report = json.loads(text.split("SPY", 1)[1].splitlines()[0])
    assert report["listing"] == []                       # an empty scratch directory
    assert "attnkit-student-" in report["cwd"]
    assert report["found"] == []                         # no file with hidden tests


def test_cli_prints_a_table_and_names_rejected_files(tmp_path: Path, capsys) -> None:
    files = [SAMPLES / "alice_ch05.ipynb", SAMPLES / "grace_ch05.ipynb"]
    rc = grade_main(["ch05", *map(str, files), "--out", str(tmp_path), "--no-html",
                     "--student", "Ann Lee", "--student", "gus", "--timeout", "5"]
                    + ([] if SANDBOX else ["--no-sandbox"]))
    out = capsys.readouterr().out
    assert rc == 0
    assert re.search(r"^Ann Lee\s+ch05\s+12\s+12\s+graded$", out, re.M), out
    assert re.search(r"^gus\s+ch05\s+0\s+12\s+not a notebook: grace_ch05.ipynb", out, re.M), out
    assert (tmp_path / "gradebook.csv").exists() and not list(tmp_path.glob("feedback/*.html"))


def test_cli_usage_errors(tmp_path: Path, capsys) -> None:
    assert grade_main(["ch99", str(SAMPLES / "alice_ch05.ipynb"), "--out", str(tmp_path)]) == 2
    assert "exercise_set must be one of ch01" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        grade_main(["ch05"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"timeout": 0}, "timeout must be a positive"),
        ({"students": ["a", "b"]}, "one name per submitted file"),
    ],
)
def test_grade_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        grade("ch05", [SAMPLES / "alice_ch05.ipynb"], tmp_path, **kwargs)
    with pytest.raises(TypeError, match="exercise_set must be a str"):
        grade(5, [SAMPLES / "alice_ch05.ipynb"], tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "path, name",
    [
        ("sub/alice_ch05.ipynb", "alice"),
        ("alice-ch05.ipynb", "alice"),
        ("ch05_alice.ipynb", "alice"),
        ("alice.ipynb", "alice"),
        ("alice/ch05.ipynb", "alice"),
        ("Jo Ann (2).ipynb", "Jo Ann (2)"),
        ("Zoë Smith_ch05.ipynb", "Zoë Smith"),
        ("sub/Zoë  Smith/ch05.ipynb", "Zoë Smith"),
        ("notes.txt", "notes"),
    ],
)
def test_student_name_conventions(path: str, name: str) -> None:
    assert student_name(path, "ch05") == name


def test_slugs_are_file_names() -> None:
    assert slug("Zoë Smith") == "Zoe_Smith"
    assert slug("../../etc/passwd") == "etc_passwd"
    assert slug("李") == "student"


def test_restore_missing_cells_puts_cells_back_in_place() -> None:
    released = _released_set("ch05")
    sub = nbformat.from_dict(json.loads(nbformat.writes(released)))
    ids = grade_ids(released)
    sub.cells = [c for c in sub.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                 not in {ids[0], ids[5], ids[6]}]
    assert restore_missing_cells(sub, released) == [ids[0], ids[5], ids[6]]
    assert grade_ids(sub) == ids


# -- the student notebooks --------------------------------------------------------------


def _released() -> list[nbformat.NotebookNode]:
    return [nbformat.read(STUDENT / f"{s}.ipynb", as_version=4) for s in SETS]


def _released_set(name: str) -> nbformat.NotebookNode:
    return nbformat.read(STUDENT / f"{name}.ipynb", as_version=4)


def test_one_exercise_set_per_chapter() -> None:
    assert exercise_sets(SOURCES) == SETS
    assert sorted(p.stem for p in STUDENT.glob("ch*.ipynb")) == SETS
    toc = (ROOT / "_toc.yml").read_text()
    for s in SETS:
        assert f"- file: book/exercises/{s}\n" in toc


@pytest.mark.parametrize("name", SETS)
def test_every_set_has_public_and_hidden_tests(name: str) -> None:
    src = nbformat.read(SOURCES / f"{name}.ipynb", as_version=4)
    tests = [c for c in src.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(tests) >= 4
    assert any("BEGIN HIDDEN TESTS" in c.source for c in tests)
    assert sum(c.metadata["nbgrader"]["points"] for c in tests) >= 7
    for cell in _released_set(name).cells:  # every released cell is valid Python
        if cell.cell_type == "code":
            gid = cell.metadata.get("nbgrader", {}).get("grade_id", "set-up")
            compile(cell.source, f"{name}:{gid}", "exec")


@pytest.mark.parametrize("name", SETS)
def test_every_check_reads_names_that_answers_define(name: str) -> None:
    """Each name a check reads is defined by an answer cell.

    The grader copies what a check reads out of the student's kernel, so a name
    that no answer cell defines means the inference is wrong.
    """
    src = nbformat.read(SOURCES / f"{name}.ipynb", as_version=4)
    plan = build_plan(name, src)
    answers: set[str] = set()
    for c in src.cells:
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution"):
            answers |= assigned_names(c.source)
    checks = [c for c in plan.cells.values() if c.kind == "check"]
    assert checks and plan.max_points >= 7
    for c in checks:
        assert c.reads, c.grade_id
        assert set(c.reads) <= answers, (c.grade_id, set(c.reads) - answers)


def test_student_notebooks_are_up_to_date(tmp_path: Path) -> None:
    fresh = release(tmp_path)
    assert [str(p.relative_to(tmp_path)) for p in fresh] == [
        f for s in SETS for f in (f"{s}.ipynb", f"solutions/{s}.md")]
    stale = [str(p.relative_to(tmp_path)) for p in fresh
             if p.read_bytes() != (STUDENT / p.relative_to(tmp_path)).read_bytes()]
    assert not stale, f"run `make student-notebooks`: {stale} differ from exercises/source"


def test_student_notebooks_contain_no_solution_or_hidden_test() -> None:
    released = _released()
    for name in SETS:
        src = nbformat.read(SOURCES / f"{name}.ipynb", as_version=4)
        secret = secrets(src, released)
        assert len(secret) >= 10
        # the detector works: the source itself is full of them
        assert len(find_leaks(published_text(SOURCES / f"{name}.ipynb"), secret)) >= 10
        for s in SETS:
            leaks = find_leaks(published_text(STUDENT / f"{s}.ipynb"), secret)
            assert leaks == [], (s, name, leaks)
    for name in SETS:  # the worked solutions: solution code, never a hidden test
        text = (STUDENT / "solutions" / f"{name}.md").read_text()
        src = nbformat.read(SOURCES / f"{name}.ipynb", as_version=4)
        assert find_leaks(text, secrets(src, released, hidden_only=True)) == []
        assert find_leaks(text, secrets(src, released)), name
    for nb in released:
        assert nb.metadata["mystnb"] == {"execution_mode": "off"}
        text = nbformat.writes(nb)
        assert not [m for m in MARKERS if m in text]


# -- the checks a student sees -----------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (("w", np.array([1.0, 2.0]), np.array([1.0, 2.5])),
         "w: 1 of 2 entries differ by more than 0.0001; first at index (1,): expected 2.5000, got 2.0"),
        (("w", np.ones(3), np.ones(4)), "w: expected shape (4,), got shape (3,)"),
        (("x", None, 1.0), "x is not answered yet: it is still None; assign your answer"),
        (("x", 0.3, 0.2447), "x: expected 0.2447, got 0.3"),
        (("x", "abc", 0.2447), "x: expected a number or array like 0.2447, got str 'abc'"),
        (("c", "A", "C"), "c: expected 'C', got 'A'"),
        (("b", "False", False), "b: expected True or False, got str 'False'"),
        (("b", True, False), "b: expected False, got True"),
        (("s", {"cat"}, {"cat", "sat"}), "s: expected {'cat', 'sat'}, got {'cat'}"),
        (("shape", (5, 2), (2, 5, 3)), "shape: expected (2, 5, 3), got (5, 2)"),
        (("m", -1e9, -np.inf), "m: expected -inf, got -1000000000.0"),
    ],
)
def test_check_messages(args: tuple, message: str) -> None:
    with pytest.raises(AssertionError) as info:
        check(*args)
    assert str(info.value).startswith(message), str(info.value)


def test_check_accepts_right_answers() -> None:
    check("w", [0.10951, 0.2976], np.array([0.1095, 0.2976]))
    check("c", " b ", "B")
    check("b", np.bool_(False), False)
    check("s", ["sat", "cat"], {"cat", "sat"})
    check("shape", np.zeros((2, 5, 3)).shape, (2, 5, 3))
    check("m", -np.inf, -np.inf)
    check_shape("w", np.zeros((5, 5)), (5, 5))
    check_choice("c", "d", "ABCD")
    with pytest.raises(AssertionError, match="expected one of 'A', 'B', got 'E'"):
        check_choice("c", "E", "AB")
    with pytest.raises(AssertionError, match=r"expected shape \(5, 5\), got shape \(5,\)"):
        check_shape("w", np.zeros(5), (5, 5))
    with pytest.raises(TypeError, match="name must be a str"):
        check(1, 1, 1)  # type: ignore[arg-type]


def test_quiet_silences_warnings_and_stderr(capfd) -> None:
    import sys

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with quiet():
            warnings.warn("student warning", stacklevel=1)
            np.exp(np.array([1000.0]))
            print("to stderr", file=sys.stderr)
    assert "to stderr" not in capfd.readouterr().err
    with pytest.raises(AssertionError), quiet():
        check("x", 1.0, 2.0)


def test_sources_need_a_checkout_or_an_explicit_directory(tmp_path: Path, monkeypatch) -> None:
    from attnkit.grading import sets

    monkeypatch.delenv("ATTNKIT_EXERCISES", raising=False)
    monkeypatch.chdir(tmp_path)                              # outside any checkout
    monkeypatch.setattr(sets, "_editable_project", lambda: None)   # as from a wheel
    with pytest.raises(ValueError, match="pass --source DIR .* or set ATTNKIT_EXERCISES"):
        sets.default_source_dir()
    monkeypatch.setenv("ATTNKIT_EXERCISES", str(SOURCES))
    assert sets.default_source_dir() == SOURCES
    monkeypatch.delenv("ATTNKIT_EXERCISES")
    monkeypatch.chdir(ROOT / "tests")                        # inside the checkout
    assert sets.default_source_dir() == SOURCES


def test_a_call_whose_answer_was_lost_is_made_once_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer dropped on the kernel's output channel is the grader's loss: one retry."""
    from attnkit.grading._kernel import CellRun, KernelSession

    session = KernelSession.__new__(KernelSession)  # no kernel: _execute is replaced
    answers = [None, {"value": 1}]
    calls: list[str] = []

    def execute(code: str, **_: object) -> CellRun:
        calls.append(code)
        run = CellRun("ok")
        run.payload = answers[len(calls) - 1] if len(calls) <= len(answers) else None
        return run

    monkeypatch.setattr(session, "_execute", execute)
    run = session._request("f()")
    assert (run.status, run.payload, len(calls)) == ("ok", {"value": 1}, 2)
    answers[:] = [None, None]
    calls.clear()
    run = session._request("f()")
    assert (run.status, run.error, len(calls)) == ("error", "the kernel sent no answer", 2)
