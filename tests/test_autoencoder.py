"""The convolutional autoencoder: shapes, ranges, batching, learning, and exact resume.

All randomness comes from fixed seeds, so every run of these tests is identical.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from otgen.checkpoint import load_pytree, save_pytree
from otgen.training.autoencoder import fit_autoencoder
from otgen.models.autoencoder import (AEConfig, Autoencoder, ae_loss, decode_batched, encode_batched,
                                      init_train_state, make_autoencoder, reconstruction_mse)

CFG = AEConfig(latent_dim=5, features=(4, 8), hidden=16)


def blobs(n=64, seed=0):
    """Synthetic 'digits': one bright Gaussian blob per image at a random place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    c = rng.uniform(8, 20, (n, 2))
    img = np.exp(-((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2) / 18.0)
    return img[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def model_and_params():
    model = make_autoencoder(CFG)
    state = init_train_state(jax.random.key(0), model, optax.adam(1e-3))
    return model, state.params


@pytest.mark.parametrize("features,latent", [((4, 8), 5), ((6,), 3)])
def test_encode_decode_shapes_and_range(features, latent):
    model = make_autoencoder(AEConfig(latent_dim=latent, features=features, hidden=8))
    params = init_train_state(jax.random.key(1), model, optax.adam(1e-3)).params
    x = blobs(7)
    z = model.apply({"params": params}, x, method=Autoencoder.encode)
    assert z.shape == (7, latent)
    y = model.apply({"params": params}, z, method=Autoencoder.decode)
    assert y.shape == (7, 28, 28, 1)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    logits, z2 = model.apply({"params": params}, x)
    np.testing.assert_allclose(z2, z, rtol=1e-6)
    np.testing.assert_allclose(jax.nn.sigmoid(logits), y, rtol=1e-5, atol=1e-6)


def test_batched_equals_unbatched(model_and_params):
    model, params = model_and_params
    x = blobs(23)  # not a multiple of the batch size: exercises the zero padding
    z_full = np.asarray(model.apply({"params": params}, x, method=Autoencoder.encode))
    z_b = encode_batched(model, params, x[..., 0], batch_size=10)  # (n, 28, 28) is accepted too
    np.testing.assert_allclose(z_b, z_full, rtol=1e-5, atol=1e-6)
    y_full = np.asarray(model.apply({"params": params}, z_full, method=Autoencoder.decode))
    np.testing.assert_allclose(decode_batched(model, params, z_b, batch_size=10), y_full, rtol=1e-5, atol=1e-6)


def test_bce_loss_matches_closed_form(model_and_params):
    model, params = model_and_params
    x = blobs(3)
    logits, _ = model.apply({"params": params}, x)
    p = jax.nn.sigmoid(logits)
    want = -jnp.mean(x * jnp.log(p) + (1 - x) * jnp.log(1 - p))
    loss, mse = ae_loss(params, model, x, CFG)
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(mse, jnp.mean((p - x) ** 2), rtol=1e-5)


def test_l1_penalty_adds_mean_abs_code(model_and_params):
    model, params = model_and_params
    x = blobs(3)
    z = model.apply({"params": params}, x, method=Autoencoder.encode)
    base, _ = ae_loss(params, model, x, AEConfig(5, (4, 8), 16, loss="mse"))
    pen, _ = ae_loss(params, model, x, AEConfig(5, (4, 8), 16, loss="mse", l1=0.5))
    np.testing.assert_allclose(pen - base, 0.5 * jnp.mean(jnp.abs(z)), rtol=1e-4)


def test_training_reduces_reconstruction_error():
    model = make_autoencoder(CFG)
    opt = optax.adam(3e-3)
    x = blobs(128)
    state = init_train_state(jax.random.key(0), model, opt)
    before = reconstruction_mse(model, state.params, x)
    state, hist = fit_autoencoder(jax.random.key(1), x, model, opt, CFG, state, epochs=8, batch_size=32,
                                  progress=False)
    after = reconstruction_mse(model, state.params, x)
    assert int(state.step) == 8 * 4
    assert [h["epoch"] for h in hist] == list(range(1, 9))
    assert after < 0.5 * before


def test_resume_from_checkpoint_is_exact(tmp_path):
    """Train 3 epochs straight vs. 1 epoch, checkpoint, reload, 2 more: identical parameters."""
    model = make_autoencoder(CFG)
    opt = optax.adam(1e-3)
    x = blobs(64)
    key = jax.random.key(3)
    init = init_train_state(jax.random.key(0), model, opt)
    straight, _ = fit_autoencoder(key, x, model, opt, CFG, init, epochs=3, batch_size=16, progress=False)

    part, _ = fit_autoencoder(key, x, model, opt, CFG, init, epochs=1, batch_size=16, progress=False)
    save_pytree(tmp_path / "ae.npz", part, {"epoch": 1})
    loaded, meta = load_pytree(tmp_path / "ae.npz", like=init)
    resumed, _ = fit_autoencoder(key, x, model, opt, CFG, loaded, epochs=3, batch_size=16,
                                 start_epoch=meta["epoch"], progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("kwargs,msg", [
    ({"latent_dim": 0}, "latent_dim"),
    ({"features": (4, 8, 16)}, "features"),
    ({"loss": "l2"}, "loss"),
    ({"l1": -1.0}, "l1"),
    ({"channels": 0}, "channels"),
])
def test_bad_config(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        AEConfig(**kwargs)


def test_colour_images_round_trip_their_channels():
    """channels=3 (Stacked MNIST): codes from RGB images, RGB images from codes; grey input is refused."""
    model = make_autoencoder(AEConfig(latent_dim=5, features=(4, 8), hidden=8, channels=3))
    params = init_train_state(jax.random.key(1), model, optax.adam(1e-3)).params
    x = np.concatenate([blobs(4)] * 3, axis=-1)
    z = encode_batched(model, params, x, batch_size=3)
    assert z.shape == (4, 5)
    y = decode_batched(model, params, z, batch_size=3)
    assert y.shape == (4, 28, 28, 3) and 0.0 <= y.min() and y.max() <= 1.0
    with pytest.raises(ValueError, match="expected images"):
        encode_batched(model, params, blobs(4))


def test_decode_rejects_wrong_code_dim(model_and_params):
    model, params = model_and_params
    with pytest.raises(ValueError, match="codes"):
        decode_batched(model, params, np.zeros((2, 7), np.float32))
