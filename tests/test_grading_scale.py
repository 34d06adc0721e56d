"""Grading a large class: --jobs, --resume after a kill, --only, --shard and merge, export.

One small class of ch05 (three notebooks that run, one of them with deleted cells, one
file that is not a notebook, one notebook of another set) is graded once as the
reference, with a 2 s cell limit; every other way of grading it (killed with --jobs 2 and
resumed, in two shards merged, one student regraded) must give the same gradebook and
the same feedback, byte for byte. The whole hostile batch is graded with --jobs 2 and
compared with --jobs 1 in tests/test_grading_hostile.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from attnkit.grading import _sandbox
from attnkit.grading._sandbox import Limits, Sandbox, SandboxUnavailable, probe
from attnkit.grading.batch import check_memory, machine_memory
from attnkit.grading.cli import main as grade_main
from attnkit.grading.export import export
from attnkit.grading.grader import grade
from attnkit.grading.progress import Progress, tally
from attnkit.grading.shards import MergeError, Shard, merge, parse_shard

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "grading_samples"
CLASS = [SAMPLES / f"{n}_ch05.ipynb" for n in ("alice", "bob", "erin", "grace", "heidi")]
POINTS = {"alice": 12, "bob": 8, "erin": 10, "grace": 0, "heidi": 0}


def _sandbox_reason() -> str:
    try:
        probe()
    except SandboxUnavailable as exc:
        return str(exc)
    return ""


REASON = _sandbox_reason()
SANDBOX = not REASON
OPTS = {"timeout": 2, "sandbox": SANDBOX, "memory": "1G"}
CLI_OPTS = ["--timeout", "2", "--memory", "1G"] + ([] if SANDBOX else ["--no-sandbox"])


def _files(out: Path) -> dict[str, bytes]:
    """The gradebook and the feedback files of an output directory, by name."""
    found = {"gradebook.csv": (out / "gradebook.csv").read_bytes()}
    for p in sorted((out / "feedback").iterdir()):
        found[f"feedback/{p.name}"] = p.read_bytes()
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The class graded once, in one process, one student after another."""
    out = tmp_path_factory.mktemp("reference")
    results = grade("ch05", CLASS, out, **OPTS)
    assert {r.student: r.points for r in results} == POINTS
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, reference: Path) -> list[Path]:
    """The class graded as two shards, into two directories."""
    tmp = tmp_path_factory.mktemp("shards")
    dirs = []
    for i in (1, 2):
        d = tmp / f"shard-{i}"
        grade("ch05", list(reversed(CLASS)), d, shard=f"{i}/2", **OPTS)   # any order
        dirs.append(d)
    return dirs


def test_results_are_recorded_per_student(reference: Path) -> None:
    stored = sorted(p.name for p in (reference / "results" / "ch05").iterdir())
    assert stored == sorted(f"{n}.json" for n in POINTS) + ["run.json"]
    alice = json.loads((reference / "results" / "ch05" / "alice.json").read_text())
    assert alice["result"]["points"] == 12 and len(alice["submission_sha256"]) == 64
    assert alice["result"]["feedback"] == ["feedback/alice-ch05.txt", "feedback/alice-ch05.html"]
    run = json.loads((reference / "results" / "ch05" / "run.json").read_text())
    assert run["roster"] == sorted(POINTS) and run["shard"] is None


def _processes_of(run_pid: int) -> list[str]:
    marker = f"attnkit-grade-{run_pid}-"
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != run_pid:
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
            except OSError:
                continue
            if marker in cmd:
                found.append(f"{p.name}: {cmd[:200]}")
    return found


