"""``python -m attnkit.bench serving-sim``: a small run writes the one results schema, machine simulated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnkit.bench import main
from attnkit.bench.serving_sim import CASE_TOKEN_BUDGETS, POLICY_SET
from attnkit.serving.simulator import SIMULATED_MACHINE

SCHEMA = {"kind", "date", "command", "machine", "settings", "rows", "case_study"}
SMALL = ["serving-sim", "--requests", "6", "--rates", "5", "50", "--system-prompt", "64",
         "--prompt-tokens", "16", "64", "--output-tokens", "4", "16", "--token-budget", "64",
         "--max-seqs", "8", "--case-batch", "2", "--case-context", "32"]


def test_simulation_writes_the_schema_and_is_deterministic(tmp_path: Path) -> None:
    assert main([*SMALL, "--out", str(tmp_path / "a")]) == 0
    assert main([*SMALL, "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / x / "results-serving-sim.json").read_text()) for x in "ab")
    assert set(a) >= SCHEMA and a["kind"] == "serving-sim"
    assert a["machine"]["name"] == SIMULATED_MACHINE and a["machine"]["simulated"] is True
    assert a["rows"] == b["rows"] and a["case_study"] == b["case_study"]
    assert [(r["rate_per_s"], r["policy"]) for r in a["rows"]] == [
        (rate, p[0]) for rate in (5.0, 50.0) for p in POLICY_SET]
    for r in a["rows"]:
        assert r["ttft_p50_s"] <= r["ttft_p99_s"] and r["itl_p50_s"] <= r["itl_p99_s"] <= r["itl_max_s"]
        if r["policy"] == "static":
            assert r["throughput_x_static"] == 1.0
        if "prefix" in r["policy"]:
            assert r["prefix_hit_fraction"] > 0
    case = {c["token_budget"]: c for c in a["case_study"]}
    assert list(case) == list(CASE_TOKEN_BUDGETS)
    assert not case[None]["within_budget"] and case[None]["worst_itl_s"] > 0.129  # the whole prefill
    assert case[512]["within_budget"]
    page = (tmp_path / "a" / "results-serving-sim.md").read_text()
    assert f"- machine: {SIMULATED_MACHINE}" in page and "python -m attnkit.bench serving-sim" in page


@pytest.mark.parametrize("bad, message", [
    (["--token-budget", "2"], "token_budget must be at least one block"),
    (["--rates", "0"], "--rates must be"),
    (["--shared-fraction", "2"], "--shared-fraction must be in [0, 1]"),
    (["--output-tokens", "9", "2"], "--output-tokens must be a range LOW HIGH"),
])
def test_bad_options(bad: list[str], message: str, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*SMALL, *bad, "--out", str(tmp_path)])
    assert message in capsys.readouterr().err
