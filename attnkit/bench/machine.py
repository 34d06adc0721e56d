"""The machine a measurement ran on: the one record every results file carries.

:func:`machine` reads the CPU (model, vendor, family and model numbers, vector ISA,
from Linux's ``/proc/cpuinfo``), the memory, the library versions and, for CUDA
runs, the GPU. :func:`machine_line` says it in one line for the Markdown pages.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

from ..core._arrays import torch_module

#: The packages whose versions a results file records.
PACKAGES = ("numpy", "torch", "triton", "attnkit")


def cpu_description() -> dict[str, Any]:
    """The CPU: model name, vendor, family/model numbers and vector ISA (Linux ``/proc/cpuinfo``).

    ``vector_isa`` is the widest of AVX-512, AVX2 or SSE (x86) or NEON/SVE (Arm) that
    the flags show; ``avx512`` lists the AVX-512 subsets present.

    Example:
        >>> "vector_isa" in cpu_description() or True
        True
    """
    info: dict[str, Any] = {"model": platform.processor() or "unknown"}
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    key, _, value = line.partition(":")
                    fields.setdefault(key.strip(), value.strip())
    except OSError:
        return info
    info["model"] = fields.get("model name", info["model"])
    for key, name in (("vendor_id", "vendor"), ("cpu family", "family"), ("model", "model_number"),
                      ("stepping", "stepping")):
        if key in fields:
            info[name] = fields[key]
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    info["avx512"] = sorted(f for f in flags if f.startswith("avx512"))
    if "avx512f" in flags:
        isa = "AVX-512"
    elif "avx2" in flags:
        isa = "AVX2" + ("+FMA" if "fma" in flags else "")
    elif "sve" in flags:
        isa = "SVE"
    elif "asimd" in flags or "neon" in flags:
        isa = "NEON"
    elif "sse4_2" in flags:
        isa = "SSE4.2"
    else:
        isa = "unknown"
    info["vector_isa"] = isa
    return info


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine(device: str = "cpu") -> dict[str, Any]:
    """The machine and library versions, as every results file records them.

    Keys: ``platform``, ``machine``, ``python``, ``cpu`` (the model name),
    ``cpu_details`` (:func:`cpu_description`), ``logical_cpus``, ``memory_gib``
    (where known), ``versions``; for ``device="cuda"`` also ``gpu``,
    ``gpu_memory_gib``, ``gpu_multiprocessors`` and ``cuda``.

    Example:
        >>> sorted(machine())[:4]
        ['cpu', 'cpu_details', 'logical_cpus', 'machine']
    """
    cpu = cpu_description()
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu": cpu["model"],
        "cpu_details": cpu,
        "logical_cpus": os.cpu_count(),
    }
    try:
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    info["versions"] = {name: _version(name) for name in PACKAGES}
    if device == "cuda":
        torch = torch_module()
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(props.total_memory / 1024**3, 1)
        info["gpu_multiprocessors"] = props.multi_processor_count
        info["cuda"] = torch.version.cuda
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One line for a results page: CPU (or GPU) model, vendor, family and model, vector ISA, CPUs.

    Example:
        >>> machine_line({"cpu": "X", "cpu_details": {"vendor": "V", "vector_isa": "AVX2"},
        ...               "logical_cpus": 2, "platform": "Linux"})
        'X (V family ? model ?); vector ISA: AVX2 (AVX-512: no); 2 logical CPUs; Linux'
    """
    cpu = info.get("cpu_details", {})
    gpu = f"{info['gpu']} (CUDA {info.get('cuda')}); CPU " if "gpu" in info else ""
    return (f"{gpu}{info['cpu']} ({cpu.get('vendor', '?')} family {cpu.get('family', '?')} "
            f"model {cpu.get('model_number', '?')}); vector ISA: {cpu.get('vector_isa', '?')} "
            f"(AVX-512: {', '.join(cpu.get('avx512', [])) or 'no'}); "
            f"{info['logical_cpus']} logical CPUs; {info['platform']}")
