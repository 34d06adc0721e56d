"""The benchmark package: one command line, one timer, one machine record, one results schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from attnkit.bench import fitted_slope, load_results, main, peak_memory, results_folder
from attnkit.bench.cpu import child, cpu_engines, visible_pairs, visited_pairs
from attnkit.bench.machine import cpu_description, machine
from attnkit.bench.measure import best_and_median, best_of_rounds, time_calls
from attnkit.bench.report import markdown
from attnkit.engines import ENGINES, capabilities

ROOT = Path(__file__).resolve().parents[1]
#: The keys of every results file, whatever the benchmark (attnkit.bench.report).
SCHEMA = {"kind", "date", "command", "machine", "settings", "rows"}
MACHINE = {"platform", "python", "cpu", "cpu_details", "logical_cpus", "versions"}


def test_cpu_engines_come_from_the_declarations() -> None:
    expected = []
    for name in ENGINES:
        try:
            c = capabilities(name)
        except ImportError:
            continue
        if "cpu" in c.devices:
            expected += [f"{name}-numpy", f"{name}-torch"] if c.native == "any" else [name]
    assert list(cpu_engines()) == expected
    assert {"numpy", "sdpa", "flash-numpy", "flash-torch"} <= set(cpu_engines())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
@pytest.mark.parametrize("argv", [["--device", "cuda"], ["engines", "--device", "cuda"]])
def test_cuda_without_a_gpu_is_a_clear_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--device cuda" in err and "no CUDA GPU" in err and "Traceback" not in err


def test_cpu_child_measures_a_windowed_call() -> None:
    row = child({"engine": "flash-numpy", "n": 256, "d": 16, "repeats": 1, "window": 32})
    assert row["window"] == 32 and row["time_best_s"] > 0 and row["tracemalloc_peak_bytes"] > 0


def test_fitted_slope_and_its_errors() -> None:
    assert fitted_slope([1, 2, 4, 8], [5, 10, 20, 40]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two points"):
        fitted_slope([1], [1])


def test_peak_memory_methods() -> None:
    assert peak_memory(lambda: np.ones(500_000), "tracemalloc") >= 4_000_000
    with pytest.raises(ValueError, match="how must be one of"):
        peak_memory(lambda: None, "gpu")


def test_one_machine_record() -> None:
    cpu = cpu_description()
    assert cpu["model"] and "vector_isa" in cpu and isinstance(cpu["avx512"], list)
    m = machine()
    assert MACHINE <= set(m) and m["cpu_details"] == cpu
    assert set(m["versions"]) == {"numpy", "torch", "triton", "attnkit"}


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
    assert "sdpa 2.00" in markdown(result, lambda r: [])


def test_one_timer() -> None:
    calls = []
    best, median = best_and_median(lambda: calls.append(1), 2, min_time=0.01)
    assert len(calls) > 3 and 0 <= best <= median  # one warm-up, then at least 10 ms of calls
    with pytest.raises(ValueError, match="min_time must be a number >= 0"):
        best_and_median(lambda: None, 2, min_time=-1)
    with pytest.raises(ValueError, match="clock must be one of"):
        time_calls(lambda: None, 1, clock="sundial")
    order = []
    times = time_calls(lambda: order.append("call"), 2, before=lambda: order.append("before"))
    assert order == ["call", "before", "call", "before", "call"] and len(times) == 2
    seen = []
    best = best_of_rounds({"a": lambda: seen.append("a"), "b": lambda: seen.append("b")}, 2,
                          clock="cpu")
    assert seen == ["a", "b"] * 3 and set(best) == {"a", "b"}  # warm-up, then 2 rounds


def _read(folder: Path, kind: str) -> dict:
    result = json.loads((folder / f"results-{kind}.json").read_text())
    assert set(result) >= SCHEMA and result["kind"] == kind, kind
    assert MACHINE <= set(result["machine"])
    return result


def test_decoding_benchmark_writes_ratios_against_one_pass(tmp_path: Path) -> None:
    assert main(["decoding", "--sizes", "64", "--heads", "2", "--dim", "8", "--splits", "2",
                 "--workers", "1", "--repeats", "1", "--min-time", "0",
                 "--arrays", "numpy", "--out", str(tmp_path)]) == 0
    result = _read(tmp_path, "decoding-cpu")
    rows = {(r["method"], r["splits"]): r for r in result["rows"]}
    assert rows["one-pass", 1]["ratio"] == 1.0
    split = rows["split-KV", 2]
    assert split["ratio"] == pytest.approx(split["best_ms"] / rows["one-pass", 1]["best_ms"])
    assert split["max_abs_diff"] < 1e-5
    assert result["command"].startswith("python -m attnkit.bench decoding --sizes 64")
    assert "python -m attnkit.bench decoding" in (tmp_path / "results-decoding-cpu.md").read_text()


def test_cpu_benchmark_tile_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``--block-q``/``--block-k`` reach the measuring processes and the results file."""
    from attnkit.engines import _online

    monkeypatch.setattr(_online, "BLOCK_Q", None)  # restored after the in-process child
    monkeypatch.setattr(_online, "BLOCK_K", None)
    assert main(["--device", "cpu", "--sizes", "64", "--engines", "sdpa", "flash-torch",
                 "--repeats", "1", "--min-time", "0", "--block-q", "16", "--block-k", "8",
                 "--out", str(tmp_path)]) == 0
    result = _read(tmp_path, "cpu")
    assert result["settings"]["flash_blocks"]["block_q"] == 16
    assert result["settings"]["flash_blocks"]["block_k"] == 8
    # chapter 8 reads how the inputs were prepared (files without it drew float64 temporaries)
    assert result["settings"]["inputs"].startswith("drawn in float32 directly")
    assert "--block-q 16 --block-k 8" in result["command"]
    row = child({"engine": "flash-numpy", "n": 64, "d": 8, "repeats": 1, "block_q": 16,
                 "block_k": 8})
    assert (_online.BLOCK_Q, _online.BLOCK_K) == (16, 8) and row["time_best_s"] > 0
    with pytest.raises(SystemExit):
        main(["engines", "--device", "cpu", "--block-k", "0"])
    assert "--block-k must be a positive integer; got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["engines", "--device", "cpu", "--engines", "numpy"])
    assert "--engines must include sdpa" in capsys.readouterr().err


