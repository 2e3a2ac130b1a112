"""Diagnostics: the grouped form, its dict round trip, and maps saved with the old flat form."""

import json
from pathlib import Path

import numpy as np

from otgen.checkpoint import save_pytree
from otgen.ot import BrenierMap, Diagnostics
from otgen.ot.output import Checks, Convergence, History

# the flat diagnostics of a map saved before the grouping (an averaged-SGD fit whose returned heights are
# its checked average, as runs/mnist_quick/brenier.npz holds; cut to 3 steps)
OLD_FLAT = {
    "l1_error": [1.1154, 1.0213, 0.9698], "noise_l1": [0.5163, 0.5502, 0.5747],
    "max_rel_error": [51.19, 17.31, 12.73], "energy": [12.802, 12.710, 12.627], "wall_time": [3.59, 7.42, 9.61],
    "num_samples": [65536, 65536, 65536], "converged": False, "optimizer": "averaged_sgd",
    "chi2": [2.398, 1.134, 0.8016], "step_size": [0.45, 0.45, 0.45], "best_step": 2, "stop_reason": "time_budget",
    "tol": 0.0025, "notes": ["Voronoi start (of the normalised targets)", "no stop before step ~733"],
    "metric": "chi2", "noise_chi2": [0.0142, 0.0112, 0.0102],
    "check_step": [1, 2], "check_l1": [0.30, 0.2415], "check_noise_l1": [0.20, 0.1876],
    "check_chi2": [0.05, 0.03533], "check_noise_chi2": [0.0007, 0.000594], "check_samples": [524288, 1048576],
    "check_time": [8.0, 11.5], "best_check": 1,
}

GROUPED = Diagnostics(
    convergence=Convergence(converged=False, stop_reason="time_budget", tol=0.0025, metric="chi2",
                            optimizer="averaged_sgd", best_step=2),
    history=History(l1=(1.1154, 1.0213, 0.9698), noise_l1=(0.5163, 0.5502, 0.5747), chi2=(2.398, 1.134, 0.8016),
                    noise_chi2=(0.0142, 0.0112, 0.0102), max_rel=(51.19, 17.31, 12.73), energy=(12.802, 12.710, 12.627),
                    step_size=(0.45, 0.45, 0.45), num_samples=(65536, 65536, 65536), wall_time=(3.59, 7.42, 9.61)),
    checks=Checks(step=(1, 2), l1=(0.30, 0.2415), noise_l1=(0.20, 0.1876), chi2=(0.05, 0.03533),
                  noise_chi2=(0.0007, 0.000594), num_samples=(524288, 1048576), wall_time=(8.0, 11.5), best=1),
    notes=("Voronoi start (of the normalised targets)", "no stop before step ~733"))


def test_old_flat_dict_loads_into_the_grouped_values():
    d = Diagnostics.from_dict(OLD_FLAT)
    assert d == GROUPED
    assert d.summary() == "not converged (chi2 of the average 0.03533 > tol 0.0025 after 3 steps; stopped by time_budget)"
    assert d.final_error == 0.03533 and d.final_l1 == 0.2415 and not d.converged and d.stop_reason == "time_budget"
    m = d.as_metrics()
    assert (m["ot_l1_error"], m["ot_noise_l1"], m["ot_chi2"], m["ot_noise_chi2"]) == (0.2415, 0.1876, 0.03533, 0.000594)
    assert (m["ot_returned"], m["ot_steps"], m["ot_seconds"], m["ot_optimizer"]) == ("average", 3, 11.5, "averaged_sgd")


def test_older_flat_dict_without_later_fields_takes_the_defaults():
    # maps saved before metric, noise_chi2 and the check_* fields existed (an unknown key is ignored)
    old = {k: OLD_FLAT[k] for k in ("l1_error", "noise_l1", "max_rel_error", "energy", "wall_time", "num_samples",
                                   "converged", "optimizer", "chi2", "step_size", "best_step", "stop_reason",
                                   "tol", "notes")}
    d = Diagnostics.from_dict({**old, "optimizer": "damped_newton", "some_future_field": 1})
    assert d.convergence.metric == "l1" and d.history.noise_chi2 == () and d.checks == Checks()
    assert d.history.l1 == (1.1154, 1.0213, 0.9698) and d.notes == tuple(OLD_FLAT["notes"])
    assert d.final_l1 == 0.9698 and d.as_metrics()["ot_returned"] == "iterate" and d.as_metrics()["ot_noise_chi2"] is None
    assert Diagnostics.from_dict({}) == Diagnostics() and np.isnan(Diagnostics().final_l1)


def test_as_dict_is_grouped_and_round_trips_through_json():
    out = GROUPED.as_dict()
    assert set(out) == {"convergence", "history", "checks", "notes"}
    assert out["history"]["l1"] == [1.1154, 1.0213, 0.9698] and out["checks"]["best"] == 1
    back = Diagnostics.from_dict(json.loads(json.dumps(out)))
    assert back == GROUPED and back.as_metrics() == GROUPED.as_metrics() and back.summary() == GROUPED.summary()
    assert Diagnostics.from_dict(Diagnostics().as_dict()) == Diagnostics()


def _write_map(path: Path, diagnostics: dict) -> None:
    y = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    tree = {"targets": y, "weights": np.full(4, 0.25, np.float32), "h": np.zeros(4, np.float32)}
    save_pytree(path, tree, {"format": "otgen-brenier-map-v1", "source": None, "diagnostics": diagnostics,
                             "block_size": None, "chunk_size": None})


def test_map_saved_with_the_flat_form_loads_and_saves_grouped(tmp_path: Path):
    _write_map(tmp_path / "old.npz", OLD_FLAT)
    m = BrenierMap.load(tmp_path / "old.npz")
    assert m.diagnostics == GROUPED
    m.save(tmp_path / "new.npz")
    assert BrenierMap.load(tmp_path / "new.npz").diagnostics == GROUPED
