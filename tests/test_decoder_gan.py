"""The decoder GAN (AE-OT-GAN's second stage): resumes exactly, refuses another configuration, checks input."""

import jax
import numpy as np
import pytest

from otgen.checkpoint import CheckpointError
from otgen.models.autoencoder import AEConfig, decode_batched, init_train_state, make_autoencoder
from otgen.training.decoder_gan import PARAMS_FILE, STATE_FILE, DecoderGANConfig, finetune_decoder, load_finetuned

AE = AEConfig(latent_dim=4, features=(4,), hidden=16)


def _problem(n=64):
    model = make_autoencoder(AE)
    import optax

    params = init_train_state(jax.random.key(0), model, optax.adam(1e-3)).params
    rng = np.random.default_rng(0)
    images = (rng.random((n, 28, 28, 1)) < 0.2).astype(np.float32)
    codes = rng.normal(size=(n, 4)).astype(np.float32)
    generated = rng.normal(size=(3 * n, 4)).astype(np.float32)
    return model, params, codes, images, generated


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_resume_continues_as_the_uninterrupted_run(tmp_path):
    model, params, codes, images, generated = _problem()
    cfg = DecoderGANConfig(steps=6, batch_size=16, d_dim=4, checkpoint_every=3)
    whole, rec = finetune_decoder(model, params, codes, images, generated, cfg, tmp_path / "a", progress=False)
    # the same run stopped after 3 steps (its checkpoint), then resumed to 6
    finetune_decoder(model, params, codes, images, generated, DecoderGANConfig(**{**cfg.__dict__, "steps": 3}),
                     tmp_path / "b", progress=False)
    resumed, _ = finetune_decoder(model, params, codes, images, generated, cfg, tmp_path / "b", progress=False)
    for a, b in zip(_leaves(whole), _leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "a" / STATE_FILE).exists() and (tmp_path / "a" / PARAMS_FILE).exists()
    # the encoder is untouched, the decoder moved
    for a, b in zip(_leaves(params["encoder"]), _leaves(whole["encoder"])):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(_leaves(params["decoder"]), _leaves(whole["decoder"])))
    assert rec["steps"] == 6 and rec["content_weight"] == cfg.content_weight
    # the finished result is read back, and only for the configuration that made it
    again, rec_again = load_finetuned(tmp_path / "a", params, cfg)
    for a, b in zip(_leaves(whole), _leaves(again)):
        np.testing.assert_array_equal(a, b)
    assert rec_again["steps"] == 6
    assert load_finetuned(tmp_path / "a", params, DecoderGANConfig(**{**cfg.__dict__, "steps": 7})) is None
    assert load_finetuned(tmp_path / "nothing", params, cfg) is None
    # a state further on than asked is refused, not returned as the shorter run
    with pytest.raises(ValueError, match="past the 3 asked"):
        finetune_decoder(model, params, codes, images, generated, DecoderGANConfig(**{**cfg.__dict__, "steps": 3}),
                         tmp_path / "a", progress=False)


def test_content_loss_alone_fits_the_pairs(tmp_path):
    # with the discriminator's pull negligible the decoder learns the pairs: one pattern for every code
    model, params, codes, images, generated = _problem(32)
    images = np.broadcast_to(images[:1], images.shape).copy()
    cfg = DecoderGANConfig(steps=300, batch_size=32, d_dim=4, content_weight=1e4, learning_rate=3e-3)
    tuned, rec = finetune_decoder(model, params, codes, images, generated, cfg, progress=False)
    before = np.mean((decode_batched(model, params, codes) - images) ** 2)
    after = np.mean((decode_batched(model, tuned, codes) - images) ** 2)
    assert before > 0.1 and after < 0.02 * before, (before, after)
    assert rec["history"]["content_bce"][-1] < rec["history"]["content_bce"][0]


def test_another_configuration_is_refused_and_bad_input_named(tmp_path):
    model, params, codes, images, generated = _problem()
    cfg = DecoderGANConfig(steps=2, batch_size=16, d_dim=4)
    finetune_decoder(model, params, codes, images, generated, cfg, tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="content_weight"):
        finetune_decoder(model, params, codes, images, generated, DecoderGANConfig(steps=4, batch_size=16, d_dim=4,
                                                                                   content_weight=1.0),
                         tmp_path, progress=False)
    with pytest.raises(ValueError, match="one per code"):
        finetune_decoder(model, params, codes, images[:10], generated, cfg, progress=False)
    bad = generated.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        finetune_decoder(model, params, codes, images, bad, cfg, progress=False)
    with pytest.raises(ValueError, match="content_weight"):
        DecoderGANConfig(content_weight=-1)
