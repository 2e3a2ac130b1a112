"""The GAN training loop: every model's step, constraints, resume, refusal of foreign checkpoints, NaN stop.

All runs are seeded (``cfg.seed``, fixed data), hence reproducible; the networks are
shrunk (``TINY``) so that the whole file runs in well under a minute.
"""

import dataclasses

import jax
import numpy as np
import pytest

from otgen.checkpoint import CheckpointError, load_codecs, load_pytree
from otgen.training import (CHECKPOINT_NAME, GAN_MODELS, LOSS_PLOT_NAME, GANConfig, TrainingDivergedError, init_state,
                            load_gan, make_fit_step, save_carry, save_gan, train_gan)

TINY = dict(g_hidden=16, g_layers=2, d_hidden=8, maxout_pieces=3, batch_size=16, log_every=5)


def ring_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    angle = rng.integers(0, 8, n) * 2 * np.pi / 8
    return (np.stack([np.cos(angle), np.sin(angle)], 1) + 0.02 * rng.standard_normal((n, 2))).astype(np.float32)


def tiny(model, **kw):
    return GANConfig.for_toy(model, **{"steps": 10, **TINY, **kw})


def leaves(tree):
    def as_numpy(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return np.asarray(jax.random.key_data(x))
        return np.asarray(x)
    return [as_numpy(x) for x in jax.tree_util.tree_leaves(tree)]


@pytest.mark.parametrize("model", GAN_MODELS)
def test_train_step_runs_with_finite_losses_and_right_shapes(model):
    cfg = tiny(model)
    state = init_state(cfg)
    step = jax.jit(make_fit_step(cfg))
    new, metrics = step(state, jax.numpy.asarray(ring_data()))
    assert int(new.step) == 1
    expected = {"d_loss", "g_loss"} | ({"wasserstein"} if model.startswith("wgan") else set()) \
        | ({"gp"} if model == "wgan-gp" else set())
    assert set(metrics) == expected
    assert all(np.isfinite(float(v)) and np.shape(v) == () for v in metrics.values())
    # parameters keep their shapes and both players actually moved
    for before, after in zip(leaves(state), leaves(new)):
        assert before.shape == after.shape
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(state.g_params), leaves(new.g_params)))
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(state.d_params), leaves(new.d_params)))


def test_wgan_clipping_bounds_every_critic_parameter():
    # a large step size pushes weights far outside the box unless clipping acts
    cfg = tiny("wgan", lr=0.5)
    state = init_state(cfg)
    assert max(np.abs(x).max() for x in leaves(state.d_params)) > 0.01  # N(0, 0.02) init exceeds it
    new, _ = jax.jit(make_fit_step(cfg))(state, jax.numpy.asarray(ring_data()))
    values = np.concatenate([x.ravel() for x in leaves(new.d_params)])
    assert np.abs(values).max() <= np.float32(0.01)
    assert np.mean(np.isclose(np.abs(values), 0.01)) > 0.5  # most sit on the bound: clipping is active
    # without clipping the same update leaves the box
    unclipped = dataclasses.replace(cfg, model="gan", clip=0.0, n_critic=1, simultaneous=False)
    free, _ = jax.jit(make_fit_step(unclipped))(init_state(unclipped), jax.numpy.asarray(ring_data()))
    assert max(np.abs(x).max() for x in leaves(free.d_params)) > 0.1


def test_pacgan_step_draws_m_samples_per_discriminator_input():
    """The step samples an (n_critic, m, batch) index block: m x batch real samples per update."""
    cfg = tiny("pacgan3", batch_size=4)
    data = jax.numpy.asarray(ring_data())
    captured = {}

    from otgen.training import steps as steps_mod  # where make_fit_step looks make_train_step up
    inner = steps_mod.make_train_step(cfg)

    def spy(state, real, key):
        captured["shape"] = real.shape
        return inner(state, real, key)

    orig = steps_mod.make_train_step
    steps_mod.make_train_step = lambda c: spy
    try:
        jax.eval_shape(make_fit_step(cfg), init_state(cfg), data)  # traces the step, no compilation
    finally:
        steps_mod.make_train_step = orig
    assert captured["shape"] == (1, 3, 4, 2)


