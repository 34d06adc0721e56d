"""Cache arithmetic of chapter 13's designs, recomputed by hand."""

from __future__ import annotations

import pytest

from attnkit.serving.designs import (
    DEEPSEEK_V2,
    DEEPSEEK_V3,
    DEEPSEEK_V32_INDEXER,
    GEMMA_STACKS,
    cache_numbers_per_token,
    layer_kinds,
    local_reach,
    stack_kv_bytes,
)


def test_mla_cache_against_mha_gqa_mqa():
    assert cache_numbers_per_token(DEEPSEEK_V3, "MLA", layers=1) == 512 + 64
    assert cache_numbers_per_token(DEEPSEEK_V3, "MHA", layers=1) == 2 * 128 * 128
    assert cache_numbers_per_token(DEEPSEEK_V3, "MQA") == 61 * 256
    assert cache_numbers_per_token(DEEPSEEK_V2, "MLA") == 60 * 576
    # MLA's cache equals GQA with 2.25 groups (DeepSeek-V2's statement)
    assert cache_numbers_per_token(DEEPSEEK_V3, "MLA", layers=1) / (2 * 128) == 2.25
    with pytest.raises(ValueError, match="kv_heads must be given"):
        cache_numbers_per_token(DEEPSEEK_V3, "GQA")
    with pytest.raises(ValueError, match="design must be one of"):
        cache_numbers_per_token(DEEPSEEK_V3, "MLA2")


def test_gemma_patterns():
    g3 = GEMMA_STACKS["Gemma 3 27B"]
    assert (g3.n_local, g3.n_global) == (52, 10)
    g2 = GEMMA_STACKS["Gemma 2 27B"]
    assert (g2.n_local, g2.n_global) == (23, 23)
    T = 131072
    per_tok = 2 * 16 * 128 * 2
    assert stack_kv_bytes(g3, T) == per_tok * (10 * T + 52 * 1024)
    assert stack_kv_bytes(g3.with_pattern(["global"]), T) == per_tok * 62 * T
    assert layer_kinds(7, ["local"] * 5 + ["global"])[5] == "global"


def test_reach_and_refusals():
    assert local_reach(52, 1024) == 52 * 1023
    with pytest.raises(ValueError, match="window must be a positive integer; got -1"):
        local_reach(3, -1)
    with pytest.raises(ValueError, match="window must be a positive integer"):
        GEMMA_STACKS["Gemma 3 27B"].with_pattern(["local"], window=0)
    with pytest.raises(ValueError, match="pattern must hold"):
        layer_kinds(3, [])
    assert DEEPSEEK_V32_INDEXER.macs_per_pair == 64 * 129
