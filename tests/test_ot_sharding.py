"""Multi-device Monte Carlo on 4 forced host devices (in a subprocess: the device count is fixed at jax start-up).

Seeds are fixed, so every check is reproducible.
"""

import json
import os
import subprocess
import sys
import textwrap
import pytest


_SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from otgen.ot import SemiDiscreteOT, UniformBox, scores, sharding

    assert jax.device_count() == 4, jax.devices()
    out = {}
    x = jax.random.normal(jax.random.PRNGKey(0), (1001, 8))
    y = jax.random.normal(jax.random.PRNGKey(1), (333, 8))
    h = jax.random.normal(jax.random.PRNGKey(2), (333,))
    ref_idx = np.asarray(scores.assign_cells(x, y, h, block_size=40))
    ref_counts = np.asarray(scores.cell_counts(x, y, h, block_size=40))
    for s, t in ((4, 1), (2, 2), (1, 4)):
        mesh = sharding.make_mesh(s, t)
        idx = np.asarray(sharding.assign_cells_sharded(x, y, h, mesh, block_size=40))
        counts = np.asarray(sharding.cell_counts_sharded(x, y, h, mesh, block_size=40))
        out[f"assign_equal_{s}x{t}"] = bool((idx == ref_idx).all())
        out[f"counts_equal_{s}x{t}"] = bool((counts == ref_counts).all())
    bm = SemiDiscreteOT(UniformBox(8, -3.0, 3.0), y).fit(jax.random.PRNGKey(9), tol=0.5, max_steps=1, progress=False)
    out["bmap_assign_mesh"] = bool((np.asarray(bm.assign(x, mesh=sharding.make_mesh(2, 2)))
                                    == np.asarray(bm.assign(x))).all())

    yt = jax.random.uniform(jax.random.PRNGKey(3), (300, 2))
    single = SemiDiscreteOT(UniformBox(2), yt)
    h0 = single.initial_h()
    mesh = sharding.make_mesh(2, 2)
    sharded = SemiDiscreteOT(UniformBox(2), yt, mesh=mesh)
    # Same key: the same samples, so identical masses.
    a = single.estimate(jax.random.PRNGKey(4), h0, 1 << 16, sampling="iid")
    b = sharded.estimate(jax.random.PRNGKey(4), h0, 1 << 16, sampling="iid")
    out["same_key_masses_equal"] = bool((a.masses == b.masses).all())
    # Different keys: statistically equal (L1 distance within the combined measured noise).
    c = sharded.estimate(jax.random.PRNGKey(5), h0, 1 << 16, sampling="iid")
    out["mc_distance"] = float(jnp.abs(a.masses - c.masses).sum())
    out["mc_noise"] = float(a.noise_l1 + c.noise_l1)

    f1 = single.fit(jax.random.PRNGKey(6), tol=0.02, progress=False)
    f2 = sharded.fit(jax.random.PRNGKey(6), tol=0.02, progress=False)
    f3 = sharded.fit(jax.random.PRNGKey(6), tol=0.02, progress=False)
    out["fit_converged"] = bool(f1.diagnostics.converged and f2.diagnostics.converged)
    out["fit_reproducible"] = bool((np.asarray(f2.h) == np.asarray(f3.h)).all())
    out["h_max_diff"] = float(jnp.abs(f1.h - f2.h).max())
    out["h_spread"] = float(jnp.std(f1.h))
    w1 = f1.cell_masses(jax.random.PRNGKey(7), 1 << 20, qmc=True)
    w2 = f2.cell_masses(jax.random.PRNGKey(7), 1 << 20, qmc=True)
    out["fit_l1_single"] = float(jnp.abs(w1 - f1.weights).sum())
    out["fit_l1_sharded"] = float(jnp.abs(w2 - f2.weights).sum())
    print("RESULT " + json.dumps(out))
""")

@pytest.mark.heavy
def test_sharded_runs_equal_a_single_device():
    # One subprocess (jax's device count is fixed at start-up) runs every check; one test, so that the
    # subprocess runs once whichever test worker gets it.
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    results = json.loads(line[len("RESULT "):])
    for mesh in ("4x1", "2x2", "1x4"):  # target-sharded assignment and counts equal the unsharded ones
        assert results[f"assign_equal_{mesh}"], mesh
        assert results[f"counts_equal_{mesh}"], mesh
    assert results["bmap_assign_mesh"]  # BrenierMap.assign with a mesh
    # same key -> same global samples -> same histogram
    assert results["same_key_masses_equal"]
    assert results["mc_distance"] <= 2.0 * results["mc_noise"]
    # a sharded fit converges to the same h: identical samples, only float summation order differs
    assert results["fit_converged"] and results["fit_reproducible"]
    assert results["fit_l1_single"] <= 0.02 and results["fit_l1_sharded"] <= 0.02, results
    assert results["h_max_diff"] <= 0.02 * results["h_spread"], results


_PIPELINE_SCRIPT = textwrap.dedent("""
    import sys
    import jax, numpy as np
    from otgen.generators.aeot import OTOptions, solve_latent_ot

    assert jax.local_device_count() == 2, jax.devices()
    codes = np.random.default_rng(0).standard_normal((3500, 8)).astype(np.float32)
    _, bmap = solve_latent_ot(codes, OTOptions(source="gaussian", tol=1e-4, max_steps=3), jax.random.key(1),
                              progress=False)
    np.save(sys.argv[1], np.asarray(bmap.h))
    assert len(bmap.h.devices()) == 1, bmap.h.sharding  # a plain array leaves the fit, not a replicated one
    print("NOTES " + " | ".join(bmap.diagnostics.notes))
""")


def test_the_latent_fit_spreads_its_samples_over_the_devices_and_returns_the_one_device_heights(tmp_path):
    # Under the CLI (one device per core) the AE-OT fit samples on every device; its samples, cell counts
    # and so its heights are those of one device, bit for bit (averaged SGD, K = 3,500 > DISCRETE_MAX_K).
    import jax
    import numpy as np

    from otgen.generators.aeot import OTOptions, solve_latent_ot

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = tmp_path / "h.npy"
    proc = subprocess.run([sys.executable, "-c", _PIPELINE_SCRIPT, str(out)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "spread over 2 devices" in proc.stdout, proc.stdout
    if jax.local_device_count() != 1:
        pytest.skip("this process has several devices: no one-device reference here")
    codes = np.random.default_rng(0).standard_normal((3500, 8)).astype(np.float32)
    _, bmap = solve_latent_ot(codes, OTOptions(source="gaussian", tol=1e-4, max_steps=3), jax.random.key(1),
                              progress=False)
    assert not any("spread over" in n for n in bmap.diagnostics.notes)
    np.testing.assert_array_equal(np.load(out), np.asarray(bmap.h))


def test_one_device_per_core_sets_the_count_once(monkeypatch):
    from otgen.ot import sharding

    monkeypatch.setattr(sharding.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert sharding.one_device_per_core() == 3
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=3"
    assert sharding.one_device_per_core() == 0  # a count already set (by us or the user) is left alone
    monkeypatch.delenv("XLA_FLAGS")
    monkeypatch.setattr(sharding.os, "sched_getaffinity", lambda pid: {4}, raising=False)
    assert sharding.one_device_per_core() == 0 and "XLA_FLAGS" not in os.environ  # one core: nothing to ask
