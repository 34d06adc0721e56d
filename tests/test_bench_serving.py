"""``python -m attnkit.bench serving``: a small run writes the one results schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnkit.bench import main

SCHEMA = {"kind", "date", "command", "machine", "settings", "rows"}
SMALL = ["serving", "--requests", "4", "--rate", "inf", "--system-prompt", "8", "--shared-fraction",
         "1", "--prompt-tokens", "2", "6", "--output-tokens", "2", "4", "--d-model", "16",
         "--heads", "2", "--layers", "1", "--vocab", "32", "--block-size", "4", "--num-blocks",
         "32", "--token-budget", "8", "--max-seqs", "4", "--repeats", "1"]


def test_serving_benchmark_compares_policies_against_static(tmp_path: Path) -> None:
    assert main([*SMALL, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results-serving-cpu.json").read_text())
    assert set(result) >= SCHEMA and result["kind"] == "serving-cpu"
    rows = {r["policy"]: r for r in result["rows"]}
    assert list(rows) == ["static", "continuous", "continuous + chunked", "continuous + prefix",
                          "continuous + chunked + prefix"]
    assert rows["static"]["throughput_x_static"] == 1.0
    for r in rows.values():
        assert r["same_outputs_as_static"]
        assert r["throughput_x_static"] == pytest.approx(
            r["output_tokens_per_s"] / rows["static"]["output_tokens_per_s"])
        assert r["output_tokens_per_s_min"] <= r["output_tokens_per_s"] <= r["output_tokens_per_s_max"]
    # all four requests share the 8-token system prompt (two blocks): three find it cached
    assert rows["continuous"]["prefix_hit_fraction"] == 0.0
    assert (rows["continuous"]["prefill_tokens"] - rows["continuous + prefix"]["prefill_tokens"]
            == 3 * 8)
    assert rows["continuous + chunked"]["token_budget"] == 8
    assert result["settings"]["output_tokens_total"] >= 4 * 2
    assert "python -m attnkit.bench serving --requests 4" in (
        tmp_path / "results-serving-cpu.md").read_text()


@pytest.mark.parametrize("bad, message", [
    (["--token-budget", "2"], "token_budget must be at least one block"),
    (["--prompt-tokens", "6", "2"], "--prompt-tokens must be a range LOW HIGH"),
    (["--d-model", "15"], "--d-model must be a multiple of --heads = 2"),
    (["--rate", "0"], "--rate must be"),
])
def test_serving_benchmark_bad_options(bad: list[str], message: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*SMALL, *bad, "--out", str(tmp_path)])
    assert message in capsys.readouterr().err
