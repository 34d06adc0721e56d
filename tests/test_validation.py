"""Every bad input gets a TypeError/ValueError that names the argument and what it got."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attnkit
from attnkit import attention

BACKENDS = attnkit.backends()


def qkv(L: int = 3, S: int = 4, E: int = 2, Ev: int = 5, batch: tuple[int, ...] = (),
        dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.normal(size=(*batch, L, E)).astype(dtype),
            rng.normal(size=(*batch, S, E)).astype(dtype),
            rng.normal(size=(*batch, S, Ev)).astype(dtype))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def test_width_mismatch(backend: str) -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"q and k must have the same width E.*\(3, 2\).*\(4, 3\)"):
        attention(q, np.zeros((4, 3)), v, backend=backend)


def test_length_mismatch(backend: str) -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"k and v must have the same length S.*\(4, 2\).*\(6, 5\)"):
        attention(q, k, np.zeros((6, 5)), backend=backend)


@pytest.mark.parametrize("which", ["q", "k", "v"])
def test_too_few_dimensions(which: str, backend: str) -> None:
    args = dict(zip("qkv", qkv()))
    args[which] = np.zeros(4)
    with pytest.raises(ValueError, match=rf"{which} must have at least 2 dimensions.*\(4,\)"):
        attention(args["q"], args["k"], args["v"], backend=backend)


def test_batch_does_not_broadcast(backend: str) -> None:
    q, _, _ = qkv(batch=(2,))
    _, k, v = qkv(batch=(3,))
    with pytest.raises(ValueError, match=r"batch dimensions.*broadcast.*\(2, 3, 2\).*\(3, 4, 2\)"):
        attention(q, k, v, backend=backend)


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4), (4, 3)])
def test_mask_does_not_broadcast(shape: tuple[int, ...], backend: str) -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"mask must broadcast to \(\.\.\., L, S\) = \(3, 4\)"):
        attention(q, k, v, mask=np.ones(shape, bool), backend=backend)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.complex64])
def test_mask_bad_dtype(dtype: type, backend: str) -> None:
    q, k, v = qkv()
    with pytest.raises(TypeError, match="mask must be boolean .* or floating"):
        attention(q, k, v, mask=np.ones((3, 4), dtype), backend=backend)


def test_mask_not_an_array(backend: str) -> None:
    q, k, v = qkv()
    with pytest.raises(TypeError, match="mask must be a numpy.ndarray or torch.Tensor"):
        attention(q, k, v, mask=[[True] * 4] * 3, backend=backend)


@pytest.mark.parametrize("dtype", [np.int64, np.bool_])
def test_non_floating_inputs(dtype: type, backend: str) -> None:
    q, k, v = qkv()
    with pytest.raises(TypeError, match=r"q must have a real floating dtype.*non-floating"):
        attention(q.astype(dtype), k, v, backend=backend)


def test_complex_inputs(backend: str) -> None:
    q, k, v = qkv()
    with pytest.raises(TypeError, match=r"k must have a real floating dtype.*complex dtype complex128"):
        attention(q, k.astype(np.complex128), v, backend=backend)


def test_mixed_dtypes(backend: str) -> None:
    q, k, v = qkv()
    with pytest.raises(TypeError, match=r"share one dtype.*q: float64, k: float64, v: float32"):
        attention(q, k, v.astype(np.float32), backend=backend)


def test_mixed_array_kinds(backend: str) -> None:
    q, k, v = qkv()
    with pytest.raises(TypeError, match=r"must all be NumPy arrays or all torch tensors.*v: torch"):
        attention(q, k, torch.from_numpy(v), backend=backend)


def test_lists_are_rejected(backend: str) -> None:
    q, k, v = qkv()
    with pytest.raises(TypeError, match="q must be a numpy.ndarray or torch.Tensor; got list"):
        attention(q.tolist(), k, v, backend=backend)


@pytest.mark.parametrize("scale", ["0.5", 1j, True, np.array([0.5, 0.5])])
def test_scale_not_a_real_number(scale: object, backend: str) -> None:
    q, k, v = qkv()
    with pytest.raises(TypeError, match="scale must be a real number"):
        attention(q, k, v, scale=scale, backend=backend)


def test_scale_not_finite(backend: str) -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match="scale must be finite"):
        attention(q, k, v, scale=float("nan"), backend=backend)


def test_default_scale_needs_width() -> None:
    q, k, v = qkv(E=0)
    with pytest.raises(ValueError, match="scale=None means 1/sqrt"):
        attention(q, k, v)
    out = attention(q, k, v, scale=1.0)  # E = 0 with an explicit scale: uniform weights
    np.testing.assert_allclose(out, np.broadcast_to(v.mean(0), out.shape))


def test_unknown_backend() -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"backend must be one of .*'numpy'.*got 'cuda'"):
        attention(q, k, v, backend="cuda")


@pytest.mark.parametrize("causal", ["upper", "bottom_right", np.str_("top_left")])
def test_unknown_causal(causal: object, backend: str) -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match="causal must be False, True, 'top-left' or 'bottom-right'"):
        attention(q, k, v, causal=causal, backend=backend)


@pytest.mark.parametrize("causal", [1, 0, None, 1.0])
def test_causal_of_the_wrong_type(causal: object, backend: str) -> None:
    """1 is not True: a number or None for causal is a TypeError, deliberately."""
    q, k, v = qkv()
    with pytest.raises(TypeError, match=r"causal must be False, True, .*; got .* of type"):
        attention(q, k, v, causal=causal, backend=backend)


@pytest.mark.parametrize("alignment", ["bottom-right", "top-left"])
def test_string_subclasses_are_strings(alignment: str, backend: str) -> None:
    """numpy.str_ (what NumPy and pandas hand back) is accepted wherever a str is."""
    q, k, v = qkv(L=3, S=5)
    s = np.array([alignment])[0]
    assert type(s) is np.str_
    np.testing.assert_array_equal(attention(q, k, v, causal=s, backend=backend),
                                  attention(q, k, v, causal=alignment, backend=backend))
    np.testing.assert_array_equal(attnkit.causal_mask(3, 5, alignment=s),
                                  attnkit.causal_mask(3, 5, alignment=alignment))
    assert attention(q, k, v, backend=np.str_(backend)).shape == (3, 5)


def test_return_weights_must_be_bool() -> None:
    q, k, v = qkv()
    with pytest.raises(TypeError, match="return_weights must be a bool"):
        attention(q, k, v, return_weights="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [b for b in BACKENDS if b not in ("numpy", "torch")])
def test_engines_without_weights_say_so(name: str) -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match=rf"backend '{name}' never forms the .* weight matrix"):
        attention(q, k, v, backend=name, return_weights=True)


def test_vocabulary_wrong_type_is_typeerror_wrong_value_is_valueerror() -> None:
    from attnkit.core._validate import choice, flag, integer, positive_int, real

    for bad in ("3", 3.0, True, None, np.float64(3)):
        with pytest.raises(TypeError, match="n must be a positive integer; got .* of type"):
            integer("n", bad, minimum=1)
        with pytest.raises(TypeError, match="n must be a positive integer"):
            positive_int("n", bad)
    for bad in ("3", True, None, 1j):
        with pytest.raises(TypeError, match="x must be a real number"):
            real("x", bad)
    with pytest.raises(ValueError, match="n must be a positive integer; got 0"):
        integer("n", 0, minimum=1)
    with pytest.raises(ValueError, match="x must be a number > 1; got 1"):
        real("x", 1, above=1)
    assert integer("n", np.int64(3), minimum=1) == 3 and type(integer("n", np.int64(3))) is int
    # choice: str subclasses are strings; 1 is not True; a sort no option has is a TypeError
    assert type(choice("c", np.str_("a"), ("a", "b"))) is str
    assert choice("bits", np.int64(8), (16, 8, 4)) == 8
    with pytest.raises(ValueError, match=r"c must be one of \['a', 'b'\]; got 'z'"):
        choice("c", "z", ("a", "b"))
    with pytest.raises(TypeError, match=r"c must be one of \[True, False\]; got 1 of type int"):
        choice("c", 1, (True, False))
    with pytest.raises(TypeError, match=r"bits must be one of \[16, 8, 4\]; got 8.0 of type float"):
        choice("bits", 8.0, (16, 8, 4))
    with pytest.raises(TypeError, match="f must be a bool; got 1"):
        flag("f", 1)


@pytest.mark.parametrize("window,error", [((1.5, 0), TypeError), ("ab", TypeError), ((1, 2, 3), ValueError),
                                          ((-1, 0), ValueError), ((True, 0), TypeError)])
def test_window_types_and_values(window: object, error: type) -> None:
    q, k, v = qkv()
    with pytest.raises(error, match="window"):
        attention(q, k, v, window=window)