def test_resume_reaches_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    data = ring_data()
    for model in ("wgan-gp", "pacgan2"):
        full = train_gan(tiny(model, steps=20), data, tmp_path / f"{model}-full", checkpoint_every=10,
                         progress=False)
        # "interrupted" after 10 steps, then resumed with the full budget
        train_gan(tiny(model, steps=10), data, tmp_path / f"{model}-part", checkpoint_every=10, progress=False)
        resumed = train_gan(tiny(model, steps=20), data, tmp_path / f"{model}-part", resume=True,
                            checkpoint_every=10, progress=False)
        assert int(resumed.state.step) == 20
        for a, b in zip(leaves(full.state), leaves(resumed.state)):
            np.testing.assert_array_equal(a, b)
        assert resumed.history == full.history
        key = jax.random.key(7)
        np.testing.assert_array_equal(full.sample(key, 50), resumed.sample(key, 50))


def test_run_dir_outputs_and_reload(tmp_path):
    cfg = tiny("gan", steps=10)
    result = train_gan(cfg, ring_data(), tmp_path, checkpoint_every=5, progress=False)
    assert (tmp_path / CHECKPOINT_NAME).exists() and (tmp_path / LOSS_PLOT_NAME).exists()
    assert result.history["step"] == [5, 10]
    _, meta = load_pytree(tmp_path / CHECKPOINT_NAME)
    assert meta["model"] == "gan" and meta["step"] == 10
    assert meta["config"]["lr"] == cfg.lr and meta["config"]["beta1"] == 0.8
    samples = result.sample(jax.random.key(1), 3000)  # more than one sampling chunk
    assert samples.shape == (3000, 2) and np.all(np.isfinite(samples))
    np.testing.assert_array_equal(samples, result.sample(jax.random.key(1), 3000))
    reloaded = load_gan(tmp_path, cfg)
    np.testing.assert_array_equal(reloaded.sample(jax.random.key(1), 3000), samples)


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    a = train_gan(tiny("gan", steps=5), ring_data(), tmp_path / "a", progress=False)
    b = train_gan(tiny("gan", steps=5), ring_data(), tmp_path / "b", progress=False)
    c = train_gan(tiny("gan", steps=5, seed=1), ring_data(), tmp_path / "c", progress=False)
    assert all(np.array_equal(x, y) for x, y in zip(leaves(a.state.g_params), leaves(b.state.g_params)))
    assert not all(np.array_equal(x, y) for x, y in zip(leaves(a.state.g_params), leaves(c.state.g_params)))


def test_checkpoint_from_another_model_config_or_data_is_refused(tmp_path):
    data = ring_data()
    train_gan(tiny("gan", steps=5), data, tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="model 'gan', not 'wgan'"):
        train_gan(tiny("wgan", steps=5), data, tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="lr: checkpoint 0.0001 vs now 0.0002"):
        train_gan(tiny("gan", steps=5, lr=2e-4), data, tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="different data"):
        train_gan(tiny("gan", steps=5), data + 1.0, tmp_path, resume=True, progress=False)
    # the budget may grow: same config with more steps continues
    more = train_gan(tiny("gan", steps=10), data, tmp_path, resume=True, progress=False)
    assert int(more.state.step) == 10


def test_nan_loss_stops_training_without_a_nan_checkpoint(tmp_path):
    cfg = tiny("gan", steps=50, lr=1e30)  # an absurd step size overflows within a few steps
    with pytest.raises(TrainingDivergedError, match="non-finite loss at step"):
        train_gan(cfg, ring_data(), tmp_path, checkpoint_every=1, progress=False)
    path = tmp_path / CHECKPOINT_NAME
    if path.exists():  # whatever was saved before the blow-up is finite
        flat, meta = load_pytree(path)
        assert meta["step"] < 50
        floats = [v for v in flat.values() if jax.numpy.issubdtype(v.dtype, jax.numpy.floating)]
        assert floats and all(np.all(np.isfinite(v)) for v in floats)


