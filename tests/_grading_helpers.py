"""Helpers shared by the grading tests: whether the sandbox runs here, and which processes live.

A plain module (imported as ``from _grading_helpers import ...``, as pytest puts
``tests/`` on the path) rather than fixtures, because the answer decides ``skipif``
marks at import time.
"""

from __future__ import annotations

from pathlib import Path

from attnkit.grading._sandbox import SandboxUnavailable, probe


def sandbox_reason() -> str:
    """Why bubblewrap cannot run here, or ``""`` where it can."""
    try:
        probe()
    except SandboxUnavailable as exc:
        return str(exc)
    return ""


def processes_with(marker: str, *, exclude: int | None = None) -> list[str]:
    """The live processes whose command line contains ``marker``, except ``exclude``.

    Each as ``"pid: command line"``, the command line cut to 200 characters.
    """
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != exclude:
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
            except OSError:
                continue
            if marker in cmd:
                found.append(f"{p.name}: {cmd[:200]}")
    return found
