"""The committed notebooks mean the same on any machine, and each one can install attnkit.

nbval compares every stored output with a fresh run. A raw float repr (17 significant
digits) or a figure's bytes differ between CPUs, BLAS kernels and thread counts, so
they must never be stored in a compared output; ``make test-notebooks`` also reruns
nbval under other numerical settings. Each notebook opens with the set-up cell of
:mod:`attnkit.teaching.launch`, which installs attnkit on Colab and does nothing here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from attnkit.teaching import glued as glue_module
from attnkit.teaching.glued import portable
from attnkit.teaching.launch import SETUP_SOURCE, SETUP_TAG, add_setup_cell

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    [*ROOT.glob("book/*.ipynb"), *ROOT.glob("book/exercises/*.ipynb"), *ROOT.glob("exercises/source/*.ipynb")]
)

#: A decimal number as it appears in text: 0.65, -1.5e-11, 1004.9862 (not part of a name).
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")
#: More significant digits than this in a compared output is a raw repr, not a chosen format.
MAX_DIGITS = 8
#: Outputs nbval does not compare, or compares only after the sanitising of images.
NOT_COMPARED = ("image/", "application/papermill.record/image/", "application/vnd.jupyter.widget")


def significant_digits(token: str) -> int:
    """Significant digits of a decimal token; 0 for an integer value written as ``N.0``."""
    mantissa = re.split(r"[eE]", token.lstrip("+-"))[0]
    whole, _, frac = mantissa.partition(".")
    frac = frac.rstrip("0")
    if not frac:
        return 0
    digits = (whole.lstrip("0") + frac) if whole.lstrip("0") else frac.lstrip("0")
    return len(digits)


def compared_texts(nb: dict) -> list[tuple[int, str, str]]:
    """``(cell index, mime type or 'stream', text)`` for every output nbval compares."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        if "nbval-ignore-output" in tags or "nbval-skip" in tags:
            continue
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                found.append((i, "stream", "".join(out["text"])))
            for mime, data in out.get("data", {}).items():
                if mime.startswith(NOT_COMPARED):
                    continue
                text = data if isinstance(data, str) else "".join(data) if isinstance(data, list) else ""
                text = re.sub(r"data:image/[\w+]+;base64,[A-Za-z0-9+/=\s]+", "", text)
                found.append((i, mime, text))
    return found


def test_significant_digits() -> None:
    assert significant_digits("0.6507169646140367") == 16
    assert significant_digits("1.55746e-11") == 6
    assert significant_digits("2289982847.0") == 0
    assert significant_digits("1004.9862") == 8
    assert significant_digits("0.0010") == 1


def test_notebooks_found() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"intro.ipynb", "01-why-attention.ipynb", "ch01.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_full_precision_float_in_compared_outputs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    bad = []
    for cell, mime, text in compared_texts(nb):
        for m in NUMBER.finditer(text):
            if significant_digits(m.group(0)) > MAX_DIGITS:
                bad.append(f"cell {cell} ({mime}): {m.group(0)}")
    assert not bad, (
        "raw float reprs in outputs that nbval compares (round them, or glue with "
        f"attnkit.teaching.glue): {bad[:10]}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_has_current_setup_cell(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert not add_setup_cell(nb), (
        f"{path.name} lacks the current set-up cell: run "
        f"`python -m attnkit.teaching.launch {path.relative_to(ROOT)}`"
    )
    cell = next(c for c in nb["cells"] if SETUP_TAG in c.get("metadata", {}).get("tags", []))
    assert "remove-cell" in cell["metadata"]["tags"]  # kept off the website
    assert not cell.get("outputs")


def test_add_setup_cell_inserts_after_title_and_updates() -> None:
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# Title"},
                    {"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": []}]}
    assert add_setup_cell(nb)
    assert nb["cells"][1]["source"] == SETUP_SOURCE
    assert not add_setup_cell(nb)  # idempotent
    nb["cells"][1]["source"] = "old code"
    assert add_setup_cell(nb) and nb["cells"][1]["source"] == SETUP_SOURCE
    assert len(nb["cells"]) == 3
    untitled = {"cells": [{"cell_type": "code", "metadata": {}, "source": "x", "outputs": []}]}
    assert add_setup_cell(untitled) and untitled["cells"][0]["source"] == SETUP_SOURCE
    with pytest.raises(ValueError, match="cells"):
        add_setup_cell({"worksheets": []})


