"""What ``python -m attnkit.bench ring`` measures: compute and wait from the timed run, peak memory."""

from __future__ import annotations

import json
import platform
from pathlib import Path

from attnkit.bench import main


def test_compute_and_wait_come_from_the_timed_forward(tmp_path: Path) -> None:
    # n = 1024: every shard (256 KiB or more) is above the 64 KiB mapping threshold
    assert main(["ring", "--nprocs", "1", "2", "--n", "1024", "--repeats", "1",
                 "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results-distributed-cpu.json").read_text())
    assert result["settings"]["compute_wait"] == "same run as the forward time"
    assert "mmap threshold" in result["settings"]["memory"]
    assert len(result["rows"]) == 3 * (1 + 2)
    for row in result["rows"]:
        # the block computations and the waits are parts of the forward that they came with
        assert row["forward_compute_ms"] + row["forward_wait_ms"] <= row["forward_ms"] + 1e-6
        peak = row["fwd_bwd_peak_rss_growth_mib"]
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            assert peak is not None and peak > 0
    text = (tmp_path / "results-distributed-cpu.md").read_text()
    assert "that same fastest forward" in text and "64 KiB or more" in text
    # the strategies on one problem, same run: ring and Ulysses at P = 1 and 2 (USP needs P >= 4)
    cp = result["strategy_rows"]
    assert sorted({(r["strategy"], r["P"]) for r in cp}) == [
        ("ring", 1), ("ring", 2), ("ulysses", 1), ("ulysses", 2)]
    assert len(cp) == 2 * (1 + 2)
    n, E, b = 1024, 64, 4  # float32; 4 query heads, 2 key/value heads (the defaults)
    for r in cp:
        P = r["P"]
        ring = (P - 1) * 2 * (n // P) * 2 * E * b  # P - 1 key/value blocks
        ulysses = (P - 1) * (n // P) * (2 * 4 + 2 * 2) * E * b // P  # (P - 1)/P of q, k, v, out
        assert r["forward_bytes_sent"] == (ring if r["strategy"] == "ring" else ulysses), r
        assert r["forward_ms"] > 0 and r["forward_backward_ms"] > 0
    assert "Strategies on one problem" in text

