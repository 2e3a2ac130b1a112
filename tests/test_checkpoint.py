"""Checkpoints: atomic, pickle-free, and loud about corruption or mismatch."""

import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from otgen.checkpoint import CheckpointError, load_metadata, load_pytree, save_pytree
from otgen.rundir import RunDir


def _tree():
    return {"params": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.zeros(3, jnp.float32)},
            "step": np.int32(7), "key": jax.random.key(3), "hist": (np.ones(2), np.array([1, 2], np.int64))}


def test_round_trip_with_template_restores_structure_and_values(tmp_path):
    tree = _tree()
    save_pytree(tmp_path / "c.npz", tree, {"model": "gan", "step": 7})
    out, meta = load_pytree(tmp_path / "c.npz", like=tree)
    assert meta == {"model": "gan", "step": 7}
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(tree)
    np.testing.assert_array_equal(out["params"]["w"], np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(out["hist"][1], [1, 2])
    # the PRNG key comes back as a key that draws the same numbers
    np.testing.assert_array_equal(jax.random.normal(out["key"], (3,)), jax.random.normal(tree["key"], (3,)))


def test_flat_load_without_template(tmp_path):
    save_pytree(tmp_path / "c.npz", {"a": np.ones(2), "b": {"c": np.zeros((1, 1))}})
    flat, meta = load_pytree(tmp_path / "c.npz")
    assert set(flat) == {"['a']", "['b']['c']"} and meta == {}


def test_mismatched_template_is_refused(tmp_path):
    save_pytree(tmp_path / "c.npz", {"w": np.ones((2, 3), np.float32)})
    with pytest.raises(CheckpointError, match="shape"):
        load_pytree(tmp_path / "c.npz", like={"w": np.ones((3, 3), np.float32)})
    with pytest.raises(CheckpointError, match="expected"):
        load_pytree(tmp_path / "c.npz", like={"v": np.ones((2, 3), np.float32)})
    with pytest.raises(CheckpointError, match="arrays"):
        load_pytree(tmp_path / "c.npz", like={"w": np.ones((2, 3), np.float32), "b": np.ones(1)})


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "missing"])
def test_corrupt_files_raise_checkpoint_error(tmp_path, damage):
    path = tmp_path / "c.npz"
    save_pytree(path, {"w": np.random.default_rng(0).normal(size=(64, 64))})
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":  # flip a byte inside the stored array data: the zip CRC catches it
        b = bytearray(raw)
        b[len(b) // 3] ^= 0xFF
        path.write_bytes(bytes(b))
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    else:
        path.unlink()
    with pytest.raises(CheckpointError):
        load_pytree(path)


def test_load_metadata_reads_the_manifest_alone(tmp_path):
    path = tmp_path / "c.npz"
    meta = {"step": 1200, "curve": [{"step": 1000, "modes_captured": 8}]}
    save_pytree(path, {"w": np.random.default_rng(0).normal(size=(256, 256))}, meta)
    assert load_metadata(path) == meta == load_pytree(path)[1]
    # the arrays are not read: damage inside the leaf data stops load_pytree, not load_metadata
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert load_metadata(path) == meta
    with pytest.raises(CheckpointError):
        load_pytree(path)
    for bad in (b"not a checkpoint at all", None):
        path.unlink()
        if bad is not None:
            path.write_bytes(bad)
        with pytest.raises(CheckpointError):
            load_metadata(path)
    np.savez(tmp_path / "x.npz", a=np.ones(3))
    with pytest.raises(CheckpointError, match="manifest"):
        load_metadata(tmp_path / "x.npz")


def test_plain_npz_without_manifest_is_refused(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.ones(3))
    with pytest.raises(CheckpointError, match="manifest"):
        load_pytree(tmp_path / "x.npz")


def test_failed_write_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "c.npz"
    save_pytree(path, {"w": np.ones(3)})
    with pytest.raises(CheckpointError):  # object leaves cannot be stored: the old file must survive
        save_pytree(path, {"w": np.array([object()], dtype=object)})
    out, _ = load_pytree(path)
    np.testing.assert_array_equal(out["['w']"], np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temp files left behind
    assert zipfile.is_zipfile(path)


def test_rundir_writes_config_json_and_arrays(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config({"lr": 1e-3, "layers": (2, 3)}, seed=5)
    cfg = run.read_json("config.json")
    assert cfg["config"] == {"layers": [2, 3], "lr": 1e-3} and cfg["seed"] == 5
    assert "jax" in cfg["versions"]
    run.save_array("x.npy", np.arange(4))
    np.testing.assert_array_equal(run.load_array("x.npy"), np.arange(4))
    run.file("bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="corrupt"):
        run.load_array("bad.npy")