def test_bad_configs_and_data_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="model must be one of"):
        GANConfig.for_toy("vae")
    with pytest.raises(ValueError, match="wgan needs clip > 0"):
        GANConfig.for_toy("wgan", clip=0.0)
    with pytest.raises(ValueError, match="simultaneous updates need n_critic == 1"):
        GANConfig.for_toy("gan", n_critic=5)
    with pytest.raises(ValueError, match="shape"):
        train_gan(tiny("gan"), np.zeros((10, 3)), tmp_path, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        train_gan(tiny("gan"), np.full((10, 2), np.nan), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_gan(GANConfig.for_mnist("gan", steps=1), np.full((4, 28, 28), 255.0), tmp_path, progress=False)


def test_published_hyperparameters():
    gan, wgan, gp = (GANConfig.for_toy(m) for m in ("pacgan2", "wgan", "wgan-gp"))
    assert (gan.optimizer, gan.lr, gan.beta1, gan.batch_size, gan.n_critic) == ("adam", 1e-4, 0.8, 100, 1)
    assert (gan.g_hidden, gan.g_layers, gan.d_hidden, gan.maxout_pieces, gan.noise_dim) == (400, 4, 200, 5, 2)
    assert (wgan.optimizer, wgan.lr, wgan.clip, wgan.n_critic) == ("rmsprop", 5e-5, 0.01, 5)
    assert (gp.optimizer, gp.lr, gp.beta1, gp.beta2, gp.gp_lambda, gp.n_critic) == ("adam", 1e-4, 0.5, 0.9, 10.0, 5)
    assert GANConfig.for_toy("gan", batch_size=500).batch_size == 500


@pytest.mark.heavy
def test_stacked_preset_resumes_bit_for_bit_and_makes_two_generator_updates(tmp_path):
    """PacGAN's Stacked-MNIST setting (uniform noise, two G updates per iteration, batch-norm D) at a
    tiny width: a resumed run equals an uninterrupted one, and an iteration is one D + two G updates."""
    images = np.random.default_rng(0).uniform(size=(32, 28, 28, 3)).astype(np.float32)
    cfg = GANConfig.for_mnist("pacgan2", steps=4, preset="stacked", sample_shape=(28, 28, 3), batch_size=4,
                              conv_dim=2, log_every=1)
    full = train_gan(cfg, images, tmp_path / "full", checkpoint_every=2, progress=False)
    train_gan(dataclasses.replace(cfg, steps=2), images, tmp_path / "part", checkpoint_every=2, progress=False)
    resumed = train_gan(cfg, images, tmp_path / "part", resume=True, checkpoint_every=2, progress=False)
    assert int(full.state.step) == int(resumed.state.step) == 4
    for a, b in zip(leaves(full.state), leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)
    x = full.sample(jax.random.key(0), 5)
    assert x.shape == (5, 28, 28, 3) and x.min() >= 0.0 and x.max() <= 1.0
    # Adam's step count in the generator's optimiser state: 2 updates per iteration (the critic's: 1)
    counts = lambda opt: {int(np.asarray(c)) for c in jax.tree_util.tree_leaves(opt)  # noqa: E731
                          if np.asarray(c).dtype == np.int32 and np.asarray(c).ndim == 0}
    assert counts(full.state.g_opt) == {8} and counts(full.state.d_opt) == {4}
    with pytest.raises(ValueError, match="trains"):
        GANConfig.for_mnist("wgan-gp", preset="stacked")
    with pytest.raises(ValueError, match="image preset"):
        GANConfig.for_mnist("gan", preset="nope")


@pytest.mark.slow  # the default suite trains a tiny MNIST pacgan2 through `otgen mnist` (test_mnist_pipeline)
def test_mnist_pacgan_trains_and_samples_images(tmp_path):
    cfg = GANConfig.for_mnist("pacgan2", steps=2, batch_size=4, conv_dim=4, log_every=1)
    images = np.random.default_rng(0).uniform(size=(16, 28, 28, 1)).astype(np.float32)
    result = train_gan(cfg, images, tmp_path, progress=False)
    assert all(np.isfinite(v).all() for v in result.history.values())
    x = result.sample(jax.random.key(0), 5)
    assert x.shape == (5, 28, 28, 1) and x.min() >= 0.0 and x.max() <= 1.0


@pytest.mark.slow
def test_pacgan2_learns_the_pacgan_ring_with_published_settings(tmp_path):
    """End to end (about 1-2 min on 2 cores): published 2-D settings, 3000 steps, seed 0.

    Measured with scripts/bench_gan.py --coverage: 8/8 modes, 46% high-quality samples.
    The bounds below leave room for other BLAS/CPU numerics.
    """
    from otgen.eval.modes import mode_coverage

    t = 2 * np.pi * np.arange(8) / 8
    centres, std = np.stack([np.cos(t), np.sin(t)], 1), 0.01
    rng = np.random.default_rng(0)
    data = (centres[rng.integers(0, 8, 100_000)] + std * rng.standard_normal((100_000, 2))).astype(np.float32)
    result = train_gan(GANConfig.for_toy("pacgan2", steps=3000, seed=0), data, tmp_path, progress=False)
    m = mode_coverage(result.sample(jax.random.key(12345), 2500), centres, std)
    assert m["modes_captured"] >= 6
    assert m["high_quality_fraction"] > 0.2


def test_batch_norm_refresh_converges_to_the_closed_form_statistics_of_the_first_layer():
    from otgen.training import refreshed_batch_stats

    cfg = GANConfig.for_toy("pacgan2", preset="published", steps=10)
    state = init_state(cfg)
    state = state.replace(g_stats=jax.tree_util.tree_map(lambda x: 0 * x + 5.0, state.g_stats))  # far off
    stats = refreshed_batch_stats(cfg, state, 400)  # 0.95^400: the start is forgotten
    # layer 1 is bias-free Dense on z ~ N(0, I): pre-activation mean 0, variance |w_k|^2; flax keeps the
    # biased batch variance, (B - 1) / B of it.  The 2-d noise correlates all units, so the EMA's error
    # (~1.6%, about 78 effective batches of 100) does not average out over units: 4 sigma.
    w = np.asarray(state.g_params["Dense_0"]["kernel"])
    var = (w ** 2).sum(axis=0) * (cfg.batch_size - 1) / cfg.batch_size
    ratio = np.asarray(stats["BatchNorm_0"]["var"]) / var
    assert abs(ratio.mean() - 1) < 0.065 and ratio.min() > 0.85 and ratio.max() < 1.15
    assert np.max(np.abs(np.asarray(stats["BatchNorm_0"]["mean"])) / np.sqrt(var)) < 0.05
    assert refreshed_batch_stats(cfg, state, 0) is state.g_stats
    with pytest.raises(ValueError, match="eval_bn_refresh"):
        dataclasses.replace(cfg, eval_bn_refresh=-1)


def test_sampling_uses_the_refreshed_stats_and_checkpoints_load_under_either_protocol(tmp_path):
    from otgen.training import refreshed_batch_stats
    from otgen.training.sampling import _sampler_for

    data = np.random.default_rng(0).standard_normal((200, 2)).astype(np.float32)
    ema = GANConfig.for_toy("gan", steps=20, g_hidden=16, g_layers=2, d_hidden=8, batch_size=16, log_every=10)
    train_gan(ema, data, tmp_path, progress=False)
    refreshed = dataclasses.replace(ema, eval_bn_refresh=50)
    a, b = load_gan(tmp_path, ema), load_gan(tmp_path, refreshed)  # the protocol is not a training field
    key = jax.random.key(3)
    want = np.asarray(_sampler_for(refreshed)(b.state.g_params, refreshed_batch_stats(refreshed, b.state),
                                            jax.random.fold_in(key, 0), 7))  # sample's chunk 0
    np.testing.assert_array_equal(b.sample(key, 7), want)
    assert not np.allclose(a.sample(key, 100), b.sample(key, 100))
    np.testing.assert_array_equal(b.sample(key, 100), b.sample(key, 100))  # deterministic


def test_a_carry_checkpoint_resumes_the_run_near_the_uninterrupted_one_and_says_so(tmp_path):
    # nets wide enough that their kernels take the lossy codecs (small arrays stay exact)
    cfg = lambda steps: tiny("gan", steps=steps, g_hidden=64, d_hidden=32, beta1=0.5, lr=1e-3)  # noqa: E731
    data = ring_data()
    half = train_gan(cfg(10), data, tmp_path / "full", checkpoint_every=10, progress=False)
    half_g = leaves(half.state.g_params)
    full = train_gan(cfg(20), data, tmp_path / "full", resume=True, checkpoint_every=10, progress=False)

    train_gan(cfg(10), data, tmp_path / "carried", checkpoint_every=10, progress=False)
    carry = save_carry(tmp_path / "carried", cfg(10))
    assert carry.stat().st_size < 0.4 * (tmp_path / "carried" / CHECKPOINT_NAME).stat().st_size
    assert set(load_codecs(carry).values()) == {"bf16", "int4", "log8"}  # beta1 0.5: the first moment in 4 bits
    (tmp_path / "carried" / CHECKPOINT_NAME).unlink()
    resumed = train_gan(cfg(20), data, tmp_path / "carried", resume=True, checkpoint_every=10, progress=False)
    assert int(resumed.state.step) == 20
    assert load_pytree(tmp_path / "carried" / CHECKPOINT_NAME)[1]["carried"] == [{"step": 10}]
    assert resumed.history["step"] == full.history["step"]
    # not bit for bit, but far closer to the uninterrupted run than the ten steps moved it (measured here:
    # 0.12 of it; 0.19 with the first moment dropped, 0.03 with it in 8 bits)
    a, b = np.concatenate([x.ravel() for x in leaves(full.state.g_params)]), \
        np.concatenate([x.ravel() for x in leaves(resumed.state.g_params)])
    moved = np.linalg.norm(a - np.concatenate([x.ravel() for x in half_g]))
    assert 0 < np.linalg.norm(a - b) < 0.25 * moved


def test_a_resume_takes_the_checkpoint_that_is_further_on(tmp_path):
    cfg = lambda steps: tiny("gan", steps=steps, g_hidden=64)  # noqa: E731
    data = ring_data()
    train_gan(cfg(10), data, tmp_path, checkpoint_every=5, progress=False)
    save_carry(tmp_path, cfg(10))
    older = train_gan(cfg(5), data, tmp_path / "older", checkpoint_every=5, progress=False)
    save_gan(older, tmp_path)  # the exact checkpoint is now behind the carry (step 5 < 10)
    assert int(load_gan(tmp_path, cfg(10)).state.step) == 10
    resumed = train_gan(cfg(15), data, tmp_path, resume=True, checkpoint_every=5, progress=False)
    assert load_pytree(tmp_path / CHECKPOINT_NAME)[1]["carried"] == [{"step": 10}]
    assert int(resumed.state.step) == 15
    with pytest.raises(CheckpointError, match="nothing to carry"):
        save_carry(tmp_path / "none", cfg(10))


@pytest.mark.parametrize("same_noise", [True, False])
def test_same_noise_feeds_the_critic_the_generator_updates_draw(monkeypatch, same_noise):
    """PacGAN's Stacked-MNIST loop feeds one z to its D update and both G updates (same_noise); otherwise
    the critic draws its own."""
    import otgen.training.steps as steps_mod

    seen = []
    real_generate = steps_mod.generate_in_training_mode

    def spy(g_net, g_params, g_stats, z):  # traced under jit: the draws come back in program order
        jax.debug.callback(lambda v: seen.append(np.asarray(v)), z, ordered=True)
        return real_generate(g_net, g_params, g_stats, z)

    monkeypatch.setattr(steps_mod, "generate_in_training_mode", spy)
    cfg = tiny("gan", simultaneous=False, g_updates=2, same_noise=same_noise)
    jax.block_until_ready(make_fit_step(cfg)(init_state(cfg), jax.numpy.asarray(ring_data())))
    jax.effects_barrier()
    critic, *generator = seen
    assert len(generator) == 2 and np.array_equal(generator[0], generator[1])
    assert np.array_equal(critic, generator[0]) == same_noise
    with pytest.raises(ValueError, match="same_noise"):
        tiny("gan", same_noise=True)  # simultaneous updates have one draw already
