"""The MLA and top-k benchmarks run (small sizes) and write their results files."""

from __future__ import annotations

import json

from attnkit.bench import main


def test_mla_benchmark_smoke(tmp_path):
    assert main(["mla", "--sizes", "64", "--heads", "2", "--head-dim", "8", "--rope-dim", "4",
                 "--kv-latent", "16", "--repeats", "1", "--min-time", "0",
                 "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results-mla-cpu.json").read_text())
    methods = {r["method"]: r for r in res["rows"]}
    assert set(methods) == {"naive", "absorbed"} and methods["absorbed"]["max_abs_diff_vs_naive"] < 1e-4
    assert res["settings"]["cache_numbers_per_token"] == 20 and "cpu" in res["machine"]
    assert res["kind"] == "mla-cpu" and res["command"].startswith("python -m attnkit.bench mla")


def test_topk_benchmark_smoke(tmp_path):
    assert main(["sparse", "--sizes", "128", "--topk", "16", "256", "--dim", "8", "--repeats",
                 "1", "--min-time", "0", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results-topk-cpu.json").read_text())
    parts = [(r["part"], r["k"]) for r in res["rows"]]
    assert parts == [("dense", None), ("indexer", 16), ("top-k core", 16)]  # k > n skipped
    assert all(r["peak_bytes"] is not None for r in res["rows"])
    assert res["kind"] == "topk-cpu" and "cpu_details" in res["machine"]