def test_portable_rounds_floats_only() -> None:
    assert portable(0.6507169646140367) == 0.650717
    assert portable(0.6507169646140366) == portable(0.6507169646140367)
    assert portable(np.float32(0.1)) == 0.1 and type(portable(np.float32(0.1))) is float
    assert portable(2289982846.6164355) == 2289982847.0  # integer digits are kept
    assert portable(1.5574601390315723e-11) == 1.55746e-11
    assert portable(7) == 7 and type(portable(np.int64(7))) is int
    assert portable(True) is True and portable(np.bool_(False)) is False
    assert portable("0.123456789") == "0.123456789"
    assert portable([1 / 3, (2 / 3, 5)]) == [0.333333, (0.666667, 5)]
    assert portable(float("inf")) == float("inf") and portable(0.0) == 0.0
    np.testing.assert_array_equal(portable(np.array([1 / 3, 2 / 3])), [0.333333, 0.666667])
    assert portable(1 / 3, digits=2) == 0.33
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="digits"):
            portable(1.0, digits=bad)


def test_glue_stores_the_rounded_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    import myst_nb

    seen = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: seen.update({name: value}))
    glue_module.glue("x", 0.6507169646140367, display=False)
    assert repr(seen["x"]) == "0.650717"


def _clean_env() -> dict[str, str]:
    """This process's environment without what would make attnkit importable anyway."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _fresh_venv_without_attnkit(tmp_path: Path) -> Path:
    """A new virtual environment that sees this one's packages but not attnkit."""
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, env=_clean_env())
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, env=_clean_env(),
    ).stdout.strip()
    # A path line, not a site dir: the editable install's own .pth file is not read,
    # so numpy, torch, matplotlib... are importable and attnkit is not.
    Path(site, "shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow
def test_setup_cell_installs_attnkit_in_a_fresh_environment(tmp_path: Path) -> None:
    python = _fresh_venv_without_attnkit(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = _clean_env()
    probe = [str(python), "-c", "import importlib.util as u; print(u.find_spec('attnkit') is None)"]
    assert subprocess.run(probe, cwd=work, env=env, capture_output=True, text=True).stdout.strip() == "True"
    # The "repository": a copy of what pip needs from this checkout.
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, checkout / name)
    shutil.copytree(ROOT / "attnkit", checkout / "attnkit", ignore=shutil.ignore_patterns("__pycache__"))
    env["ATTNKIT_SOURCE"] = checkout.as_uri()
    # The cell, then an import in the same process (as the next cell of the notebook).
    program = SETUP_SOURCE + "\nimport attnkit\nprint(attnkit.__file__)\n"
    done = subprocess.run([str(python), "-c", program], cwd=work, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert str(tmp_path / "venv") in done.stdout
    # Present now: the cell does nothing (an unusable source would make pip fail).
    env["ATTNKIT_SOURCE"] = (tmp_path / "no-such-checkout").as_uri()
    again = subprocess.run([str(python), "-c", SETUP_SOURCE], cwd=work, env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and again.stdout == "" and again.stderr == "", again.stderr[-2000:]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_binder_environment_is_lean_and_matches_the_lock() -> None:
    binder = _pins(ROOT / "binder" / "requirements.txt")
    lock = _pins(ROOT / "requirements.lock")
    assert binder["torch"].endswith("+cpu"), "Binder has no GPU: it must get the CPU build of torch"
    assert binder["torch"].split("+")[0] == lock["torch"]
    for name, version in binder.items():
        if name != "torch":
            assert lock.get(name) == version, f"binder pins {name}=={version}, the lock {lock.get(name)}"
    for tooling in ("jupyter-book", "pytest", "nbval", "playwright", "nbgrader", "triton", "sphinx"):
        assert tooling not in binder, f"{tooling} is not needed to run the chapters"
    # Everything the set-up cell's extra installs is also what Binder gets.
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["book"]
    for req in extra:
        assert re.split(r"[<>=!~ ]", req)[0].lower() in binder, f"{req} missing from binder/requirements.txt"


def test_lock_pins_torch_without_the_local_label() -> None:
    lock = _pins(ROOT / "requirements.lock")
    assert "+" not in lock["torch"], "the lock must resolve on PyPI too: torch==X.Y.Z, not X.Y.Z+cpu"
    assert lock["torch"].startswith("2.13."), "torch stays on the 2.13 series (the local CPU wheel)"
    assert not any(name.startswith("nvidia-") for name in lock), "no CUDA packages in the lock"
