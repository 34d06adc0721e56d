"""The benchmark package: engines from the declarations, clear errors, results files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attnkit.bench import fitted_slope, load_results, peak_memory, results_folder
from attnkit.bench.cli import main
from attnkit.bench.cpu import CPU_ENGINES, cpu_child
from attnkit.bench.decoding import main as decoding_main
from attnkit.bench.measure import best_and_median, cpu_description
from attnkit.bench.report import markdown
from attnkit.engines import ENGINES, capabilities


def test_cpu_engines_come_from_the_declarations() -> None:
    expected = []
    for name in ENGINES:
        try:
            c = capabilities(name)
        except ImportError:
            continue
        if "cpu" in c.devices:
            expected += [f"{name}-numpy", f"{name}-torch"] if c.native == "any" else [name]
    assert list(CPU_ENGINES) == expected
    assert {"numpy", "sdpa", "flash-numpy", "flash-torch"} <= set(CPU_ENGINES)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--device", "cuda"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--device cuda" in err and "no CUDA GPU" in err and "Traceback" not in err


def test_cpu_child_measures_a_windowed_call() -> None:
    row = cpu_child({"engine": "flash-numpy", "n": 256, "d": 16, "repeats": 1, "window": 32})
    assert row["window"] == 32 and row["time_best_s"] > 0 and row["tracemalloc_peak_bytes"] > 0


def test_fitted_slope_and_its_errors() -> None:
    assert fitted_slope([1, 2, 4, 8], [5, 10, 20, 40]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two points"):
        fitted_slope([1], [1])


def test_peak_memory_methods() -> None:
    import numpy as np

    assert peak_memory(lambda: np.ones(500_000), "tracemalloc") >= 4_000_000
    with pytest.raises(ValueError, match="how must be one of"):
        peak_memory(lambda: None, "gpu")


def test_machine_description_has_the_vector_isa() -> None:
    cpu = cpu_description()
    assert cpu["model"] and "vector_isa" in cpu and isinstance(cpu["avx512"], list)


def test_results_are_found_and_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "benchmarks").mkdir()
    result = {"kind": "cpu", "date": "2026-01-01 00:00 UTC", "command": "x",
              "machine": {"cpu": "c", "logical_cpus": 1, "platform": "p", "versions": {}},
              "settings": {"sizes": [1]}, "fitted_slopes": {"sdpa": 2.0}, "rows": []}
    (tmp_path / "benchmarks" / "results-cpu.json").write_text(json.dumps(result))
    monkeypatch.delenv("ATTNKIT_BENCHMARKS", raising=False)
    monkeypatch.chdir(tmp_path / "benchmarks")
    assert results_folder() == tmp_path / "benchmarks"
    assert load_results("cpu")["fitted_slopes"] == {"sdpa": 2.0}
    assert load_results("gpu") is None
    assert "sdpa 2.00" in markdown(result)


def test_best_and_median_keeps_calling_for_min_time() -> None:
    calls = []
    best, median = best_and_median(lambda: calls.append(1), 2, min_time=0.01)
    assert len(calls) > 3 and 0 <= best <= median  # one warm-up, then at least 10 ms of calls
    with pytest.raises(ValueError, match="min_time must be a number >= 0"):
        best_and_median(lambda: None, 2, min_time=-1)


def test_decoding_benchmark_writes_ratios_against_one_pass(tmp_path: Path) -> None:
    assert decoding_main(["--sizes", "64", "--heads", "2", "--dim", "8", "--splits", "2",
                          "--workers", "1", "--repeats", "1", "--min-time", "0",
                          "--arrays", "numpy", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results-decoding-cpu.json").read_text())
    rows = {(r["method"], r["splits"]): r for r in result["rows"]}
    assert rows["one-pass", 1]["ratio"] == 1.0
    split = rows["split-KV", 2]
    assert split["ratio"] == pytest.approx(split["best_ms"] / rows["one-pass", 1]["best_ms"])
    assert split["max_abs_diff"] < 1e-5
    assert "python -m attnkit.bench.decoding" in (tmp_path / "results-decoding-cpu.md").read_text()


def test_cpu_benchmark_tile_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``--block-q``/``--block-k`` reach the measuring processes and the results file."""
    from attnkit.engines import _online

    monkeypatch.setattr(_online, "BLOCK_Q", None)  # restored after the in-process child
    monkeypatch.setattr(_online, "BLOCK_K", None)
    assert main(["--device", "cpu", "--sizes", "64", "--engines", "sdpa", "flash-torch",
                 "--repeats", "1", "--min-time", "0", "--block-q", "16", "--block-k", "8",
                 "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results-cpu.json").read_text())
    assert result["settings"]["flash_blocks"]["block_q"] == 16
    assert result["settings"]["flash_blocks"]["block_k"] == 8
    assert "--block-q 16 --block-k 8" in result["command"]
    row = cpu_child({"engine": "flash-numpy", "n": 64, "d": 8, "repeats": 1, "block_q": 16,
                     "block_k": 8})
    assert (_online.BLOCK_Q, _online.BLOCK_K) == (16, 8) and row["time_best_s"] > 0
    with pytest.raises(SystemExit):
        main(["--device", "cpu", "--block-k", "0"])
    assert "--block-k must be a positive integer; got 0" in capsys.readouterr().err


def test_decoding_benchmark_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        decoding_main(["--min-time", "-1"])
    assert "--min-time must be a number of seconds >= 0" in capsys.readouterr().err


def test_distributed_benchmark_writes_its_results(tmp_path: Path) -> None:
    from attnkit.bench.ring import main as distributed_main

    assert distributed_main(["--nprocs", "1", "--n", "32", "--repeats", "1",
                             "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results-distributed-cpu.json").read_text())
    assert {(r["causal"], r["layout"]) for r in result["rows"]} == {
        (False, "contiguous"), (True, "contiguous"), (True, "zigzag")}
    assert result["date"].endswith("UTC")
    assert "python -m attnkit.bench.ring" in (
        tmp_path / "results-distributed-cpu.md").read_text()
