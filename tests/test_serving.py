"""attnkit.serving (cache memory, roofline, quantiser) and the memory explorer."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import attnkit
from attnkit.serving.sizing import (
    GPUS,
    MODELS,
    GiB,
    ModelShape,
    decode_cost,
    kv_bytes_per_token,
    kv_cache_bytes_for,
    prefill_cost,
    quantize,
    sequences_that_fit,
)
from attnkit.teaching.memory_explorer import memory_explorer_data, memory_explorer_html

LLAMA7, MISTRAL, LLAMA70 = MODELS["LLaMA-2 7B"], MODELS["Mistral 7B"], MODELS["LLaMA-2 70B"]
H100 = GPUS["H100 SXM 80 GB"]


def test_parameter_counts_match_the_published_sizes() -> None:
    assert LLAMA7.params == 6_738_415_616  # the count reported for LLaMA-2 7B
    assert 7.2e9 < MISTRAL.params < 7.3e9
    assert 68.9e9 < LLAMA70.params < 69.1e9


def test_kv_bytes_agree_with_the_layers_helper() -> None:
    from attnkit.models.layers import kv_cache_bytes

    for m in MODELS.values():
        want = kv_cache_bytes(layers=m.layers, kv_heads=m.kv_heads, head_dim=m.head_dim, tokens=1)
        assert kv_bytes_per_token(m) == want
    # 8 and 4 bits: half and a quarter, plus one float16 scale per 64 numbers
    assert kv_bytes_per_token(LLAMA7, 8) == pytest.approx(kv_bytes_per_token(LLAMA7) * (8 + 0.25) / 16)
    assert kv_bytes_per_token(LLAMA7, 4, group_size=128) == pytest.approx(
        kv_bytes_per_token(LLAMA7) * (4 + 0.125) / 16)
    assert kv_bytes_per_token(LLAMA70.with_kv_heads(64)) == 8 * kv_bytes_per_token(LLAMA70)


def test_window_caps_the_cache() -> None:
    at_window = kv_cache_bytes_for(MISTRAL, context=4096)
    assert kv_cache_bytes_for(MISTRAL, context=131072) == at_window
    assert kv_cache_bytes_for(MISTRAL, context=1024) == at_window / 4
    assert kv_cache_bytes_for(LLAMA7, context=4096, batch=3) / GiB == 6.0


def test_sequences_that_fit() -> None:
    assert sequences_that_fit(100.0, weights=10.0, per_sequence=20.0, reserve=0.0) == 4
    assert sequences_that_fit(100.0, weights=95.0, per_sequence=1.0) == 0
    with pytest.raises(ValueError, match="reserve"):
        sequences_that_fit(100.0, weights=1.0, per_sequence=1.0, reserve=1.0)
    with pytest.raises(ValueError, match="per_sequence"):
        sequences_that_fit(100.0, weights=1.0, per_sequence=0)
    with pytest.raises(ValueError, match="weights"):
        sequences_that_fit(100.0, weights=-1.0, per_sequence=1.0)


def test_roofline_prefill_compute_decode_memory() -> None:
    pre = prefill_cost(LLAMA7, 2048)
    assert pre.time_on(H100)["bound"] == "compute"
    assert pre.flops == pytest.approx(2 * LLAMA7.params * 2048 + 4 * 32 * 32 * 128 * 2048 * 2049 / 2)
    dec = decode_cost(LLAMA7, 4095, batch=2)
    assert dec.flops == pytest.approx(2 * LLAMA7.params * 2 + 4 * 32 * 32 * 128 * 2 * 4096)
    assert dec.bytes == pytest.approx(LLAMA7.params * 2 + 2 * 4096 * kv_bytes_per_token(LLAMA7))
    assert dec.time_on(H100)["bound"] == "memory"
    # batching raises the intensity, with diminishing returns when the cache dominates
    i = [decode_cost(LLAMA7, 4096, batch=b).intensity for b in (1, 16, 256)]
    assert i[0] < i[1] < i[2] < 8
    assert decode_cost(LLAMA7.with_kv_heads(8), 4096, batch=256).intensity > 2 * i[2]
    assert H100.ridge == pytest.approx(989.4e12 / 3.35e12)


def test_shape_and_format_errors() -> None:
    with pytest.raises(ValueError, match="bits"):
        kv_bytes_per_token(LLAMA7, 2)
    with pytest.raises(ValueError, match="group_size"):
        kv_bytes_per_token(LLAMA7, 8, group_size=48)
    with pytest.raises(TypeError, match="ModelShape"):
        kv_bytes_per_token("LLaMA")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        ModelShape("bad", 2, 64, 4, 3, 16, 128, 100)
    with pytest.raises(ValueError, match="context"):
        kv_cache_bytes_for(LLAMA7, context=0)
    with pytest.raises(ValueError, match="prompt"):
        prefill_cost(LLAMA7, 0)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_error_bound_and_size(bits: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 128)) * np.exp(rng.standard_normal((7, 1)))
    qx = quantize(x, bits, group_size=32)
    back = qx.dequantize()
    assert back.shape == x.shape and back.dtype == np.float32
    step = np.repeat(qx.scales.astype(np.float64), 32, axis=-1)
    # at most half a step, plus the float16 rounding of the scale itself
    assert np.all(np.abs(back - x) <= step / 2 + np.abs(x) * 2e-3)
    qmax = 2 ** (bits - 1) - 1
    assert int(np.abs(qx.values).max()) == qmax
    assert qx.nbytes == x.size * bits / 8 + x.size / 32 * 2
    z = quantize(np.zeros((2, 64)), bits)
    assert np.all(z.dequantize() == 0)


def test_quantized_cache_error_on_attention_grows_as_bits_fall() -> None:
    rng = np.random.default_rng(1)
    q, k, v = rng.standard_normal((8, 64)), rng.standard_normal((100, 64)), rng.standard_normal((100, 64))
    exact = attnkit.attention(q, k, v)
    err = {}
    for bits in (8, 4):
        out = attnkit.attention(q, quantize(k, bits).dequantize().astype(np.float64),
                                quantize(v, bits).dequantize().astype(np.float64))
        err[bits] = np.linalg.norm(out - exact) / np.linalg.norm(exact)
    assert err[8] < 0.02 < err[4] < 0.5


def test_quantize_errors() -> None:
    with pytest.raises(ValueError, match="bits"):
        quantize(np.ones((1, 8)), 16)
    with pytest.raises(ValueError, match="divisible"):
        quantize(np.ones((1, 10)), 8, group_size=4)
    with pytest.raises(ValueError, match="finite"):
        quantize(np.array([[np.inf, 1.0]]), 8, group_size=2)


def test_memory_explorer() -> None:
    models, gpus = [LLAMA7, MISTRAL], [H100]
    data = memory_explorer_data(models, gpus, [4096, 32768], [1, 64], [16, 4])
    assert len(data) == 2 * 1 * 2 * 2 * 2
    assert data["0|0|0|0|0"]["per_seq"] == "2.00 GiB"
    assert data["0|0|1|1|0"]["fits"] == "no"  # 64 x 16 GiB
    assert data["1|0|1|0|0"]["per_seq"] == data["1|0|0|0|0"]["per_seq"]  # Mistral's window
    html = memory_explorer_html(models, gpus, [4096, 32768], [1, 64], [16, 4], initial={"batch": 1})
    assert html.count("<select") == 5 and "attnkit-memory-result" in html
    payload = json.loads(re.search(r"var data=(\{.*?\});", html).group(1))
    assert payload == data
    assert "selected" in html and 'data-field="max_seqs"' in html
    with pytest.raises(ValueError, match="contexts"):
        memory_explorer_data(models, gpus, [], [1])


def test_gpu_memory_is_in_gib() -> None:
    # NVIDIA's "80 GB" H100 and A100 have 80 GiB of HBM; the H200's "141 GB" is 141 GiB
    assert GPUS["H100 SXM 80 GB"].memory == 80 * 2**30 == 80 * GiB
    assert GPUS["A100 SXM 80 GB"].memory == 80 * GiB
    assert GPUS["H200 SXM 141 GB"].memory == 141 * GiB
    # with 10 % kept free, LLaMA-2 7B's 4,096-token caches: 29 fit beside the 16-bit weights
    fit = sequences_that_fit(H100.memory, weights=LLAMA7.params * 2,
                             per_sequence=kv_cache_bytes_for(LLAMA7, context=4096))
    assert fit == int((0.9 * 80 * GiB - LLAMA7.params * 2) // (2 * GiB)) == 29
