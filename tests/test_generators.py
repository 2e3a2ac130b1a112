"""The generator interface: one protocol, the registry, save/load and workdir resume for each family."""

import jax
import numpy as np
import pytest

import otgen
from otgen.checkpoint import CheckpointError
from otgen.generators import REGISTRY, Generator, make


def _ring(n, seed=0):
    return otgen.load_dataset("ring8", "train", n=n, seed=seed)


def test_registry_names_every_model_and_nothing_else():
    from otgen.pipelines.toy import MODELS
    from otgen.generators.flow import COUPLINGS
    from otgen.training import GAN_MODELS

    assert set(REGISTRY) == {"aeot", *GAN_MODELS, *COUPLINGS} == set(MODELS)
    with pytest.raises(ValueError, match="unknown model 'vae'"):
        make("vae", "toy", shape=(2,))
    with pytest.raises(ValueError, match="suite"):
        make("gan", "audio", shape=(2,))
    with pytest.raises(ValueError, match="takes no option angle_threshold"):
        make("gan", "toy", shape=(2,), angle_threshold=0.2)


def test_top_level_names_resolve_lazily():
    assert otgen.AEOT is otgen.generators.aeot.AEOT and callable(otgen.make_generator)
    with pytest.raises(AttributeError):
        otgen.not_a_name


@pytest.mark.parametrize("model", ["aeot", "gan", "sdfm"])
def test_every_family_fits_samples_saves_and_loads_through_the_protocol(tmp_path, model):
    x = _ring(300)
    gen = make(model, "toy", shape=(2,), steps={"gan": 30, "sdfm": 100}.get(model), progress=False)
    assert isinstance(gen, Generator) and gen.name == model
    with pytest.raises(ValueError, match="not (fitted|trained)"):
        gen.sample(jax.random.key(0), 5)
    gen.fit(x, jax.random.key(1), tmp_path / "work")
    a = gen.sample(jax.random.key(2), 64)
    assert a.shape == (64, 2) and np.isfinite(a).all()
    np.testing.assert_array_equal(gen.sample(jax.random.key(2), 64), a)  # deterministic in the key
    gen.save(tmp_path / "saved")
    cls = type(gen)
    back = cls.load(tmp_path / "saved") if model == "aeot" else cls.load(tmp_path / "saved", gen.config)
    np.testing.assert_allclose(back.sample(jax.random.key(2), 64), a, rtol=1e-6, atol=1e-6)
    assert "train_seconds" in gen.info() or "ot_converged" in gen.info()


def test_aeot_workdir_resumes_each_stage_and_refuses_other_codes(tmp_path):
    x = _ring(300)
    first = make("aeot", "toy", shape=(2,), progress=False).fit(x, jax.random.key(0), tmp_path)
    assert first.resumed == ()
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert set(stamps) == {"whitening.npz", "brenier.npz", "extension.npz"}
    again = make("aeot", "toy", shape=(2,), progress=False).fit(x, jax.random.key(0), tmp_path)
    assert again.resumed == ("fit-ot", "extend")
    assert stamps == {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}  # nothing recomputed
    np.testing.assert_array_equal(again.sample(jax.random.key(3), 50), first.sample(jax.random.key(3), 50))
    # killed after the OT stage: only the extension is rebuilt
    (tmp_path / "extension.npz").unlink()
    third = make("aeot", "toy", shape=(2,), progress=False).fit(x, jax.random.key(0), tmp_path)
    assert third.resumed == ("fit-ot",)
    # a saved model's directory serves as the workdir of a fit on the same codes
    third.save(tmp_path / "saved")
    assert make("aeot", "toy", shape=(2,), progress=False).fit(x, jax.random.key(0), tmp_path / "saved").resumed == (
        "fit-ot", "extend")
    with pytest.raises(CheckpointError, match="other codes"):
        make("aeot", "toy", shape=(2,), progress=False).fit(x + 1.0, jax.random.key(0), tmp_path)


def test_gan_workdir_continues_a_longer_budget(tmp_path):
    x = _ring(200)
    short = make("gan", "toy", shape=(2,), steps=20, progress=False).fit(x, jax.random.key(0), tmp_path)
    assert short.info()["steps"] == 20
    longer = make("gan", "toy", shape=(2,), steps=40, progress=False).fit(x, jax.random.key(0), tmp_path)
    straight = make("gan", "toy", shape=(2,), steps=40, progress=False).fit(x, jax.random.key(0), tmp_path / "b")
    assert longer.info()["steps"] == 40
    # the training time adds up over the two calls (what otgen mnist's stages.json reports)
    assert longer.result.total_seconds >= short.result.total_seconds + longer.result.train_seconds * 0.99
    np.testing.assert_allclose(longer.sample(jax.random.key(1), 32), straight.sample(jax.random.key(1), 32),
                               rtol=1e-5, atol=1e-5)


def test_dataset_splits_are_reproducible_and_independent():
    a, b = _ring(500, seed=4), _ring(500, seed=4)
    np.testing.assert_array_equal(a, b)
    held = otgen.load_dataset("ring8", "held_out", n=500, seed=4)
    assert not np.allclose(a, held)
    with pytest.raises(ValueError, match="unknown dataset"):
        otgen.load_dataset("cifar", "train")
    with pytest.raises(ValueError, match="toy split"):
        otgen.load_dataset("ring8", "test", n=5)
    with pytest.raises(ValueError, match="n >= 1"):
        otgen.load_dataset("ring8", "train")
