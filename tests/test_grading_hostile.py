"""The grader against hostile and unlucky submissions (tests/grading_hostile, ch05, 12 points).

One batch is graded once, in the sandbox, with a 3 s cell limit and a 1 GiB memory
limit: every submission gets its exact points, nothing outside the students' scratch
directories changes, no process outlives grading, and the feedback is bounded and
free of hidden-test source. The same batch graded with ``jobs=2`` (two students at a
time, each in its own sandbox) gives the same results, gradebook rows and feedback.
Needs bubblewrap; skips, saying why, where it cannot run.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from attnkit.grading._sandbox import SandboxUnavailable, probe
from attnkit.grading.cli import main as grade_main
from attnkit.grading.grader import grade
from attnkit.grading.leaks import find_leaks, published_text, secrets

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "grading_hostile"
SOURCES = ROOT / "exercises" / "source"
SAMPLES = ROOT / "tests" / "grading_samples"

#: student -> (points, why). bob's answers are 8/12, alice's 12/12.
EXPECTED = {
    "rebinder": (8, "bob's answers; rebinds check/check_choice/check_shape/quiet"),
    "patcher": (8, "bob's answers; patches np.allclose/isclose, numpy.testing, check.__code__"),
    "hooker": (8, "bob's answers; set_custom_exc, post_run_cell, stderr to /dev/null"),
    "vandal": (12, "alice's answers; tries to overwrite every file it knows of"),
    "crasher": (6, "os._exit(1) in the masked_attention cell: its 4 checks (6 points) lost"),
    "stubborn": (11, "the fp16 cell swallows interrupts: killed, its 1 point lost"),
    "detacher": (12, "alice's answers; leaves detached processes"),
    "chatty": (12, "alice's answers; one 50 MB line of output"),
    "peeker": (12, "alice's answers; prints In, _ih and lines of the hidden tests"),
    "hog": (12, "alice's answers; fills memory 64 MiB at a time up to 12 GiB"),
    "Zoë Smith": (12, "alice's answers, a Unicode name with a space"),
    "Zoe Smith": (8, "bob's answers; the same file-name slug as Zoë Smith"),
}


def _sandbox_reason() -> str:
    try:
        probe()
    except SandboxUnavailable as exc:
        return str(exc)
    return ""


REASON = _sandbox_reason()
needs_sandbox = pytest.mark.skipif(bool(REASON), reason=f"bubblewrap cannot run here: {REASON}")


def _tree_hash(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def _processes_with(marker: str) -> list[str]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
            except OSError:
                continue
            if marker in cmd:
                found.append(f"{p.name}: {cmd}")
    return found


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if REASON:
        pytest.skip(f"bubblewrap cannot run here: {REASON}")
    tmp = tmp_path_factory.mktemp("hostile")
    subs = tmp / "submissions"
    shutil.copytree(HOSTILE, subs, ignore=shutil.ignore_patterns("*.py", "*.toml", ".*"))
    src = tmp / "source"
    shutil.copytree(SOURCES, src)
    out = tmp / "graded"
    (out / "feedback").mkdir(parents=True)
    # an earlier run: another set's row and feedback file must survive untouched
    (out / "gradebook.csv").write_text(
        "student,exercise_set,points,max_points,status,file\nalice,ch04,7,9,graded,a.ipynb\n",
        encoding="utf-8")
    (out / "feedback" / "alice-ch04.txt").write_text("earlier feedback\n", encoding="utf-8")
    vandal = subs / "vandal_ch05.ipynb"
    nb = nbformat.read(vandal, as_version=4)
    files = [str(p) for p in sorted(subs.iterdir())] + [
        str(out / "gradebook.csv"), str(out / "feedback" / "alice-ch04.txt"),
        str(src / "ch05.ipynb")]
    dirs = [str(subs), str(out), str(out / "feedback"), str(src), str(tmp)]
    for cell in nb.cells:
        if cell.source.startswith("# overwrite"):
            cell.source = (cell.source.replace("TARGET_DIRS = []", f"TARGET_DIRS = {dirs!r}")
                           .replace("TARGET_FILES = []", f"TARGET_FILES = {files!r}"))
    nbformat.write(nb, vandal)
    before = {"subs": _tree_hash(subs), "src": _tree_hash(src), "gradebook":
              (out / "gradebook.csv").read_bytes(), "old": (out / "feedback" / "alice-ch04.txt")}
    results = grade("ch05", sorted(subs.iterdir()), out, timeout=3, source_dir=src,
                    memory="1G", max_output=10_000, max_feedback=100_000)
    return {"results": results, "out": out, "subs": subs, "src": src, "before": before}


@needs_sandbox
def test_exact_points(batch: dict) -> None:
    got = {r.student: r.points for r in batch["results"]}
    assert got == {name: pts for name, (pts, _) in EXPECTED.items()}
    assert all(r.status == "graded" and r.max_points == 12 for r in batch["results"])


@needs_sandbox
def test_nothing_outside_scratch_changed(batch: dict) -> None:
    before = batch["before"]
    assert _tree_hash(batch["subs"]) == before["subs"]
    assert _tree_hash(batch["src"]) == before["src"]
    assert before["old"].read_text() == "earlier feedback\n"
    with (batch["out"] / "gradebook.csv").open(newline="", encoding="utf-8") as f:
        rows = {(r["student"], r["exercise_set"]): r for r in csv.DictReader(f)}
    assert rows[("alice", "ch04")]["points"] == "7"                 # the earlier row, kept
    assert {s for s, _ in rows} == set(EXPECTED) | {"alice"}        # no "mallory"
    files = {p.name for p in (batch["out"] / "feedback").iterdir()}
    assert "alice-ch04.txt" in files and not any("mallory" in f for f in files)


@needs_sandbox
def test_no_process_outlives_grading(batch: dict) -> None:
    assert _processes_with("sleep 31337") == []
    assert _processes_with("31338") == []


@needs_sandbox
def test_dead_and_killed_cells_are_named(batch: dict) -> None:
    by = {r.student: r for r in batch["results"]}
    crash = " ".join(by["crasher"].events)
    assert "(ch05-masked-attention)" in crash and "kernel died" in crash
    stub = " ".join(by["stubborn"].events)
    assert "(ch05-fp16)" in stub and "ignored the interrupt" in stub
    text = (batch["out"] / "feedback" / "crasher-ch05.txt").read_text()
    assert "kernel died" in text and "ch05-masked-attention" in text
    assert "MemoryError" in (batch["out"] / "feedback" / "hog-ch05.txt").read_text()


@needs_sandbox
def test_feedback_is_bounded_and_says_where_it_was_cut(batch: dict) -> None:
    fb = batch["out"] / "feedback"
    for p in fb.iterdir():
        assert p.stat().st_size < 120_000, p.name
    text = (fb / "chatty-ch05.txt").read_text()
    assert "[output cut here:" in text and "more bytes not shown" in text


@needs_sandbox
def test_feedback_has_no_hidden_test_source(batch: dict) -> None:
    released = [nbformat.read(ROOT / "book" / "exercises" / "ch05.ipynb", as_version=4)]
    hidden = secrets(nbformat.read(SOURCES / "ch05.ipynb", as_version=4), released,
                     hidden_only=True)
    for p in (batch["out"] / "feedback").iterdir():
        assert find_leaks(published_text(p), hidden) == [], p.name
    text = (batch["out"] / "feedback" / "peeker-ch05.txt").read_text()
    assert "print(In)" in text                      # the history holds the student's own cells
    assert "[withheld: this text contains a line of the hidden tests]" in text


@pytest.fixture(scope="module")
def batch_jobs_2(batch: dict) -> dict:
    """The same submissions graded again, two students at a time, into another directory."""
    out = batch["out"].parent / "graded-jobs-2"
    results = grade("ch05", sorted(batch["subs"].iterdir()), out, timeout=3,
                    source_dir=batch["src"], memory="1G", max_output=10_000,
                    max_feedback=100_000, jobs=2)
    return {"results": results, "out": out}


def _comparable(res: object) -> tuple:
    r = res  # a Result: everything but the seconds it took and the scratch it ran in
    return (r.student, r.points, r.max_points, r.status, r.note, r.restored, r.events,  # type: ignore[attr-defined]
            [(c.grade_id, c.points, c.message) for c in r.checks],  # type: ignore[attr-defined]
            [Path(p).name for p in r.feedback], r.slug, r.outputs)  # type: ignore[attr-defined]


#: A cell that runs close to its time limit can finish in one run and be stopped (or, if
#: the kernel is too busy to take the interrupt, killed) in another, --jobs 1 against
#: --jobs 1 included: chatty's 50 MB line and hog's 1 GiB of allocations take seconds on
#: a loaded machine. Those cells are graded by no check, so only the events and the
#: outputs of these students may differ between two runs, never their points or checks.
TIME_SENSITIVE = {"chatty", "hog", "stubborn"}


def _checks(res: object) -> tuple:
    r = res
    return (r.student, r.points, r.max_points, r.status, r.slug,  # type: ignore[attr-defined]
            [(c.grade_id, c.points, c.message) for c in r.checks])  # type: ignore[attr-defined]


@needs_sandbox
def test_jobs_2_grades_the_hostile_batch_as_jobs_1(batch: dict, batch_jobs_2: dict) -> None:
    one, two = batch["results"], batch_jobs_2["results"]
    assert [_checks(r) for r in two] == [_checks(r) for r in one]   # points and checks: always
    timed = {r1.student for r1, r2 in zip(one, two) if _comparable(r1) != _comparable(r2)}
    assert timed <= TIME_SENSITIVE, timed
    for r1, r2 in zip(one, two):
        if r1.student in timed:
            assert any("time limit" in e for e in r1.events + r2.events), r1.student
    with (batch["out"] / "gradebook.csv").open(newline="", encoding="utf-8") as f:
        rows1 = [r for r in csv.DictReader(f) if r["exercise_set"] == "ch05"]
    with (batch_jobs_2["out"] / "gradebook.csv").open(newline="", encoding="utf-8") as f:
        rows2 = list(csv.DictReader(f))
    assert rows2 == rows1
    fb1, fb2 = batch["out"] / "feedback", batch_jobs_2["out"] / "feedback"
    names = sorted(p.name for p in fb2.iterdir())
    assert names == sorted(p.name for p in fb1.iterdir() if p.name != "alice-ch04.txt")
    slugs = {r.slug for r in one if r.student in timed}
    for name in names:
        if name.rsplit("-", 1)[0] not in slugs:
            assert (fb2 / name).read_bytes() == (fb1 / name).read_bytes(), name
    assert _processes_with("sleep 31337") == [] and _processes_with("31338") == []


@needs_sandbox
def test_names_as_given_and_slugs_kept_apart(batch: dict) -> None:
    by = {r.student: r for r in batch["results"]}
    assert by["Zoë Smith"].slug != by["Zoe Smith"].slug
    for name in ("Zoë Smith", "Zoe Smith"):
        text = Path(by[name].feedback[0]).read_text(encoding="utf-8")
        assert text.startswith(f"Exercise set ch05, student {name}: ")


def test_missing_file_stops_before_anything_is_graded(tmp_path: Path, capsys) -> None:
    out = tmp_path / "graded"
    rc = grade_main(["ch05", str(SAMPLES / "alice_ch05.ipynb"), "/nonexistent.ipynb",
                     "--out", str(out)])
    assert rc == 2
    assert "no such file: '/nonexistent.ipynb' (nothing was graded)" in capsys.readouterr().err
    assert not out.exists()


def test_without_bubblewrap_the_grader_refuses(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))           # no bwrap on PATH
    rc = grade_main(["ch05", str(SAMPLES / "alice_ch05.ipynb"), "--out", str(tmp_path / "g")])
    err = capsys.readouterr().err
    assert rc == 3
    assert "bubblewrap" in err and "--no-sandbox" in err and "nothing was graded" in err
    assert not (tmp_path / "g" / "gradebook.csv").exists()


def test_no_sandbox_grades_with_a_warning(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path), os.environ.get("PATH", "")]))
    rc = grade_main(["ch05", str(SAMPLES / "alice_ch05.ipynb"), "--out", str(tmp_path / "g"),
                     "--no-sandbox", "--no-html", "--timeout", "10"])
    cap = capsys.readouterr()
    assert rc == 0 and "--no-sandbox" in cap.err
    assert "alice" in cap.out and " 12 " in cap.out
