"""A stand-in grading function for the worker test of tests/test_grading_scale.py.

It lives in its own light module because ``--jobs`` workers import the function they
run: importing the test module itself would probe the sandbox in every worker.
"""

from __future__ import annotations

import os
from pathlib import Path


def flaky(ctx: str, task: str) -> str:
    """``die`` kills its worker every time, ``once`` the first time only; else 'graded'."""
    if task == "die":
        os._exit(3)
    flag = Path(ctx) / "seen"
    if task == "once" and not flag.exists():
        flag.write_text("x")
        os._exit(4)
    return task.upper()
