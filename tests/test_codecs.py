"""The compact codecs of carry checkpoints (otgen.codecs) and their use by otgen.checkpoint.

Each lossy codec is checked against the error bound its docstring states, on arrays it was not tuned on
(normal, log-normal over many octaves, exact zeros, a ragged last block)."""

import numpy as np
import pytest

from otgen import codecs
from otgen.checkpoint import CheckpointError, load_codecs, load_pytree, save_pytree


def roundtrip(name, x):
    return codecs.decode(name, codecs.encode(name, x), x.shape, x.dtype)


def test_bf16_rounds_to_nearest_within_half_an_ulp():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((37, 41)) * np.exp(rng.normal(0, 5, (37, 41)))).astype(np.float32)
    y = roundtrip("bf16", x)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x) / np.abs(x)) <= 2.0 ** -8
    # values bfloat16 holds exactly come back exactly, signs and zeros included
    exact = np.array([0.0, -0.0, 1.0, -2.5, 0.15625, 3.0e38], np.float32)
    exact = (exact.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    np.testing.assert_array_equal(roundtrip("bf16", exact).view(np.uint32), exact.view(np.uint32))


def test_log8_relative_error_is_bounded_by_each_blocks_range_and_zeros_stay_zero():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(1000) ** 2 * np.exp(rng.normal(0, 3, 1000))).astype(np.float32)
    x[::7] = 0.0
    y = roundtrip("log8", x)
    assert np.all(y[::7] == 0) and np.all(y[x > 0] > 0)
    for start in range(0, x.size, codecs.BLOCK):
        b, c = x[start:start + codecs.BLOCK], y[start:start + codecs.BLOCK]
        pos = b > 0
        octaves = np.log2(b[pos].max()) - np.log2(b[pos].min())
        bound = 2.0 ** (octaves / 508) - 1
        assert np.max(np.abs(c[pos] / b[pos] - 1)) <= bound * 1.01 + 1e-6


@pytest.mark.parametrize("name, levels", [("int8", 127), ("int4", 7)])
def test_block_integer_codecs_absolute_error(name, levels):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(701).astype(np.float32)  # odd: int4's last byte holds one code
    x[:codecs.BLOCK] = 0.0  # an all-zero block
    y = roundtrip(name, x)
    np.testing.assert_array_equal(y[:codecs.BLOCK], 0.0)
    for start in range(codecs.BLOCK, x.size, codecs.BLOCK):
        b, c = x[start:start + codecs.BLOCK], y[start:start + codecs.BLOCK]
        assert np.max(np.abs(c - b)) <= np.abs(b).max() / (2 * levels) * 1.001
        assert np.abs(c).max() == pytest.approx(np.abs(b).max(), rel=1e-6)  # the block's extreme is exact


def test_zero_codec():
    x = np.ones(5, np.float32)
    assert codecs.encode("zero", x) == {}
    np.testing.assert_array_equal(roundtrip("zero", x), np.zeros_like(x))


@pytest.mark.parametrize("name, x, match", [
    ("bf16", np.array([1.0, np.nan], np.float32), "NaN"),
    ("log8", np.array([1.0, -1.0], np.float32), "non-negative"),
    ("int8", np.array([1.0, 2.0]), "float32"),
    ("lz4", np.ones(3, np.float32), "unknown codec"),
])
def test_codecs_refuse_what_they_cannot_encode(name, x, match):
    with pytest.raises(ValueError, match=match):
        codecs.encode(name, x)


def test_checkpoint_with_codecs_is_smaller_and_loads_into_the_template(tmp_path):
    rng = np.random.default_rng(3)
    tree = {"w": rng.standard_normal((128, 128)).astype(np.float32) * 0.02,
            "nu": (rng.standard_normal((128, 128)) ** 2 * 1e-6).astype(np.float32),
            "step": np.int32(7)}
    pick = {"['w']": "bf16", "['nu']": "log8"}
    exact = save_pytree(tmp_path / "exact.npz", tree)
    small = save_pytree(tmp_path / "small.npz", tree, metadata={"a": 1}, codecs=lambda p, a: pick.get(p, "exact"))
    assert small.stat().st_size < 0.45 * exact.stat().st_size
    back, meta = load_pytree(small, like=tree)
    assert meta == {"a": 1} and back["step"] == 7 and back["w"].dtype == np.float32
    assert np.max(np.abs(back["w"] - tree["w"]) / np.abs(tree["w"])) <= 2.0 ** -8
    assert load_codecs(small) == pick and load_codecs(exact) == {}


def test_a_lossy_leaf_that_cannot_be_encoded_names_its_path(tmp_path):
    tree = {"w": np.array([1.0, np.inf], np.float32)}
    with pytest.raises(CheckpointError, match=r"\['w'\].*NaN or infinite"):
        save_pytree(tmp_path / "c.npz", tree, codecs=lambda p, a: "bf16")
    assert not (tmp_path / "c.npz").exists()
