"""The machine a measurement ran on: CPU model, family, vector ISA, library versions."""

from __future__ import annotations

import os
import platform
from typing import Any

#: The vector-ISA flags worth recording (from /proc/cpuinfo), widest first.
ISA_FLAGS: tuple[str, ...] = ("amx_tile", "avx512_bf16", "avx512f", "avx2", "fma", "avx", "sse4_2",
                              "neon", "asimd")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    key, value = (part.strip() for part in line.split(":", 1))
                    info.setdefault(key, value)
    except OSError:
        pass
    return info


def describe_machine() -> dict[str, Any]:
    """CPU model, vendor, family/model numbers, vector ISA flags, cores and versions."""
    cpu = _cpuinfo()
    flags = set((cpu.get("flags") or cpu.get("Features") or "").split())
    versions = {}
    for name in ("numpy", "torch"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    return {
        "cpu": cpu.get("model name") or platform.processor() or "unknown",
        "vendor": cpu.get("vendor_id", "unknown"),
        "family": cpu.get("cpu family", "unknown"),
        "model": cpu.get("model", "unknown"),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def machine_line(info: dict[str, Any]) -> str:
    """One line for a results file, e.g. ``AMD EPYC (AuthenticAMD family 25 model 1); ISA avx2 fma``."""
    return (f"{info['cpu']} ({info['vendor']} family {info['family']} model {info['model']}); "
            f"vector ISA: {' '.join(info['isa']) or 'none recorded'}; {info['logical_cpus']} logical CPUs; "
            f"{info['platform']}")
