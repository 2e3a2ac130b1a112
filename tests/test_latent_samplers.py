"""Ex-post latent densities (otgen.generators.latent) and the ablation report's table."""

import jax
import numpy as np
import pytest

from experiments.ablation_report import write_report
from experiments.ablation_rows import CONTROL_ROWS, SAMPLER_ROWS
from otgen.generators.latent import GaussianCodes, KernelCodes, LocalCodes, MixtureCodes, make_sampler


def _codes(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[-4.0, 0.0, 1.0], [4.0, 1.0, -1.0]])
    return centres[rng.integers(0, 2, n)] + rng.normal(0, 0.5, (n, 3))


def test_gaussian_matches_the_codes_moments():
    z = _codes()
    x = GaussianCodes().fit(z).sample(jax.random.key(1), 200_000)
    np.testing.assert_allclose(x.mean(0), z.mean(0), atol=0.03)
    np.testing.assert_allclose(np.cov(x, rowvar=False), np.cov(z, rowvar=False), atol=0.06)


def test_mixture_recovers_separated_clusters_and_keeps_the_gap_empty():
    z = _codes()
    x = MixtureCodes(2).fit(z, jax.random.key(0)).sample(jax.random.key(1), 20_000)
    assert np.mean(np.abs(x[:, 0]) < 1.5) < 0.001  # 5 std of empty gap: a 2-component fit puts nothing there
    assert abs(np.mean(x[:, 0] > 0) - np.mean(z[:, 0] > 0)) < 0.02
    # the samples are shuffled, not grouped by component as scikit-learn returns them
    assert 0.3 < np.mean(x[:100, 0] > 0) < 0.7


def test_kde_chooses_an_interior_bandwidth_by_held_out_likelihood():
    z = _codes()
    kde = KernelCodes().fit(z, jax.random.key(0))
    best = max(kde.scores, key=kde.scores.get)
    assert kde.bandwidths[0] < best < kde.bandwidths[-1]
    x = kde.sample(jax.random.key(2), 5000)
    # each sample is a code plus noise of about the bandwidth: near the data, never on it
    d = np.min(np.linalg.norm(x[:500, None] - z[None], axis=2), axis=1)
    assert d.min() > 0 and np.median(d) < 1.0


@pytest.mark.parametrize("iso", [0.0, 1.0])
def test_local_windows_sit_as_far_from_the_codes_as_fresh_draws_do(iso):
    """Independent check of the calibration: fresh draws of the codes' own distribution (not the codes'
    leave-one-out distances the fit used) are as far from the codes as the samples are, with the local
    covariance or its isotropic form."""
    from otgen.ot.spacing import nearest_targets
    from otgen.stats import mann_whitney_z

    z = _codes(3000).astype(np.float32)
    local = LocalCodes(iso).fit(z, jax.random.key(0))
    x = local.sample(jax.random.key(1), 3000)
    fresh = _codes(3000, seed=9).astype(np.float32)
    assert abs(mann_whitney_z(nearest_targets(x, z)[1], nearest_targets(fresh, z)[1])) < 4
    assert np.mean(np.abs(x[:, 0]) < 1.5) < 0.002  # the local covariance keeps samples in their cluster
    assert local.info()["local_k"] == 16 and 0 < local.scale < 4


def test_samplers_reject_bad_codes_and_are_reproducible():
    with pytest.raises(ValueError, match="codes"):
        GaussianCodes().fit(np.array([[np.nan, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="components"):
        MixtureCodes(0)
    for bad in ("gmm0", "gmm", "kde@0", "kde@x", "flow", "local-iso2", "local-isox"):
        with pytest.raises(ValueError, match="unknown latent sampler"):
            make_sampler(bad)
    z = _codes(500)
    for name in ("gaussian", "gmm10", "kde", "kde@0.5", "local", "local-iso0.5"):
        s = make_sampler(name).fit(z, jax.random.key(0))
        assert s.name == name
        np.testing.assert_array_equal(s.sample(jax.random.key(3), 50), s.sample(jax.random.key(3), 50))
    # the scaled KDE keeps the held-out choice and scales it
    assert make_sampler("kde@0.5").fit(z, jax.random.key(0)).h == pytest.approx(0.5 * KernelCodes().fit(z, jax.random.key(0)).h)


def test_report_lists_controls_first_then_samplers_in_order(tmp_path):
    rec = {"classes_covered": 10, "kl_uniform": 0.01, "fid": 3.0, "code_copy_fraction": 0.5}
    rows = {r: dict(rec) for r in reversed(SAMPLER_ROWS)}
    rows.update({f"*{c}*": dict(rec) for c in CONTROL_ROWS})
    rows["aeot-spacing"].update(rule_kappa=1.5, rule_jitter=0.8, rule_acceptance=0.9, interpolated_fraction=1.0)
    text = write_report({"rows": rows, "meta": {"dataset": "mnist", "n": 10}}, tmp_path / "r.md", "cmd")
    table = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert table[1:] == [f"*{c}*" for c in CONTROL_ROWS] + list(SAMPLER_ROWS)
    assert "kappa 1.50, jitter 0.80, acceptance 90%" in text and "| 50.00 |" in text


def test_stacked_report_has_mode_columns_not_fid(tmp_path):
    rec = {"modes_covered": 998, "kl_uniform": 0.071, "max_mode_fraction": 0.0023, "code_data_copying_ct": 2.3,
           "fid": 99.0}
    rows = {"aeot-spacing": dict(rec), f"*{CONTROL_ROWS[0]}*": dict(rec, modes_covered=1000)}
    text = write_report({"rows": rows, "meta": {"dataset": "stacked", "n": 26000}}, tmp_path / "s.md", "cmd")
    header = next(line for line in text.splitlines() if line.startswith("| row |"))
    assert [c.strip() for c in header.split("|")[2:6]] == ["modes", "KL", "max share", "code C_T"]
    assert "FID" not in header and "| 998 | 0.071 | 0.0023 | 2.3 |" in text and "fresh stacks of MNIST *test*" in text


def test_ablation_fits_each_latent_sampler_once_per_row_key():
    """The ablation's scored draw and a decoder GAN's pool of one row come from one fit (same key: the same
    fitted sampler as a fresh fit would give); another key fits anew."""
    from experiments import ablation

    z = _codes(600).astype(np.float32)
    cache, key = {}, jax.random.key(3)
    scored, _ = ablation._codes("gmm10", None, z, key, 50, cache)
    pool, _ = ablation._codes("gmm10", None, z, key, 50, cache, draw=ablation.POOL_DRAW)
    assert len([k for k in cache if k[0] == "sampler"]) == 1
    np.testing.assert_array_equal(scored, ablation._codes("gmm10", None, z, key, 50, {})[0])
    assert not np.array_equal(scored, pool)
    ablation._codes("gmm10", None, z, jax.random.key(4), 50, cache)
    assert len([k for k in cache if k[0] == "sampler"]) == 2
