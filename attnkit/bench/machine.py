"""The machine a measurement ran on, in the shape the decoding and ring benchmarks record.

The facts come from :func:`attnkit.bench.measure.machine_info` (the one place that
reads ``/proc/cpuinfo``); this module only names them for those results files.
"""

from __future__ import annotations

from typing import Any

from .measure import machine_info


def describe_machine() -> dict[str, Any]:
    """CPU model, vendor, family/model numbers, vector ISA, logical CPUs and versions."""
    info = machine_info("cpu")
    cpu = info["cpu_details"]
    return {
        "cpu": info["cpu"],
        "vendor": cpu.get("vendor", "unknown"),
        "family": cpu.get("family", "unknown"),
        "model": cpu.get("model_number", "unknown"),
        "isa": cpu.get("vector_isa", "unknown"),
        "logical_cpus": info["logical_cpus"],
        "platform": info["platform"],
        "python": info["python"],
        "versions": info["versions"],
    }


def machine_line(info: dict[str, Any]) -> str:
    """One line for a results file: CPU model, vendor, family and model, vector ISA, CPUs."""
    isa = info["isa"]
    isa = " ".join(isa) if isinstance(isa, list) else isa  # files written before 2026-11-30 hold a list
    return (f"{info['cpu']} ({info['vendor']} family {info['family']} model {info['model']}); "
            f"vector ISA: {isa or 'none recorded'}; {info['logical_cpus']} logical CPUs; "
            f"{info['platform']}")
