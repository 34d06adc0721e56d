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