def test_window_benchmark_measures_the_speedup_and_the_ideal(tmp_path: Path) -> None:
    """Windowed rows against the same engine on full causal attention, and the ideal."""
    assert main(["engines", "--device", "cpu", "--window", "32", "--sizes", "256", "512",
                 "--engines", "sdpa", "flash-numpy", "--repeats", "1", "--min-time", "0",
                 "--out", str(tmp_path)]) == 0
    result = _read(tmp_path, "cpu-window")
    rows = {(r["engine"], r["n"], r["window"]): r for r in result["rows"]}
    assert set(rows) == {(e, n, w) for e in ("sdpa", "flash-numpy") for n in (256, 512)
                         for w in (32, None)}
    for n in (256, 512):
        r = rows["flash-numpy", n, 32]
        assert r["speedup_vs_full_causal"] == pytest.approx(
            rows["flash-numpy", n, None]["time_best_s"] / r["time_best_s"])
        assert r["ideal_speedup"] == pytest.approx(visible_pairs(n, None) / visible_pairs(n, 32))
        assert r["fraction_of_ideal"] == pytest.approx(r["speedup_vs_full_causal"] / r["ideal_speedup"])
        assert r["keys_visible_per_query"] <= 33
        assert r["keys_visible_per_query"] < r["keys_visited_per_query"] <= 2 * r["keys_visible_per_query"]
        assert rows["sdpa", n, 32]["keys_visited_per_query"] is None  # not a tiled engine
    assert set(result["fitted_slopes"]) == {"sdpa", "flash-numpy"}
    assert "x faster than full causal" in (tmp_path / "results-cpu-window.md").read_text()


def test_visited_and_visible_pairs() -> None:
    assert visible_pairs(5, None) == 15 and visible_pairs(5, 1) == 9
    # without a window the causal tiles of 512 x 512 cover the lower triangle, block by block
    assert visited_pairs("flash-numpy", 1024, None) == 512 * 512 * 3
    assert visited_pairs("sdpa", 1024, 64) is None


def test_benchmark_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["decoding", "--min-time", "-1"])
    assert "--min-time must be a number >= 0; got -1.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ring", "--nprocs", "0"])
    assert "--nprocs must be a positive integer; got 0" in capsys.readouterr().err


def test_ring_benchmark_writes_its_results(tmp_path: Path) -> None:
    assert main(["ring", "--nprocs", "1", "--n", "32", "--repeats", "1",
                 "--out", str(tmp_path)]) == 0
    result = _read(tmp_path, "distributed-cpu")
    assert {(r["causal"], r["layout"]) for r in result["rows"]} == {
        (False, "contiguous"), (True, "contiguous"), (True, "zigzag")}
    assert result["date"].endswith("UTC")
    assert "python -m attnkit.bench ring" in (tmp_path / "results-distributed-cpu.md").read_text()


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").glob("results-*.json")),
                         ids=lambda p: p.name)
def test_committed_results_share_one_schema(path: Path) -> None:
    result = json.loads(path.read_text())
    assert set(result) >= SCHEMA, sorted(SCHEMA - set(result))
    assert path.name == f"results-{result['kind']}.json"
    if result["machine"].get("simulated"):  # a simulation names its machine (no timing of this one)
        assert {"name", "versions"} <= set(result["machine"]) and result["machine"]["name"]
    else:
        assert MACHINE <= set(result["machine"]), sorted(MACHINE - set(result["machine"]))
    assert result["command"].startswith("python -m attnkit.bench")
    assert load_results(result["kind"], folder=path.parent) == result
