"""Flow matching: couplings of known answer, ODE orders, a Gaussian recovered, resume, the toy run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from otgen.checkpoint import CheckpointError
from otgen.eval.modes import mode_coverage
from otgen.generators import make
from otgen.models.ode import integrate, nfe
from otgen.ot import Gaussian, SemiDiscreteOT
from otgen.ot.couplings import minibatch_ot_permutation, semidiscrete_pairs


def test_minibatch_ot_recovers_a_permutation_of_a_copy():
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(64, 3))
    perm = rng.permutation(64)
    x1 = x0[perm]  # x1[j] = x0[perm[j]]: the optimal pairing sends x0[i] to x1[inverse(perm)[i]]
    got = minibatch_ot_permutation(x0, x1)
    np.testing.assert_array_equal(x1[got], x0)


def test_minibatch_ot_rejects_unequal_batches():
    with pytest.raises(ValueError, match="equal shape"):
        minibatch_ot_permutation(np.zeros((4, 2)), np.zeros((5, 2)))


def test_semidiscrete_coupling_sends_each_point_to_its_power_cell():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(50, 3)).astype(np.float32)
    bmap = SemiDiscreteOT(Gaussian(3), y).fit(jax.random.key(0), tol=0.05, max_steps=5, warn=False, progress=False)
    x = np.asarray(jax.random.normal(jax.random.key(1), (2000, 3)))
    # independent: the argmax of <x, y_i> + h_i in float64 numpy
    h = np.asarray(bmap.h, np.float64)
    want = y[np.argmax(x.astype(np.float64) @ y.T.astype(np.float64) + h, axis=1)]
    np.testing.assert_array_equal(np.asarray(semidiscrete_pairs(bmap, x)), want)


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_ode_solver_order_on_a_linear_field(method, order):
    a = np.array([[0.0, 1.0], [-1.0, -0.3]])
    x0 = np.array([[1.0, 0.5]])
    exact = x0 @ __import__("scipy").linalg.expm(a).T

    def err(steps):
        with jax.enable_x64(True):  # RK4's error at 16 steps is below float32's resolution
            x1 = integrate(lambda x, t: x @ jnp.asarray(a).T, jnp.asarray(x0), steps=steps, method=method)
            return float(np.abs(np.asarray(x1) - exact).max())

    ratio = err(8) / err(16)
    assert 2 ** order * 0.8 < ratio < 2 ** order * 1.25, ratio
    assert nfe(16, method) == 16 * {"euler": 1, "midpoint": 2, "rk4": 4}[method]


def test_ode_solver_rejects_bad_settings():
    with pytest.raises(ValueError, match="method"):
        integrate(lambda x, t: x, jnp.zeros((1, 1)), steps=2, method="heun")
    with pytest.raises(ValueError, match="steps"):
        integrate(lambda x, t: x, jnp.zeros((1, 1)), steps=0)


@pytest.mark.parametrize("model", ["fm"])  # otcfm's pairing is checked above; its flow costs 2x the time
def test_flow_recovers_a_gaussian(model):
    mean = np.array([3.0, -1.0])
    cov = np.array([[2.0, 0.8], [0.8, 0.5]])
    data = np.random.default_rng(2).multivariate_normal(mean, cov, size=4000).astype(np.float32)
    gen = make(model, "toy", shape=(2,), steps=1500, progress=False, width=64).fit(data, jax.random.key(0))
    x = gen.sample(jax.random.key(1), 20_000).astype(np.float64)
    # tolerances: the fit's error, far above the 20,000 samples' noise (~0.01 on the mean)
    np.testing.assert_allclose(x.mean(0), mean, atol=0.08)
    np.testing.assert_allclose(np.cov(x, rowvar=False), cov, atol=0.12, rtol=0.08)


def test_resume_equals_an_uninterrupted_fit(tmp_path):
    data = np.random.default_rng(3).normal(size=(500, 2)).astype(np.float32)
    kw = dict(shape=(2,), progress=False, width=32, batch_size=64)
    straight = make("otcfm", "toy", steps=600, **kw).fit(data, jax.random.key(0), tmp_path / "a")
    make("otcfm", "toy", steps=350, **kw).fit(data, jax.random.key(0), tmp_path / "b")  # "killed" at 350
    resumed = make("otcfm", "toy", steps=600, **kw).fit(data, jax.random.key(0), tmp_path / "b")
    for a, b in zip(jax.tree_util.tree_leaves(straight.state.params), jax.tree_util.tree_leaves(resumed.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(resumed.state.step) == 600
    with pytest.raises(CheckpointError, match="lr"):
        make("otcfm", "toy", steps=700, lr=1e-4, **kw).fit(data, jax.random.key(0), tmp_path / "b")
    with pytest.raises(CheckpointError, match="different data"):
        make("otcfm", "toy", steps=700, **kw).fit(data + 1, jax.random.key(0), tmp_path / "b")


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="angle_threshold"):
        make("fm", "toy", shape=(2,), angle_threshold=0.1)
    with pytest.raises(ValueError, match="ode_method"):
        make("fm", "toy", shape=(2,), ode_method="dopri5")
    with pytest.raises(ValueError, match="vectors"):
        make("fm", "images", shape=(28, 28, 1))
    with pytest.raises(ValueError, match="not trained"):
        make("fm", "toy", shape=(2,)).sample(jax.random.key(0), 3)


def test_between_modes_fraction_counts_samples_off_every_mode():
    centres = np.array([[0.0, 0.0], [1.0, 0.0]])
    on = np.array([[0.0, 0.0], [1.0, 0.01]])
    between = np.array([[0.5, 0.0], [0.5, 0.3]])
    scores = mode_coverage(np.concatenate([on, between, [[np.nan, 0.0]]]), centres, 0.01)
    assert scores["between_modes_fraction"] == pytest.approx(2 / 5)
    assert scores["high_quality_fraction"] + scores["between_modes_fraction"] + scores["nonfinite_fraction"] == 1


def test_toy_run_of_a_flow_records_bridges_against_ode_steps(tmp_path):
    from otgen.pipelines.toy import ODE_SWEEP, ToyRunConfig, run

    out = tmp_path / "sdfm"
    metrics = run(ToyRunConfig(model="sdfm", dist="ring8", out=str(out), steps=300, n_train=400, n_samples=500,
                               progress=False))
    assert [r["ode_steps"] for r in metrics["ode_sweep"]] == list(ODE_SWEEP)
    assert metrics["nfe"] == 4 * metrics["ode_steps"]
    assert 0.0 <= metrics["between_modes_fraction"] <= 1.0
    assert metrics["ot_converged"] and metrics["coupling"] == "sdfm"
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["flow"]["model"] == "sdfm"
    for name in ("checkpoint.npz", "brenier.npz", "samples.png", "curves.json"):
        assert (out / name).exists(), name
    with pytest.raises(ValueError, match="ode-steps"):
        ToyRunConfig(model="gan", out=str(tmp_path / "g"), ode_steps=4)
