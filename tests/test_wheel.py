"""attnkit as an installed wheel, used outside the checkout.

Built, installed into a fresh virtual environment outside the checkout, and used
there (no repository paths).

Offline and fast: the wheel is built without build isolation and installed with
``--no-index --no-deps``; the environment borrows NumPy and torch from this one
through a ``.pth`` line instead of installing them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMOKE = r"""
import pathlib, sys
import attnkit
here = pathlib.Path(attnkit.__file__).resolve()
assert "site-packages" in here.parts, here
assert "torch" not in sys.modules
from attnkit import NumpyAttention, attention, example
assert "torch" not in sys.modules, "NumpyAttention must import without torch"
out = NumpyAttention()(example.Q, example.K, example.V)
assert abs(out[0, 0] - 0.2254) < 1e-4
flash = attention(example.Q, example.K, example.V, backend="flash", window=(1, 0), sinks=1)
ref = attention(example.Q, example.K, example.V, window=(1, 0), sinks=1)
assert abs(flash - ref).max() < 1e-12
from attnkit.bench import load_results
assert load_results("cpu", folder=pathlib.Path.cwd()) is None
import torch
t = torch.from_numpy(example.Q.copy()).requires_grad_()
attention(t, t, t, backend="flash", enable_gqa=False).sum().backward()
print("ok", here)
"""


@pytest.mark.slow
def test_wheel_installs_and_works_outside_the_checkout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "attnkit", src / "attnkit",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(dist), str(src)], check=True, timeout=300)
    wheel = next(dist.glob("attnkit-*.whl"))

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # borrow numpy and torch from this environment (appended after the venv's own packages)
    (Path(purelib) / "_borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index",
                    "--no-deps", "-q", str(wheel)], check=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    result = subprocess.run([str(py), "-c", SMOKE], cwd=work, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(ROOT) not in result.stdout
    cli = subprocess.run([str(py), "-m", "attnkit", "backends"], cwd=work, capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=300)
    assert cli.returncode == 0 and cli.stdout.split()[0] == "numpy", cli.stdout + cli.stderr
