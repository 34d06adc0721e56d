"""The MLA and top-k benchmarks run (small sizes) and write their results files."""

from __future__ import annotations

import json

from attnkit.bench import main, sparse


def test_mla_benchmark_smoke(tmp_path):
    assert main(["mla", "--sizes", "64", "--heads", "2", "--head-dim", "8", "--rope-dim", "4",
                 "--kv-latent", "16", "--repeats", "1", "--min-time", "0", "--rounds", "2",
                 "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results-mla-cpu.json").read_text())
    methods = {r["method"]: r for r in res["rows"]}
    assert set(methods) == {"naive", "absorbed"} and methods["absorbed"]["max_abs_diff_vs_naive"] < 1e-4
    assert res["settings"]["cache_numbers_per_token"] == 20 and "cpu" in res["machine"]
    assert res["kind"] == "mla-cpu" and res["command"].startswith("python -m attnkit.bench mla")
    # multiply-adds of one step: naive up-projects 64 latents, absorbed folds W_UK and W_UV
    assert methods["naive"]["macs"] == 64 * 16 * 2 * (8 + 8) + 64 * 2 * (8 + 4 + 8)
    assert methods["absorbed"]["macs"] == 2 * 8 * 16 + 64 * 2 * (2 * 16 + 4) + 2 * 16 * 8
    assert all(r["gmacs_per_s"] > 0 for r in res["rows"]) and res["settings"]["rounds"] == 2


def test_topk_benchmark_smoke(tmp_path):
    assert main(["sparse", "--sizes", "128", "--topk", "16", "256", "--dim", "8", "--repeats",
                 "1", "--min-time", "0", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results-topk-cpu.json").read_text())
    parts = [(r["part"], r["k"]) for r in res["rows"]]
    assert parts == [("dense", None), ("indexer", 16), ("gather", 16),
                     ("top-k core", 16)]  # k > n skipped
    assert all((r["peak_bytes"] is None) == (r["part"] == "gather") for r in res["rows"])
    pairs = {r["part"]: r["pairs"] for r in res["rows"]}
    assert pairs["dense"] == 128 * 129 // 2 and pairs["top-k core"] == 16 * 128 - 16 * 15 // 2
    assert res["kind"] == "topk-cpu" and "cpu_details" in res["machine"]
    assert res["settings"]["rounds"] == sparse.ROUNDS  # --rounds left out: the module's default


def test_topk_benchmark_defaults_come_from_the_module(tmp_path, monkeypatch):
    """--sizes and --topk left out: the module's SIZES and TOPK, which every kept k fits."""
    seen = {}

    def fake_run(sizes, topk, *args, **kwargs):
        seen.update(sizes=sizes, topk=topk)
        return {"rows": [], "settings": {"dim": 64, "dtype": "float32", "index_heads": 2,
                                         "index_dim": 8, "block_q": 128, "repeats": 1,
                                         "min_time_s": 0.0}}

    monkeypatch.setattr(sparse, "run", fake_run)
    assert main(["sparse", "--repeats", "1", "--min-time", "0", "--out", str(tmp_path)]) == 0
    assert seen == {"sizes": sparse.SIZES, "topk": sparse.TOPK}
    assert max(sparse.TOPK) <= min(sparse.SIZES)
