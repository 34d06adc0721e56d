"""The package surface: light import, lazy building blocks, the console script."""

from __future__ import annotations

import subprocess
import sys

import attnkit


def test_import_needs_neither_torch_nor_triton() -> None:
    code = ("import sys, attnkit; attnkit.attention(attnkit.example.Q, attnkit.example.K, "
            "attnkit.example.V); print('torch' in sys.modules, 'triton' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_lazy_names_resolve() -> None:
    for name in attnkit._LAZY:
        assert callable(getattr(attnkit, name)), name
    assert set(attnkit._LAZY) <= set(dir(attnkit))


def test_unknown_attribute() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        attnkit.nope  # noqa: B018


def test_cli_lists_backends() -> None:
    out = subprocess.run([sys.executable, "-m", "attnkit", "backends"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.split()[0] == "numpy"
    bad = subprocess.run([sys.executable, "-m", "attnkit", "frobnicate"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "unknown command 'frobnicate'" in bad.stderr