@pytest.mark.skipif(bool(REASON), reason=f"bubblewrap cannot run here: {REASON}")
def test_killed_run_resumed_gives_the_same_gradebook(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "graded"
    cmd = [sys.executable, "-m", "attnkit", "grade", "ch05", *map(str, CLASS), "--out", str(out),
           "--jobs", "2", "--progress", "lines", *CLI_OPTS]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = out / "results" / "ch05"
    deadline = time.monotonic() + 600
    try:
        while not [p for p in store.glob("*.json") if p.name != "run.json"]:
            assert proc.poll() is None, proc.stderr.read().decode()   # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no student was graded within 600 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)                             # no clean-up at all
    finally:
        proc.wait()
        proc.stderr.close()                                          # type: ignore[union-attr]
    done = {p.name: p.read_bytes() for p in store.glob("*.json") if p.name != "run.json"}
    assert 1 <= len(done) < len(POINTS), sorted(done)
    for p in store.glob("*.json"):
        json.loads(p.read_text())                                    # every record is whole
    for _ in range(100):                                             # workers and sandboxes end
        if not _processes_of(proc.pid):
            break
        time.sleep(0.1)
    assert _processes_of(proc.pid) == []

    rc = grade_main(["ch05", *map(str, CLASS), "--out", str(out), "--resume", *CLI_OPTS])
    assert rc == 0
    assert _files(out) == _files(reference)
    for name, data in done.items():                                  # kept, not graded again
        assert (store / name).read_bytes() == data
    assert not [p for p in out.rglob(".*.tmp")]


def test_resume_with_nothing_left_grades_nobody(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "graded"
    shutil.copytree(reference, out)
    seen = []

    class Count:
        def __init__(self, total: int) -> None:
            seen.append(total)

        def update(self, res: object) -> None:
            raise AssertionError("nobody should be graded")

        def close(self) -> None:
            pass

    results = grade("ch05", CLASS, out, resume=True, progress=Count, **OPTS)
    assert seen == [0] and {r.student: r.points for r in results} == POINTS
    assert _files(out) == _files(reference)


def test_resume_refuses_results_of_other_settings(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "graded"
    shutil.copytree(reference, out)
    with pytest.raises(ValueError, match=r"other settings \(timeout"):
        grade("ch05", CLASS, out, resume=True, **{**OPTS, "timeout": 3})
    assert _files(out) == _files(reference)


def test_only_regrades_the_named_students(tmp_path: Path, reference: Path, capsys) -> None:
    out = tmp_path / "graded"
    shutil.copytree(reference, out)
    store = out / "results" / "ch05"
    before = {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    rc = grade_main(["ch05", *map(str, CLASS), "--out", str(out), "--only", "grace", *CLI_OPTS])
    assert rc == 0
    table = capsys.readouterr().out
    assert "grace" in table and "alice" not in table
    after = {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    assert {n for n in after if after[n] != before[n]} == {"grace.json"}
    assert _files(out) == _files(reference)
    rc = grade_main(["ch05", *map(str, CLASS), "--out", str(out), "--only", "Grace", *CLI_OPTS])
    assert rc == 2
    assert "no submission of 'Grace' (did you mean 'grace'" in capsys.readouterr().err


def test_shards_split_the_class_and_merge_into_one_run(tmp_path: Path, reference: Path,
                                                       shards: list[Path], capsys) -> None:
    books = [set(json.loads((d / "results/ch05/run.json").read_text())["students"]) for d in shards]
    assert books[0] | books[1] == set(POINTS) and not books[0] & books[1]
    assert books[0] == set(Shard(1, 2).select(list(POINTS)))
    out = tmp_path / "merged"
    rc = grade_main(["merge", "ch05", str(shards[1]), str(shards[0]), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "merged 2 shards of ch05: 5 students" in capsys.readouterr().out
    assert _files(out) == _files(reference)


def _damaged(src: Path, dst: Path, drop: str = "", add: dict | None = None) -> Path:
    shutil.copytree(src, dst)
    book = dst / "gradebook.csv"
    with book.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["student"] != drop]
    rows += [add] if add else []
    with book.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dst


def test_merge_refuses_gaps_and_duplicates(tmp_path: Path, shards: list[Path]) -> None:
    s1, s2 = shards
    out = tmp_path / "merged"
    with pytest.raises(MergeError, match=r"shard 2/2 is missing \(run it with --shard 2/2\)"):
        merge("ch05", [s1], out)
    with pytest.raises(MergeError, match=r"shard 1/2 given twice"):
        merge("ch05", [s1, s1, s2], out)
    victim = sorted(json.loads((s2 / "results/ch05/run.json").read_text())["students"])[0]
    gap = _damaged(s2, tmp_path / "gap", drop=victim)
    with pytest.raises(MergeError) as info:
        merge("ch05", [s1, gap], out)
    assert "1 student(s) of the class have no row" in str(info.value)
    assert f"shard 2/2: {victim!r}" in str(info.value)
    row = {"student": victim, "exercise_set": "ch05", "points": "12", "max_points": "12",
           "status": "graded", "file": "x.ipynb"}
    dup = _damaged(s1, tmp_path / "dup", add=row)
    with pytest.raises(MergeError) as info:
        merge("ch05", [dup, s2], out)
    assert f"1 student(s) graded in more than one shard: {victim!r} in {dup}, {s2}" \
        in str(info.value)
    assert not out.exists()                                          # nothing written
    assert grade_main(["merge", "ch05", str(s1), "--out", str(out)]) == 2


def test_parse_shard_and_slices() -> None:
    assert parse_shard("2/3") == Shard(2, 3) and parse_shard(None) is None
    for bad in ("0/3", "4/3", "1/0", "3", "a/b"):
        with pytest.raises(ValueError, match="shard must be i/N"):
            parse_shard(bad)
    names = [f"s{k:03d}" for k in range(23)] + ["Zoë", "zoe", "Ann Lee"]
    for n in range(1, 6):
        parts = [Shard(i, n).select(names) for i in range(1, n + 1)]
        assert sorted(sum(parts, [])) == sorted(names)                # each exactly once
        assert max(map(len, parts)) - min(map(len, parts)) <= 1       # balanced
        assert parts == [Shard(i, n).select(list(reversed(names))) for i in range(1, n + 1)]


def test_jobs_times_memory_is_checked_before_grading(tmp_path: Path) -> None:
    total, where = machine_memory()
    assert total > 0 and where
    check_memory(1, 1 << 20)
    with pytest.raises(ValueError, match="is more than this machine's memory"):
        grade("ch05", CLASS[:1], tmp_path / "g", jobs=2, memory=total, sandbox=False)
    assert not (tmp_path / "g").exists()
    rc = grade_main(["ch05", str(CLASS[0]), "--out", str(tmp_path / "g"), "--jobs", "4",
                     "--memory", f"{total}", "--no-sandbox"])
    assert rc == 2
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        grade("ch05", CLASS[:1], tmp_path / "g", jobs=0, sandbox=False)
    with pytest.raises(TypeError, match="jobs must be an int"):
        grade("ch05", CLASS[:1], tmp_path / "g", jobs="2", sandbox=False)  # type: ignore[arg-type]


def test_only_is_not_combined_with_resume_or_shard(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only cannot be combined"):
        grade("ch05", CLASS[:1], tmp_path, only=["alice"], resume=True, sandbox=False)


def _res(student: str, status: str = "graded", events: tuple = (), failed: int = 0):
    checks = [SimpleNamespace(points=0 if k < failed else 1, max_points=1) for k in range(3)]
    return SimpleNamespace(student=student, status=status, events=list(events), checks=checks,
                           points=3 - failed, max_points=3)


def test_progress_prints_plain_lines_off_a_terminal() -> None:
    buf = io.StringIO()
    p = Progress(3, buf)                                             # StringIO: not a TTY
    p.update(_res("alice"))
    p.update(_res("grace", status="not a notebook"))
    p.update(_res("dave", events=("cell 3: stopped",), failed=2))
    p.close()
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("[1/3] alice: 3/3 (graded); ") and "students/min" in lines[0]
    assert "left; failures: none" in lines[0]
    assert lines[1].endswith("failures: 1 not a notebook")
    assert "dave: 1/3 (graded, 2 checks failed)" in lines[2]
    assert lines[2].endswith("failures: 1 not a notebook, 1 with a time limit or dead kernel")
    assert lines[3].startswith("graded 3 of 3 students in ")


def test_progress_draws_a_bar_on_a_terminal() -> None:
    buf = io.StringIO()
    p = Progress(2, buf, terminal=True)
    p.update(_res("alice"))
    p.update(_res("heidi", status="wrong exercise set"))
    p.close()
    text = buf.getvalue()
    assert "2/2" in text and "grading" in text
    assert "failures: 1 wrong set" in text
    assert tally(Counter()) == "failures: none"


def test_describe_creates_no_cgroup(monkeypatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("describe() must not create a cgroup")

    monkeypatch.setattr(_sandbox, "_Cgroup", refuse)
    sb = Sandbox(Limits(2 << 30, 600, 256))
    assert "(a pids cgroup)" in sb.describe(["pids", "memory"])
    assert "memory cgroup" in sb.describe(["pids", "memory"])
    assert "memory cgroup" not in sb.describe([])
    assert sb.describe().startswith("sandbox: bubblewrap")          # read from /sys, no mkdir
    assert "/opt/conda" not in _sandbox.SYSTEM


def _book(tmp_path: Path) -> Path:
    (tmp_path / "gradebook.csv").write_text(
        "student,exercise_set,points,max_points,status,file\r\n"
        "Zoë Smith,ch04,7,9,graded,a.ipynb\r\nZoë Smith,ch05,12,12,graded,b.ipynb\r\n"
        "bob,ch05,8,12,graded,c.ipynb\r\n", encoding="utf-8")
    return tmp_path


def test_export_canvas(tmp_path: Path, capsys) -> None:
    out = _book(tmp_path)
    path = export(out, "canvas")
    rows = list(csv.reader(path.open(encoding="utf-8")))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
                       "attnkit ch04", "attnkit ch05"]
    assert rows[1] == ["Points Possible", "", "", "", "", "9", "12"]
    assert rows[2] == ["Zoë Smith", "", "", "Zoë Smith", "", "7", "12"]
    assert rows[3] == ["bob", "", "", "bob", "", "", "8"]             # blank: no ch04 grade
    roster = tmp_path / "canvas-export.csv"
    roster.write_text("Student,ID,SIS User ID,SIS Login ID,Section,Quiz 1 (77)\n"
                      "    Points Possible,,,,,10\n"
                      '"Smith, Zoë",1001,S1,Zoë Smith,Sec A,9\n'
                      '"Jones, Bob",1002,S2,bob,Sec B,5\n', encoding="utf-8")
    rc = grade_main(["export", "--out", str(out), "--format", "canvas", "--sets", "ch05",
                     "--roster", str(roster), "--title", "ch05=Attention exercises (4242)"])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    rows = list(csv.reader((out / "canvas.csv").open(encoding="utf-8")))
    assert rows[0][-1] == "Attention exercises (4242)"
    assert rows[2] == ["Smith, Zoë", "1001", "S1", "Zoë Smith", "Sec A", "12"]
    assert rows[3] == ["Jones, Bob", "1002", "S2", "bob", "Sec B", "8"]


def test_export_moodle_and_roster_errors(tmp_path: Path) -> None:
    out = _book(tmp_path)
    rows = list(csv.reader(export(out, "moodle", sets=["ch05"]).open(encoding="utf-8")))
    assert rows == [["Username", "attnkit ch05"], ["Zoë Smith", "12"], ["bob", "8"]]
    roster = tmp_path / "moodle.csv"
    roster.write_text("First name,Last name,ID number,Email address,grader\n"
                      "Zoë,Smith,A1,zoe@example.org,Zoë Smith\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"1 graded student\(s\) not in the roster's 'grader' "
                                         r"column: 'bob'"):
        export(out, "moodle", roster=roster, match="grader", id_column="Email address")
    roster.write_text(roster.read_text() + "Bob,Jones,A2,bob@example.org,bob\n")
    path = export(out, "moodle", roster=roster, match="grader", id_column="Email address")
    rows = list(csv.reader(path.open(encoding="utf-8")))
    assert rows[0] == ["Email address", "attnkit ch04", "attnkit ch05"]
    assert rows[1:] == [["zoe@example.org", "7", "12"], ["bob@example.org", "", "8"]]
    with pytest.raises(ValueError, match="format must be one of canvas, moodle"):
        export(out, "blackboard")
    with pytest.raises(ValueError, match="ch09 not in the gradebook"):
        export(out, "canvas", sets=["ch09"])
    with pytest.raises(ValueError, match="id_column must be one of"):
        export(out, "moodle", id_column="SIS Login ID")


def test_interrupted_run_says_how_to_resume(tmp_path: Path, monkeypatch, capsys) -> None:
    from attnkit.grading import grader

    def stop(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(grader, "grade_submission", stop)
    rc = grade_main(["ch05", str(CLASS[0]), "--out", str(tmp_path), "--no-sandbox"])
    assert rc == 130
    assert "--resume grades the rest" in capsys.readouterr().err
    assert (tmp_path / "gradebook.csv").read_text().splitlines() == [
        "student,exercise_set,points,max_points,status,file"]
    assert os.listdir(tmp_path / "results" / "ch05") == ["run.json"]


def test_bench_makes_the_same_class_from_the_same_seed(tmp_path: Path) -> None:
    from attnkit.grading.bench import make_class

    one = make_class("ch05", tmp_path / "one", 3, 2, seed=7)
    two = make_class("ch05", tmp_path / "two", 3, 2, seed=7)
    assert [p.name for p in one] == ["hostile00-crasher_ch05.ipynb",
                                     "hostile01-stubborn_ch05.ipynb", "student0000_ch05.ipynb",
                                     "student0001_ch05.ipynb", "student0002_ch05.ipynb"]
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two]
    other = make_class("ch05", tmp_path / "other", 3, 0, seed=8)
    assert [p.read_bytes() for p in other] != [p.read_bytes() for p in two[2:]]


def test_a_dead_worker_is_replaced_and_its_student_retried_once(tmp_path: Path) -> None:
    from _grading_flaky import flaky

    from attnkit.grading.batch import run

    got: list[str] = []
    run(flaky, str(tmp_path), ["a", "once", "die", "b", "c"], 2, got.append,
        lambda task, why: f"{task}: {why}")
    assert sorted(got) == ["A", "B", "C", "ONCE",
                           "die: the grader's worker process died twice (exit status 3)"]
